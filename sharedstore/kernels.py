"""Shared maps from your own ``@numba.njit`` code.

The functions here are numba functions: call them from inside your jitted code (they compile
into it), passing the store's memory array and a map's id::

    import numba, sharedstore as ss
    from sharedstore.kernels import map_get_float, map_set_float

    @numba.njit(nogil=True)
    def accumulate(mem, token, map_id, keys, xs):
        for i in range(len(keys)):
            old = map_get_float(mem, map_id, keys[i], 0.0)
            status = map_set_float(mem, token, map_id, keys[i], old + xs[i])
            if status < 0:          # e.g. STATUS_COMMIT: call store.reserve(n) and run again
                return status
        return 0

    m = store.map()
    store.reserve(1 << 20)                    # commit memory for the writes ahead
    accumulate(store.mem, store.token, m.id, np.arange(10), np.ones(10))

Keys may be integers (int64), ``str`` (unicode) or bytes / uint8 arrays; they are the same keys
Python uses (``m[3]``, ``m["a"]``, ``m[b"a"]``).  Reads never lock.  Writes take the map's lock
inside the call and return a status: 1 (new key), 0 (replaced), or a negative status:

- ``STATUS_COMMIT``: the store needs more committed memory; call ``store.reserve(nbytes)`` from
  Python, then repeat the write.
- ``STATUS_BUSY``: a lock stayed busy past the spin budget; repeat (or go back to Python, where
  ``store`` takes locks over from dead owners).
- other negative values: the id is stale or invalid (see ``sharedstore._kernels.status``).

Values are numbers: a float read of an int value converts it; a missing key, or a value that is
not a number, gives ``default``.

Vectors: read them through ``vector_ref.view()`` (a NumPy array your jitted code takes as is);
append with :func:`vector_append` (records as a 1-d array of the vector's dtype) and read the
length with :func:`vector_length`.
"""

import numpy as np
from numba import carray, types
from numba.cpython.unicode import _get_code_point  # code points without a str per char
from numba.extending import overload

from . import _layout as L
from ._jit import helper
from ._kernels import status as _S
from ._kernels.atomics import float_from_bits, float_to_bits
from ._kernels.hashmap import _index_key, lookup, store_value
from ._kernels.pyapi import unowned
from ._kernels.vector import append_bytes, vector_length

STATUS_COMMIT = _S.ERR_COMMIT
STATUS_BUSY_LOCK = _S.ERR_BUSY_OBJ
STATUS_BUSY_ALLOC = _S.ERR_BUSY_ALLOC
STATUS_NOT_FOUND = _S.ERR_NOT_FOUND
_EMPTY = np.zeros(0, dtype=np.uint8)


def key_bytes(key):
    """``(bytes of key as a uint8 array, key tag)`` in the encoding maps use (jitted code only)."""
    raise NotImplementedError("key_bytes is for use inside @numba.njit functions")


@helper
def _utf8(s):
    out = np.empty(4 * len(s), dtype=np.uint8)
    n = 0
    for i in range(len(s)):
        c = _get_code_point(s, i)
        if c < 0x80:
            out[n] = c
            n += 1
        elif c < 0x800:
            out[n] = 0xC0 | (c >> 6)
            out[n + 1] = 0x80 | (c & 0x3F)
            n += 2
        elif c < 0x10000:
            out[n] = 0xE0 | (c >> 12)
            out[n + 1] = 0x80 | ((c >> 6) & 0x3F)
            out[n + 2] = 0x80 | (c & 0x3F)
            n += 3
        else:
            out[n] = 0xF0 | (c >> 18)
            out[n + 1] = 0x80 | ((c >> 12) & 0x3F)
            out[n + 2] = 0x80 | ((c >> 6) & 0x3F)
            out[n + 3] = 0x80 | (c & 0x3F)
            n += 4
    return out[:n]


@helper
def _str_bytes(s):
    """The UTF-8 bytes of ``s``: an ASCII string's own data (no copy), else encoded."""
    if s._is_ascii:
        return carray(s._data, len(s), np.uint8)  # ASCII: one byte per character already
    return _utf8(s)


@overload(key_bytes)
def _key_bytes(key):
    if isinstance(key, types.Integer):
        return lambda key: (_index_key(np.int64(key)), L.V_INT)
    if isinstance(key, types.UnicodeType):
        return lambda key: (_str_bytes(key), L.V_STR)
    if isinstance(key, (types.Bytes, types.Array)):
        return lambda key: (key, L.V_BYTES)
    return None


@helper
def map_lookup(mem, map_id, key):
    """``(value tag or negative status, payload word)`` of ``key``; tags are ``_layout.V_*``."""
    kb, kt = key_bytes(key)
    return lookup(unowned(mem), map_id, kb, kt)


@helper
def map_get_float(mem, map_id, key, default):
    """The number stored under ``key`` as a float, or ``default``."""
    tag, payload = map_lookup(mem, map_id, key)
    if tag == L.V_FLOAT:
        return float_from_bits(payload)
    if tag == L.V_INT:
        return float(payload)
    return default


@helper
def map_get_int(mem, map_id, key, default):
    """The integer stored under ``key``, or ``default`` (also for a float value)."""
    tag, payload = map_lookup(mem, map_id, key)
    if tag == L.V_INT:
        return payload
    return default


@helper
def map_set_float(mem, token, map_id, key, value):
    """Store float ``value`` under ``key``: 1 (new key), 0 (replaced) or a negative status."""
    kb, kt = key_bytes(key)
    return store_value(unowned(mem), token, map_id, kb, kt, L.V_FLOAT, float_to_bits(float(value)),
                       _EMPTY)


@helper
def map_set_int(mem, token, map_id, key, value):
    """Store int ``value`` under ``key``: 1 (new key), 0 (replaced) or a negative status."""
    kb, kt = key_bytes(key)
    return store_value(unowned(mem), token, map_id, kb, kt, L.V_INT, np.int64(value), _EMPTY)


@helper
def vector_append(mem, token, vector_id, values):
    """Append ``values`` (a 1-d array of the vector's dtype) to a shared vector: the new length,
    or a negative status (``STATUS_COMMIT``: call ``store.reserve`` from Python first)."""
    return append_bytes(unowned(mem), token, vector_id, values.view(np.uint8))


__all__ = [
    "vector_append",
    "vector_length",
    "STATUS_BUSY_ALLOC",
    "STATUS_BUSY_LOCK",
    "STATUS_COMMIT",
    "STATUS_NOT_FOUND",
    "key_bytes",
    "map_get_float",
    "map_get_int",
    "map_lookup",
    "map_set_float",
    "map_set_int",
]
