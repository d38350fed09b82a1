"""GraphSAGE on sampled blocks, layer-wise full inference, link decoders, the embedding input."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gnnsys.errors import ConfigError
from gnnsys.loader.batch import Batch
from gnnsys.models import (FeatureFreeEncoder, GraphSAGE, LinkModel, MLPDecoder, get_model_spec,
                           make_decoder, resolve_options, supports_inference)
from gnnsys.models.sage import block_adjacency
from samplers import NeighborSampler


def _graph(n: int = 60, m: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = sp.coo_matrix((np.ones(m), (rng.integers(0, n, m), rng.integers(0, n, m))), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.float32).tocsc()  # column v holds v's in-neighbours
    a.sort_indices()
    return SimpleNamespace(indptr=a.indptr.astype(np.int64), indices=a.indices.astype(np.int32), num_nodes=n)


def _batch(graph, x: torch.Tensor, seeds: np.ndarray, fanouts: list[int], seed: int = 0) -> Batch:
    sub = NeighborSampler(graph, fanouts, seed=seed).sample_from_nodes(seeds, batch_seed=1)
    return Batch(subgraph=sub, batch_size=len(seeds), x=x[torch.from_numpy(sub.nodes)])


def _dense_sage(model: GraphSAGE, x: torch.Tensor, graph) -> torch.Tensor:
    """Reference: mean aggregation with a dense normalised adjacency, layer by layer."""
    n = graph.num_nodes
    a = torch.zeros(n, n)
    for v in range(n):
        for u in graph.indices[graph.indptr[v]:graph.indptr[v + 1]]:
            a[v, int(u)] = 1.0
    deg = a.sum(1, keepdim=True).clamp(min=1)
    h = x
    for i, conv in enumerate(model.convs):
        h = conv.lin_l((a @ h) / deg) + conv.lin_r(h)
        if i < model.num_layers - 1:
            h = torch.relu(model.norms[i](h))
    return h


@pytest.mark.parametrize("batchnorm", [False, True])
def test_full_neighbourhood_blocks_equal_dense_reference_and_inference(batchnorm: bool) -> None:
    g = _graph()
    torch.manual_seed(0)
    x = torch.randn(g.num_nodes, 7)
    model = GraphSAGE(7, 16, 5, num_layers=3, dropout=0.5, batchnorm=batchnorm).eval()
    if batchnorm:  # non-trivial running statistics
        for bn in model.norms:
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    seeds = np.array([5, 0, 17, 42, 3], dtype=np.int64)
    out = model(_batch(g, x, seeds, [-1, -1, -1]))
    ref = _dense_sage(model, x, g)
    full = model.inference(x, g, chunk_bytes=64 * 4 * 7)  # many small chunks
    assert out.shape == (5, 5)
    torch.testing.assert_close(out, ref[torch.from_numpy(seeds)], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(full, ref, rtol=1e-4, atol=1e-5)


def test_inference_accepts_half_precision_inputs_and_requires_eval() -> None:
    g = _graph()
    x = torch.randn(g.num_nodes, 4)
    model = GraphSAGE(4, 8, 3, num_layers=2)
    with pytest.raises(RuntimeError, match="eval"):
        model.inference(x, g)
    model.eval()
    a = model.inference(x.to(torch.bfloat16), g)
    b = model.inference(x.to(torch.bfloat16).float(), g)
    torch.testing.assert_close(a, b)


def test_sampled_forward_trims_and_gradients_reach_every_parameter() -> None:
    g = _graph(200, 1500)
    x = torch.randn(g.num_nodes, 6)
    model = GraphSAGE(6, 12, 4, num_layers=2, dropout=0.3, batchnorm=True, input_dropout=True).train()
    batch = _batch(g, x, np.arange(0, 40, 2), [4, 3])
    out = model(batch)
    assert out.shape == (20, 4)
    out.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_sparse_block_aggregation_matches_edge_list_forward_and_backward() -> None:
    """The CPU path aggregates over a CSR block (one sparse-dense product); outputs and every
    gradient equal the edge-list (index_add) path that GPUs take, also for blocks whose edges are not grouped
    by destination."""
    g = _graph(200, 1500)
    x = torch.randn(g.num_nodes, 6)
    batch = _batch(g, x, np.arange(0, 60, 3), [5, 4])
    batch.x.requires_grad_()  # as a learnable embedding's rows are: the aggregation's backward runs
    model = GraphSAGE(6, 12, 4, num_layers=2, dropout=0.0, batchnorm=True).train()
    out = model(batch)
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    x_grad = batch.x.grad.clone()
    assert x_grad.abs().sum() > 0
    model.zero_grad()
    batch.x.grad = None
    h = batch.x.float()
    for i, conv in enumerate(model.convs):  # the edge-list reference
        hop = batch.subgraph.hops[1 - i]
        h = conv(h[: hop.num_src], h[: hop.num_dst], torch.from_numpy(hop.edge_index))
        if i == 0:
            h = model._inner(0, h)
    torch.testing.assert_close(out, h[:20])
    h[:20].square().sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, msg=n)
    torch.testing.assert_close(x_grad, batch.x.grad)
    hop = batch.subgraph.hops[0]
    perm = np.random.default_rng(0).permutation(hop.edge_index.shape[1])
    dense = block_adjacency(hop.edge_index, hop.num_dst, hop.num_src).to_dense()
    torch.testing.assert_close(block_adjacency(hop.edge_index[:, perm], hop.num_dst, hop.num_src).to_dense(), dense)
    ref = torch.zeros(hop.num_dst, hop.num_src)
    ref[hop.edge_index[1], hop.edge_index[0]] = 1.0
    torch.testing.assert_close(dense, ref)


def test_too_few_hops_and_missing_features_are_config_errors() -> None:
    g = _graph()
    x = torch.randn(g.num_nodes, 3)
    model = GraphSAGE(3, 4, 2, num_layers=3)
    with pytest.raises(ConfigError, match="3 layers"):
        model(_batch(g, x, np.arange(4), [2, 2]))
    b = _batch(g, x, np.arange(4), [2, 2, 2])
    b.x = None
    with pytest.raises(ConfigError, match="features"):
        model(b)


def test_spec_validates_options() -> None:
    spec = get_model_spec("sage")
    opts = resolve_options(spec, {"num_layers": 2, "fanouts": [10, 5]})
    assert isinstance(spec.build(8, 3, opts), GraphSAGE)
    for bad, msg in [({"fanouts": [10, 5]}, "num_layers=3"), ({"hidden": 0}, "hidden"),
                     ({"dropout": 1.0}, "dropout"), ({"fanouts": [10, 0, 5]}, "fanouts"),
                     ({"num_layers": 0}, "num_layers")]:
        with pytest.raises(ConfigError, match=msg):
            resolve_options(spec, bad)
    with pytest.raises(ConfigError, match="unknown model"):
        get_model_spec("transformerxl")


def test_decoders_and_link_model() -> None:
    torch.manual_seed(0)
    h = torch.randn(6, 4)
    ei = torch.tensor([[0, 1, 2], [3, 4, 5]])
    dot = LinkModel(torch.nn.Identity(), make_decoder("dot", 4))
    torch.testing.assert_close(dot.score(h, ei), (h[ei[0]] * h[ei[1]]).sum(-1))
    mlp = make_decoder("mlp", 4, hidden=8, num_layers=2, dropout=0.0)
    assert isinstance(mlp, MLPDecoder) and mlp(h[:3], h[3:]).shape == (3,)
    # the MLP decoder is symmetric in its inputs (Hadamard product)
    torch.testing.assert_close(mlp(h[:3], h[3:]), mlp(h[3:], h[:3]))
    with pytest.raises(ConfigError, match="decoder"):
        make_decoder("bilinear", 4)
    assert not supports_inference(dot)


def test_feature_free_encoder_feeds_embeddings_and_supports_inference() -> None:
    g = _graph()
    model = FeatureFreeEncoder(GraphSAGE(8, 8, 8, num_layers=2), g.num_nodes, 8).eval()
    sub = NeighborSampler(g, [-1, -1]).sample_from_nodes(np.array([1, 2, 3]), batch_seed=0)
    out = model(Batch(subgraph=sub, batch_size=3))
    full = model.inference(None, g)
    torch.testing.assert_close(out, full[1:4], rtol=1e-4, atol=1e-5)
    assert supports_inference(model) and supports_inference(LinkModel(model, make_decoder("dot", 8)))
    out.sum().backward()
    assert model.embedding.weight.grad is not None


@pytest.mark.parametrize("seed", [0, 7])
def test_mean_sage_conv_is_pyg_sageconv_weights_outputs_and_gradients(seed: int) -> None:
    """Same seed, same initial weights as PyG's SAGEConv(aggr="mean"), bit for bit; the same
    outputs and gradients over a CSR block and over an edge list (unsorted, duplicate edges,
    destinations without edges); checkpoints load across the two."""
    from torch_geometric.nn import SAGEConv

    from gnnsys.models.sage import MeanSAGEConv

    torch.manual_seed(seed)
    ours = MeanSAGEConv(6, 5)
    torch.manual_seed(seed)
    ref = SAGEConv(6, 5, aggr="mean")
    assert ours.state_dict().keys() == ref.state_dict().keys()
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    rng = np.random.default_rng(seed)
    num_src, num_dst = 30, 12
    ei = np.stack([rng.integers(0, num_src, 80), rng.integers(0, num_dst - 3, 80)])  # 3 empty rows
    ei = np.concatenate([ei, ei[:, :5]], axis=1)  # duplicates
    x = torch.randn(num_src, 6, dtype=torch.float64).float().requires_grad_()
    edge_index = torch.from_numpy(ei)
    want = ref((x, x[:num_dst]), edge_index)
    (gx_ref,) = torch.autograd.grad(want.square().sum(), x)
    for adj in (edge_index, block_adjacency(ei, num_dst, num_src)):
        got = ours(x, x[:num_dst], adj)
        torch.testing.assert_close(got, want)
        (gx,) = torch.autograd.grad(got.square().sum(), x)
        torch.testing.assert_close(gx, gx_ref)
    other = SAGEConv(6, 5, aggr="mean")
    other.load_state_dict(ours.state_dict())
    torch.testing.assert_close(other((x, x[:num_dst]), edge_index), ours(x, x[:num_dst], edge_index))


def test_training_and_scoring_graphsage_does_not_import_pyg(tmp_path) -> None:
    """Importing PyG costs every process about 4 s and 110 MiB here (each rank of a distributed
    run): GraphSAGE training and OGB scoring (node accuracy, link Hits@K) must not pull it in."""
    import subprocess
    import sys

    code = (
        "import sys, json; from gnnsys.train import TrainConfig, train\n"
        "finals = [train(TrainConfig(dataset=ds, epochs=1, max_batches=2, progress=False, num_threads=1,\n"
        f"                           home={str(tmp_path / 'home')!r}, out={str(tmp_path)!r} + '/' + ds))['final']\n"
        "          for ds in ('tiny', 'link-tiny')]\n"
        "print(json.dumps([finals, 'torch_geometric' in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    (node, link), pyg_loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert not pyg_loaded
    # the same runs here (this process may have PyG loaded) give the very same scores
    from gnnsys.train import TrainConfig, train

    for ds, got in (("tiny", node), ("link-tiny", link)):
        want = train(TrainConfig(dataset=ds, epochs=1, max_batches=2, progress=False, num_threads=1,
                                 home=str(tmp_path / "home"), out=str(tmp_path / "here" / ds)))["final"]
        assert json.loads(json.dumps(want)) == got, ds


def test_csr_mean_backward_is_the_transpose_product() -> None:
    """csr_mean's own backward (a counting-sort transpose) passes gradcheck on a block with an
    empty row, duplicate edges and an unreferenced source, and matches torch's dense mean."""
    from gnnsys.models.sage import csr_mean

    edge_index = np.array([[0, 0, 3, 1, 1, 4, 0],    # sources (2 is never referenced)
                           [0, 0, 0, 2, 3, 3, 3]])   # destinations (row 1 is empty)
    adj = block_adjacency(edge_index, 4, 5)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: csr_mean(adj, t), (x,))
    dense = adj.to_dense().double()
    ref = dense / dense.sum(1, keepdim=True).clamp(min=1)
    torch.testing.assert_close(csr_mean(adj, x), ref @ x)


@pytest.mark.parametrize("num_layers, batchnorm", [(1, False), (3, False), (2, True)])
def test_first_layer_mean_from_the_batch_is_bit_for_bit_the_full_forward(num_layers, batchnorm) -> None:
    """A batch carrying ``x_agg`` (the loader's ``aggregate_first_hop``) gives the same outputs and
    parameter gradients as the batch with every sampled row, in training mode (same dropout)."""
    from gnnsys.models.sage import csr_mean

    g = _graph(200, 1500)
    torch.manual_seed(1)
    x = torch.randn(g.num_nodes, 7)
    seeds = np.arange(0, 200, 9)
    full = _batch(g, x, seeds, [6] * num_layers)
    hop = full.subgraph.hops[-1]
    agg = Batch(subgraph=full.subgraph, batch_size=full.batch_size, x=full.x[:hop.num_dst],
                x_agg=csr_mean(block_adjacency(hop.edge_index, hop.num_dst, hop.num_src), full.x))
    torch.manual_seed(2)
    model = GraphSAGE(7, 32, 5, num_layers=num_layers, dropout=0.5, batchnorm=batchnorm).train()
    outs, grads = [], []
    for b in (full, agg):
        model.zero_grad()
        torch.manual_seed(3)
        out = model(b)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    assert torch.equal(outs[0], outs[1])
    assert all(torch.equal(grads[0][k], grads[1][k]) for k in grads[0])
    model.input_dropout = True
    with pytest.raises(ConfigError, match="input_dropout"):
        model(agg)
    model.input_dropout = False
    more = _batch(g, x, seeds, [6] * (num_layers + 1))
    with pytest.raises(ConfigError, match="x_agg"):
        model(Batch(subgraph=more.subgraph, batch_size=more.batch_size, x=more.x, x_agg=agg.x_agg))


@pytest.mark.parametrize("num_src, num_dst", [(30, 12), (12, 12)])
def test_forward_prefix_is_the_layer_and_keeps_only_the_destination_rows(num_src, num_dst) -> None:
    """``forward_prefix(x, adj)`` gives ``forward(x, x[:num_dst], adj)`` bit for bit, the same
    gradients (float64 gradcheck included) and, when destinations are fewer than sources, saves
    no tensor that shares ``x``'s storage: the hidden state is freed after the forward pass."""
    from gnnsys.models.sage import MeanSAGEConv, sage_prefix

    rng = np.random.default_rng(3)
    ei = np.stack([rng.integers(0, num_src, 70), rng.integers(0, num_dst - 2, 70)])  # 2 empty rows
    adj = block_adjacency(ei, num_dst, num_src)
    torch.manual_seed(0)
    conv = MeanSAGEConv(6, 5)
    leaf = torch.randn(num_src, 6, requires_grad=True)
    x = leaf * 2.0  # an intermediate, as a hidden state is
    want = conv(x, x[:num_dst], adj)
    got = conv.forward_prefix(x, adj)
    assert torch.equal(got, want)
    storage = x.untyped_storage().data_ptr()
    shared = [t for t in got.grad_fn.saved_tensors
              if t is not None and t.untyped_storage().data_ptr() == storage]
    assert (not shared) if num_dst < num_src else len(shared) == 1
    up = torch.randn_like(want)
    g_want = torch.autograd.grad(want, [leaf, *conv.parameters()], up, retain_graph=True)
    g_got = torch.autograd.grad(got, [leaf, *conv.parameters()], up, retain_graph=True)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b)
    w = [p.detach().double().requires_grad_() for p in (conv.lin_l.weight, conv.lin_l.bias, conv.lin_r.weight)]
    xd = torch.randn(num_src, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, *p: sage_prefix(t, adj, *p), (xd, *w))
    with torch.no_grad():  # no gradient asked: nothing is copied, the values are the same
        torch.testing.assert_close(conv.forward_prefix(x, adj), want)
    with pytest.raises(ValueError, match="CSR"):
        conv.forward_prefix(x, torch.from_numpy(ei))


@pytest.mark.parametrize("num_src, num_dst", [(200, 80), (140, 140), (100, 60)])
def test_forward_prefix_with_relu_dropout_is_relu_dropout_then_the_layer(num_src, num_dst) -> None:
    """``forward_prefix(x, adj, relu_dropout=p)`` gives ``forward_prefix(relu_dropout(x, p), adj)``:
    the same values, the same elements dropped for the same torch seed, and the same gradients,
    including when the activated ``x`` (written in place) also feeds another branch; below the
    hashed kernels' size (100 x 128) both are torch's ReLU and dropout."""
    from gnnsys.models.dropout import relu_dropout
    from gnnsys.models.sage import MeanSAGEConv

    rng = np.random.default_rng(4)
    ei = np.stack([rng.integers(0, num_src, 900), rng.integers(0, num_dst, 900)])
    adj = block_adjacency(ei, num_dst, num_src)
    torch.manual_seed(0)
    conv = MeanSAGEConv(128, 16)
    leaf = torch.randn(num_src, 128, requires_grad=True)
    up = torch.randn(num_dst, 16)
    results = []
    for fused in (False, True):
        torch.manual_seed(9)
        x = leaf * 1.5
        if fused:
            out = conv.forward_prefix(x, adj, relu_dropout=0.3)
            act = x  # overwritten in place with relu_dropout(x)
        else:
            act = relu_dropout(x, 0.3, inplace=True)
            out = conv.forward_prefix(act, adj)
        loss = (out * up).sum()
        if num_src * 128 >= 16384:  # hashed kernels: x holds the activation, used a second time
            loss = loss + act[:7].sum()
        grads = torch.autograd.grad(loss, [leaf, *conv.parameters()])
        results.append((out.detach(), act.detach(), grads))
    (o0, a0, g0), (o1, a1, g1) = results
    assert torch.equal(o0, o1)
    if num_src * 128 >= 16384:
        assert torch.equal(a0, a1)
        assert (a0 == 0).float().mean() > 0.3  # dropout and ReLU did zero elements
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b)


def test_whole_graph_blocks_are_built_once_and_give_the_same_training_step() -> None:
    """Hops the sampler names with a ``block_id`` (the whole graph, every ogbl-ddi batch) are
    turned into CSR blocks and transposes once (BlockCache): the same outputs and gradients, bit
    for bit, as building them for each layer and batch; a copy of the model starts empty."""
    import copy
    import dataclasses

    g = _graph(120, 900)
    torch.manual_seed(0)
    x = torch.randn(g.num_nodes, 16)
    named = _batch(g, x, np.arange(g.num_nodes), [-1, -1])
    ids = {hop.block_id for hop in named.subgraph.hops}
    assert len(ids) == 1 and None not in ids
    plain = Batch(subgraph=dataclasses.replace(named.subgraph, hops=[dataclasses.replace(h, block_id=None)
                                                                     for h in named.subgraph.hops]),
                  batch_size=named.batch_size, x=named.x)
    torch.manual_seed(2)
    model = GraphSAGE(16, 32, 8, num_layers=2, dropout=0.5).train()
    results = []
    for b in (plain, named, named):
        model.zero_grad()
        torch.manual_seed(3)
        out = model(b)
        out.square().sum().backward()
        results.append([out.detach()] + [p.grad.clone() for p in model.parameters()])
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))
    adj, adj_t = model._blocks.get(named.subgraph.hops[0])
    assert model._blocks.get(named.subgraph.hops[1])[0] is adj and len(model._blocks._items) == 1
    assert torch.equal(adj_t.to_dense(), (adj.to_dense() / adj.to_dense().sum(1, keepdim=True).clamp(min=1)).t())
    assert len(copy.deepcopy(model)._blocks._items) == 0
