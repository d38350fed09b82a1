"""GPS on hand-built batches: shapes, masks, groups, gradients, permutation equivariance, options."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gnnsys.errors import ConfigError
from gnnsys.loader.batch import Batch
from gnnsys.models.gps import DEFAULTS, GPS, GPSLayer, make_transform, seed_groups, validate_options
from samplers import NeighborSampler


class Graph:
    def __init__(self, n: int, m: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
        a = sp.csc_matrix((np.ones(2 * m), (np.r_[src, dst], np.r_[dst, src])), shape=(n, n))
        a.sum_duplicates()
        self.indptr = a.indptr.astype(np.int64)
        self.indices = a.indices.astype(np.int32)
        self.num_nodes = n


GRAPH = Graph(300, 900, 0)
IN_DIM, CLASSES = 12, 5


def make_batch(fanouts=(4, 3), seeds=None, seed=0) -> Batch:
    sampler = NeighborSampler(GRAPH, list(fanouts), seed=seed)
    seeds = np.arange(0, 40, 3) if seeds is None else seeds
    sub = sampler.sample_from_nodes(seeds, batch_seed=1)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(GRAPH.num_nodes, IN_DIM, generator=gen)[torch.from_numpy(sub.nodes)]
    y = torch.randint(0, CLASSES, (len(seeds),), generator=gen)
    return Batch(subgraph=sub, batch_size=len(seeds), x=x, y=y)


def options(**kw):
    o = dict(DEFAULTS, hidden=16, heads=2, fanouts=[4, 3], group_size=12, batch_size=len(range(0, 40, 3)))
    o.update(kw)
    return o


CONFIGS = [
    dict(local="gine", attention="performer", attn_group="subgraph", pe="rwse"),
    dict(local="gatedgcn", attention="exact", attn_group="subgraph", pe="none"),
    dict(local="sage", attention="exact", attn_group="seed", pe="lappe", pe_dim=4),
    dict(local="gine", attention="performer", attn_group="seed", pe="rwse"),
    dict(local="gatedgcn", attention="none", attn_group="seed", pe="rwse"),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_forward_shapes_and_every_parameter_gets_a_gradient(cfg):
    torch.manual_seed(0)
    opts = options(**cfg)
    batch = make_transform(opts, training=True)(make_batch())
    model = GPS(IN_DIM, CLASSES, opts)
    model.train()
    out = model(batch)
    assert out.shape == (batch.batch_size, CLASSES)
    torch.nn.functional.cross_entropy(out, batch.y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_subgraph_layout_uses_every_sampled_edge_and_rwse():
    opts = options(attention="performer", attn_group="subgraph", pe="rwse", pe_dim=5)
    batch = make_batch()
    batch = make_transform(opts, training=False)(batch)
    sub = batch.subgraph
    assert torch.equal(batch.extra["gps_edge_index"], torch.from_numpy(sub.edge_index))
    assert batch.extra["gps_mask"].shape == (1, sub.num_nodes)
    assert batch.extra["gps_pe"].shape == (sub.num_nodes, 5)
    hop_ids = batch.extra["gps_edge_attr"].numpy()
    assert np.array_equal(np.bincount(hop_ids, minlength=2), sub.num_sampled_edges)


@pytest.mark.parametrize("group_size", [1, 5, 40])
def test_seed_groups_are_breadth_first_neighbourhoods(group_size):
    batch = make_batch()
    sub = batch.subgraph
    g = seed_groups(sub, batch.batch_size, group_size)
    mask, tokens, counts = g["mask"], g["tokens"], g["mask"].sum(1)
    assert mask.shape == (batch.batch_size, group_size) and mask[:, 0].all()
    assert counts.max() <= group_size and tokens.size == counts.sum()
    assert np.array_equal(tokens[g["seed_tokens"]], np.arange(batch.batch_size))
    sampled = set(map(tuple, sub.edge_index.T.tolist()))
    starts = np.r_[0, np.cumsum(counts)]
    for b in range(batch.batch_size):
        grp = tokens[starts[b]:starts[b + 1]]
        assert len(set(grp.tolist())) == grp.size  # no node twice in a group
        sel = (g["edge_index"][1] >= starts[b]) & (g["edge_index"][1] < starts[b + 1])
        e = g["edge_index"][:, sel]
        assert ((e[0] >= starts[b]) & (e[0] < starts[b + 1])).all()  # edges stay in the group
        for s_tok, d_tok in e.T:
            assert (tokens[s_tok], tokens[d_tok]) in sampled
        # every non-seed token was reached by a group edge
        reached = set(tokens[e[0]].tolist()) | {b}
        assert reached == set(grp.tolist())
    if group_size == 40:  # big enough: the group is the seed's full 2-hop sampled tree
        b = 0
        hop0 = sub.hops[0].edge_index
        direct = set(hop0[0, hop0[1] == b].tolist())
        assert direct <= set(tokens[starts[b]:starts[b + 1]].tolist())


def _permute_layout(h, edge_index, mask, rng):
    """A permutation of the tokens within each group, and the relabelled inputs."""
    counts = mask.sum(1).numpy()
    starts = np.r_[0, np.cumsum(counts)]
    perm = np.concatenate([starts[i] + rng.permutation(c) for i, c in enumerate(counts)])
    perm = torch.from_numpy(perm)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return h[perm], inv[edge_index], perm


@pytest.mark.parametrize("local", ["gine", "gatedgcn", "sage"])
@pytest.mark.parametrize("attention,grouped", [("exact", True), ("performer", False), ("performer", True)])
def test_gps_layer_is_permutation_equivariant(local, attention, grouped):
    torch.manual_seed(1)
    rng = np.random.default_rng(2)
    dim = 16
    if grouped:
        counts = np.array([5, 1, 7, 3])
        mask = torch.from_numpy(np.arange(7)[None, :] < counts[:, None])
    else:
        counts = np.array([20])
        mask = torch.ones(1, 20, dtype=torch.bool)
    starts = np.r_[0, np.cumsum(counts)]
    t = int(counts.sum())
    ei = []
    for i, c in enumerate(counts):
        if c > 1:
            ei.append(starts[i] + rng.integers(0, c, (2, 3 * c)))
    edge_index = torch.from_numpy(np.concatenate(ei, axis=1))
    h = torch.randn(t, dim)
    attr = torch.randn(edge_index.shape[1], dim)
    layer = GPSLayer(dim, local, attention, heads=2, dropout=0.1, attn_dropout=0.1, performer_features=16)
    layer.eval()
    hp, eip, perm = _permute_layout(h, edge_index, mask, rng)
    with torch.no_grad():
        out = layer(h, edge_index, attr, mask)
        out_p = layer(hp, eip, attr, mask)
    torch.testing.assert_close(out_p, out[perm], atol=1e-4, rtol=1e-4)


def test_padding_tokens_do_not_change_group_outputs():
    """Exact attention with masks: a group's outputs do not depend on the other groups' sizes."""
    torch.manual_seed(0)
    layer = GPSLayer(8, "gine", "exact", heads=2, dropout=0.0, attn_dropout=0.0, performer_features=8).eval()
    h = torch.randn(6, 8)
    ei = torch.tensor([[1, 2], [0, 0]])
    m_small = torch.tensor([[True, True, True, False], [True, True, True, False]])
    m_big = torch.tensor([[True, True, True, False, False, False, False, False],
                          [True, True, True, False, False, False, False, False]])
    attr = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(layer(h, ei, attr, m_small), layer(h, ei, attr, m_big))


def test_bad_options_are_config_errors():
    validate_options(options())
    with pytest.raises(ConfigError, match="max_exact_nodes"):
        validate_options(options(attention="exact", attn_group="subgraph", batch_size=1024, fanouts=[15, 10, 5]))
    with pytest.raises(ConfigError, match="larger than the subgraph allows"):
        validate_options(options(attn_group="seed", pe="lappe", pe_dim=12, group_size=12))
    with pytest.raises(ConfigError, match="per-seed groups"):
        validate_options(options(attn_group="subgraph", pe="lappe", pe_dim=4))
    with pytest.raises(ConfigError, match="local"):
        validate_options(options(local="gat"))
    with pytest.raises(ConfigError, match="divisible"):
        validate_options(options(hidden=15, heads=2))
    with pytest.raises(ConfigError, match="group_size"):
        validate_options(options(group_size=0))


def test_exact_whole_subgraph_is_refused_per_batch_without_batch_size():
    opts = options(attention="exact", attn_group="subgraph", max_exact_nodes=10)
    opts.pop("batch_size")
    validate_options(opts)  # no batch size: cannot bound at configuration time
    with pytest.raises(ConfigError, match="max_exact_nodes=10"):
        make_transform(opts, training=True)(make_batch())


def test_model_without_transform_gives_clear_error():
    model = GPS(IN_DIM, CLASSES, options())
    with pytest.raises(ConfigError, match="make_transform"):
        model(make_batch())


def test_lappe_sign_flips_only_in_training_and_deterministic_per_batch():
    opts = options(attn_group="seed", pe="lappe", pe_dim=3)
    ev1 = make_transform(opts, training=False)(make_batch()).extra["gps_pe"]
    ev2 = make_transform(opts, training=False)(make_batch()).extra["gps_pe"]
    tr1 = make_transform(opts, training=True)(make_batch()).extra["gps_pe"]
    tr2 = make_transform(opts, training=True)(make_batch()).extra["gps_pe"]
    torch.testing.assert_close(ev1, ev2)
    torch.testing.assert_close(tr1, tr2)  # keyed by the batch, not by call order
    torch.testing.assert_close(tr1.abs(), ev1.abs())
    assert not torch.equal(tr1, ev1)  # some column of some group flipped
