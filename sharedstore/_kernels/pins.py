"""Data blocks that views pin, and the pins each process records.

A vector's data block, or a map's array value, may be read through zero-copy views in any
process.  Its state word (``_layout``: D_STATE) is ``2 * pins + retired``: growth, or replacing
the value, *retires* the block instead of freeing it, and whoever brings the state to exactly 1
(retired, no pins) frees it, so a block is freed once, and only when no view can reach it.

Pins are taken and released under the allocator lock, and each is recorded in the pinning
process's pin list (``_layout``: PIN_LISTS; a block of ``[data block, pins]`` pairs), so
:func:`proc_reap` releases the pins of a process that died holding views.  Pinning writes the
block's state first and the record second; releasing, the record first: a kill in between can
only leave a block pinned once too often (``check(repair=True)`` releases it), never unpinned
too early.
"""

from numba import types as T

from .. import _layout as L
from .._jit import MEM, helper, kernel
from . import status as S
from .atomics import atomic_add, atomic_cas, load_acquire, store_release
from .heap import alloc_locked, block_ok, block_ulen, free_locked
from .locks import lock_release, lock_try


@helper
def _retire_locked(mem, d):
    """Retire data block ``d``: free it now if no process pins it, else when the last unpins."""
    if atomic_add(mem, d // 8 + 1 + L.D_STATE // 8, 1) + 1 == 1:
        free_locked(mem, d)


@helper
def _pin_list_word(token):
    """Word index of the pin-list pointer of the process that holds ``token``, or -1."""
    i = (token & 0xFFFF) - 1
    if i < 0 or i >= L.PROC_MAX:
        return -1
    return L.PIN_LISTS // 8 + i


@helper
def _find_pin(mem, pl, d):
    """In pin list ``pl`` (0: none): (word of the record counting block ``d`` or -1, word of
    the first free record or -1)."""
    found = -1
    free = -1
    if pl != 0 and block_ok(mem, pl, 8):
        for j in range(block_ulen(mem, pl)):
            w = pl // 8 + 1 + 2 * j
            if mem[w + 1] > 0 and mem[w] == d:
                found = w
                break
            if free < 0 and mem[w + 1] == 0:
                free = w
    return found, free


@helper
def _pin_record_locked(mem, token, d):
    """Word index of the record for data block ``d`` in this process's pin list: the one that
    counts ``d`` already, or a free one (grown if needed).  A status if the list cannot grow."""
    pw = _pin_list_word(token)
    if pw < 0:
        return S.ERR_INVALID
    pl = mem[pw]
    found, free = _find_pin(mem, pl, d)
    if found >= 0:
        return found
    if free >= 0:
        return free
    cap = 0 if pl == 0 else block_ulen(mem, pl)
    ncap = max(8, 2 * cap)
    npl = alloc_locked(mem, ncap * 16, L.TAG_PINS, ncap)
    if npl < 0:
        return npl
    mem[npl // 8 + 1:npl // 8 + 1 + 2 * ncap] = 0
    if cap:
        mem[npl // 8 + 1:npl // 8 + 1 + 2 * cap] = mem[pl // 8 + 1:pl // 8 + 1 + 2 * cap]
    store_release(mem, pw, npl)
    if pl != 0:
        free_locked(mem, pl)
    return npl // 8 + 1 + 2 * cap


@helper
def _pin_locked(mem, token, d):
    """Pin data block ``d`` for this process (under the allocator lock): ``d``, or a status."""
    w = _pin_record_locked(mem, token, d)
    if w < 0:
        return w
    atomic_add(mem, d // 8 + 1 + L.D_STATE // 8, 2)  # the pin, then its record
    mem[w] = d
    mem[w + 1] += 1
    return d


@helper
def _unpin(mem, d):
    """Drop one pin; True if that left the block retired and unpinned (the caller frees it)."""
    return atomic_add(mem, d // 8 + 1 + L.D_STATE // 8, -2) - 2 == 1


@helper
def _release_locked(mem, w):
    """Release one pin recorded at record word ``w``: the record first, then the block's state
    (a kill in between leaves one pin too many, never one too few)."""
    d = mem[w]
    mem[w + 1] -= 1
    if block_ok(mem, d, 8 + L.D_RECORDS) and mem[d // 8 + 1 + L.D_STATE // 8] >= 2:
        if _unpin(mem, d):
            free_locked(mem, d)
            return 1
    return 0


@kernel(T.int64(MEM, T.int64, T.int64))
def pin_release(mem, token, d):
    """Release one of this process's pins on data block ``d``; frees the block if it was the last
    pin of a retired block.  Returns 1 if it freed, 0 if not, or a status (then nothing changed)."""
    if not block_ok(mem, d, 8 + L.D_RECORDS):
        return S.ERR_INVALID
    pw = _pin_list_word(token)
    if pw < 0:
        return S.ERR_INVALID
    if not lock_try(mem, L.W_ALLOC_LOCK, token):
        return S.ERR_BUSY_ALLOC
    w, _ = _find_pin(mem, mem[pw], d)
    r = S.ERR_NOT_FOUND if w < 0 else _release_locked(mem, w)
    lock_release(mem, L.W_ALLOC_LOCK)
    return r


@kernel(T.int64(MEM, T.int64, T.int64, T.int64, T.int64))
def proc_reap(mem, token, index, pid, gen):
    """Free process-table entry ``index`` if it still holds the (dead) process ``pid`` of
    registration ``gen``, after releasing every pin that process recorded.  1 if freed, 0 if
    not, or a status (ERR_BUSY_ALLOC).  (The caller proved the process dead: it holds the
    entry's liveness lock, ``_segment.live_lock``, or found the pid gone where there is none.)"""
    if index < 0 or index >= L.PROC_MAX:
        return S.ERR_INVALID
    if not lock_try(mem, L.W_ALLOC_LOCK, token):
        return S.ERR_BUSY_ALLOC
    w0 = L.PROC_TABLE // 8 + index * L.PROC_WORDS
    r = 0
    if load_acquire(mem, w0 + L.P_PID) == pid and mem[w0 + L.P_GEN] == gen:
        pw = L.PIN_LISTS // 8 + index
        pl = mem[pw]
        if pl != 0 and block_ok(mem, pl, 8) and (mem[pl // 8] >> 8) & 0xFF == L.TAG_PINS:
            cap = block_ulen(mem, pl)
            if block_ok(mem, pl, 8 + cap * 16):
                for j in range(cap):
                    w = pl // 8 + 1 + 2 * j
                    while mem[w + 1] > 0:
                        _release_locked(mem, w)
        if atomic_cas(mem, w0 + L.P_PID, pid, 0) == pid:
            r = 1
    lock_release(mem, L.W_ALLOC_LOCK)
    return r
