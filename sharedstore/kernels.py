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
- ``STATUS_BUSY_LOCK`` / ``STATUS_BUSY_ALLOC``: a lock stayed busy past the spin budget;
  ``STATUS_BUSY_APPEND``: another process's append to the vector is still copying.  Repeat (or
  go back to Python, where ``store`` takes locks over from dead owners and finishes the appends
  of dead processes).
- other negative values: the id is stale or invalid (see ``sharedstore._kernels.status``).

Values are numbers: a float read of an int value converts it; a missing key, or a value that is
not a real number (a complex too), gives ``default``.  :func:`map_lookup` gives the raw entry:
its value's tag is one of the table of value kinds, ``sharedstore._layout.VALUE_KINDS``, which
says what the payload word holds for each.

Many keys at once: ``map_get_float_many(mem, map_id, keys, default, out)`` fills ``out`` for a
typed List of keys (or an int64 array) and returns how many keys had a number.  On a map too big
for the CPU cache it is 2-4x faster per key than a loop of ``map_get_float``: it fetches the
memory of the keys ahead while it looks up the current one, and reads the str keys of a typed
List from the list's own storage, taking no reference on each (a loop ``for k in keys`` takes
and drops one per key: two atomic operations on the string's memory, a cache miss that blocks
the loop when the keys lie in random memory order).

These functions compile into your function (numba inlines them); the first call of a function
that uses them takes a few seconds more to compile.

Vectors: read them through ``vector_ref.view()`` (a NumPy array your jitted code takes as is);
append with :func:`vector_append` (records as a 1-d array of the vector's dtype) and read the
length with :func:`vector_length`.
"""

import numpy as np
from llvmlite import ir
from numba import carray, types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.typed.listobject import _container_get_data

from . import _layout as L
from ._jit import helper, hot, inline
from ._kernels import status as _S
from ._kernels.hashmap import (
    _index_key,
    _read_begin,
    fetch_entry,
    hash_key,
    incr_value,
    lookup,
    lookup_hashed,
    store_value,
)
from ._kernels.memory import float_from_bits, float_to_bits, prefetch, prefetch_address, unowned
from ._kernels.vector import append_bytes, vector_length

STATUS_COMMIT = _S.ERR_COMMIT
STATUS_BUSY_LOCK = _S.ERR_BUSY_OBJ
STATUS_BUSY_ALLOC = _S.ERR_BUSY_ALLOC
STATUS_BUSY_APPEND = _S.ERR_BUSY_APPEND
STATUS_NOT_FOUND = _S.ERR_NOT_FOUND
STATUS_KIND = _S.ERR_KIND
_EMPTY = np.zeros(0, dtype=np.uint8)


def key_bytes(key):
    """``(bytes of key as a uint8 array, key tag)`` in the encoding maps use (jitted code only).

    Raises
    ------
    NotImplementedError
        If called from Python: it exists inside ``@numba.njit`` functions only.
    """
    raise NotImplementedError("key_bytes is for use inside @numba.njit functions")


@helper
def _utf8_cps(cps):
    """UTF-8 of the code points in ``cps`` (a uint8, uint16 or uint32 array)."""
    out = np.empty(4 * len(cps), dtype=np.uint8)
    n = 0
    for i in range(len(cps)):
        c = np.uint32(cps[i])
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
def _utf8_raw(data, n, kind):
    """UTF-8 of the ``n`` code points at ``data``, ``kind`` bytes each (a str's storage)."""
    if kind == 1:
        return _utf8_cps(carray(data, n, np.uint8))
    if kind == 2:
        return _utf8_cps(carray(data, n, np.uint16))
    return _utf8_cps(carray(data, n, np.uint32))


@helper
def _utf8(s):
    return _utf8_raw(s._data, len(s), s._kind)


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


RAW_STR = types.Tuple((types.voidptr, types.intp, types.int32, types.uint32))


def _is_raw_str(key):
    return key == RAW_STR


@intrinsic
def _raw_str_at(typingctx, lst, i):
    """Str item ``i`` of typed List ``lst`` as a raw key ``(address of its code points, count,
    kind, is ASCII)``: read from the list's own storage, with no reference taken on the string
    (an atomic add and subtract on its memory, which a loop over keys in random memory order
    pays as a cache miss that nothing can overlap).  The list keeps the string alive; the
    caller checks ``i``."""
    if not (isinstance(lst, types.ListType) and isinstance(lst.item_type, types.UnicodeType)):
        return None

    def codegen(context, builder, sig, args):
        base = builder.call(
            cgutils.get_or_insert_function(builder.module, ir.FunctionType(
                cgutils.voidptr_t, [cgutils.voidptr_t]), "numba_list_base_ptr"),
            [_container_get_data(context, builder, sig.args[0], args[0])])
        item_ty = context.get_data_type(types.unicode_type)
        ptr = cgutils.gep(builder, builder.bitcast(base, item_ty.as_pointer()), args[1])
        item = context.data_model_manager[types.unicode_type].load_from_data_pointer(builder, ptr)
        u = cgutils.create_struct_proxy(types.unicode_type)(context, builder, value=item)
        return context.make_tuple(builder, sig.return_type, [u.data, u.length, u.kind, u.is_ascii])

    return RAW_STR(lst, types.intp), codegen


@hot
def _raw_str(s):
    """Str ``s`` as a raw key (its caller holds ``s``)."""
    return s._data, len(s), s._kind, s._is_ascii


def _key_at(keys, i):
    """Key ``i`` of ``keys`` for the lookups below: a str of a typed List as a raw key (no
    reference counting), anything else as it is (jitted code only)."""
    raise NotImplementedError("_key_at is for use inside @numba.njit functions")


@overload(_key_at, inline="always", jit_options={"nogil": True})
def _key_at_impl(keys, i):
    if isinstance(keys, types.ListType) and isinstance(keys.item_type, types.UnicodeType):
        return lambda keys, i: _raw_str_at(keys, i)
    return lambda keys, i: keys[i]


def _lookup_key(mem, h, key):
    """``lookup`` of a key of any supported type (jitted code only)."""
    raise NotImplementedError("_lookup_key is for use inside @numba.njit functions")


@helper
def _lookup_cold(mem, h, kb, kt):
    return lookup(mem, h, kb, kt)  # one copy of the lookup for keys that are not plain ASCII


@overload(_lookup_key, inline="always", jit_options={"nogil": True})
def _lookup_key_impl(mem, h, key):
    if isinstance(key, types.UnicodeType):
        return lambda mem, h, key: _lookup_key(mem, h, _raw_str(key))
    if _is_raw_str(key):
        def impl(mem, h, key):
            data, n, kind, ascii_ = key
            if ascii_:  # the string's own bytes are its UTF-8: no copy
                return lookup(mem, h, carray(data, n, np.uint8), L.V_STR)
            return _lookup_cold(mem, h, _utf8_raw(data, n, kind), L.V_STR)
        return impl
    if isinstance(key, types.Integer):
        return lambda mem, h, key: lookup(mem, h, _index_key(np.int64(key)), L.V_INT)
    if isinstance(key, (types.Bytes, types.Array)):
        return lambda mem, h, key: lookup(mem, h, key, L.V_BYTES)
    return None


def _lookup_key_hashed(mem, h, key, hv):
    """``_lookup_key`` of a key whose hash is ``hv`` (jitted code only)."""
    raise NotImplementedError("_lookup_key_hashed is for use inside @numba.njit functions")


@overload(_lookup_key_hashed, inline="always", jit_options={"nogil": True})
def _lookup_key_hashed_impl(mem, h, key, hv):
    if isinstance(key, types.UnicodeType):
        return lambda mem, h, key, hv: _lookup_key_hashed(mem, h, _raw_str(key), hv)
    if _is_raw_str(key):
        def impl(mem, h, key, hv):
            data, n, kind, ascii_ = key
            if ascii_:
                return lookup_hashed(mem, h, carray(data, n, np.uint8), L.V_STR, hv)
            return _lookup_cold(mem, h, _utf8_raw(data, n, kind), L.V_STR)
        return impl
    if isinstance(key, types.Integer):
        return lambda mem, h, key, hv: lookup_hashed(mem, h, _index_key(np.int64(key)), L.V_INT,
                                                     hv)
    if isinstance(key, (types.Bytes, types.Array)):
        return lambda mem, h, key, hv: lookup_hashed(mem, h, key, L.V_BYTES, hv)
    return None


@inline
def map_lookup(mem, map_id, key):
    """The raw entry of ``key`` in map ``map_id``: reads never lock.

    Parameters
    ----------
    mem : int64[::1]
        ``store.mem``.
    map_id : int
        The map's ``.id``.
    key : int, str, bytes or uint8 array
        The same key Python uses (``m[3]``, ``m["a"]``, ``m[b"a"]``).

    Returns
    -------
    (int, int)
        The value's tag (a row of ``_layout.VALUE_KINDS``: ``V_INT``, ``V_FLOAT``...), or a
        negative status (``STATUS_NOT_FOUND`` for a missing key), and its payload word (what
        it holds: the row's ``payload``).
    """
    return _lookup_key(unowned(mem), map_id, key)


@hot
def _number(tag, payload, default):
    if tag == L.V_FLOAT:
        return float_from_bits(payload)
    if tag == L.V_INT:
        return float(payload)
    return default


@inline
def map_get_float(mem, map_id, key, default):
    """The number stored under ``key`` in map ``map_id`` as a float (an int value converted),
    or ``default`` for a missing key or a value that is no number (``mem``, ``map_id`` and
    ``key`` as for :func:`map_lookup`)."""
    tag, payload = map_lookup(mem, map_id, key)
    return _number(tag, payload, float(default))


@inline
def map_get_int(mem, map_id, key, default):
    """The integer stored under ``key`` in map ``map_id``, or ``default`` for a missing key or
    any other value, a float too (arguments as for :func:`map_lookup`)."""
    tag, payload = map_lookup(mem, map_id, key)
    if tag == L.V_INT:
        return payload
    return default


def _key_hash(key, seed):
    """The map hash of a key of any supported type (jitted code only)."""
    raise NotImplementedError("_key_hash is for use inside @numba.njit functions")


@overload(_key_hash, inline="always", jit_options={"nogil": True})
def _key_hash_impl(key, seed):
    if isinstance(key, types.UnicodeType):
        return lambda key, seed: _key_hash(_raw_str(key), seed)
    if _is_raw_str(key):
        def impl(key, seed):
            data, n, kind, ascii_ = key
            if ascii_:
                return hash_key(carray(data, n, np.uint8), L.V_STR, seed)
            return hash_key(_utf8_raw(data, n, kind), L.V_STR, seed)
        return impl
    if isinstance(key, types.Integer):
        return lambda key, seed: hash_key(_index_key(np.int64(key)), L.V_INT, seed)
    if isinstance(key, (types.Bytes, types.Array)):
        return lambda key, seed: hash_key(key, L.V_BYTES, seed)
    return None


_CACHED_SLOTS = 4096  # a table this big (32 KiB) and its entries stay in cache
_AHEAD = 8  # keys between fetching a slot and its entry, and between the entry and the lookup
# (a power of two: the ring of hashes holds 2 * _AHEAD)


def _fetch_key(key):
    """Ask the CPU for a key's bytes (a str's; an int key has them in hand)."""
    raise NotImplementedError("_fetch_key is for use inside @numba.njit functions")


@overload(_fetch_key, inline="always", jit_options={"nogil": True})
def _fetch_key_impl(key):
    if isinstance(key, types.UnicodeType):
        return lambda key: _fetch_key(_raw_str(key))
    if _is_raw_str(key):
        return lambda key: prefetch_address(key[0])
    return lambda key: None


@inline
def _fetch_slot(m, sw, mask, seed, key, hv, j):
    """Hash ``key``, keep the hash in ``hv[j]``, and ask the CPU for the key's first slot."""
    x = _key_hash(key, seed)
    hv[j] = x
    prefetch(m, sw + (x & mask))


@inline
def map_get_float_many(mem, map_id, keys, default, out):
    """``out[i] = map_get_float(mem, map_id, keys[i], default)`` for every key of ``keys``.

    Parameters
    ----------
    mem, map_id
        As for :func:`map_lookup`.
    keys : typed List of keys, or int64 array
        The keys (of one type).
    default : float
        The value for a missing key, or one that is no number.
    out : float64 array
        At least ``len(keys)`` long.

    Returns
    -------
    int
        How many keys have a number, or a negative status if ``map_id`` names no map (then
        ``out`` is all ``default``).

    Faster per key than one call each on a big map: the lookups run as a pipeline.  While key
    ``i`` is looked up, the entry of key ``i + 8``, the table slot of key ``i + 16`` and the
    bytes of key ``i + 24`` are being fetched, so the cache misses of many keys overlap instead
    of following one another.  The fetches are hints: each lookup checks everything as
    ``map_get_float`` does.  The str keys of a typed List are read in place, with no reference
    counting (see the module docstring)."""
    m = unowned(mem)
    n = len(keys)
    d = float(default)
    found = 0
    tk, t, cap = _read_begin(m, map_id, L.KIND_MAP)
    if tk[0] < 0:
        out[:n] = d
        return tk[0]
    if cap <= _CACHED_SLOTS:  # the table stays in cache: nothing to fetch ahead
        for i in range(n):
            tag, payload = _lookup_key(m, map_id, _key_at(keys, i))
            out[i] = _number(tag, payload, d)
            found += tag == L.V_FLOAT or tag == L.V_INT
        return found
    seed = m[L.W_HASH_SEED]
    sw = t // 8 + 2
    mask = cap - 1
    ring = 2 * _AHEAD - 1
    hv = np.empty(2 * _AHEAD, dtype=np.int64)  # the hashes of keys i .. i + 15
    for j in range(min(n, 3 * _AHEAD)):
        _fetch_key(_key_at(keys, j))
    for j in range(min(n, 2 * _AHEAD)):
        _fetch_slot(m, sw, mask, seed, _key_at(keys, j), hv, j)
        if j >= _AHEAD:
            fetch_entry(m, sw, mask, hv[j - _AHEAD])
    for i in range(n):
        tag, payload = _lookup_key_hashed(m, map_id, _key_at(keys, i), hv[i & ring])
        out[i] = _number(tag, payload, d)
        found += tag == L.V_FLOAT or tag == L.V_INT
        if i + 3 * _AHEAD < n:
            _fetch_key(_key_at(keys, i + 3 * _AHEAD))
        if i + 2 * _AHEAD < n:  # key i's hash is used: its place in the ring takes key i + 16's
            _fetch_slot(m, sw, mask, seed, _key_at(keys, i + 2 * _AHEAD), hv, i & ring)
        if i + _AHEAD < n:
            fetch_entry(m, sw, mask, hv[(i + _AHEAD) & ring])
    return found


@helper
def map_set_float(mem, token, map_id, key, value):
    """Store float ``value`` under ``key`` in map ``map_id``, under the map's lock.

    Parameters
    ----------
    mem, map_id, key
        As for :func:`map_lookup`.
    token : int
        ``store.token``: this process's lock token.
    value : float

    Returns
    -------
    int
        1 (a new key), 0 (a value replaced), or a negative status: ``STATUS_COMMIT`` (call
        ``store.reserve(nbytes)`` from Python, then write again), ``STATUS_BUSY_LOCK`` or
        ``STATUS_BUSY_ALLOC`` (write again, or go back to Python), or a stale or invalid id.
    """
    kb, kt = key_bytes(key)
    return store_value(unowned(mem), token, map_id, L.KIND_MAP, kb, kt, L.V_FLOAT,
                       float_to_bits(float(value)), _EMPTY)


@helper
def map_set_int(mem, token, map_id, key, value):
    """Store int ``value`` (int64) under ``key`` in map ``map_id``: as :func:`map_set_float`."""
    kb, kt = key_bytes(key)
    return store_value(unowned(mem), token, map_id, L.KIND_MAP, kb, kt, L.V_INT, np.int64(value),
                       _EMPTY)


#: times an atomic map write from users' code tries for a busy lock (each try spins, then
#: yields the CPU, for a few milliseconds) before it returns STATUS_BUSY_LOCK: seconds of a
#: lock held, which only a process that died holding it does
_WAIT_TRIES = 2000


@helper
def _incr(mem, token, map_id, key, is_float, idelta, fdelta):
    kb, kt = key_bytes(key)
    m = unowned(mem)
    r = _S.ERR_BUSY_OBJ
    bits = 0
    for _ in range(_WAIT_TRIES):
        r, bits = incr_value(m, token, map_id, L.KIND_MAP, kb, kt, is_float, idelta, fdelta)
        if r != _S.ERR_BUSY_OBJ and r != _S.ERR_BUSY_ALLOC:
            break
    return r, bits


@helper
def map_incr_int(mem, token, map_id, key, delta):
    """Atomically add int ``delta`` to the integer at ``key`` in map ``map_id`` (a missing key
    counts as 0; int64, wrapping), whatever other processes do at the same time.

    Parameters
    ----------
    mem, token, map_id, key
        As for :func:`map_set_float`.
    delta : int

    Returns
    -------
    (int, int)
        ``(status, new value)``: status 0, or a negative status with nothing changed:
        ``STATUS_COMMIT`` (a new key needs memory: call ``store.reserve(nbytes)`` from Python,
        then add again), ``STATUS_KIND`` (the value there is no integer), ``STATUS_BUSY_LOCK``
        (the map's lock stayed held for seconds: a process died holding it; any write from
        Python takes it over), or a stale or invalid id.  A busy lock is waited for, spinning
        a little, then yielding the CPU.
    """
    r, bits = _incr(mem, token, map_id, key, 0, np.int64(delta), 0.0)
    return r, bits


@helper
def map_incr_float(mem, token, map_id, key, delta):
    """Atomically add ``delta`` to the float at ``key`` in map ``map_id`` (a missing key counts
    as 0.0): ``(status, new value)``, as :func:`map_incr_int` (``STATUS_KIND`` if the value
    there is no float)."""
    r, bits = _incr(mem, token, map_id, key, 1, np.int64(0), float(delta))
    return r, float_from_bits(bits)


@helper
def vector_append(mem, token, vector_id, values):
    """Append ``values`` (a 1-d array of the vector's dtype) to the vector ``vector_id``.

    Returns
    -------
    int
        The new length, or a negative status (the module doc lists them; ``STATUS_COMMIT``:
        call ``store.reserve`` from Python first).
    """
    return append_bytes(unowned(mem), token, vector_id, values.view(np.uint8))


__all__ = [
    "STATUS_BUSY_ALLOC",
    "STATUS_BUSY_APPEND",
    "STATUS_BUSY_LOCK",
    "STATUS_COMMIT",
    "STATUS_KIND",
    "STATUS_NOT_FOUND",
    "key_bytes",
    "map_get_float",
    "map_get_float_many",
    "map_get_int",
    "map_incr_float",
    "map_incr_int",
    "map_lookup",
    "map_set_float",
    "map_set_int",
    "vector_append",
    "vector_length",
]
