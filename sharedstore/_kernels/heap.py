"""The heap allocator and the handle table.

Blocks come in size classes (``_layout.class_size``): a free block goes on its class's free list
and is reused by the next allocation of that class; new blocks are cut from ``HEAP_TOP``.  Every
function whose name ends in ``_locked`` must be called with the allocator lock held.

Crash safety: each mutation publishes with a single word store, after the words it depends on
are written.  A process killed between two stores can leave a block or a handle slot that no
list reaches (a leak that ``check(repair=True)`` returns), never a list that points at a live
block or a handle that points at a freed one.
"""


from numba import types
from numba.extending import overload

from .. import _layout as L
from .._jit import helper, hot, kernel
from . import status as S
from .atomics import atomic_add, atomic_cas, fence_acquire, load_acquire, store_release
from .locks import lock_release, lock_try
from .memory import memcpy

_TAG_HCHUNK = L.TAG_HCHUNK


@helper
def size_class(n):
    """Smallest size class whose blocks span at least ``n`` bytes (header included)."""
    if n <= 16:
        return 0
    if n <= 128:
        return (n + 7) // 8 - 2
    m = n - L.CLASS_PAD  # the classes above 128 are 2**p * (1, 1.25, 1.5, 1.75) + CLASS_PAD
    if m <= 128:
        return L.N_SMALL
    x = m - 1
    p = 0
    while x > 1:
        x >>= 1
        p += 1
    step = 1 << (p - 2)
    k = (m - (1 << p) + step - 1) // step  # 1 .. 4 (4: the next power of two)
    return L.N_SMALL + (p - 7) * 4 + k


@helper
def class_size(c):
    if c < L.N_SMALL:
        return 16 + 8 * c
    j = c - L.N_SMALL
    p = 7 + j // 4
    return (1 << p) + (j % 4) * (1 << (p - 2)) + L.CLASS_PAD


@hot
def committed(mem):
    return load_acquire(mem, L.W_COMMITTED)


@hot
def block_ok(mem, off, nbytes):
    """True if ``off .. off+nbytes`` lies in the committed heap and ``off`` is word aligned."""
    return off >= L.HEAP_START and off % 8 == 0 and nbytes >= 0 and off + nbytes <= committed(mem)


#: a block header's length field: its top 48 bits, unsigned
ULEN_MASK = (1 << 48) - 1


@helper
def block_ulen(mem, off):
    """The length field of block ``off``'s header, unsigned: a damaged header whose top bit is
    set reads as a length no bounds check passes, never as a negative one (a copy of -1 bytes
    is a copy of 2**64 - 1)."""
    return (mem[off // 8] >> 16) & ULEN_MASK


@helper
def alloc_locked(mem, nbytes, tag, ulen):
    """Allocate a block whose data holds ``nbytes``; return its offset or a status."""
    c = size_class(nbytes + 8)
    if c >= L.N_CLASSES:
        return S.ERR_FULL
    size = class_size(c)
    head = mem[L.W_CLASS_HEADS + c]
    if head != 0:
        if not block_ok(mem, head, 16):
            return S.ERR_CORRUPT
        mem[L.W_CLASS_HEADS + c] = mem[head // 8 + 1]
        off = head
    else:
        top = mem[L.W_HEAP_TOP]
        if top + size > committed(mem):
            return S.ERR_COMMIT if top + size <= mem[L.W_RESERVED] else S.ERR_FULL
        off = top
        # header first, then the bump: a heap walk never meets an unwritten header
        mem[off // 8] = c | (tag << 8) | (ulen << 16)
        mem[L.W_HEAP_TOP] = top + size
    mem[off // 8] = c | (tag << 8) | (ulen << 16)
    mem[L.W_USED] += size
    return off


@helper
def alloc_exact_locked(mem, nbytes, tag):
    """Cut a block of exactly ``nbytes`` (a multiple of 8) from the top; it is never freed."""
    top = mem[L.W_HEAP_TOP]
    if top + 8 + nbytes > committed(mem):
        return S.ERR_COMMIT if top + 8 + nbytes <= mem[L.W_RESERVED] else S.ERR_FULL
    mem[top // 8] = L.CLASS_EXACT | (tag << 8) | (nbytes << 16)
    mem[L.W_HEAP_TOP] = top + 8 + nbytes
    mem[L.W_USED] += 8 + nbytes
    return top


@helper
def free_locked(mem, off):
    """Return block ``off`` to its class's free list."""
    c = mem[off // 8] & 0xFF
    mem[off // 8] = c | (L.TAG_FREE << 8)
    mem[off // 8 + 1] = mem[L.W_CLASS_HEADS + c]
    mem[L.W_CLASS_HEADS + c] = off
    mem[L.W_USED] -= class_size(c)


@hot
def object_words(mem, e, nwords):
    """Word index of the ``nwords``-word header block that handle entry ``e`` points at, or -1
    if it lies outside the committed heap (maps and vectors keep their headers this way)."""
    off = load_acquire(mem, e + L.H_VALUE)
    if not block_ok(mem, off, 8 + nwords * 8):
        return -1
    return off // 8 + 1


@hot
def entry_word(mem, slot):
    """Word index of handle slot ``slot``'s entry, or -1 if its chunk does not exist."""
    d = mem[L.HT_DIR // 8 + (slot >> L.HT_CHUNK_SHIFT)]
    if d == 0 or not block_ok(mem, d, L.HT_CHUNK * L.HT_WORDS * 8):
        return -1
    return d // 8 + (slot & (L.HT_CHUNK - 1)) * L.HT_WORDS


@hot
def handle_resolve(mem, h, kind):
    """Word index of the entry handle ``h`` names, if it is live and of ``kind`` (see
    :func:`kind_ok`), or a status."""
    return resolve_meta(mem, h, kind)[0]


@hot
def resolve_meta(mem, h, kind):
    """(:func:`handle_resolve` of ``h``, the entry's meta word it checked).  A reader without a
    lock keeps that meta word, reads the object, and checks after that the meta word still
    holds it (``meta_still``): a meta word read a second time could already be the next
    object's, in a slot freed and reused meanwhile."""
    if h <= 0:
        return S.ERR_INVALID, 0
    slot = h & 0xFFFFFFFF
    gen = h >> 32
    if gen == 0 or gen > L.GEN_MAX or slot >= load_acquire(mem, L.W_HT_COUNT):
        return S.ERR_INVALID, 0
    e = entry_word(mem, slot)
    if e < 0:
        return S.ERR_CORRUPT, 0
    meta = load_acquire(mem, e + L.H_META)
    mgen = meta >> 8
    mkind = meta & 0xFF
    if mgen == gen:
        if mkind == L.KIND_FREE:
            return S.ERR_FREED, meta
        if not kind_ok(mkind, kind):
            return S.ERR_KIND, meta
        return e, meta
    return (S.ERR_FREED if gen < mgen else S.ERR_INVALID), meta


@hot
def meta_still(mem, e, meta):
    """After a read begun with ``e, meta = resolve_meta(...)``: True if the handle still names
    the object that was read (the loads before are done first)."""
    fence_acquire()
    return load_acquire(mem, e + L.H_META) == meta


@hot
def kind_ok(mkind, kind):
    """Whether an object of kind ``mkind`` is what a caller asking for ``kind`` wants: that
    kind, or any (``KIND_ANY``), a map or a list (``KIND_MAPLIKE``), a vector or a fixed-shape
    array (``KIND_VECLIKE``)."""
    if kind >= 0:
        return mkind == kind
    if kind == L.KIND_MAPLIKE:
        return mkind == L.KIND_MAP or mkind == L.KIND_LIST
    if kind == L.KIND_VECLIKE:
        return mkind == L.KIND_VECTOR or mkind == L.KIND_ARRAY
    return kind == L.KIND_ANY


@helper
def lock_handle(mem, h, kind, token):
    """Take the lock of the live object ``h`` of ``kind``: its entry word, or a status with no
    lock held.

    The handle is checked again once the lock is held: an object dropped while this process
    waited (its slot freed, perhaps reused for another object) is ERR_FREED or ERR_INVALID,
    never the other object.  Every write through a handle takes the lock this way, and so does
    every drop, so no write lands in an object that took a dropped one's place."""
    e = handle_resolve(mem, h, kind)
    if e < 0:
        return e
    if not lock_try(mem, e + L.H_LOCK, token):
        return S.ERR_BUSY_OBJ
    again = handle_resolve(mem, h, kind)
    if again != e:
        lock_release(mem, e + L.H_LOCK)
        return again if again < 0 else S.ERR_FREED
    return e


@helper
def handle_new_locked(mem, kind, value):
    """Issue a handle for a new object of ``kind`` whose entry value is ``value``."""
    f = mem[L.W_HT_FREE]
    if f != 0:
        slot = f - 1
        e = entry_word(mem, slot)
        if e < 0:
            return S.ERR_CORRUPT
        mem[L.W_HT_FREE] = mem[e + L.H_VALUE]
        gen = mem[e + L.H_META] >> 8
    else:
        slot = mem[L.W_HT_COUNT]
        if slot >= L.SLOT_MAX:
            return S.ERR_FULL
        chunk = slot >> L.HT_CHUNK_SHIFT
        if mem[L.HT_DIR // 8 + chunk] == 0:
            nbytes = L.HT_CHUNK * L.HT_WORDS * 8
            blk = alloc_exact_locked(mem, nbytes, _TAG_HCHUNK)
            if blk < 0:
                return blk
            mem[L.HT_DIR // 8 + chunk] = blk + 8
        e = entry_word(mem, slot)
        if e < 0:
            return S.ERR_CORRUPT
        gen = 1
        mem[e + L.H_META] = (gen << 8) | L.KIND_FREE  # an unpublished slot reads as free
        mem[L.W_HT_COUNT] = slot + 1
    # The lock and seq words are left as they are: a process that resolved the slot's last
    # object before it was dropped may hold the lock for a moment (it finds the handle stale
    # and lets go), and seq only ever grows, so a stale reader's seq never matches again.
    mem[e + L.H_VALUE] = value
    store_release(mem, e + L.H_META, (gen << 8) | kind)  # publish
    mem[L.W_OBJECTS + kind] += 1
    return (gen << 32) | slot


@helper
def handle_free_locked(mem, h, e):
    """Retire handle ``h`` (entry word ``e``): bump its generation and put the slot on the free list."""
    meta = mem[e + L.H_META]
    kind = meta & 0xFF
    gen = (meta >> 8) + 1
    store_release(mem, e + L.H_META, (gen << 8) | L.KIND_FREE)  # stale handles fail from here
    mem[L.W_OBJECTS + kind] -= 1
    if gen <= L.GEN_MAX:  # a slot out of generations is retired for good
        mem[e + L.H_VALUE] = mem[L.W_HT_FREE]
        mem[L.W_HT_FREE] = (h & 0xFFFFFFFF) + 1


@kernel("int64(int64[::1], int64, int64)")
def heap_init(mem, reserved, seed):
    """Lay out an empty store in zeroed memory (the creator holds the file exclusively)."""
    mem[L.W_VERSION] = L.FORMAT_VERSION
    mem[L.W_RESERVED] = reserved
    mem[L.W_HASH_SEED] = seed
    mem[L.W_HEAP_TOP] = L.HEAP_START
    return 0


@kernel("int64(int64[::1], int64)")
def heap_commit_max(mem, new):
    """Raise COMMITTED to at least ``new`` (atomic max); return the resulting value."""
    cur = load_acquire(mem, L.W_COMMITTED)
    while cur < new:
        old = atomic_cas(mem, L.W_COMMITTED, cur, new)
        if old == cur:
            return new
        cur = old
    return cur


@kernel("int64(int64[::1], int64)")
def handle_kind(mem, h):
    """Kind of the live object ``h`` names, or a status."""
    e = handle_resolve(mem, h, -1)
    if e < 0:
        return e
    return mem[e + L.H_META] & 0xFF


@kernel("int64(int64[::1], int64, int64)")
def heap_alloc_free_test(mem, token, nbytes):
    """Allocate and immediately free a block of ``nbytes`` (allocator churn; tests and benches)."""
    if not lock_try(mem, L.W_ALLOC_LOCK, token):
        return S.ERR_BUSY_ALLOC
    off = alloc_locked(mem, nbytes, L.TAG_STRING, 0)
    if off >= 0:
        free_locked(mem, off)
    lock_release(mem, L.W_ALLOC_LOCK)
    return off


@kernel("int64(int64[::1], int64, int64, int64, int64)")
def proc_claim(mem, i, pid, start, since):
    """Claim process-table entry ``i`` for ``pid`` if it is free: its lock token, or 0 if the
    entry is taken.  (The caller holds the entry's liveness lock first: ``_segment.live_lock``.)"""
    if i < 0 or i >= L.PROC_MAX or pid <= 0:
        return S.ERR_INVALID
    w = L.PROC_TABLE // 8 + i * L.PROC_WORDS
    if load_acquire(mem, w + L.P_PID) != 0 or atomic_cas(mem, w + L.P_PID, 0, pid) != 0:
        return 0
    mem[w + L.P_START] = 0
    gen = atomic_add(mem, w + L.P_GEN, 1) + 1
    mem[w + L.P_SINCE] = since
    store_release(mem, w + L.P_START, start)
    return ((gen & 0xFFFFFFFFFFFF) << 16) | (i + 1)


@kernel("int64(int64[::1], int64, int64)")
def proc_unregister(mem, token, pid):
    """Free the process-table entry that ``token`` names if it still belongs to ``pid``."""
    i = (token & 0xFFFF) - 1
    if i < 0 or i >= L.PROC_MAX:
        return S.ERR_INVALID
    w = L.PROC_TABLE // 8 + i * L.PROC_WORDS
    if (mem[w + L.P_GEN] & 0xFFFFFFFFFFFF) != (token >> 16):
        return 0
    return 1 if atomic_cas(mem, w + L.P_PID, pid, 0) == pid else 0


def bytes_put(buf, at, data):
    """Copy the bytes of ``data`` (bytes, a uint8 array, or a tuple of uint8) to ``buf[at:]``."""
    raise NotImplementedError("bytes_put is for jitted code")


@overload(bytes_put, jit_options={"nogil": True})
def _bytes_put(buf, at, data):
    if isinstance(data, types.Buffer):
        return lambda buf, at, data: memcpy(buf, at, data, 0, len(data))

    def put_items(buf, at, data):
        for i in range(len(data)):
            buf[at + i] = data[i]

    return put_items


@kernel("int64(int64[::1], int64)")
def handle_lock_word(mem, h):
    """Word index of the lock word of the live object ``h``, or a status."""
    e = handle_resolve(mem, h, -1)
    if e < 0:
        return e
    return e + L.H_LOCK
