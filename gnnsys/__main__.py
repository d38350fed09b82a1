"""``python -m gnnsys ...`` (also what ``torchrun -m gnnsys`` runs)."""

import sys

from .cli import main

sys.exit(main())
