"""The consistency check: one walk over the heap, the free lists, the handle table, every map and
every vector, and the repair of what that walk can rebuild.

The caller holds the allocator lock for the whole call.  Every structural change in a store (a
block allocated or freed, a handle issued or retired, a map or vector edited) happens under that
lock, so the walk sees a settled store even while other processes run: only scalar values, struct
fields and view writes change meanwhile, and the check does not read them.

Nothing read here is trusted: every offset is checked against the heap before it is followed,
every list walk is bounded, so a damaged or hostile file yields problem records, never a crash.

``marks`` has one byte per heap word (``(top - HEAP_START) // 8``); the walk sets its bits.
``slots`` has one byte per handle slot.  Each problem is a record of ``P_WORDS`` words
``[code, a, b, c]`` in ``probs`` (codes and the meaning of a, b, c in ``sharedstore.check``);
``stats`` receives the ``ST_*`` figures.  The kernel returns the number of problems found (the
records past ``len(probs) // P_WORDS`` are counted, not written).

A map value of a tag this library does not know is damage, unless the store's VALUE_KINDS
word has the tag's bit: then a newer library wrote it (``_layout``, Compatibility), and the
check counts the entry as live, reports it (``P_NEWER_VALUE``) and never removes it.

With ``repair`` set, the kernel then rebuilds what is derived from the ground truth (the heap's
block headers and the handle entries): it frees leaked blocks, tombstones map slots whose entry
is damaged, retires handles whose object block is damaged, rebuilds every free list and the
handle free list, and sets the byte, object and map counts to what it counted.  It repairs
nothing if the heap walk itself broke, since then it cannot know which blocks are in use.
"""

import numpy as np
from numba import types as T

from .. import _layout as L
from .._jit import MEM, WORDS, helper, kernel
from .atomics import atomic_add, atomic_cas, load_acquire
from .hashmap import _ENTRY_HDR, _pad8, _slot_tag, hash_key
from .heap import ULEN_MASK, block_ulen, class_size, entry_word

P_WORDS = 4

# problem codes (sharedstore.check names them and writes their messages)
P_HEADER = 1            # a: header word, b: its value
P_BLOCK = 2             # a: offset, b: header word          (the heap walk stops here)
P_USED = 3              # a: recorded, b: counted
P_FREELIST = 4          # a: class, b: offset of the bad link
P_FREE_UNLISTED = 5     # a: offset, b: bytes
P_HT_DIR = 6            # a: chunk, b: directory value
P_HT_FREELIST = 7       # a: slot of the bad link
P_SLOT_UNLISTED = 8     # a: slot
P_OBJECTS = 9           # a: kind, b: recorded, c: counted
P_OBJ_BLOCK = 10        # a: handle, b: offset, c: expected tag
P_SHARED = 11           # a: handle, b: offset referenced a second time
P_MAP_TABLE = 12        # a: handle, b: table offset
P_MAP_ENTRY = 13        # a: handle, b: slot index, c: entry offset
P_MAP_COUNT = 14        # a: handle, b: recorded count, c: counted
P_MAP_PROBE = 15        # a: handle, b: slot index, c: entry offset (lookups cannot find it)
P_VECTOR = 16           # a: handle, b: what (V_*), c: value
P_STRUCT = 17           # a: handle, b: schema handle
P_LEAK = 18             # a: offset, b: bytes, c: tag
P_KIND = 19             # a: handle, b: kind
P_MAP_USED = 20         # a: handle, b: recorded, c: counted
P_PIN_LIST = 21         # a: process-table index, b: pin-list offset
P_PINS_EXCESS = 22      # a: data block, b: pins in its state, c: pins processes record
P_PIN_RECORD = 23       # a: data block (or record target), b: pins in its state, c: recorded
P_NEWER_VALUE = 24      # a: handle, b: slot index, c: value tag (a kind a newer library wrote)

# P_VECTOR's what
V_DATA = 1
V_LEN = 2
V_ITEMSIZE = 3
V_FREE = 4
V_FREE_SLOT = 5
V_DTYPE = 6
V_UNDO = 7

# stats words
ST_BLOCKS = 0
ST_FREE_BLOCKS = 1
ST_USED = 2
ST_FREE_BYTES = 3
ST_LEAKED_BLOCKS = 4
ST_LEAKED_BYTES = 5
ST_PINNED_BLOCKS = 6
ST_PINNED_BYTES = 7
ST_HANDLES = 8
ST_FREE_SLOTS = 9
ST_MAPS = 10
ST_ENTRIES = 11
ST_VECTORS = 12
ST_WALKED = 13  # 1 if the heap walk reached the top
ST_REPAIRED = 14
ST_NEWER_VALUES = 15  # map values of kinds a newer library wrote
N_STATS = 16

# mark bits
M_BLOCK = 1
M_FREE = 2
M_LISTED = 4
M_REF = 8


# a slot byte: 1 if the slot is on the handle free list, BAD_SLOT if its object is damaged
LISTED_SLOT = 1
BAD_SLOT = 2

OWN_OK = 0
OWN_BAD = 1     # not a block of the expected tag and size
OWN_SHARED = 2  # a good block, already referenced from elsewhere


@helper
def _add(probs, nrec, np_, code, a, b, c):
    """Record a problem (if there is room); return the new count."""
    if np_ < nrec:
        i = np_ * P_WORDS
        probs[i] = code
        probs[i + 1] = a
        probs[i + 2] = b
        probs[i + 3] = c
    return np_ + 1


@helper
def _mark_of(off, top):
    """Index in ``marks`` of the heap word at ``off``, or -1 if ``off`` is not in the heap."""
    if off < L.HEAP_START or off >= top or off % 8 != 0:
        return -1
    return (off - L.HEAP_START) // 8


@helper
def _bsize(mem, off):
    """Bytes spanned by the block at ``off`` (header included)."""
    hdr = mem[off // 8]
    if hdr & 0xFF == L.CLASS_EXACT:
        return 8 + ((hdr >> 16) & ULEN_MASK)
    return class_size(hdr & 0xFF)


@helper
def _own(mem, marks, top, off, tag, nbytes):
    """Claim the block at ``off`` for a structure: it must be a walked block of ``tag`` whose
    data holds ``nbytes``.  Marks it referenced; returns an ``OWN_*`` code."""
    m = _mark_of(off, top)
    if m < 0 or marks[m] & M_BLOCK == 0 or marks[m] & M_FREE:
        return OWN_BAD
    if (mem[off // 8] >> 8) & 0xFF != tag or nbytes < 0 or nbytes > _bsize(mem, off) - 8:
        return OWN_BAD
    if marks[m] & M_REF:
        return OWN_SHARED
    marks[m] |= M_REF
    return OWN_OK


@helper
def _data_len(mem, marks, top, off):
    """The ``ulen`` of the block at ``off`` if it is a walked block, else 0."""
    m = _mark_of(off, top)
    if m < 0 or marks[m] & M_BLOCK == 0:
        return 0
    return block_ulen(mem, off)


@helper
def _live_kind(mem, h, ht_count):
    """Kind of the live object handle ``h`` names, or -1."""
    slot = h & 0xFFFFFFFF
    if h <= 0 or slot >= ht_count:
        return -1
    e = entry_word(mem, slot)
    if e < 0:
        return -1
    meta = mem[e + L.H_META]
    if meta >> 8 != h >> 32 or meta & 0xFF == L.KIND_FREE:
        return -1
    return meta & 0xFF


@helper
def _own_problem(probs, nrec, np_, r, h, off, tag):
    if r == OWN_SHARED:
        return _add(probs, nrec, np_, P_SHARED, h, off, tag)
    return _add(probs, nrec, np_, P_OBJ_BLOCK, h, off, tag)


@helper
def _value_verdict(vtag, vlen, kinds):
    """Whether a map entry's value of tag ``vtag`` and ``vlen`` bytes is sound (0), damaged
    (1), or of a kind a newer library wrote (2): unknown here, its bit set in ``kinds`` (the
    store's VALUE_KINDS word)."""
    if 0 < vtag <= L.V_MAX_KNOWN and (L.V_KNOWN >> vtag) & 1 == 1:
        size = L.V_SIZE[vtag]
        return 1 if size != L.VAR and vlen != size else 0
    if 0 < vtag < 64 and (kinds >> vtag) & 1 == 1:
        return 2
    return 1


@helper
def _check_map(mem, buf, marks, top, h, v, probs, nrec, np_, repair, kinds, stats):
    """Check map ``h`` (header block ``v``): (problem count, entries, object damaged)."""
    r = _own(mem, marks, top, v, L.TAG_MAP, L.MAP_WORDS * 8)
    if r != OWN_OK:
        return _own_problem(probs, nrec, np_, r, h, v, L.TAG_MAP), 0, True
    mw = v // 8 + 1
    t = mem[mw + L.M_TABLE]
    r = _own(mem, marks, top, t, L.TAG_TABLE, 8)
    if r != OWN_OK:
        return _add(probs, nrec, np_, P_MAP_TABLE, h, t, 0), 0, True
    cap = mem[t // 8 + 1]
    if cap < L.MAP_MIN_CAP or cap & (cap - 1) != 0 or 8 + cap * 8 > _bsize(mem, t) - 8:
        return _add(probs, nrec, np_, P_MAP_TABLE, h, t, cap), 0, True
    seed = mem[L.W_HASH_SEED]
    sw = t // 8 + 2
    live = 0
    used = 0
    nbad = 0  # damaged entries: the header's count includes them until repair removes them
    for i in range(cap):
        s = mem[sw + i]
        if s == L.SLOT_EMPTY:
            continue
        used += 1
        if s == L.SLOT_TOMB:
            continue
        eoff = (s & L.SLOT_OFF_MASK) << 3
        r = _own(mem, marks, top, eoff, L.TAG_ENTRY, L.E_WORDS * 8)
        bad = r != OWN_OK
        if not bad:
            meta = mem[eoff // 8 + 1 + L.E_META]
            ktag = meta & 0xFF
            vtag = (meta >> 8) & 0xFF
            klen = meta >> 16
            vlen = block_ulen(mem, eoff)
            verdict = _value_verdict(vtag, vlen, kinds)
            bad = not (0 < ktag < 64 and (L.V_KEYS >> ktag) & 1 == 1) or verdict == 1 or (
                klen > L.KEY_MAX or _ENTRY_HDR + _pad8(klen) + vlen > _bsize(mem, eoff))
            if not bad and verdict == 2:  # never removed: only a newer library can read it
                np_ = _add(probs, nrec, np_, P_NEWER_VALUE, h, i, vtag)
                stats[ST_NEWER_VALUES] += 1
            if not bad and vtag == L.V_ARRAY:  # its elements: a data block of its own, current
                d = mem[eoff // 8 + 1 + L.E_PAYLOAD]
                bad = (_own(mem, marks, top, d, L.TAG_VDATA, L.D_RECORDS + _data_len(
                    mem, marks, top, d)) != OWN_OK or mem[d // 8 + 1 + L.D_STATE // 8] & 1 == 1)
            if bad and repair:  # the slot goes; the block is then a leak, freed with the others
                marks[_mark_of(eoff, top)] &= ~M_REF
        if bad:
            np_ = _add(probs, nrec, np_, P_MAP_ENTRY, h, i, eoff)
            if repair:
                mem[sw + i] = L.SLOT_TOMB
            nbad += 1
            continue
        live += 1
        at = eoff + _ENTRY_HDR
        hv = hash_key(buf[at:at + klen], ktag, seed)
        j = hv & (cap - 1)
        findable = _slot_tag(hv) == s >> L.SLOT_TAG_SHIFT
        while findable and j != i:
            if mem[sw + j] == L.SLOT_EMPTY:
                findable = False
            j = (j + 1) & (cap - 1)
        if not findable:
            np_ = _add(probs, nrec, np_, P_MAP_PROBE, h, i, eoff)
    if mem[mw + L.M_COUNT] != live + nbad:
        np_ = _add(probs, nrec, np_, P_MAP_COUNT, h, mem[mw + L.M_COUNT], live + nbad)
    if mem[mw + L.M_USED] != used:
        np_ = _add(probs, nrec, np_, P_MAP_USED, h, mem[mw + L.M_USED], used)
    if repair and (nbad or mem[mw + L.M_COUNT] != live or mem[mw + L.M_USED] != used):
        mem[mw + L.M_COUNT] = live
        mem[mw + L.M_USED] = used
        atomic_add(mem, mw + L.M_VERSION, 2)
    return np_, live, False


@helper
def _check_vector(mem, marks, top, h, v, probs, nrec, np_, ht_count):
    """Check vector ``h`` (header block ``v``): (problem count, object damaged).  The blocks it
    points at are claimed first, so a vector found damaged does not also show them as leaks."""
    r = _own(mem, marks, top, v, L.TAG_VECTOR, L.VEC_WORDS * 8)
    if r != OWN_OK:
        return _own_problem(probs, nrec, np_, r, h, v, L.TAG_VECTOR), True
    vw = v // 8 + 1
    cap = mem[vw + L.VH_CAP]
    n = mem[vw + L.VH_LEN]
    isz = mem[vw + L.VH_ITEMSIZE]
    d = mem[vw + L.VH_DATA]
    fl = mem[vw + L.VH_FREE]
    nfree = mem[vw + L.VH_NFREE]
    d_ok = _own(mem, marks, top, d, L.TAG_VDATA, 0) == OWN_OK
    fl_ok = fl == 0 or _own(mem, marks, top, fl, L.TAG_VFREE, 0) == OWN_OK
    u = mem[vw + L.VH_UNDO]
    u_ok = u == 0 or _own(mem, marks, top, u, L.TAG_VUNDO, 0) == OWN_OK
    if isz <= 0 or isz > (1 << 32):
        return _add(probs, nrec, np_, P_VECTOR, h, V_ITEMSIZE, isz), True
    if (not d_ok or cap < 0 or cap > (1 << 40) or L.D_RECORDS + cap * isz > _bsize(mem, d) - 8
            or mem[d // 8 + 1 + L.D_STATE // 8] & 1):  # the current block is never retired
        return _add(probs, nrec, np_, P_VECTOR, h, V_DATA, d), True
    if n < 0 or n > cap:
        return _add(probs, nrec, np_, P_VECTOR, h, V_LEN, n), True
    end = mem[vw + L.VH_APPEND_END]  # (the slots an append copying outside the lock took)
    if mem[vw + L.VH_APPENDER] != 0 and (end < n or end > cap):
        return _add(probs, nrec, np_, P_VECTOR, h, V_LEN, end), True
    if mem[vw + L.VH_WRITING] < 0 or mem[vw + L.VH_WRITING] > n:
        return _add(probs, nrec, np_, P_VECTOR, h, V_LEN, mem[vw + L.VH_WRITING]), True
    undo_at = mem[vw + L.VH_UNDO_AT]
    if not u_ok or (u != 0 and _data_len(mem, marks, top, u) * isz > _bsize(mem, u) - 8) or (
            undo_at != 0 and (u == 0 or undo_at < 0 or mem[vw + L.VH_UNDO_N] <= 0
                              or undo_at - 1 + mem[vw + L.VH_UNDO_N] > n
                              or mem[vw + L.VH_UNDO_N] > _data_len(mem, marks, top, u))):
        return _add(probs, nrec, np_, P_VECTOR, h, V_UNDO, u), True
    if _live_kind(mem, mem[vw + L.VH_DTYPE], ht_count) != L.KIND_STRING:
        return _add(probs, nrec, np_, P_VECTOR, h, V_DTYPE, mem[vw + L.VH_DTYPE]), True
    if not fl_ok or nfree < 0 or (fl == 0 and nfree != 0) or (
            fl != 0 and nfree > min(_data_len(mem, marks, top, fl), (_bsize(mem, fl) - 8) // 8)):
        return _add(probs, nrec, np_, P_VECTOR, h, V_FREE, fl), True
    for i in range(nfree):
        x = mem[fl // 8 + 1 + i]
        if x < 0 or x >= n:
            return _add(probs, nrec, np_, P_VECTOR, h, V_FREE_SLOT, x), True
    return np_, False


@helper
def _repair(mem, marks, slots, ht_count, counts, stats):
    """Rebuild from the walk: retire damaged objects, free leaks, rebuild the free lists, the
    handle free list and the counts.  Returns how many things it changed."""
    fixed = 0
    # damaged objects: their handles go stale (their blocks are freed by the next check)
    for s in range(ht_count):
        if slots[s] == BAD_SLOT:
            e = entry_word(mem, s)
            meta = mem[e + L.H_META]
            if meta & 0xFF != L.KIND_FREE:
                counts[meta & 0xFF] -= 1
                mem[e + L.H_META] = (((meta >> 8) + 1) << 8) | L.KIND_FREE
                fixed += 1
    # leaked blocks become free blocks (handle chunks are never freed: they stay as they are)
    freed = 0
    used = 0
    for m in range(len(marks)):
        mk = marks[m]
        if mk & M_BLOCK == 0:
            continue
        o = L.HEAP_START + m * 8
        hdr = mem[o // 8]
        if mk & (M_FREE | M_REF) == 0 and hdr & 0xFF != L.CLASS_EXACT and not (
                (hdr >> 8) & 0xFF == L.TAG_VDATA and mem[o // 8 + 1] & 1 == 1
                and mem[o // 8 + 1] > 1):
            mem[o // 8] = (hdr & 0xFF) | (L.TAG_FREE << 8)
            marks[m] = mk | M_FREE
            freed += 1
        if marks[m] & M_FREE == 0:
            used += _bsize(mem, o)
    fixed += freed
    # every free list, from the blocks' own headers (ascending order: low blocks reused first)
    nfree = 0
    for c in range(L.N_CLASSES):
        mem[L.W_CLASS_HEADS + c] = 0
    for m in range(len(marks) - 1, -1, -1):
        if marks[m] & (M_BLOCK | M_FREE) == M_BLOCK | M_FREE:
            o = L.HEAP_START + m * 8
            c = mem[o // 8] & 0xFF
            mem[o // 8 + 1] = mem[L.W_CLASS_HEADS + c]
            mem[L.W_CLASS_HEADS + c] = o
            nfree += 1
    if nfree != stats[ST_FREE_BLOCKS] + freed or used != mem[L.W_USED]:
        fixed += 1
    mem[L.W_USED] = used
    # the handle free list, from the entries' kinds
    mem[L.W_HT_FREE] = 0
    for s in range(ht_count - 1, -1, -1):
        e = entry_word(mem, s)
        meta = mem[e + L.H_META]
        if meta & 0xFF == L.KIND_FREE and meta >> 8 <= L.GEN_MAX:
            mem[e + L.H_VALUE] = mem[L.W_HT_FREE]
            mem[L.W_HT_FREE] = s + 1
    for k in range(L.N_KINDS):
        if mem[L.W_OBJECTS + k] != counts[k]:
            mem[L.W_OBJECTS + k] = counts[k]
            fixed += 1
    if freed:
        # a reader that began before its writer died may still hold a freed block's offset:
        # every version moves, so it retries
        for s in range(ht_count):
            e = entry_word(mem, s)
            kind = mem[e + L.H_META] & 0xFF
            v = mem[e + L.H_VALUE]
            if kind == L.KIND_MAP or kind == L.KIND_LIST:
                atomic_add(mem, v // 8 + 1 + L.M_VERSION, 2)
            elif kind == L.KIND_VECTOR or kind == L.KIND_ARRAY:
                atomic_add(mem, v // 8 + 1 + L.VH_VERSION, 2)
            elif kind == L.KIND_STRING or kind == L.KIND_STRUCT:
                atomic_add(mem, e + L.H_SEQ, 2)
    return fixed


@helper
def _check_pins(mem, marks, top, probs, nrec, np_, repair):
    """Claim every pin list; compare each vector data block's pins with the pins that attached
    processes record for it.  A block pinned more often than recorded holds the pin of a process
    killed between the two steps of pinning (debris: repair releases it)."""
    total = 0
    for i in range(L.PROC_MAX):
        pl = mem[L.PIN_LISTS // 8 + i]
        if pl == 0:
            continue
        cap = _data_len(mem, marks, top, pl)
        if _own(mem, marks, top, pl, L.TAG_PINS, cap * 16) != OWN_OK:
            np_ = _add(probs, nrec, np_, P_PIN_LIST, i, pl, 0)
            if repair:
                mem[L.PIN_LISTS // 8 + i] = 0
            continue
        total += cap
    rd = np.zeros(total, np.int64)
    rc = np.zeros(total, np.int64)
    k = 0
    for i in range(L.PROC_MAX):
        pl = mem[L.PIN_LISTS // 8 + i]
        m = _mark_of(pl, top)
        if pl == 0 or m < 0 or marks[m] & M_REF == 0:
            continue
        alive = mem[L.PROC_TABLE // 8 + i * L.PROC_WORDS + L.P_PID] != 0
        for j in range(block_ulen(mem, pl)):
            w = pl // 8 + 1 + 2 * j
            d = mem[w]
            c = mem[w + 1]
            if c == 0:
                continue
            dm = _mark_of(d, top)
            if (c < 0 or dm < 0 or marks[dm] & (M_BLOCK | M_FREE) != M_BLOCK
                    or (mem[d // 8] >> 8) & 0xFF != L.TAG_VDATA):
                np_ = _add(probs, nrec, np_, P_PIN_RECORD, d, -1, c)
                if repair:
                    mem[w + 1] = 0
                continue
            if not alive:  # a process gone from the table records nothing any more
                if repair:
                    mem[w + 1] = 0
                continue
            rd[k] = d
            rc[k] = c
            k += 1
    order = np.argsort(rd[:k])
    rd = rd[:k][order]
    rc = rc[:k][order]
    for m in range(len(marks)):
        if marks[m] & (M_BLOCK | M_FREE) != M_BLOCK:
            continue
        o = L.HEAP_START + m * 8
        if (mem[o // 8] >> 8) & 0xFF != L.TAG_VDATA:
            continue
        state = mem[o // 8 + 1]
        pins = state >> 1
        lo = np.searchsorted(rd, o)
        hi = lo
        rec = 0
        while hi < k and rd[hi] == o:
            rec += rc[hi]
            hi += 1
        if pins > rec:
            np_ = _add(probs, nrec, np_, P_PINS_EXCESS, o, pins, rec)
        elif pins < rec:
            np_ = _add(probs, nrec, np_, P_PIN_RECORD, o, pins, rec)
        if repair and pins != rec:
            mem[o // 8 + 1] = (state & 1) | (2 * rec)  # unpinned and retired: a leak, freed below
    return np_


@kernel(T.int64(MEM, T.uint8[::1], T.uint8[::1], WORDS, WORDS, T.int64))
def heap_check(mem, marks, slots, probs, stats, repair):
    """Check the store (the caller holds the allocator lock); with ``repair``, fix what can be.

    ``marks`` must be zeroed and hold at least ``(HEAP_TOP - HEAP_START) // 8`` bytes, ``slots``
    zeroed and at least ``HT_COUNT`` bytes (the caller reads both under the lock)."""
    stats[:] = 0
    np_ = 0
    nrec = len(probs) // P_WORDS
    committed = mem[L.W_COMMITTED]
    top = mem[L.W_HEAP_TOP]
    if (committed < L.INITIAL_COMMIT or committed > mem[L.W_RESERVED]
            or committed > len(mem) * 8 or top < L.HEAP_START or top > committed
            or top % 8 != 0 or (top - L.HEAP_START) // 8 > len(marks)):
        return _add(probs, nrec, np_, P_HEADER, L.W_HEAP_TOP, top, committed)
    buf = mem.view(np.uint8)

    # 1. the heap walk: every block header from HEAP_START to HEAP_TOP
    off = L.HEAP_START
    used = 0
    walked = 1
    while off < top:
        hdr = mem[off // 8]
        c = hdr & 0xFF
        tag = (hdr >> 8) & 0xFF
        ulen = (hdr >> 16) & ULEN_MASK
        if c == L.CLASS_EXACT:
            size = 8 + ulen
            ok = tag == L.TAG_HCHUNK and ulen > 0 and ulen % 8 == 0
        else:
            size = class_size(c)
            ok = L.TAG_FREE <= tag <= L.TAG_MAX and tag != L.TAG_HCHUNK
        if not ok or size > top - off:
            np_ = _add(probs, nrec, np_, P_BLOCK, off, hdr, 0)
            walked = 0
            break
        m = (off - L.HEAP_START) // 8
        marks[m] = M_BLOCK
        stats[ST_BLOCKS] += 1
        if tag == L.TAG_FREE:
            marks[m] |= M_FREE
            stats[ST_FREE_BLOCKS] += 1
            stats[ST_FREE_BYTES] += size
        else:
            used += size
        off += size
    stats[ST_WALKED] = walked
    stats[ST_USED] = used
    if walked and used != mem[L.W_USED]:
        np_ = _add(probs, nrec, np_, P_USED, mem[L.W_USED], used, 0)
    repair = repair and walked

    # 2. the size classes' free lists: each node a free block of its class, listed once
    for c in range(L.N_CLASSES):
        cur = mem[L.W_CLASS_HEADS + c]
        while cur != 0:
            m = _mark_of(cur, top)
            if (m < 0 or marks[m] & (M_BLOCK | M_FREE) != M_BLOCK | M_FREE
                    or marks[m] & M_LISTED or mem[cur // 8] & 0xFF != c):
                np_ = _add(probs, nrec, np_, P_FREELIST, c, cur, 0)
                break
            marks[m] |= M_LISTED
            cur = mem[cur // 8 + 1]
    if walked:
        for m in range(len(marks)):
            if marks[m] & (M_FREE | M_LISTED) == M_FREE:
                o = L.HEAP_START + m * 8
                np_ = _add(probs, nrec, np_, P_FREE_UNLISTED, o, _bsize(mem, o), 0)

    # 3. the handle directory and the handle free list
    ht_count = mem[L.W_HT_COUNT]
    if ht_count < 0 or ht_count > len(slots) or ht_count > L.SLOT_MAX:
        return _add(probs, nrec, np_, P_HEADER, L.W_HT_COUNT, ht_count, 0)
    nchunks = (ht_count + L.HT_CHUNK - 1) >> L.HT_CHUNK_SHIFT
    for ch in range(L.HT_DIR_LEN):
        d = mem[L.HT_DIR // 8 + ch]
        if d == 0 and ch >= nchunks:
            continue
        m = _mark_of(d - 8, top)
        if (m < 0 or marks[m] & M_BLOCK == 0 or mem[d // 8 - 1] & 0xFF != L.CLASS_EXACT
                or block_ulen(mem, d - 8) != L.HT_CHUNK * L.HT_WORDS * 8):
            return _add(probs, nrec, np_, P_HT_DIR, ch, d, 0)  # handle entries are unreadable
        marks[m] |= M_REF
    cur = mem[L.W_HT_FREE]
    while cur != 0:
        s = cur - 1
        if s < 0 or s >= ht_count or slots[s] != 0 or (
                mem[entry_word(mem, s) + L.H_META] & 0xFF) != L.KIND_FREE:
            np_ = _add(probs, nrec, np_, P_HT_FREELIST, s, cur, 0)
            break
        slots[s] = LISTED_SLOT
        cur = mem[entry_word(mem, s) + L.H_VALUE]

    # 4. every live object, and the blocks it owns
    kinds = mem[L.W_VALUE_KINDS]  # (every library that attached set the kinds it writes)
    if kinds & L.V_KNOWN != L.V_KNOWN:
        np_ = _add(probs, nrec, np_, P_HEADER, L.W_VALUE_KINDS, kinds, 0)
        kinds = -1  # damaged: any tag may be a newer library's, so repair removes none
    counts = np.zeros(L.N_KINDS, np.int64)
    for s in range(ht_count):
        e = entry_word(mem, s)
        meta = mem[e + L.H_META]
        kind = meta & 0xFF
        gen = meta >> 8
        if kind == L.KIND_FREE:
            if slots[s] == 0 and gen <= L.GEN_MAX:
                np_ = _add(probs, nrec, np_, P_SLOT_UNLISTED, s, 0, 0)
            stats[ST_FREE_SLOTS] += 1
            continue
        h = (gen << 32) | s
        stats[ST_HANDLES] += 1
        if kind >= L.N_KINDS:
            np_ = _add(probs, nrec, np_, P_KIND, h, kind, 0)
            slots[s] = BAD_SLOT
            continue
        counts[kind] += 1
        v = mem[e + L.H_VALUE]
        damaged = False
        if kind == L.KIND_STRING or kind == L.KIND_STRUCT:
            tag = L.TAG_STRING if kind == L.KIND_STRING else L.TAG_STRUCT
            extra = 0 if kind == L.KIND_STRING else L.S_RECORD
            r = _own(mem, marks, top, v, tag, extra + _data_len(mem, marks, top, v))
            if r != OWN_OK:
                np_ = _own_problem(probs, nrec, np_, r, h, v, tag)
                damaged = r == OWN_BAD
            elif kind == L.KIND_STRUCT and _live_kind(
                    mem, mem[v // 8 + 1 + L.S_SCHEMA], ht_count) != L.KIND_STRING:
                np_ = _add(probs, nrec, np_, P_STRUCT, h, mem[v // 8 + 1 + L.S_SCHEMA], 0)
                damaged = True
        elif kind == L.KIND_MAP or kind == L.KIND_LIST:
            stats[ST_MAPS] += 1
            np_, live, damaged = _check_map(mem, buf, marks, top, h, v, probs, nrec, np_, repair,
                                            kinds, stats)
            stats[ST_ENTRIES] += live
        elif kind == L.KIND_VECTOR or kind == L.KIND_ARRAY:
            stats[ST_VECTORS] += 1
            np_, damaged = _check_vector(mem, marks, top, h, v, probs, nrec, np_, ht_count)
        elif kind != L.KIND_INT and kind != L.KIND_FLOAT:
            np_ = _add(probs, nrec, np_, P_KIND, h, kind, 0)
            damaged = True
        if damaged:
            slots[s] = BAD_SLOT
    for k in range(L.N_KINDS):
        if counts[k] != mem[L.W_OBJECTS + k]:
            np_ = _add(probs, nrec, np_, P_OBJECTS, k, mem[L.W_OBJECTS + k], counts[k])
    for w in (L.W_ROOT, L.W_SCHEMAS):
        if _live_kind(mem, mem[w], ht_count) != L.KIND_MAP:
            np_ = _add(probs, nrec, np_, P_HEADER, w, mem[w], 0)

    # 5. pins: each data block's pin count against what live processes record
    np_ = _check_pins(mem, marks, top, probs, nrec, np_, repair)

    # 6. allocated blocks nothing references: leaks, or retired vector data still pinned
    if walked:
        for m in range(len(marks)):
            mk = marks[m]
            if mk & M_BLOCK == 0 or mk & (M_FREE | M_REF) != 0:
                continue
            o = L.HEAP_START + m * 8
            size = _bsize(mem, o)
            tag = (mem[o // 8] >> 8) & 0xFF
            state = mem[o // 8 + 1]
            if tag == L.TAG_VDATA and state & 1 == 1 and state > 1:
                stats[ST_PINNED_BLOCKS] += 1  # retired, pinned by views: the last unpin frees it
                stats[ST_PINNED_BYTES] += size
                continue
            stats[ST_LEAKED_BLOCKS] += 1
            stats[ST_LEAKED_BYTES] += size
            np_ = _add(probs, nrec, np_, P_LEAK, o, size, tag)

    if repair:
        stats[ST_REPAIRED] = _repair(mem, marks, slots, ht_count, counts, stats)
    return np_


@kernel(T.int64(MEM, T.int64))
def value_kinds_add(mem, kinds):
    """Add the value kinds ``kinds`` (bit t: tag t) to the store's VALUE_KINDS word, atomically
    (a library that attaches adds those it writes); return the word's new value."""
    cur = load_acquire(mem, L.W_VALUE_KINDS)
    while cur | kinds != cur:
        old = atomic_cas(mem, L.W_VALUE_KINDS, cur, cur | kinds)
        if old == cur:
            return cur | kinds
        cur = old
    return cur
