"""Bad input to the samplers: a clear SamplerInputError (a ValueError) before any kernel runs."""

from __future__ import annotations

import numpy as np
import pytest

from samplers import NeighborSampler, SamplerInputError
from test_samplers_helpers import CSC, random_graph


@pytest.fixture(scope="module")
def sampler():
    return NeighborSampler(random_graph(10, 30, seed=0), [2, 2])


@pytest.mark.parametrize("seeds, match", [
    (np.array([0, 10]), "seeds contains id 10, out of range for a graph of 10 nodes"),
    (np.array([-1, 2]), "seeds contains the negative id -1"),
    (np.array([1.0, 2.0]), "seeds must hold integer node ids, got dtype float64"),
    (np.array([], dtype=np.int64), "seeds is empty"),
    (np.array([[1, 2]]), "seeds must be 1-D"),
    (np.array([True, False]), "seeds must hold integer node ids"),
    ("abc", "seeds must be 1-D"),
    (np.array(["a", "b"]), "seeds must hold integer node ids"),
])
def test_bad_seeds(sampler, seeds, match):
    with pytest.raises(SamplerInputError, match=match):
        sampler.sample_from_nodes(seeds)


def test_errors_are_value_errors(sampler):
    with pytest.raises(ValueError):
        sampler.sample_from_nodes([99])


@pytest.mark.parametrize("fanouts, match", [
    ([], "fanouts is empty"),
    (np.array([], dtype=np.int64), "fanouts is empty"),
    ([5, 0], r"fanouts\[1\] = 0 is invalid"),
    ([-2], r"fanouts\[0\] = -2 is invalid"),
    ([2.5], r"fanouts\[0\] must be an int"),
    ([True], r"fanouts\[0\] must be an int"),
    (5, "fanouts must be a list of ints"),
    ("15,10", "fanouts must be a list of ints"),
])
def test_bad_fanouts(fanouts, match):
    with pytest.raises(SamplerInputError, match=match):
        NeighborSampler(random_graph(10, 30), fanouts)


@pytest.mark.parametrize("graph, match", [
    (object(), "graph has no .indptr"),
    (CSC(np.array([0], np.int64), np.empty(0, np.int32), 0), "at least one node"),
    (CSC(np.array([1, 2], np.int64), np.array([0], np.int32), 1), r"indptr\[0\] must be 0"),
    (CSC(np.array([0, 3], np.int64), np.array([0], np.int32), 1), "must equal len"),
    (CSC(np.array([0, 2, 1, 2], np.int64), np.array([0, 1], np.int32), 3), "non-decreasing"),
    (CSC(np.array([0, 1], np.int64), np.array([5], np.int32), 1), r"must lie in \[0, 1\)"),
    (CSC(np.array([0, 1], np.int64), np.array([0.0]), 1), "integer dtype"),
])
def test_bad_graphs(graph, match):
    with pytest.raises(SamplerInputError, match=match):
        NeighborSampler(graph, [2])


@pytest.mark.parametrize("kwargs, match", [
    ({"weights": np.ones(3)}, r"weights must have shape \(35,\)"),
    ({"weights": -np.ones(35)}, "weights must be >= 0"),
    ({"weights": np.full(35, np.nan)}, "NaN or infinite"),
    ({"layout": "dgl"}, "layout must be one of"),
    ({"replace": "yes"}, "replace must be a bool"),
    ({"seed": 1.5}, "seed must be an int"),
])
def test_bad_options(kwargs, match):
    g = random_graph(10, 40, seed=0)
    assert g.indices.size == 35
    with pytest.raises(SamplerInputError, match=match):
        NeighborSampler(g, [2], **kwargs)


def test_bad_batch_seed(sampler):
    with pytest.raises(SamplerInputError, match="batch_seed must be an int"):
        sampler.sample_from_nodes([1], batch_seed="x")


def test_isolated_nodes_are_valid():
    g = CSC(np.array([0, 0, 1, 1], np.int64), np.array([0], np.int32), 3)  # nodes 0, 2 isolated
    sub = NeighborSampler(g, [3, 3]).sample_from_nodes([0, 2, 1])
    assert sub.nodes.tolist() == [0, 2, 1]
    assert sub.edge_index.tolist() == [[0, 0], [2, 2]]  # block layout: node 1 sampled at both hops
