"""Helpers for sharedstore's tests and benchmarks (not API)."""

import numba
import numpy as np

from . import _layout as L
from ._kernels.hashmap import hash_key


@numba.njit(cache=False)
def _find_colliding(seed, bits, n, state):
    out = np.empty((n, 16), dtype=np.uint8)
    found = 0
    x = np.uint64(state)
    key = np.empty(16, dtype=np.uint8)
    while found < n:
        x = x * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)
        for i in range(16):
            key[i] = np.uint8((x >> np.uint64((i % 8) * 8)) & np.uint64(0xFF)) ^ np.uint8(i * 31)
        if hash_key(key, L.V_BYTES, seed) & ((1 << bits) - 1) == 0:
            out[found] = key
            found += 1
    return out


def colliding_keys(seed: int, bits: int, n: int) -> list[bytes]:
    """``n`` distinct 16-byte keys whose map hashes under ``seed`` share their low ``bits`` bits
    (what an attacker who knew the seed could send)."""
    return [bytes(row) for row in _find_colliding(seed, bits, n, 12345)]
