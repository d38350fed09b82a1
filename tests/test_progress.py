"""Issue 19, item 7: prepare and info --validate show tqdm bars on a terminal, and stay quiet
with --no-progress or when stderr is not a terminal."""

from __future__ import annotations

import io

import pytest

from gnnsys.cli import main
from gnnsys.data import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def no_delay(monkeypatch):
    monkeypatch.setattr(progress, "DELAY_S", 0.0)  # show bars of quick steps too


def _run(argv, monkeypatch, stream) -> str:
    monkeypatch.setattr("sys.stderr", stream)
    assert main(argv) == 0
    return stream.getvalue()


def test_prepare_and_validate_show_bars_on_a_terminal(tmp_path, monkeypatch, no_delay, capsys):
    out = tmp_path / "ds"
    err = _run(["prepare", "tiny", "--out", str(out)], monkeypatch, _Terminal())
    for desc in ("edges tiny", "features tiny", "checksums ds"):
        assert desc in err, err
    err = _run(["info", str(out), "--validate"], monkeypatch, _Terminal())
    assert "checksums ds" in err and "validate ds" in err, err


def test_no_progress_and_non_terminals_are_quiet(tmp_path, monkeypatch, no_delay, capsys):
    out = tmp_path / "ds"
    assert _run(["prepare", "tiny", "--out", str(out), "--no-progress"], monkeypatch, _Terminal()) == ""
    assert _run(["info", str(out), "--validate", "--no-progress"], monkeypatch, _Terminal()) == ""
    assert _run(["info", str(out), "--validate"], monkeypatch, io.StringIO()) == ""  # not a terminal
    assert _run(["prepare", "tiny", "--out", str(tmp_path / "b")], monkeypatch, io.StringIO()) == ""


def test_scope_is_restored():
    assert progress._ENABLED.get() is True
    with progress.progress_scope(False):
        assert progress.progress_enabled() is False
    assert progress._ENABLED.get() is True
