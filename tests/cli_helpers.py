"""Helpers shared by the CLI tests: run ``gnnsys`` in-process and check its one-line errors."""

from __future__ import annotations

from gnnsys.cli import main as cli_main


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """``gnnsys ARGV`` in this process: ``(exit code, stdout, stderr)``; arguments may be paths."""
    code = cli_main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit code 2 and exactly one non-empty stderr line ``gnnsys: error: ...`` holding every needle."""
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("gnnsys: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
