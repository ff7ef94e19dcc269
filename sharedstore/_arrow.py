"""``VectorRef.to_arrow()``: a vector's slots as Apache Arrow data (pyarrow, optional).

Zero-copy where Arrow's layout allows it.  Arrow keeps each column in one contiguous buffer,
so a NumPy array is taken without a copy when its values are contiguous: a plain numeric
vector (``store.vector("float64")``), and the values of a vector of sub-arrays.  The columns of
a table of records are interleaved in memory (one record after the other), which Arrow cannot
describe (it has no strides): each of them is gathered into a new buffer, one NumPy copy per
column.  ``to_pandas`` can keep those as strided views instead.

Buffers taken without a copy hold the view they wrap (pyarrow keeps a reference to the NumPy
array), and the view holds its pin (see :mod:`sharedstore.vectors`): the shared block they
read stays allocated until the last Arrow buffer over it is gone, even if the vector grows or
is dropped meanwhile.
"""

from __future__ import annotations

import numpy as np

from ._dtypes import plain_record

MISSING = ("VectorRef.to_arrow() needs pyarrow, an optional dependency: install it with "
           "`pip install 'sharedstore[arrow]'` (or `pip install pyarrow`)")


def pyarrow():
    """The pyarrow module, or ImportError saying how to install it."""
    try:
        import pyarrow as pa
    except ImportError as e:
        raise ImportError(MISSING) from e
    return pa


def vector_to_arrow(rt, view: np.ndarray, strings):
    """``view`` (a vector's zero-copy view) as a ``pyarrow.Table`` if its dtype has fields,
    else a ``pyarrow.Array``.

    Parameters
    ----------
    rt : Struct, _dtypes.PlainRecord or None
        The record type of the slots: which fields are owned "string" handles.
    strings : callable
        ``strings(handles) -> list of str``: resolves "string" handles (0 is "").
    """
    pa = pyarrow()
    if view.dtype.names is None:
        return column(pa, view, None, False, strings, "")
    return pa.table(struct_columns(pa, view, rt, strings, ""))


def struct_columns(pa, rows: np.ndarray, rt, strings, path: str) -> dict:
    """``{field: pyarrow array}`` of the 1-d structured array ``rows`` of record type ``rt``."""
    return {name: column(pa, rows[name], rt._nested.get(name), name in rt.strings, strings,
                         path + name)
            for name in rows.dtype.names or ()}  # (the caller checked: a structured array)


def column(pa, col: np.ndarray, rt, owned: bool, strings, path: str):
    """One column, as ``pyarrow.array`` converts it: numbers zero-copy when contiguous,
    ``str[N]`` as string, ``bytes[N]`` as binary; sub-arrays as fixed-size lists, nested
    records as struct arrays, owned strings (``owned``) resolved.  ``rt``: the record type of
    nested records; ``path``: the field, for errors."""
    if col.ndim > 1:  # a sub-array field: fixed-size lists, innermost dimension first
        n, inner = col.shape[0], col.shape[1:]
        flat = col.reshape(-1) if col.flags.c_contiguous else np.ascontiguousarray(col).reshape(-1)
        arr = column(pa, flat, rt, owned, strings, path)
        for size in reversed(inner):
            arr = pa.FixedSizeListArray.from_arrays(arr, size)
        assert len(arr) == n
        return arr
    if owned:
        return pa.array(strings(col), type=pa.string())
    if col.dtype.names is not None:
        children = struct_columns(pa, col, rt if rt is not None else plain_record(col.dtype),
                                  strings, path + ".")
        return pa.StructArray.from_arrays(list(children.values()), names=list(children))
    col = np.ascontiguousarray(col)  # Arrow has no strides: the one copy (none if contiguous)
    try:
        return pa.array(col)
    except pa.ArrowException as e:
        if not path:
            raise
        raise type(e)(f"field {path!r} ({col.dtype}): {e}") from e
