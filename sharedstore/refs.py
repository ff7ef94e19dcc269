"""Refs: handles on objects in a store's shared heap; strings and numbers.

A ref is ``(store, id)``; the id is a 64-bit handle (slot + generation) that any process
attached to the store can use: ``store.ref(id)`` or ``StringRef(store, id)`` reconnects to the
same object.  Refs pickle as ``(store name, id)``.  After ``drop()`` every use of the object, by
any ref in any process, raises :class:`UseAfterFreeError`, also after its slot has been reused.

Maps and lists are in ``maps.py``, struct records in ``structs.py``, vectors and arrays in
``vectors.py``; each registers its class for ``store.ref(id)`` here (:func:`ref_class`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from . import _layout as L
from ._kernels import heap as KH
from ._kernels import objects as KO
from ._values import _float_from_bits, as_float, corrupt_text, float_bits
from ._values import as_int64 as _int64
from .errors import InvalidHandleError, raise_status

if TYPE_CHECKING:
    from .store import Store

_R = TypeVar("_R", bound="Ref")


class Ref:
    """Base of every ref: an object in a store, named by ``id``."""

    # _cx: the address of the store's _fastpath.cpython.Context, for the entry points, which
    # read it and _id (_fastpath.entries.SLOT_*)
    __slots__ = ("_cx", "_id", "_store")
    _kind = -1
    #: the kind the map kernels are asked for by MapRef's methods (a map; a list's own view of
    #: itself as a map, ``maps._ListMap``, says a list); any other ref asks for none, so
    #: ``MapRef.__setitem__(other_ref, ...)`` is refused by the kernel
    _map_kind = L.KIND_NONE
    _cx: int
    _id: int
    _store: Store

    def __init__(self, store: Store, id: int):
        """Reconnect to the object ``id`` of ``store`` (``store.ref(id)`` finds the class).

        Parameters
        ----------
        store
            The store the object lives in (any handle on it, in any process).
        id
            The object's handle, its ref's :attr:`id`.

        Raises
        ------
        InvalidHandleError
            If ``id`` names no object, or one of another kind: ``store.ref(id)`` gives a ref
            of the right class.
        UseAfterFreeError
            If the object was dropped.
        """
        if not hasattr(store, "_att"):
            raise TypeError(
                f"a ref needs the Store its object lives in, not {type(store).__name__}")
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
    def _trusted(cls: type[_R], store: Store, id: int) -> _R:
        """A ref for a handle the caller knows is live and of this class's kind."""
        self = cls.__new__(cls)
        self._init(store, id)
        return self

    def _init(self, store: Store, id: int) -> None:
        """Fill every slot: the one place each class sets its own (``__init__``, ``_trusted``
        and unpickling all come here, so no way of making a ref leaves a slot unset)."""
        self._store = store
        _SET_ID(self, id)  # (read-only from Python: _fastpath.cpython.protect)
        _SET_CX(self, store._cx)

    @property
    def id(self) -> int:
        """The object's handle: pass it to another process and reconnect with ``store.ref(id)``."""
        return self._id

    @property
    def store(self) -> Store:
        """The store the object lives in (the handle this ref was made through)."""
        return self._store

    def drop(self) -> None:
        """Free the object.  Any later use of it, through any ref in any process, raises
        :class:`UseAfterFreeError`.

        Raises
        ------
        UseAfterFreeError
            If it was dropped already.
        """
        s = self._store
        s._call(KO.object_drop, s.mem, s._token, self._id, self._kind,
                what=f"{type(self).__name__}.drop()", h=self._id)

    def __reduce__(self) -> tuple[type[Ref], tuple[Store, int]]:
        return type(self), (self._store, self._id)

    def __eq__(self, other: object) -> bool:
        """Refs are equal when they name the same object of the same store."""
        if not isinstance(other, Ref) or type(other) is not type(self):
            return NotImplemented
        return other._id == self._id and self._store._same_store(other._store)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._id))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self._id} of store {self._store.name!r}>"

    def _fail(self, r: int, what: str) -> NoReturn:
        raise_status(r, f"{type(self).__name__}.{what}", store=self._store)

    def _pair(self, kernel: Callable[..., tuple], *args: Any, what: str) -> tuple:
        """``kernel(mem, token, id, *args)`` returning ``(status, value)``, its statuses
        resolved (a busy lock waited for or taken over from a dead owner, or raised)."""
        s = self._store
        return s._call_pair(kernel, s.mem, s._token, self._id, *args, what=what, h=self._id)


# the writable descriptors of the slots the C entry points read, taken before they are made
# read-only (``_fastpath.cpython.protect``, when sharedstore is imported)
_SET_CX = Ref.__dict__["_cx"].__set__
_SET_ID = Ref.__dict__["_id"].__set__


class StringRef(Ref):
    """A shared UTF-8 string of any length (``store.string("Hello")``)."""

    __slots__ = ()
    _kind = L.KIND_STRING

    def get(self) -> str:
        """The string's current value.

        Raises
        ------
        UseAfterFreeError
            If the string was dropped.
        """
        s = self._store
        out = s._out()
        while True:  # (n > len(out): the string is longer than the scratch buffer)
            n = s._call(KO.string_read, s.mem, out, self._id, what="StringRef.get()", h=self._id)
            if n <= len(out):
                break
            out = s._out(n)
        try:
            return str(s._tls.view[:n], "utf-8", "surrogatepass")
        except UnicodeDecodeError as e:
            raise corrupt_text(e) from e

    def set(self, value: str) -> None:
        """Replace the string's value (any length).  The new text goes to a new block,
        published at once: readers in other processes see the old or the new value, never a
        mix.

        Raises
        ------
        TypeError
            If ``value`` is not a str.
        StoreFullError
            If the store has no room for it.
        UseAfterFreeError
            If the string was dropped.
        """
        if not isinstance(value, str):
            raise TypeError(f"StringRef.set() takes a str, not {type(value).__name__}")
        s = self._store
        data = value.encode("utf-8", "surrogatepass")
        s._call(KO.string_set, s.mem, s._token, self._id, data, what="StringRef.set()",
                h=self._id, hint=len(data))

    @property
    def value(self) -> str:
        """The string's current value (:meth:`get`; assigning it is :meth:`set`)."""
        return self.get()

    @value.setter
    def value(self, value: str) -> None:
        self.set(value)

    def __str__(self) -> str:
        return self.get()


class _ScalarRef(Ref):
    # Each method passes its own class's kind, not ``self._kind``: ``NumberRef.get(int_ref)``
    # is refused by the kernel (the kind check), never a float read from an integer's bits.
    __slots__ = ()

    def _bits(self, kind: int) -> int:
        s = self._store
        _, bits = s._call_pair(KO.scalar_get, s.mem, self._id, kind,
                                what=f"{type(self).__name__}.get()", h=self._id)
        return bits

    def _set_bits(self, kind: int, bits: int) -> None:
        s = self._store
        s._call(KO.scalar_set, s.mem, s._token, self._id, kind, bits,
                what=f"{type(self).__name__}.set()", h=self._id)


class NumberRef(_ScalarRef):
    """A shared float64; ``add`` is atomic."""

    __slots__ = ()
    _kind = L.KIND_FLOAT

    def get(self) -> float:
        """The number's current value."""
        return _float_from_bits(self._bits(L.KIND_FLOAT))

    def set(self, value: float) -> None:
        """Set the value (one atomic store).

        Raises
        ------
        TypeError
            If ``value`` is not a real number.
        """
        self._set_bits(L.KIND_FLOAT, float_bits(as_float(value)))

    def add(self, x: float) -> float:
        """Atomically add ``x``; return the new value.

        Several processes adding at once all land: it is one compare-exchange loop on the
        shared word.

        Raises
        ------
        TypeError
            If ``x`` is not a real number.
        """
        return self._pair(KO.float_add, as_float(x), what="NumberRef.add()")[1]

    @property
    def value(self) -> float:
        """The number's current value (:meth:`get`; assigning it is :meth:`set`)."""
        return self.get()

    @value.setter
    def value(self, value: float) -> None:
        self.set(value)

    def __float__(self) -> float:
        return self.get()


class IntRef(_ScalarRef):
    """A shared int64; ``add`` (fetch-add) and ``compare_exchange`` are atomic."""

    __slots__ = ()
    _kind = L.KIND_INT

    def get(self) -> int:
        """The integer's current value."""
        return self._bits(L.KIND_INT)

    def set(self, value: int) -> None:
        """Set the value (one atomic store).

        Raises
        ------
        TypeError
            If ``value`` is not an int.
        OverflowError
            If it does not fit in int64.
        """
        self._set_bits(L.KIND_INT, _int64(value))

    def add(self, x: int = 1) -> int:
        """Atomically add ``x`` (wrapping at int64); return the new value.

        One fetch-add instruction: several processes adding at once all land.

        Raises
        ------
        TypeError
            If ``x`` is not an int.
        OverflowError
            If ``x`` does not fit in int64.
        """
        return self._pair(KO.int_add, _int64(x), what="IntRef.add()")[1]

    def compare_exchange(self, expected: int, new: int) -> bool:
        """Atomically set the value to ``new`` if it is ``expected``.

        Returns
        -------
        bool
            True if the value was ``expected`` (and is ``new`` now), False if it was anything
            else (and is unchanged).

        Raises
        ------
        TypeError, OverflowError
            If ``expected`` or ``new`` is not an int of int64's range.
        """
        return bool(self._pair(KO.int_compare_exchange, _int64(expected), _int64(new),
                               what="IntRef.compare_exchange()")[1])

    @property
    def value(self) -> int:
        """The integer's current value (:meth:`get`; assigning it is :meth:`set`)."""
        return self.get()

    @value.setter
    def value(self, value: int) -> None:
        self.set(value)

    def __int__(self) -> int:
        return self.get()

    __index__ = __int__


#: the ref class of each kind of object (maps.py, structs.py and vectors.py add theirs)
_CLASSES: dict[int, type[Ref]] = {
    L.KIND_STRING: StringRef,
    L.KIND_FLOAT: NumberRef,
    L.KIND_INT: IntRef,
}


def ref_class(kind: int) -> type[Ref]:
    """The ref class for objects of ``kind`` (``_layout.KIND_*``)."""
    try:
        return _CLASSES[kind]
    except KeyError:
        raise InvalidHandleError(f"objects of kind {kind} have no ref class yet") from None
