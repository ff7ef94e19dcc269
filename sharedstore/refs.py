"""Refs: handles on objects in a store's shared heap.

A ref is ``(store, id)``; the id is a 64-bit handle (slot + generation) that any process
attached to the store can use: ``store.ref(id)`` or ``StringRef(store, id)`` reconnects to the
same object.  Refs pickle as ``(store name, id)``.  After ``drop()`` every use of the object, by
any ref in any process, raises :class:`UseAfterFreeError`, also after its slot has been reused.
"""

from __future__ import annotations

import struct
from collections.abc import ItemsView, Mapping, MutableMapping, MutableSequence, ValuesView

import numpy as np

from . import _layout as L
from . import _pycall
from ._kernels import hashmap as KM
from ._kernels import heap as KH
from ._kernels import objects as KO
from ._kernels import status as S
from ._pins import pinned_array, release_pin
from ._values import (
    _float_from_bits,
    array_head,
    array_meta,
    as_float,
    corrupt_text,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    float_bits,
)
from ._values import as_int64 as _int64
from .errors import InvalidHandleError, SharedStoreError, raise_status

_REC = struct.Struct("<qqqq")
_REC3 = struct.Struct("<qqq")
_V_INT = L.V_INT
_V_STR = L.V_STR
_V_FLOAT = L.V_FLOAT


def _elements(a: np.ndarray) -> np.ndarray:
    """An array's elements as read-only C-order bytes (a copy only if ``a`` is not contiguous)."""
    flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    flat.flags.writeable = False
    return flat


class Ref:
    """Base of every ref: an object in a store, named by ``id``."""

    # _cx: the address of the store's _pycall.Context, for the hot paths' entry points, which
    # read it and _id (pyentry.SLOT_*)
    __slots__ = ("_cx", "_id", "_store")
    _kind = -1

    def __init__(self, store, id: int):
        """Reconnect to the object ``id`` of ``store`` (``store.ref(id)`` finds the class)."""
        if not hasattr(store, "_att"):
            raise TypeError(f"a ref needs the Store its object lives in, not {type(store).__name__}")
        if isinstance(id, bool) or not isinstance(id, int):
            raise InvalidHandleError(f"an id is an int, not {type(id).__name__} ({id!r})")
        if not 0 < id < (1 << 63):
            raise InvalidHandleError(f"{id!r} is not a valid id: ids are positive int64 values")
        kind = KH.handle_kind(store.mem, id)
        if kind < 0:
            raise_status(kind, f"{type(self).__name__}(store, {id!r})", store=store)
        if kind != self._kind:
            raise InvalidHandleError(
                f"id {id} names a {L.KIND_NAMES.get(kind, '?')}, not a {L.KIND_NAMES[self._kind]}: "
                f"use store.ref({id}) to get a ref of the right class"
            )
        self._init(store, id)

    @classmethod
    def _trusted(cls, store, id: int):
        """A ref for a handle the caller knows is live and of this class's kind."""
        self = cls.__new__(cls)
        self._init(store, id)
        return self

    def _init(self, store, id: int) -> None:
        """Fill every slot: the one place each class sets its own (``__init__``, ``_trusted``
        and unpickling all come here, so no way of making a ref leaves a slot unset)."""
        self._store = store
        self._id = id
        self._cx = store._cx

    @property
    def id(self) -> int:
        """The object's handle: pass it to another process and reconnect with ``store.ref(id)``."""
        return self._id

    @property
    def store(self):
        return self._store

    def drop(self) -> None:
        """Free the object.  Any later use of it raises :class:`UseAfterFreeError`."""
        s = self._store
        args = (s.mem, s._token, self._id, self._kind)
        r = KO.object_drop(*args)
        if r < 0:
            s._slow(r, KO.object_drop, args, f"{type(self).__name__}.drop()")

    def __reduce__(self):
        return type(self), (self._store, self._id)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return other._id == self._id and other._store.path == self._store.path

    def __hash__(self):
        return hash((type(self).__name__, self._id))

    def __repr__(self):
        return f"<{type(self).__name__} id={self._id} of store {self._store.name!r}>"

    def _fail(self, r: int, what: str):
        raise_status(r, f"{type(self).__name__}.{what}", store=self._store)


class StringRef(Ref):
    """A shared UTF-8 string of any length."""

    __slots__ = ()
    _kind = L.KIND_STRING

    def get(self) -> str:
        s = self._store
        out = s._out()
        n = KO.string_read(s.mem, out, self._id)
        while n < 0 or n > len(out):
            if n < 0:
                n = s._slow(n, KO.string_read, (s.mem, out, self._id), "StringRef.get()")
            if n > len(out):
                out = s._out(n)
                n = KO.string_read(s.mem, out, self._id)
        try:
            return str(s._tls.view[:n], "utf-8", "surrogatepass")
        except UnicodeDecodeError as e:
            raise corrupt_text(e) from e

    def set(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"StringRef.set() takes a str, not {type(value).__name__}")
        s = self._store
        data = value.encode("utf-8", "surrogatepass")
        args = (s.mem, s._token, self._id, data)
        r = KO.string_set(*args)
        if r < 0:
            s._slow(r, KO.string_set, args, "StringRef.set()", hint=len(data))

    value = property(get, set, doc="The string's current value.")

    def __str__(self):
        return self.get()


class _ScalarRef(Ref):
    __slots__ = ()

    def _bits(self) -> int:
        st, bits = KO.scalar_get(self._store.mem, self._id, self._kind)
        if st < 0:
            self._fail(st, "get()")
        return bits

    def _set_bits(self, bits: int) -> None:
        st = KO.scalar_set(self._store.mem, self._id, self._kind, bits)
        if st < 0:
            self._fail(st, "set()")


class NumberRef(_ScalarRef):
    """A shared float64; ``add`` is atomic."""

    __slots__ = ()
    _kind = L.KIND_FLOAT

    get = _pycall.method("float_get", "_slow_get", "()", "The number's current value.")

    def _slow_get(self) -> float:
        return _float_from_bits(self._bits())

    def set(self, value: float) -> None:
        self._set_bits(float_bits(as_float(value)))

    add = _pycall.method("float_add", "_slow_add", "(x, /)",
                         "Atomically add ``x``; return the new value.")

    def _slow_add(self, x: float) -> float:
        st, new = KO.float_add(self._store.mem, self._id, as_float(x))
        if st < 0:
            self._fail(st, "add()")
        return new

    value = property(lambda self: self.get(), set, doc="The number's current value.")

    def __float__(self):
        return self.get()


class IntRef(_ScalarRef):
    """A shared int64; ``add`` (fetch-add) and ``compare_exchange`` are atomic."""

    __slots__ = ()
    _kind = L.KIND_INT

    get = _pycall.method("int_get", "_slow_get", "()", "The integer's current value.")

    def _slow_get(self) -> int:
        return self._bits()

    def set(self, value: int) -> None:
        self._set_bits(_int64(value))

    add = _pycall.method("int_add", "_slow_add", "(x=1, /)",
                         "Atomically add ``x`` (wrapping at int64); return the new value.")

    def _slow_add(self, x: int = 1) -> int:
        st, new = KO.int_add(self._store.mem, self._id, _int64(x))
        if st < 0:
            self._fail(st, "add()")
        return new

    def compare_exchange(self, expected: int, new: int) -> bool:
        """Atomically set the value to ``new`` if it is ``expected``; True if it was."""
        st, ok = KO.int_compare_exchange(self._store.mem, self._id, _int64(expected), _int64(new))
        if st < 0:
            self._fail(st, "compare_exchange()")
        return bool(ok)

    value = property(lambda self: self.get(), set, doc="The integer's current value.")

    def __int__(self):
        return self.get()

    __index__ = __int__


def _encode_keys(keys: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys as (one uint8 array of their bytes, offsets into it, key tags) for batch kernels."""
    if all(type(k) is str for k in keys):
        parts = [k.encode("utf-8", "surrogatepass") for k in keys]
        tags = np.full(len(keys), _V_STR, dtype=np.int64)
    else:
        encoded = [encode_key(k) for k in keys]
        parts = [kb for kb, _ in encoded]
        tags = np.array([kt for _, kt in encoded], dtype=np.int64)
    offs = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)), out=offs[1:])
    blob = np.frombuffer(b"".join(parts) or b"\0", dtype=np.uint8)
    return blob, offs, tags


class _ItemsView(ItemsView):
    def __iter__(self):
        return iter(self._mapping._dump(True))


class _ValuesView(ValuesView):
    def __iter__(self):
        return (v for _, v in self._mapping._dump(True))


class MapRef(Ref, MutableMapping):
    """A shared hash map: str, bytes or int keys; any values.  Readers never lock.

    Values: None, bool, int64, float, str and bytes are stored as themselves, numpy arrays as
    typed blocks (read back as new arrays), refs as their handles (read back as refs), anything
    else pickled.  Replacing or deleting a value frees what the map stored for it; the objects
    refs point to stay (``drop(recursive=True)`` drops them too)."""

    __slots__ = ()
    _kind = L.KIND_MAP

    # ---------------------------------------------------------------- reads
    # The common cases run as C functions (_pycall.method); the _slow_* methods do the rest.
    __getitem__ = _pycall.method("map_getitem", "_slow_getitem", "(key, /)", "``m[key]``.")
    __contains__ = _pycall.method("map_contains", "_slow_contains", "(key, /)", "``key in m``.")
    get = _pycall.method("map_get", "_slow_get", "(key, default=None)",
                         "``m[key]``, or ``default`` if ``key`` is not in the map.")
    __setitem__ = _pycall.method("map_setitem", "_slow_setitem", "(key, value, /)",
                                 "``m[key] = value``.")

    def _slow_getitem(self, key):
        return self._get(key)

    def _get(self, key):
        """``self[key]`` through the map_get kernel: every key and value type, and the errors."""
        kb, kt = encode_key(key)
        s = self._store
        mem = s.mem  # (a closed store raises here)
        try:
            out, view, ints, floats = s._tls.bufs
        except AttributeError:
            s._out()
            out, view, ints, floats = s._tls.bufs
        r = KM.map_get(mem, out, self._id, kb, kt)
        if r < 0:
            if r == S.ERR_SCRATCH:
                s._out(ints[2])
                return self._get(key)
            if r != S.ERR_NOT_FOUND:
                r = s._slow(r, KM.map_get, (mem, out, self._id, kb, kt), "map get",
                            self._id, passthrough=(S.ERR_NOT_FOUND, S.ERR_SCRATCH))
                if r == S.ERR_SCRATCH:
                    return self._get(key)
            raise KeyError(key)
        if r == _V_STR:
            try:
                return str(view[24:24 + ints[2]], "utf-8", "surrogatepass")
            except UnicodeDecodeError as e:
                raise corrupt_text(e) from e
        if r <= _V_FLOAT:  # payload-only values: no bytes to copy out
            return decode_value(s, r, ints[1], None)
        return decode_value(s, r, ints[1], view[24:24 + ints[2]])

    def _slow_contains(self, key) -> bool:
        try:
            self._get(key)
        except (KeyError, TypeError):
            return False
        return True

    def _slow_get(self, key, default=None):
        try:
            return self._get(key)
        except KeyError:
            return default

    def view(self, key) -> np.ndarray:
        """A zero-copy, read-only view of the array stored at ``key`` (``m[key]`` returns a
        copy).  Its memory stays valid as long as the view (or any array derived from it)
        lives, also after the value is replaced or deleted: the view keeps showing the array
        it was taken of, and the memory is freed once the last view in every process is
        garbage (as for vector views, ``sharedstore.vectors``).  KeyError if ``key`` is
        missing, TypeError if its value is not an array."""
        kb, kt = encode_key(key)
        s = self._store
        head = bytearray(256)
        deadline = None
        while True:
            out = np.frombuffer(head, dtype=np.uint8)
            d, at, n, hl = KM.map_pin_array(s.mem, out, self._id, kb, kt, s._token)
            if d >= 0:
                break
            if d == S.ERR_NOT_FOUND:
                raise KeyError(key)
            if d == S.ERR_KIND:
                raise TypeError(f"the value of {key!r} is not an array: only arrays have views")
            if d == S.ERR_SCRATCH:
                head = bytearray(hl)
                continue
            deadline = s._recover(d, "view()", self._id, deadline=deadline)
        try:
            dtype, shape, _ = array_meta(bytes(head[:hl]))
            count = n // dtype.itemsize if dtype.itemsize else 0
            arr = pinned_array(s, d, dtype, count, at, readonly=True)
        except BaseException:
            release_pin(s._att, d)
            raise
        return arr.reshape(shape)

    get_many = _pycall.method(
        "map_get_many", "_slow_get_many", "(keys, default=None)",
        "The values of ``keys`` (``default`` for missing ones), in one call: for a list of str, "
        "bytes and int keys with native values, a loop in the entry point; else one kernel call.")

    def _slow_get_many(self, keys, default=None) -> list:
        """``get_many`` of any keys and values: the keys encoded, one kernel call for all."""
        keys = list(keys)
        if not keys:
            return []
        blob_a, offs, tags = _encode_keys(keys)
        s = self._store
        out = s._out(len(keys) * 24 + 64)
        while True:
            args = (s.mem, out, self._id, blob_a, offs, tags)
            n = KM.map_get_many(*args)
            if n < 0:
                n = s._slow(n, KM.map_get_many, args, "map get_many", self._id)
            if n <= len(out):
                break
            out = s._out(n)
        if n == 24 * len(keys):  # every value is payload-only (or missing): decode vectorised
            rec = out[:n].view(np.int64).reshape(-1, 3)
            vtags = rec[:, 0]
            if (vtags == _V_FLOAT).all():
                return rec[:, 1].view(np.float64).tolist()
            if (vtags == _V_INT).all():
                return rec[:, 1].tolist()
        buf = out[:n].tobytes()
        res = []
        pos = 0
        unpack = _REC3.unpack_from
        for _ in keys:
            tag, payload, vlen = unpack(buf, pos)
            pos += 24
            if tag == _V_FLOAT:
                res.append(_float_from_bits(payload))
            elif tag == _V_INT:
                res.append(payload)
            elif tag == S.ERR_NOT_FOUND:
                res.append(default)
            else:
                res.append(decode_value(s, tag, payload, buf[pos:pos + vlen]))
                pos += (vlen + 7) & ~7
        return res

    def __len__(self) -> int:
        r = KM.map_len(self._store.mem, self._id)
        if r < 0:
            self._fail(r, "len()")
        return r

    def _dump(self, with_values: bool) -> list:
        """A consistent snapshot of the entries: [(key, value or None)]."""
        s = self._store
        out = s._out(4096)
        while True:
            n = KM.map_dump(s.mem, out, self._id, int(with_values))
            if n < 0:
                n = s._slow(n, KM.map_dump, (s.mem, out, self._id, int(with_values)),
                            "map snapshot", self._id)
            if n <= len(out):
                break
            out = s._out(n)
        buf = out[:n].tobytes()
        res = []
        pos = 0
        while pos < n:
            kw, vtag, payload, vlen = _REC.unpack_from(buf, pos)
            klen = kw >> 8
            pos += 32
            key = decode_key(kw & 0xFF, buf[pos:pos + klen])
            pos += (klen + 7) & ~7
            value = None
            if with_values:
                value = decode_value(s, vtag, payload, buf[pos:pos + vlen])
                pos += (vlen + 7) & ~7
            res.append((key, value))
        return res

    def __iter__(self):
        # a snapshot: safe while other processes write, and never yields a key twice
        return iter([k for k, _ in self._dump(False)])

    def items(self):
        """A view of the items; iterating it reads one consistent snapshot."""
        return _ItemsView(self)

    def values(self):
        """A view of the values; iterating it reads one consistent snapshot."""
        return _ValuesView(self)

    # ---------------------------------------------------------------- writes
    def _slow_setitem(self, key, value) -> None:
        self._set(key, value)

    def _set(self, key, value) -> None:
        """``self[key] = value`` through the map_set kernel: every value, and the errors."""
        kb, kt = encode_key(key)
        s = self._store
        if type(value) is np.ndarray and not value.dtype.hasobject:
            # the elements go straight from the array into their data block
            head, data = array_head(value), _elements(value)
            args = (s.mem, s._token, self._id, kb, kt, head, data)
            r = KM.map_set_array(*args)
            if r < 0:
                s._slow(r, KM.map_set_array, args, "map set", self._id,
                        hint=len(kb) + len(head) + len(data) + 64)
            return
        vt, ip, fp, data = encode_value(value, s._handle_of)
        args = (s.mem, s._token, self._id, kb, kt, vt, ip, fp, data)
        r = KM.map_set(*args)
        if r < 0:
            s._slow(r, KM.map_set, args, "map set", self._id, hint=len(kb) + len(data))

    def set(self, key, value) -> None:
        """``m[key] = value`` (seed 1's name)."""
        self[key] = value

    add = set

    def set_many(self, keys, values) -> int:
        """Set ``keys[i]`` to ``values[i]`` for all ``i`` in one kernel call; return how many
        keys were new."""
        keys = list(keys)
        values = list(values)
        if len(keys) != len(values):
            raise ValueError(f"set_many got {len(keys)} keys but {len(values)} values")
        if not keys:
            return 0
        s = self._store
        recs = np.empty(len(keys) * KM.SET_REC, dtype=np.int64)
        parts = []
        pos = 0
        for i, (k, v) in enumerate(zip(keys, values)):
            kb, kt = encode_key(k)
            vt, ip, fp, data = encode_value(v, s._handle_of)
            if vt == _V_FLOAT:
                ip = float_bits(fp)
            recs[i * 7:i * 7 + 7] = (pos, len(kb), kt, vt, ip, pos + len(kb), len(data))
            parts.append(kb)
            parts.append(data)
            pos += len(kb) + len(data)
        blob = np.frombuffer(b"".join(parts) or b"\0", dtype=np.uint8)
        progress = np.zeros(2, dtype=np.int64)  # [items stored, new keys among them]
        deadline = None
        while True:
            r = KM.map_set_many(s.mem, s._token, self._id, blob, recs, progress)
            if r >= 0:
                return int(progress[1])
            deadline = s._recover(r, "map set_many", self._id, hint=pos, deadline=deadline)

    def update(self, other=(), /, **kwargs) -> None:
        """Like ``dict.update``, storing everything in one kernel call."""
        if isinstance(other, Mapping):
            items = list(other.items())
        elif hasattr(other, "keys"):
            items = [(k, other[k]) for k in other.keys()]
        else:
            items = list(other)
        items += kwargs.items()
        if items:
            self.set_many([k for k, _ in items], [v for _, v in items])

    def __delitem__(self, key) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def delete(self, key) -> bool:
        """Remove ``key``; True if it was there."""
        kb, kt = encode_key(key)
        s = self._store
        args = (s.mem, s._token, self._id, kb, kt)
        r = KM.map_delete(*args)
        if r < 0:
            r = s._slow(r, KM.map_delete, args, "map delete", self._id)
        return bool(r)

    def pop(self, key, *default):
        """Remove ``key`` and return its value (or ``default`` if given and the key is missing)."""
        if len(default) > 1:
            raise TypeError(f"pop expected at most 2 arguments, got {1 + len(default)}")
        try:
            value = self[key]
        except KeyError:
            if default:
                return default[0]
            raise
        self.delete(key)
        return value

    def popitem(self):
        """Remove and return some ``(key, value)`` pair; KeyError if the map is empty."""
        for key in self:
            try:
                return key, self.pop(key)
            except KeyError:
                continue  # removed by another process meanwhile
        raise KeyError("popitem(): map is empty")

    def clear(self) -> None:
        """Remove every key, in one kernel call."""
        s = self._store
        args = (s.mem, s._token, self._id)
        r = KM.map_clear(*args)
        if r < 0:
            s._slow(r, KM.map_clear, args, "map clear", self._id)

    def drop(self, recursive: bool = False) -> None:
        """Free the map and the values it stores.  The objects its refs point to stay, unless
        ``recursive``: then they are dropped too (maps recursively; each object once)."""
        if recursive:
            self._drop_tree(set())
        else:
            self._drop_one()

    def _drop_tree(self, seen: set) -> None:
        seen.add(self._id)
        for _, v in self._dump(True):
            if isinstance(v, Ref) and v._id not in seen:
                seen.add(v._id)
                if isinstance(v, MapRef):
                    v._drop_tree(seen)
                else:
                    v.drop()
        self._drop_one()

    def _drop_one(self) -> None:
        s = self._store
        args = (s.mem, s._token, self._id)
        r = KM.map_drop(*args)
        if r < 0:
            s._slow(r, KM.map_drop, args, "MapRef.drop()", self._id)

    __eq__ = MutableMapping.__eq__
    __hash__ = None

    def __repr__(self):
        return f"<MapRef id={self._id} of store {self._store.name!r}, {len(self)} keys>"

    def _repr_html_(self) -> str:
        from . import _html

        return _html.mapping(f"MapRef id={self._id}: {len(self)} keys", iter(self.items()), len(self))


class ListRef(Ref, MutableSequence):
    """A shared list of any values (``store.vector()`` with no dtype; seed 1's VectorRef).

    It is a map keyed by index: values are stored as a map stores them (refs as handles,
    anything else natively or pickled), and reads never lock.  ``append`` is atomic (its index
    is the length, taken under the list's lock), so several processes can append at once;
    ``insert`` and ``del`` in the middle shift the items after it in several steps."""

    __slots__ = ()
    _kind = L.KIND_LIST

    def _map(self) -> MapRef:
        return MapRef._trusted(self._store, self._id)  # (the same object: a list is a map)

    def __len__(self) -> int:
        return len(self._map())

    def _index(self, i, n: int) -> int:
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"list indices must be integers, not {type(i).__name__}")
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexError(f"list index {i} out of range (length {n})")
        return j

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        try:
            return self._map()[self._index(i, len(self))]
        except KeyError:
            raise IndexError(f"list index {i} out of range (changed meanwhile)") from None

    def __setitem__(self, i, value) -> None:
        if isinstance(i, slice):
            raise TypeError("slice assignment is not supported on a ListRef")
        self._map()[self._index(i, len(self))] = value

    def append(self, value) -> None:
        """Append ``value`` (atomic: concurrent appends from several processes all land)."""
        s = self._store
        vt, ip, fp, data = encode_value(value, s._handle_of)
        args = (s.mem, s._token, self._id, vt, ip, fp, data)
        r = KM.list_append(*args)
        if r < 0:
            s._slow(r, KM.list_append, args, "ListRef.append()", self._id, hint=len(data))

    def extend(self, values) -> None:
        for v in values:
            self.append(v)

    def _truncate(self, n: int) -> None:
        s = self._store
        args = (s.mem, s._token, self._id, n)
        r = KM.list_truncate(*args)
        if r < 0:
            s._slow(r, KM.list_truncate, args, "ListRef.truncate", self._id)

    def __delitem__(self, i) -> None:
        n = len(self)
        if isinstance(i, slice):
            keep = [v for j, v in enumerate(self) if j not in set(range(*i.indices(n)))]
            self._truncate(0)
            self.extend(keep)
            return
        j = self._index(i, n)
        tail = self[j + 1:]
        self._truncate(j)
        self.extend(tail)

    def insert(self, i, value) -> None:
        n = len(self)
        j = max(0, min(n, i + n if i < 0 else i))
        tail = self[j:]
        self._truncate(j)
        self.append(value)
        self.extend(tail)

    def pop(self, i: int = -1):
        n = len(self)
        j = self._index(i, n)
        value = self[j]
        if j == n - 1:
            self._truncate(j)
        else:
            del self[j]
        return value

    def clear(self) -> None:
        self._truncate(0)

    def __iter__(self):
        # one consistent snapshot, in index order
        return iter([v for _, v in sorted(self._map()._dump(True), key=lambda kv: kv[0])])

    def __eq__(self, other):
        if isinstance(other, (list, tuple, ListRef)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None

    def drop(self, recursive: bool = False) -> None:
        """Free the list (and, if ``recursive``, the objects its refs point to)."""
        self._map().drop(recursive=recursive)

    def __repr__(self):
        return f"<ListRef id={self._id} of store {self._store.name!r}, {len(self)} items>"


class StructRef(Ref):
    """One struct record in the store: ``p["mass"]``, ``p["mass"] = 2.0``, ``p.get_key``.

    Numeric fields are read and written in place (a field read returns a copy of its value);
    ``"string"`` fields read and write str and own their string (replacing or dropping the record
    drops it); ``"ref"`` fields hold a ref or None.  The record's schema is stored with it, so
    ``store.ref(id)`` in any process gives a StructRef of the right struct."""

    __slots__ = ("_struct", "_rec", "_meta_w", "_meta")
    _kind = L.KIND_STRUCT

    def _init(self, store, id: int) -> None:
        super()._init(store, id)
        self._struct = None  # (_rec, _meta_w and _meta are set with it, by _bind)

    @classmethod
    def _create(cls, store, struct, values: dict):
        unknown = set(values) - set(struct.dtype.names)
        if unknown:
            raise TypeError(f"struct {struct.name!r} has no field {sorted(unknown)[0]!r}; "
                            f"its fields are {', '.join(struct.dtype.names)}")
        schema = store._schema_handle(struct)
        args = (store.mem, store._token, schema, struct.dtype.itemsize)
        h = KO.struct_new(*args)
        if h < 0:
            h = store._slow(h, KO.struct_new, args, f"{struct.name}.new()",
                            hint=struct.dtype.itemsize)
        ref = cls._trusted(store, h)
        try:
            for k, v in values.items():
                ref[k] = v
        except BaseException:
            ref.drop()
            raise
        return ref

    def _bind(self):
        s = self._store
        st, off, schema = KO.struct_locate(s.mem, self._id)
        if st < 0:
            self._fail(st, "access")
        struct = s._struct_of(schema)
        self._rec = np.frombuffer(s._mm, dtype=struct.dtype, count=1, offset=off)[0]
        self._meta_w = KH.handle_lock_word(s.mem, self._id) - (L.H_LOCK - L.H_META)
        self._meta = s._words[self._meta_w]
        self._struct = struct

    def _record(self):
        """The record as a numpy void view into the store, after checking it was not dropped."""
        if self._struct is None:
            self._bind()
        s = self._store
        if s._closed or s._words[self._meta_w] != self._meta:
            self._struct = None
            self._bind()  # raises UseAfterFreeError (or StoreClosedError)
        return self._rec

    @property
    def struct(self):
        """The record's :class:`Struct`."""
        self._record()
        return self._struct

    def __getitem__(self, field: str):
        rec = self._record()
        struct = self._struct
        if field not in struct.dtype.fields:
            raise KeyError(field)
        if field in struct.strings:
            h = int(rec[field])
            return StringRef._trusted(self._store, h).get() if h else ""
        if field in struct.refs:
            h = int(rec[field])
            return self._store.ref(h) if h else None
        v = rec[field]
        return v.item() if isinstance(v, np.generic) and v.dtype.names is None else v.copy()

    def __setitem__(self, field: str, value) -> None:
        rec = self._record()
        struct = self._struct
        if field not in struct.dtype.fields:
            raise KeyError(field)
        if field in struct.strings:
            self._swap_string(struct.dtype.fields[field][1], value)
        elif field in struct.refs:
            h = None if value is None else self._store._handle_of(value)
            if value is not None and h is None:
                raise TypeError(f"field {field!r} holds a ref or None, not {type(value).__name__}")
            rec[field] = 0 if value is None else h
        else:
            rec[field] = value

    def _swap_string(self, at: int, value) -> None:
        """Put a new string (or none) in the handle word at byte ``at``; drop the old one."""
        s = self._store
        new = 0
        if value is not None and value != "":
            new = s.string(value).id
        elif value is not None and not isinstance(value, str):
            raise TypeError(f"a string field takes a str, not {type(value).__name__}")
        st, old = KO.struct_swap(s.mem, self._id, at, new)
        if st < 0:
            if new:
                StringRef._trusted(s, new).drop()
            self._fail(st, "set")
        if old:  # each setter drops exactly what it swapped out: no leak, no double drop
            StringRef._trusted(s, old).drop()

    get_key = __getitem__
    set_key = __setitem__

    def to_dict(self) -> dict:
        """Every field's value."""
        return {name: self[name] for name in self.struct.dtype.names}

    def drop(self) -> None:
        """Free the record and the strings it owns (nested structs' included)."""
        struct = self.struct
        for at in struct.string_offsets:
            self._swap_string(at, None)
        super().drop()
        self._struct = None

    def __repr__(self):
        try:
            name = self.struct.name
        except SharedStoreError:
            name = "dropped"
        return f"<StructRef {name} id={self._id} of store {self._store.name!r}>"


class StructProxy:
    """A struct record with attribute access: ``q.mass += 1``.  ``q._ref`` is its StructRef
    (field names cannot start with ``_``, so they never clash)."""

    __slots__ = ("_ref",)

    def __init__(self, ref, id: int | None = None):
        """``StructProxy(struct_ref)``, or ``StructProxy(store, id)`` for the record ``id``."""
        if id is not None:
            ref = StructRef(ref, id)
        elif not isinstance(ref, StructRef):
            raise TypeError(f"StructProxy wraps a StructRef (or takes a store and an id), not "
                            f"{type(ref).__name__}")
        object.__setattr__(self, "_ref", ref)

    def __getattr__(self, name):
        try:
            return self._ref[name]
        except KeyError:
            raise AttributeError(f"{self._ref.struct.name} has no field {name!r}") from None

    def __setattr__(self, name, value):
        try:
            self._ref[name] = value
        except KeyError:
            raise AttributeError(f"{self._ref.struct.name} has no field {name!r}") from None

    def __dir__(self):
        return list(self._ref.struct.dtype.names)

    def _drop(self):
        self._ref.drop()

    @property
    def _id(self):
        return self._ref.id

    def __reduce__(self):
        return StructProxy, (self._ref,)

    def __repr__(self):
        return f"<StructProxy of {self._ref!r}>"


_CLASSES = {
    L.KIND_STRING: StringRef,
    L.KIND_FLOAT: NumberRef,
    L.KIND_INT: IntRef,
    L.KIND_MAP: MapRef,
    L.KIND_STRUCT: StructRef,
    L.KIND_LIST: ListRef,
}


def ref_class(kind: int) -> type[Ref]:
    try:
        return _CLASSES[kind]
    except KeyError:
        raise InvalidHandleError(f"objects of kind {kind} have no ref class yet") from None
