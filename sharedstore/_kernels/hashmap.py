"""The shared hash map: open addressing, power-of-two tables, linear probing, seeded hash.

A map object's block holds ``[table, count, used, version]`` (``_layout.M_*``); its table block
holds ``[capacity, slot...]``.  A slot word is empty (0), a tombstone (1), or
``tag << SLOT_TAG_SHIFT | entry_offset >> 3`` with ``tag`` 18 high bits of the key's hash, so most
mismatches are rejected without touching the entry.  An entry block holds one word with the key
and value tags and the key length, the value's payload word, the key bytes and the value bytes
(the value's length is the block header's ``ulen``).

Writers hold the map's lock (its handle entry's lock word, taken with ``heap.lock_handle``,
which checks the handle again once it holds the lock) and the allocator lock.  Readers first
read optimistically: they read ``version``, probe, copy the value out, and accept the result
only if ``version`` is unchanged.  After a few attempts that kept meeting writes (``OPT_TRIES``
for a key, ``SNAP_TRIES`` for a snapshot) a read takes the map's lock for itself and reads a
map no writer changes: every read finishes, whatever the write rate.  Writers keep the
invariants optimistic readers rely on:

- an entry (or a new table) is fully written before one release-store publishes it;
- ``version`` is bumped by 2 after every change is published and *before* anything unlinked is
  freed, and before the next change is published: a reader that saw ``version`` unchanged from
  its start to its end saw the map at one moment (``get_many`` of several keys included), and a
  reader that may have read freed memory always sees ``version`` move;
- every slot word is read once and used as read; every offset a reader takes from shared
  memory is bounds-checked before it is followed, and every probe loop is bounded by the
  table's capacity.  Something that looks damaged in an optimistic read is read again under the
  lock before it is reported: a write in progress is never reported as damage.

No state is ever "odd": a writer killed at any instant leaves readers nothing to wait for, at
worst a leaked block and a stale ``count`` that :func:`map_recount` repairs.

Every kernel takes the kind of map its caller expects (``KIND_MAP``, ``KIND_LIST``, or
``KIND_MAPLIKE`` for either) and refuses a handle of another kind with ERR_KIND.

Output records (``map_get``, ``map_get_many``, ``map_dump``) are int64 words
``[tag, payload, value length]`` (``map_dump`` adds ``key tag | key length << 8`` first), then the
key bytes and/or value bytes, each padded to 8.
"""

import numpy as np
from numba import types
from numba import types as T
from numba.extending import overload

from .. import _layout as L
from .._jit import BYTES, MEM, OUT, RO_BYTES, WORDS, helper, hot, inline, kernel
from . import status as S
from .atomics import atomic_add, cpu_pause, fence_acquire, load_acquire, sched_yield, store_release
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
    object_words,
    resolve_meta,
)
from .locks import lock_release, lock_try
from .memory import float_from_bits, float_to_bits, load_le64, memcpy, mul_fold, prefetch
from .pins import _pin_locked, _retire_locked
from .vector import _new_data_locked, _records_at

#: optimistic attempts of a read of one key (or a few) before it takes the map's lock
OPT_TRIES = 32
#: ... of a snapshot (``map_dump``, a long ``get_many``), which takes longer to repeat
SNAP_TRIES = 2
#: attempts of a read from users' jitted code, which has no token to lock with: it yields the
#: CPU between attempts, and gives up (ERR_RETRY) only if writers changed the map all the time
USER_TRIES = 1 << 20
_TAG_BITS = 63 - L.SLOT_TAG_SHIFT
_TAG_MASK = (1 << _TAG_BITS) - 1
_ENTRY_HDR = 8 + L.E_WORDS * 8  # block header + entry words: key bytes start here
REC_WORDS = 3  # output record header: [tag, payload, value length]

_P0 = np.uint64(0xA0761D6478BD642F)
_P1 = np.uint64(0xE7037ED1A0B428DB)
_P2 = np.uint64(0x8EBC6AF09C88C6E3)
_P3 = np.uint64(0x589965CC75374CC3)


# ---------------------------------------------------------------------------- hashing
@hot
def _load_bytes(key, i, n):
    """Little-endian uint64 from up to 8 bytes of ``key`` at ``i`` (zero-padded past ``n``)."""
    w = np.uint64(0)
    for j in range(min(8, n - i)):
        w |= np.uint64(key[i + j]) << np.uint64(8 * j)
    return w


def _load8(key, i, n):
    """``_load_bytes``, one unaligned load where 8 bytes of a buffer are there to read."""
    raise NotImplementedError("_load8 is for jitted code")


@overload(_load8, jit_options={"nogil": True})
def _load8_impl(key, i, n):
    if not isinstance(key, types.Buffer):
        return lambda key, i, n: _load_bytes(key, i, n)  # a tuple: an int key's 8 bytes
    return lambda key, i, n: load_le64(key, i) if i + 8 <= n else _load_bytes(key, i, n)


@hot
def hash_key(key, ktag, seed):
    """Keyed 64-bit hash of a key's bytes and tag (wyhash-style multiply-fold), as int64."""
    s = np.uint64(seed) ^ _P0
    n = len(key)
    h = mul_fold(s ^ _P1 ^ np.uint64(ktag), np.uint64(n) ^ _P2)
    i = 0
    while i < n:
        h = mul_fold(h ^ _load8(key, i, n) ^ _P1, s ^ _P3)
        i += 8
    return np.int64(mul_fold(h ^ _P2, s ^ _P1))


@kernel(T.int64(BYTES, T.int64, T.int64))
def hash_bytes(key, ktag, seed):
    """The map hash of ``key`` under ``seed`` (for tests and tools)."""
    return hash_key(key, ktag, seed)


@hot
def _slot_tag(hv):
    return (hv >> (64 - _TAG_BITS)) & _TAG_MASK


@hot
def fetch_entry(mem, slots, mask, hv):
    """Ask the CPU for the entry that the first slot of hash ``hv`` points at, if its tag fits
    (``slots``: word index of the table's first slot): its first 48 bytes, which hold a short
    key whole and may straddle two cache lines.  A hint only; nothing is read from the entry."""
    s = mem[slots + (hv & mask)]
    if (s >> L.SLOT_TAG_SHIFT) == _slot_tag(hv):
        w = s & L.SLOT_OFF_MASK
        prefetch(mem, w)
        prefetch(mem, w + 5)


@hot
def _pad8(n):
    return (n + 7) & ~7


# ---------------------------------------------------------------------------- structure
@inline
def _resolve_map(mem, h, kind):
    """Handle entry of map ``h`` of ``kind`` (KIND_MAP, KIND_LIST or KIND_MAPLIKE), or a status."""
    return handle_resolve(mem, h, kind)


@inline
def _table_cap(mem, t):
    """Capacity of table block ``t`` if it is well formed and in bounds, else -1."""
    if not block_ok(mem, t, 24):
        return -1
    cap = mem[t // 8 + 1]
    if cap < L.MAP_MIN_CAP or (cap & (cap - 1)) != 0 or not block_ok(mem, t, 16 + cap * 8):
        return -1
    return cap


@inline
def _map_words(mem, e):
    """Word index of the map header data for handle entry ``e``, or -1 if out of bounds."""
    return object_words(mem, e, L.MAP_WORDS)


@inline
def _entry_key_len(mem, eoff):
    """Key length of entry ``eoff``, or -1 if the entry is out of bounds."""
    if not block_ok(mem, eoff, _ENTRY_HDR):
        return -1
    klen = mem[eoff // 8 + 1 + L.E_META] >> 16
    if klen < 0 or not block_ok(mem, eoff, _ENTRY_HDR + _pad8(klen) + block_ulen(mem, eoff)):
        return -1
    return klen


@inline
def _key_eq(mem, buf, eoff, key, ktag):
    n = len(key)
    klen = _entry_key_len(mem, eoff)
    if klen != n or (mem[eoff // 8 + 1 + L.E_META] & 0xFF) != ktag:
        return False
    at = eoff + _ENTRY_HDR  # the entry's key bytes are padded to 8 inside its block
    i = 0
    while i + 8 <= n:
        if load_le64(buf, at + i) != _load8(key, i, n):
            return False
        i += 8
    if i == n:
        return True
    tail = np.uint64(8 * (n - i))
    return (load_le64(buf, at + i) & ((np.uint64(1) << tail) - np.uint64(1))) == _load8(key, i, n)


@inline
def _probe(mem, buf, t, cap, hv, key, ktag):
    """(slot index holding ``key``, its slot word as read), or (-(1 + index where it would be
    inserted), 0) if absent; ``-(1 + cap)`` if absent and the table has no free slot (corrupt).

    The slot word is read once: a caller follows the word that matched, never a second read of
    the slot, which a writer may have changed in between."""
    tag = _slot_tag(hv)
    sw = t // 8 + 2
    i = hv & (cap - 1)
    ins = -1
    for _ in range(cap):
        s = load_acquire(mem, sw + i)
        if s == L.SLOT_EMPTY:
            return -(1 + (i if ins < 0 else ins)), 0
        if s == L.SLOT_TOMB:
            if ins < 0:
                ins = i
        elif (s >> L.SLOT_TAG_SHIFT) == tag and _key_eq(
            mem, buf, (s & L.SLOT_OFF_MASK) << 3, key, ktag
        ):
            return i, s
        i = (i + 1) & (cap - 1)
    return -(1 + (cap if ins < 0 else ins)), 0


@helper
def _cap_for(n):
    """Table size for ``n`` entries: a power of two loaded at most 0.6 (tables grow at 0.8, so a
    map pays 10 to 13 bytes of slots per entry; the 18-bit tags in the slots keep the longer
    probes of linear probing cheap: they rarely leave one cache line)."""
    cap = L.MAP_MIN_CAP
    while cap * 3 < n * 5:
        cap *= 2
    return cap


@hot
def _read_begin(mem, h, kind):
    """Start an optimistic read of map ``h``: (ticket, table offset, table capacity or -1 if
    the table read is not well formed).  The ticket is ``(header word index or a status,
    version, handle entry word, its meta word)``, for :func:`_read_ok`."""
    e, meta = resolve_meta(mem, h, kind)
    if e < 0:
        return (e, 0, 0, 0), 0, -1
    mw = _map_words(mem, e)
    if mw < 0:
        return (S.ERR_CORRUPT, 0, 0, 0), 0, -1
    v1 = load_acquire(mem, mw + L.M_VERSION)
    t = load_acquire(mem, mw + L.M_TABLE)
    return (mw, v1, e, meta), t, _table_cap(mem, t)


@inline
def _read_ok(mem, tk):
    """End an optimistic read begun with ticket ``tk``: True if no writer changed the map since
    it began, and the map was not dropped (its handle still names it: a dropped map's memory,
    reused by another map, never answers for it)."""
    fence_acquire()  # the data loads above complete before the version is read again
    mw, v1, e, meta = tk
    return load_acquire(mem, mw + L.M_VERSION) == v1 and meta_still(mem, e, meta)


@helper
def _read_lock(mem, h, kind, token):
    """Take map ``h``'s lock for a read that optimism could not finish: (entry word or a status,
    header word index, table offset, capacity or -1).  No writer changes the map until
    :func:`_read_unlock`."""
    e = lock_handle(mem, h, kind, token)
    if e < 0:
        return e, 0, 0, -1
    mw = _map_words(mem, e)
    if mw < 0:
        lock_release(mem, e + L.H_LOCK)
        return S.ERR_CORRUPT, 0, 0, -1
    t = mem[mw + L.M_TABLE]
    return e, mw, t, _table_cap(mem, t)


@inline
def _read_unlock(mem, e):
    lock_release(mem, e + L.H_LOCK)


@helper
def _new_table_locked(mem, cap):
    t = alloc_locked(mem, 8 + cap * 8, L.TAG_TABLE, 0)
    if t >= 0:
        tw = t // 8 + 1
        mem[tw] = cap
        mem[tw + 1:tw + 1 + cap] = 0
    return t


@helper
def _rebuild_locked(mem, buf, mw, newcap):
    """Rehash the live entries into a fresh table of ``newcap`` slots (tombstones dropped)."""
    t = mem[mw + L.M_TABLE]
    cap = _table_cap(mem, t)
    if cap < 0:
        return S.ERR_CORRUPT
    nt = _new_table_locked(mem, newcap)
    if nt < 0:
        return nt
    ntw = nt // 8 + 2
    seed = mem[L.W_HASH_SEED]
    sw = t // 8 + 2
    n = 0
    for i in range(cap):
        s = mem[sw + i]
        if s == L.SLOT_EMPTY or s == L.SLOT_TOMB:
            continue
        eoff = (s & L.SLOT_OFF_MASK) << 3
        klen = _entry_key_len(mem, eoff)
        if klen < 0:
            free_locked(mem, nt)
            return S.ERR_CORRUPT
        at = eoff + _ENTRY_HDR
        hv = hash_key(buf[at:at + klen], mem[eoff // 8 + 1 + L.E_META] & 0xFF, seed)
        j = hv & (newcap - 1)
        while mem[ntw + j] != L.SLOT_EMPTY:
            j = (j + 1) & (newcap - 1)
        mem[ntw + j] = s
        n += 1
    store_release(mem, mw + L.M_TABLE, nt)  # publish the new table
    mem[mw + L.M_COUNT] = n
    mem[mw + L.M_USED] = n
    atomic_add(mem, mw + L.M_VERSION, 2)    # readers of the old table retry ...
    free_locked(mem, t)                     # ... before it can be reused
    return 0


@helper
def _lock_map(mem, h, kind, token):
    """Take map ``h``'s lock (the handle checked again once held) and the allocator lock: its
    entry word or a status, no lock held."""
    e = lock_handle(mem, h, kind, token)
    if e < 0:
        return e
    if not lock_try(mem, L.W_ALLOC_LOCK, token):
        lock_release(mem, e + L.H_LOCK)
        return S.ERR_BUSY_ALLOC
    if _map_words(mem, e) < 0:
        _unlock_map(mem, e)
        return S.ERR_CORRUPT
    return e


@helper
def _unlock_map(mem, e):
    lock_release(mem, L.W_ALLOC_LOCK)
    lock_release(mem, e + L.H_LOCK)


# ---------------------------------------------------------------------------- create
@kernel(T.int64(MEM, T.int64, T.int64))
def map_new(mem, token, kind):
    """New empty map (``kind`` KIND_MAP, or KIND_LIST for a list); its handle or a status."""
    if kind != L.KIND_MAP and kind != L.KIND_LIST:
        return S.ERR_KIND
    if not lock_try(mem, L.W_ALLOC_LOCK, token):
        return S.ERR_BUSY_ALLOC
    h = S.ERR_COMMIT
    m = alloc_locked(mem, L.MAP_WORDS * 8, L.TAG_MAP, 0)
    if m < 0:
        h = m
    else:
        t = _new_table_locked(mem, L.MAP_MIN_CAP)
        if t < 0:
            free_locked(mem, m)
            h = t
        else:
            mw = m // 8 + 1
            mem[mw + L.M_TABLE] = t
            mem[mw + L.M_COUNT] = 0
            mem[mw + L.M_USED] = 0
            mem[mw + L.M_VERSION] = 0
            h = handle_new_locked(mem, kind, m)
            if h < 0:
                free_locked(mem, t)
                free_locked(mem, m)
    lock_release(mem, L.W_ALLOC_LOCK)
    return h


# ---------------------------------------------------------------------------- reads
@hot
def _find_in(mem, buf, t, cap, hv, key, ktag):
    """(value tag or status, entry offset, key length) of ``key`` in table ``t`` of ``cap``
    slots (-1: a table that is not well formed).  In an optimistic read, valid only if
    ``_read_ok`` agrees after the caller has copied what it needs out of the entry."""
    if cap < 0:
        return S.ERR_CORRUPT, 0, 0
    i, s = _probe(mem, buf, t, cap, hv, key, ktag)
    if i < 0:
        return (S.ERR_NOT_FOUND if i > -(1 + cap) else S.ERR_CORRUPT), 0, 0
    eoff = (s & L.SLOT_OFF_MASK) << 3
    klen = _entry_key_len(mem, eoff)
    if klen < 0:
        return S.ERR_CORRUPT, 0, 0
    return mem[eoff // 8 + 1 + L.E_META] >> 8 & 0xFF, eoff, klen


@hot
def _find_hashed(mem, buf, h, kind, key, ktag, hv):
    """One optimistic probe for ``key`` (hash ``hv``): (value tag or status, entry offset, key
    length, the read's ticket: its first item a status if the map cannot be read)."""
    tk, t, cap = _read_begin(mem, h, kind)
    if tk[0] < 0:
        return tk[0], 0, 0, tk
    res, eoff, klen = _find_in(mem, buf, t, cap, hv, key, ktag)
    return res, eoff, klen, tk


@hot
def _array_data(mem, eoff):
    """(byte offset, length) of the data of array entry ``eoff``: a data block of its own
    (``_layout``: V_ARRAY); length -1 if the payload names no sound data block."""
    d = mem[eoff // 8 + 1 + L.E_PAYLOAD]
    if not block_ok(mem, d, 8 + L.D_RECORDS) or (mem[d // 8] >> 8) & 0xFF != L.TAG_VDATA:
        return 0, -1
    n = block_ulen(mem, d)
    if not block_ok(mem, d, 8 + L.D_RECORDS + n):
        return 0, -1
    return _records_at(d), n


@helper
def _record_at(mem, buf, t, cap, hv, key, ktag, out, pos):
    """Find ``key`` in table ``t`` and write its record to ``out[pos:]`` if it fits: (value tag
    or status, bytes the record takes).  A missing key's record has tag ERR_NOT_FOUND."""
    res, eoff, klen = _find_in(mem, buf, t, cap, hv, key, ktag)
    ow = out.view(np.int64)
    if res == S.ERR_NOT_FOUND:
        if pos + REC_WORDS * 8 <= len(out):
            ow[pos // 8] = res
            ow[pos // 8 + 1] = 0
            ow[pos // 8 + 2] = 0
        return res, REC_WORDS * 8
    if res < 0:
        return res, 0
    vlen = block_ulen(mem, eoff)
    if not block_ok(mem, eoff, _ENTRY_HDR + _pad8(klen) + vlen):
        return S.ERR_CORRUPT, 0  # (the block changed since _find_in checked it)
    dat, dlen = 0, 0
    if res == L.V_ARRAY:
        dat, dlen = _array_data(mem, eoff)
        if dlen < 0:
            return S.ERR_CORRUPT, 0
    size = REC_WORDS * 8 + _pad8(vlen + dlen)
    if pos + size <= len(out):
        ow[pos // 8] = res
        ow[pos // 8 + 1] = mem[eoff // 8 + 1 + L.E_PAYLOAD]
        ow[pos // 8 + 2] = vlen + dlen
        memcpy(out, pos + 24, buf, eoff + _ENTRY_HDR + _pad8(klen), vlen)
        memcpy(out, pos + 24 + vlen, buf, dat, dlen)
    return res, size


@helper
def _get_into(mem, buf, token, h, kind, key, ktag, out, pos):
    """Look ``key`` up and write its record to ``out[pos:]`` (if it fits): (value tag or
    status, bytes the record takes).  Optimistic first; then under the map's lock (ERR_BUSY_OBJ
    if a writer holds it past the spin budget: the caller waits and calls again)."""
    hv = hash_key(key, ktag, mem[L.W_HASH_SEED])
    for _ in range(OPT_TRIES):
        tk, t, cap = _read_begin(mem, h, kind)
        if tk[0] < 0:
            return tk[0], 0
        res, size = _record_at(mem, buf, t, cap, hv, key, ktag, out, pos)
        if _read_ok(mem, tk) and res != S.ERR_CORRUPT:
            return res, size
    e, mw, t, cap = _read_lock(mem, h, kind, token)
    if e < 0:
        return e, 0
    res, size = _record_at(mem, buf, t, cap, hv, key, ktag, out, pos)
    _read_unlock(mem, e)
    return res, size


@hot
def lookup(mem, h, key, ktag):
    """(value tag or status, payload word) of ``key`` in map ``h``, read without locking."""
    return lookup_hashed(mem, h, key, ktag, hash_key(key, ktag, mem[L.W_HASH_SEED]))


@hot
def lookup_hashed(mem, h, key, ktag, hv):
    """``lookup`` of a key whose hash under the store's seed is ``hv`` (for users' jitted
    code, which holds no token: it reads optimistically, yielding the CPU between attempts
    after the first few; ERR_RETRY only if writers changed the map all along)."""
    buf = mem.view(np.uint8)
    for i in range(USER_TRIES):
        res, eoff, _, tk = _find_hashed(mem, buf, h, L.KIND_MAP, key, ktag, hv)
        if tk[0] < 0:
            return tk[0], 0
        payload = mem[eoff // 8 + 1 + L.E_PAYLOAD] if res > 0 else 0
        if _read_ok(mem, tk) and res != S.ERR_CORRUPT:
            return res, payload
        if i >= OPT_TRIES:
            sched_yield()
        else:
            cpu_pause()
    return S.ERR_RETRY, 0


@kernel(T.int64(MEM, T.int64, OUT, T.int64, T.int64, BYTES, T.int64))
def map_get(mem, token, out, h, kind, key, ktag):
    """Look ``key`` up; return the value's tag, or a status.

    ``out`` receives one record ``[tag, payload, value length]`` + the value bytes; if the
    value does not fit, only the returned tag tells it was found: ``map_value_size`` says how
    big ``out`` must be."""
    res, size = _get_into(mem, mem.view(np.uint8), token, h, kind, key, ktag, out, 0)
    if res > 0 and size > len(out):
        out.view(np.int64)[2] = size  # too small: report the size needed in place of the length
        return S.ERR_SCRATCH
    return res


@helper
def _records_of(mem, buf, t, cap, blob, koffs, ktags, out):
    """The records of keys ``blob[koffs[i]:koffs[i+1]]`` in table ``t``, one after another in
    ``out`` (as far as they fit): the bytes they take, or a status."""
    seed = mem[L.W_HASH_SEED]
    pos = 0
    for i in range(len(ktags)):
        key = blob[koffs[i]:koffs[i + 1]]
        res, size = _record_at(mem, buf, t, cap, hash_key(key, ktags[i], seed), key, ktags[i],
                               out, pos)
        if res < 0 and res != S.ERR_NOT_FOUND:
            return res
        pos += size
    return pos


@kernel(T.int64(MEM, T.int64, OUT, T.int64, T.int64, RO_BYTES, WORDS, WORDS))
def map_get_many(mem, token, out, h, kind, blob, koffs, ktags):
    """Look up keys ``blob[koffs[i]:koffs[i+1]]`` (tags ``ktags[i]``); records go to ``out``
    one after another (a missing key's record has tag ERR_NOT_FOUND), all read from one state
    of the map.  Returns the bytes all records need; nothing is lost if that exceeds
    ``len(out)``: call again with a bigger one."""
    buf = mem.view(np.uint8)
    tries = OPT_TRIES if len(ktags) <= 64 else SNAP_TRIES
    for _ in range(tries):
        tk, t, cap = _read_begin(mem, h, kind)
        if tk[0] < 0:
            return tk[0]
        pos = _records_of(mem, buf, t, cap, blob, koffs, ktags, out)
        if _read_ok(mem, tk) and pos != S.ERR_CORRUPT:
            return pos
    e, mw, t, cap = _read_lock(mem, h, kind, token)
    if e < 0:
        return e
    pos = _records_of(mem, buf, t, cap, blob, koffs, ktags, out)
    _read_unlock(mem, e)
    return pos


@kernel(T.int64(MEM, T.int64, T.int64, T.int64))
def map_len(mem, token, h, kind):
    """Live entries of map ``h``: its count, checked against its table's capacity (a damaged
    count is ERR_CORRUPT, never a length no table could hold)."""
    for _ in range(OPT_TRIES):
        tk, t, cap = _read_begin(mem, h, kind)
        if tk[0] < 0:
            return tk[0]
        n = load_acquire(mem, tk[0] + L.M_COUNT)
        if _read_ok(mem, tk) and 0 <= n <= cap:  # count and table of one moment
            return n
    e, mw, t, cap = _read_lock(mem, h, kind, token)
    if e < 0:
        return e
    n = mem[mw + L.M_COUNT]
    _read_unlock(mem, e)
    return n if 0 <= n <= cap else S.ERR_CORRUPT


@helper
def _dump_table(mem, buf, t, cap, with_values, out, tk):
    """Write the entries of table ``t`` to ``out`` as ``map_dump`` describes (as far as they
    fit): the bytes they take, or ERR_CORRUPT.  An optimistic read (ticket ``tk``; ``tk[0] <
    0``: under the lock) gives up with ERR_RETRY as soon as a writer changed the map."""
    ow = out.view(np.int64)
    if cap < 0:
        return S.ERR_CORRUPT
    pos = 0
    for i in range(cap):
        if tk[0] >= 0 and i & 4095 == 4095 and not _read_ok(mem, tk):
            return S.ERR_RETRY  # (a snapshot that cannot succeed stops at once)
        s = load_acquire(mem, t // 8 + 2 + i)
        if s == L.SLOT_EMPTY or s == L.SLOT_TOMB:
            continue
        eoff = (s & L.SLOT_OFF_MASK) << 3
        klen = _entry_key_len(mem, eoff)
        if klen < 0:
            return S.ERR_CORRUPT
        vlen = block_ulen(mem, eoff)
        if not block_ok(mem, eoff, _ENTRY_HDR + _pad8(klen) + vlen):
            return S.ERR_CORRUPT
        meta = mem[eoff // 8 + 1 + L.E_META]
        dat, dlen = 0, 0
        if with_values and (meta >> 8 & 0xFF) == L.V_ARRAY:
            dat, dlen = _array_data(mem, eoff)
            if dlen < 0:
                return S.ERR_CORRUPT
        vbytes = _pad8(vlen + dlen) if with_values else 0
        size = 32 + _pad8(klen) + vbytes
        if pos + size <= len(out):
            ow[pos // 8] = (meta & 0xFF) | (klen << 8)
            ow[pos // 8 + 1] = meta >> 8 & 0xFF
            ow[pos // 8 + 2] = mem[eoff // 8 + 1 + L.E_PAYLOAD]
            ow[pos // 8 + 3] = vlen + dlen
            at = eoff + _ENTRY_HDR
            memcpy(out, pos + 32, buf, at, klen)
            if with_values:
                at += _pad8(klen)
                memcpy(out, pos + 32 + _pad8(klen), buf, at, vlen)
                memcpy(out, pos + 32 + _pad8(klen) + vlen, buf, dat, dlen)
        pos += size
    return pos


@kernel(T.int64(MEM, T.int64, OUT, T.int64, T.int64, T.int64))
def map_dump(mem, token, out, h, kind, with_values):
    """Write a snapshot of the map's entries to ``out``; return the bytes it needs.

    Records: ``[key tag | key length << 8, value tag, payload, value length]``, the key bytes
    padded to 8, and (if ``with_values``) the value bytes padded to 8.  Nothing is written past
    ``len(out)``; a return value larger than ``len(out)`` asks for a bigger ``out``.  The
    snapshot is of one moment: read optimistically ``SNAP_TRIES`` times, then under the map's
    lock (writers wait while it is copied), so it finishes whatever the write rate."""
    buf = mem.view(np.uint8)
    for _ in range(SNAP_TRIES):
        tk, t, cap = _read_begin(mem, h, kind)
        if tk[0] < 0:
            return tk[0]
        pos = _dump_table(mem, buf, t, cap, with_values, out, tk)
        if pos != S.ERR_RETRY and _read_ok(mem, tk) and pos != S.ERR_CORRUPT:
            return pos
    e, mw, t, cap = _read_lock(mem, h, kind, token)
    if e < 0:
        return e
    pos = _dump_table(mem, buf, t, cap, with_values, out, (-1, 0, 0, 0))
    _read_unlock(mem, e)
    return pos


# ---------------------------------------------------------------------------- writes
@helper
def _array_head_len(vdata):
    """Bytes of ``encode_array``'s header at the start of an array value's bytes, or -1."""
    if len(vdata) < 4:
        return -1
    n = vdata[0] | vdata[1] << 8 | vdata[2] << 16 | vdata[3] << 24
    n = 4 + n + (-(4 + n) % 16)
    return n if n <= len(vdata) else -1


@helper
def _new_array_locked(mem, buf, data, at, n):
    """A data block holding ``data[at:at + n]`` (an array value's elements): offset or status."""
    d = _new_data_locked(mem, n, 1)
    if d >= 0:
        memcpy(buf, _records_at(d), data, at, n)
    return d


@helper
def _free_entry_locked(mem, eoff):
    """Free an unlinked entry block (locks held, version already bumped); an array value's
    data block is retired: freed now, or by the unpin of the last view of it."""
    if (mem[eoff // 8 + 1 + L.E_META] >> 8) & 0xFF == L.V_ARRAY:
        d = mem[eoff // 8 + 1 + L.E_PAYLOAD]
        if block_ok(mem, d, 8 + L.D_RECORDS) and (mem[d // 8] >> 8) & 0xFF == L.TAG_VDATA:
            _retire_locked(mem, d)
    free_locked(mem, eoff)


@helper
def _set_locked(mem, buf, mw, key, ktag, vtag, payload, vdata):
    """Insert or replace ``key`` (map and allocator locks held); 1 if new, 0 if replaced.

    An array value (V_ARRAY) comes as ``encode_array``'s bytes: its header goes in the entry,
    its elements in a data block of their own (so views can pin them)."""
    if vtag != L.V_ARRAY:
        return _put_locked(mem, buf, mw, key, ktag, vtag, payload, vdata, len(vdata))
    hl = _array_head_len(vdata)
    if hl < 0:
        return S.ERR_INVALID
    d = _new_array_locked(mem, buf, vdata, hl, len(vdata) - hl)
    if d < 0:
        return d
    r = _put_locked(mem, buf, mw, key, ktag, vtag, d, vdata, hl)
    if r < 0:
        free_locked(mem, d)
    return r


@helper
def _put_locked(mem, buf, mw, key, ktag, vtag, payload, vdata, vlen):
    """``_set_locked`` of a value whose entry bytes are ``vdata[:vlen]``."""
    cap = _table_cap(mem, mem[mw + L.M_TABLE])
    if cap < 0:
        return S.ERR_CORRUPT
    if (mem[mw + L.M_USED] + 1) * 5 > cap * 4:  # grow (or drop tombstones) past 0.8 full
        r = _rebuild_locked(mem, buf, mw, _cap_for(mem[mw + L.M_COUNT] + 1))
        if r < 0:
            return r
    t = mem[mw + L.M_TABLE]
    cap = mem[t // 8 + 1]
    hv = hash_key(key, ktag, mem[L.W_HASH_SEED])
    klen = len(key)
    if klen > L.KEY_MAX:
        return S.ERR_FULL
    eoff = alloc_locked(mem, L.E_WORDS * 8 + _pad8(klen) + vlen, L.TAG_ENTRY, vlen)
    if eoff < 0:
        return eoff
    ew = eoff // 8 + 1
    mem[ew + L.E_META] = ktag | (vtag << 8) | (klen << 16)
    mem[ew + L.E_PAYLOAD] = payload
    bytes_put(buf, eoff + _ENTRY_HDR, key)
    memcpy(buf, eoff + _ENTRY_HDR + _pad8(klen), vdata, 0, vlen)
    word = (_slot_tag(hv) << L.SLOT_TAG_SHIFT) | (eoff >> 3)
    sw = t // 8 + 2
    i, old = _probe(mem, buf, t, cap, hv, key, ktag)
    if i >= 0:
        store_release(mem, sw + i, word)                # publish the replacement
        atomic_add(mem, mw + L.M_VERSION, 2)            # readers of the old entry retry ...
        _free_entry_locked(mem, (old & L.SLOT_OFF_MASK) << 3)  # ... before it can be reused
        return 0
    ins = -i - 1
    if ins >= cap:
        free_locked(mem, eoff)
        return S.ERR_CORRUPT
    was = mem[sw + ins]
    store_release(mem, sw + ins, word)  # publish the new entry
    mem[mw + L.M_COUNT] += 1
    if was == L.SLOT_EMPTY:
        mem[mw + L.M_USED] += 1
    atomic_add(mem, mw + L.M_VERSION, 2)
    return 1


@helper
def store_value(mem, token, h, kind, key, ktag, vtag, payload, vdata):
    """Set ``key`` to a value under the map's lock: 1 if new, 0 if replaced, or a status."""
    e = _lock_map(mem, h, kind, token)
    if e < 0:
        return e
    r = _set_locked(mem, mem.view(np.uint8), _map_words(mem, e), key, ktag, vtag, payload, vdata)
    _unlock_map(mem, e)
    return r


@kernel(T.int64(MEM, T.int64, T.int64, T.int64, BYTES, T.int64, T.int64, T.int64, T.float64,
                BYTES))
def map_set(mem, token, h, kind, key, ktag, vtag, ipay, fpay, vdata):
    """Set ``key`` to a value; 1 if the key is new, 0 if it replaced a value, or a status.

    The payload word is ``fpay``'s bits for a float value, else ``ipay``; ``vdata`` holds the
    value's bytes (str, bytes, pickles, arrays)."""
    payload = float_to_bits(fpay) if vtag == L.V_FLOAT else ipay
    return store_value(mem, token, h, kind, key, ktag, vtag, payload, vdata)


@kernel(T.int64(MEM, T.int64, OUT, T.int64, T.int64, BYTES, T.int64, T.int64, T.int64,
                T.float64, BYTES))
def map_setdefault(mem, token, out, h, kind, key, ktag, vtag, ipay, fpay, vdata):
    """Insert ``key`` with a value (as ``map_set``) only if it is absent, atomically: 0 if it
    was inserted; else the tag of the value there (its record written to ``out`` as
    ``map_get`` writes it; ERR_SCRATCH with the size needed in word 2 if it does not fit)."""
    e = _lock_map(mem, h, kind, token)
    if e < 0:
        return e
    buf = mem.view(np.uint8)
    mw = _map_words(mem, e)
    t = mem[mw + L.M_TABLE]
    hv = hash_key(key, ktag, mem[L.W_HASH_SEED])
    res, size = _record_at(mem, buf, t, _table_cap(mem, t), hv, key, ktag, out, 0)
    if res == S.ERR_NOT_FOUND:
        payload = float_to_bits(fpay) if vtag == L.V_FLOAT else ipay
        r = _set_locked(mem, buf, mw, key, ktag, vtag, payload, vdata)
        res = min(r, 0)
    elif res > 0 and size > len(out):
        out.view(np.int64)[2] = size
        res = S.ERR_SCRATCH
    _unlock_map(mem, e)
    return res


@helper
def _incr_locked(mem, buf, mw, key, ktag, is_float, idelta, fdelta):
    """Add to the number at ``key`` (map and allocator locks held), a missing key counting as
    0: (1 if the value is a float64 else 0, or a status; the new value's bits).  An int delta
    makes an int64 value (wrapping, as ``IntRef.add``), a float delta a float64; a float value
    takes an int delta too.  A value of another type is ERR_VALUE_TYPE and changes nothing."""
    t = mem[mw + L.M_TABLE]
    cap = _table_cap(mem, t)
    hv = hash_key(key, ktag, mem[L.W_HASH_SEED])
    res, eoff, _ = _find_in(mem, buf, t, cap, hv, key, ktag)
    if res == S.ERR_NOT_FOUND:
        vtag = L.V_FLOAT if is_float else L.V_INT
        bits = float_to_bits(fdelta) if is_float else idelta
        r = _put_locked(mem, buf, mw, key, ktag, vtag, bits, buf[:0], 0)
        return (r if r < 0 else is_float), bits
    if res < 0:
        return res, 0
    pw = eoff // 8 + 1 + L.E_PAYLOAD
    if res == L.V_FLOAT:
        x = fdelta if is_float else float(idelta)
        bits = float_to_bits(float_from_bits(mem[pw]) + x)
    elif res == L.V_INT and not is_float:
        bits = mem[pw] + idelta
    else:
        return S.ERR_VALUE_TYPE, 0
    store_release(mem, pw, bits)          # one word: a reader sees the old or the new value
    atomic_add(mem, mw + L.M_VERSION, 2)  # (and a reader of several keys sees one moment)
    return (1 if res == L.V_FLOAT else 0), bits


@helper
def incr_value(mem, token, h, kind, key, ktag, is_float, idelta, fdelta):
    """Atomically add ``idelta`` (or ``fdelta`` if ``is_float``) to the number at ``key``, a
    missing key counting as 0: (status, the new value's bits: an int64, or a float64's)."""
    e = _lock_map(mem, h, kind, token)
    if e < 0:
        return e, 0
    r = _incr_locked(mem, mem.view(np.uint8), _map_words(mem, e), key, ktag, is_float, idelta,
                     fdelta)
    _unlock_map(mem, e)
    return r


@kernel(T.UniTuple(T.int64, 2)(MEM, T.int64, T.int64, T.int64, BYTES, T.int64, T.int64,
                               T.int64, T.float64))
def map_incr(mem, token, h, kind, key, ktag, is_float, idelta, fdelta):
    """:func:`incr_value`, for the Python layer."""
    return incr_value(mem, token, h, kind, key, ktag, is_float, idelta, fdelta)


#: words per item of ``map_incr_many``'s ``recs``
INCR_REC = 5


@kernel(T.int64(MEM, T.int64, T.int64, T.int64, RO_BYTES, WORDS, WORDS))
def map_incr_many(mem, token, h, kind, blob, recs, progress):
    """``map_incr`` of many keys under one lock.  Item ``i`` is ``recs[5i:5i+5]`` = ``[key
    offset, key length, key tag, is_float, delta bits]`` into ``blob``; the new value's bits
    replace the delta's.  Starts at item ``progress[0]`` and advances it as items are done;
    after a status (memory to commit, a busy lock) the caller fixes the cause and calls again.
    Returns 0 when all are done, or a status.  On the first call every value is checked
    first: ERR_VALUE_TYPE (the item's index in ``progress[1]``) changes nothing."""
    e = _lock_map(mem, h, kind, token)
    if e < 0:
        return e
    buf = mem.view(np.uint8)
    mw = _map_words(mem, e)
    r = 0
    n = len(recs) // INCR_REC
    if progress[0] == 0:
        t = mem[mw + L.M_TABLE]
        cap = _table_cap(mem, t)
        seed = mem[L.W_HASH_SEED]
        for i in range(n):
            q = i * INCR_REC
            key = blob[recs[q]:recs[q] + recs[q + 1]]
            res, _, _ = _find_in(mem, buf, t, cap, hash_key(key, recs[q + 2], seed), key,
                                 recs[q + 2])
            if res > 0 and res != L.V_FLOAT and (res != L.V_INT or recs[q + 3] != 0):
                progress[1] = i
                _unlock_map(mem, e)
                return S.ERR_VALUE_TYPE
    while progress[0] < n:
        q = progress[0] * INCR_REC
        key = blob[recs[q]:recs[q] + recs[q + 1]]
        f = recs[q + 3]
        r, bits = _incr_locked(mem, buf, mw, key, recs[q + 2], f, recs[q + 4],
                               float_from_bits(recs[q + 4]))
        if r < 0:
            break
        recs[q + 4] = bits
        progress[0] += 1
    _unlock_map(mem, e)
    return min(r, 0)


@kernel(T.int64(MEM, T.int64, T.int64, T.int64, BYTES, T.int64, BYTES, RO_BYTES))
def map_set_array(mem, token, h, kind, key, ktag, head, data):
    """Set ``key`` to an array given as ``encode_array``'s header ``head`` and its elements'
    bytes ``data`` (no bytes object of the whole array is made); as ``map_set``."""
    e = _lock_map(mem, h, kind, token)
    if e < 0:
        return e
    buf = mem.view(np.uint8)
    r = _new_array_locked(mem, buf, data, 0, len(data))
    if r >= 0:
        d = r
        r = _put_locked(mem, buf, _map_words(mem, e), key, ktag, L.V_ARRAY, d, head, len(head))
        if r < 0:
            free_locked(mem, d)
    _unlock_map(mem, e)
    return r


@kernel(T.UniTuple(T.int64, 4)(MEM, OUT, T.int64, T.int64, BYTES, T.int64, T.int64))
def map_pin_array(mem, out, h, kind, key, ktag, token):
    """Pin the elements of array value ``key`` for a view of this process (``token``), as
    ``vector_pin`` pins a vector's data: (data block or a status, elements' byte offset, their
    length, header length).  ``out`` receives ``encode_array``'s header; ERR_KIND if the value
    is not an array, ERR_SCRATCH (header length in the last place) if ``out`` is too small."""
    e = _lock_map(mem, h, kind, token)
    if e < 0:
        return e, 0, 0, 0
    # under the map's lock no writer replaces the value: the entry stays current
    buf = mem.view(np.uint8)
    mw = _map_words(mem, e)
    t = mem[mw + L.M_TABLE]
    res, eoff, klen = _find_in(mem, buf, t, _table_cap(mem, t),
                               hash_key(key, ktag, mem[L.W_HASH_SEED]), key, ktag)
    r = res if res < 0 else S.ERR_KIND
    at, n, hl = 0, 0, 0
    if res == L.V_ARRAY:
        hl = block_ulen(mem, eoff)
        at, n = _array_data(mem, eoff)
        d = mem[eoff // 8 + 1 + L.E_PAYLOAD]
        if n < 0 or not block_ok(mem, eoff, _ENTRY_HDR + _pad8(klen) + hl):
            r = S.ERR_CORRUPT
        elif hl > len(out):
            r = S.ERR_SCRATCH
        else:
            memcpy(out, 0, buf, eoff + _ENTRY_HDR + _pad8(klen), hl)
            r = _pin_locked(mem, token, d)
    _unlock_map(mem, e)
    return r, at, n, hl


@helper
def _index_key(i):
    """The key bytes of int key ``i`` (8 bytes, little-endian), as a tuple: no allocation."""
    return (np.uint8(i & 0xFF), np.uint8((i >> 8) & 0xFF), np.uint8((i >> 16) & 0xFF),
            np.uint8((i >> 24) & 0xFF), np.uint8((i >> 32) & 0xFF), np.uint8((i >> 40) & 0xFF),
            np.uint8((i >> 48) & 0xFF), np.uint8((i >> 56) & 0xFF))


#: words per item of ``map_set_many``'s ``recs``
SET_REC = 7


@kernel(T.int64(MEM, T.int64, T.int64, T.int64, RO_BYTES, WORDS, WORDS))
def map_set_many(mem, token, h, kind, blob, recs, progress):
    """Set many keys under one lock.  Item ``i`` is ``recs[7i:7i+7]`` = ``[key offset, key
    length, key tag, value tag, payload, value offset, value length]`` into ``blob``.

    Starts at item ``progress[0]`` and advances it as items are stored, adding the number of
    new keys to ``progress[1]``; after a status (more memory needed, a busy lock) the caller
    fixes the cause and calls again.  Returns 0 when all items are stored, or a status."""
    e = _lock_map(mem, h, kind, token)
    if e < 0:
        return e
    buf = mem.view(np.uint8)
    mw = _map_words(mem, e)
    r = 0
    n = len(recs) // SET_REC
    while progress[0] < n:
        q = progress[0] * SET_REC
        key = blob[recs[q]:recs[q] + recs[q + 1]]
        val = blob[recs[q + 5]:recs[q + 5] + recs[q + 6]]
        r = _set_locked(mem, buf, mw, key, recs[q + 2], recs[q + 3], recs[q + 4], val)
        if r < 0:
            break
        progress[1] += r
        progress[0] += 1
    _unlock_map(mem, e)
    return min(r, 0)


@helper
def _delete_locked(mem, buf, mw, key, ktag):
    t = mem[mw + L.M_TABLE]
    cap = _table_cap(mem, t)
    if cap < 0:
        return S.ERR_CORRUPT
    i, old = _probe(mem, buf, t, cap, hash_key(key, ktag, mem[L.W_HASH_SEED]), key, ktag)
    if i < 0:
        return 0
    sw = t // 8 + 2
    store_release(mem, sw + i, L.SLOT_TOMB)          # unlink
    mem[mw + L.M_COUNT] -= 1
    atomic_add(mem, mw + L.M_VERSION, 2)             # readers of the entry retry ...
    _free_entry_locked(mem, (old & L.SLOT_OFF_MASK) << 3)  # ... before it can be reused
    n = mem[mw + L.M_COUNT]
    if cap > L.MAP_MIN_CAP and n * 8 < cap:
        _rebuild_locked(mem, buf, mw, _cap_for(n))  # shrink; on failure the map stays as it is
    return 1


@kernel(T.int64(MEM, T.int64, T.int64, T.int64, BYTES, T.int64))
def map_delete(mem, token, h, kind, key, ktag):
    """Remove ``key``; 1 if it was there, 0 if not, or a status."""
    e = _lock_map(mem, h, kind, token)
    if e < 0:
        return e
    r = _delete_locked(mem, mem.view(np.uint8), _map_words(mem, e), key, ktag)
    _unlock_map(mem, e)
    return r


@helper
def _free_entries_locked(mem, t, cap):
    for i in range(cap):
        s = mem[t // 8 + 2 + i]
        if s != L.SLOT_EMPTY and s != L.SLOT_TOMB:
            _free_entry_locked(mem, (s & L.SLOT_OFF_MASK) << 3)
    free_locked(mem, t)


@kernel(T.int64(MEM, T.int64, T.int64, T.int64))
def map_clear(mem, token, h, kind):
    """Remove every key; return how many there were."""
    e = _lock_map(mem, h, kind, token)
    if e < 0:
        return e
    mw = _map_words(mem, e)
    t = mem[mw + L.M_TABLE]
    cap = _table_cap(mem, t)
    r = S.ERR_CORRUPT
    if cap > 0:
        nt = _new_table_locked(mem, L.MAP_MIN_CAP)
        r = nt
        if nt >= 0:
            r = mem[mw + L.M_COUNT]
            store_release(mem, mw + L.M_TABLE, nt)  # publish the empty table
            mem[mw + L.M_COUNT] = 0
            mem[mw + L.M_USED] = 0
            atomic_add(mem, mw + L.M_VERSION, 2)
            _free_entries_locked(mem, t, cap)
    _unlock_map(mem, e)
    return r


@kernel(T.int64(MEM, T.int64, T.int64, T.int64))
def map_drop(mem, token, h, kind):
    """Free map ``h``: its entries, table and header; the handle goes stale."""
    e = _lock_map(mem, h, kind, token)
    if e < 0:
        return e
    mw = _map_words(mem, e)
    t = mem[mw + L.M_TABLE]
    cap = _table_cap(mem, t)
    if cap < 0:
        _unlock_map(mem, e)
        return S.ERR_CORRUPT
    m = mem[e + L.H_VALUE]
    handle_free_locked(mem, h, e)  # stale from here: readers stop at handle_resolve
    atomic_add(mem, mw + L.M_VERSION, 2)
    _free_entries_locked(mem, t, cap)
    free_locked(mem, m)
    _unlock_map(mem, e)
    return 0


@kernel(T.int64(MEM, T.int64))
def map_recount(mem, h):
    """Repair after a writer died holding the map's lock: recount ``count`` and ``used``.

    The caller holds the map's lock (taken over from the dead owner)."""
    e = _resolve_map(mem, h, L.KIND_MAPLIKE)
    if e < 0:
        return e
    mw = _map_words(mem, e)
    if mw < 0:
        return S.ERR_CORRUPT
    t = mem[mw + L.M_TABLE]
    cap = _table_cap(mem, t)
    if cap < 0:
        return S.ERR_CORRUPT
    live = 0
    used = 0
    for i in range(cap):
        s = mem[t // 8 + 2 + i]
        if s != L.SLOT_EMPTY:
            used += 1
            if s != L.SLOT_TOMB:
                live += 1
    mem[mw + L.M_COUNT] = live
    mem[mw + L.M_USED] = used
    atomic_add(mem, mw + L.M_VERSION, 2)
    return live
