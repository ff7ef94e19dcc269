"""Records as a reader wants them: owned strings as str, refs as refs, nested records as
records.  :class:`Record` is one record of a table read by index (``t[i]``); the columns of
``to_pandas`` come from :func:`pandas_columns`.  The raw form (handles as ints) stays what
``view()`` and slices give.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ._dtypes import PlainRecord, exact_copy, record_copy

if TYPE_CHECKING:
    from .store import Store
    from .structs import Struct


class Record:
    """One record of a table, read: ``t[i]`` (and iterating a table, ``t.pop()``).

    A copy, taken whole (never half written) and resolved when read, so that it stays what the
    record was (a string dropped later, by another process say, is still here).  It reads as
    the ``np.void`` of ``t.view()[i]`` reads, with what the record owns resolved: ``rec["x"]``
    is a NumPy scalar or a sub-array, ``rec["name"]`` of a ``"string"`` field a str, of a
    ``"ref"`` field a ref (or None), of a nested struct field a :class:`Record`, of an array
    of structs an array of them.
    ``rec[0]`` reads the first field; iterating gives the values in field order.
    ``rec.raw`` is the record as stored (``np.void``, handles as ints); ``rec.to_dict()`` a
    dict that ``append`` takes back (the strings are copied into new ones, owned by the new
    record).
    """

    __slots__ = ("_raw", "_struct", "_values")

    def __init__(self, store: Store, struct: Struct, raw: np.void):
        """Not for users: a table's reads make Records (``raw``: the record, a copy)."""
        self._struct = struct
        self._raw = raw
        self._values = {n: read_field(store, struct, raw, n) for n in raw.dtype.names or ()}

    @property
    def raw(self) -> np.void:
        """The record as stored: an ``np.void`` of the table's dtype, handles as ints."""
        return self._raw

    @property
    def dtype(self) -> np.dtype:
        """The record's dtype (the table's)."""
        return self._raw.dtype

    @property
    def struct(self) -> Struct:
        """The record's :class:`~sharedstore.Struct`."""
        return self._struct

    def keys(self) -> list[str]:
        """The field names, in order."""
        return list(self._raw.dtype.names or ())

    def __getitem__(self, key: str | int) -> Any:
        """The value of field ``key`` (a name, or a position as ``np.void`` takes), resolved
        (see the class doc).

        Raises
        ------
        KeyError
            If there is no field of that name.
        IndexError
            If a position is out of range.
        """
        if not isinstance(key, str):
            key = (self._raw.dtype.names or ())[key]  # (IndexError, TypeError as a tuple's)
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        """The fields' values, in order (as iterating an ``np.void`` gives them)."""
        return (self[n] for n in self.keys())

    def __len__(self) -> int:
        """How many fields the record has."""
        return len(self.keys())

    def to_dict(self) -> dict[str, Any]:
        """Every field's value, resolved, nested records as dicts (what ``append`` takes)."""
        return {n: _plain(self[n]) for n in self.keys()}

    def __eq__(self, other: object) -> bool:
        """Records are equal when their structs and every resolved value are."""
        if not isinstance(other, Record):
            return NotImplemented
        return other._struct == self._struct and all(
            _same(a, b) for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]  # (a copy of changing data, as np.void)

    def __repr__(self) -> str:
        body = ", ".join(f"{n!r}: {self[n]!r}" for n in self.keys())
        return f"Record({self._struct.name}, {{{body}}})"


def read_field(store: Store, struct: Any, raw: np.void, name: str) -> Any:
    """Field ``name`` of the record ``raw`` of ``struct``, resolved (see :class:`Record`)."""
    v = raw[name]
    if name in struct.strings:
        return strings_of(store, v)
    if name in struct.refs:
        return _each(v, lambda h: store.ref(int(h)) if h else None)
    inner = struct._nested.get(name)
    v = _copy(v)  # (``raw`` may be the record in the store: a StructRef's)
    if inner is not None and not isinstance(inner, PlainRecord):
        return _each(v, lambda r: Record(store, inner, r))
    return v


def _copy(v: Any) -> Any:
    """A copy of a field's value, its bytes exact (numpy's copies of records skip padding)."""
    if isinstance(v, np.void):
        return record_copy(v)[0]
    return exact_copy(v) if isinstance(v, np.ndarray) else v


def python_scalar(v: Any) -> Any:
    """A copy of a field's value as a StructRef (and a plain vector's ``v[i]``) gives it: a
    Python scalar, except datetime64/timedelta64 (their Python form drops the unit, or turns
    ns into an int) and the numbers Python has no type for (``longdouble``, given as NumPy's);
    sub-arrays and records as NumPy copies."""
    if isinstance(v, np.generic) and v.dtype.names is None and v.dtype.kind not in "MmV":
        return v.item()
    return _copy(v)


def strings_of(store: Store, handles: Any) -> Any:
    """The str of an owned-string handle (0 is ""), or an object array of them for an array
    of handles."""
    from .refs import StringRef

    return _each(handles, lambda h: StringRef._trusted(store, int(h)).get() if h else "")


def _each(v: Any, fn: Any) -> Any:
    """``fn(v)`` of a scalar, or an object array of ``fn`` of each item of an array."""
    if not isinstance(v, np.ndarray):
        return fn(v)
    out = np.empty(v.shape, dtype=object)
    for idx in np.ndindex(*v.shape):
        out[idx] = fn(v[idx])
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, Record):
        return v.to_dict()
    if isinstance(v, np.ndarray) and v.dtype.kind == "O":
        return [_plain(x) for x in v]
    return v


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and all(_same(x, y) for x, y in zip(a.flat, b.flat)) \
            if a.dtype.kind == "O" or b.dtype.kind == "O" else bool(np.array_equal(a, b))
    return bool(a == b)


def pandas_columns(store: Store, rt: Any, rows: np.ndarray, prefix: str = "") -> dict[str, Any]:
    """The columns of ``to_pandas()`` for the records ``rows`` of record type ``rt``: numbers
    as views of ``rows``, owned strings as str, nested records flattened into
    ``outer.inner.x`` columns (as ``pandas.json_normalize`` names them), sub-arrays and
    arrays of records as a column of one array per row."""
    cols: dict[str, Any] = {}
    for name in rows.dtype.names or ():
        col = rows[name]
        key = prefix + name
        inner = rt._nested.get(name)
        if name in rt.strings:
            flat = [strings_of(store, h) for h in col.reshape(-1).tolist()]
            if col.ndim == 1:
                cols[key] = flat
            else:
                arr = np.empty(col.shape, dtype=object)
                arr.reshape(-1)[:] = flat
                cols[key] = list(arr)
        elif inner is not None and col.ndim == 1:
            cols.update(pandas_columns(store, inner, col, key + "."))
        elif inner is not None and not isinstance(inner, PlainRecord):
            cols[key] = [read_field(store, rt, r, name) for r in rows]
        elif col.ndim > 1:
            cols[key] = list(col)
        elif col.dtype.kind == "S":
            cols[key] = col.astype(object)  # (as pandas makes a bytes column: of bytes)
        else:
            cols[key] = col
    return cols
