"""Entry points Python calls as builtin functions: the hot paths, with no numba argument boxing.

A numba ``@njit`` kernel called from Python pays for its dispatcher or wrapper: every argument
is unboxed into a numba value (an array argument costs a meminfo), about 250-400 ns a call on
the development VM, more than a dict lookup.  The functions here are compiled as C functions
with CPython's ``METH_FASTCALL`` signature ``(self, args, nargs)`` (``_jit.entry``) and wrapped
as builtin functions (``sharedstore._pycall``), so a call costs what calling ``len`` costs.
They read their arguments as objects (``pyapi``) and return a new object.

``self`` is an int: the address of the store's *context*, an int64 array of this process
(``C_*`` below) holding where the store is mapped, this process's lock token, and the
addresses of the types and singletons the entry points compare with.  They handle the common
cases (str, bytes or int keys; None, bool, int64, float, str, bytes values; numbers) and
return the context's ``SLOW`` object for anything else, or whenever a kernel returns a status
(a busy lock, memory to commit, a stale handle, a closed store): the caller then takes the
Python path, which does the same operation through the ordinary kernels and raises the right
error.  An entry point returns SLOW only when it has changed nothing.
"""

import numpy as np

from .. import _layout as L
from .._jit import entry, inline
from . import status as S
from .atomics import float32_bits, float_from_bits, float_to_bits
from .heap import block_ok
from .hashmap import _ENTRY_HDR, READ_RETRIES, _find, _index_key, _pad8, _read_ok, store_value
from .objects import float_fetch_add, int_fetch_add, scalar_bits
from .pyapi import (
    address_bytes,
    address_words,
    load_word,
    py_as_float64,
    py_as_int64,
    py_bytes,
    py_bytes_data,
    py_decref,
    py_float,
    py_incref,
    py_int,
    py_str,
    py_utf8,
)
from .vector import append_word

# the context: words of a process-local int64 array (filled by sharedstore._pycall)
C_MEM = 0        # address of the store's mapping in this process; 0 once closed
C_WORDS = 1      # the mapping's length in int64 words
C_TOKEN = 2      # this process's lock token
C_TYPE_AT = 3    # byte offset of an object's type pointer (ob_type)
C_STR = 4        # addresses of the types str, bytes, int, float
C_BYTES = 5
C_INT = 6
C_FLOAT = 7
C_NONE = 8       # addresses of None, True, False
C_TRUE = 9
C_FALSE = 10
C_SLOW = 11      # the object that asks the caller to take the Python path
C_MISSING = 12   # the object that says a key is missing
CTX_WORDS = 16

_TAKE_SLOW = -1  # helpers' result: return SLOW (0 means NULL: a Python exception is set)

# element codes of ``vector_append_entry``: which kind of number a vector's slots hold
E_F64 = 1
E_F32 = 2
E_INT = 3  # signed ints (itemsize 1, 2, 4 or 8)
E_UINT = 4  # unsigned ints
E_BOOL = 5


@inline
def _begin(self, nargs, want):
    """(context, the store's memory, ok) of a call; not ok if it must take the Python path: the
    wrong number of arguments, or the store is closed in this process."""
    ctx = address_words(py_as_int64(self)[1], CTX_WORDS)
    ok = nargs == want and ctx[C_MEM] != 0
    return ctx, address_words(ctx[C_MEM], ctx[C_WORDS] if ok else 0), ok


@inline
def _slow(ctx):
    return py_incref(ctx[C_SLOW])


@inline
def _arg(args, i):
    return load_word(args + 8 * i)


@inline
def _type(ctx, obj):
    return load_word(obj + ctx[C_TYPE_AT])


@inline
def _finish(ctx, r):
    """The object to return for a helper's result ``r``."""
    return _slow(ctx) if r == _TAKE_SLOW else r


@inline
def _key_of(ctx, obj):
    """(key tag, int value or bytes address, bytes length) of a str, bytes or int key; tag 0
    for any other key (bool and subclasses too: the Python path encodes those)."""
    t = _type(ctx, obj)
    if t == ctx[C_STR]:
        p, n = py_utf8(obj)
        return (L.V_STR if n >= 0 else 0), p, n
    if t == ctx[C_INT]:
        ok, v = py_as_int64(obj)
        return (L.V_INT if ok else 0), v, 8
    if t == ctx[C_BYTES]:
        p, n = py_bytes_data(obj)
        return L.V_BYTES, p, n
    return 0, 0, 0


@inline
def _value_of(ctx, obj):
    """(value tag, payload, bytes address, bytes length) of a value stored natively; tag 0 for
    any other value (the Python path pickles it, or stores a ref or an array)."""
    t = _type(ctx, obj)
    if t == ctx[C_FLOAT]:
        return L.V_FLOAT, float_to_bits(py_as_float64(obj)), 0, 0
    if t == ctx[C_INT]:
        ok, v = py_as_int64(obj)
        return (L.V_INT if ok else 0), v, 0, 0
    if t == ctx[C_STR]:
        p, n = py_utf8(obj)
        return (L.V_STR if n >= 0 else 0), 0, p, n
    if obj == ctx[C_NONE]:
        return L.V_NONE, 0, 0, 0
    if obj == ctx[C_TRUE]:
        return L.V_TRUE, 0, 0, 0
    if obj == ctx[C_FALSE]:
        return L.V_FALSE, 0, 0, 0
    if t == ctx[C_BYTES]:
        p, n = py_bytes_data(obj)
        return L.V_BYTES, 0, p, n
    return 0, 0, 0, 0


# ---------------------------------------------------------------------------- maps
@inline
def _get(ctx, mem, h, key, ktag):
    """The value of ``key`` as a new object, MISSING, or _TAKE_SLOW (a value the Python path
    decodes: refs, pickles, arrays, text that is not strict UTF-8; or a status)."""
    buf = mem.view(np.uint8)
    for _ in range(READ_RETRIES):
        res, eoff, klen, mw, v1 = _find(mem, buf, h, key, ktag)
        if mw < 0 or (res < 0 and res != S.ERR_NOT_FOUND):
            return _TAKE_SLOW
        obj = _TAKE_SLOW
        if res == S.ERR_NOT_FOUND:
            obj = py_incref(ctx[C_MISSING])
        elif res == L.V_FLOAT:
            obj = py_float(float_from_bits(mem[eoff // 8 + 1 + L.E_PAYLOAD]))
        elif res == L.V_INT:
            obj = py_int(mem[eoff // 8 + 1 + L.E_PAYLOAD])
        elif res == L.V_STR or res == L.V_BYTES:
            vlen = mem[eoff // 8] >> 16
            # read again, so checked again: a writer may have reused the block meanwhile
            if vlen >= 0 and block_ok(mem, eoff, _ENTRY_HDR + _pad8(klen) + vlen):
                at = ctx[C_MEM] + eoff + _ENTRY_HDR + _pad8(klen)
                obj = py_str(at, vlen) if res == L.V_STR else py_bytes(at, vlen)
                if obj == 0 and res == L.V_STR:
                    obj = _TAKE_SLOW  # not strict UTF-8 (lone surrogates, or damage)
        elif res == L.V_NONE:
            obj = py_incref(ctx[C_NONE])
        elif res == L.V_TRUE:
            obj = py_incref(ctx[C_TRUE])
        elif res == L.V_FALSE:
            obj = py_incref(ctx[C_FALSE])
        if obj == 0:
            return 0  # out of memory making the object: MemoryError is set
        if _read_ok(mem, mw, v1):
            return obj
        if obj != _TAKE_SLOW:
            py_decref(obj)  # a writer changed the map meanwhile: the value may be torn
    return _TAKE_SLOW


@entry
def map_get_entry(self, args, nargs):
    """``(map id, key)`` -> the value, MISSING, or SLOW.  Takes no lock."""
    ctx, mem, ok = _begin(self, nargs, 2)
    if not ok:
        return _slow(ctx)
    h = py_as_int64(_arg(args, 0))[1]
    ktag, k, n = _key_of(ctx, _arg(args, 1))
    if ktag == L.V_INT:
        return _finish(ctx, _get(ctx, mem, h, _index_key(k), ktag))
    if ktag != 0:
        return _finish(ctx, _get(ctx, mem, h, address_bytes(k, n), ktag))
    return _slow(ctx)


@entry
def map_set_entry(self, args, nargs):
    """``(map id, key, value)`` -> None, or SLOW (nothing changed) for the Python path."""
    ctx, mem, ok = _begin(self, nargs, 3)
    if not ok:
        return _slow(ctx)
    h = py_as_int64(_arg(args, 0))[1]
    vtag, payload, vp, vn = _value_of(ctx, _arg(args, 2))
    ktag, k, n = _key_of(ctx, _arg(args, 1))
    if vtag == 0 or ktag == 0:
        return _slow(ctx)
    vdata = address_bytes(vp, vn)
    token = ctx[C_TOKEN]
    if ktag == L.V_INT:
        r = store_value(mem, token, h, _index_key(k), ktag, vtag, payload, vdata)
    else:
        r = store_value(mem, token, h, address_bytes(k, n), ktag, vtag, payload, vdata)
    return py_incref(ctx[C_SLOW] if r < 0 else ctx[C_NONE])


# ---------------------------------------------------------------------------- numbers
@inline
def _number(ctx, obj):
    """(1, value) for an int or float argument, (0, 0.0) for anything else."""
    t = _type(ctx, obj)
    if t == ctx[C_FLOAT]:
        return 1, py_as_float64(obj)
    if t == ctx[C_INT]:
        ok, v = py_as_int64(obj)
        if ok and -(1 << 53) <= v <= (1 << 53):  # exactly representable, as float(v) is
            return 1, float(v)
    return 0, 0.0


@entry
def int_add_entry(self, args, nargs):
    """``(integer id, x)`` -> the new value after an atomic add of the int ``x``, or SLOW."""
    ctx, mem, ok = _begin(self, nargs, 2)
    if not ok or _type(ctx, _arg(args, 1)) != ctx[C_INT]:
        return _slow(ctx)
    ok, x = py_as_int64(_arg(args, 1))
    if not ok:
        return _slow(ctx)
    st, new = int_fetch_add(mem, py_as_int64(_arg(args, 0))[1], x)
    return _slow(ctx) if st < 0 else py_int(new)


@entry
def float_add_entry(self, args, nargs):
    """``(number id, x)`` -> the new value after an atomic add of ``x``, or SLOW."""
    ctx, mem, ok = _begin(self, nargs, 2)
    if not ok:
        return _slow(ctx)
    ok, x = _number(ctx, _arg(args, 1))
    if not ok:
        return _slow(ctx)
    st, new = float_fetch_add(mem, py_as_int64(_arg(args, 0))[1], x)
    return _slow(ctx) if st < 0 else py_float(new)


@entry
def scalar_get_entry(self, args, nargs):
    """``(id, kind)`` -> the value of an integer (KIND_INT) or number (KIND_FLOAT), or SLOW."""
    ctx, mem, ok = _begin(self, nargs, 2)
    if not ok:
        return _slow(ctx)
    kind = py_as_int64(_arg(args, 1))[1]
    st, bits = scalar_bits(mem, py_as_int64(_arg(args, 0))[1], kind)
    if st < 0:
        return _slow(ctx)
    return py_float(float_from_bits(bits)) if kind == L.KIND_FLOAT else py_int(bits)


# ---------------------------------------------------------------------------- vectors
@inline
def _element_bits(ctx, obj, code, nbytes):
    """(1, bits) of a Python number as one slot of a numeric vector, (0, 0) if the Python path
    must convert it (or refuse it): only exact ints and floats that fit without change."""
    t = _type(ctx, obj)
    if code == E_F64 or code == E_F32:
        ok, x = _number(ctx, obj)
        if not ok:
            return 0, 0
        if code == E_F64:
            return 1, float_to_bits(x)
        return 1, float32_bits(x)
    if code == E_BOOL:
        if obj == ctx[C_TRUE]:
            return 1, 1
        if obj == ctx[C_FALSE]:
            return 1, 0
        return 0, 0
    if t != ctx[C_INT]:
        return 0, 0
    ok, v = py_as_int64(obj)
    if not ok:
        return 0, 0
    bits = 8 * nbytes
    if code == E_INT and (nbytes == 8 or -(1 << (bits - 1)) <= v < (1 << (bits - 1))):
        return 1, v
    if code == E_UINT and v >= 0 and (nbytes == 8 or v < (1 << bits)):
        return 1, v
    return 0, 0


@entry
def vector_append_entry(self, args, nargs):
    """``(vector id, value, element)`` -> None after appending one number to a numeric vector,
    or SLOW.  ``element`` is ``code | itemsize << 4`` (``E_*`` codes)."""
    ctx, mem, ok = _begin(self, nargs, 3)
    if not ok:
        return _slow(ctx)
    element = py_as_int64(_arg(args, 2))[1]
    nbytes = element >> 4
    ok, bits = _element_bits(ctx, _arg(args, 1), element & 15, nbytes)
    if not ok or not 1 <= nbytes <= 8:
        return _slow(ctx)
    r = append_word(mem, ctx[C_TOKEN], py_as_int64(_arg(args, 0))[1], bits, nbytes)
    return py_incref(ctx[C_SLOW] if r < 0 else ctx[C_NONE])


def element_code(dtype) -> int:
    """The ``element`` argument of ``vector_append_entry`` for a vector of ``dtype`` (a numpy
    dtype), or 0 if its slots are not single native numbers."""
    if dtype.names is not None or dtype.subdtype is not None or not dtype.isnative:
        return 0
    code = {"f": E_F64 if dtype.itemsize == 8 else E_F32 if dtype.itemsize == 4 else 0,
            "i": E_INT, "u": E_UINT, "b": E_BOOL}.get(dtype.kind, 0)
    return code | dtype.itemsize << 4 if code and dtype.itemsize <= 8 else 0
