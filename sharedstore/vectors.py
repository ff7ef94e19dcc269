"""VectorRef: a growable typed vector (or a table of struct records) in shared memory.

``store.vector("float64")`` holds numbers; ``store.vector(Particle)`` holds records of a
:class:`~sharedstore.Struct`; ``store.vector(dt)`` any dtype NumPy holds as bytes (a sub-array
element is one slot; ``_dtypes.py`` says which dtypes, and how values are converted).  The
dtype is stored in the store, exactly, so ``store["particles"]`` in any worker opens the same
vector with no schema in hand.  Records go in through ``_records.py`` and come out resolved
through ``_resolved.py`` (``v[i]`` of a table is a :class:`~sharedstore.Record`); ``view()``
and ``__array__`` (NumPy's protocol) give the raw slots without a copy.

Slots and length.  ``len(v)`` counts slots: ``append``/``extend`` add slots at the end,
``insert`` fills the most recently removed slot first, ``remove(k)`` zeroes slot ``k`` and puts it
on the free list (indices never shift).  ``v.free_slots()`` lists the removed slots.

Views.  ``v.view()`` is a zero-copy NumPy array over the slots as they are when it is taken.
When the vector grows past its capacity its records move to a bigger block; a view taken
before keeps reading (and writing) the old block, which stays allocated, pinned by this
process, until the view and every array derived from it are garbage; only then is it freed.  So
a view never reads freed memory, but after growth it no longer shows the vector: take a new
view.  Writes through a view are not locked against other writers.

Pins belong to the process that took the view, and are recorded in its pin list in the store.
A process that exits normally releases the pins of the views it still holds (at exit); when one
is killed, or leaves through ``os._exit`` (as multiprocessing workers do) with views still alive,
the next process that reaps its process-table entry (any ``workers()``, ``reap()``, ``check()``,
or a lock wait on it) releases them.  ``store.close()`` with views alive keeps them valid: the
process stays registered until its last view goes.  A view inherited through ``fork`` is covered
by the parent's pin only: take views in the worker itself.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, SupportsIndex, TypeAlias, TypeVar, overload

import numpy as np

from . import _layout as L
from ._dtypes import (
    PlainRecord,
    cast,
    exact_copy,
    exact_json,
    from_descr,
    from_json,
    leaf,
    plain_record,
    record_copy,
    storable,
    to_json,
)
from ._fastpath.entries import element_code
from ._kernels import heap as KH
from ._kernels import status as S
from ._kernels import vector as KV
from ._pins import pinned_array
from ._records import drop_strings, element_rows, owned_strings, table_rows
from ._resolved import Record, pandas_columns, python_scalar, strings_of
from .errors import InvalidHandleError
from .refs import _CLASSES, Ref
from .structs import Struct

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .store import Store

#: what ``store.vector`` and ``store.array`` take as the type of a slot: a NumPy dtype, or what
#: ``numpy.dtype()`` takes (``"float64"``, ``np.int32``, a list of fields...) but None (which
#: ``store.vector`` takes for a ListRef), or a :class:`Struct` for records
DTypeLike: TypeAlias = ("np.dtype[Any] | type[Any] | str | list[Any] | tuple[Any, ...] "
                        "| dict[str, Any] | Struct")


_V = TypeVar("_V", bound="VectorRef")


def dtype_descriptor(dtype: Any, shape: tuple[int, ...] | None = None
                     ) -> tuple[np.dtype, Struct | None, str]:
    """(numpy dtype, Struct or None, JSON descriptor) for what ``store.vector`` and
    ``store.array`` accept (:data:`DTypeLike`; ``numpy.dtype()`` judges the rest, as its
    overloads cannot take a union); an array's descriptor also holds its shape."""
    d: dict[str, Any]
    dt: np.dtype
    if isinstance(dtype, Struct):
        dt, struct, d = dtype.dtype, dtype, {"struct": dtype.descriptor()}
    else:
        dt, struct = np.dtype(dtype), None
        storable(dt, "vectors hold values of fixed size, as bytes")
        # NumPy's own form where it gives the dtype back (as stores always recorded them);
        # the exact form of _dtypes for the rest (aligned structs, sub-array elements)
        d = ({"descr": np.lib.format.dtype_to_descr(dt)} if exact_json(dt)
             else {"dtype": to_json(dt)})
    if shape is not None:
        d["shape"] = list(shape)
    return dt, struct, json.dumps(d, separators=(",", ":"))


def _from_descriptor(text: str) -> tuple[np.dtype, Struct | None, tuple[int, ...] | None]:
    d = json.loads(text)
    shape = tuple(d["shape"]) if "shape" in d else None
    if "struct" in d:
        s = Struct.from_descriptor(d["struct"])
        return s.dtype, s, shape
    if "dtype" in d:
        return from_json(d["dtype"]), None, shape
    return from_descr(d["descr"]), None, shape


class VectorRef(Ref):
    """A growable vector of fixed-size slots (numbers or struct records) in shared memory
    (``store.vector("float64")``, ``store.vector(Particle)``; see the module doc)."""

    __slots__ = ("_dtype", "_struct", "_shape", "_element")
    _kind = L.KIND_VECTOR
    _factory = "vector"
    _dtype: np.dtype | None
    _struct: Struct | None
    _shape: tuple[int, ...] | None
    _element: int | None

    def __init__(self, store: Store, id: int):
        """Reconnect to the vector ``id`` of ``store`` (``store.ref(id)`` finds the class).

        Raises
        ------
        InvalidHandleError
            If ``id`` names no vector, or a fixed-shape array (use :class:`ArrayRef`).
        UseAfterFreeError
            If the vector was dropped.
        """
        try:
            super().__init__(store, id)
        except InvalidHandleError:
            kind = KH.handle_kind(store.mem, id)
            if kind in (L.KIND_VECTOR, L.KIND_ARRAY) and kind != self._kind:
                fixed = kind == L.KIND_ARRAY
                what = "a fixed-shape array" if fixed else "a growable vector"
                cls = "ArrayRef" if fixed else "VectorRef"
                raise InvalidHandleError(f"id {id} names {what}: use ss.{cls}(store, {id}) or "
                                         f"store.ref({id})") from None
            raise

    def _init(self, store: Store, id: int) -> None:
        super()._init(store, id)
        _SET_DTYPE(self, None)  # (_struct and _shape are read with it, by the dtype property)
        self._struct = None
        self._shape = None
        _SET_ELEMENT(self, None)  # _fastpath.entries.element_code of the dtype, once known

    @classmethod
    def _create(cls: type[_V], store: Store, dtype: DTypeLike, capacity: int = 0,
                shape: tuple[int, ...] | None = None, length: int = 0) -> _V:
        dt, struct, text = dtype_descriptor(dtype, shape)
        schema = store._intern(text)
        capacity = max(int(capacity), length)
        # (hint: the data block, its header words and then the records)
        h = store._call(KV.vector_new, store.mem, store._token, schema, dt.itemsize,
                        capacity, cls._kind, length, what=f"store.{cls._factory}()",
                        hint=L.D_RECORDS + dt.itemsize * capacity)
        v = cls._trusted(store, h)
        _SET_DTYPE(v, dt)
        v._struct, v._shape = struct, shape
        return v

    # ---------------------------------------------------------------- shape
    def _info(self) -> tuple[int, int, int]:
        st, n, itemsize, schema = KV.vector_info(self._store.mem, self._id)
        if st < 0:
            self._fail(st, "access")
        return n, itemsize, schema

    @property
    def dtype(self) -> np.dtype:
        """The dtype of one slot (read from the store the first time)."""
        dt = self._dtype
        if dt is None:
            dt = self._read_type()
        return dt

    def _read_type(self) -> np.dtype:
        """Read the vector's type from the store: ``_dtype``, ``_struct`` and ``_shape``."""
        _, _, schema = self._info()
        dt, self._struct, self._shape = self._store._interned(schema, _from_descriptor)
        _SET_DTYPE(self, dt)
        return dt

    @property
    def struct(self) -> Struct | None:
        """The :class:`Struct` of a table's records, or None for a plain vector."""
        if self._dtype is None:
            self._read_type()
        return self._struct

    def _record_type(self) -> Struct | PlainRecord | None:
        """What the slots' records are: the Struct of a table, the record type of a plain
        structured dtype, or None (numbers, sub-arrays...)."""
        dt = self.dtype
        if self._struct is not None:
            return self._struct
        return plain_record(dt) if dt.names is not None else None

    def __len__(self) -> int:
        """How many slots the vector has (removed ones included: indices never shift)."""
        return self._info()[0]

    def free_slots(self) -> list[int]:
        """Indices of removed slots (zeroed; ``insert`` reuses the last one first)."""
        s = self._store
        out = np.empty(64, dtype=np.int64)
        while True:
            n = s._call(KV.vector_free_slots, s.mem, s._token, out, self._id,
                        what="free_slots()", h=self._id)
            if n <= len(out):
                return out[:n].tolist()
            out = np.empty(n * 2, dtype=np.int64)

    # ---------------------------------------------------------------- writes
    def _records(self, values: Any, one: bool = False) -> tuple[np.ndarray, list[int]]:
        """``values`` (one slot's value if ``one``) as a C-contiguous array of this vector's
        dtype, and the strings made for a table's "string" fields (``_records.py``: records
        in every form; drop them if the write fails)."""
        rt = self._record_type()
        if rt is not None:
            return table_rows(self._store, rt, values, one=one)
        return element_rows(self.dtype, values, one=one), []

    def _write(self, fn: Callable[..., int], records: tuple[np.ndarray, list[int]],
               *args: int, what: str) -> int:
        """``fn(mem, token, id, *args, rows)`` for ``records = self._records(...)``; the
        strings made for them are dropped again if it fails."""
        rows, made = records
        try:
            return self._op(fn, *args, rows.view(np.uint8).reshape(-1), what=what,
                              hint=rows.nbytes)
        except BaseException:
            drop_strings(self._store, made)
            raise

    def _op(self, kernel: Callable[..., int], *args: Any, what: str, hint: int = 0) -> int:
        """``kernel(mem, token, id, *args)``, a change to this vector, its statuses resolved
        (``Store._call``); ERR_NOT_FOUND (no such slot) comes back to the caller."""
        s = self._store
        return s._call(kernel, s.mem, s._token, self._id, *args, what=what, h=self._id,
                       hint=hint, accept=(S.ERR_NOT_FOUND,))

    def extend(self, values: Any) -> None:
        """Append many slots in one call.  (The c backend copies an array of the dtype in C.)

        Parameters
        ----------
        values
            An array of the vector's dtype (copied as it is); for a plain vector any
            sequence of numbers castable without changing kind; for a table, records in any
            form ``_records.py`` takes (a structured array, a list of dicts or tuples...).

        Raises
        ------
        TypeError
            For values the vector's dtype cannot hold without changing them.
        StoreFullError
            If the store has no room for them.
        """
        records = self._records(values)
        if len(records[0]):
            self._write(KV.vector_extend, records, what="extend()")

    def append(self, value: Any) -> None:
        """Append one slot: a number, or one record of a table (a dict, a tuple of every
        field, an ``np.void``...).  Several processes may append at once: each slot lands
        whole.  (The c backend appends a number to a numeric vector in C.)

        Raises
        ------
        TypeError
            For a value the vector's dtype cannot hold without changing it.
        StoreFullError
            If the store has no room for it.
        """
        if self._element is None:
            # (the next append can take the C path; not for float32, which it rounds without
            # refusing a finite value beyond float32's range: that one must be refused)
            dt = self.dtype
            _SET_ELEMENT(self, element_code(dt) if dt != np.float32 else 0)
        self._write(KV.vector_extend, self._records(value, one=True), what="append()")

    def insert(self, value: Any) -> int:
        """Put a record in a free slot (the last one removed), or at the end if none is free.

        Returns
        -------
        int
            The slot's index.
        """
        return self._write(KV.vector_insert, self._records(value, one=True), what="insert()")

    def _owned(self, start: int, count: int) -> list[int]:
        """The strings that records ``start .. start+count`` of a table own (see ``drop``)."""
        struct = self.struct  # (read from the store on a ref's first use)
        if struct is None or not struct.string_offsets or count <= 0:
            return []
        return owned_strings(struct, self._read(start, count))

    def remove(self, index: SupportsIndex) -> None:
        """Zero slot ``index`` (dropping the strings a table record owns) and free it for reuse
        by :meth:`insert`; the indices of the other slots do not change.

        Raises
        ------
        IndexError
            If the slot is not in use (out of range, or removed already).
        """
        index = operator.index(index)
        old = self._owned(index, 1) if 0 <= index < len(self) else []
        r = self._op(KV.vector_remove, index, what="remove()")
        if r == S.ERR_NOT_FOUND:
            raise IndexError(f"slot {index} is not in use (length {len(self)}, or already removed)")
        drop_strings(self._store, old)

    def __setitem__(self, index: SupportsIndex | slice, value: Any) -> None:
        """``v[i] = value`` or ``v[a:b] = values``: overwrite slots in place (a table record's
        strings that the new record does not keep are dropped).  Readers in other processes
        wait for the write rather than see a record half old, half new.

        Raises
        ------
        IndexError
            If ``i`` is out of range.
        ValueError
            If a slice has a step, or not as many values as slots.
        """
        n = len(self)
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step != 1:
                raise ValueError("slice assignment needs a step of 1")
            records = self._records(value)
            if len(records[0]) != stop - start:
                drop_strings(self._store, records[1])
                raise ValueError(f"{len(records[0])} values for a slice of {stop - start} slots")
        else:
            start = self._index(index, n)
            records = self._records(value, one=True)
        old = self._owned(start, len(records[0]))
        r = self._write(KV.vector_write, records, start, what="set")
        if r == S.ERR_NOT_FOUND:
            raise IndexError(f"vector index out of range (length {len(self)})")
        if old and self._struct is not None:  # (only a table's records own strings)
            kept = set(owned_strings(self._struct, records[0]))
            drop_strings(self._store, [h for h in old if h not in kept])

    def pop(self) -> Any:
        """Remove and return the last slot's value (as ``v[-1]`` reads it).

        Raises
        ------
        IndexError
            If the vector is empty.
        """
        n = len(self)
        if n == 0:
            raise IndexError("pop from an empty vector")
        value = self[n - 1]
        self.resize(n - 1)
        return value

    def resize(self, n: SupportsIndex) -> None:
        """Set the length to ``n`` slots: new slots are zero; the strings of a table's
        records cut off are dropped.

        Raises
        ------
        ValueError
            If ``n`` is negative.
        StoreFullError
            If the store has no room for the new slots.
        """
        n = operator.index(n)
        if n < 0:
            raise ValueError("a length cannot be negative")
        cur = len(self)
        old = self._owned(n, cur - n)
        self._op(KV.vector_truncate, n, what="resize()", hint=n * self.dtype.itemsize)
        drop_strings(self._store, old)

    def clear(self) -> None:
        """``resize(0)``: remove every slot (and the strings a table's records own)."""
        self.resize(0)

    # ---------------------------------------------------------------- reads
    def _index(self, index: SupportsIndex, n: int) -> int:
        i = operator.index(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"vector index {index} out of range (length {n})")
        return i

    def _read(self, start: int, count: int) -> np.ndarray:
        s = self._store
        dt = self.dtype
        out = np.empty(max(count, 1) * dt.itemsize, dtype=np.uint8)
        r = s._call(KV.vector_read, s.mem, s._token, out, self._id, start, count,
                    what="vector read", h=self._id, accept=(S.ERR_NOT_FOUND,))
        if r == S.ERR_NOT_FOUND:
            raise IndexError(f"vector index out of range (length {len(self)})")
        # a writable array of the slots (an item of a read-only array would be a copy made
        # field by field, its padding not copied), shape (count,) + the element's shape
        base, shape = leaf(dt)
        return out[:count * dt.itemsize].view(base).reshape((count, *shape))

    @overload
    def __getitem__(self, index: SupportsIndex) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> np.ndarray: ...

    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        """``v[i]``: a copy of slot ``i``; ``v[a:b]``: a copy of the slots as an array, read
        whole (never a record half written).

        A slot reads as ``v.view()[i]`` would, with what it owns resolved: a record of a table
        is a :class:`~sharedstore.Record` (its strings as str, its refs as refs); a record of a
        plain structured dtype an ``np.void``; a sub-array element an array; a number a Python
        number (a NumPy scalar for ``datetime64``/``timedelta64`` and ``longdouble``, which
        Python has no exact type for).  A slice is the raw array (handles as ints), as
        ``view()``.

        Raises
        ------
        IndexError
            If ``i`` is out of range.
        """
        n = len(self)
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step == 1:
                return self._read(start, max(0, stop - start))
            return self._read(0, n)[index]
        return self._slot(self._read(self._index(index, n), 1)[0])

    def _slot(self, value: Any) -> Any:
        """One slot's value as ``v[i]`` gives it (``value``: that item of a read copy)."""
        struct = self._struct
        if struct is not None:
            return Record(self._store, struct, value)
        return python_scalar(value)

    def to_numpy(self) -> np.ndarray:
        """A copy of every slot, as one array."""
        return self._read(0, len(self))

    def __iter__(self) -> Iterator[Any]:
        """The slots' values (as ``v[i]`` gives them), from one consistent snapshot (a copy)."""
        arr = self.to_numpy()  # one consistent snapshot
        if self._struct is None and arr.ndim == 1 and arr.dtype.kind in "biufcUS" \
                and arr.dtype.itemsize <= 16 and arr.dtype.kind + str(arr.dtype.itemsize) \
                not in ("f16", "c32"):
            return iter(arr.tolist())
        return map(self._slot, arr)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """NumPy's protocol (``np.asarray(v)``, ufuncs, reductions, pandas, matplotlib): the
        zero-copy :meth:`view`; with ``copy=True`` a copy (:meth:`to_numpy`, read whole); with
        a ``dtype`` the view cast to it (a copy, refused with ``copy=False`` as NumPy 2
        refuses).  A table's records come raw (handles as ints), as ``view()``."""
        arr = self.to_numpy() if copy else self.view()
        if dtype is not None and np.dtype(dtype) != arr.dtype:
            if copy is False:
                raise ValueError(f"a {arr.dtype} vector cannot be read as {np.dtype(dtype)} "
                                 "without a copy (copy=False)")
            arr = arr.astype(dtype)
        return arr

    def view(self) -> np.ndarray:
        """A zero-copy, writable array over the slots as they are now: shape ``(len,)``, or
        ``(len,) + dtype.shape`` for sub-array elements (as numpy gives an array of them).

        The memory stays valid while the view (or any array derived from it) lives, also
        after the vector grows or is dropped; after growth the view shows the vector as it
        was, so take a new one (see the module doc).  Writes through it are not locked
        against other writers."""
        s = self._store
        dt = self.dtype
        deadline = None
        while True:
            d, n, off = KV.vector_pin(s.mem, self._id, s._token)
            if d >= 0:
                break
            deadline = s._recover(d, "view()", self._id, deadline=deadline)
        return pinned_array(s, d, dt, n, off)

    def to_pandas(self) -> pd.DataFrame | pd.Series:
        """The slots now in pandas, as pandas takes the same NumPy array: a Series of a vector
        of numbers, a DataFrame of one of records (a column a field) or of 2-d sub-arrays (a
        column an index); numeric columns are zero-copy views.

        A table's ``"string"`` fields are resolved to str; nested records are flattened into
        ``outer.inner.x`` columns (as ``pandas.json_normalize`` names them); a sub-array field
        (which pandas refuses in a DataFrame) is a column of one array per row, an array of
        structs one of :class:`~sharedstore.Record` arrays; ``"ref"`` fields stay ids.
        Sub-array elements of more than one dimension give a Series of arrays.

        Raises
        ------
        ImportError
            If pandas is not installed.
        """
        import pandas as pd

        arr = self.view()
        rt = self._record_type()
        if rt is not None:
            return pd.DataFrame(pandas_columns(self._store, rt, arr), copy=False)
        if arr.ndim == 1:
            return pd.Series(arr, copy=False)
        if arr.ndim == 2:
            return pd.DataFrame(arr, copy=False)
        return pd.Series(list(arr))

    def to_arrow(self) -> pa.Table | pa.Array:
        """The slots now as a ``pyarrow.Table`` (a ``pyarrow.Array`` for a plain vector), as
        pyarrow converts the same NumPy array column by column (and raises as it does, for a
        type it cannot convert, naming the field).

        Numbers are zero-copy where Arrow's contiguous columns allow it: a plain numeric
        vector, and the values of a vector of sub-arrays; the columns of a table of records
        are interleaved in memory, so each is copied once (``to_pandas`` keeps them as
        views).  "string" fields are resolved to str, ``str[N]`` fields become Arrow strings,
        sub-arrays fixed-size lists, nested records struct arrays.  Zero-copy buffers keep
        the view's pin: the memory they read stays allocated as long as they live.

        Raises
        ------
        ImportError
            If pyarrow is not installed: ``pip install 'sharedstore[arrow]'``.
        """
        from ._arrow import pyarrow, vector_to_arrow

        pyarrow()  # before taking a view: a missing pyarrow pins nothing
        return vector_to_arrow(self._record_type(), self.view(), self._strings)

    def _strings(self, handles: Any) -> Any:
        """The str of each owned "string" handle (0, an empty field, is "")."""
        return [strings_of(self._store, h) for h in np.asarray(handles).tolist()]

    def drop(self) -> None:
        """Free the vector (and the strings a table's records own).  Views taken before keep
        their memory until they are gone.

        Raises
        ------
        UseAfterFreeError
            If it was dropped already.
        """
        old = self._owned(0, len(self))  # (a removed slot is zeroed: it owns nothing)
        s = self._store
        s._call(KV.vector_drop, s.mem, s._token, self._id, what="VectorRef.drop()", h=self._id)
        drop_strings(s, old)

    def _repr_html_(self) -> str:
        from . import _html

        return _html.vector(self)

    def __repr__(self) -> str:
        try:
            struct = self.struct
            what = struct.name if struct is not None else str(self.dtype)
            return f"<VectorRef {what}[{len(self)}] id={self._id} of store {self._store.name!r}>"
        except Exception:
            return f"<VectorRef id={self._id} (dropped) of store {self._store.name!r}>"


# the writable descriptors of the slots the C entry points read (``_fastpath.cpython.protect``
# makes them read-only from Python once sharedstore is imported)
_SET_DTYPE = VectorRef.__dict__["_dtype"].__set__
_SET_ELEMENT = VectorRef.__dict__["_element"].__set__


class ArrayRef(VectorRef):
    """A fixed-shape array in shared memory (``store.array((1000, 3), "float32")``): it never
    grows, so its memory never moves; ``view()`` is the whole array, zero-copy and writable."""

    __slots__ = ()
    _kind = L.KIND_ARRAY
    _factory = "array"

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape (read from the store the first time)."""
        if self._dtype is None:
            self._read_type()
        shape = self._shape
        assert shape is not None  # (an ArrayRef's descriptor has a shape: see _vector_or_array)
        return shape

    def view(self) -> np.ndarray:
        """The whole array, zero-copy and writable, of :attr:`shape` (and the dtype's own
        shape after it, for a sub-array dtype; its memory never moves, so the view stays the
        array's for as long as it lives)."""
        return super().view().reshape(self.shape + leaf(self.dtype)[1])

    def __getitem__(self, index: Any) -> Any:
        """``a[index]`` with NumPy's indexing: a copy of what ``a.view()[index]`` gives (one
        record of a Struct a :class:`~sharedstore.Record`, its strings resolved)."""
        v = self.view()[index]
        if isinstance(v, np.void):
            v = record_copy(v)[0]  # (its bytes: np.void.copy() leaves padding out)
            return v if self._struct is None else Record(self._store, self._struct, v)
        return exact_copy(v) if isinstance(v, np.ndarray) else v

    def __setitem__(self, index: Any, value: Any) -> None:
        """``a[index] = value`` with NumPy's indexing and broadcasting, in place.

        Raises
        ------
        TypeError
            For values the array's dtype cannot hold as they are (out of range, a float with
            a fraction for ints, too long a str...), as ``VectorRef.append``; nothing is
            written.
        """
        view = self.view()
        dt = self.dtype
        rt = self._record_type()
        if rt is None:
            view[index] = cast(value, leaf(dt)[0], f"an array of {dt}")
            return
        made: list[int] = []
        if not (isinstance(value, np.ndarray) and value.dtype == dt):
            one = isinstance(value, (dict, tuple, np.void, Record))
            value, made = table_rows(self._store, rt, value, one=one)
            value = value[0] if one else value
        old = owned_strings(rt, view.reshape(-1)) if rt.string_offsets else []
        try:
            view[index] = value
        except BaseException:
            drop_strings(self._store, made)
            raise
        if old:  # (the strings of the records it replaced)
            kept = set(owned_strings(rt, view.reshape(-1)))
            drop_strings(self._store, [h for h in old if h not in kept])

    def __len__(self) -> int:
        """The length of the first axis (1 for a 0-d array)."""
        return self.shape[0] if self.shape else 1

    def __iter__(self) -> Iterator[Any]:
        """The items along the first axis, from a copy."""
        return iter(exact_copy(self.view()))

    def to_numpy(self) -> np.ndarray:
        """A copy of the whole array."""
        return exact_copy(self.view())

    def to_pandas(self) -> pd.DataFrame | pd.Series:
        """A pandas Series (1-d array) or DataFrame (2-d, a column per index of the second
        axis; 1-d of records, a column per field as ``VectorRef.to_pandas`` makes them) over
        the array, zero-copy.

        Raises
        ------
        ValueError
            For an array of other dimensions, or of records in more than one: pandas holds
            1-d and 2-d arrays of numbers; use ``view()``.
        """
        import pandas as pd

        view = self.view()
        rt = self._record_type()
        if view.ndim == 1 and rt is not None:  # (records: as a table's, VectorRef.to_pandas)
            return pd.DataFrame(pandas_columns(self._store, rt, view), copy=False)
        if view.ndim == 1 and view.dtype.names is None:
            return pd.Series(view, copy=False)
        if view.ndim == 2 and view.dtype.names is None:
            return pd.DataFrame(view, copy=False)
        raise ValueError(f"an array of shape {view.shape} and dtype {view.dtype} has no pandas "
                         "form: pandas holds 1-d and 2-d arrays of numbers; use view()")

    def _fixed(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: an ArrayRef has a fixed shape (TypeError; a VectorRef grows)."""
        raise TypeError("an ArrayRef has a fixed shape: use store.vector(...) to grow")

    append = extend = insert = remove = pop = resize = clear = _fixed

    def __repr__(self) -> str:
        try:
            what = f"{self.dtype}{list(self.shape)}"
            return f"<ArrayRef {what} id={self._id} of store {self._store.name!r}>"
        except Exception:
            return f"<ArrayRef id={self._id} (dropped) of store {self._store.name!r}>"


_CLASSES[L.KIND_VECTOR] = VectorRef
_CLASSES[L.KIND_ARRAY] = ArrayRef
