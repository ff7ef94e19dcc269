"""Kernels for the scalar objects: strings (a block of UTF-8 bytes), integers and numbers.

Integers and numbers live in their handle entry's value word, so they cost no block.  A string's
entry points at a block; ``string_set`` writes a new block, publishes it with one store, bumps the
entry's ``seq`` and only then frees the old block, so an optimistic reader that copied the old
bytes sees ``seq`` move and reads again.

Every write through a handle (``add``, ``set``, ``compare_exchange``, a struct field, a drop)
holds the object's lock (``heap.lock_handle``), which checks the handle again once it is held:
a write through an id dropped meanwhile is refused, even after its slot went to a new object.
Reads take no lock: they read, then check that the handle still names the same object.
"""

import numpy as np
from numba import types as T

from .. import _layout as L
from .._jit import BYTES, MEM, helper, kernel
from . import status as S
from .atomics import atomic_add, atomic_cas, atomic_xchg, fence_acquire, load_acquire, store_release
from .heap import (
    alloc_locked,
    block_ok,
    block_ulen,
    bytes_put,
    free_locked,
    handle_free_locked,
    handle_new_locked,
    handle_resolve,
    lock_handle,
    meta_still,
    resolve_meta,
)
from .locks import lock_release, lock_try
from .memory import float_from_bits, float_to_bits, memcpy

READ_RETRIES = 1000


@kernel(T.int64(MEM, T.int64, BYTES))
def string_new(mem, token, data):
    """New string object holding ``data`` (UTF-8); return its handle or a status."""
    n = len(data)
    if not lock_try(mem, L.W_ALLOC_LOCK, token):
        return S.ERR_BUSY_ALLOC
    off = alloc_locked(mem, n, L.TAG_STRING, n)
    if off < 0:
        lock_release(mem, L.W_ALLOC_LOCK)
        return off
    buf = mem.view(np.uint8)
    bytes_put(buf, off + 8, data)
    h = handle_new_locked(mem, L.KIND_STRING, off)
    if h < 0:
        free_locked(mem, off)
    lock_release(mem, L.W_ALLOC_LOCK)
    return h


@kernel("int64(int64[::1], uint8[::1], int64)")
def string_read(mem, out, h):
    """Copy string ``h``'s bytes into ``out``; return their count (not copied if > len(out))."""
    buf = mem.view(np.uint8)
    for _ in range(READ_RETRIES):
        e = handle_resolve(mem, h, L.KIND_STRING)
        if e < 0:
            return e
        seq = load_acquire(mem, e + L.H_SEQ)
        off = load_acquire(mem, e + L.H_VALUE)
        n = -1
        if block_ok(mem, off, 8):
            n = block_ulen(mem, off)
            if not block_ok(mem, off, 8 + n):
                n = -1
            elif n <= len(out):
                memcpy(out, 0, buf, off + 8, n)
        fence_acquire()  # the copy completes before seq and the handle are read again
        if load_acquire(mem, e + L.H_SEQ) == seq and handle_resolve(mem, h, L.KIND_STRING) == e:
            return n if n >= 0 else S.ERR_CORRUPT
    return S.ERR_RETRY


@helper
def _lock_with_alloc(mem, h, kind, token):
    """``lock_handle``, then the allocator lock: the entry word or a status (no lock held)."""
    e = lock_handle(mem, h, kind, token)
    if e >= 0 and not lock_try(mem, L.W_ALLOC_LOCK, token):
        lock_release(mem, e + L.H_LOCK)
        return S.ERR_BUSY_ALLOC
    return e


@helper
def _unlock_with_alloc(mem, e):
    lock_release(mem, L.W_ALLOC_LOCK)
    lock_release(mem, e + L.H_LOCK)


@kernel(T.int64(MEM, T.int64, T.int64, BYTES))
def string_set(mem, token, h, data):
    """Replace string ``h``'s bytes with ``data``."""
    n = len(data)
    e = _lock_with_alloc(mem, h, L.KIND_STRING, token)
    if e < 0:
        return e
    off = alloc_locked(mem, n, L.TAG_STRING, n)
    if off < 0:
        _unlock_with_alloc(mem, e)
        return off
    buf = mem.view(np.uint8)
    bytes_put(buf, off + 8, data)
    old = mem[e + L.H_VALUE]
    store_release(mem, e + L.H_VALUE, off)  # publish the new bytes
    atomic_add(mem, e + L.H_SEQ, 2)         # readers of the old block retry ...
    free_locked(mem, old)                   # ... before it can be reused
    _unlock_with_alloc(mem, e)
    return 0


@kernel("int64(int64[::1], int64, int64, int64)")
def object_drop(mem, token, h, kind):
    """Drop a string, integer, number or struct record ``h`` of ``kind``; its handle goes stale.

    (A struct's owned strings are dropped by the caller first.)  Holding the object's lock,
    it waits for a write through the handle under way in another process to finish."""
    if kind != L.KIND_STRING and kind != L.KIND_STRUCT and kind != L.KIND_INT and (
            kind != L.KIND_FLOAT):
        return S.ERR_KIND
    e = _lock_with_alloc(mem, h, kind, token)
    if e < 0:
        return e
    value = mem[e + L.H_VALUE]
    handle_free_locked(mem, h, e)
    if kind == L.KIND_STRING or kind == L.KIND_STRUCT:
        atomic_add(mem, e + L.H_SEQ, 2)
        free_locked(mem, value)
    _unlock_with_alloc(mem, e)
    return 0


@kernel("int64(int64[::1], int64, int64, int64)")
def scalar_new(mem, token, kind, bits):
    """New integer or number object whose value word holds ``bits``."""
    if kind != L.KIND_INT and kind != L.KIND_FLOAT:
        return S.ERR_KIND
    if not lock_try(mem, L.W_ALLOC_LOCK, token):
        return S.ERR_BUSY_ALLOC
    h = handle_new_locked(mem, kind, bits)
    lock_release(mem, L.W_ALLOC_LOCK)
    return h


@helper
def scalar_bits(mem, h, kind):
    """(status, value bits) of integer or number ``h``: the value word, read between two reads
    of the handle that agree (a value read from a slot reused meanwhile is never returned)."""
    for _ in range(READ_RETRIES):
        e, meta = resolve_meta(mem, h, kind)
        if e < 0:
            return e, 0
        bits = load_acquire(mem, e + L.H_VALUE)
        if meta_still(mem, e, meta):
            return 0, bits
    return S.ERR_RETRY, 0


@kernel("UniTuple(int64, 2)(int64[::1], int64, int64)")
def scalar_get(mem, h, kind):
    """(status, value bits) of integer (``kind`` KIND_INT) or number (KIND_FLOAT) ``h``."""
    if kind != L.KIND_INT and kind != L.KIND_FLOAT:
        return S.ERR_KIND, 0
    return scalar_bits(mem, h, kind)


@kernel("int64(int64[::1], int64, int64, int64, int64)")
def scalar_set(mem, token, h, kind, bits):
    """Set integer (``kind`` KIND_INT) or number (KIND_FLOAT) ``h`` to ``bits``, under its lock."""
    if kind != L.KIND_INT and kind != L.KIND_FLOAT:
        return S.ERR_KIND
    e = lock_handle(mem, h, kind, token)
    if e < 0:
        return e
    store_release(mem, e + L.H_VALUE, bits)
    lock_release(mem, e + L.H_LOCK)
    return 0


@helper
def int_fetch_add(mem, token, h, x):
    """Atomic add to integer ``h`` (under its lock: a few nanoseconds); (status, new value)."""
    e = lock_handle(mem, h, L.KIND_INT, token)
    if e < 0:
        return e, 0
    new = atomic_add(mem, e + L.H_VALUE, x) + x
    lock_release(mem, e + L.H_LOCK)
    return 0, new


@kernel("UniTuple(int64, 2)(int64[::1], int64, int64, int64)")
def int_add(mem, token, h, x):
    """Atomic add; (status, new value)."""
    return int_fetch_add(mem, token, h, x)


@kernel("UniTuple(int64, 2)(int64[::1], int64, int64, int64, int64)")
def int_compare_exchange(mem, token, h, expected, new):
    """(status, 1 if the value was ``expected`` and is now ``new`` else 0)."""
    e = lock_handle(mem, h, L.KIND_INT, token)
    if e < 0:
        return e, 0
    r = 1 if atomic_cas(mem, e + L.H_VALUE, expected, new) == expected else 0
    lock_release(mem, e + L.H_LOCK)
    return 0, r


@helper
def float_fetch_add(mem, token, h, x):
    """Atomic add to number ``h`` (under its lock); (status, new value)."""
    e = lock_handle(mem, h, L.KIND_FLOAT, token)
    if e < 0:
        return e, 0.0
    new = float_from_bits(mem[e + L.H_VALUE]) + x
    store_release(mem, e + L.H_VALUE, float_to_bits(new))
    lock_release(mem, e + L.H_LOCK)
    return 0, new


@kernel("Tuple((int64, float64))(int64[::1], int64, int64, float64)")
def float_add(mem, token, h, x):
    """Atomic add; (status, new value)."""
    return float_fetch_add(mem, token, h, x)


@kernel(T.int64(MEM, T.int64, T.int64, T.int64))
def struct_new(mem, token, schema, nbytes):
    """New zeroed struct record of ``nbytes`` whose schema string is ``schema``."""
    if not lock_try(mem, L.W_ALLOC_LOCK, token):
        return S.ERR_BUSY_ALLOC
    off = alloc_locked(mem, L.S_RECORD + nbytes, L.TAG_STRUCT, nbytes)
    if off < 0:
        lock_release(mem, L.W_ALLOC_LOCK)
        return off
    w = off // 8 + 1
    mem[w:w + (L.S_RECORD + nbytes + 7) // 8] = 0
    mem[w + L.S_SCHEMA // 8] = schema
    h = handle_new_locked(mem, L.KIND_STRUCT, off)
    if h < 0:
        free_locked(mem, off)
    lock_release(mem, L.W_ALLOC_LOCK)
    return h


@kernel(T.UniTuple(T.int64, 4)(MEM, T.int64))
def struct_locate(mem, h):
    """(status, byte offset of the record, schema handle, the handle's meta word) of struct
    record ``h``.  The meta word was read before the record's block and checked after: while
    it keeps that value the record is live (a reader checks it after reading a field)."""
    for _ in range(READ_RETRIES):
        e, meta = resolve_meta(mem, h, L.KIND_STRUCT)
        if e < 0:
            return e, 0, 0, 0
        off = load_acquire(mem, e + L.H_VALUE)
        ok = block_ok(mem, off, 8 + L.S_RECORD + block_ulen(mem, off))
        schema = mem[off // 8 + 1 + L.S_SCHEMA // 8] if ok else 0
        if meta_still(mem, e, meta):
            if not ok:
                return S.ERR_CORRUPT, 0, 0, 0
            return 0, off + 8 + L.S_RECORD, schema, meta
    return S.ERR_RETRY, 0, 0, 0


@kernel(T.UniTuple(T.int64, 2)(MEM, T.int64, T.int64, T.int64, T.int64))
def struct_swap(mem, token, h, at, new):
    """Exchange the handle word at byte ``at`` of record ``h`` (under its lock); (status, old)."""
    e = lock_handle(mem, h, L.KIND_STRUCT, token)
    if e < 0:
        return e, 0
    off = mem[e + L.H_VALUE]
    n = block_ulen(mem, off)
    r, old = 0, 0
    if at < 0 or at % 8 != 0 or at + 8 > n or not block_ok(mem, off, 8 + L.S_RECORD + n):
        r = S.ERR_INVALID
    else:
        old = atomic_xchg(mem, (off + 8 + L.S_RECORD + at) // 8, new)
    lock_release(mem, e + L.H_LOCK)
    return r, old


@kernel(T.int64(MEM, T.int64, T.int64, T.int64, BYTES))
def struct_write(mem, token, h, at, data):
    """Write ``data`` at byte ``at`` of record ``h``'s fields, under its lock (a record dropped
    meanwhile is ERR_FREED, never another record written)."""
    e = lock_handle(mem, h, L.KIND_STRUCT, token)
    if e < 0:
        return e
    off = mem[e + L.H_VALUE]
    n = block_ulen(mem, off)
    r = 0
    if at < 0 or at + len(data) > n or not block_ok(mem, off, 8 + L.S_RECORD + n):
        r = S.ERR_INVALID
    else:
        memcpy(mem.view(np.uint8), off + 8 + L.S_RECORD + at, data, 0, len(data))
    lock_release(mem, e + L.H_LOCK)
    return r
