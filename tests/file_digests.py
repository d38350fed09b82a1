"""Helper (no tests): what a folder holds, to check that a failed write left it byte-identical."""

from __future__ import annotations

from pathlib import Path

from gnnsys.data.format import sha256_file


def file_digests(root) -> dict[str, str]:
    """SHA-256 of every file under ``root``, keyed by its path relative to ``root``."""
    root = Path(root)
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}
