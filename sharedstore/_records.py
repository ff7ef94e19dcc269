"""Records of a table (a vector of a :class:`~sharedstore.Struct`) in every form users build
them, as rows of the table's dtype.

One record may be a dict (by field name), a tuple or list (every field, in order), an
``np.void`` or a 0-d structured array, or a structured array of length 1.  Many records are a
structured array, or a sequence of single records.  A structured array whose dtype is not the
table's is converted field by field, *by name* (numpy's own assignment between structured
dtypes goes by position): its fields must be fields of the table (in any order; the others
are zero, as in a dict), and each field's values must cast to the table's field type without
changing kind (``float32`` to ``float64``,
``int16`` to ``int64``, a str column for a ``"string"`` field); anything else is a
``TypeError`` that names the field.

``"string"`` fields take a str (a new string in the store, owned by the record) or None;
``"ref"`` fields a ref of the same store or None.  (A structured array of the table's own dtype,
or with integer columns for those fields, carries handles, copied as they are.)  Strings made
for rows that never reach the table (a later record was refused, or the write failed) are
dropped again: :func:`table_rows` returns them so that the caller can (:func:`drop_strings`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

_ONE = ("a record is a dict, a tuple of every field, a numpy record (np.void) or a structured "
        "array of one record")


def table_rows(store, struct, values, *, one: bool) -> tuple[np.ndarray, list[int]]:
    """``values`` (one record if ``one``, else many) as a C-contiguous 1-d array of the
    struct's dtype, and the handles of the strings made for them (see the module doc)."""
    made: list[int] = []
    try:
        return _rows(store, struct, values, one, made), made
    except BaseException:
        drop_strings(store, made)
        raise


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
    included; 0, an empty field, left out)."""
    if not struct.string_offsets or not len(rows):
        return []
    raw = np.ascontiguousarray(rows).view(np.uint8).reshape(len(rows), struct.dtype.itemsize)
    handles = np.concatenate([raw[:, o:o + 8].copy().view(np.int64).reshape(-1)
                              for o in struct.string_offsets])
    return handles[handles != 0].tolist()


def _rows(store, struct, values, one: bool, made: list) -> np.ndarray:
    dt = struct.dtype
    if isinstance(values, np.void) and values.dtype.names is not None:
        values = np.array(values, dtype=values.dtype)  # a 0-d structured array
    if isinstance(values, np.ndarray) and values.dtype.names is not None:
        if values.ndim > 1 or (one and values.size != 1):
            raise TypeError(f"{_ONE}, not a structured array of shape {values.shape}" if one else
                            f"records are a 1-d structured array, not one of shape {values.shape}")
        src = values.reshape(-1)
        if src.dtype == dt:
            return np.ascontiguousarray(src)
        return _convert(store, struct, src, made)
    if isinstance(values, np.ndarray) and values.ndim == 0 and values.dtype.hasobject:
        values = values.item()  # (np.asarray of a dict: a 0-d object array)
    if one:
        values = [values]
    elif isinstance(values, (dict, str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"records are a structured array or a sequence of records, not "
                        f"{type(values).__name__}")
    rows = np.zeros(len(values), dtype=dt)
    for i, v in enumerate(values):
        _fill(store, struct, rows, i, v, made)
    return rows


def _fill(store, struct, rows, i: int, v, made: list) -> None:
    """Put the single record ``v`` (any form of the module doc) in ``rows[i]``."""
    if isinstance(v, np.void) and v.dtype.names is not None:
        v = np.array(v, dtype=v.dtype)
    if isinstance(v, np.ndarray) and v.dtype.names is not None:
        if v.size != 1 or v.ndim > 1:
            raise TypeError(f"{_ONE}, not a structured array of shape {v.shape}")
        rows[i] = _rows(store, struct, v, True, made)[0]
        return
    names = struct.dtype.names
    items: Iterable[tuple[str, Any]]
    if isinstance(v, dict):
        items = v.items()
    elif isinstance(v, (tuple, list)):
        if len(v) != len(names):
            raise TypeError(f"a {struct.name} record as a tuple has {len(names)} values "
                            f"({', '.join(names)}), not {len(v)}: use a dict for some fields")
        items = zip(names, v)
    else:
        raise TypeError(f"{_ONE}, not {type(v).__name__} ({v!r:.60})")
    for name, x in items:
        if name not in rows.dtype.fields:
            raise TypeError(f"struct {struct.name!r} has no field {name!r}; its fields are "
                            f"{', '.join(names)}")
        if name in struct.strings:
            x = _string_handle(store, struct, name, x, made)
        elif name in struct.refs:
            x = _ref_handle(store, struct, name, x)
        try:
            rows[name][i] = x
        except (TypeError, ValueError) as e:
            raise TypeError(f"field {name!r} of {struct.name} is {struct.dtype[name]}; it cannot "
                            f"hold {x!r:.60} ({e})") from None


def _string_handle(store, struct, name: str, x, made: list) -> int:
    if x is None or (isinstance(x, str) and x == ""):
        return 0
    if isinstance(x, str):
        h = store.string(x).id
        made.append(h)
        return h
    raise TypeError(f"field {name!r} of {struct.name} is a string: give a str, not "
                    f"{type(x).__name__}")


def _ref_handle(store, struct, name: str, x) -> int:
    if x is None:
        return 0
    h = store._handle_of(x)  # (InvalidHandleError for a ref of another store)
    if h is not None:
        return h
    raise TypeError(f"field {name!r} of {struct.name} holds a ref or None, not "
                    f"{type(x).__name__}")


def _convert(store, struct, src: np.ndarray, made: list) -> np.ndarray:
    """A structured array of another dtype as rows of the struct's, field by field by name."""
    dt = struct.dtype
    names = src.dtype.names or ()  # (the caller checked: a structured array)
    extra = [n for n in names if n not in dt.names]
    if extra:
        raise TypeError(f"struct {struct.name!r} has no field {extra[0]!r}; its fields are "
                        f"{', '.join(dt.names)} (a structured array may have any of them, in "
                        "any order)")
    rows = np.zeros(len(src), dtype=dt)
    for name in names:
        col, to = src[name], dt[name]
        if name in struct.strings and col.dtype.kind in "USO":
            rows[name] = [_string_handle(store, struct, name, x, made) for x in col.tolist()]
        elif name in struct.refs and col.dtype.kind == "O":
            rows[name] = [_ref_handle(store, struct, name, x) for x in col.tolist()]
        elif to.names is not None and col.dtype.names is not None and not to.shape:
            inner = struct._nested.get(name)
            if inner is None:
                raise TypeError(f"field {name!r} of {struct.name}: a nested record needs its "
                                f"own dtype {to}")
            rows[name] = _convert(store, inner, col, made)
        elif col.shape[1:] != to.shape or not np.can_cast(col.dtype.base, to.base, "same_kind"):
            raise TypeError(f"field {name!r} of {struct.name} is {to}; {col.dtype.base}"
                            f"{list(col.shape[1:]) or ''} values cannot be put in it without "
                            "changing them: convert that column first")
        else:
            rows[name] = col
    return rows
