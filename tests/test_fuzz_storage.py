"""Fuzzing of the on-disk dataset loader (hypothesis).

Every file of a small synthetic dataset (node task "tiny" and link task "link-tiny") is truncated,
extended or has bytes flipped; ``meta.json`` also gets random JSON values in its fields. The
property: :func:`gnnsys.data.load_dataset` either raises :class:`gnnsys.DatasetError` naming a
file, or returns a dataset that passes full validation -- never another exception, never a crash.

Three loader modes are fuzzed:

- ``raw``: the damaged folder is loaded as is (default ``validate="auto"``: full checks and
  SHA-256 for a dataset this small). Damage to a data file must always be detected.
- ``resealed``: after damaging a data file, ``meta.json`` is rewritten with the new size and
  checksum (a self-consistent but wrong dataset, as a buggy converter would write). The content
  checks alone must then catch what matters.
- ``quick``: resealed, loaded with ``validate=False`` (what datasets over 512 MiB get), then handed
  to the sampler. The sampler validates the graph once at construction, so it must refuse with
  :class:`samplers.SamplerInputError` or sample correctly. This mode runs in a child process so
  that a segfault in a numba kernel fails the test instead of killing pytest.

The loader itself is pure NumPy (``np.load`` with ``mmap_mode="r"`` after a size check), so the
in-process modes cannot segfault on a corrupt file; only the numba stage needs the child process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gnnsys.data import load_dataset, synthetic, validate_dataset
from gnnsys.data.format import sha256_file
from gnnsys.errors import DatasetError

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("fuzz")
    return {name: synthetic.generate(name, base / name).path for name in ("tiny", "link-tiny")}


# ---------------------------------------------------------------------------------------------
# Mutations


@st.composite
def byte_mutation(draw, size: int):
    """A description of damage to a file of ``size`` bytes: (kind, parameters)."""
    kinds = ["truncate", "flip", "append", "zero"] if size > 0 else ["append"]
    kind = draw(st.sampled_from(kinds))
    if kind == "truncate":
        return kind, draw(st.integers(0, size - 1))
    if kind == "flip":
        n = draw(st.integers(1, 8))
        pos = draw(st.lists(st.integers(0, size - 1), min_size=n, max_size=n))
        # bias towards the header, where a flip changes dtype, shape or byte order
        if draw(st.booleans()):
            pos = [p % min(size, 128) for p in pos]
        masks = draw(st.lists(st.integers(1, 255), min_size=n, max_size=n))
        return kind, list(zip(pos, masks))
    if kind == "append":
        return kind, draw(st.binary(min_size=1, max_size=64))
    lo = draw(st.integers(0, size - 1))
    return kind, (lo, draw(st.integers(lo + 1, min(size, lo + 256))))


def apply_mutation(path: Path, mutation) -> bool:
    """Damage ``path`` in place; returns False when the bytes did not change (e.g. zeroing zeros)."""
    data = bytearray(path.read_bytes())
    before = bytes(data)
    kind, arg = mutation
    if kind == "truncate":
        data = data[:arg]
    elif kind == "flip":
        for pos, mask in arg:
            data[pos] ^= mask
    elif kind == "append":
        data += arg
    else:
        lo, hi = arg
        data[lo:hi] = bytes(hi - lo)
    path.write_bytes(bytes(data))
    return bytes(data) != before


def reseal(root: Path, rel: str) -> None:
    """Record ``rel``'s current size and checksum in ``meta.json`` (a self-consistent dataset)."""
    meta = json.loads((root / "meta.json").read_text())
    meta["files"][rel] = {"bytes": (root / rel).stat().st_size, "sha256": sha256_file(root / rel)}
    (root / "meta.json").write_text(json.dumps(meta))


def _copy(src: Path) -> Path:
    dst = Path(tempfile.mkdtemp(prefix="gnnsys-fuzz-")) / "ds"
    shutil.copytree(src, dst)
    return dst


def _same_arrays(a, b) -> bool:
    """Every array ``a`` holds equals ``b``'s (``a`` may lack optional arrays or splits of ``b``)."""
    pairs = [(a.indptr, b.indptr), (a.indices, b.indices), (a.features, b.features), (a.labels, b.labels)]
    pairs += [(v, b.splits.get(k)) for k, v in a.splits.items()]
    for x, y in pairs:
        if x is None:
            continue
        if y is None or not (x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)):
            return False
    return True


def _check_loaded(ds) -> None:
    """A dataset that loaded must be internally consistent: validation passes, splits in range."""
    validate_dataset(ds, checksums=True)
    n = ds.num_nodes
    assert ds.indptr.shape == (n + 1,) and ds.indptr.dtype == np.int64
    assert ds.indices.dtype in (np.int32, np.int64) and ds.indices.shape == (ds.num_edges,)
    if ds.features is not None:
        assert ds.features.shape[0] == n
    if ds.labels is not None:
        assert ds.labels.shape == (n,)


# ---------------------------------------------------------------------------------------------
# Mode "raw": the damaged folder as it is


@pytest.mark.parametrize("name", ["tiny", "link-tiny"])
def test_raw_damage_is_detected(datasets, name):
    base = datasets[name]
    files = _files(base)
    original = load_dataset(base)

    @FUZZ
    @given(data=st.data())
    def run(data):
        rel = data.draw(st.sampled_from(files), label="file")
        mutation = data.draw(byte_mutation((base / rel).stat().st_size), label="mutation")
        root = _copy(base)
        try:
            changed = apply_mutation(root / rel, mutation)
            if rel != "meta.json":
                if not changed:
                    return
                with pytest.raises(DatasetError) as info:
                    load_dataset(root)
                assert rel in str(info.value) or "meta.json" in str(info.value), str(info.value)
                return
            try:
                ds = load_dataset(root)
            except DatasetError as e:
                assert str(root) in str(e)
                return
            # a meta.json edit that still loads cannot have changed the data the dataset holds
            # (it may have dropped an optional array or split from the listing)
            _check_loaded(ds)
            assert _same_arrays(ds, original)
        finally:
            shutil.rmtree(root.parent, ignore_errors=True)

    run()


# ---------------------------------------------------------------------------------------------
# Mode "resealed": damage a data file, then make meta.json agree with it


@pytest.mark.parametrize("name", ["tiny", "link-tiny"])
def test_resealed_damage_is_rejected_or_valid(datasets, name):
    base = datasets[name]
    files = [f for f in _files(base) if f != "meta.json"]

    @FUZZ
    @given(data=st.data())
    def run(data):
        rel = data.draw(st.sampled_from(files), label="file")
        mutation = data.draw(byte_mutation((base / rel).stat().st_size), label="mutation")
        root = _copy(base)
        try:
            apply_mutation(root / rel, mutation)
            reseal(root, rel)
            try:
                ds = load_dataset(root, validate="full")
            except DatasetError as e:
                assert str(root) in str(e)
                return
            _check_loaded(ds)
        finally:
            shutil.rmtree(root.parent, ignore_errors=True)

    run()


# ---------------------------------------------------------------------------------------------
# meta.json with random JSON values in its fields

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _meta_paths(meta: dict) -> list[tuple]:
    """Every key path into meta.json (dicts and lists), e.g. ("files", "labels.npy", "bytes")."""
    out: list[tuple] = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                out.append(path + (k,))
                walk(v, path + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out.append(path + (i,))
                walk(v, path + (i,))

    walk(meta, ())
    return out


@pytest.mark.parametrize("name", ["tiny", "link-tiny"])
def test_meta_json_fields_fuzzed(datasets, name):
    """Replace or delete any field of meta.json: DatasetError naming the folder, or the same data."""
    base = datasets[name]
    meta0 = json.loads((base / "meta.json").read_text())
    paths = _meta_paths(meta0)
    top = [p for p in paths if len(p) == 1]
    original = load_dataset(base)

    @FUZZ
    @given(data=st.data())
    def run(data):
        # top-level fields half of the time: they steer everything the loader does
        path = data.draw(st.sampled_from(top) | st.sampled_from(paths), label="field")
        action = data.draw(st.sampled_from(["replace", "delete"]), label="action")
        meta = json.loads(json.dumps(meta0))
        node = meta
        for k in path[:-1]:
            node = node[k]
        if action == "delete":
            del node[path[-1]]
        else:
            node[path[-1]] = data.draw(JSON_VALUES, label="value")
        root = _copy(base)
        try:
            (root / "meta.json").write_text(json.dumps(meta))
            try:
                ds = load_dataset(root)
                ds.summary()
            except DatasetError as e:
                assert str(root) in str(e)
                return
            _check_loaded(ds)
            assert _same_arrays(ds, original)  # an edited or dropped field never changes the data
        finally:
            shutil.rmtree(root.parent, ignore_errors=True)

    run()


# ---------------------------------------------------------------------------------------------
# Mode "quick": a resealed, unvalidated dataset reaches the numba sampler (in a child process)

CHILD_EXAMPLES = 80


def _child_quick_mode(base: Path) -> None:
    """Body of the child process: fuzz resealed files, load without validation, sample."""
    from samplers import NeighborSampler, SamplerInputError

    files = [f for f in _files(base) if f.startswith("graph/")]
    outcome = {"rejected_by_loader": 0, "rejected_by_sampler": 0, "sampled": 0}

    @settings(max_examples=CHILD_EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def run(data):
        rel = data.draw(st.sampled_from(files), label="file")
        mutation = data.draw(byte_mutation((base / rel).stat().st_size), label="mutation")
        root = _copy(base)
        try:
            apply_mutation(root / rel, mutation)
            reseal(root, rel)
            try:
                ds = load_dataset(root, validate=False)
            except DatasetError:
                outcome["rejected_by_loader"] += 1
                return
            try:
                sampler = NeighborSampler(ds.graph, [5, 3], seed=1)
            except SamplerInputError:
                outcome["rejected_by_sampler"] += 1
                return
            seeds = np.arange(0, ds.num_nodes, 7, dtype=np.int64)
            out = sampler.sample_from_nodes(seeds, batch_seed=0)
            assert np.array_equal(out.nodes[: seeds.size], seeds)
            assert out.nodes.min() >= 0 and out.nodes.max() < ds.num_nodes
            # every sampled edge exists in the (damaged but consistent) graph
            for hop in out.hops:
                src = out.nodes[hop.edge_index[0]]
                dst = out.nodes[hop.edge_index[1]]
                for s, d in zip(src[:200], dst[:200]):
                    assert s in ds.indices[ds.indptr[d]: ds.indptr[d + 1]]
            outcome["sampled"] += 1
        finally:
            shutil.rmtree(root.parent, ignore_errors=True)

    run()
    print(json.dumps(outcome))


def test_unvalidated_damage_never_crashes_the_sampler(datasets):
    """A segfault in the child shows up as a negative return code, failing this test cleanly."""
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    proc = subprocess.run(
        [sys.executable, __file__, "--child-quick-mode", str(datasets["tiny"])],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, f"child exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    # the run must have exercised every path: loader refusals, sampler refusals and real samples
    assert outcome["rejected_by_loader"] > 0, outcome
    assert outcome["rejected_by_sampler"] > 0, outcome
    assert outcome["sampled"] > 0, outcome


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child-quick-mode":
        _child_quick_mode(Path(sys.argv[2]))
    else:
        raise SystemExit(f"usage: {sys.argv[0]} --child-quick-mode DATASET_DIR")
