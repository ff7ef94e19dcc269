"""VectorRef: a growable typed vector (or a table of struct records) in shared memory.

``store.vector("float64")`` holds numbers; ``store.vector(Particle)`` holds records of a
:class:`~sharedstore.Struct`.  The dtype is stored in the store, so ``store["particles"]`` in any
worker opens the same vector with no schema in hand.

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

import numpy as np

from . import _layout as L
from ._fastpath.entries import element_code
from ._kernels import status as S
from ._kernels import vector as KV
from ._pins import pinned_array
from ._records import drop_strings, owned_strings, table_rows
from .errors import InvalidHandleError
from .refs import _CLASSES, Ref, StringRef
from .structs import Struct


def dtype_descriptor(dtype, shape=None) -> tuple[np.dtype, Struct | None, str]:
    """(numpy dtype, Struct or None, JSON descriptor) for what ``store.vector`` and
    ``store.array`` accept; an array's descriptor also holds its shape."""
    if isinstance(dtype, Struct):
        dt, struct, d = dtype.dtype, dtype, {"struct": dtype.descriptor()}
    else:
        dt, struct = np.dtype(dtype), None
        if dt.hasobject or dt.itemsize == 0:
            raise TypeError(f"vectors hold fixed-size values; {dt} is not (use a map for objects)")
        d = {"descr": np.lib.format.dtype_to_descr(dt)}
    if shape is not None:
        d["shape"] = list(shape)
    return dt, struct, json.dumps(d, separators=(",", ":"))


def _from_descriptor(text: str) -> tuple[np.dtype, Struct | None, tuple | None]:
    d = json.loads(text)
    shape = tuple(d["shape"]) if "shape" in d else None
    if "struct" in d:
        s = Struct.from_descriptor(d["struct"])
        return s.dtype, s, shape
    descr = d["descr"]
    if isinstance(descr, list):  # (JSON made the tuples of a structured descr lists)
        descr = [tuple(x) if isinstance(x, list) else x for x in descr]
    return np.lib.format.descr_to_dtype(descr), None, shape


class VectorRef(Ref):
    """A growable vector of fixed-size slots (numbers or struct records) in shared memory."""

    __slots__ = ("_dtype", "_struct", "_shape", "_element")
    _kind = L.KIND_VECTOR

    def __init__(self, store, id: int):
        super().__init__(store, id)
        fixed = self.dtype is not None and self._shape is not None
        if fixed != isinstance(self, ArrayRef):
            what = "a fixed-shape array" if fixed else "a growable vector"
            cls = "ArrayRef" if fixed else "VectorRef"
            raise InvalidHandleError(f"id {id} names {what}: use ss.{cls}(store, {id}) or "
                                     f"store.ref({id})")

    def _init(self, store, id: int) -> None:
        super()._init(store, id)
        self._dtype = None  # (_struct and _shape are read with it, by the dtype property)
        self._struct = None
        self._shape = None
        self._element = None  # _fastpath.entries.element_code of the dtype, once known (append)

    @classmethod
    def _create(cls, store, dtype, capacity: int = 0, shape=None) -> VectorRef:
        dt, struct, text = dtype_descriptor(dtype, shape)
        schema = store._intern(text)
        # (hint: the data block, its header words and then the records)
        h = store._call(KV.vector_new, store.mem, store._token, schema, dt.itemsize,
                        int(capacity), what="store.vector()",
                        hint=L.D_RECORDS + dt.itemsize * capacity)
        v = cls._trusted(store, h)
        v._dtype, v._struct, v._shape = dt, struct, shape
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
        self._dtype = dt
        return dt

    @property
    def struct(self) -> Struct | None:
        """The :class:`Struct` of a table's records, or None for a plain vector."""
        if self._dtype is None:
            self._read_type()
        return self._struct

    def __len__(self) -> int:
        return self._info()[0]

    def free_slots(self) -> list[int]:
        """Indices of removed slots (zeroed; ``insert`` reuses the last one first)."""
        s = self._store
        out = np.empty(64, dtype=np.int64)
        while True:
            n = s._call(KV.vector_free_slots, s.mem, out, self._id, what="free_slots()",
                        h=self._id)
            if n <= len(out):
                return out[:n].tolist()
            out = np.empty(n * 2, dtype=np.int64)

    # ---------------------------------------------------------------- writes
    def _records(self, values, one: bool = False) -> tuple[np.ndarray, list[int]]:
        """``values`` (one slot's value if ``one``) as a C-contiguous array of this vector's
        dtype, and the strings made for a table's "string" fields (``_records.py``: records
        in every form; drop them if the write fails)."""
        dt = self.dtype
        if self._struct is not None:
            return table_rows(self._store, self._struct, values, one=one)
        if one:
            values = [values]
        arr = np.asarray(values)
        if dt.subdtype is None and dt.names is None:
            if arr.ndim > 1:
                raise ValueError(f"a vector of {dt} takes a 1-D sequence of values, not an "
                                 f"array of shape {arr.shape}")
            if not (np.can_cast(arr.dtype, dt, casting="same_kind")
                    or (arr.dtype.kind in "biu" and dt.kind in "biu")):  # ints of any sign/width
                raise TypeError(f"cannot put {arr.dtype} values in a vector of {dt} without "
                                "changing them: convert them first")
        return np.ascontiguousarray(np.asarray(values, dtype=dt).reshape(-1)), []

    def _write(self, fn, records: tuple, *args, what: str) -> int:
        """``fn(mem, token, id, *args, rows)`` for ``records = self._records(...)``; the
        strings made for them are dropped again if it fails."""
        rows, made = records
        try:
            return self._op(fn, *args, rows.view(np.uint8).reshape(-1), what=what,
                              hint=rows.nbytes)
        except BaseException:
            drop_strings(self._store, made)
            raise

    def _op(self, kernel, *args, what: str, hint: int = 0) -> int:
        """``kernel(mem, token, id, *args)``, a change to this vector, its statuses resolved
        (``Store._call``); ERR_NOT_FOUND (no such slot) comes back to the caller."""
        s = self._store
        return s._call(kernel, s.mem, s._token, self._id, *args, what=what, h=self._id,
                       hint=hint, accept=(S.ERR_NOT_FOUND,))

    def extend(self, values) -> None:
        """Append many slots in one call: an array of the vector's dtype (copied as it is),
        any sequence of numbers for a plain vector, of records for a table (see
        ``_records.py``).  (The c backend copies an array of the dtype in C.)"""
        records = self._records(values)
        if len(records[0]):
            self._write(KV.vector_extend, records, what="extend()")

    def append(self, value) -> None:
        """Append one slot: a number, or one record of a table (any form ``_records.py``
        takes).  (The c backend appends a number to a numeric vector in C.)"""
        if self._element is None:
            self._element = element_code(self.dtype)  # (the next append can take the C path)
        self._write(KV.vector_extend, self._records(value, one=True), what="append()")

    def insert(self, value) -> int:
        """Put a record in a free slot (or at the end); return its index."""
        return self._write(KV.vector_insert, self._records(value, one=True), what="insert()")

    def _owned(self, start: int, count: int) -> list[int]:
        """The strings that records ``start .. start+count`` of a table own (see ``drop``)."""
        struct = self.struct  # (read from the store on a ref's first use)
        if struct is None or not struct.string_offsets or count <= 0:
            return []
        return owned_strings(struct, self._read(start, count))

    def remove(self, index: int) -> None:
        """Zero slot ``index`` (dropping the strings a table record owns) and free it for reuse."""
        index = operator.index(index)
        old = self._owned(index, 1) if 0 <= index < len(self) else []
        r = self._op(KV.vector_remove, index, what="remove()")
        if r == S.ERR_NOT_FOUND:
            raise IndexError(f"slot {index} is not in use (length {len(self)}, or already removed)")
        drop_strings(self._store, old)

    def __setitem__(self, index, value) -> None:
        """``v[i] = value`` or ``v[a:b] = values``: overwrite slots in place (a table record's
        strings that the new record does not keep are dropped)."""
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
        if old:
            kept = set(owned_strings(self._struct, records[0]))
            drop_strings(self._store, [h for h in old if h not in kept])

    def pop(self):
        """Remove and return the last slot's value."""
        n = len(self)
        if n == 0:
            raise IndexError("pop from an empty vector")
        value = self[n - 1]
        self.resize(n - 1)
        return value

    def resize(self, n: int) -> None:
        """Set the length: new slots are zero; the strings of a table's records cut off are
        dropped."""
        n = operator.index(n)
        if n < 0:
            raise ValueError("a length cannot be negative")
        cur = len(self)
        old = self._owned(n, cur - n)
        self._op(KV.vector_truncate, n, what="resize()", hint=n * self.dtype.itemsize)
        drop_strings(self._store, old)

    def clear(self) -> None:
        self.resize(0)

    # ---------------------------------------------------------------- reads
    def _index(self, index, n: int) -> int:
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
        r = s._call(KV.vector_read, s.mem, out, self._id, start, count, what="vector read",
                    h=self._id, accept=(S.ERR_NOT_FOUND,))
        if r == S.ERR_NOT_FOUND:
            raise IndexError(f"vector index out of range (length {len(self)})")
        return out[:count * dt.itemsize].view(dt)

    def __getitem__(self, index):
        n = len(self)
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step == 1:
                return self._read(start, max(0, stop - start))
            return self._read(0, n)[index]
        value = self._read(self._index(index, n), 1)[0]
        return value if self._struct is not None else value.item()

    def to_numpy(self) -> np.ndarray:
        """A copy of every slot."""
        return self._read(0, len(self))

    def __iter__(self):
        arr = self.to_numpy()  # one consistent snapshot
        return iter(arr if self._struct is not None else arr.tolist())

    def view(self) -> np.ndarray:
        """A zero-copy, writable array over the slots as they are now (see the module doc)."""
        s = self._store
        dt = self.dtype
        deadline = None
        while True:
            d, n, off = KV.vector_pin(s.mem, self._id, s._token)
            if d >= 0:
                break
            deadline = s._recover(d, "view()", self._id, deadline=deadline)
        return pinned_array(s, d, dt, n, off)

    def to_pandas(self):
        """A pandas DataFrame (Series for a plain vector) of the slots now; numeric columns are
        zero-copy views, a table's "string" fields are resolved to str."""
        import pandas as pd

        arr = self.view()
        if self._struct is None:
            return pd.Series(arr, copy=False)
        cols = {}
        for name in arr.dtype.names:
            col = arr[name]
            if name in self._struct.strings:
                cols[name] = self._strings(col)
            elif col.ndim == 1:
                cols[name] = col
            else:
                cols[name] = list(col)
        return pd.DataFrame(cols, copy=False)

    def to_arrow(self):
        """The slots now as a ``pyarrow.Table`` (a ``pyarrow.Array`` for a plain vector).

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
        return vector_to_arrow(self, self.view(), self._strings)

    def _strings(self, handles) -> list[str]:
        """The str of each owned "string" handle (0, an empty field, is "")."""
        s = self._store
        return [StringRef._trusted(s, int(h)).get() if h else "" for h in handles]

    def drop(self) -> None:
        """Free the vector (and the strings a table's records own).  Views taken before keep
        their memory until they are gone."""
        old = self._owned(0, len(self))  # (a removed slot is zeroed: it owns nothing)
        s = self._store
        s._call(KV.vector_drop, s.mem, s._token, self._id, what="VectorRef.drop()", h=self._id)
        drop_strings(s, old)

    def _repr_html_(self) -> str:
        from . import _html

        return _html.vector(self)

    def __repr__(self):
        try:
            what = self._struct.name if self.struct is not None else str(self.dtype)
            return f"<VectorRef {what}[{len(self)}] id={self._id} of store {self._store.name!r}>"
        except Exception:
            return f"<VectorRef id={self._id} (dropped) of store {self._store.name!r}>"


class ArrayRef(VectorRef):
    """A fixed-shape array in shared memory (``store.array((1000, 3), "float32")``): it never
    grows, so its memory never moves; ``view()`` is the whole array, zero-copy and writable."""

    __slots__ = ()

    @property
    def shape(self) -> tuple:
        if self._dtype is None:
            self._read_type()
        return self._shape

    def view(self) -> np.ndarray:
        return super().view().reshape(self.shape)

    def __getitem__(self, index):
        v = self.view()[index]
        return v.copy() if isinstance(v, np.ndarray) else v

    def __setitem__(self, index, value) -> None:
        self.view()[index] = value

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 1

    def __iter__(self):
        return iter(self.view().copy())

    def to_numpy(self) -> np.ndarray:
        return self.view().copy()

    def to_pandas(self):
        """A pandas Series (1-d array) or DataFrame (2-d, a column per index of the second
        axis) over the array, zero-copy."""
        import pandas as pd

        view = self.view()
        if view.ndim == 1 and view.dtype.names is None:
            return pd.Series(view, copy=False)
        if view.ndim == 2 and view.dtype.names is None:
            return pd.DataFrame(view, copy=False)
        raise ValueError(f"an array of shape {view.shape} and dtype {view.dtype} has no pandas "
                         "form: pandas holds 1-d and 2-d arrays of numbers; use view()")

    def _fixed(self, *args, **kwargs):
        raise TypeError("an ArrayRef has a fixed shape: use store.vector(...) to grow")

    append = extend = insert = remove = pop = resize = clear = _fixed

    def __repr__(self):
        try:
            what = f"{self.dtype}{list(self.shape)}"
            return f"<ArrayRef {what} id={self._id} of store {self._store.name!r}>"
        except Exception:
            return f"<ArrayRef id={self._id} (dropped) of store {self._store.name!r}>"


def _vector_or_array(store, id: int) -> VectorRef:
    """The ref class for a vector handle: ArrayRef if its descriptor has a shape."""
    v = VectorRef._trusted(store, id)
    if v.dtype is not None and v._shape is not None:
        a = ArrayRef._trusted(store, id)
        a._dtype, a._struct, a._shape = v._dtype, v._struct, v._shape
        return a
    return v


_CLASSES[L.KIND_VECTOR] = VectorRef
