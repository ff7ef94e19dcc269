"""Struct schemas: a named set of typed fields, laid out as an aligned NumPy structured dtype.

Field types (strings, as in schema files):

- any fixed-size NumPy scalar: ``"float64"``, ``"f4"``, ``"int32"``, ``"uint8"``, ``"bool"``,
  ``"complex128"``, ``"datetime64[ns]"``...
- ``"str[N]"``: a fixed-length str of N characters; ``"bytes[N]"``: N bytes;
- any other type string NumPy takes and holds as bytes: ``"M8[ns]"``, ``"<U5"``, ``">i4"``,
  ``"V8"``, ``"(3,)f4"``, ``"i4,f8"`` (a packed nested record of fields ``f0``, ``f1``);
- a nested struct: a :class:`Struct`, or the name of another struct of the same schema file;
- ``"string"``: a variable-length string owned by the record (a handle in the store; dropped
  with the record);
- ``"ref"``: a handle to any object in the store, not owned;
- any of these with a shape suffix, for a sub-array: ``"float32[3]"``, ``"int64[2, 3]"``,
  ``"datetime64[ns][4]"``, ``"str[8][2]"``, ``"Particle[3]"``, ``"string[3]"``.  ``T[n]`` is
  ``n`` values of type ``T``, so ``"float32[2][3]"`` is three pairs, of shape ``(3, 2)``, as
  ``np.dtype((np.dtype(("f4", 2)), 3))`` is.

Owned strings anywhere in a record (nested structs', arrays of structs' and ``"string[N]"``
fields included) belong to it: dropping, removing or overwriting the record drops them.

Schema files (``schemas/*.toml``, JSON too) hold one table per struct::

    [Particle]
    pos = "float32[3]"
    mass = "float64"
    name = "string"

Mistakes raise :class:`SchemaError` naming the struct, the field and, for files, the line.
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from . import _layout as L
from ._dtypes import PlainRecord, leaf, plain_record, storable
from ._kernels import heap as KH
from ._kernels import objects as KO
from ._records import drop_strings, field_rows
from ._resolved import python_scalar, read_field
from .errors import SchemaError, SharedStoreError
from .refs import _CLASSES, Ref, StringRef

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from .store import Store

#: where a schema file's struct was read from: (path, its text), for the line in errors
_Where = tuple[Path, str]

#: the dtype of "string" (owned) and "ref" (not owned) fields: a 64-bit handle
HANDLE = np.dtype(np.int64)
_F64, _I64 = np.dtype(np.float64), np.dtype(np.int64)
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIZED = re.compile(r"^(str|bytes)\[\s*(-?\d+)\s*\]$")
_SHAPE = re.compile(r"^(.+?)\s*\[\s*([-\d\s,]+)\s*\]$")  # a type and a shape suffix
_UNSIZED = ("str", "bytes", "U", "S", "V")


class Struct:
    """A struct schema: ``Struct("Particle", {"x": "float64", "name": "string"})``.

    Parameters
    ----------
    name
        An identifier.
    fields
        Field name (an identifier not starting with ``_``) -> type: a string (see the
        module doc for the types) or a nested :class:`Struct`.

    Raises
    ------
    SchemaError
        For a bad name, no fields, or a field of an unknown or unsized type; the message
        names the struct and the field.

    Attributes
    ----------
    name : str
    fields : dict
        Field name -> type as given (a string or a nested :class:`Struct`).
    dtype : numpy.dtype
        The aligned structured dtype of one record.
    strings, refs : tuple of str
        Names of the ``"string"`` (owned) and ``"ref"`` fields, in order.
    string_offsets : tuple of int
        Byte offsets in a record of every owned string handle: each item of ``"string[N]"``
        fields, nested structs' and each struct of an array of structs included.
    json : str
        :meth:`descriptor` as compact JSON (how the store records the schema).
    """

    def __init__(self, name: str, fields: dict[str, str | Struct], *,
                 _types: dict[str, Struct] | None = None, _where: _Where | None = None):
        if not isinstance(name, str) or not _NAME.match(name):
            raise SchemaError(f"struct name {name!r} is not an identifier{_at(_where, name)}")
        if not isinstance(fields, dict) or not fields:
            raise SchemaError(f"struct {name!r} needs a dict of at least one field")
        self.name = name
        self.fields = dict(fields)
        types = _types or {}
        strings: list[str] = []
        refs: list[str] = []
        spec: list[tuple[str, np.dtype]] = []
        # field -> the record type of its (element) records: a Struct, or a PlainRecord for a
        # nested record spelled as a NumPy dtype ("i4,f8")
        self._nested: dict[str, Struct | PlainRecord] = {}
        self._named: dict[str, Struct] = {}  # struct name -> Struct, for types named by a string
        for fname, ftype in self.fields.items():
            where = _at(_where, name, fname)
            if not isinstance(fname, str) or not _NAME.match(fname) or fname.startswith("_"):
                raise SchemaError(
                    f"struct {name!r}: field name {fname!r} is not an identifier without a "
                    f"leading underscore{where}"
                )
            bad = f"struct {name!r}, field {fname!r}"
            kind, dt, inner = _field_type(bad, ftype, types, where)
            spec.append((fname, dt))
            if kind == "string":
                strings.append(fname)
            elif kind == "ref":
                refs.append(fname)
            if inner is not None:
                self._nested[fname] = inner
                if isinstance(ftype, str) and inner.name in types:
                    self._named[inner.name] = inner
            elif leaf(dt)[0].names is not None:
                self._nested[fname] = plain_record(leaf(dt)[0])
        self.strings = tuple(strings)
        self.refs = tuple(refs)
        self.dtype = np.dtype(spec, align=True)
        # field -> its byte offset in a record (numpy types dtype.fields as optional: a
        # struct's dtype always has them)
        self._offsets = {n: f[1] for n, f in (self.dtype.fields or {}).items()}
        self.string_offsets = tuple(self._owned_offsets())
        self.json = json.dumps(self.descriptor(), separators=(",", ":"))

    def _owned_offsets(self) -> Iterator[int]:
        """Byte offsets of every owned string handle in a record: its "string" fields (each
        item of a shaped one), and those of nested structs and of each struct of an array."""
        for fname in self.fields:
            off = self._offsets[fname]
            base, shape = leaf(self.dtype[fname])
            count = int(np.prod(shape))
            if fname in self.strings:
                yield from range(off, off + 8 * count, 8)
            else:
                sub = self._nested.get(fname)
                if sub is not None and sub.string_offsets:
                    size = base.itemsize
                    for k in range(count):
                        yield from (off + k * size + o for o in sub.string_offsets)

    def descriptor(self) -> dict[str, Any]:
        """The schema as plain data (JSON-able): how the store records a record's type.

        Structs named by a field type (``"Particle"`` or ``"Particle[3]"``) come along in
        ``"types"``."""
        d: dict[str, Any] = {
            "name": self.name,
            "fields": {k: (v.descriptor() if isinstance(v, Struct) else v)
                       for k, v in self.fields.items()},
        }
        if self._named:
            d["types"] = {n: t.descriptor() for n, t in self._named.items()}
        return d

    @classmethod
    def from_descriptor(cls, d: dict[str, Any]) -> Struct:
        """The Struct that :meth:`descriptor` described.

        Raises
        ------
        SchemaError
            If the struct it describes is malformed.
        KeyError, TypeError
            If ``d`` is not a descriptor.
        """
        types = {n: cls.from_descriptor(t) for n, t in d.get("types", {}).items()}
        fields = {k: (cls.from_descriptor(v) if isinstance(v, dict) else v)
                  for k, v in d["fields"].items()}
        return cls(d["name"], fields, _types=types)

    def new(self, store: Store, **values: Any) -> StructRef:
        """A new record of this struct in ``store``.

        Parameters
        ----------
        store
            Where the record lives; the schema is stored with it, so ``store.ref(id)`` in any
            process opens it with no schema in hand.
        **values
            Values for some of its fields; the others are zero (strings empty, refs None).

        Returns
        -------
        StructRef

        Raises
        ------
        TypeError
            For a field the struct does not have, or a value its field cannot hold (then no
            record is left behind).
        StoreFullError
            If the store has no room for it.
        """
        return StructRef._create(store, self, values)

    def new_proxy(self, store: Store, **values: Any) -> StructProxy:
        """As :meth:`new`, wrapped for attribute access: ``q.mass = 2.0; q.name``."""
        return StructProxy(self.new(store, **values))

    def __repr__(self) -> str:
        body = ", ".join(f"{k!r}: {_type_text(v)!r}" for k, v in self.fields.items())
        return f"Struct({self.name!r}, {{{body}}})"

    def __eq__(self, other: object) -> bool:
        """Structs are equal when their names, dtypes and string and ref fields are."""
        if not isinstance(other, Struct):
            return NotImplemented
        return self.name == other.name and self.dtype == other.dtype and (
            self.strings, self.refs) == (other.strings, other.refs)

    def __hash__(self) -> int:
        return hash((self.name, self.dtype))


def _handles_at(rows: np.ndarray, offsets: list[int]) -> list[int]:
    """The non-zero handle words at byte ``offsets`` of the records ``rows``."""
    raw = rows.view(np.uint8).reshape(len(rows), -1)
    words = [int(raw[i, o:o + 8].view(np.int64)[0]) for i in range(len(rows)) for o in offsets]
    return [h for h in words if h]


def _type_text(t: str | Struct) -> str:
    return t.name if isinstance(t, Struct) else t


def _at(where: _Where | None, struct: str, field: str | None = None) -> str:
    """' (file, line N)' for errors in schema files, else ''."""
    if where is None:
        return ""
    path, text = where
    line = _line_of(text, struct, field)
    return f" ({path}, line {line})" if line else f" ({path})"


def _field_type(bad: str, ftype: object, types: dict[str, Struct], where: str
                ) -> tuple[str | None, np.dtype, Struct | None]:
    """(``"string"``, ``"ref"`` or None; the field's dtype; the Struct of its records or
    None) for a field type: a Struct, or a type string (see the module doc)."""
    if isinstance(ftype, Struct):
        return None, ftype.dtype, ftype
    if not isinstance(ftype, str):
        raise SchemaError(f"{bad}: the type must be a string or a Struct, not {ftype!r}{where}")
    t = ftype.strip()
    plain = _base_type(bad, t, types, where)
    if plain is not None:
        return plain
    m = _SHAPE.match(t)
    if m is None:
        raise SchemaError(
            f"{bad}: unknown type {t!r}: use a NumPy scalar type ('float64', 'int32'...), "
            f"'str[N]', 'bytes[N]', 'string', 'ref', a sub-array such as 'float32[3]', or "
            f"the name of another struct{where}"
        )
    try:
        dims = tuple(int(x) for x in m.group(2).split(",") if x.strip())
    except ValueError:
        raise SchemaError(f"{bad}: bad shape in {t!r}{where}") from None
    if not dims or any(n < 1 for n in dims):
        raise SchemaError(f"{bad}: every size in {t!r} must be at least 1{where}")
    kind, dt, inner = _field_type(bad, m.group(1), types, where)
    # T[n] is n values of T: a sub-array T's own shape comes after n (as numpy nests them)
    element, shape = leaf(dt)
    return kind, np.dtype((element, dims + shape)), inner


def _base_type(bad: str, t: str, types: dict[str, Struct], where: str
               ) -> tuple[str | None, np.dtype, Struct | None] | None:
    """``_field_type`` of a type string without a shape suffix of ours, or None if ``t`` is
    not one (then it may be a type with a shape)."""
    if t in ("string", "ref"):
        return t, HANDLE, None
    if t in types:
        return None, types[t].dtype, types[t]
    m = _SIZED.match(t)
    if m:
        n = int(m.group(2))
        if n < 1:
            raise SchemaError(f"{bad}: {t!r} needs a length of at least 1{where}")
        return None, np.dtype(f"U{n}" if m.group(1) == "str" else f"S{n}"), None
    if t in ("object", "O"):
        raise SchemaError(f"{bad}: {t!r} has no fixed size (Python objects): use 'string' for "
                          f"text, 'ref' for an object of the store{where}")
    if t in _UNSIZED:
        raise SchemaError(f"{bad}: {t!r} has no fixed size: use 'string' or '{t}[N]'{where}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # (a deprecated spelling is not one to store)
            dt = np.dtype(t)
    except (TypeError, ValueError, SyntaxError, DeprecationWarning):
        return None
    storable(dt, bad, SchemaError)
    return None, dt, None


# ---------------------------------------------------------------------------- schema files
def load_schema(path: str | Path) -> dict[str, Struct]:
    """Read a schema file (TOML, or JSON by its ``.json`` suffix).

    Structs may nest structs defined earlier in the same file (by name).

    Returns
    -------
    dict
        ``{name: Struct}``, in the file's order.

    Raises
    ------
    SchemaError
        For a file that does not parse, a duplicate struct or field, or a bad type or size;
        the message names the file, the line, the struct and the field.
    FileNotFoundError
        If there is no such file.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicates(path, text))
        except json.JSONDecodeError as e:
            raise SchemaError(f"{path}, line {e.lineno}: not valid JSON: {e.msg}") from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise SchemaError(f"{path}: not a valid schema file: {e}") from None
    if not isinstance(data, dict) or not data:
        raise SchemaError(f"{path}: a schema file holds one table of fields per struct")
    structs: dict[str, Struct] = {}
    for name, fields in data.items():
        if not isinstance(fields, dict):
            raise SchemaError(
                f"{path}, line {_line_of(text, name, None) or '?'}: {name!r} must be a table of "
                "fields (a [Name] section)"
            )
        structs[name] = Struct(name, fields, _types=structs, _where=(path, text))
    return structs


def _no_duplicates(path: Path, text: str
                   ) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for k, v in pairs:
            if k in seen:
                line = _line_of(text, None, k) or "?"
                raise SchemaError(f"{path}, line {line}: duplicate name {k!r}")
            seen[k] = v
        return seen

    return hook


def _line_of(text: str, struct: str | None, field: str | None) -> int | None:
    """1-based line of ``field`` in struct ``struct``'s section (TOML or JSON), best effort."""
    lines = text.splitlines()
    start = 0
    if struct is not None:
        header = re.compile(rf'^\s*(\[\s*"?{re.escape(struct)}"?\s*\]|"{re.escape(struct)}"\s*:)')
        for i, line in enumerate(lines):
            if header.match(line):
                start = i
                break
        if field is None:
            return start + 1
    if field is None:
        return None
    key = re.compile(rf'^\s*"?{re.escape(field)}"?\s*[=:]')
    for i in range(start, len(lines)):
        if key.match(lines[i]):
            return i + 1
    return None


# ---------------------------------------------------------------------------- records
def _field_bytes(fdt: np.dtype, value: Any) -> bytes:
    """The bytes of ``value`` as a field of dtype ``fdt`` holds them (a sub-array, a nested
    record or a scalar), padding zeroed."""
    one = np.zeros(1, dtype=np.dtype([("f", fdt)]))
    one["f"][0] = value
    return one.tobytes()


class StructRef(Ref):
    """One struct record in the store: ``p["mass"]``, ``p["mass"] = 2.0``, ``p.get_key``.

    Numeric fields are read and written in place (a field read returns a copy of its value);
    ``"string"`` fields read and write str and own their string (replacing or dropping the record
    drops it); ``"ref"`` fields hold a ref or None.  The record's schema is stored with it, so
    ``store.ref(id)`` in any process gives a StructRef of the right struct."""

    __slots__ = ("_struct", "_rec", "_meta_w", "_meta")
    _kind = L.KIND_STRUCT

    _struct: Struct | None
    _rec: np.void
    _meta_w: int
    _meta: int

    def _init(self, store: Store, id: int) -> None:
        super()._init(store, id)
        self._struct = None  # (_rec, _meta_w and _meta are set with it, by _bind)

    @classmethod
    def _create(cls, store: Store, struct: Struct, values: dict[str, Any]) -> StructRef:
        unknown = set(values) - set(struct._offsets)
        if unknown:
            raise TypeError(f"struct {struct.name!r} has no field {sorted(unknown)[0]!r}; "
                            f"its fields are {', '.join(struct._offsets)}")
        schema = store._schema_handle(struct)
        h = store._call(KO.struct_new, store.mem, store._token, schema, struct.dtype.itemsize,
                        what=f"{struct.name}.new()", hint=struct.dtype.itemsize)
        ref = cls._trusted(store, h)
        try:
            for k, v in values.items():
                ref[k] = v
        except BaseException:
            ref.drop()
            raise
        return ref

    def _bind(self) -> Struct:
        s = self._store
        st, off, schema, meta = KO.struct_locate(s.mem, self._id)
        if st < 0:
            self._fail(st, "access")
        struct = s._struct_of(schema)
        self._rec = np.frombuffer(s._mm, dtype=struct.dtype, count=1, offset=off)[0]
        w = KH.handle_lock_word(s.mem, self._id)
        if w < 0:
            self._fail(w, "access")
        self._meta_w = w - (L.H_LOCK - L.H_META)
        self._meta = meta  # (what struct_locate saw: a drop since then shows as a change)
        self._struct = struct
        return struct

    def _record(self) -> tuple[np.void, Struct]:
        """The record as a numpy void view into the store, and its Struct, after checking it
        was not dropped."""
        struct = self._struct
        if struct is None:
            struct = self._bind()
        s = self._store
        if s._closed or s._words[self._meta_w] != self._meta:
            self._struct = None
            struct = self._bind()  # raises UseAfterFreeError (or StoreClosedError)
        return self._rec, struct

    @property
    def struct(self) -> Struct:
        """The record's :class:`Struct` (read from the store on a ref's first use).

        Raises
        ------
        UseAfterFreeError
            If the record was dropped.
        """
        return self._record()[1]

    def __getitem__(self, field: str) -> Any:
        """``p[field]``: a copy of the field's value: a Python scalar (a NumPy one for
        ``datetime64``/``timedelta64``, whose Python form would lose the unit), a NumPy array for
        a sub-array; a str for a ``"string"`` field, a ref (or None) for a ``"ref"`` field
        (arrays of them for ``"string[N]"`` and ``"ref[N]"``); a :class:`~sharedstore.Record`
        for a nested struct (an array of them for an array of structs), its own strings
        resolved.  Also ``p.get_key(field)``.

        Raises
        ------
        KeyError
            If the struct has no such field.
        UseAfterFreeError
            If the record was dropped.
        """
        rec, struct = self._record()
        if field not in struct._offsets:
            raise KeyError(field)
        if field in struct.strings or field in struct.refs or field in struct._nested:
            if field in struct.strings and not struct.dtype[field].shape:
                h = int(rec[field])
                self._still_live()  # (read first, then checked: a record dropped meanwhile
                return StringRef._trusted(self._store, h).get() if h else ""  # raises)
            v = read_field(self._store, struct, rec, field)
        else:
            v = python_scalar(rec[field])
        self._still_live()
        return v

    def _still_live(self) -> None:
        """Raise UseAfterFreeError if the record was dropped since :meth:`_record` checked it
        (what was read from it meanwhile may be another record's)."""
        if self._store._words[self._meta_w] != self._meta:
            self._struct = None
            self._bind()

    def __setitem__(self, field: str, value: Any) -> None:
        """``p[field] = value``, in place in the store.  Also ``p.set_key(field, value)``.

        A ``"string"`` field takes a str (or None: empty) and drops the string it replaces; a
        ``"ref"`` field a ref of the same store or None; a nested struct a record in any form
        a table takes (its strings owned, the ones it replaces dropped); any other field a
        value it holds as it is (see ``VectorRef.append``).

        Raises
        ------
        KeyError
            If the struct has no such field.
        TypeError
            For a value the field cannot hold without changing it (out of range, a float with
            a fraction for an int, too long a str...), naming the field.
        UseAfterFreeError
            If the record was dropped.
        """
        _, struct = self._record()
        if field not in struct._offsets:
            raise KeyError(field)
        fdt = struct.dtype[field]
        if field in struct.strings and not fdt.shape:
            self._swap_string(struct._offsets[field], value)
            return
        at = struct._offsets[field]
        t = type(value)
        if (t is float and fdt == _F64) or (
                t is int and fdt == _I64 and _I64_MIN <= value <= _I64_MAX
                and field not in struct.refs):
            self._write(at, fdt.type(value).tobytes())  # (as it is: no conversion to check)
            return
        made: list[int] = []
        try:
            new = field_rows(self._store, struct, field, value, made)[0]
        except BaseException:
            drop_strings(self._store, made)
            raise
        owned = [o for o in struct.string_offsets if at <= o < at + fdt.itemsize]
        if not owned:
            self._write(at, _field_bytes(fdt, new))
            return
        rec, _ = self._record()
        old = np.array(rec, dtype=struct.dtype).reshape(1)
        after = old.copy()
        after[field] = new
        try:
            self._write(at, _field_bytes(fdt, new))
        except BaseException:
            drop_strings(self._store, made)
            raise
        kept = set(_handles_at(after, owned))
        drop_strings(self._store, [h for h in _handles_at(old, owned) if h not in kept])

    def _write(self, at: int, data: bytes) -> None:
        """Write ``data`` at byte ``at`` of the record, under its lock (a record dropped
        meanwhile raises UseAfterFreeError; the write never lands in another record)."""
        s = self._store
        s._call(KO.struct_write, s.mem, s._token, self._id, at, data,
                what="StructRef set", h=self._id)

    def _swap_string(self, at: int, value: Any) -> None:
        """Put a new string (or none) in the handle word at byte ``at``; drop the old one."""
        s = self._store
        new = 0
        if value is not None and value != "":
            new = s.string(value).id
        elif value is not None and not isinstance(value, str):
            raise TypeError(f"a string field takes a str, not {type(value).__name__}")
        try:
            _, old = s._call_pair(KO.struct_swap, s.mem, s._token, self._id, at, new,
                                   what="StructRef set", h=self._id)
        except BaseException:
            if new:
                StringRef._trusted(s, new).drop()
            raise
        if old:  # each setter drops exactly what it swapped out: no leak, no double drop
            StringRef._trusted(s, old).drop()

    get_key = __getitem__
    set_key = __setitem__

    def to_dict(self) -> dict[str, Any]:
        """Every field's value, as ``p[field]`` reads it."""
        return {name: self[name] for name in self.struct._offsets}

    def drop(self) -> None:
        """Free the record and the strings it owns (nested structs' included).

        Raises
        ------
        UseAfterFreeError
            If it was dropped already.
        """
        struct = self.struct
        for at in struct.string_offsets:
            self._swap_string(at, None)
        super().drop()
        self._struct = None

    def __repr__(self) -> str:
        try:
            name = self.struct.name
        except SharedStoreError:
            name = "dropped"
        return f"<StructRef {name} id={self._id} of store {self._store.name!r}>"


class StructProxy:
    """A struct record with attribute access: ``q.mass += 1``.  ``q._ref`` is its StructRef
    (field names cannot start with ``_``, so they never clash)."""

    __slots__ = ("_ref",)
    _ref: StructRef

    @overload
    def __init__(self, ref: StructRef) -> None: ...

    @overload
    def __init__(self, ref: Store, id: int) -> None: ...

    def __init__(self, ref: Any, id: int | None = None) -> None:
        """``StructProxy(struct_ref)``, or ``StructProxy(store, id)`` for the record ``id``.

        Raises
        ------
        TypeError
            If given neither a StructRef nor a store and an id.
        InvalidHandleError, UseAfterFreeError
            As ``StructRef(store, id)``.
        """
        if id is not None:
            ref = StructRef(ref, id)
        elif not isinstance(ref, StructRef):
            raise TypeError(f"StructProxy wraps a StructRef (or takes a store and an id), not "
                            f"{type(ref).__name__}")
        object.__setattr__(self, "_ref", ref)

    def __getattr__(self, name: str) -> Any:
        """``q.field``: ``StructRef[field]``; AttributeError if there is no such field."""
        try:
            return self._ref[name]
        except KeyError:
            raise AttributeError(f"{self._ref.struct.name} has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        """``q.field = value``: ``StructRef[field] = value``; AttributeError if there is no
        such field."""
        try:
            self._ref[name] = value
        except KeyError:
            raise AttributeError(f"{self._ref.struct.name} has no field {name!r}") from None

    def __dir__(self) -> list[str]:
        return list(self._ref.struct._offsets)

    def _drop(self) -> None:
        self._ref.drop()

    @property
    def _id(self) -> int:
        return self._ref.id

    def __reduce__(self) -> tuple[type[StructProxy], tuple[StructRef]]:
        return StructProxy, (self._ref,)

    def __repr__(self) -> str:
        return f"<StructProxy of {self._ref!r}>"


_CLASSES[L.KIND_STRUCT] = StructRef
