"""The node-embedding trainer: DeepWalk, node2vec and LINE by SGNS over online samples.

    emb, stats = fit_embeddings(indptr, indices, EmbeddingOptions(model="node2vec", p=0.5, q=2))

Walks (or LINE's edge samples) are made chunk by chunk by :class:`~gnnsys.embedding.pool.SamplePool`
while the numba threads train the previous chunk's buckets (:mod:`gnnsys.embedding.sgns`). The
learning rate decays linearly with the words consumed, from ``lr`` to ``lr * 1e-4``, as
word2vec's. The result is a pure function of the graph, the options and the seed: it is the same
for any number of threads.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numba
import numpy as np

from samplers._rng import stream_key
from samplers.walks import random_walks, walk_order

from ..errors import ConfigError
from .pool import Chunk, SamplePool
from .sgns import (
    bucketize,
    edge_samples,
    hash_blocks,
    negative_table,
    skipgram_schedule,
    split_table,
    symmetric_schedule,
    train_rounds,
    walk_pairs,
)

MODELS = ("deepwalk", "node2vec", "line")
#: ``word2vec``: two tables, SGD, unigram negatives, GraphVite's blocks (this module);
#: ``pyg``: PyG's Node2Vec, one table, uniform negatives, SparseAdam (:mod:`.adam_trainer`)
OBJECTIVES = ("word2vec", "pyg")
UNIGRAMS = ("walks", "degree")
MIN_LR_FRACTION = 1e-4
_SAMPLE_TAG = 0x5A3B1E
_NEG_TAG = 0x4E6E67
_PART_TAG = 0x50A27
#: a new block partition costs O(N + table size); one every this many table entries' worth of
#: chunks keeps that at 2-3% of training at 1M nodes (60-103 ms per partition, one per 10 chunks
#: of ~300 ms; docs/embeddings.md)
_PARTITION_TABLE_ENTRIES = 1 << 20


@dataclass
class EmbeddingOptions:
    """Options of an embedding run (the defaults are DeepWalk's / GraphVite's).

    Attributes:
        model: ``deepwalk`` (uniform walks), ``node2vec`` (``p``, ``q`` walks) or ``line``.
        dim: embedding width.
        walk_length: nodes per walk (LINE: with ``walks_per_node``, sets the samples per epoch:
            ``N * walks_per_node * walk_length`` edges).
        context: skip-gram window (word2vec's ``window``; a reduced window is drawn per node).
        walks_per_node: walks started from every node per epoch.
        p, q: node2vec's return and in-out parameters.
        num_neg: negatives per positive sample.
        epochs: passes (fresh walks each epoch).
        lr: starting learning rate (word2vec's ``alpha``), decayed linearly to ``lr * 1e-4``.
        sample: word2vec's subsampling threshold of frequent nodes; 0 disables it.
        unigram: the node frequencies behind subsampling and the negative table (``count ** 0.75``):
            ``walks`` counts the nodes of the first epoch's walks, as word2vec's vocabulary counts
            its corpus (one extra pass that makes and counts the walks, trains nothing);
            ``degree`` (the default) takes the degree (no extra pass; LINE always uses the
            degree, as LINE's paper does). Measured on Cora and CiteSeer, ``walks`` did not
            improve the probe's valid micro-F1 (docs/embeddings.md), so it is not the default.
        order: LINE's proximity order, 1 or 2.
        partitions: blocks ``P`` of the vertex and context matrices (fixed, not the thread count,
            so that results do not depend on threads; LINE order 1 needs it even or 1). Which
            nodes form a block is redrawn every few chunks (:func:`_chunks_per_partition`).
        neg_share: consecutive samples of a bucket that share one draw of negatives (1:
            word2vec's draw per sample). 16 fetches the negatives' rows 16 times less often (at
            1M nodes about 1.4x faster than 4); with the samples in position-major order its
            linear-probe micro-F1 on Cora and CiteSeer is within noise of gensim's
            (docs/embeddings.md).
        chunk_walks: walks per chunk of the sample pool.
        pool_depth: chunks made ahead.
        objective: ``word2vec`` (the default: everything above) or ``pyg``, the objective and
            optimiser of PyG's ``Node2Vec`` as OGB's examples train it (one table, ``N(0, 1)``
            start, uniform negative walks, constant-``lr`` SparseAdam over ``batch_nodes`` start
            nodes per step; :mod:`gnnsys.embedding.adam_trainer`). Under ``pyg``, ``context`` is
            the nodes after each window's first node, ``num_neg`` the negative walks per walk,
            and ``sample``, ``unigram``, ``partitions``, ``neg_share``, ``chunk_walks`` and
            ``pool_depth`` do not apply.
        batch_nodes: ``pyg`` only: start nodes per optimiser step (PyG's loader ``batch_size``).
        seed: the one seed (initialisation, walks, windows, negatives).
    """

    model: str = "deepwalk"
    dim: int = 128
    walk_length: int = 80
    context: int = 10
    walks_per_node: int = 10
    p: float = 1.0
    q: float = 1.0
    num_neg: int = 5
    epochs: int = 1
    lr: float = 0.025
    sample: float = 1e-3
    unigram: str = "degree"
    order: int = 2
    partitions: int = 4
    neg_share: int = 16
    chunk_walks: int = 1024
    pool_depth: int = 1
    objective: str = "word2vec"
    batch_nodes: int = 256
    seed: int = 0

    def check(self) -> EmbeddingOptions:
        """Raise :class:`ConfigError` naming the first bad option (one line, with the fix)."""
        if self.model not in MODELS:
            raise ConfigError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.objective == "pyg" and self.model == "line":
            raise ConfigError("--objective pyg trains on random walks (PyG's Node2Vec); LINE samples "
                              "edges: use --model node2vec or deepwalk, or --objective word2vec")
        for k, lo in (("dim", 1), ("walk_length", 1), ("context", 1), ("walks_per_node", 1),
                      ("num_neg", 0), ("epochs", 1), ("partitions", 1), ("neg_share", 1), ("chunk_walks", 1),
                      ("pool_depth", 1), ("batch_nodes", 1), ("seed", 0)):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ConfigError(f"--{k.replace('_', '-')} must be an integer >= {lo}, got {v!r}")
        if self.model != "line" and self.walk_length < 2:
            raise ConfigError(f"--walk-length {self.walk_length}: a walk needs at least 2 nodes to "
                              "give a skip-gram sample; use e.g. --walk-length 80")
        if self.model != "line" and self.context >= self.walk_length:
            raise ConfigError(f"--context {self.context} must be smaller than --walk-length "
                              f"{self.walk_length} (a window reaches at most walk-length - 1 nodes "
                              "away); lower --context or raise --walk-length")
        for k in ("p", "q", "lr"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not v > 0:
                raise ConfigError(f"--{k} must be a finite number > 0, got {v!r}")
        if self.model == "deepwalk" and (self.p != 1 or self.q != 1):
            raise ConfigError(f"--p {self.p} --q {self.q}: DeepWalk walks uniformly; use "
                              "--model node2vec for p and q")
        if not (isinstance(self.sample, (int, float)) and 0 <= self.sample < 1):
            raise ConfigError(f"sample must be in [0, 1), got {self.sample!r}")
        if self.unigram not in UNIGRAMS:
            raise ConfigError(f"unigram must be one of {', '.join(UNIGRAMS)}, got {self.unigram!r}")
        if self.order not in (1, 2):
            raise ConfigError(f"LINE order must be 1 or 2, got {self.order!r}")
        if self.model != "line" and self.partitions ** 2 * self.walk_length > 1 << 26:
            raise ConfigError(f"--partitions {self.partitions} with --walk-length {self.walk_length}: "
                              "partitions^2 * walk-length must be at most 2^26 (the samples are "
                              "sorted by bucket and walk position); use fewer partitions")
        if self.model == "line" and self.order == 1 and self.partitions > 1 and self.partitions % 2:
            raise ConfigError(f"LINE order 1 needs an even number of partitions, got {self.partitions}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory_estimate(num_nodes: int, num_edges: int, opts: EmbeddingOptions) -> int:
    """Bytes a run holds: the two float32 matrices, the output copy, the negative table, the
    degree arrays, and ``pool_depth + 2`` chunks of samples (``pyg``: the table, its gradient
    and two Adam moments, and one step's walks and pair coefficients)."""
    if opts.objective == "pyg":
        walks = opts.batch_nodes * opts.walks_per_node * (1 + opts.num_neg)
        step = walks * opts.walk_length * 8 + walks * max(1, opts.walk_length - opts.context) * opts.context * 8
        return int(4 * num_nodes * opts.dim * 4 + num_nodes + step + num_edges * 4)
    mats = 3 * num_nodes * opts.dim * 4
    # the whole unigram table, plus a block map and cut table for each chunk alive (every chunk
    # may hold its own partition)
    alive = opts.pool_depth + 2
    table = (1 + alive) * _table_size(num_nodes) * 4 + num_nodes * (24 + 4 * alive)
    per_chunk = opts.chunk_walks * opts.walk_length * (2 * opts.context) * 8 * 2
    return int(mats + table + (opts.pool_depth + 2) * per_chunk + num_edges * 4)


def _table_size(num_nodes: int) -> int:
    return int(min(max(10 * num_nodes, 1 << 20), 1 << 27))


def _chunks_per_partition(table_size: int) -> int:
    """Chunks trained under one block partition: 1 up to a 2^20-entry unigram table (graphs up
    to ~100k nodes), then proportionally more (10 at 1M nodes).

    Why repartition at all: a sample ``(a, b)`` draws its negatives from ``b``'s block only (the
    price of lock-free blocks), so under one fixed partition node ``a`` is pushed away from the
    nodes that share a block with its contexts more than from the others, a bias that differs per
    node. A fresh partition every few chunks averages it out; measured on Cora (24 paired seeds)
    it is worth +0.33 +- 0.20 points of probe micro-F1 (docs/embeddings.md)."""
    return max(1, -(-int(table_size) // _PARTITION_TABLE_ENTRIES))


def _csc_destinations(indptr: np.ndarray) -> np.ndarray:
    n = indptr.shape[0] - 1
    dtype = np.int32 if n < 2**31 else np.int64
    return np.repeat(np.arange(n, dtype=dtype), np.diff(indptr))


class _Graph:
    def __init__(self, indptr: np.ndarray, indices: np.ndarray) -> None:
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices)


def _walks(g: _Graph, opts: EmbeddingOptions, order: np.ndarray, epoch: int, pass_in_epoch: int,
           lo: int, count: int, parallel: bool) -> np.ndarray:
    """The walks ``lo:lo + count`` of one pass (``order``: the pass's start permutation): walk
    ``j`` of pass ``k`` has id ``k * N + j`` in the epoch's stream, whatever the slab it is made in."""
    n = g.indptr.shape[0] - 1
    starts = order[lo:lo + count]
    wid0 = pass_in_epoch * n + lo
    return random_walks(g, starts, opts.walk_length, p=opts.p, q=opts.q, seed=opts.seed, epoch=epoch,
                        walk_ids=np.arange(wid0, wid0 + starts.size), parallel=parallel, checked=True)


def walk_counts(g: _Graph, opts: EmbeddingOptions, slab: int = 1 << 16) -> np.ndarray:
    """float64 ``[N]``: how often each node occurs in the first epoch's walks (the very walks the
    trainer makes; word2vec's vocabulary counts of its corpus). Made ``slab`` walks at a time by
    numba threads and dropped after counting."""
    n = g.indptr.shape[0] - 1
    counts = np.zeros(n, np.int64)
    for pss in range(opts.walks_per_node):
        order = walk_order(n, 1, opts.seed, pss)
        for lo in range(0, n, slab):
            w = _walks(g, opts, order, 0, pss, lo, slab, parallel=True)
            counts += np.bincount(w[w >= 0].astype(np.int64), minlength=n)
    return counts.astype(np.float64)


def fit_embeddings(indptr: np.ndarray, indices: np.ndarray, opts: EmbeddingOptions, *,
                   num_threads: int | None = None, progress: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Train node embeddings.

    Args:
        indptr: int64 ``[N + 1]``; indices: int ``[E]`` (CSC, sorted neighbour lists; undirected
            graphs store both directions).
        opts: the options (checked here).
        num_threads: numba threads for training (default: numba's).
        progress: a tqdm bar over the chunks.

    Returns:
        ``(embeddings float32 [N, dim], stats)``; ``stats`` has the loss per epoch, samples
        trained, seconds (walk making overlaps training) and samples per second.
    """
    opts.check()
    g = _Graph(indptr, indices)
    n = g.indptr.shape[0] - 1
    E = g.indices.shape[0]
    if E == 0:
        raise ConfigError("the graph has no edges: random walks and edge samples need at least one edge")
    if opts.objective == "pyg":
        from .adam_trainer import fit_embeddings_adam

        return fit_embeddings_adam(g, opts, num_threads=num_threads, progress=progress)
    deg = np.diff(g.indptr).astype(np.float64)
    P = int(opts.partitions)
    rng = np.random.default_rng([opts.seed, 0xE3B])
    counts = deg if opts.model == "line" or opts.unigram == "degree" else walk_counts(g, opts)
    # word2vec's unigram^0.75 table over all nodes; each partition cuts it into block segments
    unigram, _ = negative_table(counts ** 0.75, np.zeros(n, np.int32), 1, _table_size(n))
    # word2vec initialisation: vertex rows uniform in [-0.5/dim, 0.5/dim), context rows zero
    # (NumPy puts allocations this large on transparent huge pages itself: see
    # gnnsys/features/hugepages.py)
    emb_in = ((rng.random((n, opts.dim), dtype=np.float32) - np.float32(0.5)) / np.float32(opts.dim))
    line1 = opts.model == "line" and opts.order == 1
    emb_out = emb_in if line1 else np.zeros((n, opts.dim), np.float32)
    schedule = symmetric_schedule(P) if line1 else skipgram_schedule(P)
    keep = np.empty(0, np.float32)
    if opts.model != "line" and opts.sample > 0:
        freq = counts / counts.sum()
        with np.errstate(divide="ignore"):
            ratio = np.where(freq > 0, opts.sample / freq, np.inf)
        keep = np.minimum(1.0, np.sqrt(ratio) + ratio).astype(np.float32)
    sample_key = stream_key(opts.seed, _SAMPLE_TAG)
    neg_key = stream_key(opts.seed, _NEG_TAG)
    dst = _csc_destinations(g.indptr) if opts.model == "line" else None

    C = int(opts.chunk_walks)
    chunks_per_pass = -(-n // C)
    if opts.model == "line":
        per_epoch = n * opts.walks_per_node * opts.walk_length
        chunk_samples = C * opts.walk_length
        chunks_per_epoch = -(-per_epoch // chunk_samples)
        total_words = opts.epochs * per_epoch
    else:
        chunks_per_epoch = chunks_per_pass * opts.walks_per_node
        total_words = opts.epochs * n * opts.walks_per_node * opts.walk_length
    num_chunks = chunks_per_epoch * opts.epochs
    cap = C * opts.walk_length * 2 * opts.context if opts.model != "line" else C * opts.walk_length
    id_dtype = g.indices.dtype
    stride = 1 if opts.model == "line" else opts.walk_length  # walk samples: position-major

    every = _chunks_per_partition(unigram.shape[0]) if P > 1 else num_chunks
    part_key = stream_key(opts.seed, _PART_TAG)

    # the producer makes chunks in order, so each cache below holds only the current item
    @functools.lru_cache(maxsize=1)
    def pass_order(pass_id: int) -> np.ndarray:
        return walk_order(n, 1, opts.seed, pass_id)

    @functools.lru_cache(maxsize=1)
    def partition(pid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Block partition ``pid`` (chunk ``k`` uses ``k // every``: a fresh random one every
        ``every`` chunks, so that no node keeps the same block-mates; see
        :func:`_chunks_per_partition`) and the unigram table cut by it."""
        bo = hash_blocks(n, P, np.uint64(stream_key(part_key, pid)))
        return (bo, *split_table(unigram, bo, P))

    def make(k: int, words_before: int) -> Chunk:
        epoch, c = divmod(k, chunks_per_epoch)
        block_of, neg_table, neg_ptr = partition(k // every)
        a_raw = np.empty(cap, id_dtype)
        b_raw = np.empty(cap, id_dtype)
        keys = np.empty(cap, np.int32)
        if opts.model == "line":
            s0 = c * chunk_samples
            cnt = min(chunk_samples, per_epoch - s0)
            num = edge_samples(g.indptr, g.indices, dst, np.uint64(stream_key(sample_key, epoch)),
                               s0, cnt, block_of, P, line1, a_raw, b_raw, keys)
            words = cnt
        else:
            pss, cc = divmod(c, chunks_per_pass)
            wid0 = pss * n + cc * C
            walks = _walks(g, opts, pass_order(epoch * opts.walks_per_node + pss), epoch, pss, cc * C, C,
                           parallel=False)
            num, words = walk_pairs(walks, opts.context, keep, np.uint64(stream_key(sample_key, epoch)),
                                    wid0, block_of, P, a_raw, b_raw, keys)
        pa, pb, ptr = bucketize(a_raw, b_raw, keys, num, P, stride)
        return Chunk(k, epoch, pa, pb, ptr, int(words), int(words_before), block_of, neg_table, neg_ptr)

    old_threads = numba.get_num_threads()
    if num_threads is not None:
        numba.set_num_threads(max(1, min(int(num_threads), numba.config.NUMBA_NUM_THREADS)))
    losses = np.zeros(P * P, np.float64)
    epoch_loss = np.zeros(opts.epochs)
    epoch_samples = np.zeros(opts.epochs, np.int64)
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_chunks, desc=f"{opts.model} chunks", unit="chunk", leave=False)
    try:
        for chunk in SamplePool(make, num_chunks, opts.pool_depth):
            lr = np.float32(opts.lr * max(MIN_LR_FRACTION, 1.0 - chunk.words_before / max(1, total_words)))
            losses[:] = 0.0
            train_rounds(emb_in, emb_out, chunk.pairs_a, chunk.pairs_b, chunk.bucket_ptr, schedule,
                         chunk.block_of, chunk.neg_table, chunk.neg_ptr, int(opts.num_neg), int(opts.neg_share), lr,
                         np.uint64(stream_key(neg_key, chunk.index)), losses)
            epoch_loss[chunk.epoch] += losses.sum()
            epoch_samples[chunk.epoch] += chunk.pairs_a.shape[0]
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        numba.set_num_threads(old_threads)
    seconds = time.perf_counter() - t0
    total = int(epoch_samples.sum())
    stats = {
        "epoch_loss": [float(x / max(1, s)) for x, s in zip(epoch_loss, epoch_samples)],
        "samples": total,
        "seconds": seconds,
        "samples_per_second": total / seconds if seconds > 0 else None,
        "isolated_nodes": int((deg == 0).sum()),
        "chunks": num_chunks,
    }
    return emb_in, stats
