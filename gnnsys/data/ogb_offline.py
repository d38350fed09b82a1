"""OGB datasets without a network, and without ogb's interactive questions.

ogb's readers download a missing dataset after asking on stdin (``input()``) when it is larger
than 1 GB or when a folder lacks its ``RELEASE_v*.txt``; offline, ``urlopen`` may wait for a long
time. :func:`require_ogb_raw` checks the raw files first and, when they are missing and the
download URL does not answer within a few seconds, raises one line saying where to put them.
:func:`ogb_without_prompts` turns any question ogb would ask into a DatasetError and bounds
network waits, for the duration of the block only.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from .progress import progress_enabled

#: Seconds to wait for the OGB server before saying the dataset must be fetched by hand.
PROBE_TIMEOUT_S = float(os.environ.get("GNNSYS_OGB_PROBE_TIMEOUT", "8"))
#: Socket timeout while ogb downloads (a stalled connection fails instead of hanging).
DOWNLOAD_TIMEOUT_S = 120.0


def raw_files_needed(info: Any) -> list[str]:
    """The raw files ogb's reader needs (relative to the dataset folder), from ``master.csv``."""
    binary = str(info.get("binary", "False")) == "True"
    hetero = str(info.get("is hetero", "False")) == "True"
    if hetero:
        return ["raw/edge_index_dict.npz"] if binary else ["raw/triplet-type-list.csv.gz"]
    return ["raw/data.npz"] if binary else ["raw/edge.csv.gz"]


def url_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """``None`` when ``url`` answers a HEAD request within ``timeout`` seconds, else why not
    (never tried when ``$GNNSYS_OFFLINE`` is ``1``: gnnsys then never downloads)."""
    import urllib.request

    if os.environ.get("GNNSYS_OFFLINE", "") not in ("", "0"):
        return "GNNSYS_OFFLINE is set"

    try:
        req = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(req, timeout=timeout):
            return None
    except Exception as e:  # noqa: BLE001 - URLError, timeouts, HTTP errors: all "cannot download now"
        return f"{type(e).__name__}: {getattr(e, 'reason', e)}"


def require_ogb_raw(name: str, root: Path, dir_name: str, info: Any) -> None:
    """Raise a one-line DatasetError when ``root/dir_name`` lacks the raw files and the download
    URL cannot be reached; return otherwise (files present, or ogb may download them)."""
    folder = Path(root) / dir_name
    needed = raw_files_needed(info)
    if all((folder / f).is_file() for f in needed):
        return
    url = str(info.get("url", ""))
    why = url_reachable(url) if url else "no download URL"
    if why is None:
        return
    raise DatasetError(
        f"{name}: raw files not found ({folder / needed[0]} is missing) and {url} cannot be reached "
        f"({why}). Download {url} on a machine with network, unzip it into {Path(root)} so that "
        f"{folder / needed[0]} exists, then run `gnnsys prepare {name} --root {Path(root)}`")


@contextlib.contextmanager
def ogb_without_prompts(name: str, root: Path, dir_name: str, info: Any):
    """Within the block, ogb's ``input()`` questions raise DatasetError (``decide_download`` says
    yes without asking: the size is printed instead) and sockets time out."""
    import ogb.linkproppred.dataset as link_ds
    import ogb.nodeproppred.dataset as node_ds

    def no_input(prompt: str = "") -> str:
        raise DatasetError(f"{name}: ogb asked {prompt.strip()!r} on stdin; gnnsys never answers "
                           f"prompts: check {Path(root) / dir_name} (complete OGB download with its "
                           "RELEASE file) or remove it")

    real_stderr = sys.stderr

    def decide_download(url: str) -> bool:
        print(f"gnnsys: downloading {name} from {url}", file=real_stderr)
        return True

    saved = [(m, k, m.__dict__.get(k, _MISSING)) for m in (node_ds, link_ds) for k in ("input", "decide_download")]
    old_timeout = socket.getdefaulttimeout()
    # ogb prints its messages on stdout (which carries gnnsys' JSON) and its bars on stderr:
    # both go to stderr on a terminal, nowhere with --no-progress or off a terminal
    sink = sys.stderr if progress_enabled() else io.StringIO()
    try:
        for m in (node_ds, link_ds):
            m.input = no_input
            m.decide_download = decide_download
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        socket.setdefaulttimeout(old_timeout)
        for m, k, v in saved:
            if v is _MISSING:
                m.__dict__.pop(k, None)
            else:
                setattr(m, k, v)


_MISSING = object()
