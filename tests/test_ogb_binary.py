"""The out-of-core converter of OGB's binary node layout (ogbn-papers100M) writes the same dataset,
byte for byte, as ogb's in-memory reader path; bad raw files are one line and exit code 2."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli
from ogb_layout import write_ogb_binary_layout

import gnnsys.data.ogb_binary as ob
from gnnsys.data.npz_stream import NpzArchive
from gnnsys.data.sources import from_ogb

NAME = "ogbn-papers100M"


def _files(path: Path) -> list[Path]:
    return sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file())


def _assert_identical(a: Path, b: Path) -> None:
    assert _files(a) == _files(b)
    assert [str(f) for f in _files(a) if not filecmp.cmp(a / f, b / f, shallow=False)] == []


@pytest.fixture
def small_chunks(monkeypatch):
    """Many edge, row and bucket chunks on a small graph."""
    monkeypatch.setattr(ob, "EDGE_CHUNK", 97)
    monkeypatch.setattr(ob, "ROW_CHUNK", 31)
    monkeypatch.setattr(ob, "BUCKET_BYTES", 1024)


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
@pytest.mark.parametrize("fdt", ["float32", "int8", "float16", "bfloat16"])
def test_out_of_core_equals_in_memory_byte_for_byte(tmp_path, small_chunks, compressed, fdt):
    root = tmp_path / "root"
    write_ogb_binary_layout(root, compressed=compressed)
    with NpzArchive(root / "ogbn_papers100M" / "raw" / "data.npz") as npz:
        assert npz.member("edge_index").stored is not compressed
    stats: dict = {}
    ours = from_ogb(NAME, root, tmp_path / "ooc", feature_dtype=fdt, out_of_core=True, stats=stats)
    ref = from_ogb(NAME, root, tmp_path / "ram", feature_dtype=fdt, out_of_core=False)
    _assert_identical(ours.path, ref.path)  # every array and meta.json
    assert set(stats["stages"]) == {"edges -> buckets", "buckets -> CSC", "features", "labels, splits, checksums"}
    assert (ours.labels == -1).sum() == 100 and np.diff(ours.indptr)[-5:].tolist() == [0] * 5  # NaN, isolated
    assert ours.feature_dtype == fdt and ours.num_classes == 7


def test_fortran_order_edges_and_float16_features(tmp_path, small_chunks):
    root = tmp_path / "root"
    rng = np.random.default_rng(3)
    ei = np.asfortranarray(rng.integers(0, 290, size=(2, 1500)))
    write_ogb_binary_layout(root, compressed=False, num_edges=1500, edge_index=ei,
                            node_feat=rng.standard_normal((300, 8)).astype(np.float16))
    ours = from_ogb(NAME, root, tmp_path / "ooc", out_of_core=True)
    ref = from_ogb(NAME, root, tmp_path / "ram", out_of_core=False)
    _assert_identical(ours.path, ref.path)
    assert ours.feature_dtype == "float16"


@pytest.mark.parametrize("change, needles", [
    ({"edge_index": None}, ["data.npz: no array 'edge_index'", "holds"]),
    ({"edge_index": np.zeros((3, 10), np.int64)}, ["array 'edge_index'", "shape (2, E)", "(3, 10)"]),
    ({"edge_index": np.zeros((2, 2000), np.float32)}, ["array 'edge_index'", "float32"]),
    ({"edge_index": np.full((2, 2000), 300)}, ["node id 300 in edge 0 is outside [0, 300)"]),
    ({"node_feat": np.zeros((299, 8), np.float32)}, ["array 'node_feat'", "(299, 8)"]),
    ({"num_nodes_list": None}, ["no array 'num_nodes_list'"]),
])
def test_bad_raw_files_are_one_line_exit_2(tmp_path, capsys, change, needles):
    root = tmp_path / "root"
    write_ogb_binary_layout(root, compressed=True, **change)
    code, _out, err = run_cli(["prepare", NAME, "--root", root, "--out", tmp_path / "ds", "--no-progress"], capsys)
    assert_one_line_error(code, err, *needles)
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))  # the writer's lock stays
    assert left == ["root"]  # nothing written, no temporary folder left


def test_missing_label_file_truncated_and_corrupt_archive(tmp_path, capsys):
    root = tmp_path / "root"
    d = write_ogb_binary_layout(root, compressed=False)
    (d / "raw" / "node-label.npz").unlink()
    code, _out, err = run_cli(["prepare", NAME, "--root", root, "--out", tmp_path / "ds"], capsys)
    assert_one_line_error(code, err, "node-label.npz: file not found")
    write_ogb_binary_layout(root, compressed=False)
    data = d / "raw" / "data.npz"
    data.write_bytes(data.read_bytes()[:5000])
    code, _out, err = run_cli(["prepare", NAME, "--root", root, "--out", tmp_path / "ds"], capsys)
    assert_one_line_error(code, err, "data.npz: not a readable .npz archive")
    write_ogb_binary_layout(root, compressed=True)
    raw = bytearray(data.read_bytes())
    raw[3000] ^= 0xFF  # inside edge_index's deflated stream
    data.write_bytes(bytes(raw))
    code, _out, err = run_cli(["prepare", NAME, "--root", root, "--out", tmp_path / "ds"], capsys)
    assert_one_line_error(code, err, "data.npz: array 'edge_index': corrupt compressed data")
    assert not (tmp_path / "ds").exists()
