"""Values as slots of a vector: records of a table (a vector of a :class:`~sharedstore.Struct`
or of a plain structured dtype) in every form users build them, and the elements of any other
vector.

One record may be a dict (by field name), a tuple or list (every field, in order), an
``np.void`` or a 0-d structured array, a structured array of length 1, or a
:class:`~sharedstore.Record` read from a table.  Many records are a structured array, or a
sequence of single records.  A structured array whose dtype is not the table's is converted
field by field, *by name* (numpy's own assignment between structured dtypes goes by position):
its fields must be fields of the table (in any order; the others are zero, as in a dict).

Field values go through one conversion (``_dtypes.cast``), column by column: a value its field
cannot hold as it is (an int out of range, a float with a fraction into an int field, a str
longer than its field, another kind of value) is a ``TypeError`` naming the field and the first
offending row, and nothing is written.  A sub-array field takes a value of its shape (or one
value for all of it); a nested record a record in any form above (nested dicts, tuples...); an
array of records a sequence of them of its shape.

``"string"`` fields take a str (a new string in the store, owned by the record) or None;
``"ref"`` fields a ref of the same store or None; shaped ones (``"string[3]"``) a sequence of
them.  (A structured array of the table's own dtype, or with integer columns for those fields,
carries handles, copied as they are.)  Strings made for rows that never reach the table (a later
record was refused, or the write failed) are dropped again: :func:`table_rows` returns them so
that the caller can (:func:`drop_strings`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._dtypes import Label, as_values, cast, contiguous_records, leaf, python_scalars, record_copy
from ._resolved import Record

_ONE = ("a record is a dict, a tuple of every field, a numpy record (np.void) or a structured "
        "array of one record")


def table_rows(store, rt, values, *, one: bool) -> tuple[np.ndarray, list[int]]:
    """``values`` (one record if ``one``, else many) as a C-contiguous 1-d array of the record
    type ``rt``'s dtype (``rt``: a Struct or a ``_dtypes.PlainRecord``), and the handles of the
    strings made for them (see the module doc)."""
    made: list[int] = []
    try:
        return _rows(store, rt, values, one, made, "", None), made
    except BaseException:
        drop_strings(store, made)
        raise


def element_rows(dt: np.dtype, values: Any, *, one: bool) -> np.ndarray:
    """``values`` (one slot's value if ``one``) as a C-contiguous array of slots of the
    vector of ``dt`` (neither a Struct nor structured): shape ``(n,) + dt.shape`` of
    ``dt.base``, a sub-array element being one slot."""
    base, shape = leaf(dt)
    label = Label(lambda: f"a vector of {dt}")
    if one and not shape:
        plain = python_scalars([values], base)
        if plain is not None:
            return plain
    arr = _asarray(values, label, base)
    if one:
        if arr.shape != shape:
            try:
                arr = np.broadcast_to(arr, shape)
            except ValueError:
                raise ValueError(f"{label} takes one value of shape {shape}, not one of shape "
                                 f"{arr.shape}") from None
        arr = arr.reshape((1, *shape))
    else:
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.shape[1:] != shape:
            want = f"values of shape {shape}" if shape else "values (a 1-d sequence)"
            raise ValueError(f"{label} takes a sequence of {want}, not an array of shape "
                             f"{arr.shape}")
    return np.ascontiguousarray(cast(arr, base, label))


def field_rows(store, rt, name: str, value: Any, made: list[int]) -> np.ndarray:
    """One value of field ``name`` (what ``StructRef[name] = value`` writes) as an array of
    shape ``(1,) + its shape`` of its base dtype (strings made for it go in ``made``)."""
    return _column(store, rt, name, [value], np.zeros(1, np.int64), made, "")


def drop_strings(store, handles) -> None:
    """Drop the strings ``handles`` (made for rows that did not reach the table, or owned by
    records that were overwritten, removed or cut off).  One already dropped is skipped: a
    process writing the same record at the same time may have dropped it."""
    from .errors import UseAfterFreeError
    from .refs import StringRef

    for h in handles:
        try:
            StringRef._trusted(store, h).drop()
        except UseAfterFreeError:
            pass


def owned_strings(struct, rows: np.ndarray) -> list[int]:
    """The handles of the strings that ``rows`` own (their "string" fields, nested structs'
    and arrays' included; 0, an empty field, left out)."""
    if not struct.string_offsets or not len(rows):
        return []
    raw = np.ascontiguousarray(rows).view(np.uint8).reshape(len(rows), struct.dtype.itemsize)
    handles = np.concatenate([raw[:, o:o + 8].copy().view(np.int64).reshape(-1)
                              for o in struct.string_offsets])
    return handles[handles != 0].tolist()


# ------------------------------------------------------------------------------- records
def _label(rt, path: str, name: str) -> Label:
    """``field 'inner.x' of Outer (float64)`` for messages (made if one is)."""
    of = f" of {rt.name}" if rt.name else ""
    return Label(lambda: f"field {path + name!r}{of} ({rt.dtype[name]})")


def _rows(store, rt, values, one: bool, made: list, path: str,
          rows: np.ndarray | None) -> np.ndarray:
    """``values`` as a 1-d array of ``rt``'s records; ``rows``: the row number of each, for
    messages (default: its index)."""
    dt = rt.dtype
    if isinstance(values, np.void) and values.dtype.names is not None:
        values = record_copy(values)  # (its bytes, padding included)
    if isinstance(values, np.ndarray) and values.dtype.names is not None:
        if values.ndim > 1 or (one and values.size != 1):
            raise TypeError(f"{_ONE}, not a structured array of shape {values.shape}" if one else
                            f"records are a 1-d structured array, not one of shape {values.shape}")
        src = values.reshape(-1)
        if src.dtype == dt:
            return contiguous_records(src)
        return _convert(store, rt, src, made, path, rows)
    if isinstance(values, np.ndarray) and values.ndim == 0 and values.dtype.hasobject:
        values = values.item()  # (np.asarray of a dict: a 0-d object array)
    if one:
        values = [values]
    elif isinstance(values, (dict, str, bytes, Record)) or not hasattr(values, "__len__"):
        raise TypeError(f"records are a structured array or a sequence of records, not "
                        f"{type(values).__name__}")
    return _from_python(store, rt, list(values), made, path, rows)


def _from_python(store, rt, records: list, made: list, path: str,
                 rows: np.ndarray | None) -> np.ndarray:
    """Single records (module doc) as an array: gathered by field, each field converted as
    one column."""
    dt = rt.dtype
    names = dt.names
    nums = np.arange(len(records)) if rows is None else rows
    out = np.zeros(len(records), dtype=dt)
    columns: dict[str, tuple[list[int], list[Any]]] = {}
    for i, v in enumerate(records):
        if isinstance(v, Record):
            v = v.to_dict()  # (its strings are read: the new record owns copies)
        if isinstance(v, (np.void, np.ndarray)) and v.dtype.names is not None:
            if v.size != 1 or v.ndim > 1:
                raise TypeError(f"{_ONE}, not a structured array of shape {v.shape}")
            one = _rows(store, rt, v, True, made, path, nums[i:i + 1])
            # byte by byte: numpy's assignment of records copies their fields, not padding
            out.view(np.uint8).reshape(len(out), -1)[i] = one.view(np.uint8)
            continue
        if isinstance(v, dict):
            items: Any = v.items()
            for name in v:
                if name not in names:
                    raise TypeError(f"{_struct(rt, path)} has no field {name!r}; its fields are "
                                    f"{', '.join(names)}")
        elif isinstance(v, (tuple, list)):
            if len(v) != len(names):
                raise TypeError(f"a {_what(rt, path)} record as a tuple has {len(names)} values "
                                f"({', '.join(names)}), not {len(v)}: use a dict for some fields")
            items = zip(names, v)
        else:
            raise TypeError(f"{_ONE}, not {type(v).__name__} ({v!r:.60})")
        for name, x in items:
            idx, xs = columns.setdefault(name, ([], []))
            idx.append(i)
            xs.append(x)
    for name, (idx, xs) in columns.items():
        if len(idx) == len(records):  # (every record has the field: the common case)
            out[name] = _column(store, rt, name, xs, nums, made, path)
        else:
            at = np.asarray(idx, dtype=np.int64)
            out[name][at] = _column(store, rt, name, xs, nums[at], made, path)
    return out


def _struct(rt, path: str) -> str:
    if path:
        return f"field {path[:-1]!r}"
    return f"struct {rt.name!r}" if rt.name else "the record dtype"


def _what(rt, path: str) -> str:
    return rt.name or path[:-1] or "record"


def _column(store, rt, name: str, xs: list, rows: np.ndarray, made: list,
            path: str) -> np.ndarray:
    """The values ``xs`` of field ``name`` (one per row) as an array of shape
    ``(len(xs),) + the field's shape`` of its base dtype."""
    base, shape = leaf(rt.dtype[name])
    label = _label(rt, path, name)
    if name in rt.strings:
        return _handles(xs, shape, _owning(store, label, made), label, rows)
    if name in rt.refs:
        return _handles(xs, shape, _referring(store, label), label, rows)
    inner = rt._nested.get(name)
    if inner is not None:
        sub = f"{path}{name}."
        if not shape:
            return _rows(store, inner, xs, False, made, sub, rows)
        flat: list[Any] = []
        for x, r in zip(xs, rows):
            if isinstance(x, np.ndarray) and x.dtype.names is not None and x.shape == shape:
                flat.extend(x.reshape(-1))
            else:
                flat.extend(_leaves(x, shape, label, int(r)))
        per = int(np.prod(shape))
        recs = _rows(store, inner, flat, False, made, sub, np.repeat(rows, per))
        return recs.reshape((len(xs), *shape))
    plain = _plain_values(xs, base, shape)
    if plain is not None:
        return plain
    return cast(_values(xs, base, shape, label, rows), base, label, rows)


def _plain_values(xs: list, base: np.dtype, shape: tuple[int, ...]) -> np.ndarray | None:
    """``python_scalars`` of the values (of a sub-array field: lists of them, of its shape),
    or None if they are not all plain Python values the field holds as they are."""
    if not shape:
        return python_scalars(xs, base)
    if len(xs) > 16 or not all(type(x) is list or type(x) is tuple for x in xs):
        return None  # (many rows: numpy's conversion and the checks, vectorized, cost less)
    try:
        flat = [leaf for x in xs for leaf in _leaves(x, shape, "", 0)]
    except TypeError:
        return None
    plain = python_scalars(flat, base)
    return None if plain is None else plain.reshape((len(xs), *shape))


def _values(xs: list, base: np.dtype, shape: tuple[int, ...], label: Label,
            rows: np.ndarray) -> np.ndarray:
    """One value per row as an array of shape ``(rows,) + shape`` (one value may stand for a
    whole sub-array, as numpy broadcasts it)."""
    try:
        arr = _asarray(xs, label, base)
    except TypeError:
        arr = None  # (ragged: the row at fault is found below)
    if arr is not None and arr.dtype.names is None:
        if arr.shape[1:] == shape:
            return arr
        if arr.ndim == 1 and shape:
            return np.broadcast_to(arr.reshape((len(xs),) + (1,) * len(shape)),
                                   (len(xs), *shape))
    for x, r in zip(xs, rows):
        one = _asarray(x, label, base)
        if one.dtype.names is not None:
            raise TypeError(f"{label}: row {r} holds a record, not a value of the field")
        if one.shape != shape and not (shape and one.ndim == 0):
            raise TypeError(f"{label}: row {r} holds a value of shape {one.shape}, not {shape}")
    raise TypeError(f"{label}: the values do not make one array")


def _asarray(x: Any, label: Label, base: np.dtype) -> np.ndarray:
    try:
        return as_values(x, base)
    except ValueError as e:  # (ragged nesting)
        raise TypeError(f"{label}: {e}") from None


def _leaves(x: Any, shape: tuple[int, ...], label: Label | str, row: int) -> list:
    """The ``prod(shape)`` items of the nested sequence ``x`` of that shape, in C order."""
    if not shape:
        return [x]
    if isinstance(x, np.ndarray) and x.shape == shape:
        return list(x.reshape(-1))
    if isinstance(x, (list, tuple, np.ndarray)) and len(x) == shape[0]:
        return [leaf for item in x for leaf in _leaves(item, shape[1:], label, row)]
    raise TypeError(f"{label}: row {row} is not a sequence of shape {shape} "
                    f"({type(x).__name__})")


def _handles(xs: list, shape: tuple[int, ...], handle: Callable[[Any], int], label: Label,
             rows: np.ndarray) -> np.ndarray:
    """Handles of "string" or "ref" fields: ``handle(x)`` of each item of each value."""
    out = np.zeros((len(xs), *shape), dtype=np.int64)
    for j, (x, r) in enumerate(zip(xs, rows)):
        if shape:
            out[j].reshape(-1)[:] = [handle(v) for v in _leaves(x, shape, label, int(r))]
        else:
            out[j] = handle(x)
    return out


def _owning(store, label: Label, made: list) -> Callable[[Any], int]:
    return lambda x: _string_handle(store, label, x, made)


def _referring(store, label: Label) -> Callable[[Any], int]:
    return lambda x: _ref_handle(store, label, x)


def _string_handle(store, label: Label | str, x, made: list) -> int:
    if x is None or (isinstance(x, str) and x == ""):
        return 0
    if isinstance(x, str):
        h = store.string(str(x)).id
        made.append(h)
        return h
    raise TypeError(f"{label} is a string: give a str, not {type(x).__name__}")


def _ref_handle(store, label: Label, x) -> int:
    if x is None:
        return 0
    h = store._handle_of(x)  # (InvalidHandleError for a ref of another store)
    if h is not None:
        return h
    raise TypeError(f"{label} holds a ref or None, not {type(x).__name__}")


def _convert(store, rt, src: np.ndarray, made: list, path: str,
             rows: np.ndarray | None) -> np.ndarray:
    """A structured array of another dtype as ``rt``'s records, field by field by name."""
    dt = rt.dtype
    names = src.dtype.names or ()  # (the caller checked: a structured array)
    nums = np.arange(len(src)) if rows is None else rows
    extra = [n for n in names if n not in dt.names]
    if extra:
        raise TypeError(f"{_struct(rt, path)} has no field {extra[0]!r}; its fields are "
                        f"{', '.join(dt.names)} (a structured array may have any of them, in "
                        "any order)")
    out = np.zeros(len(src), dtype=dt)
    for name in names:
        col, (base, shape) = src[name], leaf(dt[name])
        label = _label(rt, path, name)
        inner = rt._nested.get(name)
        if col.shape[1:] != shape:
            raise TypeError(f"{label}: a column of shape {list(col.shape[1:])} values cannot "
                            "be put in it: convert that column first")
        if name in rt.strings and col.dtype.kind in "USO":
            out[name] = _handles(col.tolist(), shape, _owning(store, label, made), label,
                                 nums)
        elif name in rt.refs and col.dtype.kind == "O":
            out[name] = _handles(col.tolist(), shape, _referring(store, label), label, nums)
        elif inner is not None and col.dtype.names is not None:
            per = int(np.prod(shape))
            flat = col.reshape(-1)
            sub = flat if flat.dtype == inner.dtype else _convert(
                store, inner, flat, made, f"{path}{name}.", np.repeat(nums, per))
            out[name] = sub.reshape(col.shape)
        elif inner is not None or col.dtype.names is not None:
            raise TypeError(f"{label}: {col.dtype} values cannot be put in it: a record goes "
                            "in a record field")
        else:
            out[name] = cast(col, base, label, nums)
    return out
