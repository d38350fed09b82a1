"""gnnsys.NeighborLoader / gnnsys.LinkNeighborLoader: PyG's loaders' arguments, batches and label
conventions, checked against PyG's own loaders and utilities on the same inputs."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.nn import GraphSAGE, SAGEConv
from torch_geometric.sampler import NegativeSampling
from torch_geometric.utils import subgraph

import gnnsys
from gnnsys import LinkNeighborLoader, NeighborLoader
from gnnsys.errors import ConfigError, DeviceUnavailableError, GnnsysError

N, E, D, C = 300, 2400, 12, 5


def make_data(seed: int = 0, **extra) -> Data:
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, N, (2, E), generator=g)
    data = Data(x=torch.randn(N, D, generator=g), edge_index=ei,
                y=torch.randint(0, C, (N,), generator=g), **extra)
    data.train_mask = torch.rand(N, generator=g) < 0.4
    data.val_mask = ~data.train_mask & (torch.rand(N, generator=g) < 0.5)
    data.test_mask = ~(data.train_mask | data.val_mask)
    return data


@pytest.fixture(scope="module")
def data() -> Data:
    return make_data()


def _edge_set(data: Data) -> set[tuple[int, int]]:
    return set(zip(data.edge_index[0].tolist(), data.edge_index[1].tolist()))


# ---------------------------------------------------------------------------- node batches
def test_exported_from_the_package():
    assert gnnsys.NeighborLoader is NeighborLoader and gnnsys.LinkNeighborLoader is LinkNeighborLoader
    assert issubclass(DeviceUnavailableError, ValueError)


def test_loader_layer_imports_neither_models_nor_train_nor_pyg():
    """The drop-in loaders live in the loader layer: importing them pulls in no gnnsys.models /
    gnnsys.train (imports flow downward) and no torch_geometric until a PyG object is used."""
    code = ("import sys, gnnsys\n"
            "assert 'torch' not in sys.modules\n"
            "gnnsys.NeighborLoader, gnnsys.LinkNeighborLoader\n"
            "bad = [m for m in sys.modules if m.startswith(('gnnsys.models', 'gnnsys.train', "
            "'torch_geometric'))]\n"
            "assert not bad, bad\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


def test_batch_attributes_match_pygs_loader(data):
    from torch_geometric.loader import NeighborLoader as PygNeighborLoader

    kw = dict(num_neighbors=[4, 3], batch_size=32, input_nodes=data.train_mask)
    ours, theirs = list(NeighborLoader(data, **kw)), list(PygNeighborLoader(data, **kw))
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        # PyG's batches also carry e_id (gnnsys's sampler returns no edge positions) and, with
        # pyg-lib only, num_sampled_*; ours always have them
        assert set(b.keys()) - {"e_id"} <= set(a.keys())
        assert a.batch_size == b.batch_size
        assert torch.equal(a.input_id, b.input_id)  # the seeds' node ids for a mask input
        assert torch.equal(a.n_id[:a.batch_size], b.n_id[:b.batch_size])
        for key in ("x", "y", "train_mask", "edge_index", "n_id"):
            assert a[key].dtype == b[key].dtype and a[key].dim() == b[key].dim(), key
        assert a.x.shape[1] == b.x.shape[1] and a.edge_index.shape[0] == 2
        assert isinstance(a.num_sampled_nodes, list) and isinstance(a.num_sampled_edges, list)


def test_input_id_is_the_position_for_ids_as_in_pyg(data):
    from torch_geometric.loader import NeighborLoader as PygNeighborLoader

    ids = torch.tensor([7, 3, 250, 3, 99])
    a = next(iter(NeighborLoader(data, [2], input_nodes=ids, batch_size=5)))
    b = next(iter(PygNeighborLoader(data, [2], input_nodes=ids, batch_size=5)))
    assert torch.equal(a.input_id, b.input_id) and a.input_id.tolist() == [0, 1, 2, 3, 4]
    assert a.n_id[:5].tolist() == ids.tolist()


def test_forward_equals_forward_on_the_subgraph_built_by_pyg(data):
    """A PyG model on a gnnsys batch == the same model on the subgraph PyG's own utilities
    build from the sampled nodes and edges (bit for bit)."""
    torch.manual_seed(0)
    model = GraphSAGE(D, 16, 2, C).eval()
    for batch in NeighborLoader(data, [5, 4], batch_size=40, input_nodes="train", seed=3):
        global_edges = batch.n_id[batch.edge_index]
        ref_ei, _ = subgraph(batch.n_id, global_edges, relabel_nodes=True, num_nodes=N)
        ref_x = data.x.index_select(0, batch.n_id)
        assert torch.equal(ref_ei, batch.edge_index)
        assert torch.equal(batch.y, data.y[batch.n_id])
        assert torch.equal(batch.train_mask, data.train_mask[batch.n_id])
        with torch.no_grad():
            assert torch.equal(model(batch.x, batch.edge_index), model(ref_x, ref_ei))


def test_every_sampled_edge_exists_and_hops_follow_pyg(data):
    edges = _edge_set(data)
    indeg = torch.bincount(data.edge_index[1], minlength=N)
    fanouts = [4, 3, 2]
    for batch in NeighborLoader(data, fanouts, batch_size=25, shuffle=True, seed=1):
        src, dst = batch.n_id[batch.edge_index]
        assert all((s, d) in edges for s, d in zip(src.tolist(), dst.tolist()))
        nsn, nse = batch.num_sampled_nodes, batch.num_sampled_edges
        assert sum(nsn) == batch.num_nodes == batch.n_id.numel() and sum(nse) == batch.edge_index.shape[1]
        assert nsn[0] == batch.batch_size and len(nsn) == len(fanouts) + 1 and len(nse) == len(fanouts)
        assert batch.n_id.unique().numel() == batch.n_id.numel()
        lo = e0 = 0
        for k, f in enumerate(fanouts):  # hop k samples the nodes hop k - 1 added
            hop = batch.edge_index[:, e0:e0 + nse[k]]
            assert bool(((hop[1] >= lo) & (hop[1] < lo + nsn[k])).all())
            assert bool((hop[0] < sum(nsn[:k + 2])).all())
            counts = torch.bincount(hop[1] - lo, minlength=nsn[k])
            want = torch.clamp(indeg[batch.n_id[lo:lo + nsn[k]]], max=f)
            assert torch.equal(counts, want)  # min(fanout, degree) per node, no replacement
            lo, e0 = lo + nsn[k], e0 + nse[k]


def test_a_fanout_above_every_degree_samples_every_neighbour(data):
    def edges(fanouts):
        return [set(zip(*b.n_id[b.edge_index].tolist())) for b in NeighborLoader(data, fanouts, batch_size=50)]

    assert edges([10 ** 9, 10 ** 9]) == edges([-1, -1])


def test_trim_to_layer_on_gnnsys_batches_equals_the_untrimmed_forward(data):
    torch.manual_seed(1)
    model = GraphSAGE(D, 16, 3, C).eval()
    for batch in NeighborLoader(data, [5, 3, 2], batch_size=30, seed=2):
        with torch.no_grad():
            full = model(batch.x, batch.edge_index)[:batch.batch_size]
            trimmed = model(batch.x, batch.edge_index, num_sampled_nodes_per_hop=batch.num_sampled_nodes,
                            num_sampled_edges_per_hop=batch.num_sampled_edges)[:batch.batch_size]
        assert trimmed.shape == (batch.batch_size, C)
        assert torch.equal(trimmed, full)  # the same sums over the same edges in the same order


def test_same_seed_same_batches_and_epochs_differ(data):
    kw = dict(num_neighbors=[3, 3], batch_size=50, shuffle=True, seed=9)
    a, b = NeighborLoader(data, **kw), NeighborLoader(data, **kw)
    e1a, e1b = [x.n_id for x in a], [x.n_id for x in b]
    assert all(torch.equal(x, y) for x, y in zip(e1a, e1b))
    e2a = [x.n_id for x in a]
    assert not all(torch.equal(x, y) for x, y in zip(e1a, e2a))
    torch.manual_seed(5)
    c = NeighborLoader(data, [3, 3], batch_size=50, shuffle=True)
    torch.manual_seed(5)
    d = NeighborLoader(data, [3, 3], batch_size=50, shuffle=True, num_workers=2)
    assert all(torch.equal(x.n_id, y.n_id) for x, y in zip(c, d))


# ---------------------------------------------------------------------------- gnnsys data, tables
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from gnnsys.data.synthetic import generate

    return generate("tiny", tmp_path_factory.mktemp("ds") / "tiny", seed=0)


def test_gnnsys_dataset_path_and_split_names(tiny):
    by_ds = NeighborLoader(tiny, [3, 2], input_nodes="train", batch_size=64, seed=4)
    by_path = NeighborLoader(str(tiny.path), [3, 2], input_nodes="train", batch_size=64, seed=4)
    assert len(by_ds) == math.ceil(len(tiny.splits["train"]) / 64)
    for a, b in zip(by_ds, by_path):
        assert torch.equal(a.n_id, b.n_id) and torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.x, torch.from_numpy(np.asarray(tiny.features)[a.n_id.numpy()]))
        assert torch.equal(a.y, torch.from_numpy(np.asarray(tiny.labels)[a.n_id.numpy()]))
        assert torch.equal(a.input_id, a.n_id[:a.batch_size])
    val = NeighborLoader(tiny, [2], input_nodes="val", batch_size=10 ** 6)
    assert next(iter(val)).n_id[:len(tiny.splits["valid"])].tolist() == list(tiny.splits["valid"])


@pytest.mark.parametrize("kind", ["array", "memmap", "tensor"])
def test_feature_and_label_tables_of_any_kind(data, tmp_path, kind):
    x = np.random.default_rng(0).standard_normal((N, 6)).astype(np.float32)
    y = np.arange(N) % 3
    if kind == "memmap":
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "y.npy", y)
        xt, yt = np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")
    elif kind == "tensor":
        xt, yt = torch.from_numpy(x.copy()), torch.from_numpy(y)
    else:
        xt, yt = x, y
    placement = "mmap" if kind == "memmap" else "cpu"
    batch = next(iter(NeighborLoader(data, [3], batch_size=20, x=xt, y=yt, features=placement)))
    assert torch.equal(batch.x, torch.from_numpy(x[batch.n_id.numpy()]))
    assert torch.equal(batch.y, torch.from_numpy(y[batch.n_id.numpy()]))


def test_node_loader_takes_a_feature_array_or_memmap(tiny, tmp_path):
    """The library's NodeLoader accepts the dataset's table as it is (a memmap), and tensors."""
    from gnnsys.loader import NodeLoader
    from samplers import NeighborSampler

    sampler = NeighborSampler(tiny.graph, [3])
    for table in (tiny.features, torch.from_numpy(np.array(tiny.features))):
        loader = NodeLoader(sampler, tiny.splits["train"], 16, features=table,
                            labels=torch.from_numpy(np.array(tiny.labels)))
        batch = next(iter(loader))
        np.testing.assert_array_equal(batch.x.numpy(), np.asarray(tiny.features)[batch.subgraph.nodes])


# ---------------------------------------------------------------------------- block layout, fused mean
def test_block_layout_and_fused_first_hop_feed_pyg_layers(data):
    torch.manual_seed(2)
    convs = [SAGEConv(D, 8), SAGEConv(8, C)]
    kw = dict(num_neighbors=[4, 3], batch_size=32, layout="block", seed=6)
    for plain, fused in zip(NeighborLoader(data, **kw), NeighborLoader(data, aggregate_first_hop=True, **kw)):
        blocks = plain.blocks
        assert [b.num_dst for b in blocks] == [b.num_dst for b in fused.blocks]
        assert blocks[-1].num_dst == plain.batch_size and blocks[0].num_src == plain.num_nodes
        h = plain.x
        for conv, blk in zip(convs, blocks):
            h = conv((h[:blk.num_src], h[:blk.num_dst]), blk.edge_index)
        first = convs[0].lin_l(fused.x_agg) + convs[0].lin_r(fused.x)
        blk = plain.blocks[0]
        ref = convs[0]((plain.x[:blk.num_src], plain.x[:blk.num_dst]), blk.edge_index)
        assert torch.equal(first, ref)  # the gather sums in the block's edge order, as PyG's mean
        assert fused.x.shape[0] == blk.num_dst and h.shape == (plain.batch_size, C)


# ---------------------------------------------------------------------------- link batches
def _pairs(batch, index):
    return batch.n_id[index]


@pytest.mark.parametrize("amount", [1, 2, 0.5])
def test_binary_negatives_follow_pygs_conventions(data, amount):
    from torch_geometric.loader import LinkNeighborLoader as PygLinkLoader

    pos = data.edge_index[:, :100]
    kw = dict(num_neighbors=[3, 2], edge_label_index=pos, batch_size=32,
              neg_sampling=NegativeSampling("binary", amount))
    edges = _edge_set(data)
    for a, b in zip(LinkNeighborLoader(data, **kw), PygLinkLoader(data, **kw)):
        m = a.input_id.numel()
        assert torch.equal(a.input_id, b.input_id)
        assert a.edge_label_index.shape == b.edge_label_index.shape == (2, m + math.ceil(m * amount))
        assert a.edge_label.dtype == b.edge_label.dtype and torch.equal(a.edge_label, b.edge_label)
        assert torch.equal(_pairs(a, a.edge_label_index[:, :m]), _pairs(b, b.edge_label_index[:, :m]))
        # the scored endpoints are the first nodes, sorted and unique (PyG's seed.unique())
        ends = a.n_id[a.edge_label_index.unique()]
        assert torch.equal(a.n_id[:ends.numel()], ends.sort().values)
        src, dst = a.n_id[a.edge_index]
        assert all((s, d) in edges for s, d in zip(src.tolist(), dst.tolist()))


def test_given_edge_labels_are_shifted_as_pyg_does(data):
    from torch_geometric.loader import LinkNeighborLoader as PygLinkLoader

    pos = data.edge_index[:, :64]
    label = torch.arange(64) % 3
    for neg in (None, "binary"):
        kw = dict(num_neighbors=[2], edge_label_index=pos, edge_label=label, batch_size=16,
                  neg_sampling=neg)
        for a, b in zip(LinkNeighborLoader(data, **kw), PygLinkLoader(data, **kw)):
            assert a.edge_label.dtype == b.edge_label.dtype == torch.long
            assert torch.equal(a.edge_label, b.edge_label)  # +1 with binary negatives, 0 = negative
            assert torch.equal(_pairs(a, a.edge_label_index), _pairs(b, b.edge_label_index)) or neg


@pytest.mark.parametrize("amount", [1, 3])
def test_triplet_negatives_follow_pygs_conventions(data, amount):
    from torch_geometric.loader import LinkNeighborLoader as PygLinkLoader

    pos = data.edge_index[:, :50]
    kw = dict(num_neighbors=[2, 2], edge_label_index=pos, batch_size=20,
              neg_sampling=dict(mode="triplet", amount=amount))
    for a, b in zip(LinkNeighborLoader(data, **kw), PygLinkLoader(data, **kw)):
        for key in ("src_index", "dst_pos_index", "dst_neg_index"):
            assert a[key].shape == b[key].shape and a[key].dtype == b[key].dtype, key
        assert "edge_label_index" not in a and "edge_label" not in a
        assert torch.equal(a.n_id[a.src_index], b.n_id[b.src_index])
        assert torch.equal(a.n_id[a.dst_pos_index], b.n_id[b.dst_pos_index])
        assert int(a.dst_neg_index.max()) < a.batch_size


def test_link_loader_defaults_to_every_edge_and_ratio(data):
    loader = LinkNeighborLoader(data, [2], batch_size=1000, neg_sampling_ratio=1.0)
    assert len(loader) == math.ceil(E / 1000)
    batch = next(iter(loader))
    assert torch.equal(_pairs(batch, batch.edge_label_index[:, :1000]), data.edge_index[:, :1000])
    assert batch.edge_label.sum() == 1000 and batch.edge_label.numel() == 2000


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, needle", [
    (dict(input_nodes="training"), "unknown split 'training'"),
    (dict(num_neighbors=[5, -2]), "num_neighbors=[5, -2]"),
    (dict(input_nodes=torch.tensor([0, N])), f"input_nodes contains node id {N}"),
    (dict(input_nodes=torch.tensor([-1, 2])), "input_nodes contains node id -1"),
    (dict(input_nodes=torch.ones(N + 1, dtype=torch.bool)), "input_nodes is a mask of"),
    (dict(x=np.zeros((N - 1, 3), np.float32)), f"x has {N - 1} rows but the graph has {N} nodes"),
    (dict(y=np.zeros(N + 2, np.int64)), f"y has {N + 2} rows"),
    (dict(device="gpu0"), "device='gpu0'"),
    (dict(device="cuda:7") if torch.cuda.is_available() else dict(device="cuda"), "device='cuda"),
    (dict(features="disk"), "features='disk'"),
    (dict(layout="pyg", aggregate_first_hop=True), "aggregate_first_hop=True needs layout='block'"),
    (dict(disjoint=True), "disjoint=True is not supported"),
    (dict(batch_size=0), "batch_size must be an int >= 1, got 0"),
])
def test_bad_input_is_one_line_naming_the_argument(data, kwargs, needle):
    kwargs = {"num_neighbors": [3, 2], **kwargs}
    with pytest.raises(GnnsysError) as info:
        NeighborLoader(data, **kwargs)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg


def test_bad_link_input(data):
    cases = [
        (dict(edge_label_index=torch.tensor([[0, 1], [2, N + 5]])), f"node id {N + 5}"),
        (dict(edge_label_index=torch.zeros((3, 4), dtype=torch.long)), "[2, M]"),
        (dict(edge_label=torch.ones(3)), "edge_label has (3,) entries"),
        (dict(neg_sampling="ternary"), "'ternary' is unknown"),
        (dict(neg_sampling=dict(mode="triplet", amount=1.5)), "must be an integer for 'triplet'"),
        (dict(neg_sampling="triplet", edge_label=torch.ones(E)), "edge_label must be None"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(GnnsysError) as info:
            LinkNeighborLoader(data, [2], **kwargs)
        assert needle in str(info.value) and isinstance(info.value, ValueError), kwargs


def test_bad_data_and_unknown_dataset_split(tiny):
    with pytest.raises(ConfigError, match="data must be a gnnsys dataset"):
        NeighborLoader(object(), [2])
    with pytest.raises(ConfigError, match="unknown split 'dev': this dataset has 'test', 'train', 'valid'"):
        NeighborLoader(tiny, [2], input_nodes="dev")
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        NeighborLoader(tiny, [2], bogus=1)


def test_inconsistent_data_is_refused():
    data = make_data()
    data.num_nodes = N + 10  # more nodes than rows of x
    with pytest.raises(GnnsysError, match=f"data.x has {N} rows but the graph has {N + 10} nodes"):
        NeighborLoader(data, [2])
    data = make_data()
    data.edge_index = data.edge_index.clone()
    data.edge_index[0, 5] = N + 3
    with pytest.raises(GnnsysError, match=f"data.edge_index: .*node id {N + 3}"):
        NeighborLoader(data, [2])


def test_weight_attr_samples_only_weighted_edges():
    data = make_data()
    data.edge_weight = (torch.arange(E) % 2 == 0).float()  # odd-numbered edges never sampled
    heavy = {(int(s), int(d)) for s, d, w in zip(*data.edge_index, data.edge_weight) if w > 0}
    light = _edge_set(data) - heavy
    seen = set()
    for batch in NeighborLoader(data, [3, 3], batch_size=64, weight_attr="edge_weight"):
        seen |= set(zip(*batch.n_id[batch.edge_index].tolist()))
    assert seen and seen <= heavy and not seen & light


def test_edge_attributes_are_named_in_a_warning():
    data = make_data(edge_attr=torch.randn(E, 3))
    with pytest.warns(UserWarning, match="edge attributes edge_attr"):
        NeighborLoader(data, [2])


def test_example_custom_loop_runs(planetoid_root):
    """examples/pyg_custom_loop.py: PyG's Planetoid and GraphSAGE, a hand-written loop."""
    script = Path(__file__).resolve().parents[1] / "examples" / "pyg_custom_loop.py"
    res = subprocess.run([sys.executable, "-W", "ignore", str(script), "--root", str(planetoid_root),
                          "--epochs", "2"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("test acc ")
    assert 0.0 <= float(lines[-1].split()[-1]) <= 1.0
