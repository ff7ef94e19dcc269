"""NumPy dtypes as the store keeps them: which it holds, how it records them, and how values
of one type become values of another without changing.

*Which.*  Every dtype whose values are plain bytes: numbers of every width (``float16`` to
``longdouble``, ``complex64`` to ``clongdouble``), bools, ``datetime64``/``timedelta64`` of
every unit, ``str``/``bytes`` of a fixed length (``U``/``S``), raw ``V`` bytes, either byte
order, sub-arrays, and structured dtypes (nested, aligned or packed, with offsets, padding and
titles).  :func:`storable` refuses the others by name: dtypes holding Python objects
(``object``, ``StringDType``), and types (or fields) of no size (``U0``, an empty struct).

*How it is recorded.*  :func:`to_json` is an exact, JSON-able form: a structured dtype keeps
its offsets, item size, titles and its ``isalignedstruct`` flag (NumPy's own ``descr`` drops the
flag, and turns a sub-array dtype into plain ``V`` bytes); :func:`from_json` gives back a dtype
equal to the original with the same flags, at every level.

*Conversions.*  :func:`cast` turns an array of one type into the values of another, and
refuses (``TypeError`` naming the field and the first offending row) any value the target
cannot hold as it is: an int out of range, a float with a fraction (or NaN) into an int, a
string longer than its field, a datetime finer than its field's unit, a complex number with
an imaginary part into a real field, a finite number that overflows to infinity.  Floats
round to the target's precision (``0.1`` into ``float32``), as every NumPy user expects.
An int into a ``datetime64``/``timedelta64`` field is a count of its unit (as NumPy reads
it, and as ``.item()`` gives a ``datetime64[ns]`` back); text and ``datetime`` objects are
parsed.  Kinds that have no such conversion (a str into a number, a number into a str, a float
into a datetime) are refused.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np

_NUMERIC = "biufc"
_TEXT = "US"


def storable(dt: np.dtype, what: str | Label, error: type[Exception] = TypeError) -> np.dtype:
    """``dt`` if the store can hold its values as bytes, else ``error`` naming ``what`` (the
    vector, or the struct and field), the field inside the dtype, and why."""
    bad = _unstorable(dt, "")
    if bad is not None:
        path, why = bad
        at = f" (field {path!r})" if path else ""
        raise error(f"{what}: {dt}{at} {why}")
    return dt


def _unstorable(dt: np.dtype, path: str) -> tuple[str, str] | None:
    """(the field's path, why) for the first part of ``dt`` the store cannot hold, or None."""
    if dt.subdtype is not None:
        return _unstorable(dt.subdtype[0], path)
    if dt.names is not None:
        if dt.type is not np.void:
            return path, f"has fields over a {dt.type.__name__} base: use a plain structured dtype"
        for name in dt.names:
            bad = _unstorable(dt[name], f"{path}.{name}" if path else name)
            if bad is not None:
                return bad
    if dt.hasobject:
        return path, ("holds Python objects, which only a process's own memory can: use a map "
                      "or a ListRef for objects, 'string' fields for text of any length")
    if dt.itemsize == 0:
        return path, "has no size: give it a length ('U8', 'S4', 'V2')"
    return None


def leaf(dt: np.dtype) -> tuple[np.dtype, tuple[int, ...]]:
    """(the element dtype, the whole shape) of a field's dtype: a sub-array of a sub-array
    (which a structured dtype may hold as such) is one shape, as its arrays have."""
    shape: tuple[int, ...] = ()
    while dt.subdtype is not None:
        dt, sub = dt.subdtype
        shape += sub
    return dt, shape


def record_copy(v: np.void) -> np.ndarray:
    """A 1-record array holding the bytes of the record ``v``, padding included
    (``np.void.copy()`` and ``np.array(v)`` copy its fields, leaving the padding as it
    falls)."""
    return np.frombuffer(bytearray(np.frombuffer(v, dtype=np.uint8)), dtype=v.dtype)


def exact_copy(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` with its bytes exact: NumPy copies records (``copy()``,
    ``ascontiguousarray``, assignment) field by field, leaving padding as it falls."""
    if a.dtype.names is None:
        return a.copy()
    raw = a[..., np.newaxis].view(np.uint8)  # (..., itemsize): each record's bytes
    return raw.copy().view(a.dtype).reshape(a.shape)


def contiguous_records(a: np.ndarray) -> np.ndarray:
    """``a`` if it is C-contiguous, else :func:`exact_copy` of it."""
    return a if a.flags.c_contiguous else exact_copy(a)


# ------------------------------------------------------------------------------- recording
def to_json(dt: np.dtype) -> Any:
    """An exact JSON-able form of ``dt`` (see the module doc): a type string (``'<f8'``,
    ``'<M8[ns]'``, ``'|S3'``), ``{"sub": base, "shape": [...]}`` for a sub-array, or the
    fields of a structured dtype with their offsets, item size, titles and alignment flag."""
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return {"sub": to_json(base), "shape": list(shape)}
    if dt.names is not None:
        by_name: Any = dt.fields
        fields: list[tuple[Any, ...]] = [by_name[n] for n in dt.names]
        d: dict[str, Any] = {"names": list(dt.names),
                             "formats": [to_json(f[0]) for f in fields],
                             "offsets": [f[1] for f in fields],
                             "itemsize": dt.itemsize,
                             "aligned": bool(dt.isalignedstruct)}
        if any(len(f) > 2 for f in fields):
            d["titles"] = [f[2] if len(f) > 2 else None for f in fields]
        return d
    return dt.str


def from_json(d: Any) -> np.dtype:
    """The dtype :func:`to_json` describes (ValueError, TypeError or KeyError if ``d`` is not
    such a form)."""
    if isinstance(d, str):
        return np.dtype(d)
    if "sub" in d:
        return np.dtype((from_json(d["sub"]), tuple(int(n) for n in d["shape"])))
    spec: Any = {"names": d["names"], "formats": [from_json(f) for f in d["formats"]],
                 "offsets": d["offsets"], "itemsize": d["itemsize"]}
    if "titles" in d:
        spec["titles"] = d["titles"]
    return np.dtype(spec, align=bool(d["aligned"]))


def exact_json(dt: np.dtype) -> bool:
    """Whether NumPy's own ``descr`` form (``numpy.lib.format``), through JSON and back as
    :func:`from_descr` reads it, gives ``dt`` back with the same flags: then the store
    records it that way, as it always has."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # (a descr misread as a deprecated alias, say)
            back = from_descr(json.loads(json.dumps(np.lib.format.dtype_to_descr(dt))))
    except (ValueError, TypeError, KeyError, Warning):
        return False
    return back == dt and to_json(back) == to_json(dt)


def from_descr(descr: Any) -> np.dtype:
    """The dtype of NumPy's ``descr`` form read back from JSON (which made its tuples
    lists: those of a structured descr's fields are tuples again)."""
    if isinstance(descr, list):
        descr = [tuple(x) if isinstance(x, list) else x for x in descr]
    return np.lib.format.descr_to_dtype(descr)


# ------------------------------------------------------------------------------ conversion
class Label:
    """A message's subject (``field 'x' of T (int32)``) made only when a message needs it:
    ``str(label)``, ``f"{label}"``."""

    __slots__ = ("_make",)

    def __init__(self, make: Any):
        self._make = make

    def __str__(self) -> str:
        return str(self._make())

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


_RANGES: dict[np.dtype, tuple[str, Any, Any]] = {}


def _plain_range(to: np.dtype) -> tuple[str, Any, Any]:
    """(kind, low, high) of the Python values ``to`` holds as they are (kind "" if none)."""
    r = _RANGES.get(to)
    if r is None:
        k = to.kind
        if not to.isnative and to.itemsize > 1:
            r = ("", 0, 0)
        elif k == "f" and to.itemsize <= 8:
            top = float(np.finfo(to).max)
            r = ("f", -top, top)
        elif k in "iu":
            info = np.iinfo(to)
            r = ("i", int(info.min), int(info.max))
        elif k in "bU":
            r = (k, 0, to.itemsize // 4)
        else:
            r = ("", 0, 0)
        _RANGES[to] = r
    return r


def python_scalars(xs: list, to: np.dtype) -> np.ndarray | None:
    """``xs`` as an array of the scalar dtype ``to`` if each is a plain Python value it holds
    as it is (the common case, with no conversion to check: floats and ints into a native
    float field within its range, ints into an int field's range, bools, str into a str
    field that has room), else None (then :func:`cast` converts and checks them)."""
    k, lo, hi = _plain_range(to)
    if k == "f":
        ok = all((type(x) is float or type(x) is int) and lo <= x <= hi for x in xs)
    elif k == "i":
        ok = all(type(x) is int and lo <= x <= hi for x in xs)
    elif k == "b":
        ok = all(type(x) is bool for x in xs)
    elif k == "U":
        ok = all(type(x) is str and len(x) <= hi and not x.endswith("\0") for x in xs)
    else:
        return None
    return np.array(xs, dtype=to) if ok else None


def cast(src: Any, to: np.dtype, what: str | Label, rows: np.ndarray | None = None
         ) -> np.ndarray:
    """``src`` (an array, or what ``numpy.asarray`` takes) as values of the scalar or string
    dtype ``to``, the same shape, or TypeError if any value would change (module doc).

    Parameters
    ----------
    what
        What the values go into, for the message: ``"field 'x' of Particle (int32)"``.
    rows
        The row number of each item along ``src``'s first axis, for the message (default:
        its index); a 0-d ``src`` is row 0.
    """
    src = _as_array(src, to, what, rows)
    s = src.dtype
    if s == to:
        return src
    if s.names is not None or to.names is not None or to.subdtype is not None:
        raise TypeError(f"{what}: {s} values cannot be put in it: convert them first")
    if s.kind == "O":
        return _from_objects(src, to, what, rows)
    if not _convertible(s, to):
        raise TypeError(f"{what}: {s} values cannot be put in it without changing them: "
                        "convert them first")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            out = src.astype(to)
        except (UnicodeError, ValueError, OverflowError) as e:
            raise TypeError(f"{what}: {s} values cannot be put in it ({e})") from None
        ok = _kept(src, out, to)
    if ok is not True and not ok.all():
        _refuse(src, ok, to, what, rows)
    return out


def as_values(src: Any, to: np.dtype) -> np.ndarray:
    """``numpy.asarray(src)``, but Python ints that numpy would make floats (a list of ints
    beyond int64 with small ones: uint64 and int64 promote to float64) stay Python ints, for
    an int field to check exactly."""
    a = np.asarray(src)
    if a.dtype.kind == "f" and to.kind in "iub" and not isinstance(src, np.ndarray):
        o = np.array(src, dtype=object)
        if o.shape == a.shape and all(isinstance(x, int) for x in o.reshape(-1).tolist()):
            return o
    return a


def _as_array(src: Any, to: np.dtype, what: str | Label, rows: np.ndarray | None) -> np.ndarray:
    """``src`` as an array; text, ``datetime``/``timedelta`` objects (and ints, counts of
    the unit) parsed for a datetime or timedelta target, each in the unit its value needs."""
    try:
        a = as_values(src, to)
        if to.kind not in "Mm" or a.dtype.kind not in "USO":
            return a
        if a.dtype.kind in "US":
            return np.asarray(a, dtype=np.dtype(to.kind + "8"))
    except (ValueError, TypeError, OverflowError) as e:
        raise TypeError(f"{what}: cannot read {_short(src)} as such values ({e})") from None
    # Python objects: each its own (.item() gives datetimes, dates, or ints where those
    # have no room), converted one by one
    return _each(a, to, what, rows, lambda x, row: (
        x if isinstance(x, int) and not isinstance(x, bool) else _parsed(x, to, what, row)))


def _each(a: np.ndarray, to: np.dtype, what: str | Label, rows: np.ndarray | None,
          read: Any = None) -> np.ndarray:
    """The object array ``a`` converted item by item (``read(x, row)`` first, if given)."""
    out = np.empty(a.shape, dtype=to)
    flat = out.reshape(-1)
    per = max(1, int(np.prod(a.shape[1:])))
    for i, x in enumerate(a.reshape(-1).tolist()):
        row = np.asarray([i // per if rows is None else rows[i // per]]) if a.ndim else rows
        flat[i] = cast(read(x, row) if read is not None else x, to, what, row)
    return out


def _parsed(x: Any, to: np.dtype, what: str | Label, row: np.ndarray | None) -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.dtype(to.kind + "8"))
    except (ValueError, TypeError, OverflowError) as e:
        at = f" (row {int(row[0])})" if row is not None else ""
        raise TypeError(f"{what} cannot hold {_short(x)}{at}: {e}") from None


def _convertible(s: np.dtype, to: np.dtype) -> bool:
    """Whether values of ``s`` may become values of ``to`` at all (:func:`_kept` then checks
    each one)."""
    if s.kind in _NUMERIC and to.kind in _NUMERIC:
        return True
    if s.kind in _TEXT and to.kind in _TEXT:
        return True
    if to.kind in "Mm":  # (an int is a count of the field's unit, as NumPy reads it)
        return s.kind == to.kind or s.kind in "iu"
    if to.kind == "V":  # raw bytes: as many, or fewer (padded with zeros)
        return s.kind in "VS" and s.itemsize <= to.itemsize and s.names is None
    return False


def _kept(src: np.ndarray, out: np.ndarray, to: np.dtype) -> Any:
    """Which values of ``src`` came through the conversion to ``out`` as they were: True for
    all, or a bool array."""
    s = src.dtype
    if s.kind in _NUMERIC and to.kind in _NUMERIC:
        real = src
        ok: Any = True
        if s.kind == "c" and to.kind != "c":
            ok = src.imag == 0
            real = src.real
        if to.kind in "biu":
            lo, hi = (0, 1) if to.kind == "b" else (int(np.iinfo(to).min), int(np.iinfo(to).max))
            ok = ok & (real >= lo) & (real <= hi) & (out == real)
            if real.dtype.kind == "f":
                ok &= np.isfinite(real) & (np.trunc(real) == real)
        else:  # floats round; a finite value must stay finite
            ok = ok & (np.isfinite(out) | ~np.isfinite(real))
        return ok
    if to.kind in "Mm" and s.kind in "Mm":
        back = out.astype(s)
        return (back == src) | (np.isnat(src) & np.isnat(out))
    if to.kind == "V":
        return True  # (the bytes as they are)
    return out.astype(s) == src  # text (cut short?), datetimes from ints


def _from_objects(src: np.ndarray, to: np.dtype, what: str | Label, rows: np.ndarray | None
                  ) -> np.ndarray:
    """Python objects NumPy made no array type of: each converted alone (ints of any size are
    checked exactly); the first that has no NumPy type (an int beyond 64 bits, None, a
    Decimal...) is refused."""
    flat = src.reshape(-1).tolist()
    for i, x in enumerate(flat):
        try:
            kind = np.asarray(x).dtype.kind
        except (ValueError, TypeError, OverflowError):
            kind = "O"
        if kind == "O":
            why = ("does not fit in 64 bits" if isinstance(x, int) and not isinstance(x, bool)
                   else f"is a {type(x).__name__}")
            raise TypeError(f"{what} cannot hold {_short(x)}{_row(src, i, rows)}: it {why}; "
                            "nothing was written")
    return _each(src, to, what, rows)


def _refuse(src: np.ndarray, ok: np.ndarray, to: np.dtype, what: str | Label,
            rows: np.ndarray | None) -> None:
    flat = int(np.flatnonzero(~np.broadcast_to(ok, src.shape))[0]) if src.ndim else 0
    value = src.reshape(-1)[flat]
    raise TypeError(f"{what} cannot hold {_short(value)}{_row(src, flat, rows)} without "
                    "changing it: nothing was written (convert it first, or use a wider type)")


def _row(src: np.ndarray, flat: int, rows: np.ndarray | None) -> str:
    """' (row N)' for the item at flat index ``flat`` of ``src``."""
    if src.ndim == 0:
        r = 0 if rows is None else int(rows[0])
    else:
        i = flat // max(1, int(np.prod(src.shape[1:])))
        r = i if rows is None else int(rows[i])
    return f" (row {r})"


def _short(x: Any) -> str:
    if isinstance(x, np.generic):
        x = x.item() if x.dtype.kind not in "Mm" else x
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------- record types
class PlainRecord:
    """The record type of a plain structured dtype (``store.vector(np.dtype([...]))``, or a
    Struct field spelled as one, ``"i4,f8"``): as a :class:`~sharedstore.Struct` describes
    its records (``dtype``, ``strings``, ``refs``, ``string_offsets``, ``_nested``), with no
    owned strings and no refs."""

    __slots__ = ("dtype", "name", "strings", "refs", "string_offsets", "_nested")

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self.name = ""  # (messages name a Struct; a plain dtype has no name)
        self.strings: tuple[str, ...] = ()
        self.refs: tuple[str, ...] = ()
        self.string_offsets: tuple[int, ...] = ()
        self._nested = {n: plain_record(leaf(dtype[n])[0]) for n in dtype.names or ()
                        if leaf(dtype[n])[0].names is not None}


_PLAIN: dict[tuple[Any, ...], PlainRecord] = {}


def plain_record(dtype: np.dtype) -> PlainRecord:
    """The :class:`PlainRecord` of the structured ``dtype`` (made once per dtype)."""
    key = (dtype, dtype.names)  # (dtypes equal in layout may name fields differently)
    rt = _PLAIN.get(key)
    if rt is None:
        rt = _PLAIN[key] = PlainRecord(dtype)
    return rt
