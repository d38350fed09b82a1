"""``python -m gnnsys ...`` (also what ``torchrun -m gnnsys`` runs)."""

import os
import sys

from .cli import main

code = main()
world = os.environ.get("WORLD_SIZE", "")
if world.isdigit() and int(world) > 1:
    # A rank of a distributed run leaves without the interpreter's teardown, as multiprocessing's
    # children (the ranks of --nproc) do: its files are written and closed, and C++ objects of
    # torch.distributed destroyed at exit could still abort a finished rank ("terminate called
    # without an active exception": seen in about 1 of 160 two-rank runs here).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
