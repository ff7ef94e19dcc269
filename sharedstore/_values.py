"""How Python keys and values are encoded for the map kernels, and decoded back.

Keys: ``str`` (UTF-8), ``bytes`` and ``int`` (8 bytes, little-endian; ``bool`` as int, so
``m[True]`` and ``m[1]`` are one key as in a dict).  Values: ``None``, ``bool``, ``int`` (int64),
``float`` and ``complex`` stored natively; ``str`` and ``bytes`` as their bytes; numpy arrays as
typed blocks; refs as their handle; anything else (and ints beyond int64) pickled with protocol
5.  Each kind of value has a tag, and its row in ``_layout.VALUE_KINDS`` says what the map
entry holds for it: the encoders and decoders here follow that table (and are checked against
it when this module is imported).

Adding a value kind
-------------------
``complex`` was added this way; grep for ``V_COMPLEX`` to see each step.

1. ``_layout.py``: a new tag ``V_<NAME>`` (the next free number below 64; a tag is never
   reused for another meaning) and its row in ``VALUE_KINDS``: what it holds, whether it can
   be a key, the bytes it keeps in the entry (0: the payload word holds it all; a fixed count;
   or ``VAR``), whether the c backend handles it, and what its payload word and bytes hold.
   The check (``_kernels/check.py``: a value of a known tag and the wrong size is damage),
   ``maps.py`` and ``kernels.py`` read the table's constants, so they need nothing more.
2. Here: its encoder in :func:`encode_value` (an exact type, as for ``float``, so that a
   subclass still round-trips through pickle) and its decoder in ``_DECODERS`` (importing this
   module fails for a tag of the table with no decoder).
3. If its row says ``c``: ``_fastpath/entries.py``, ``_value_of`` (write) and ``_get`` (read);
   ``tests/test_fastpath.py`` checks that the kinds marked ``c`` never reach a Python method.
   Otherwise the C entry points hand its values to the Python methods, which is always right.
4. A kind whose value lives wholly in its entry (payload word and value bytes) needs no new
   ``FORMAT_VERSION``: a library of the same format that does not know the tag reads the rest
   of the store, raises :class:`~sharedstore.StoreVersionError` for that value alone, and its
   check reports it as written by a newer sharedstore and never repairs it away (the store's
   ``VALUE_KINDS`` word has its bit).  A kind that owns memory outside its entry (as an array's
   data block) also needs ``_kernels/hashmap.py`` to free it and ``_kernels/check.py`` to
   claim it, and a new ``FORMAT_VERSION``: an older library would leak or free that memory.
5. ``tests/test_value_kinds.py``: a sample value in ``SAMPLES`` (its round trip runs on both
   backends, and the test fails for a kind of the table without a sample).  Editing a kernel
   module recompiles the kernels locally; the shipped cache is rebuilt before a release
   (README, Kernel cache).
6. README (the fast path's list of native values) and :class:`~sharedstore.MapRef`'s
   docstring.
"""

from __future__ import annotations

import ast
import pickle
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as _np

from . import _layout as L
from ._dtypes import exact_json, from_json, to_json
from .errors import StoreCorruptError, StoreVersionError

if TYPE_CHECKING:
    from .store import Store

#: a map key: ``m["a"]``, ``m[b"a"]``, ``m[3]`` (an int of int64's range; ``bool`` counts as int)
Key: TypeAlias = str | bytes | int

_EMPTY = b""
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_COMPLEX = struct.Struct("<dd")  # V_COMPLEX's 16 bytes: real, imag


def encode_key(key: Any) -> tuple[bytes, int]:
    t = type(key)
    if t is str:
        return key.encode("utf-8", "surrogatepass"), L.V_STR
    if t is bytes:
        return key, L.V_BYTES
    if t is int or t is bool or isinstance(key, int):
        try:
            return int(key).to_bytes(8, "little", signed=True), L.V_INT
        except OverflowError:
            raise TypeError(f"int keys must fit in int64, got {key!r}") from None
    if isinstance(key, str):
        return str(key).encode("utf-8", "surrogatepass"), L.V_STR
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key), L.V_BYTES
    raise TypeError(f"map keys must be str, bytes or int, not {t.__name__} ({key!r})")


def corrupt_text(e: UnicodeDecodeError) -> StoreCorruptError:
    """The error for stored text that is not UTF-8 (only a damaged store holds such)."""
    return StoreCorruptError(
        f"a stored string is not valid UTF-8 ({e.reason} at byte {e.start}); the store may be "
        "damaged: run `python -m sharedstore check NAME`"
    )


def decode_key(tag: int, data: bytes) -> Key:
    """The Python key of stored key bytes; StoreCorruptError if they cannot be one."""
    if tag == L.V_BYTES:
        return data
    if tag == L.V_INT and len(data) == 8:
        return int.from_bytes(data, "little", signed=True)
    if tag == L.V_STR:
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            pass
    raise StoreCorruptError(
        f"a stored key (tag {tag}, {len(data)} bytes) cannot be decoded; the store may be "
        "damaged: run `python -m sharedstore check NAME`"
    )


def encode_value(value: Any, handle_of: Callable[[Any], int | None]
                 ) -> tuple[int, int, float, bytes]:
    """(tag, int payload, float payload, bytes) for ``value``.

    ``handle_of(value)`` is the handle to store for a ref (None for anything else); it raises
    for a ref that cannot be stored here (one of another store)."""
    if isinstance(value, _np.ndarray) and not value.dtype.hasobject:
        return L.V_ARRAY, 0, 0.0, encode_array(value)
    t = type(value)
    if t is str:
        return L.V_STR, 0, 0.0, value.encode("utf-8", "surrogatepass")
    if t is float:
        return L.V_FLOAT, 0, value, _EMPTY
    if t is int:
        if -(1 << 63) <= value < (1 << 63):
            return L.V_INT, value, 0.0, _EMPTY
        return L.V_PICKLE, 0, 0.0, _pickle(value)
    if value is None:
        return L.V_NONE, 0, 0.0, _EMPTY
    if t is bool:
        return (L.V_TRUE if value else L.V_FALSE), 0, 0.0, _EMPTY
    if t is bytes:
        return L.V_BYTES, 0, 0.0, value
    if t is complex:
        return L.V_COMPLEX, 0, 0.0, _COMPLEX.pack(value.real, value.imag)
    h = handle_of(value)
    if h is not None:
        return L.V_REF, h, 0.0, _EMPTY
    return L.V_PICKLE, 0, 0.0, _pickle(value)


def _pickle(value: object) -> bytes:
    try:
        return pickle.dumps(value, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise TypeError(
            f"cannot store a {type(value).__name__}: it is not a native value and cannot be "
            f"pickled ({e})"
        ) from e


def decode_value(store: Store, tag: int, payload: int, data: Any) -> Any:
    """The Python value of a stored ``(tag, payload, data)``.

    Bytes that cannot be decoded (a damaged store) raise StoreCorruptError; a pickled value whose
    class this process cannot import raises what ``pickle`` raises (ImportError, AttributeError)."""
    try:
        return _decode(store, tag, payload, data)
    except (ImportError, AttributeError):
        raise
    except (ValueError, TypeError, EOFError, IndexError, KeyError, OverflowError, MemoryError,
            pickle.UnpicklingError, SyntaxError, RecursionError) as e:
        raise StoreCorruptError(
            f"a stored value (tag {tag}, {0 if data is None else len(data)} bytes) cannot be "
            f"decoded ({type(e).__name__}: {e}); the store may be damaged: run "
            "`python -m sharedstore check NAME`"
        ) from e


def _decode(store: Store, tag: int, payload: int, data: Any) -> Any:
    # the commonest kinds as _DECODERS decodes them, without its call (30 ns of a read)
    if tag == L.V_STR:
        return bytes(data).decode("utf-8", "surrogatepass")
    if tag == L.V_INT:
        return payload
    if tag == L.V_FLOAT:
        return _float_from_bits(payload)
    decode = _DECODERS.get(tag)
    if decode is None:
        raise unknown_kind(store, tag)
    return decode(store, payload, data)


def _complex(data: Any) -> complex:
    if len(data) != _COMPLEX.size:
        raise ValueError(f"a complex value holds {_COMPLEX.size} bytes, not {len(data)}")
    return complex(*_COMPLEX.unpack(data))


#: tag -> decode(store, payload word, value bytes): one per row of _layout.VALUE_KINDS
_DECODERS: dict[int, Callable[[Store, int, Any], Any]] = {
    L.V_NONE: lambda store, payload, data: None,
    L.V_FALSE: lambda store, payload, data: False,
    L.V_TRUE: lambda store, payload, data: True,
    L.V_INT: lambda store, payload, data: payload,
    L.V_FLOAT: lambda store, payload, data: _float_from_bits(payload),
    L.V_STR: lambda store, payload, data: bytes(data).decode("utf-8", "surrogatepass"),
    L.V_BYTES: lambda store, payload, data: bytes(data),
    L.V_REF: lambda store, payload, data: store.ref(payload),
    L.V_PICKLE: lambda store, payload, data: pickle.loads(data),
    L.V_ARRAY: lambda store, payload, data: decode_array(data),
    L.V_COMPLEX: lambda store, payload, data: _complex(data),
}
if set(_DECODERS) != set(L.VALUE_KIND):
    raise ImportError(f"value tags of _layout.VALUE_KINDS without a decoder in _values.py: "
                      f"{sorted(set(L.VALUE_KIND) - set(_DECODERS))} (or the reverse: "
                      f"{sorted(set(_DECODERS) - set(L.VALUE_KIND))})")


def kind_name(tag: int) -> str:
    """What a value tag names: its kind's name, or ``"kind <tag>"`` for a tag this library
    does not know."""
    k = L.VALUE_KIND.get(tag)
    return k.name if k is not None else f"kind {tag}"


def newer_kind(mem: Any, tag: int) -> bool:
    """Whether ``tag`` is a value kind this library does not know that the store says a newer
    library may have written (its VALUE_KINDS word has the tag's bit)."""
    return (tag not in L.VALUE_KIND and 0 < tag < 64
            and bool(int(mem[L.W_VALUE_KINDS]) >> tag & 1))


def unknown_kind(store: Store, tag: int) -> StoreCorruptError:
    """The error for a stored value of a tag this library does not know."""
    if newer_kind(store.mem, tag):
        return StoreVersionError(
            f"a value in store {store.name!r} is of a kind this sharedstore does not know (value "
            f"tag {tag}): a newer sharedstore wrote it; upgrade sharedstore to read it (the "
            "other values read as usual)")
    return StoreCorruptError(
        f"a stored value has tag {tag}, which is no kind of value; the store may be damaged: "
        f"run `python -m sharedstore check {store.name}`")


#: the fixed part of a stored array: header length (uint32) then the header, padded to 16
_ARRAY_ALIGN = 16


def array_head(a: _np.ndarray) -> bytes:
    """The header :func:`encode_array` puts before an array's elements: its length (uint32),
    then the dtype descr and shape as a Python literal, padded to 16 bytes.  The descr is
    NumPy's (``numpy.lib.format``) where it gives the dtype back exactly, else
    ``{"dtype": <_dtypes.to_json>}`` (an aligned struct keeps its flag)."""
    dt = a.dtype
    descr = (_np.lib.format.dtype_to_descr(dt) if exact_json(dt)
             else {"dtype": to_json(dt)})
    meta = repr((descr, a.shape)).encode()
    head = len(meta).to_bytes(4, "little") + meta
    return head + b"\0" * (-len(head) % _ARRAY_ALIGN)


def encode_array(a: _np.ndarray) -> bytes:
    """An array as bytes: :func:`array_head` then its C-order elements.  A map keeps the header
    in its entry and the elements in a data block of their own (``_layout``: V_ARRAY)."""
    return array_head(a) + _np.ascontiguousarray(a).tobytes()


def array_meta(data: Any) -> tuple[_np.dtype, tuple[int, ...], int]:
    """(dtype, shape, header length) from the start of :func:`encode_array`'s bytes."""
    mv = memoryview(data)
    n = int.from_bytes(mv[:4], "little")
    try:
        descr, shape = ast.literal_eval(bytes(mv[4:4 + n]).decode())
        dtype = (from_json(descr["dtype"]) if isinstance(descr, dict)
                 else _np.lib.format.descr_to_dtype(descr))
        shape = tuple(int(x) for x in shape)
    except (ValueError, TypeError, SyntaxError, UnicodeDecodeError, KeyError) as e:
        raise StoreCorruptError(f"a stored array's header is damaged: {e}") from None
    return dtype, shape, 4 + n + (-(4 + n) % _ARRAY_ALIGN)


def decode_array(data: Any) -> _np.ndarray:
    """A fresh, writable array from :func:`encode_array`'s bytes."""
    dtype, shape, start = array_meta(data)
    return _np.frombuffer(memoryview(data)[start:], dtype=dtype).reshape(shape).copy()


def _float_from_bits(bits: int) -> float:
    return _F64.unpack(_I64.pack(bits))[0]


def float_bits(x: float) -> int:
    return _I64.unpack(_F64.pack(x))[0]


def as_float(value: object) -> float:
    """``value`` as a float if it is a real number (int, float, NumPy scalar), else TypeError."""
    if type(value) is float:
        return value
    if isinstance(value, (int, float, _np.integer, _np.floating)):
        return float(value)
    raise TypeError(f"expected a number, got {type(value).__name__} ({value!r:.40})")


def as_int64(value: object) -> int:
    if type(value) is int and -(1 << 63) <= value < (1 << 63):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, _np.integer)):
        raise TypeError(f"expected an int, got {type(value).__name__} ({value!r})")
    value = int(value)
    if not -(1 << 63) <= value < (1 << 63):
        raise OverflowError(f"{value} does not fit in int64")
    return value
