"""Maps and lists in shared memory: :class:`MapRef` (str, bytes or int keys, any values) and
:class:`ListRef` (a list of any values, kept as a map keyed by index).

Readers never lock: they validate what they read against the map's version word, which every
write bumps.  The hot paths (``m[k]``, ``m[k] = v``, ``k in m``, ``m.get``, ``m.get_many`` of a
list) run as C functions under the fast path's c backend (``_fastpath``), which hands what
it does not do to the methods here: they are the real methods, with the same results and
errors.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import (
    ItemsView,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    MutableSequence,
    MutableSet,
    ValuesView,
)
from typing import Any, SupportsIndex, overload

import numpy as np

from . import _layout as L
from ._kernels import hashmap as KM
from ._kernels import lists as KLI
from ._kernels import status as S
from ._pins import pinned_array, release_pin
from ._values import (
    Key,
    _float_from_bits,
    array_head,
    array_meta,
    as_int64,
    corrupt_text,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    float_bits,
)
from .errors import StoreVersionError
from .refs import _CLASSES, Ref

_REC = struct.Struct("<qqqq")
_REC3 = struct.Struct("<qqq")
_V_INT = L.V_INT
_V_STR = L.V_STR
_V_FLOAT = L.V_FLOAT
_PAYLOAD_ONLY = L.V_PAYLOAD_ONLY  # bit t: values of tag t have no bytes (_layout.VALUE_KINDS)
_GET_ANSWERS = (S.ERR_NOT_FOUND, S.ERR_SCRATCH)  # (a missing key; a value to read again)


def _elements(a: np.ndarray) -> np.ndarray:
    """An array's elements as read-only C-order bytes (a copy only if ``a`` is not contiguous)."""
    flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    flat.flags.writeable = False
    return flat


def _encode_keys(keys: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys as (one uint8 array of their bytes, offsets into it, key tags) for batch kernels."""
    tags: np.ndarray
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


def _decoded(s: Any, r: int, view: memoryview, ints: memoryview) -> Any:
    """The value of a record ``[tag r, payload, length]`` + bytes in the scratch buffer."""
    if r == _V_STR:
        try:
            return str(view[24:24 + ints[2]], "utf-8", "surrogatepass")
        except UnicodeDecodeError as e:
            raise corrupt_text(e) from e
    if _PAYLOAD_ONLY >> r & 1:  # no bytes to copy out
        return decode_value(s, r, ints[1], None)
    return decode_value(s, r, ints[1], view[24:24 + ints[2]])


def _delta(x: object) -> tuple[int, int, float]:
    """``(is_float, int delta, float delta)`` of an increment; TypeError for anything but an
    int (of int64's range) or a float (NumPy's included; bool counts as int)."""
    if isinstance(x, (int, np.integer)):
        return 0, as_int64(x), 0.0
    if isinstance(x, (float, np.floating)):
        return 1, 0, float(x)
    raise TypeError(f"incr takes an int or a float delta, not {type(x).__name__} ({x!r})")


class _ItemsView(ItemsView[Key, Any]):
    _mapping: MapRef

    def __iter__(self) -> Iterator[tuple[Key, Any]]:
        return iter(self._mapping._dump(True))


class _ValuesView(ValuesView[Any]):
    _mapping: MapRef

    def __iter__(self) -> Iterator[Any]:
        return (v for _, v in self._mapping._dump(True))


class MapRef(Ref, MutableMapping[Key, Any]):
    """A shared hash map: str, bytes or int keys; any values.  Readers never lock.

    Values: None, bool, int64, float, complex, str and bytes are stored as themselves, numpy
    arrays as typed blocks (read back as new arrays), refs as their handles (read back as refs),
    anything else pickled (``sharedstore._layout.VALUE_KINDS`` has the table).  Replacing or
    deleting a value frees what the map stored for it; the objects refs point to stay
    (``drop(recursive=True)`` drops them too)."""

    __slots__ = ()
    _kind = L.KIND_MAP
    _map_kind = L.KIND_MAP

    # ---------------------------------------------------------------- reads
    # (the c backend runs __getitem__, __contains__, get, get_many and __setitem__ as C
    # functions for the common cases: sharedstore._fastpath)
    def __getitem__(self, key: Key) -> Any:
        """``m[key]``: the value stored at ``key``.

        Raises
        ------
        KeyError
            If ``key`` is not in the map.
        TypeError
            If ``key`` is not a str, bytes or int.
        """
        return MapRef._get(self, key)  # (by name: on a ref of another kind, KindError)

    def _get(self, key: object) -> Any:
        """``self[key]`` through the map_get kernel: every key and value type, and the errors."""
        kb, kt = encode_key(key)
        s = self._store
        mem = s.mem  # (a closed store raises here)
        try:
            out, view, ints, _ = s._tls.bufs
        except AttributeError:
            s._out()
            out, view, ints, _ = s._tls.bufs
        r = s._call(KM.map_get, mem, s._token, out, self._id, self._map_kind, kb, kt,
                    what="map get", h=self._id, accept=_GET_ANSWERS)
        if r < 0:
            if r == S.ERR_SCRATCH:  # (the value is longer than the scratch buffer)
                s._out(ints[2])
                return self._get(key)
            raise KeyError(key)
        return _decoded(s, r, view, ints)

    def __contains__(self, key: object) -> bool:
        """``key in m`` (False for a key of a type no map holds)."""
        try:
            MapRef._get(self, key)
        except (KeyError, TypeError):
            return False
        except StoreVersionError:
            pass  # (there, with a value of a kind a newer sharedstore wrote)
        return True

    def get(self, key: Key, default: Any = None) -> Any:
        """``m[key]``, or ``default`` if ``key`` is not in the map.

        Raises
        ------
        TypeError
            If ``key`` is not a str, bytes or int.
        """
        try:
            return MapRef._get(self, key)
        except KeyError:
            return default

    def view(self, key: Key) -> np.ndarray:
        """A zero-copy, read-only view of the array stored at ``key`` (``m[key]`` returns a
        copy).

        Its memory stays valid as long as the view (or any array derived from it) lives, also
        after the value is replaced or deleted: the view keeps showing the array it was taken
        of, and the memory is freed once the last view in every process is garbage (as for
        vector views, ``sharedstore.vectors``).

        Raises
        ------
        KeyError
            If ``key`` is not in the map.
        TypeError
            If its value is not an array (only arrays have views).
        """
        kb, kt = encode_key(key)
        s = self._store
        head = bytearray(256)
        deadline = None
        while True:
            out = np.frombuffer(head, dtype=np.uint8)
            d, at, n, hl = KM.map_pin_array(s.mem, out, self._id, self._map_kind, kb, kt,
                                            s._token)
            if d >= 0:
                break
            if d == S.ERR_NOT_FOUND:
                raise KeyError(key)
            if d == S.ERR_KIND:
                raise TypeError(f"the value of {key!r} is not an array: only arrays have views")
            if d == S.ERR_SCRATCH:
                head = bytearray(hl)
                continue
            deadline = s._recover(d, "view()", self._id, deadline=deadline)  # (then again)
        try:
            dtype, shape, _ = array_meta(bytes(head[:hl]))
            count = n // dtype.itemsize if dtype.itemsize else 0
            arr = pinned_array(s, d, dtype, count, at, readonly=True)
        except BaseException:
            release_pin(s._att, d)
            raise
        return arr.reshape(shape)

    def get_many(self, keys: Iterable[Key], default: Any = None) -> list[Any]:
        """The values of ``keys`` (``default`` for missing ones), in one kernel call (the c
        backend loops over a list of str, bytes and int keys with native values in C).

        Parameters
        ----------
        keys
            Any iterable of keys.
        default
            The value for a key that is not in the map.

        Returns
        -------
        list
            One value per key, in order, read from one consistent state of the map.

        Raises
        ------
        TypeError
            If a key is not a str, bytes or int.
        """
        keys = list(keys)
        if not keys:
            return []
        blob_a, offs, tags = _encode_keys(keys)
        s = self._store
        out = s._out(len(keys) * 24 + 64)
        while True:
            n = s._call(KM.map_get_many, s.mem, s._token, out, self._id, self._map_kind, blob_a,
                        offs, tags, what="map get_many", h=self._id)
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
        """How many keys the map holds."""
        s = self._store
        return s._call(KM.map_len, s.mem, s._token, self._id, self._map_kind,
                       what=f"{type(self).__name__} len()", h=self._id)

    def _dump(self, with_values: bool) -> list[tuple[Key, Any]]:
        """A consistent snapshot of the entries: [(key, value or None)]."""
        s = self._store
        out = s._out(4096)
        while True:
            n = s._call(KM.map_dump, s.mem, s._token, out, self._id, self._map_kind,
                        int(with_values), what="map snapshot", h=self._id)
            if n <= len(out):
                break
            out = s._out(n + n // 4)  # (room for what writers add before the next try)
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

    def __iter__(self) -> Iterator[Key]:
        """The keys, from one consistent snapshot (safe while other processes write, and never
        a key twice)."""
        return iter([k for k, _ in self._dump(False)])

    def items(self) -> ItemsView[Key, Any]:
        """A view of the items; iterating it reads one consistent snapshot."""
        return _ItemsView(self)

    def values(self) -> ValuesView[Any]:
        """A view of the values; iterating it reads one consistent snapshot."""
        return _ValuesView(self)

    # ---------------------------------------------------------------- writes
    def __setitem__(self, key: Key, value: Any) -> None:
        """``m[key] = value``: any value (see the class doc); replacing a value frees what the
        map stored for it.

        Raises
        ------
        TypeError
            If ``key`` is not a str, bytes or int (of int64's range), or ``value`` is none of
            the native values and cannot be pickled.
        InvalidHandleError
            If ``value`` is a ref of another store (its id means nothing here).
        StoreFullError
            If the store has no room for it.
        """
        MapRef._set(self, key, value)  # (by name: on a ref of another kind, KindError)

    def _set(self, key: Key, value: Any) -> None:
        """``self[key] = value`` through the map_set kernel: every value, and the errors."""
        kb, kt = encode_key(key)
        s = self._store
        if type(value) is np.ndarray and not value.dtype.hasobject:
            # the elements go straight from the array into their data block
            head, elements = array_head(value), _elements(value)
            s._call(KM.map_set_array, s.mem, s._token, self._id, self._map_kind, kb, kt, head,
                    elements, what="map set", h=self._id,
                    hint=len(kb) + len(head) + len(elements) + 64)
            return
        vt, ip, fp, data = encode_value(value, s._handle_of)
        s._call(KM.map_set, s.mem, s._token, self._id, self._map_kind, kb, kt, vt, ip, fp, data,
                what="map set", h=self._id, hint=len(kb) + len(data))

    def set(self, key: Key, value: Any) -> None:
        """``m[key] = value`` (also ``add``)."""
        self[key] = value

    add = set

    def set_many(self, keys: Iterable[Key], values: Iterable[Any]) -> int:
        """Set ``keys[i]`` to ``values[i]`` for all ``i`` in one kernel call.

        Returns
        -------
        int
            How many of the keys were new.

        Raises
        ------
        ValueError
            If there are not as many values as keys.
        TypeError, InvalidHandleError
            As for ``m[key] = value``, before anything is stored.
        StoreFullError
            If the store has no room for them all (the keys stored before stay).
        """
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
            r = KM.map_set_many(s.mem, s._token, self._id, self._map_kind, blob, recs, progress)
            if r >= 0:
                return int(progress[1])
            deadline = s._recover(r, "map set_many", self._id, hint=pos, deadline=deadline)

    def setdefault(self, key: Key, default: Any = None) -> Any:
        """``m[key]`` if ``key`` is in the map, else set it to ``default`` and return that: one
        atomic step, so of several processes that call it at once exactly one inserts, and
        every one gets the value that is there.

        Raises
        ------
        TypeError, InvalidHandleError, StoreFullError
            As for ``m[key] = value``.
        """
        kb, kt = encode_key(key)
        s = self._store
        vt, ip, fp, data = encode_value(default, s._handle_of)
        out = s._out()
        while True:
            r = s._call(KM.map_setdefault, s.mem, s._token, out, self._id, self._map_kind, kb,
                        kt, vt, ip, fp, data, what="map setdefault", h=self._id,
                        hint=len(kb) + len(data), accept=(S.ERR_SCRATCH,))
            if r != S.ERR_SCRATCH:
                break
            out = s._out(int(s._tls.words[2]))  # (the value there is longer: read it again)
        if r == 0:
            return default
        _, view, ints, _ = s._tls.bufs
        return _decoded(s, r, view, ints)

    def incr(self, key: Key, delta: int | float = 1) -> int | float:
        """Add ``delta`` to the number at ``key`` and return the new value, atomically: of many
        processes incrementing one key at once, every increment counts.

        A missing key starts at 0: an int ``delta`` makes an int64 value (which wraps, as
        :meth:`IntRef.add`), a float ``delta`` a float64 one.  A float value takes an int
        delta too.

        Raises
        ------
        TypeError
            If ``delta`` is not an int or a float, or the value at ``key`` is not a number
            ``delta`` can be added to (an int value and a float delta, a str...); nothing is
            changed.
        """
        kb, kt = encode_key(key)
        is_float, idelta, fdelta = _delta(delta)
        s = self._store
        st, bits = s._call_pair(KM.map_incr, s.mem, s._token, self._id, self._map_kind, kb, kt,
                                is_float, idelta, fdelta, what="map incr", h=self._id,
                                hint=len(kb) + 64, accept=(S.ERR_VALUE_TYPE,))
        if st == S.ERR_VALUE_TYPE:
            raise self._not_a_counter(key, delta)
        return _float_from_bits(bits) if st == 1 else bits

    def _not_a_counter(self, key: Key, delta: object) -> TypeError:
        value = self.get(key)
        return TypeError(
            f"incr({key!r}, {delta!r}): the value there is {type(value).__name__} ({value!r:.60}), "
            f"not a number a {type(delta).__name__} can be added to; nothing was changed")

    def incr_many(self, keys: Iterable[Key] | Mapping[Key, int | float],
                  deltas: Iterable[int | float] | None = None) -> None:
        """:meth:`incr` of many keys in one kernel call: ``incr_many(keys, deltas)``, or
        ``incr_many(mapping)`` of keys to deltas (a ``collections.Counter`` works).  Each key's
        increment is atomic; if a value cannot take its delta, TypeError is raised and nothing
        is changed.

        Raises
        ------
        ValueError
            If there are not as many deltas as keys.
        TypeError
            As for :meth:`incr`.
        """
        if deltas is None:
            if not isinstance(keys, Mapping):
                raise TypeError("incr_many(keys) takes a mapping of keys to deltas; give the "
                                "deltas as a second argument otherwise")
            items = list(keys.items())
            klist = [k for k, _ in items]
            dlist = [d for _, d in items]
        else:
            klist, dlist = list(keys), list(deltas)
            if len(klist) != len(dlist):
                raise ValueError(f"incr_many got {len(klist)} keys but {len(dlist)} deltas")
        if not klist:
            return
        blob, offs, tags = _encode_keys(klist)
        recs = np.empty((len(klist), KM.INCR_REC), dtype=np.int64)
        recs[:, 0] = offs[:-1]
        recs[:, 1] = np.diff(offs)
        recs[:, 2] = tags
        d = np.asarray(dlist)
        if d.dtype.kind in "iu" and d.dtype.itemsize <= 8 and d.dtype != np.uint64:
            recs[:, 3] = 0
            recs[:, 4] = d
        elif d.dtype.kind == "f":
            recs[:, 3] = 1
            recs[:, 4] = d.astype(np.float64).view(np.int64)
        else:  # mixed, or not numbers: one by one
            for i, x in enumerate(dlist):
                f, iv, fv = _delta(x)
                recs[i, 3] = f
                recs[i, 4] = float_bits(fv) if f else iv
        flat = recs.reshape(-1)
        progress = np.zeros(2, dtype=np.int64)
        s = self._store
        deadline = None
        while True:
            r = KM.map_incr_many(s.mem, s._token, self._id, self._map_kind, blob, flat, progress)
            if r >= 0:
                return
            if r == S.ERR_VALUE_TYPE:
                i = int(progress[1])
                raise self._not_a_counter(klist[i], dlist[i])
            deadline = s._recover(r, "map incr_many", self._id, hint=len(blob) + 64 * len(klist),
                                  deadline=deadline)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Like ``dict.update`` (a mapping, an object with ``keys()``, or ``(key, value)``
        pairs, then keyword arguments), storing everything in one kernel call."""
        if isinstance(other, Mapping):
            items = list(other.items())
        elif hasattr(other, "keys"):
            # (dict.update's protocol: an object with keys() need not iterate over them)
            items = [(k, other[k]) for k in other.keys()]  # noqa: SIM118
        else:
            items = list(other)
        items += kwargs.items()
        if items:
            self.set_many([k for k, _ in items], [v for _, v in items])

    def __delitem__(self, key: Key) -> None:
        """``del m[key]``; KeyError if ``key`` is not in the map."""
        if not self.delete(key):
            raise KeyError(key)

    def delete(self, key: Key) -> bool:
        """Remove ``key``, freeing what the map stored for its value (``del m[key]`` that
        says whether it was there).

        Returns
        -------
        bool
            True if ``key`` was in the map.
        """
        kb, kt = encode_key(key)
        s = self._store
        return bool(s._call(KM.map_delete, s.mem, s._token, self._id, self._map_kind, kb, kt,
                            what="map delete", h=self._id))

    def pop(self, key: Key, *default: Any) -> Any:
        """Remove ``key`` and return its value (or ``default`` if given and the key is missing).

        Raises
        ------
        KeyError
            If ``key`` is not in the map and no default is given.
        """
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

    def popitem(self) -> tuple[Key, Any]:
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
        s._call(KM.map_clear, s.mem, s._token, self._id, self._map_kind, what="map clear",
                h=self._id)

    def drop(self, recursive: bool = False) -> None:
        """Free the map and the values it stores.

        Parameters
        ----------
        recursive
            Also drop the objects its refs point to (maps recursively; each object once).
            By default they stay.

        Raises
        ------
        UseAfterFreeError
            If the map was dropped already.
        """
        if recursive:
            self._drop_tree(set())
        else:
            self._drop_one()

    # (not `set`: in this class the name is the method)
    def _drop_tree(self, seen: MutableSet[int]) -> None:
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
        s._call(KM.map_drop, s.mem, s._token, self._id, self._map_kind,
                what=f"{type(self).__name__}.drop()", h=self._id)

    __eq__ = MutableMapping.__eq__
    # a mutable mapping is unhashable, as a dict (type checkers hold every object hashable)
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<MapRef id={self._id} of store {self._store.name!r}, {len(self)} keys>"

    def _repr_html_(self) -> str:
        from . import _html

        n = len(self)
        return _html.mapping(f"MapRef id={self._id}: {n} keys", iter(self.items()), n)


class ListRef(Ref, MutableSequence[Any]):
    """A shared list of any values (``store.vector()`` with no dtype).

    It is a map keyed by index: values are stored as a map stores them (refs as handles,
    anything else natively or pickled), and reads never lock.  ``append`` is atomic (its index
    is the length, taken under the list's lock), so several processes can append at once;
    ``insert`` and ``del`` in the middle shift the items after it in several steps."""

    __slots__ = ()
    _kind = L.KIND_LIST

    def _map(self) -> MapRef:
        return _ListMap._trusted(self._store, self._id)  # (the same object: a list is a map)

    def __len__(self) -> int:
        """How many items the list holds."""
        return len(self._map())

    def _index(self, i: object, n: int) -> int:
        """``i`` (an int, or any integer with ``__index__``: ``np.int64``...) as an index in
        ``range(n)``, as a list takes it."""
        try:
            j = operator.index(i)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"list indices must be integers or slices, not "
                            f"{type(i).__name__}") from None
        if j < 0:
            j += n
        if not 0 <= j < n:
            raise IndexError(f"list index {i} out of range (length {n})")
        return j

    @overload
    def __getitem__(self, i: int) -> Any: ...

    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...

    def __getitem__(self, i: int | slice) -> Any:
        """``lst[i]``, or a list of the items of a slice.

        Raises
        ------
        IndexError
            If ``i`` is out of range.
        TypeError
            If ``i`` is neither an integer (an int, ``np.int64``...) nor a slice.
        """
        if isinstance(i, slice):
            return list(self)[i]  # (one consistent snapshot)
        try:
            return self._map()[self._index(i, len(self))]
        except KeyError:
            raise IndexError(f"list index {i} out of range (changed meanwhile)") from None

    @overload
    def __setitem__(self, i: int, value: Any) -> None: ...

    @overload
    def __setitem__(self, i: slice, value: Iterable[Any]) -> None: ...

    def __setitem__(self, i: int | slice, value: Any) -> None:
        """``lst[i] = value`` (any value, stored as a map stores it), or ``lst[a:b] = values``
        as a list takes it (the items from ``a`` on are written again, in several steps, not
        atomically, as ``insert`` does).

        Raises
        ------
        IndexError
            If ``i`` is out of range.
        TypeError
            If ``i`` is neither an integer nor a slice, or a slice gets no iterable.
        ValueError
            If an extended slice gets another number of values than it has items.
        """
        if isinstance(i, slice):
            old = list(self)
            new = list(old)
            new[i] = list(value)  # (a list's errors: no iterable, a wrong count)
            start = next((j for j, (a, b) in enumerate(zip(old, new)) if a is not b),
                         min(len(old), len(new)))
            self._truncate(start)
            self.extend(new[start:])
            return
        self._map()[self._index(i, len(self))] = value

    def append(self, value: Any) -> None:
        """Append ``value`` (atomic: concurrent appends from several processes all land)."""
        s = self._store
        vt, ip, fp, data = encode_value(value, s._handle_of)
        s._call(KLI.list_append, s.mem, s._token, self._id, vt, ip, fp, data,
                what="ListRef.append()", h=self._id, hint=len(data))

    def extend(self, values: Iterable[Any]) -> None:
        """Append each of ``values``, one atomic append each."""
        for v in values:
            self.append(v)

    def _truncate(self, n: int) -> None:
        s = self._store
        s._call(KLI.list_truncate, s.mem, s._token, self._id, n, what="ListRef.truncate",
                h=self._id)

    def __delitem__(self, i: int | slice) -> None:
        """``del lst[i]`` or ``del lst[a:b]``: the items after it move up (in several steps,
        not atomically).

        Raises
        ------
        IndexError
            If ``i`` is out of range.
        """
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

    def insert(self, i: int, value: Any) -> None:
        """Insert ``value`` before index ``i`` (clamped, as ``list.insert``); the items after
        it move down, in several steps."""
        n = len(self)
        j = max(0, min(n, i + n if i < 0 else i))
        tail = self[j:]
        self._truncate(j)
        self.append(value)
        self.extend(tail)

    def pop(self, i: int = -1) -> Any:
        """Remove and return the item at ``i`` (the last by default).

        Raises
        ------
        IndexError
            If the list is empty or ``i`` is out of range.
        """
        n = len(self)
        j = self._index(i, n)
        value = self[j]
        if j == n - 1:
            self._truncate(j)
        else:
            del self[j]
        return value

    def clear(self) -> None:
        """Remove every item."""
        self._truncate(0)

    def __iter__(self) -> Iterator[Any]:
        """The items, in index order, from one consistent snapshot."""
        return iter([v for _, v in sorted(self._map()._dump(True), key=lambda kv: kv[0])])

    def __add__(self, other: Iterable[Any]) -> list[Any]:
        """``lst + other``: a new (local) list of the items of both, as ``list(lst) + other``
        (the shared list is not changed; ``+=`` extends it)."""
        if not isinstance(other, (list, tuple, ListRef)):
            return NotImplemented
        return list(self) + list(other)

    def __radd__(self, other: Iterable[Any]) -> list[Any]:
        if not isinstance(other, (list, tuple)):
            return NotImplemented
        return list(other) + list(self)

    def __mul__(self, n: SupportsIndex) -> list[Any]:
        """``lst * n``: a new (local) list of the items repeated ``n`` times."""
        return list(self) * operator.index(n)

    __rmul__ = __mul__

    def __imul__(self, n: SupportsIndex) -> ListRef:
        """``lst *= n``: the shared list's items repeated ``n`` times, in place (appended;
        ``n <= 0`` empties it)."""
        n = operator.index(n)
        items = list(self)
        if n <= 0:
            self.clear()
        for _ in range(n - 1):
            self.extend(items)
        return self

    def __eq__(self, other: object) -> bool:
        """Equal to a list, tuple or ListRef with equal items in the same order."""
        if isinstance(other, (list, tuple, ListRef)):
            return list(self) == list(other)
        return NotImplemented

    # a mutable sequence is unhashable, as a list (type checkers hold every object hashable)
    __hash__ = None  # type: ignore[assignment]

    def drop(self, recursive: bool = False) -> None:
        """Free the list (and, if ``recursive``, the objects its refs point to): see
        :meth:`MapRef.drop`."""
        self._map().drop(recursive=recursive)

    def __repr__(self) -> str:
        return f"<ListRef id={self._id} of store {self._store.name!r}, {len(self)} items>"


class _ListMap(MapRef):
    """A list seen as the map it is (keys 0 .. len-1): how ListRef's methods use MapRef's."""

    __slots__ = ()
    _kind = L.KIND_LIST
    _map_kind = L.KIND_LIST


_CLASSES[L.KIND_MAP] = MapRef
_CLASSES[L.KIND_LIST] = ListRef
