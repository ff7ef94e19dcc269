"""Kernels for the scalar objects: strings (a block of UTF-8 bytes), integers and numbers.

Integers and numbers live in their handle entry's value word, so they cost no block and their
``add`` is one atomic instruction (a compare-and-swap loop for float64).  A string's entry points
at a block; ``string_set`` writes a new block, publishes it with one store, bumps the entry's
``seq`` and only then frees the old block, so an optimistic reader that copied the old bytes
sees ``seq`` move and reads again.
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


@kernel(T.int64(MEM, T.int64, T.int64, BYTES))
def string_set(mem, token, h, data):
    """Replace string ``h``'s bytes with ``data``."""
    n = len(data)
    if not lock_try(mem, L.W_ALLOC_LOCK, token):
        return S.ERR_BUSY_ALLOC
    e = handle_resolve(mem, h, L.KIND_STRING)
    if e < 0:
        lock_release(mem, L.W_ALLOC_LOCK)
        return e
    off = alloc_locked(mem, n, L.TAG_STRING, n)
    if off < 0:
        lock_release(mem, L.W_ALLOC_LOCK)
        return off
    buf = mem.view(np.uint8)
    bytes_put(buf, off + 8, data)
    old = mem[e + L.H_VALUE]
    store_release(mem, e + L.H_VALUE, off)  # publish the new bytes
    atomic_add(mem, e + L.H_SEQ, 2)         # readers of the old block retry ...
    free_locked(mem, old)                   # ... before it can be reused
    lock_release(mem, L.W_ALLOC_LOCK)
    return 0


@kernel("int64(int64[::1], int64, int64, int64)")
def object_drop(mem, token, h, kind):
    """Drop a string, integer, number or struct record ``h`` of ``kind``; its handle goes stale.

    (A struct's owned strings are dropped by the caller first.)"""
    if not lock_try(mem, L.W_ALLOC_LOCK, token):
        return S.ERR_BUSY_ALLOC
    e = handle_resolve(mem, h, kind)
    if e < 0:
        lock_release(mem, L.W_ALLOC_LOCK)
        return e
    value = mem[e + L.H_VALUE]
    handle_free_locked(mem, h, e)
    if kind == L.KIND_STRING or kind == L.KIND_STRUCT:
        atomic_add(mem, e + L.H_SEQ, 2)
        free_locked(mem, value)
    lock_release(mem, L.W_ALLOC_LOCK)
    return 0


@kernel("int64(int64[::1], int64, int64, int64)")
def scalar_new(mem, token, kind, bits):
    """New integer or number object whose value word holds ``bits``."""
    if not lock_try(mem, L.W_ALLOC_LOCK, token):
        return S.ERR_BUSY_ALLOC
    h = handle_new_locked(mem, kind, bits)
    lock_release(mem, L.W_ALLOC_LOCK)
    return h


@helper
def scalar_bits(mem, h, kind):
    """(status, value bits) of integer or number ``h``."""
    e = handle_resolve(mem, h, kind)
    if e < 0:
        return e, 0
    return 0, load_acquire(mem, e + L.H_VALUE)


@kernel("UniTuple(int64, 2)(int64[::1], int64, int64)")
def scalar_get(mem, h, kind):
    """(status, value bits) of integer or number ``h``."""
    return scalar_bits(mem, h, kind)


@kernel("int64(int64[::1], int64, int64, int64)")
def scalar_set(mem, h, kind, bits):
    e = handle_resolve(mem, h, kind)
    if e < 0:
        return e
    store_release(mem, e + L.H_VALUE, bits)
    return 0


@helper
def int_fetch_add(mem, h, x):
    """Atomic fetch-add; (status, new value)."""
    e = handle_resolve(mem, h, L.KIND_INT)
    if e < 0:
        return e, 0
    return 0, atomic_add(mem, e + L.H_VALUE, x) + x


@kernel("UniTuple(int64, 2)(int64[::1], int64, int64)")
def int_add(mem, h, x):
    """Atomic fetch-add; (status, new value)."""
    return int_fetch_add(mem, h, x)


@kernel("UniTuple(int64, 2)(int64[::1], int64, int64, int64)")
def int_compare_exchange(mem, h, expected, new):
    """(status, 1 if the value was ``expected`` and is now ``new`` else 0)."""
    e = handle_resolve(mem, h, L.KIND_INT)
    if e < 0:
        return e, 0
    return 0, 1 if atomic_cas(mem, e + L.H_VALUE, expected, new) == expected else 0


@helper
def float_fetch_add(mem, h, x):
    """Atomic add on a float64 (compare-and-swap loop); (status, new value)."""
    e = handle_resolve(mem, h, L.KIND_FLOAT)
    if e < 0:
        return e, 0.0
    cur = load_acquire(mem, e + L.H_VALUE)
    while True:
        new = float_from_bits(cur) + x
        old = atomic_cas(mem, e + L.H_VALUE, cur, float_to_bits(new))
        if old == cur:
            return 0, new
        cur = old


@kernel("Tuple((int64, float64))(int64[::1], int64, float64)")
def float_add(mem, h, x):
    """Atomic add on a float64 (compare-and-swap loop); (status, new value)."""
    return float_fetch_add(mem, h, x)


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


@kernel(T.UniTuple(T.int64, 3)(MEM, T.int64))
def struct_locate(mem, h):
    """(status, byte offset of the record, schema handle) of struct record ``h``."""
    e = handle_resolve(mem, h, L.KIND_STRUCT)
    if e < 0:
        return e, 0, 0
    off = mem[e + L.H_VALUE]
    if not block_ok(mem, off, 8 + L.S_RECORD + block_ulen(mem, off)):
        return S.ERR_CORRUPT, 0, 0
    return 0, off + 8 + L.S_RECORD, mem[off // 8 + 1 + L.S_SCHEMA // 8]


@kernel(T.UniTuple(T.int64, 2)(MEM, T.int64, T.int64, T.int64))
def struct_swap(mem, h, at, new):
    """Atomically exchange the handle word at byte ``at`` of record ``h``; (status, old)."""
    e = handle_resolve(mem, h, L.KIND_STRUCT)
    if e < 0:
        return e, 0
    off = mem[e + L.H_VALUE]
    n = block_ulen(mem, off)
    if at < 0 or at % 8 != 0 or at + 8 > n or not block_ok(mem, off, 8 + L.S_RECORD + n):
        return S.ERR_INVALID, 0
    return 0, atomic_xchg(mem, (off + 8 + L.S_RECORD + at) // 8, new)
