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
from . import _pycall
from ._pins import pinned_array
from ._kernels import status as S
from ._kernels import vector as KV
from ._kernels.pyentry import element_code
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
    descr = [tuple(x) if isinstance(x, list) else x for x in descr] if isinstance(descr, list) else descr
    return np.lib.format.descr_to_dtype(descr), None, shape


class VectorRef(Ref):
    """A growable vector of fixed-size slots (numbers or struct records) in shared memory."""

    __slots__ = ("_dtype", "_struct", "_shape", "_element")
    _kind = L.KIND_VECTOR

    def __init__(self, store, id: int):
        super().__init__(store, id)
        self._dtype = None
        self._shape = None
        self._element = None  # pyentry.element_code of the dtype, once known (append)

    @classmethod
    def _trusted(cls, store, id: int):
        self = super()._trusted(store, id)
        self._dtype = None
        self._shape = None
        self._element = None
        return self

    @classmethod
    def _create(cls, store, dtype, capacity: int = 0, shape=None) -> VectorRef:
        dt, struct, text = dtype_descriptor(dtype, shape)
        schema = store._intern(text)
        args = (store.mem, store._token, schema, dt.itemsize, int(capacity))
        h = KV.vector_new(*args)
        if h < 0:
            # the data block: its header words, then the records
            h = store._slow(h, KV.vector_new, args, "store.vector()",
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
        if self._dtype is None:
            _, _, schema = self._info()
            self._dtype, self._struct, self._shape = self._store._interned(schema, _from_descriptor)
        return self._dtype

    @property
    def struct(self) -> Struct | None:
        """The :class:`Struct` of a table's records, or None for a plain vector."""
        self.dtype
        return self._struct

    def __len__(self) -> int:
        return self._info()[0]

    def free_slots(self) -> list[int]:
        """Indices of removed slots (zeroed; ``insert`` reuses the last one first)."""
        s = self._store
        out = np.empty(64, dtype=np.int64)
        while True:
            n = KV.vector_free_slots(s.mem, out, self._id)
            if n < 0:
                n = s._slow(n, KV.vector_free_slots, (s.mem, out, self._id), "free_slots()")
            if n <= len(out):
                return out[:n].tolist()
            out = np.empty(n * 2, dtype=np.int64)

    # ---------------------------------------------------------------- writes
    def _records(self, values) -> np.ndarray:
        """``values`` as a C-contiguous array of this vector's dtype (dicts/tuples for tables;
        a table's "string" fields take str, its "ref" fields refs)."""
        dt = self.dtype
        if self._struct is not None:
            if isinstance(values, np.ndarray) and values.dtype == dt:
                return np.ascontiguousarray(values)
            rows = np.zeros(len(values), dtype=dt)
            for i, v in enumerate(values):
                self._fill(rows, i, v)
            return rows
        arr = np.asarray(values)
        if dt.subdtype is None and dt.names is None:
            if arr.ndim > 1:
                raise ValueError(f"a vector of {dt} takes a 1-D sequence of values, not an "
                                 f"array of shape {arr.shape}")
            if not (np.can_cast(arr.dtype, dt, casting="same_kind")
                    or arr.dtype.kind in "biu" and dt.kind in "biu"):  # ints of any sign/width
                raise TypeError(f"cannot put {arr.dtype} values in a vector of {dt} without "
                                "changing them: convert them first")
        return np.ascontiguousarray(np.asarray(values, dtype=dt).reshape(-1))

    def _fill(self, rows, i, v) -> None:
        struct = self._struct
        if isinstance(v, np.void) and v.dtype == rows.dtype:
            rows[i] = v
            return
        items = v.items() if isinstance(v, dict) else zip(struct.dtype.names, v)
        for name, x in items:
            if name in struct.strings:
                rows[name][i] = self._store.string(x).id if x else 0
            elif name in struct.refs:
                rows[name][i] = 0 if x is None else x.id
            elif name not in rows.dtype.fields:
                raise KeyError(f"{struct.name} has no field {name!r}")
            else:
                rows[name][i] = x

    def _call(self, fn, *args, what: str, hint: int = 0):
        s = self._store
        full = (s.mem, s._token, self._id) + args
        r = fn(*full)
        if r < 0:
            r = s._slow(r, fn, full, what, self._id, passthrough=(S.ERR_NOT_FOUND,), hint=hint)
        return r

    # an ndarray of the vector's dtype is copied by a C function (_pycall.method); the rest here
    extend = _pycall.method("vector_extend", "_slow_extend", "(values, /)",
                            "Append many slots in one call (an array of the dtype is copied "
                            "directly).", slots=("_cx", "_id", "_dtype"), arrays=True)

    def _slow_extend(self, values) -> None:
        rows = self._records(values)
        if len(rows):
            self._call(KV.vector_extend, rows.view(np.uint8).reshape(-1), what="extend()",
                       hint=rows.nbytes)

    # one number into a numeric vector runs as a C function (_pycall.method); the rest here
    append = _pycall.method("vector_append", "_slow_append", "(value, /)", "Append one slot.",
                            slots=("_cx", "_id", "_element"))

    def _slow_append(self, value) -> None:
        if self._element is None:
            self._element = element_code(self.dtype)  # (the next append can take the C path)
        self._slow_extend([value])  # records, and numbers the C path does not convert

    def insert(self, value) -> int:
        """Put a record in a free slot (or at the end); return its index."""
        rows = self._records([value])
        return self._call(KV.vector_insert, rows.view(np.uint8).reshape(-1), what="insert()",
                          hint=rows.nbytes)

    def remove(self, index: int) -> None:
        """Zero slot ``index`` (dropping the strings a table record owns) and free it for reuse."""
        if self._struct is not None and self._struct.string_offsets:
            rec = self[index]
            for name in self._struct.strings:
                if rec[name]:
                    StringRef._trusted(self._store, int(rec[name])).drop()
        r = self._call(KV.vector_remove, operator.index(index), what="remove()")
        if r == S.ERR_NOT_FOUND:
            raise IndexError(f"slot {index} is not in use (length {len(self)}, or already removed)")

    def __setitem__(self, index, value) -> None:
        n = len(self)
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step != 1:
                raise ValueError("slice assignment needs a step of 1")
            rows = self._records(value)
            if len(rows) != stop - start:
                raise ValueError(f"{len(rows)} values for a slice of {stop - start} slots")
        else:
            start = self._index(index, n)
            rows = self._records([value])
        r = self._call(KV.vector_write, start, rows.view(np.uint8).reshape(-1), what="set")
        if r == S.ERR_NOT_FOUND:
            raise IndexError(f"vector index out of range (length {len(self)})")

    def pop(self):
        """Remove and return the last slot's value."""
        n = len(self)
        if n == 0:
            raise IndexError("pop from an empty vector")
        value = self[n - 1]
        self.resize(n - 1)
        return value

    def resize(self, n: int) -> None:
        """Set the length: new slots are zero."""
        if n < 0:
            raise ValueError("a length cannot be negative")
        self._call(KV.vector_truncate, int(n), what="resize()", hint=n * self.dtype.itemsize)

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
        args = (s.mem, out, self._id, start, count)
        r = KV.vector_read(*args)
        if r < 0:
            r = s._slow(r, KV.vector_read, args, "vector read", self._id, passthrough=(S.ERR_NOT_FOUND,))
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
        while True:
            d, n, off = KV.vector_pin(s.mem, self._id, s._token)
            if d >= 0:
                break
            s._recover(d, "view()", self._id)
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
        if self._struct is not None and self._struct.string_offsets:
            arr = self.to_numpy()
            free = set(self.free_slots())
            for i, rec in enumerate(arr):
                if i not in free:
                    for name in self._struct.strings:
                        if rec[name]:
                            StringRef._trusted(self._store, int(rec[name])).drop()
        s = self._store
        args = (s.mem, s._token, self._id)
        r = KV.vector_drop(*args)
        if r < 0:
            s._slow(r, KV.vector_drop, args, "VectorRef.drop()", self._id)

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
        self.dtype
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

    def _fixed(self, *args, **kwargs):
        raise TypeError("an ArrayRef has a fixed shape: use store.vector(...) to grow")

    append = extend = insert = remove = pop = resize = clear = _fixed

    def __repr__(self):
        try:
            return f"<ArrayRef {self.dtype}{list(self.shape)} id={self._id} of store {self._store.name!r}>"
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
