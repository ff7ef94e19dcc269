"""Lists of any values (``store.vector()`` with no dtype, a ListRef): a map keyed by index.

Item ``i`` is the map entry of int key ``i``; the map's count is the list's length.  Appends
take the index under the map's lock, so several processes can append at once; reads are the
map's lock-free reads.
"""

import numpy as np
from numba import types as T

from .. import _layout as L
from .._jit import BYTES, MEM, kernel
from .hashmap import _delete_locked, _index_key, _lock_map, _map_words, _set_locked, _unlock_map
from .memory import float_to_bits


@kernel(T.int64(MEM, T.int64, T.int64, T.int64, T.int64, T.float64, BYTES))
def list_append(mem, token, h, vtag, ipay, fpay, vdata):
    """Append a value to list ``h`` under its lock (its key is the list's length); the new
    length, or a status."""
    e = _lock_map(mem, h, L.KIND_LIST, token)
    if e < 0:
        return e
    mw = _map_words(mem, e)
    n = mem[mw + L.M_COUNT]
    payload = float_to_bits(fpay) if vtag == L.V_FLOAT else ipay
    r = _set_locked(mem, mem.view(np.uint8), mw, _index_key(n), L.V_INT, vtag, payload, vdata)
    _unlock_map(mem, e)
    return n + 1 if r >= 0 else r


@kernel(T.int64(MEM, T.int64, T.int64, T.int64))
def list_truncate(mem, token, h, n):
    """Drop a list's items from index ``n`` on; the new length."""
    e = _lock_map(mem, h, L.KIND_LIST, token)
    if e < 0:
        return e
    mw = _map_words(mem, e)
    buf = mem.view(np.uint8)
    count = mem[mw + L.M_COUNT]
    for i in range(count - 1, max(n, 0) - 1, -1):
        _delete_locked(mem, buf, mw, _index_key(i), L.V_INT)
    _unlock_map(mem, e)
    return min(count, max(n, 0))
