"""The GPU neighbour sampler (``cuda/sample.cu``) under the CPU emulation of ``tests/cuda_emu``.

The kernels run unchanged on the CPU (every emulated thread of the whole grid). Checked: every
sampled edge exists; no duplicates without replacement; a node of degree <= fanout takes its
whole neighbourhood; each neighbour's frequency is uniform within a chi-squared bound over many
draws; and, since the kernels use the numba sampler's keyed random numbers and choices, the very
same neighbours as ``samplers.NeighborSampler`` (through the host code of
:class:`~gnnsys.loader.gpu_sampler.GpuNeighborSampler` with the recording stand-in runtime).
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from scipy.stats import chi2

from cuda_standin import RecordingRuntime, build_emu_library
from gnnsys.errors import ConfigError
from gnnsys.loader.gpu_sampler import GpuNeighborSampler
from samplers import NeighborSampler
from samplers import _hop
from samplers._rng import stream_key


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    try:
        return build_emu_library(tmp_path_factory.mktemp("emu"))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


class Graph:
    def __init__(self, indptr, indices):
        self.indptr = np.asarray(indptr, np.int64)
        self.indices = np.asarray(indices)


def random_graph(n: int, max_deg: int, seed: int, dtype=np.int64) -> Graph:
    rng = np.random.default_rng(seed)
    deg = rng.integers(0, max_deg + 1, n)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(deg, out=indptr[1:])
    return Graph(indptr, rng.integers(0, n, int(indptr[-1])).astype(dtype))


def emulated_hop(emu, graph: Graph, frontier: np.ndarray, fanout: int, replace: bool,
                 hop_key: int, grid: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two kernels of one hop, launched directly: ``(offsets, nbr, dst_local)``; only the
    graph, the frontier and the offsets are readable, only the outputs writable."""
    deg = graph.indptr[frontier + 1] - graph.indptr[frontier]
    counts = deg if fanout < 0 else (np.where(deg > 0, fanout, 0) if replace else np.minimum(deg, fanout))
    offsets = np.zeros(frontier.size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    e = int(offsets[-1])
    nbr = np.full(max(e, 1), -7, np.int64)
    dst = np.full(max(e, 1), -7, np.int64)
    swap = np.zeros((2, max(e, 1)), np.int64)
    emu.emu_reset()
    for a in (graph.indptr, graph.indices, frontier, offsets):
        emu.emu_allow_read(a.ctypes.data, a.nbytes)
    for a in (nbr, dst):
        emu.emu_allow_write(a.ctypes.data, a.nbytes)
    g = grid if grid is not None else max(1, -(-frontier.size * 32 // 256))
    rc = emu.emu_gnnsys_sample_positions(g, 256, graph.indptr.ctypes.data, frontier.ctypes.data,
                                         frontier.size, offsets.ctypes.data, fanout, int(replace),
                                         ctypes.c_uint64(hop_key), nbr.ctypes.data, dst.ctypes.data, 0,
                                         swap[0].ctypes.data, swap[1].ctypes.data)
    assert rc == 0
    suffix = "i32" if graph.indices.dtype == np.int32 else "i64"
    rc = getattr(emu, f"emu_gnnsys_positions_to_ids_{suffix}")(max(1, -(-e // 256)), 256,
                                                               graph.indices.ctypes.data,
                                                               nbr.ctypes.data, e)
    assert rc == 0
    return offsets, nbr[:e], dst[:e]


def cpu_hop(graph: Graph, frontier: np.ndarray, fanout: int, replace: bool, hop_key: int):
    empty = np.empty(0, np.int64)
    counts = _hop.hop_counts(graph.indptr, graph.indices, np.empty(0), empty, frontier, fanout,
                             replace, empty, empty)
    offsets = np.zeros(frontier.size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    e = int(offsets[-1])
    nbr, dst = np.empty(e, np.int64), np.empty(e, np.int64)
    _hop.hop_fill(graph.indptr, graph.indices, np.empty(0), frontier, 0, fanout, replace,
                  np.uint64(hop_key), empty, empty, offsets, nbr, dst)
    return offsets, nbr, dst


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("fanout, replace", [(3, False), (32, False), (40, False), (-1, False),
                                             (5, True), (40, True)])
def test_emulated_hop_equals_the_numba_sampler(emu, fanout, replace, dtype):
    """Same keyed draws, same choices (Floyd up to 32, partial Fisher-Yates above, with
    replacement, all): the emulated kernels write exactly what hop_fill writes; one block of 8
    warps also walks a frontier of 300 nodes in its grid-stride loop."""
    graph = random_graph(400, 90, seed=abs(fanout) + 100 * replace, dtype=dtype)
    frontier = np.random.default_rng(1).choice(400, 300, replace=False).astype(np.int64)
    key = stream_key(7, 11, 0x686F70, 0)
    want = cpu_hop(graph, frontier, fanout, replace, key)
    for grid in (None, 1):
        got = emulated_hop(emu, graph, frontier, fanout, replace, key, grid=grid)
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("fanout", [2, 5, 33])
def test_emulated_edges_exist_without_duplicates_and_small_degrees_take_all(emu, fanout):
    graph = random_graph(300, 60, seed=fanout)
    # distinct neighbours per node, so "no duplicates" is about the draws, not the graph
    for v in range(300):
        lo, hi = graph.indptr[v], graph.indptr[v + 1]
        graph.indices[lo:hi] = np.random.default_rng(v).permutation(300)[: hi - lo]
    frontier = np.arange(300, dtype=np.int64)
    offsets, nbr, dst = emulated_hop(emu, graph, frontier, fanout, False, 12345)
    for i, v in enumerate(frontier):
        got = nbr[offsets[i]:offsets[i + 1]]
        neigh = graph.indices[graph.indptr[v]:graph.indptr[v + 1]]
        assert set(got) <= set(neigh)                       # every sampled edge exists
        assert len(set(got)) == got.size                    # no duplicates without replacement
        assert got.size == min(fanout, neigh.size)
        if neigh.size <= fanout:                            # the whole neighbourhood
            assert sorted(got) == sorted(neigh)
        assert np.all(dst[offsets[i]:offsets[i + 1]] == i)


@pytest.mark.parametrize("replace", [False, True])
def test_emulated_neighbour_frequencies_are_uniform(emu, replace):
    """Over 6,000 nodes of degree 10 with fanout 3 (18,000 draws of 10 positions), the count of
    each position is uniform: the chi-squared statistic (9 degrees of freedom) stays below its
    1 - 1e-6 quantile (about 45.5; a fair sampler exceeds it once in a million runs, and the
    test is deterministic: fixed keys)."""
    n, d, fanout = 6000, 10, 3
    indptr = np.arange(0, (n + 1) * d, d, dtype=np.int64)
    indices = np.tile(np.arange(d, dtype=np.int64), n)  # node v's neighbour at position j is j
    graph = Graph(indptr, indices)
    frontier = np.arange(n, dtype=np.int64)
    bound = chi2.ppf(1 - 1e-6, d - 1)
    for key in (1, 2, 3):
        _, nbr, _ = emulated_hop(emu, graph, frontier, fanout, replace, key)
        counts = np.bincount(nbr, minlength=d)
        expected = n * fanout / d
        stat = float(((counts - expected) ** 2 / expected).sum())
        assert stat < bound, (key, counts, stat)


def test_gpu_sampler_host_code_equals_the_cpu_sampler(emu, tiny):
    """GpuNeighborSampler (its host code with the stand-in runtime, its kernels emulated)
    returns exactly NeighborSampler's subgraphs: nodes, blocks, counts; the graph is pinned
    read-only where it is a read-only mapping, and unpinned on close."""
    rt = RecordingRuntime(emu)
    gpu = GpuNeighborSampler(tiny.graph, [5, 40, -1], seed=3, runtime=rt)
    cpu = NeighborSampler(tiny.graph, [5, 40, -1], seed=3)
    assert rt.compiles == ["sample.cu"] and len(rt.registered) == 2
    seeds = np.random.default_rng(0).choice(tiny.num_nodes, 50, replace=False)
    for batch_seed in (0, 1, 99):
        a = gpu.sample_from_nodes(seeds, batch_seed=batch_seed)
        b = cpu.sample_from_nodes(seeds, batch_seed=batch_seed)
        np.testing.assert_array_equal(a.nodes, b.nodes)
        assert a.num_sampled_nodes == b.num_sampled_nodes and a.num_sampled_edges == b.num_sampled_edges
        for ha, hb in zip(a.hops, b.hops):
            np.testing.assert_array_equal(ha.edge_index, hb.edge_index)
            assert (ha.num_src, ha.num_dst) == (hb.num_src, hb.num_dst)
    assert not rt.races
    with pytest.raises(ConfigError, match="node batches only"):
        gpu.sample_from_edges(np.array([0]), np.array([1]))
    gpu.close()
    assert not rt.registered
