"""Typed growable vectors: a header block, a data block of fixed-size slots, a free list.

Writers hold the vector's lock (its handle entry's lock word) and, when they allocate or free,
the allocator lock.  Optimistic readers (``vector_read``) validate against ``VH_VERSION``.

Views and growth.  A process that hands out a zero-copy view of the data block *pins* the block
first: the block's state word is ``2 * pins + retired``.  Growth copies the records into a bigger
block, publishes it, and *retires* the old one instead of freeing it.  Whoever brings the state
to exactly 1 (retired, no pins) frees the block, so it is freed once, and only when no process
can still reach it through a view.  Pins are taken and released under the allocator lock, and
each is recorded in the pinning process's pin list (``_layout``: PIN_LISTS), so ``proc_reap``
releases the pins of a process that died holding views.

Appends outside the lock.  An append of ``OUT_OF_LOCK`` bytes or more, when no other is doing
so, takes the slots after the length under the lock, records itself (``VH_APPENDER`` = its
token, ``VH_APPEND_END``), releases the lock and copies; then it publishes the length and clears
``VH_APPENDER``.  Meanwhile other appends take the lock as usual, put their records after
``VH_APPEND_END`` and publish once the length reaches it, so the copies of two processes run at
once and the length only ever covers records written whole.  Everything else that changes the
vector (growth, which moves the data, included) first waits for ``VH_APPENDER`` to clear.  A
wait that outlasts the spin budget returns ``ERR_BUSY_APPEND`` having published nothing; if the
appender died, ``vector_reclaim`` zeroes the slots it had taken, puts them on the free list
(like removed records) and publishes them.

Writes in place.  A change to published slots (``vector_write``, ``remove``, an ``insert`` into
a free slot) makes ``VH_VERSION`` odd while it lasts, so an optimistic reader never returns a
record half old, half new.  ``vector_write`` first copies the records it overwrites into the
vector's undo block (``UNDO_BYTES`` at a time, whole records) and records where they go
(``VH_UNDO_AT``); ``remove`` records the slot it zeroes (``VH_WRITING``).  A writer that takes
the lock over from a dead owner (``vector_after_dead_owner``) puts the old records back, or
finishes the remove, so no record is ever left torn: a write in place killed part way has
changed whole records only (every ``UNDO_BYTES`` chunk is all or nothing).
"""

import numpy as np
from numba import types as T

from .. import _layout as L
from .._jit import MEM, RO_BYTES, WORDS, helper, kernel
from . import status as S
from .atomics import (
    atomic_add,
    cpu_pause,
    fence,
    load_acquire,
    store_release,
)
from .heap import (
    alloc_locked,
    block_ok,
    block_ulen,
    free_locked,
    handle_free_locked,
    handle_new_locked,
    handle_resolve,
    lock_handle,
    meta_still,
    object_words,
    resolve_meta,
)
from .locks import lock_release, lock_try
from .memory import memcpy
from .pins import _pin_locked, _retire_locked

SNAP_TRIES = 4  # optimistic reads of slots before a read takes the vector's lock
_MIN_CAP = 8
OUT_OF_LOCK = 4096  # an append of this many bytes or more copies its records outside the lock
APPEND_SPINS = 2000  # pauses a writer waits in a kernel for such a copy (tens of microseconds)


@helper
def _vec_words(mem, e):
    """Word index of the vector header data for handle entry ``e``, or -1 if out of bounds."""
    return object_words(mem, e, L.VEC_WORDS)


@helper
def _records_at(d):
    """Byte offset of the first record of data block ``d``."""
    return d + 8 + L.D_RECORDS


@helper
def _slot_at(mem, vw, i):
    """Byte offset of slot ``i`` in the vector's current data block (writers, lock held)."""
    return _records_at(mem[vw + L.VH_DATA]) + i * mem[vw + L.VH_ITEMSIZE]


@helper
def _data_ok(mem, d, cap, itemsize):
    return block_ok(mem, d, 8 + L.D_RECORDS + cap * itemsize)


@helper
def _wait_word(mem, w, value):
    """Spin a little (``APPEND_SPINS``) until ``mem[w] == value``; True if it got there.

    Short on purpose: the copy waited for takes microseconds when its process runs, and a
    caller that gives up releases the lock and returns ERR_BUSY_APPEND, so that Python can
    sleep instead of spinning (the copier may be descheduled) and can find out whether the
    copier died, which no spin can tell."""
    for _ in range(APPEND_SPINS):
        if load_acquire(mem, w) == value:
            return True
        cpu_pause()
    return load_acquire(mem, w) == value


@helper
def _lock_vec_nodrain(mem, h, kind, token):
    """Take the lock of vector ``h`` (``kind``: KIND_VECTOR for what changes its length or
    free list, KIND_VECLIKE for what a fixed-shape array allows too), the handle checked again
    once it is held: (entry, header words) or a status in the first place, no lock held.  An
    append copying outside the lock may still be under way."""
    e = lock_handle(mem, h, kind, token)
    if e < 0:
        return e, 0
    vw = _vec_words(mem, e)
    if vw < 0:
        lock_release(mem, e + L.H_LOCK)
        return S.ERR_CORRUPT, 0
    return e, vw


@helper
def _lock_vec_only(mem, h, kind, token):
    """``_lock_vec_nodrain``, then wait for an append copying outside the lock to finish."""
    e, vw = _lock_vec_nodrain(mem, h, kind, token)
    # (acquire: once it reads 0, the appender's length is visible to every read after it)
    if e >= 0 and not _wait_word(mem, vw + L.VH_APPENDER, 0):
        lock_release(mem, e + L.H_LOCK)
        return S.ERR_BUSY_APPEND, 0
    return e, vw


@helper
def _lock_vec(mem, h, kind, token):
    """``_lock_vec_only``, then the allocator lock: (entry, header words) or a status in the
    first place."""
    e, vw = _lock_vec_only(mem, h, kind, token)
    if e >= 0 and not lock_try(mem, L.W_ALLOC_LOCK, token):
        lock_release(mem, e + L.H_LOCK)
        return S.ERR_BUSY_ALLOC, 0
    return e, vw


@helper
def _unlock_vec(mem, e):
    lock_release(mem, L.W_ALLOC_LOCK)
    lock_release(mem, e + L.H_LOCK)


@helper
def _new_data_locked(mem, cap, itemsize):
    d = alloc_locked(mem, L.D_RECORDS + cap * itemsize, L.TAG_VDATA, cap)
    if d >= 0:
        mem[d // 8 + 1 + L.D_STATE // 8] = 0
        mem[d // 8 + 2] = 0
    return d


@helper
def _grow_locked(mem, vw, need):
    """Make room for ``need`` slots: a bigger block, records copied, old block retired."""
    cap = mem[vw + L.VH_CAP]
    if need <= cap:
        return 0
    itemsize = mem[vw + L.VH_ITEMSIZE]
    newcap = max(cap, _MIN_CAP)
    while newcap < need:
        newcap *= 2
    nd = _new_data_locked(mem, newcap, itemsize)
    if nd < 0:
        return nd
    d = mem[vw + L.VH_DATA]
    buf = mem.view(np.uint8)
    n = mem[vw + L.VH_LEN] * itemsize
    memcpy(buf, _records_at(nd), buf, _records_at(d), n)
    store_release(mem, vw + L.VH_DATA, nd)  # publish the bigger block ...
    mem[vw + L.VH_CAP] = newcap
    atomic_add(mem, vw + L.VH_VERSION, 2)   # ... readers of the old one retry ...
    _retire_locked(mem, d)                  # ... and views of it keep it until they go
    return 0


@kernel(T.int64(MEM, T.int64, T.int64, T.int64, T.int64, T.int64, T.int64))
def vector_new(mem, token, dtype_handle, itemsize, cap, kind, length):
    """New vector (``kind`` KIND_VECTOR) or fixed-shape array (KIND_ARRAY) of ``itemsize``-byte
    slots with room for ``cap``, its first ``length`` slots zero and in use."""
    if (kind != L.KIND_VECTOR and kind != L.KIND_ARRAY) or itemsize <= 0 or length < 0:
        return S.ERR_INVALID
    if not lock_try(mem, L.W_ALLOC_LOCK, token):
        return S.ERR_BUSY_ALLOC
    cap = max(cap, _MIN_CAP, length)
    h = S.ERR_COMMIT
    v = alloc_locked(mem, L.VEC_WORDS * 8, L.TAG_VECTOR, 0)
    if v < 0:
        h = v
    else:
        d = _new_data_locked(mem, cap, itemsize)
        if d < 0:
            free_locked(mem, v)
            h = d
        else:
            vw = v // 8 + 1
            mem[vw:vw + L.VEC_WORDS] = 0
            mem[vw + L.VH_DATA] = d
            mem[vw + L.VH_CAP] = cap
            mem[vw + L.VH_ITEMSIZE] = itemsize
            mem[vw + L.VH_DTYPE] = dtype_handle
            at = _records_at(d)
            mem.view(np.uint8)[at:at + length * itemsize] = 0
            mem[vw + L.VH_LEN] = length
            h = handle_new_locked(mem, kind, v)
            if h < 0:
                free_locked(mem, d)
                free_locked(mem, v)
    lock_release(mem, L.W_ALLOC_LOCK)
    return h


@helper
def _still(mem, h, e, meta):
    """End a read through handle ``h`` begun with ``e, meta = resolve_meta(...)``: 0 if the
    handle still names the object read, else its status (the object was dropped meanwhile, and
    what was read may be another object's)."""
    if meta_still(mem, e, meta):
        return 0
    r = handle_resolve(mem, h, L.KIND_VECLIKE)
    return r if r < 0 else S.ERR_FREED


@kernel(T.UniTuple(T.int64, 4)(MEM, T.int64))
def vector_info(mem, h):
    """(status, length in slots, itemsize, dtype handle) of vector or array ``h``."""
    e, meta = resolve_meta(mem, h, L.KIND_VECLIKE)
    if e < 0:
        return e, 0, 0, 0
    vw = _vec_words(mem, e)
    n, isz, dt = S.ERR_CORRUPT, 0, 0
    if vw >= 0:
        n = _length(mem, vw)
        isz, dt = mem[vw + L.VH_ITEMSIZE], mem[vw + L.VH_DTYPE]
    r = _still(mem, h, e, meta)
    if r < 0:
        return r, 0, 0, 0
    if n < 0:
        return n, 0, 0, 0
    return 0, n, isz, dt


@helper
def _length(mem, vw):
    """The vector's length if its header is plausible (0 <= length <= capacity, and the slots fit
    in the committed heap), else ERR_CORRUPT.  The capacity is read after the length: it never
    shrinks and grows before the length does."""
    n = load_acquire(mem, vw + L.VH_LEN)
    cap = load_acquire(mem, vw + L.VH_CAP)
    isz = mem[vw + L.VH_ITEMSIZE]
    if n < 0 or n > cap or isz <= 0 or isz > (1 << 32) or cap > mem[L.W_COMMITTED] // isz:
        return S.ERR_CORRUPT
    return n


@helper
def _append_begin(mem, token, h, nbytes, one):
    """Lock vector ``h`` and make room for ``nbytes`` of slots at its end: (entry word or a
    status, header words, first new slot, slots).  With ``one``, ``nbytes`` must be exactly one
    slot (else ERR_KIND).  On success the caller writes the slots, then calls ``_append_end``
    (or hands the copy over: ``append_bytes``).

    The new slots follow those of an append copying outside the lock, if one is under way;
    growth waits for that one to finish first.  Only growth takes the allocator lock: an append
    into capacity the vector has touches nothing but its own slots, length and version (views
    and pins, which the allocator lock guards, see the same data block before and after)."""
    e, vw = _lock_vec_nodrain(mem, h, L.KIND_VECTOR, token)
    if e < 0:
        return e, 0, 0, 0
    itemsize = mem[vw + L.VH_ITEMSIZE]
    k = nbytes // itemsize
    # the appender clears VH_APPENDER after it publishes the length: read it first, with
    # acquire, so that a 0 here means the length read next includes its records
    appender = load_acquire(mem, vw + L.VH_APPENDER)
    n = load_acquire(mem, vw + L.VH_LEN)
    if appender != 0:
        n = max(n, mem[vw + L.VH_APPEND_END])
    r = S.ERR_KIND if one and itemsize != nbytes else 0
    if r == 0 and n + k > mem[vw + L.VH_CAP]:
        if appender != 0:  # growth moves the data: the copy must be done
            if _wait_word(mem, vw + L.VH_APPENDER, 0):
                n = mem[vw + L.VH_LEN]
            else:
                r = S.ERR_BUSY_APPEND
        if r == 0:
            if lock_try(mem, L.W_ALLOC_LOCK, token):
                r = _grow_locked(mem, vw, n + k)
                lock_release(mem, L.W_ALLOC_LOCK)
            else:
                r = S.ERR_BUSY_ALLOC
    if r < 0:
        lock_release(mem, e + L.H_LOCK)
        return r, 0, 0, 0
    return e, vw, n, k


@helper
def _append_end(mem, e, vw, n, k):
    """Publish slots ``n .. n+k`` (written) once the slots before them are, unlock; return the
    new length, or ERR_BUSY_APPEND (nothing published: the whole append can be repeated).

    The version stays: appended slots lie past the length readers saw, so no reader can have
    read them before they were written (readers load the length with acquire)."""
    if load_acquire(mem, vw + L.VH_LEN) != n and not _wait_word(mem, vw + L.VH_LEN, n):
        lock_release(mem, e + L.H_LOCK)
        return S.ERR_BUSY_APPEND
    store_release(mem, vw + L.VH_LEN, n + k)  # publish the records
    lock_release(mem, e + L.H_LOCK)
    return n + k


@helper
def append_bytes(mem, token, h, data):
    """Append the records in ``data`` (uint8, a whole number of slots); the new length, or a
    status.  A big append copies outside the lock (module docstring).  (Also for users' jitted
    code: see ``sharedstore.kernels``.)"""
    e, vw, n, k = _append_begin(mem, token, h, len(data), False)
    if e < 0:
        return e
    nb = k * mem[vw + L.VH_ITEMSIZE]
    at = _slot_at(mem, vw, n)
    buf = mem.view(np.uint8)
    if nb >= OUT_OF_LOCK and load_acquire(mem, vw + L.VH_APPENDER) == 0:
        mem[vw + L.VH_APPEND_END] = n + k  # (n is the length: any earlier copy is published)
        store_release(mem, vw + L.VH_APPENDER, token)
        lock_release(mem, e + L.H_LOCK)
        memcpy(buf, at, data, 0, nb)
        store_release(mem, vw + L.VH_LEN, n + k)  # publish the records ...
        store_release(mem, vw + L.VH_APPENDER, 0)  # ... then let the others drain
        return n + k
    memcpy(buf, at, data, 0, nb)
    return _append_end(mem, e, vw, n, k)


@helper
def append_word(mem, token, h, bits, nbytes):
    """Append one slot of ``nbytes`` (1 to 8, the vector's item size) holding the low bytes of
    ``bits``, little-endian; the new length, or a status."""
    e, vw, n, _ = _append_begin(mem, token, h, nbytes, True)
    if e < 0:
        return e
    at = _slot_at(mem, vw, n)
    buf = mem.view(np.uint8)
    for j in range(nbytes):
        buf[at + j] = (bits >> (8 * j)) & 0xFF
    return _append_end(mem, e, vw, n, 1)


@kernel(T.int64(MEM, T.int64, T.int64, RO_BYTES))
def vector_extend(mem, token, h, data):
    """Append the records in ``data`` (a whole number of slots); return the new length."""
    return append_bytes(mem, token, h, data)


@helper
def _resolve_vec(mem, h):
    """Header word index of vector or array ``h``, or a status (no lock: for reads that check
    what they read, and for the write paths' bounds, which check again under the lock)."""
    e = handle_resolve(mem, h, L.KIND_VECLIKE)
    if e < 0:
        return e
    vw = _vec_words(mem, e)
    return S.ERR_CORRUPT if vw < 0 else vw


@helper
def vector_length(mem, h):
    """Slots in vector ``h``, or a status."""
    e, meta = resolve_meta(mem, h, L.KIND_VECLIKE)
    if e < 0:
        return e
    vw = _vec_words(mem, e)
    n = S.ERR_CORRUPT if vw < 0 else _length(mem, vw)
    r = _still(mem, h, e, meta)
    return r if r < 0 else n


@kernel(T.int64(MEM, T.int64, T.int64, RO_BYTES))
def vector_insert(mem, token, h, data):
    """Put one record in a free slot (the most recently removed), else at the end; its index."""
    e, vw = _lock_vec(mem, h, L.KIND_VECTOR, token)
    if e < 0:
        return e
    itemsize = mem[vw + L.VH_ITEMSIZE]
    nfree = mem[vw + L.VH_NFREE]
    r = 0
    if nfree > 0:
        slot = mem[mem[vw + L.VH_FREE] // 8 + 1 + nfree - 1]
        mem[vw + L.VH_WRITING] = slot + 1  # a kill mid-copy: the slot is zeroed, stays free
    else:
        slot = mem[vw + L.VH_LEN]
        r = _grow_locked(mem, vw, slot + 1)
    if r >= 0:
        if nfree == 0:  # past the length: no reader sees it before it is published
            memcpy(mem.view(np.uint8), _slot_at(mem, vw, slot), data, 0, itemsize)
            store_release(mem, vw + L.VH_LEN, slot + 1)
            atomic_add(mem, vw + L.VH_VERSION, 2)
        else:  # a published (zero) slot: written whole, then it leaves the free list
            _change_begin(mem, vw)
            memcpy(mem.view(np.uint8), _slot_at(mem, vw, slot), data, 0, itemsize)
            mem[vw + L.VH_WRITING] = 0
            mem[vw + L.VH_NFREE] = nfree - 1
            _change_end(mem, vw)
        r = slot
    _unlock_vec(mem, e)
    return r


@helper
def _change_begin(mem, vw):
    """Published slots are about to change in place: the version goes odd (readers wait)."""
    atomic_add(mem, vw + L.VH_VERSION, 1)


@helper
def _change_end(mem, vw):
    """The change is whole: the version goes even again, and differs from before."""
    atomic_add(mem, vw + L.VH_VERSION, 1)


@helper
def _undo_block(mem, vw, itemsize, token):
    """Byte offset of vector ``vw``'s undo block, or a status (its lock held).  It holds
    ``UNDO_BYTES`` of whole slots (at least one), or the whole vector if that is smaller; it is
    made on the first write in place, and again bigger once the vector has grown past it, the
    only times this takes the allocator lock (ERR_BUSY_ALLOC if it is busy)."""
    u = mem[vw + L.VH_UNDO]
    want = max(1, min(L.UNDO_BYTES, mem[vw + L.VH_CAP] * itemsize) // itemsize)
    if u == 0 or block_ulen(mem, u) < want:
        if not lock_try(mem, L.W_ALLOC_LOCK, token):
            return S.ERR_BUSY_ALLOC
        nu = alloc_locked(mem, want * itemsize, L.TAG_VUNDO, want)
        if nu >= 0:
            mem[vw + L.VH_UNDO] = nu  # (no write in place is under way: the lock is ours)
            if u != 0:
                free_locked(mem, u)
        lock_release(mem, L.W_ALLOC_LOCK)
        u = nu
    return u


@helper
def _write_logged(mem, vw, start, k, data, u):
    """Overwrite published slots ``start .. start+k`` with ``data`` (its lock held, undo block
    ``u``), a chunk at a time: each chunk's old records go to the undo block first."""
    itemsize = mem[vw + L.VH_ITEMSIZE]
    chunk = block_ulen(mem, u)
    buf = mem.view(np.uint8)
    at = _slot_at(mem, vw, start)
    _change_begin(mem, vw)
    done = 0
    while done < k:
        m = min(chunk, k - done)
        off = done * itemsize
        memcpy(buf, u + 8, buf, at + off, m * itemsize)  # the old records ...
        mem[vw + L.VH_UNDO_N] = m
        store_release(mem, vw + L.VH_UNDO_AT, start + done + 1)  # ... are logged ...
        fence()
        memcpy(buf, at + off, data, off, m * itemsize)  # ... before any is overwritten
        store_release(mem, vw + L.VH_UNDO_AT, 0)
        done += m
    _change_end(mem, vw)


@helper
def _free_room_locked(mem, vw, count):
    """Make the free list hold ``count`` more slots (allocator lock held): 0, or a status with
    nothing changed."""
    fl = mem[vw + L.VH_FREE]
    nfree = mem[vw + L.VH_NFREE]
    fcap = 0 if fl == 0 else block_ulen(mem, fl)
    if nfree + count > fcap:
        ncap = max(16, 2 * fcap, nfree + count)
        nfl = alloc_locked(mem, 8 * ncap, L.TAG_VFREE, ncap)
        if nfl < 0:
            return nfl
        mem[nfl // 8 + 1:nfl // 8 + 1 + nfree] = mem[fl // 8 + 1:fl // 8 + 1 + nfree]
        store_release(mem, vw + L.VH_FREE, nfl)
        if fl != 0:
            free_locked(mem, fl)
    return 0


@helper
def _push_free(mem, vw, start, count):
    """Put slots ``start .. start+count`` (zeroed) on the free list, which has room."""
    fl = mem[vw + L.VH_FREE]
    nfree = mem[vw + L.VH_NFREE]
    for i in range(count):
        mem[fl // 8 + 1 + nfree + i] = start + i
    mem[vw + L.VH_NFREE] = nfree + count


@helper
def _zero_slots(mem, vw, start, count):
    itemsize = mem[vw + L.VH_ITEMSIZE]
    at = _slot_at(mem, vw, start)
    mem.view(np.uint8)[at:at + count * itemsize] = 0


@helper
def _free_slots_locked(mem, vw, start, count):
    """Zero slots ``start .. start+count``, not yet published, and put them on the free list
    (grown if need be); 0, or a status with nothing changed."""
    r = _free_room_locked(mem, vw, count)
    if r == 0:
        _zero_slots(mem, vw, start, count)
        _push_free(mem, vw, start, count)
    return r


@helper
def _on_free_list(mem, vw, slot):
    fl = mem[vw + L.VH_FREE]
    for i in range(mem[vw + L.VH_NFREE]):
        if mem[fl // 8 + 1 + i] == slot:
            return True
    return False


@kernel(T.int64(MEM, T.int64, T.int64, T.int64))
def vector_remove(mem, token, h, slot):
    """Zero slot ``slot`` and put it on the free list (``insert`` reuses it)."""
    e, vw = _lock_vec(mem, h, L.KIND_VECTOR, token)
    if e < 0:
        return e
    n = mem[vw + L.VH_LEN]
    r = 0
    if slot < 0 or slot >= n or _on_free_list(mem, vw, slot):  # (removed once only)
        r = S.ERR_NOT_FOUND
    else:
        r = _free_room_locked(mem, vw, 1)
        if r == 0:  # (a kill from here on: the next writer zeroes the slot and frees it)
            mem[vw + L.VH_WRITING] = slot + 1
            _change_begin(mem, vw)
            _zero_slots(mem, vw, slot, 1)
            _push_free(mem, vw, slot, 1)
            mem[vw + L.VH_WRITING] = 0
            _change_end(mem, vw)
    _unlock_vec(mem, e)
    return r


@kernel(T.int64(MEM, T.int64))
def vector_after_dead_owner(mem, h):
    """Mend what a dead lock owner left half done (the caller took the lock over): the old
    records of a write in place go back; a slot being removed, or written by an insert while
    on the free list, is zeroed and put on (or kept on) the free list.  1 if there was such a
    write, 0 if not, or a status."""
    vw = _resolve_vec(mem, h)
    if vw < 0:
        return vw
    n = mem[vw + L.VH_LEN]
    itemsize = mem[vw + L.VH_ITEMSIZE]
    data_ok = _data_ok(mem, mem[vw + L.VH_DATA], n, itemsize)
    r = 0
    at, k, u = mem[vw + L.VH_UNDO_AT] - 1, mem[vw + L.VH_UNDO_N], mem[vw + L.VH_UNDO]
    if at >= 0:
        r = 1
        if (data_ok and 0 < k <= n - at and u != 0 and block_ok(mem, u, 8 + k * itemsize)
                and k <= block_ulen(mem, u)):
            buf = mem.view(np.uint8)
            memcpy(buf, _slot_at(mem, vw, at), buf, u + 8, k * itemsize)
        mem[vw + L.VH_UNDO_AT] = 0
    slot = mem[vw + L.VH_WRITING] - 1
    if slot >= 0:
        r = 1
        if data_ok and slot < n:
            _zero_slots(mem, vw, slot, 1)
            fl = mem[vw + L.VH_FREE]
            if (not _on_free_list(mem, vw, slot) and fl != 0
                    and mem[vw + L.VH_NFREE] < block_ulen(mem, fl)):  # (room was made first)
                _push_free(mem, vw, slot, 1)
        mem[vw + L.VH_WRITING] = 0
    if r == 1 or mem[vw + L.VH_VERSION] & 1:
        atomic_add(mem, vw + L.VH_VERSION, 2 + (mem[vw + L.VH_VERSION] & 1))
    return r


@kernel(T.int64(MEM, T.int64))
def vector_appender(mem, h):
    """The token of the process copying an append to vector ``h`` outside its lock (0 if
    none), or a status."""
    vw = _resolve_vec(mem, h)
    return vw if vw < 0 else load_acquire(mem, vw + L.VH_APPENDER)


@kernel(T.int64(MEM, T.int64, T.int64, T.int64))
def vector_reclaim(mem, token, h, dead):
    """Finish the append that process ``dead`` (a token; it has died) was copying outside the
    lock: its slots are zeroed and put on the free list, as removed records are, and published.
    1 if it did so, 0 if ``dead`` was not copying (any more), or a status."""
    e, vw = _lock_vec_nodrain(mem, h, L.KIND_VECTOR, token)
    if e < 0:
        return e
    r = 0
    if mem[vw + L.VH_APPENDER] == dead and dead != 0:
        if not lock_try(mem, L.W_ALLOC_LOCK, token):
            lock_release(mem, e + L.H_LOCK)
            return S.ERR_BUSY_ALLOC
        n = mem[vw + L.VH_LEN]
        end = mem[vw + L.VH_APPEND_END]
        if n < 0 or end < n or end > mem[vw + L.VH_CAP]:
            r = S.ERR_CORRUPT
        else:
            r = _free_slots_locked(mem, vw, n, end - n)
        if r == 0:
            store_release(mem, vw + L.VH_LEN, end)
            atomic_add(mem, vw + L.VH_VERSION, 2)
            store_release(mem, vw + L.VH_APPENDER, 0)
            r = 1
        lock_release(mem, L.W_ALLOC_LOCK)
    lock_release(mem, e + L.H_LOCK)
    return r


@kernel(T.int64(MEM, T.int64, T.int64, T.int64, RO_BYTES))
def vector_write(mem, token, h, start, data):
    """Overwrite slots from ``start`` with the records in ``data`` (within the length).  Only
    the vector's lock is held while the records are copied: other objects' allocations go on."""
    e, vw = _lock_vec_only(mem, h, L.KIND_VECLIKE, token)
    if e < 0:
        return e
    itemsize = mem[vw + L.VH_ITEMSIZE]
    k = len(data) // itemsize
    n = mem[vw + L.VH_LEN]
    r = 0
    if start < 0 or start + k > n:
        r = S.ERR_NOT_FOUND
    elif n > mem[vw + L.VH_CAP] or not _data_ok(mem, mem[vw + L.VH_DATA], n, itemsize):
        r = S.ERR_CORRUPT
    elif k > 0:
        u = _undo_block(mem, vw, itemsize, token)
        if u < 0:
            r = u
        else:
            _write_logged(mem, vw, start, k, data, u)
    lock_release(mem, e + L.H_LOCK)
    return r


@kernel(T.int64(MEM, T.int64, T.int64, T.int64))
def vector_truncate(mem, token, h, n):
    """Set the length to ``n``: shorter drops the tail, longer adds zeroed slots; the free list
    keeps only slots below ``n``."""
    e, vw = _lock_vec(mem, h, L.KIND_VECTOR, token)
    if e < 0:
        return e
    r = 0
    old = mem[vw + L.VH_LEN]
    if n < 0:
        r = S.ERR_NOT_FOUND
    elif n > old:
        r = _grow_locked(mem, vw, n)
        if r >= 0:
            itemsize = mem[vw + L.VH_ITEMSIZE]
            at = _slot_at(mem, vw, 0)
            mem.view(np.uint8)[at + old * itemsize:at + n * itemsize] = 0
    if r >= 0:
        fl = mem[vw + L.VH_FREE]
        keep = 0
        for i in range(mem[vw + L.VH_NFREE]):
            s = mem[fl // 8 + 1 + i]
            if s < n:
                mem[fl // 8 + 1 + keep] = s
                keep += 1
        mem[vw + L.VH_NFREE] = keep
        store_release(mem, vw + L.VH_LEN, n)
        atomic_add(mem, vw + L.VH_VERSION, 2)
        r = n
    _unlock_vec(mem, e)
    return r


@helper
def _copy_slots(mem, vw, d, n, out, start, count):
    """Copy slots ``start .. start+count`` of data block ``d`` (a vector of length ``n``, header
    ``vw``) into ``out``: their count, or a status."""
    cap = mem[vw + L.VH_CAP]
    itemsize = mem[vw + L.VH_ITEMSIZE]
    if start < 0 or count < 0 or start + count > n:
        return S.ERR_NOT_FOUND
    if not _data_ok(mem, d, cap, itemsize) or n > cap or count * itemsize > len(out):
        return S.ERR_CORRUPT
    memcpy(out, 0, mem.view(np.uint8), _records_at(d) + start * itemsize, count * itemsize)
    return count


@kernel(T.int64(MEM, T.int64, T.uint8[::1], T.int64, T.int64, T.int64))
def vector_read(mem, token, out, h, start, count):
    """Copy slots ``start .. start+count`` of vector or array ``h`` into ``out``: their count,
    or a status (ERR_NOT_FOUND past the end).  Read optimistically a few times, then under the
    vector's lock, so that it finishes whatever the write rate."""
    for _ in range(SNAP_TRIES):
        e, meta = resolve_meta(mem, h, L.KIND_VECLIKE)
        if e < 0:
            return e
        vw = _vec_words(mem, e)
        if vw < 0:
            gone = _still(mem, h, e, meta)
            return gone if gone < 0 else S.ERR_CORRUPT
        v1 = load_acquire(mem, vw + L.VH_VERSION)
        if v1 & 1:  # slots are changing in place
            cpu_pause()
            continue
        d = load_acquire(mem, vw + L.VH_DATA)
        n = load_acquire(mem, vw + L.VH_LEN)
        r = _copy_slots(mem, vw, d, n, out, start, count)
        gone = _still(mem, h, e, meta)
        if gone < 0:
            return gone
        if load_acquire(mem, vw + L.VH_VERSION) == v1 and r != S.ERR_CORRUPT:
            return r
    e, vw = _lock_vec_nodrain(mem, h, L.KIND_VECLIKE, token)
    if e < 0:
        return e
    r = _copy_slots(mem, vw, mem[vw + L.VH_DATA], mem[vw + L.VH_LEN], out, start, count)
    lock_release(mem, e + L.H_LOCK)
    return r


@kernel(T.UniTuple(T.int64, 3)(MEM, T.int64, T.int64))
def vector_pin(mem, h, token):
    """Pin the current data block for a view of this process (``token``): (block offset or a
    status, length, records offset).  The pin is recorded in the process's pin list, so it is
    released if the process dies holding it."""
    if not lock_try(mem, L.W_ALLOC_LOCK, token):
        return S.ERR_BUSY_ALLOC, 0, 0
    # under the allocator lock no object is dropped and no block is retired or freed: the
    # handle, checked now, and its current block stay current
    e = handle_resolve(mem, h, L.KIND_VECLIKE)
    vw = _vec_words(mem, e) if e >= 0 else e
    if vw < 0:
        lock_release(mem, L.W_ALLOC_LOCK)
        return (e if e < 0 else S.ERR_CORRUPT), 0, 0
    d = load_acquire(mem, vw + L.VH_DATA)
    r = S.ERR_CORRUPT
    n = 0
    if _data_ok(mem, d, 0, 0):
        r = _pin_locked(mem, token, d)
        if r >= 0:
            n = min(load_acquire(mem, vw + L.VH_LEN), block_ulen(mem, d))  # block's own capacity
    lock_release(mem, L.W_ALLOC_LOCK)
    return r, n, _records_at(d)


@kernel(T.int64(MEM, T.int64, T.int64))
def vector_drop(mem, token, h):
    """Free vector or array ``h``; its data block goes when the last view of it does."""
    e, vw = _lock_vec(mem, h, L.KIND_VECLIKE, token)
    if e < 0:
        return e
    v = mem[e + L.H_VALUE]
    handle_free_locked(mem, h, e)
    atomic_add(mem, vw + L.VH_VERSION, 2)
    if mem[vw + L.VH_FREE] != 0:
        free_locked(mem, mem[vw + L.VH_FREE])
    if mem[vw + L.VH_UNDO] != 0:
        free_locked(mem, mem[vw + L.VH_UNDO])
    _retire_locked(mem, mem[vw + L.VH_DATA])
    free_locked(mem, v)
    _unlock_vec(mem, e)
    return 0


@kernel(T.int64(MEM, T.int64, WORDS, T.int64))
def vector_free_slots(mem, token, out, h):
    """Copy the free list's slot indices into ``out``; their count (not copied if it does not
    fit).  Read under the vector's lock."""
    e, vw = _lock_vec_nodrain(mem, h, L.KIND_VECLIKE, token)
    if e < 0:
        return e
    nfree = mem[vw + L.VH_NFREE]
    fl = mem[vw + L.VH_FREE]
    r = nfree
    if nfree < 0 or (nfree > 0 and not block_ok(mem, fl, 8 + nfree * 8)):
        r = S.ERR_CORRUPT
    elif 0 < nfree <= len(out):
        out[:nfree] = mem[fl // 8 + 1:fl // 8 + 1 + nfree]
    lock_release(mem, e + L.H_LOCK)
    return r
