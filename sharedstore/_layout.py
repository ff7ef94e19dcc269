"""The binary format of a store: the one place where offsets and word layouts live.

A store is one file (``/dev/shm/sharedstore.<name>`` or any path) of ``reserved`` bytes, made with
``ftruncate`` and mapped once per process.  Only the first ``committed`` bytes are backed by
memory (``posix_fallocate``); nothing beyond ``committed`` is ever read or written.  All numbers
are little-endian int64 words; every offset is a byte offset from the start of the file.

Header (bytes 0 .. 4096), word indices::

    0  MAGIC        b"SHSTORE\\x01" as int64
    1  VERSION      format version (FORMAT_VERSION)
    2  RESERVED     file size in bytes (the reservation)
    3  COMMITTED    bytes backed by memory; only grows (atomic max)
    4  HASH_SEED    random per store; keys every hash so crafted keys cannot collide on purpose
    5  ROOT         handle of the root map (named values)
    6  ALLOC_LOCK   lock word of the allocator and handle table (see Locks)
    7  HEAP_TOP     first never-allocated heap byte (bump pointer)
    8  USED         bytes in live blocks
    9  HT_COUNT     handle slots ever created
    10 HT_FREE      1 + first free handle slot, 0 if none (list linked through entry word 0)
    11 CREATED_NS   creation time, ns since the epoch
    12 READY        1 once the creator finished initialising; attach refuses 0
    13 SCHEMAS      handle of the schema map (struct descriptor -> string holding it)
    14 VALUE_KINDS  bit t set: map values of kind t (VALUE_KINDS below) may be in the store.
                    The creator sets the kinds its library writes (V_KNOWN); every library
                    that attaches ORs in its own, so one that meets a tag it does not know
                    can tell a newer library's value from damage
    16 .. 47        OBJECTS[kind]: live objects per kind
    64 .. 319      CLASS_HEADS[c]: first free block of size class c, 0 if none

Process table (bytes PROC_TABLE .. +PROC_MAX*32): entries of 4 words
``[pid, gen, start_ticks, since_ns]``; ``pid == 0`` is a free entry.  ``gen`` counts
registrations of the entry; a process's lock token is ``gen << 16 | (index + 1)``, so a token of
a process that has gone (entry freed or re-registered) never matches a live entry again.  The
process holds an OFD record lock on the entry's first byte of the file for as long as it is
registered (its *liveness lock*, ``_segment.live_lock``): the kernel drops it when the process
dies, so any process, in any pid namespace, can tell a live entry from a dead one.  The pid is
what that process's own namespace calls it: it is shown, never trusted where locks exist.

Pin lists (bytes PIN_LISTS .. +PROC_MAX*8): for each process-table entry, the byte offset of
that process's pin-list block (0 if none).  Its data is pairs ``[data block, pins]``: the views
the process holds on each vector data block (see ``_kernels/vector.py``).  Pins are taken and
released under the allocator lock, the block's state word first and the record second when
pinning, the record first when releasing, so a kill in between can only leave a block pinned
once too often (``check(repair=True)`` releases it), never unpinned too early.  When a dead
process's entry is reaped, the pins it recorded are released.

Handle directory (bytes HT_DIR .. +HT_DIR_LEN*8): byte offset of each handle chunk's data.
Each chunk holds HT_CHUNK entries of 4 words ``[value, meta, lock, seq]``:

- ``value``: byte offset of the object's block, or the int64/float64 bits of an int/number;
  for a free slot, 1 + the next free slot.
- ``meta``: ``gen << 8 | kind``; ``kind == KIND_FREE`` for a free slot.  ``gen`` is bumped when
  the slot is freed, so a stale handle never resolves; a slot whose gen would pass GEN_MAX is
  retired, never reused.
- ``lock``: the object's lock word (0 or the owner's token).  Every write through a handle
  takes it and checks the handle's generation again once it holds it; reusing the slot for a
  new object leaves it as it is (a stale writer may hold it for a moment, then let go).
- ``seq``: bumped by 2 after a string's block is replaced and before the old block is freed;
  optimistic readers re-read it after copying (a seqlock without an odd state, so a writer
  killed mid-write never leaves readers waiting).  It only ever grows.

A handle is ``gen << 32 | slot`` (slot < 2**31, 1 <= gen <= GEN_MAX): a positive int64.

Heap (bytes HEAP_START .. HEAP_TOP): contiguous blocks, each a header word
``class | tag << 8 | ulen << 16`` followed by the data; a block of class c spans CLASS_SIZE[c]
bytes including the header, except class CLASS_EXACT (handle chunks, never freed), which spans
``8 + ulen`` bytes.  ``ulen`` is the block's own length field (a string's byte count);
a free block has tag TAG_FREE and the next free block's offset in its first data word.

Locks: a lock word holds 0 or the owner's token; it is taken with compare-and-swap and
released with a store of 0, always within one kernel call.

Compatibility: a library reads only stores of its own FORMAT_VERSION and refuses any other at
attach, before it reads anything else of the file, saying whether the store is older or newer
(``_attachment._check_format``).  A change of anything a library must know to read or write a
store correctly (a word, a block, a tag, an invariant) takes a new FORMAT_VERSION, with one
exception: a new value kind whose value lives wholly in its map entry (payload word and value
bytes, no block of its own).  A library of the same format that does not know its tag reads
the rest of the store, refuses that value alone, and its check reports it as written by a
newer sharedstore and never repairs it away (the tag's bit is in VALUE_KINDS).
"""

from typing import NamedTuple

MAGIC = int.from_bytes(b"SHSTORE\x01", "little")
FORMAT_VERSION = 5  # 2: an array value's elements live in a data block of their own
                    # 3: a vector's header records the append copying outside its lock;
                    #    size classes above 128 bytes are 16 bytes bigger
                    # 4: a vector's header has an undo block for writes in place
                    # 5: liveness locks on the process table; arrays are KIND_ARRAY; a reused
                    #    handle slot keeps its lock and seq words; the header records the
                    #    value kinds (VALUE_KINDS); complex values

PAGE = 4096

# header words
W_MAGIC = 0
W_VERSION = 1
W_RESERVED = 2
W_COMMITTED = 3
W_HASH_SEED = 4
W_ROOT = 5
W_ALLOC_LOCK = 6
W_HEAP_TOP = 7
W_USED = 8
W_HT_COUNT = 9
W_HT_FREE = 10
W_CREATED_NS = 11
W_READY = 12
W_SCHEMAS = 13
W_VALUE_KINDS = 14
W_OBJECTS = 16
N_KINDS = 32
W_CLASS_HEADS = 64
N_CLASSES = 255
CLASS_EXACT = 255  # class byte of an exact-size block (never freed): it spans 8 + ulen bytes

# process table
PROC_TABLE = 4096
PROC_MAX = 1024
PROC_WORDS = 4
P_PID = 0
P_GEN = 1
P_START = 2
P_SINCE = 3

# pin lists: one word per process-table entry
PIN_LISTS = PROC_TABLE + PROC_MAX * PROC_WORDS * 8

# handle table
HT_DIR = 65536
HT_DIR_LEN = 65536
HT_CHUNK_SHIFT = 15
HT_CHUNK = 1 << HT_CHUNK_SHIFT
HT_WORDS = 4
H_VALUE = 0
H_META = 1
H_LOCK = 2
H_SEQ = 3
SLOT_MAX = HT_DIR_LEN * HT_CHUNK  # 2**31
GEN_MAX = (1 << 31) - 1

HEAP_START = HT_DIR + HT_DIR_LEN * 8
assert PIN_LISTS + PROC_MAX * 8 <= HT_DIR
INITIAL_COMMIT = 2 << 20
MIN_RESERVATION = 4 << 20

# object kinds (handle meta low byte)
KIND_FREE = 0
KIND_STRING = 1
KIND_INT = 2
KIND_FLOAT = 3
KIND_MAP = 4
KIND_VECTOR = 5
KIND_ARRAY = 6
KIND_STRUCT = 7
KIND_LIST = 8  # a vector of any values: a map whose keys are 0 .. len-1
# what a kernel may ask of a handle besides one kind (``heap.kind_ok``)
KIND_ANY = -1
KIND_MAPLIKE = -2  # a map or a list
KIND_VECLIKE = -3  # a vector or a fixed-shape array
KIND_NONE = -9  # nothing: what a class passes for a kind of object it has no methods for
KIND_NAMES = {
    KIND_STRING: "string",
    KIND_INT: "integer",
    KIND_FLOAT: "number",
    KIND_MAP: "map",
    KIND_VECTOR: "vector",
    KIND_ARRAY: "array",
    KIND_STRUCT: "struct",
    KIND_LIST: "list",
}

# block tags (block header bits 8..15)
TAG_FREE = 1
TAG_STRING = 2
TAG_MAP = 3
TAG_TABLE = 4
TAG_ENTRY = 5
TAG_HCHUNK = 6
TAG_STRUCT = 7
TAG_VECTOR = 8
TAG_VDATA = 9
TAG_VFREE = 10
TAG_PINS = 11
TAG_VUNDO = 12
TAG_MAX = 12
TAG_NAMES = {
    TAG_FREE: "free",
    TAG_STRING: "string",
    TAG_MAP: "map header",
    TAG_TABLE: "map table",
    TAG_ENTRY: "map entry",
    TAG_HCHUNK: "handle chunk",
    TAG_STRUCT: "struct record",
    TAG_VECTOR: "vector header",
    TAG_VDATA: "vector data",
    TAG_VFREE: "vector free list",
    TAG_PINS: "pin list",
    TAG_VUNDO: "vector undo",
}

# size classes: 16..128 bytes in steps of 8, then four classes per doubling, each CLASS_PAD
# bytes more than 2**p * (1, 1.25, 1.5, 1.75): a block holding a power of two of bytes behind
# a header and a word (a map's table: [capacity, slots...]) fits one exactly, not 25% over
N_SMALL = 15
CLASS_PAD = 16


def class_size(c: int) -> int:
    """Bytes spanned by a block of size class ``c`` (header included)."""
    if c < N_SMALL:
        return 16 + 8 * c
    j = c - N_SMALL
    p = 7 + j // 4
    return (1 << p) + (j % 4) * (1 << (p - 2)) + CLASS_PAD


# map layout: a map object's block holds MAP_WORDS words
M_TABLE = 0      # byte offset of the current table block
M_COUNT = 1      # live entries
M_USED = 2       # live entries + tombstones in the current table
M_VERSION = 3    # bumped by 2 after every change is published and before anything is freed
MAP_WORDS = 4
# a table block's data: [capacity, slot words...]; slot 0 = empty, 1 = tombstone, else
# (hash tag << TAG_SHIFT) | (entry block offset >> 3)
SLOT_EMPTY = 0
SLOT_TOMB = 1
SLOT_TAG_SHIFT = 45
SLOT_OFF_MASK = (1 << SLOT_TAG_SHIFT) - 1
MAP_MIN_CAP = 8
# an entry block: its header's ulen is the value's byte length; its data words are
# [key tag | value tag << 8 | key len << 16, value payload], then the key bytes (padded to 8),
# then the value bytes.  The hash is not stored: a resize recomputes it from the key bytes.
# What the payload word and the value bytes hold: the row of the value tag in VALUE_KINDS.
# An array value (V_ARRAY) keeps only its header (dtype and shape, ``_values.encode_array``) in
# the entry; its payload is the byte offset of a data block (as a vector's, below) holding its
# elements (the block's ulen: their byte length), so read-only views can pin them.  Replacing or
# deleting the value retires that block instead of freeing it.
E_META = 0
E_PAYLOAD = 1
E_WORDS = 2
KEY_MAX = (1 << 40) - 1

# a struct object's block data: [schema handle, 0, record bytes...]; the schema handle names a
# string holding the struct's JSON descriptor (interned through the SCHEMAS map)
S_SCHEMA = 0
S_RECORD = 16  # byte offset of the record within the block's data

# a vector object's block holds VEC_WORDS words
VH_DATA = 0      # byte offset of the current data block
VH_LEN = 1       # slots in use (the high-water mark; removed slots stay, zeroed, on the free list)
VH_CAP = 2       # slots the data block holds
VH_ITEMSIZE = 3  # bytes per slot
VH_DTYPE = 4     # handle of the string holding the dtype's JSON descriptor
VH_FREE = 5      # byte offset of the free-list block (int64 slot indices), 0 if none
VH_NFREE = 6     # slots on the free list
VH_VERSION = 7   # bumped by 2 after a change to published slots, the data block or the free
                 # list is published (optimistic readers); an append past the length needs none;
                 # odd while published slots change in place (readers wait)
VH_APPENDER = 8  # token of the process copying an append outside the lock, 0 if none
VH_APPEND_END = 9  # the end of the slots it copies (they start at the length)
VH_WRITING = 10  # 1 + a slot being zeroed for the free list (remove) or written while still on
                 # it (insert), lock held; 0 if none: a writer that takes the lock over from a
                 # dead owner zeroes that slot and makes sure it is on the free list
VH_UNDO = 11     # byte offset of the undo block (old records of a write in place), 0 until the
                 # first such write; its header's high bits hold how many slots it takes
VH_UNDO_AT = 12  # 1 + the first slot whose old records the undo block holds while they are
                 # overwritten, 0 if none: a writer that takes the lock over puts them back
VH_UNDO_N = 13   # how many
VEC_WORDS = 14
UNDO_BYTES = 4096  # a write in place is logged and copied this much at a time (whole records)
# a data block's data: [state, 0, records...]; state = 2 * (processes pinning it) + retired.
# A block is freed exactly once: by whoever makes state 1 (retired, unpinned).  A map's array
# value holds its elements in such a block too (its ulen: their byte length).
D_STATE = 0
D_RECORDS = 16

# ---------------------------------------------------------------------------- value kinds
# The one table of value kinds.  A map entry's meta word holds its key's tag (bits 0..7) and its
# value's tag (bits 8..15, ``E_META``); the row of that tag says what the entry's payload word
# and value bytes (``ulen`` of them) hold.  Every reader of a value tag reads this table or the
# constants made from it below: ``_values.py`` (the Python encoders and decoders, checked
# against the table at import), ``maps.py``, the C entry points (``_fastpath/entries.py``),
# ``kernels.py`` and the check (``_kernels/check.py``, ``check.py``).
#
# Tags are 1 .. 63 (a store's VALUE_KINDS word has one bit per tag) and a tag never changes
# meaning: a new kind takes a new tag.  Adding one: the checklist in ``_values.py``.


class ValueKind(NamedTuple):
    """One row of :data:`VALUE_KINDS`."""

    tag: int
    name: str     # what it holds, as Python names it
    key: bool     # also a key's tag (a key's bytes are encoded as the value's; an int: 8 bytes)
    size: int     # value bytes in the entry: 0 (payload-only: the payload word holds the value),
                  # a fixed count, or VAR
    c: bool       # the c backend (``_fastpath/entries.py``) writes and reads it with no Python
    payload: str  # what the payload word holds ("": nothing, 0)
    data: str     # what the value bytes hold ("": there are none)


VAR = -1  # ValueKind.size of bytes of any length

V_NONE = 1
V_FALSE = 2
V_TRUE = 3
V_INT = 4
V_FLOAT = 5
V_STR = 6
V_BYTES = 7
V_REF = 8
V_PICKLE = 9
V_ARRAY = 10
V_COMPLEX = 11

VALUE_KINDS = (
    #         tag        name       key    size c      payload word, value bytes
    ValueKind(V_NONE,    "None",    False, 0,   True,  "", ""),
    ValueKind(V_FALSE,   "False",   False, 0,   True,  "", ""),
    ValueKind(V_TRUE,    "True",    False, 0,   True,  "", ""),
    ValueKind(V_INT,     "int",     True,  0,   True,  "int64", ""),
    ValueKind(V_FLOAT,   "float",   False, 0,   True,  "float64 bits", ""),
    ValueKind(V_STR,     "str",     True,  VAR, True,  "", "UTF-8 (lone surrogates kept)"),
    ValueKind(V_BYTES,   "bytes",   True,  VAR, True,  "", "the bytes"),
    ValueKind(V_REF,     "ref",     False, 0,   False, "the object's handle", ""),
    ValueKind(V_PICKLE,  "pickle",  False, VAR, False, "", "pickle protocol 5 of any value"),
    ValueKind(V_ARRAY,   "ndarray", False, VAR, False, "offset of the elements' data block",
              "dtype and shape (_values.array_head)"),
    ValueKind(V_COMPLEX, "complex", False, 16,  True,  "", "real, imag: two float64"),
)

# the table as numbers, for kernels (numba reads module constants when it compiles)
V_MAX_KNOWN = max(k.tag for k in VALUE_KINDS)  # the highest tag this library reads
V_KNOWN = sum(1 << k.tag for k in VALUE_KINDS)  # bit t: tag t is a kind this library reads
V_KEYS = sum(1 << k.tag for k in VALUE_KINDS if k.key)  # bit t: tag t may be a key's
V_PAYLOAD_ONLY = sum(1 << k.tag for k in VALUE_KINDS if k.size == 0)  # bit t: no value bytes
#: V_SIZE[t]: ValueKind.size of tag t (VAR for tags of no kind), for t <= V_MAX_KNOWN
V_SIZE = tuple(next((k.size for k in VALUE_KINDS if k.tag == t), VAR)
               for t in range(V_MAX_KNOWN + 1))
VALUE_KIND = {k.tag: k for k in VALUE_KINDS}
assert len(VALUE_KIND) == len(VALUE_KINDS) and all(0 < t < 64 for t in VALUE_KIND)
