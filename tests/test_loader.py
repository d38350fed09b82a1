"""Tests of the loader pipeline: batching, determinism, resume, prefetch thread lifecycle."""

from __future__ import annotations

import gc
import threading
import time

import numba
import numpy as np
import pytest
import torch

from gnnsys.errors import ConfigError
from gnnsys.loader import ArrayFeatures, Batch, LinkLoader, NodeLoader
from gnnsys.loader.prefetch import THREAD_NAME
from samplers import NeighborSampler, SamplerInputError
from test_samplers_helpers import csc_from_edges, random_graph

N = 2000


@pytest.fixture(scope="module")
def graph():
    return random_graph(N, 20_000, seed=3, symmetric=True)


@pytest.fixture(scope="module")
def features():
    return ArrayFeatures(np.arange(N * 4, dtype=np.float32).reshape(N, 4))


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def wait_no_workers(timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not workers():
            return True
        gc.collect()
        time.sleep(0.02)
    return False


@pytest.fixture(autouse=True)
def no_leaked_threads():
    yield
    assert wait_no_workers(), "a loader worker thread outlived its test"


def signature(b: Batch) -> tuple:
    return (b.subgraph.nodes.tobytes(), b.subgraph.edge_index.tobytes())


def node_loader(graph, features, **kw) -> NodeLoader:
    kw.setdefault("prefetch", 2)
    sampler = NeighborSampler(graph, [5, 3], seed=kw.pop("sampler_seed", 0))
    return NodeLoader(sampler, kw.pop("seeds", np.arange(0, N, 3)), kw.pop("batch_size", 64),
                      features=features, labels=np.arange(N) % 7, **kw)


def test_batches_cover_seeds_with_features_and_labels(graph, features):
    seeds = np.arange(0, N, 3)
    loader = node_loader(graph, features, shuffle=True, seed=5)
    assert len(loader) == -(-seeds.size // 64)
    seen = []
    for b in loader:
        tgt = b.subgraph.nodes[:b.batch_size]
        seen.append(tgt)
        assert b.x.shape == (b.subgraph.num_nodes, 4)
        torch.testing.assert_close(b.x[:, 0], torch.from_numpy(b.subgraph.nodes * 4.0).float())
        np.testing.assert_array_equal(b.y.numpy(), tgt % 7)
        assert b.y.dtype == torch.int64
        assert {"sample", "gather"} <= set(b.timings)
    seen = np.concatenate(seen)
    assert sorted(seen.tolist()) == seeds.tolist()
    assert not np.array_equal(seen, seeds)  # shuffled


def test_drop_last_and_len(graph, features):
    loader = node_loader(graph, features, seeds=np.arange(130), batch_size=64, drop_last=True)
    assert len(loader) == 2
    assert [b.batch_size for b in loader] == [64, 64]
    loader = node_loader(graph, features, seeds=np.arange(130), batch_size=64)
    assert len(loader) == 3 and [b.batch_size for b in loader] == [64, 64, 2]


def test_order_deterministic_for_seed_and_epoch(graph, features):
    a = node_loader(graph, features, shuffle=True, seed=1)
    b = node_loader(graph, features, shuffle=True, seed=1, prefetch=0)
    ep0 = [signature(x) for x in a]
    assert a.epoch == 1
    ep1 = [signature(x) for x in a]
    assert [signature(x) for x in b] == ep0 and [signature(x) for x in b] == ep1
    assert ep0 != ep1
    c = node_loader(graph, features, shuffle=True, seed=2)
    assert [signature(x) for x in c] != ep0
    b.set_epoch(1)
    assert [signature(x) for x in b] == ep1


def test_same_batches_for_any_prefetch_and_thread_count(graph, features):
    ref = [signature(b) for b in node_loader(graph, features, prefetch=0, shuffle=True)]
    for prefetch in (1, 4):
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            loader = node_loader(graph, features, prefetch=prefetch, shuffle=True,
                                 num_threads=threads)
            assert [signature(b) for b in loader] == ref


@pytest.mark.parametrize("workers", [2, 3])
def test_several_workers_yield_the_same_batches_in_order(graph, features, workers):
    ref = node_loader(graph, features, prefetch=0, shuffle=True, seed=4)
    ref.set_epoch(2)
    expected = [(signature(b), b.x.numpy().tobytes(), b.y.numpy().tobytes()) for b in ref]
    loader = node_loader(graph, features, prefetch=2, shuffle=True, seed=4, num_workers=workers, num_threads=1)
    loader.set_epoch(2)
    got = []
    for b in loader:
        got.append((signature(b), b.x.numpy().tobytes(), b.y.numpy().tobytes()))
        assert len(workers_alive := [t for t in threading.enumerate() if t.name == THREAD_NAME]) <= workers, workers_alive
    assert got == expected and loader.epoch == 3
    # resuming in the middle of an epoch with several workers is exact too
    part = node_loader(graph, features, prefetch=2, shuffle=True, seed=4, num_workers=workers, num_threads=1)
    part.load_state_dict({"epoch": 2, "batch_index": 5})
    assert [signature(b) for b in part] == [e[0] for e in expected[5:]]


def test_several_workers_surface_an_error_in_order_and_all_stop(graph, features):
    def transform(b: Batch) -> Batch:
        if b.subgraph.nodes[0] == 5 * 6 * 3:  # batch 5 (batch_size 6, seeds arange(0, N, 3))
            raise ValueError("bad batch 5")
        return b

    loader = node_loader(graph, features, batch_size=6, transform=transform, prefetch=4, num_workers=2,
                         num_threads=1)
    got = []
    with pytest.raises(ValueError, match="bad batch 5") as info:
        for b in loader:
            got.append(b)
    assert len(got) == 5  # every batch before the failing one, in order
    assert any("while producing batch 5" in n for n in info.value.__notes__)
    # breaking out early stops every worker as well (checked by the autouse fixture)
    for i, _ in enumerate(node_loader(graph, features, batch_size=4, prefetch=3, num_workers=2)):
        if i == 2:
            break


def test_state_dict_resume_is_exact(graph, features):
    full = node_loader(graph, features, shuffle=True, seed=9)
    full.set_epoch(3)
    expected = [signature(b) for b in full]
    part = node_loader(graph, features, shuffle=True, seed=9)
    part.set_epoch(3)
    it = iter(part)
    for _ in range(4):
        next(it)
    state = part.state_dict()
    assert state == {"epoch": 3, "batch_index": 4}
    it.close()
    resumed = node_loader(graph, features, shuffle=True, seed=9)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    assert [signature(b) for b in resumed] == expected[4:]
    assert resumed.state_dict() == {"epoch": 4, "batch_index": 0}
    with pytest.raises(ConfigError, match="batch_index"):
        resumed.load_state_dict({"epoch": 0, "batch_index": 10_000})
    with pytest.raises(ConfigError, match="'epoch' and 'batch_index'"):
        resumed.load_state_dict({"epoch": 0})


def test_worker_exception_reraised_promptly(graph, features):
    class Boom(RuntimeError):
        pass

    raised_at = {}

    def transform(b: Batch) -> Batch:
        if b.subgraph.nodes[0] == 12 * 3:  # third batch (batch_size 6, seeds arange(0, N, 3))
            raised_at["t"] = time.monotonic()
            raise Boom("bad batch")
        return b

    loader = node_loader(graph, features, batch_size=6, transform=transform, prefetch=2)
    got = []
    with pytest.raises(Boom, match="bad batch") as info:
        for b in loader:
            got.append(b)
    assert len(got) == 2
    assert time.monotonic() - raised_at["t"] < 1.0
    assert any("loader worker thread" in n for n in info.value.__notes__)
    assert "transform" in "".join(__import__("traceback").format_tb(info.value.__traceback__))


def test_sampler_error_in_worker_keeps_its_type(graph):
    n = 4
    src, dst = np.meshgrid(np.arange(n), np.arange(n))
    g = csc_from_edges(src[src != dst], dst[src != dst], n)
    loader = LinkLoader(NeighborSampler(g, [2]), np.array([[0, 1]]), 1, neg="exclude_existing")
    with pytest.raises(SamplerInputError, match="no negative destination"):
        list(loader)


def test_break_stops_worker(graph, features):
    loader = node_loader(graph, features, batch_size=8, prefetch=3)
    for i, _ in enumerate(loader):
        if i == 1:
            assert workers()
            break
    assert wait_no_workers()


def test_dropping_loader_and_iterator_stops_worker(graph, features):
    loader = node_loader(graph, features, batch_size=8, prefetch=3)
    it = iter(loader)
    next(it)
    assert workers()
    del it, loader
    assert wait_no_workers()


def test_worker_runs_at_most_prefetch_batches_ahead(graph, features):
    produced = []
    second_started = threading.Event()

    def transform(b: Batch) -> Batch:
        produced.append(int(b.subgraph.nodes[0]))
        if len(produced) == 2:
            second_started.set()
        return b

    loader = node_loader(graph, features, batch_size=8, prefetch=2, transform=transform)
    it = iter(loader)
    next(it)
    # the worker prepares the next batch while the consumer still holds the first one
    assert second_started.wait(10.0)
    time.sleep(0.3)
    # the consumer's batch plus `prefetch` more, finished or in the making: the worker waits for
    # room before it starts a batch, so no finished batch waits beside a full queue
    assert len(produced) == 1 + 2
    next(it)
    time.sleep(0.3)
    assert len(produced) == 2 + 2
    it.close()
    assert wait_no_workers()


def test_link_loader_batches(graph, features):
    dst_all = np.repeat(np.arange(N), np.diff(graph.indptr))
    edges = np.stack([graph.indices[:300].astype(np.int64), dst_all[:300]], axis=1)
    sampler = NeighborSampler(graph, [4, 2])
    loader = LinkLoader(sampler, edges, 64, features=features, neg="per_source", num_neg=3,
                        shuffle=True, seed=2)
    assert len(loader) == 5
    pos_seen = []
    for b in loader:
        nodes = b.subgraph.nodes
        m = b.edge_label.numel()
        npos = int(b.edge_label.sum())
        assert m == npos * 4 and b.edge_label.dtype == torch.float32
        assert int(b.edge_label_index.max()) < b.batch_size
        pos_seen.append(nodes[b.edge_label_index[:, :npos].numpy()].T)
        assert b.extra["neg_dst_index"].shape == (npos, 3)
        assert b.x.shape[0] == nodes.size and b.y is None
        mp = set(zip(nodes[b.subgraph.edge_index[0]].tolist(), nodes[b.subgraph.edge_index[1]].tolist()))
        pos = nodes[b.edge_label_index[:, :npos].numpy()]
        assert not mp & set(zip(pos[0].tolist(), pos[1].tolist()))  # excluded by default
    got = np.concatenate(pos_seen)
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, edges.tolist()))


def test_link_loader_with_given_negatives(graph):
    edges = np.array([[1, 2], [3, 4], [5, 6]])
    neg_dst = np.array([[7, 8], [9, 10], [11, 12]])
    loader = LinkLoader(NeighborSampler(graph, [2]), edges, 2, neg=None, neg_dst=neg_dst,
                        prefetch=0)
    got = [b.subgraph.nodes[b.extra["neg_dst_index"].numpy()] for b in loader]
    np.testing.assert_array_equal(np.concatenate(got), neg_dst)
    with pytest.raises(ConfigError, match="neg_dst must be an integer"):
        LinkLoader(NeighborSampler(graph, [2]), edges, 2, neg_dst=neg_dst[:2])


def test_loaders_from_dataset(tiny, link_tiny):
    loader = NodeLoader.from_dataset(tiny, "train", [5, 5], 128, shuffle=True)
    b = next(iter(loader))
    assert b.x.shape == (b.subgraph.num_nodes, tiny.num_features) and b.y.shape == (128,)
    np.testing.assert_array_equal(b.y.numpy(), tiny.labels[b.subgraph.nodes[:128]])
    ll = LinkLoader.from_dataset(link_tiny, "train_pos", [5, 5], 64, num_neg=2, prefetch=0)
    b = next(iter(ll))
    assert b.edge_label.numel() == 64 * 3


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"batch_size": 2.5}, "batch_size must be an int >= 1"),
    ({"prefetch": -1}, "prefetch must be an int >= 0"),
    ({"seeds": np.array([0, N])}, "out of range"),
    ({"seeds": np.array([], np.int64)}, "seeds is empty"),
    ({"seeds": np.array([0.5])}, "integer node ids"),
    ({"features": object()}, "gather"),
    ({"features": ArrayFeatures(np.zeros((10, 2), np.float32))}, "has 10 rows"),
    ({"transform": 3}, "transform must be callable"),
    ({"num_threads": 0}, "num_threads must be an int >= 1"),
    ({"num_workers": 0}, "num_workers must be an int >= 1"),
    ({"num_workers": 2, "prefetch": 0}, "needs prefetch >= 1"),
    ({"seeds": np.arange(10), "batch_size": 64, "drop_last": True}, "no batch at all"),
])
def test_bad_node_loader_options(graph, features, kwargs, match):
    kwargs.setdefault("features", features)
    feats = kwargs.pop("features")
    with pytest.raises(ConfigError, match=match):
        node_loader(graph, feats, **kwargs)


def test_bad_labels_and_link_options(graph):
    s = NeighborSampler(graph, [2])
    with pytest.raises(ConfigError, match="labels must be an integer array"):
        NodeLoader(s, [1, 2], 2, labels=np.zeros(5, np.int64))
    with pytest.raises(ConfigError, match=r"edges must be an \[E, 2\] array"):
        LinkLoader(s, np.zeros((4, 3), np.int64), 2)
    with pytest.raises(ConfigError, match="neg must be one of"):
        LinkLoader(s, np.zeros((4, 2), np.int64), 2, neg="hard")
    with pytest.raises(ConfigError, match="num_neg must be an int >= 1"):
        LinkLoader(s, np.zeros((4, 2), np.int64), 2, num_neg=0)
    with pytest.raises(ConfigError, match="sampler must have sample_from_nodes"):
        NodeLoader(object(), [1], 1)


def test_aggregate_first_hop_batches_carry_the_first_layers_mean(graph):
    """``aggregate_first_hop``: ``x`` is the full batch's rows of the last hop's destinations and
    ``x_agg`` their neighbour means, bit for bit what the model would compute from the full rows;
    the sampled subgraph is the same. A store without ``gather_mean`` is refused up front."""
    from gnnsys.features import FeatureStore
    from gnnsys.models.sage import block_adjacency, csr_mean

    table = np.random.default_rng(0).standard_normal((N, 6)).astype(np.float32)
    store = FeatureStore(table)
    full = node_loader(graph, store, prefetch=1)
    agg = node_loader(graph, store, prefetch=1, aggregate_first_hop=True)
    n = 0
    for a, b in zip(full, agg):
        assert signature(a) == signature(b) and b.x_agg is not None and a.x_agg is None
        hop = a.subgraph.hops[-1]
        assert torch.equal(b.x, a.x[:hop.num_dst])
        want = csr_mean(block_adjacency(hop.edge_index, hop.num_dst, hop.num_src), a.x[:hop.num_src])
        assert torch.equal(b.x_agg, want)
        n += 1
    assert n == len(full)
    moved = b.to("cpu")
    assert torch.equal(moved.x_agg, b.x_agg)
    with pytest.raises(ConfigError, match="gather_mean"):
        node_loader(graph, ArrayFeatures(table), aggregate_first_hop=True)
    with pytest.raises(ConfigError, match="gather_mean"):
        node_loader(graph, FeatureStore(table.astype(np.float16)), aggregate_first_hop=True)
