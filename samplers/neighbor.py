"""Multi-hop uniform (or weighted) neighbourhood sampling for node and link batches."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from samplers import _fused, _hop, _negative, _relabel
from samplers._rng import stream_key
from samplers._validate import (
    check_batch_seed,
    check_fanouts,
    check_graph,
    check_ids,
    check_weights,
)
from samplers.errors import SamplerInputError
from samplers.types import Hop, SampledSubgraph

NEG_MODES = ("uniform", "per_source", "exclude_existing", "random_pairs")
LAYOUTS = ("block", "pyg")

# Purpose tags mixed into the RNG key so hop draws and negative draws never share a stream.
_TAG_HOP = 0x686F70
_TAG_NEG = 0x6E6567
# Idle scratch buffers kept per sampler (each holds an [N] map and per-thread [N / 8] bitmaps).
_MAX_FREE_SCRATCH = 4


class _ScratchPool:
    """Relabelling buffers reused across calls; one is checked out per concurrent call."""

    def __init__(self, num_nodes: int) -> None:
        self._num_nodes = num_nodes
        self._free: list[_relabel.Scratch] = []
        self._lock = threading.Lock()

    def acquire(self, threads: int | None = None) -> _relabel.Scratch:
        """A scratch with at least ``threads`` bitmaps (default: numba's current thread count)."""
        threads = threads or numba.get_num_threads()
        with self._lock:
            for i, s in enumerate(self._free):
                if s.num_threads >= threads:
                    return self._free.pop(i)
        return _relabel.Scratch(self._num_nodes, threads)

    def release(self, scratch: _relabel.Scratch) -> None:
        with self._lock:
            self._free.append(scratch)
            if len(self._free) > _MAX_FREE_SCRATCH:  # drop the one with the fewest threads
                self._free.remove(min(self._free, key=lambda s: s.num_threads))


class NeighborSampler:
    """Sample a fixed number of in-neighbours per node and hop from a CSC graph.

    Args:
        graph: any object with ``.indptr`` (int64 ``[N + 1]``) and ``.indices`` (int32/int64
            ``[E]``); the in-neighbours of ``v`` are ``indices[indptr[v]:indptr[v + 1]]``.
        fanouts: neighbours per node for each hop, ``-1`` = all of them.
        replace: sample with replacement (a node then gets exactly ``fanout`` edges if it has
            any neighbour); without replacement it gets ``min(fanout, degree)`` distinct ones.
        seed: sampler seed. Every draw is keyed by ``(seed, batch_seed, hop, node, j)``.
        weights: optional float ``[E]`` non-negative edge weights aligned with ``indices``
            (biased sampling; weight-0 edges are never sampled and do not count as degree).
        layout: ``"block"`` (default): hop ``k`` samples every node known before it
            (``nodes[:hops[k].num_dst]``), so each hop is a self-contained bipartite block and
            layer ``l`` of an ``L``-layer model runs on ``hops[L - 1 - l]`` alone (DGL's
            block semantics). ``"pyg"``: hop ``k`` samples only the nodes that hop ``k - 1``
            added (PyG's ``NeighborLoader``); layer ``l`` then uses the edges of hops
            ``0 .. L - 1 - l`` together, which is what PyG's ``trim_to_layer`` does.

    Attributes:
        before_hop: ``None``, or a callable given the int64 ids of the nodes whose neighbour
            lists a hop is about to read (the hop's frontier), before it reads them; its return
            value is ignored. The out-of-core loaders set it to queue the reads of those lists
            (``gnnsys.data.readahead``). It must not change the graph; samples do not depend on it.

    Results depend only on ``(seed, batch_seed, input)``: not on the number of threads, and not
    on the order in which batches are sampled. The sampler is safe to call from several
    threads at once (each call checks out its own scratch buffers).
    """

    def __init__(self, graph: Any, fanouts: Any, replace: bool = False, seed: int = 0,
                 weights: Any = None, layout: str = "block") -> None:
        self.indptr, self.indices, self.num_nodes = check_graph(graph)
        self.fanouts = check_fanouts(fanouts)
        if not isinstance(replace, (bool, np.bool_)):
            raise SamplerInputError(f"replace must be a bool, got {replace!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise SamplerInputError(f"seed must be an int, got {seed!r}")
        if layout not in LAYOUTS:
            raise SamplerInputError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.replace = bool(replace)
        self.seed = int(seed)
        self.layout = layout
        self._weighted = weights is not None
        if weights is None:
            self.weights = np.empty(0, np.float64)
            self._wdeg = np.empty(0, np.int64)
        else:
            self.weights = check_weights(weights, self.indices.size)
            self._wdeg = _hop.positive_degree(self.indptr, self.weights)
        self._pool = _ScratchPool(self.num_nodes)
        self._calls = itertools.count()
        self._edge_arrays: tuple[np.ndarray, np.ndarray] | None = None  # see _edge_lookup
        self._lazy_lock = threading.Lock()  # guards the arrays built on first use
        self._whole_edges: np.ndarray | None = None  # see _whole_graph
        # names this sampler's whole-graph block (Hop.block_id): unique per instance, kept by copies
        self._whole_block_id = f"whole-graph:{uuid.uuid4().hex}"
        self.before_hop: Callable[[np.ndarray], Any] | None = None

    @property
    def num_hops(self) -> int:
        return len(self.fanouts)

    # ------------------------------------------------------------------ node batches
    def sample_from_nodes(self, seeds: Any, batch_seed: int | None = None) -> SampledSubgraph:
        """Sample the ``len(fanouts)``-hop neighbourhood of ``seeds``.

        Args:
            seeds: non-empty 1-D integer ids in ``[0, N)`` (NumPy, list or CPU tensor).
            batch_seed: integer key of this batch; ``None`` uses an internal call counter.

        Returns:
            A :class:`SampledSubgraph` whose ``nodes`` start with ``seeds`` in the given order.
        """
        seeds = check_ids(seeds, self.num_nodes, "seeds")
        return self._sample(seeds, check_batch_seed(batch_seed, self._calls), None)

    # ------------------------------------------------------------------ link batches
    def sample_from_edges(self, src: Any, dst: Any, neg: str | None = "uniform", num_neg: int = 1,
                          exclude_target_edges: bool = False, batch_seed: int | None = None,
                          neg_dst: Any = None) -> SampledSubgraph:
        """Sample the union neighbourhood of the endpoints of positive pairs and their negatives.

        Args:
            src, dst: int ``[B]`` endpoints of the positive pairs ``src[i] -> dst[i]``.
            neg: ``"uniform"`` (``num_neg`` random destinations per positive),
                ``"per_source"`` (the same draws, also laid out as ``extra["neg_dst_index"]``
                ``[B, num_neg]`` for per-source ranking as in OGB's MRR evaluation),
                ``"exclude_existing"`` (like uniform, but a negative is never an existing edge
                ``src[i] -> d`` nor ``d == src[i]``), ``"random_pairs"`` (``num_neg * B``
                pairs with both ends uniformly random, never a self loop nor an existing edge:
                PyG's binary ``negative_sampling``, as in OGB's ddi/collab examples, so that
                negatives share no source with the positives), or ``None`` (positives only).
            num_neg: negatives per positive (``>= 1``).
            exclude_target_edges: remove the positive pairs (both directions) from the
                message-passing subgraph, at every hop.
            batch_seed: as in :meth:`sample_from_nodes`.
            neg_dst: optional int ``[B, K]`` given negative destinations (e.g. a dataset's
                fixed per-source evaluation negatives) used instead of sampled ones; laid out
                as for ``"per_source"``. ``neg`` must then be ``None`` or ``"per_source"``.

        Returns:
            A :class:`SampledSubgraph` whose seeds are the sorted unique endpoints of all pairs
            (``num_sampled_nodes[0]`` of them), with ``edge_label_index`` int64 ``[2, B * (1 +
            num_neg)]`` in local ids (positives first, then negatives source-major, or in draw
            order for ``random_pairs``) and ``edge_label`` float32 (1 positive, 0 negative).
        """
        src = check_ids(src, self.num_nodes, "src")
        dst = check_ids(dst, self.num_nodes, "dst")
        if src.shape != dst.shape:
            raise SamplerInputError(
                f"src and dst must have the same length, got {src.size} and {dst.size}")
        if neg is not None and neg not in NEG_MODES:
            raise SamplerInputError(f"neg must be one of {NEG_MODES} or None, got {neg!r}")
        if neg is not None and (isinstance(num_neg, bool) or not isinstance(num_neg, (int, np.integer))
                                or num_neg < 1):
            raise SamplerInputError(f"num_neg must be an int >= 1, got {num_neg!r}")
        if exclude_target_edges and self.num_nodes >= 2**31:
            raise SamplerInputError("exclude_target_edges needs a graph with fewer than 2**31 nodes")
        bs = check_batch_seed(batch_seed, self._calls)
        b = src.size
        if neg_dst is not None:
            if neg not in (None, "per_source"):
                raise SamplerInputError(
                    f"neg_dst gives the negatives explicitly; neg must be None or 'per_source', "
                    f"got {neg!r}")
            neg = "per_source"
            given = check_ids(np.asarray(neg_dst).reshape(-1), self.num_nodes, "neg_dst")
            if np.ndim(neg_dst) != 2 or np.shape(neg_dst)[0] != b:
                raise SamplerInputError(
                    f"neg_dst must have shape [B = {b}, K], got {np.shape(neg_dst)}")
            neg_dst = given.reshape(b, -1)
        elif neg is None:
            neg_dst = np.empty((b, 0), np.int64)
        elif neg == "random_pairs":
            neg_src, neg_dst = self._random_pairs(b * int(num_neg), bs)
        else:
            neg_dst = self._negatives(src, int(num_neg), neg == "exclude_existing", bs)
        paired = neg == "random_pairs"
        ends = [src, dst, neg_src, neg_dst] if paired else [src, dst, neg_dst.ravel()]
        seeds, inverse = _relabel.sorted_unique(np.concatenate(ends), self.num_nodes)
        negs = inverse[2 * b:]
        if paired:
            k = int(num_neg)
            neg_src_local, neg_dst_local = negs[:b * k], negs[b * k:]
        else:
            k = neg_dst.shape[1]
            neg_src_local, neg_dst_local = np.repeat(inverse[:b], k), negs
        label_src = np.concatenate([inverse[:b], neg_src_local])
        label_dst = np.concatenate([inverse[b:2 * b], neg_dst_local])
        exclusion = _exclusion(src, dst) if exclude_target_edges else None
        out = self._sample(seeds, bs, exclusion)
        out.edge_label_index = np.stack([label_src, label_dst])
        out.edge_label = np.concatenate([np.ones(b, np.float32), np.zeros(b * k, np.float32)])
        if neg == "per_source":
            out.extra["neg_dst_index"] = inverse[2 * b:].reshape(b, k)
        return out

    # ------------------------------------------------------------------ internals
    def _edge_lookup(self) -> tuple[np.ndarray, np.ndarray]:
        """``(sorted neighbour lists, edge bitmap or NO_BITMAP)`` of the graph
        (:func:`samplers._negative.edge_lookup`), built on first use."""
        with self._lazy_lock:
            if self._edge_arrays is None:
                self._edge_arrays = _negative.edge_lookup(self.indptr, self.indices, self.num_nodes)
            return self._edge_arrays

    def _negatives(self, src: np.ndarray, k: int, exclude: bool, batch_seed: int) -> np.ndarray:
        sorted_idx, bits = self._edge_lookup() if exclude else (self.indices, _negative.NO_BITMAP)
        out = np.empty((src.size, k), np.int64)
        key = np.uint64(stream_key(self.seed, batch_seed, _TAG_NEG))
        failed = _negative.sample_negatives(src, self.num_nodes, k, key, exclude, self.indptr,
                                            sorted_idx, bits, out)
        if failed.any():
            i = int(np.flatnonzero(failed)[0])
            raise SamplerInputError(
                f"no negative destination exists for source {int(src[i])}: it already has an edge "
                f"to every other node (neg='exclude_existing')")
        return out

    def _random_pairs(self, m: int, batch_seed: int) -> tuple[np.ndarray, np.ndarray]:
        if self.num_nodes < 2:
            raise SamplerInputError("neg='random_pairs' needs a graph with at least 2 nodes")
        pairs = _negative.random_pairs(m, self.num_nodes, stream_key(self.seed, batch_seed, _TAG_NEG, 1),
                                       self.indptr, *self._edge_lookup())
        if pairs is None:
            raise SamplerInputError("no negative pair exists: the graph already has every edge "
                                    "(neg='random_pairs')")
        return pairs

    def _sample(self, seeds: np.ndarray, batch_seed: int,
                exclusion: tuple[np.ndarray, np.ndarray] | None,
                profile: dict[str, float] | None = None, chunks: int | None = None) -> SampledSubgraph:
        """Sample around ``seeds``. ``profile``: see :meth:`_expand`; ``chunks``: split every
        frontier into this many chunks instead of one per thread (the result is the same for any
        value; tests use it)."""
        if exclusion is None and profile is None and self._covers_graph(seeds):
            return self._whole_graph()
        ex_nodes, ex_keys = exclusion if exclusion is not None else (_EMPTY, _EMPTY)
        scratch = self._pool.acquire(chunks)
        clean = False
        try:
            # the options are passed only when set: subclasses (the GPU sampler) override _expand
            opts = {k: v for k, v in (("profile", profile), ("chunks", chunks)) if v is not None}
            out = self._expand(seeds, batch_seed, ex_nodes, ex_keys, scratch, **opts)
            t = time.perf_counter() if profile is not None else 0.0
            _relabel.reset_map(scratch.gmap, out.nodes)
            if profile is not None:
                _tick(profile, "reset", t)
            clean = True
        finally:
            if clean:  # a failed call may leave dirty buffers: drop them instead of reusing
                self._pool.release(scratch)
        return out

    def _covers_graph(self, seeds: np.ndarray) -> bool:
        """Whether sampling ``seeds`` gives the whole graph: every fanout is ``-1`` (all
        neighbours), no edge weights (a weight-0 edge is never taken), the block layout, and the
        seeds are every node in id order (a link batch whose sorted unique endpoints cover the
        graph, as every ogbl-ddi batch does)."""
        n = self.num_nodes
        return (self.layout == "block" and all(f < 0 for f in self.fanouts) and not self._weighted
                and seeds.size == n
                and n > 0 and int(seeds[0]) == 0 and int(seeds[-1]) == n - 1
                and bool((seeds[1:] > seeds[:-1]).all()))

    def _whole_graph(self) -> SampledSubgraph:
        """The subgraph :meth:`_expand` builds when :meth:`_covers_graph` holds, without its hash
        probes: the relabelling is the identity, no hop adds a node, and every hop is the whole
        CSC (each node's in-neighbours in ``indices`` order), named by one ``block_id`` so that
        consumers can reuse what they build from it. Fresh arrays every call (callers own their
        batches); the same values, bit for bit (``tests/test_samplers_fused.py``)."""
        n, e = self.num_nodes, int(self.indices.size)
        with self._lazy_lock:
            if self._whole_edges is None:  # built once: [2, E] (in-neighbour, node), CSC order
                edges = np.empty((2, e), np.int64)
                edges[0] = self.indices
                edges[1] = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.indptr))
                self._whole_edges = edges
        hops = [Hop(edge_index=self._whole_edges.copy(), num_src=n, num_dst=n, block_id=self._whole_block_id)
                for _ in self.fanouts]
        return SampledSubgraph(nodes=np.arange(n, dtype=np.int64), hops=hops,
                               num_sampled_nodes=[n] + [0] * len(self.fanouts),
                               num_sampled_edges=[e] * len(self.fanouts))

    def _node_capacity(self, num_seeds: int) -> int:
        """An upper bound on a batch's node count: the seeds plus at most every other node, and
        at most what the fanouts can reach (``known * (1 + fanout)`` per hop)."""
        cap = num_seeds + self.num_nodes
        bound = num_seeds
        for fanout in self.fanouts:
            if fanout < 0 or bound >= cap:
                return cap
            bound += bound * fanout
        return min(cap, bound)

    def _expand(self, seeds: np.ndarray, batch_seed: int, ex_nodes: np.ndarray,
                ex_keys: np.ndarray, scratch: _relabel.Scratch,
                profile: dict[str, float] | None = None,
                chunks: int | None = None) -> SampledSubgraph:
        """Run the hops. ``profile``, when given, accumulates seconds per stage: ``init`` (seeds),
        ``plan`` (per-chunk edge counts), ``alloc`` (output arrays), ``expand`` (the fused
        sample + relabel kernel) and ``python`` (everything else), keyed ``"hop{k}/stage"``."""
        t = time.perf_counter() if profile is not None else 0.0
        b = seeds.size
        nhops = len(self.fanouts)
        # one spare slot: the branch-free numbering of _fused writes the next free slot on
        # every edge, new source or not
        nodes = np.empty(self._node_capacity(b) + 1, np.int64)
        scratch.reserve(0, b)
        nchunks = chunks or max(1, min(numba.get_num_threads(), scratch.num_threads))
        ebase = _fused.init_seeds(seeds, scratch.gmap, nodes, scratch.starts, scratch.avail,
                                  self.indptr, self.indices, self.weights, self._wdeg, ex_nodes,
                                  ex_keys, self.fanouts[0], self.replace,
                                  1 if 8 * b < _fused.SERIAL_HOP_EDGES else min(nchunks, b))
        if profile is not None:
            t = _tick(profile, "init", t)
        known = b
        frontier_start = 0
        hops: list[Hop] = []
        num_nodes_per_hop = [int(b)]
        num_edges_per_hop: list[int] = []
        for k, fanout in enumerate(self.fanouts):
            f0 = 0 if self.layout == "block" else frontier_start
            if k > 0 and self.layout == "block":  # the pyg layout's plan came with the last hop
                ebase = _fused.hop_plan(scratch.avail, f0, known, fanout, self.replace,
                                        min(nchunks, max(1, known - f0)))
                if profile is not None:
                    t = _tick(profile, f"hop{k}/plan", t)
            e = int(ebase[-1])
            if e < _fused.SERIAL_HOP_EDGES and ebase.size > 2:  # a small hop: one thread
                ebase = np.array([0, e], np.int64)
            scratch.reserve(e, known + e)
            edge_index = np.empty((2, e), np.int64)
            if profile is not None:
                t = _tick(profile, f"hop{k}/alloc", t)
            if self.before_hop is not None:
                self.before_hop(nodes[f0:known])
                if profile is not None:
                    t = _tick(profile, f"hop{k}/readahead", t)
            hop_key = np.uint64(stream_key(self.seed, batch_seed, _TAG_HOP, k))
            last = k + 1 == nhops
            m, ebase = _fused.hop_expand(
                self.indptr, self.indices, self.weights, self._wdeg, ex_nodes, ex_keys, fanout,
                self.replace, hop_key, nodes, scratch.starts, scratch.avail, f0, known, ebase,
                scratch.gmap, scratch.bitmaps, scratch.work, scratch.cand, edge_index[0],
                edge_index[1], not last, fanout if last else self.fanouts[k + 1], nchunks,
                _fused.SERIAL_RESOLVE_MAX)
            if profile is not None:
                t = _tick(profile, f"hop{k}/expand", t)
            m = int(m)
            hops.append(Hop(edge_index=edge_index, num_src=known + m, num_dst=known))
            frontier_start = known
            known += m
            num_nodes_per_hop.append(m)
            num_edges_per_hop.append(e)
        out = SampledSubgraph(nodes=nodes[:known], hops=hops, num_sampled_nodes=num_nodes_per_hop,
                              num_sampled_edges=num_edges_per_hop)
        if profile is not None:
            _tick(profile, "python", t)
        return out


def _tick(profile: dict[str, float], stage: str, since: float) -> float:
    """Add the seconds since ``since`` to ``profile[stage]``; return the current time."""
    now = time.perf_counter()
    profile[stage] = profile.get(stage, 0.0) + now - since
    return now


_EMPTY = np.empty(0, np.int64)


def _exclusion(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted destination ids and sorted ``(dst << 32) | src`` keys of both directions of pairs."""
    d = np.concatenate([dst, src])
    s = np.concatenate([src, dst])
    return np.unique(d), np.unique((d << 32) | s)
