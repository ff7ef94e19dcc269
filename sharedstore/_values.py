"""How Python keys and values are encoded for the map kernels, and decoded back.

Keys: ``str`` (UTF-8), ``bytes`` and ``int`` (8 bytes, little-endian; ``bool`` as int, so
``m[True]`` and ``m[1]`` are one key as in a dict).  Values: ``None``, ``bool``, ``int`` (int64),
``float`` stored natively; ``str`` and ``bytes`` as their bytes; refs as their handle; anything
else (and ints beyond int64) pickled with protocol 5.
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
from .errors import StoreCorruptError

if TYPE_CHECKING:
    from .store import Store

#: a map key: ``m["a"]``, ``m[b"a"]``, ``m[3]`` (an int of int64's range; ``bool`` counts as int)
Key: TypeAlias = str | bytes | int

_EMPTY = b""
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")


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
            f"a stored value (tag {tag}, {len(data)} bytes) cannot be decoded ({type(e).__name__}: "
            f"{e}); the store may be damaged: run `python -m sharedstore check NAME`"
        ) from e


def _decode(store: Store, tag: int, payload: int, data: Any) -> Any:
    if tag == L.V_STR:
        return bytes(data).decode("utf-8", "surrogatepass")
    if tag == L.V_INT:
        return payload
    if tag == L.V_FLOAT:
        return _float_from_bits(payload)
    if tag == L.V_NONE:
        return None
    if tag == L.V_TRUE:
        return True
    if tag == L.V_FALSE:
        return False
    if tag == L.V_BYTES:
        return bytes(data)
    if tag == L.V_REF:
        return store.ref(payload)
    if tag == L.V_PICKLE:
        return pickle.loads(data)
    if tag == L.V_ARRAY:
        return decode_array(data)
    raise ValueError(f"unknown value tag {tag}")


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
