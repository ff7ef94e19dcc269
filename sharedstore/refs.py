"""Refs: handles on objects in a store's shared heap.

A ref is ``(store, id)``; the id is a 64-bit handle (slot + generation) that any process
attached to the store can use: ``store.ref(id)`` or ``StringRef(store, id)`` reconnects to the
same object.  Refs pickle as ``(store name, id)``.  After ``drop()`` every use of the object, by
any ref in any process, raises :class:`UseAfterFreeError`, also after its slot has been reused.
"""

from __future__ import annotations

import struct
from collections.abc import MutableMapping

from . import _layout as L
from ._kernels import hashmap as KM
from ._kernels import heap as KH
from ._kernels import objects as KO
from ._kernels import status as S
from ._values import _float_from_bits, decode_key, decode_value, encode_key, encode_value, float_bits
from ._values import as_int64 as _int64
from .errors import InvalidHandleError, raise_status

_REC = struct.Struct("<qqq")
_V_STR = L.V_STR
_V_FLOAT = L.V_FLOAT


class Ref:
    """Base of every ref: an object in a store, named by ``id``."""

    __slots__ = ("_store", "_id")
    _kind = -1

    def __init__(self, store, id: int):
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
        self._store = store
        self._id = id

    @classmethod
    def _trusted(cls, store, id: int):
        """A ref for a handle the caller knows is live and of this class's kind."""
        self = cls.__new__(cls)
        self._store = store
        self._id = id
        return self

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
        return out[:n].tobytes().decode("utf-8", "surrogatepass")

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

    def get(self) -> float:
        return _float_from_bits(self._bits())

    def set(self, value: float) -> None:
        self._set_bits(float_bits(float(value)))

    def add(self, x: float) -> float:
        """Atomically add ``x``; return the new value."""
        st, new = KO.float_add(self._store.mem, self._id, float(x))
        if st < 0:
            self._fail(st, "add()")
        return new

    value = property(get, set, doc="The number's current value.")

    def __float__(self):
        return self.get()


class IntRef(_ScalarRef):
    """A shared int64; ``add`` (fetch-add) and ``compare_exchange`` are atomic."""

    __slots__ = ()
    _kind = L.KIND_INT

    def get(self) -> int:
        return self._bits()

    def set(self, value: int) -> None:
        self._set_bits(_int64(value))

    def add(self, x: int = 1) -> int:
        """Atomically add ``x`` (wrapping at int64); return the new value."""
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

    value = property(get, set, doc="The integer's current value.")

    def __int__(self):
        return self.get()

    __index__ = __int__


class MapRef(Ref, MutableMapping):
    """A shared hash map: str, bytes or int keys; any values.  Readers never lock."""

    __slots__ = ()
    _kind = L.KIND_MAP

    def __getitem__(self, key):
        if type(key) is str:
            kb, kt = key.encode("utf-8", "surrogatepass"), _V_STR
        else:
            kb, kt = encode_key(key)
        s = self._store
        tls = s._tls
        try:
            out = tls.out
        except AttributeError:
            out = s._out()
        r = KM.map_get(s.mem, out, self._id, kb, kt)
        if r < 0:
            if r == S.ERR_NOT_FOUND:
                raise KeyError(key)
            r = s._slow(r, KM.map_get, (s.mem, out, self._id, kb, kt), "map get",
                        self._id, passthrough=(S.ERR_NOT_FOUND,))
            if r == S.ERR_NOT_FOUND:
                raise KeyError(key)
        words = tls.words
        if r <= _V_FLOAT:  # payload-only values: no bytes to copy out
            return decode_value(s, r, int(words[0]), None)
        n = int(words[1])
        if 16 + n > len(out):  # value larger than the scratch buffer: read it again, bigger
            s._out(16 + n)
            return self[key]
        return decode_value(s, r, int(words[0]), out[16:16 + n])

    def __setitem__(self, key, value) -> None:
        kb, kt = encode_key(key)
        vt, ip, fp, data = encode_value(value, Ref)
        s = self._store
        args = (s.mem, s._token, self._id, kb, kt, vt, ip, fp, data)
        r = KM.map_set(*args)
        if r < 0:
            s._slow(r, KM.map_set, args, "map set", self._id, hint=len(kb) + len(data))

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

    def __contains__(self, key) -> bool:
        try:
            kb, kt = encode_key(key)
        except TypeError:
            return False
        s = self._store
        out = s._out()
        r = KM.map_get(s.mem, out, self._id, kb, kt)
        if r < 0 and r != S.ERR_NOT_FOUND:
            r = s._slow(r, KM.map_get, (s.mem, out, self._id, kb, kt), "map contains",
                        self._id, passthrough=(S.ERR_NOT_FOUND,))
        return r != S.ERR_NOT_FOUND

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def set(self, key, value) -> None:
        """``m[key] = value`` (seed 1's name)."""
        self[key] = value

    add = set

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
            kw, vw, payload = _REC.unpack_from(buf, pos)
            klen, vlen = kw >> 8, vw >> 8
            pos += 24
            key = decode_key(kw & 0xFF, buf[pos:pos + klen])
            pos += (klen + 7) & ~7
            value = None
            if with_values:
                value = decode_value(s, vw & 0xFF, payload, buf[pos:pos + vlen])
                pos += (vlen + 7) & ~7
            res.append((key, value))
        return res

    def __iter__(self):
        # a snapshot: safe while other processes write, and never yields a key twice
        return iter([k for k, _ in self._dump(False)])

    def items(self):
        return self._dump(True)

    def values(self):
        return [v for _, v in self._dump(True)]

    def drop(self) -> None:
        """Free the map and the values it stores (not the objects its refs point to)."""
        s = self._store
        args = (s.mem, s._token, self._id)
        r = KM.map_drop(*args)
        if r < 0:
            s._slow(r, KM.map_drop, args, "MapRef.drop()", self._id)

    __eq__ = MutableMapping.__eq__
    __hash__ = None

    def __repr__(self):
        return f"<MapRef id={self._id} of store {self._store.name!r}, {len(self)} keys>"


_CLASSES = {
    L.KIND_STRING: StringRef,
    L.KIND_FLOAT: NumberRef,
    L.KIND_INT: IntRef,
    L.KIND_MAP: MapRef,
}


def ref_class(kind: int) -> type[Ref]:
    try:
        return _CLASSES[kind]
    except KeyError:
        raise InvalidHandleError(f"objects of kind {kind} have no ref class yet") from None
