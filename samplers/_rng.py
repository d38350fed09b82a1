"""Counter-based random numbers for the sampling kernels.

Every random draw is a pure function of a key built from ``(seed, batch_seed, hop, node, j)``,
hashed with the SplitMix64 finaliser. There is no generator state, so results never depend on
the number of threads, on the order in which threads run, or on how a frontier is split.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MASK64 = (1 << 64) - 1


@njit(cache=True, nogil=True, inline="always")
def mix64(z):
    """SplitMix64 finaliser: a bijective avalanche hash of a ``uint64``."""
    z = uint64(z)
    z = (z ^ (z >> uint64(30))) * _M1
    z = (z ^ (z >> uint64(27))) * _M2
    return z ^ (z >> uint64(31))


@njit(cache=True, nogil=True, inline="always")
def node_key(hop_key, node):
    """Key of one node within one hop: ``hop_key`` combined with the node id (``int64``)."""
    return mix64(uint64(hop_key) ^ (uint64(node) * _GOLDEN))


@njit(cache=True, nogil=True, inline="always")
def draw(key, j):
    """The ``j``-th random ``uint64`` of a node key."""
    return mix64(uint64(key) + (uint64(j) + uint64(1)) * _GOLDEN)


@njit(cache=True, nogil=True, inline="always")
def below(r, n):
    """Map a random ``uint64`` ``r`` to an ``int64`` in ``[0, n)`` for ``n > 0``.

    Lemire's multiply-shift for ``n < 2**32`` (bias below ``n / 2**32``), modulo above.
    """
    if n < 4294967296:
        return below_small(r, n)
    return np.int64(uint64(r) % uint64(n))


@njit(cache=True, nogil=True, inline="always")
def below_small(r, n):
    """:func:`below` for ``0 < n < 2**32`` (the caller guarantees it): branch-free, so that a
    loop of draws vectorises."""
    return np.int64(((uint64(r) >> uint64(32)) * uint64(n)) >> uint64(32))


@njit(cache=True, nogil=True, inline="always")
def unit_open(r):
    """Map a random ``uint64`` to a ``float64`` in ``(0, 1]``."""
    return (np.float64(uint64(r) >> uint64(11)) + 1.0) * (1.0 / 9007199254740992.0)


def _mix64_py(z: int) -> int:
    z &= _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_key(*parts: int) -> int:
    """Fold integers (a seed, a batch seed, a hop, a purpose tag) into one ``uint64`` key.

    Pure Python; called once per hop, never per node.
    """
    key = 0x243F6A8885A308D3
    for p in parts:
        key = _mix64_py(key ^ _mix64_py(int(p) & _MASK64))
    return key
