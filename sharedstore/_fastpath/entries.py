"""Methods of the hot paths as C functions: ``m[k]``, ``m[k] = v``, ``IntRef.add``, ``append``...

A numba ``@njit`` kernel called from Python pays for its dispatcher or wrapper: every argument
is unboxed into a numba value (an array argument costs a meminfo), about 250-400 ns a call on
the development VM, more than a dict lookup; a Python method around a faster call still costs
its frame (50-150 ns).  The functions here are compiled as C functions with CPython's
``METH_FASTCALL | METH_KEYWORDS`` signature ``(self, args, nargs, kwnames)`` (``_jit.method``)
and put on the classes as method descriptors (``sharedstore._fastpath``), so ``m[k]`` costs what
``d[k]`` costs plus the lookup itself.  They read their arguments as objects (``pyapi``) and
return a new object.

``self`` is the ref (or the store): the entries read its slots ``_cx`` (the address of the
store's *context*, an int64 array of this process, ``C_*`` below: where the store is mapped,
this process's lock token, the addresses of the types and singletons the entries compare with)
and ``_id`` (the object's handle) at the offsets ``SLOT_*``, which ``_fastpath.cpython`` checks on each
class before it installs a method there.  The entries handle the common cases (str, bytes or
int keys; the values whose row of ``_layout.VALUE_KINDS`` says ``c``: None, bool, int64, float,
complex, str, bytes; numbers) and for anything else, or
whenever a kernel returns a status (a busy lock, memory to commit, a stale handle, a closed
store), call the class's Python method for the same operation (``_python_getitem``...), which
does it through the ordinary kernels and raises the right error.  An entry hands a call over
only when it has changed nothing.
"""

import numpy as np

from .. import _layout as L
from .._jit import hot, inline, method
from .._kernels import status as S
from .._kernels.hashmap import (
    _ENTRY_HDR,
    OPT_TRIES,
    _find_in,
    _index_key,
    _pad8,
    _read_begin,
    _read_ok,
    fetch_entry,
    hash_key,
    store_value,
)
from .._kernels.heap import block_ok, block_ulen
from .._kernels.memory import (
    address_bytes,
    address_words,
    float32_bits,
    float_from_bits,
    float_to_bits,
    load_word,
    prefetch,
)
from .._kernels.objects import float_fetch_add, int_fetch_add, scalar_bits
from .._kernels.vector import _resolve_vec, append_bytes, append_word
from .pyapi import (
    py_as_float64,
    py_as_int64,
    py_attr,
    py_bytes,
    py_bytes_data,
    py_call,
    py_complex,
    py_decref,
    py_dict_new,
    py_dict_put,
    py_float,
    py_incref,
    py_int,
    py_list_item,
    py_list_new,
    py_list_size,
    py_list_take,
    py_str,
    py_tuple_item,
    py_tuple_new,
    py_tuple_put,
    py_tuple_size,
    py_utf8,
)

# the context: words of a process-local int64 array (filled by ``_fastpath.cpython.Context``)
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
C_LIST = 11      # address of the type list
C_NDARRAY = 12   # address of the type numpy.ndarray
C_COMPLEX = 13   # address of the type complex; 0 if its layout is not CPLX_VALUE's (cpython)
CTX_WORDS = 16

# Byte offsets of the slots the entries read in ``self``.  CPython lays out ``__slots__`` in
# sorted order after the object header (``object.__basicsize__`` bytes, part of the kernel
# cache's digest), so Ref's slots ``_cx, _id, _store`` and Store's ``_cx, _id`` put ``_cx`` and
# ``_id`` at the same places; VectorRef's own ``_dtype, _element, ...`` follow Ref's three.
# ``_fastpath.cpython`` probes every class before installing an entry on it.
_HEAD = object.__basicsize__
SLOT_CX = _HEAD
SLOT_ID = _HEAD + 8
SLOT_DTYPE = _HEAD + 24
SLOT_ELEMENT = _HEAD + 32

# Byte offsets in a numpy array object (PyArrayObject_fields, the same in numpy 1 and 2; checked
# by ``_fastpath.cpython`` on a few arrays before ``vector_extend`` is installed)
A_DATA = _HEAD        # char *data
A_ND = _HEAD + 8      # int nd (4 bytes, then padding)
A_DIMS = _HEAD + 16   # npy_intp *dimensions
A_DESCR = _HEAD + 40  # PyArray_Descr *descr
A_FLAGS = _HEAD + 48  # int flags (4 bytes, then padding)
A_C_CONTIGUOUS = 0x1  # NPY_ARRAY_C_CONTIGUOUS

# Byte offset of a complex object's value (PyComplexObject's ``Py_complex cval``: real, imag,
# two doubles, V_COMPLEX's 16 bytes as they are; checked by ``_fastpath.cpython``)
CPLX_VALUE = _HEAD

_TAKE_SLOW = -1  # helpers' result: hand the call to the Python method (0: an exception is set)
_ABSENT = -2  # a lookup's result: no such key

# element codes of ``vector_append``: which kind of number a vector's slots hold
E_F64 = 1
E_F32 = 2
E_INT = 3  # signed ints (itemsize 1, 2, 4 or 8)
E_UINT = 4  # unsigned ints
E_BOOL = 5


@inline
def _self(self, nargs, kwnames, lo, hi):
    """(context, the store's memory, handle, ok) of a call on ``self``; not ok if the Python
    method must take it: keyword arguments, a number of arguments outside ``lo..hi``, a ref
    made without its slots, or a store closed in this process."""
    ok = False
    c = 0
    h = 0
    if kwnames == 0 and lo <= nargs <= hi:
        cx = load_word(self + SLOT_CX)
        hid = load_word(self + SLOT_ID)
        if cx != 0 and hid != 0:
            ok_c, c = py_as_int64(cx)
            ok_h, h = py_as_int64(hid)
            ok = ok_c == 1 and ok_h == 1 and c != 0
    ctx = address_words(c, CTX_WORDS if ok else 0)
    at = 0
    n = 0
    if ok:
        at = ctx[C_MEM]
        n = ctx[C_WORDS]
        ok = at != 0
    return ctx, address_words(at, n if ok else 0), h, ok


@hot
def _forward(meth, args, nargs, kwnames):
    """``meth(*args, **kwargs)`` for the arguments of a METH_FASTCALL | METH_KEYWORDS call:
    the Python method that takes what the entry does not (``meth``: a new reference, or 0 with
    the exception set)."""
    if meth == 0:
        return 0
    r = 0
    tup = py_tuple_new(nargs)
    kw = 0
    ok = tup != 0
    if ok:
        for i in range(nargs):
            py_tuple_put(tup, i, _arg(args, i))
        if kwnames != 0:
            kw = py_dict_new()
            ok = kw != 0
            j = 0
            n = py_tuple_size(kwnames) if ok else 0
            while ok and j < n:
                ok = py_dict_put(kw, py_tuple_item(kwnames, j), _arg(args, nargs + j)) == 0
                j += 1
    if ok:
        r = py_call(meth, tup, kw)
    py_decref(kw)
    py_decref(tup)
    py_decref(meth)
    return r


@inline
def _arg(args, i):
    return load_word(args + 8 * i)


@inline
def _type(ctx, obj):
    return load_word(obj + ctx[C_TYPE_AT])


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
    if t == ctx[C_COMPLEX]:  # its bytes: the object's own two doubles
        return L.V_COMPLEX, 0, obj + CPLX_VALUE, L.V_SIZE[L.V_COMPLEX]
    return 0, 0, 0, 0


# ---------------------------------------------------------------------------- maps
@hot
def _value_at(ctx, mem, buf, t, cap, key, ktag, hv):
    """The value of ``key`` (hash ``hv``) in table ``t`` of ``cap`` slots as a new object,
    _ABSENT, or _TAKE_SLOW (a value the Python path decodes: refs, pickles, arrays, text that is
    not strict UTF-8; or a status); 0 if no memory (MemoryError is set).  Read optimistically:
    valid only if ``_read_ok`` agrees."""
    res, eoff, klen = _find_in(mem, buf, t, cap, hv, key, ktag)
    if res == S.ERR_NOT_FOUND:
        return _ABSENT
    obj = _TAKE_SLOW
    if res == L.V_FLOAT:
        obj = py_float(float_from_bits(mem[eoff // 8 + 1 + L.E_PAYLOAD]))
    elif res == L.V_INT:
        obj = py_int(mem[eoff // 8 + 1 + L.E_PAYLOAD])
    elif res == L.V_STR or res == L.V_BYTES:
        vlen = block_ulen(mem, eoff)
        # read again, so checked again: a writer may have reused the block meanwhile
        if block_ok(mem, eoff, _ENTRY_HDR + _pad8(klen) + vlen):
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
    elif res == L.V_COMPLEX:
        vlen = block_ulen(mem, eoff)
        if vlen == L.V_SIZE[L.V_COMPLEX] and block_ok(mem, eoff, _ENTRY_HDR + _pad8(klen) + vlen):
            w = (eoff + _ENTRY_HDR + _pad8(klen)) // 8
            obj = py_complex(float_from_bits(mem[w]), float_from_bits(mem[w + 1]))
    return obj


@hot
def _lookup_at(ctx, mem, buf, t, cap, key, seed):
    """``_value_at`` of a key object (_TAKE_SLOW for keys of other types)."""
    ktag, k, n = _key_of(ctx, key)
    if ktag == L.V_INT:
        kb = _index_key(k)
        return _value_at(ctx, mem, buf, t, cap, kb, ktag, hash_key(kb, ktag, seed))
    if ktag != 0:
        kb = address_bytes(k, n)
        return _value_at(ctx, mem, buf, t, cap, kb, ktag, hash_key(kb, ktag, seed))
    return _TAKE_SLOW


@hot
def _lookup(ctx, mem, h, key):
    """The value of key object ``key`` in map ``h``, read without locking: a new object,
    _ABSENT or _TAKE_SLOW (also when writers kept changing the map: the Python path then reads
    under the map's lock); 0 if no memory."""
    buf = mem.view(np.uint8)
    seed = mem[L.W_HASH_SEED]
    for _ in range(OPT_TRIES):
        tk, t, cap = _read_begin(mem, h, L.KIND_MAP)
        if tk[0] < 0:
            return _TAKE_SLOW
        obj = _lookup_at(ctx, mem, buf, t, cap, key, seed)
        if obj == 0:
            return 0
        if _read_ok(mem, tk):
            return obj
        if obj > 0:
            py_decref(obj)  # a writer changed the map meanwhile: the value may be torn
    return _TAKE_SLOW


@hot
def _hash_of(ctx, key, seed):
    """The map hash of a key object, or 0 if it is not a native key (a hint's input only)."""
    ktag, k, n = _key_of(ctx, key)
    if ktag == L.V_INT:
        return hash_key(_index_key(k), ktag, seed)
    if ktag != 0:
        return hash_key(address_bytes(k, n), ktag, seed)
    return 0


_AHEAD = 8  # get_many on a big map: at key i, fetch key i+24, i+16's slot, i+8's entry
_CACHED_SLOTS = 4096  # a table this big (32 KiB) stays in cache: nothing to fetch ahead


@hot
def _fetch_ahead(ctx, mem, keys, n, i, sw, mask, seed):
    """Ask the CPU for key object ``i + 24``, the table slot of key ``i + 16`` and the entry of
    key ``i + 8``, so the lookups find them in cache (hints only: the lookups check everything)."""
    if i + 3 * _AHEAD < n:  # the key object itself (a str holds its characters inline)
        prefetch(address_words(py_list_item(keys, i + 3 * _AHEAD), 8), 4)
    if i + 2 * _AHEAD < n:
        prefetch(mem, sw + (_hash_of(ctx, py_list_item(keys, i + 2 * _AHEAD), seed) & mask))
    if i + _AHEAD < n:
        fetch_entry(mem, sw, mask, _hash_of(ctx, py_list_item(keys, i + _AHEAD), seed))


@method
def map_getitem(self, args, nargs, kwnames):
    """``m[key]``; takes no lock."""
    ctx, mem, h, ok = _self(self, nargs, kwnames, 1, 1)
    if ok:
        r = _lookup(ctx, mem, h, _arg(args, 0))
        if r >= 0:
            return r
    return _forward(py_attr(self, "_python_getitem"), args, nargs, kwnames)  # (raises KeyError)


@method
def map_get(self, args, nargs, kwnames):
    """``m.get(key, default=None)``; takes no lock."""
    ctx, mem, h, ok = _self(self, nargs, kwnames, 1, 2)
    if ok:
        r = _lookup(ctx, mem, h, _arg(args, 0))
        if r == _ABSENT:
            return py_incref(_arg(args, 1) if nargs == 2 else ctx[C_NONE])
        if r >= 0:
            return r
    return _forward(py_attr(self, "_python_get"), args, nargs, kwnames)


@hot
def _many_into(ctx, mem, h, keys, n, default, out):
    """Fill list ``out`` with the values of the ``n`` keys of list ``keys`` (``default`` for a
    missing one), all read from one state of map ``h``: 1 if done, 0 if no memory, -1 if the
    Python method must take the call (a key or value it handles, or writers that kept changing
    the map).  A try that met a write starts again, replacing the values it put in ``out``."""
    buf = mem.view(np.uint8)
    seed = mem[L.W_HASH_SEED]
    for _ in range(4):
        tk, t, cap = _read_begin(mem, h, L.KIND_MAP)
        if tk[0] < 0:
            return -1
        ahead = cap > _CACHED_SLOTS and n > 2 * _AHEAD
        sw = t // 8 + 2
        i = 0
        r = 1
        while i < n:
            if ahead:
                _fetch_ahead(ctx, mem, keys, n, i, sw, cap - 1, seed)
            r = _lookup_at(ctx, mem, buf, t, cap, py_list_item(keys, i), seed)
            if r == _ABSENT:
                r = py_incref(default)
            if r <= 0:
                break
            py_list_take(out, i, r)  # (a place filled by a try before: its value is released)
            i += 1
        if r == 0:
            return 0
        if _read_ok(mem, tk):
            return 1 if i == n else -1
    return -1


@method
def map_get_many(self, args, nargs, kwnames):
    """``m.get_many(keys, default=None)`` of a list of keys, read from one state of the map;
    takes no lock.  Any key or value the other entries hand over sends the whole call to the
    Python method.

    Making the result list may run a garbage collection, hence finalizers (which may close the
    store) and other threads (which may change ``keys``): the store's context and the keys'
    count are read again after it.  Nothing the loop makes is tracked by the collector, so
    nothing else can run while the keys' items are borrowed."""
    ctx, mem, h, ok = _self(self, nargs, kwnames, 1, 2)
    keys = _arg(args, 0) if ok else 0
    if ok and _type(ctx, keys) == ctx[C_LIST]:
        n = py_list_size(keys)
        out = py_list_new(n)
        if out == 0:
            return 0
        ctx, mem, h, ok = _self(self, nargs, kwnames, 1, 2)
        r = -1
        if ok and py_list_size(keys) == n:
            default = _arg(args, 1) if nargs == 2 else ctx[C_NONE]
            r = _many_into(ctx, mem, h, keys, n, default, out)
        if r == 1:
            return out
        py_decref(out)  # (its empty places are NULL: fine for the list's dealloc)
        if r == 0:
            return 0
    return _forward(py_attr(self, "_python_get_many"), args, nargs, kwnames)


@method
def map_contains(self, args, nargs, kwnames):
    """``key in m``; takes no lock."""
    ctx, mem, h, ok = _self(self, nargs, kwnames, 1, 1)
    if ok:
        r = _lookup(ctx, mem, h, _arg(args, 0))
        if r == _ABSENT:
            return py_incref(ctx[C_FALSE])
        if r > 0:
            py_decref(r)
            return py_incref(ctx[C_TRUE])
        if r == 0:
            return 0
    return _forward(py_attr(self, "_python_contains"), args, nargs, kwnames)


@method
def map_setitem(self, args, nargs, kwnames):
    """``m[key] = value`` for native keys and values."""
    ctx, mem, h, ok = _self(self, nargs, kwnames, 2, 2)
    if ok:
        vtag, payload, vp, vn = _value_of(ctx, _arg(args, 1))
        ktag, k, n = _key_of(ctx, _arg(args, 0))
        if vtag != 0 and ktag != 0:
            vdata = address_bytes(vp, vn)
            token = ctx[C_TOKEN]
            if ktag == L.V_INT:
                r = store_value(mem, token, h, L.KIND_MAP, _index_key(k), ktag, vtag, payload,
                                vdata)
            else:
                r = store_value(mem, token, h, L.KIND_MAP, address_bytes(k, n), ktag, vtag,
                                payload, vdata)
            if r >= 0:
                return py_incref(ctx[C_NONE])
    return _forward(py_attr(self, "_python_setitem"), args, nargs, kwnames)


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


@method
def int_add(self, args, nargs, kwnames):
    """``IntRef.add(x=1)``: the new value after an atomic add of the int ``x``."""
    ctx, mem, h, ok = _self(self, nargs, kwnames, 0, 1)
    if ok:
        fits, x = 1, 1
        if nargs == 1:
            fits, x = 0, 0
            if _type(ctx, _arg(args, 0)) == ctx[C_INT]:
                fits, x = py_as_int64(_arg(args, 0))
        if fits:
            st, new = int_fetch_add(mem, ctx[C_TOKEN], h, x)
            if st >= 0:
                return py_int(new)
    return _forward(py_attr(self, "_python_add"), args, nargs, kwnames)


@method
def float_add(self, args, nargs, kwnames):
    """``NumberRef.add(x)``: the new value after an atomic add of ``x``."""
    ctx, mem, h, ok = _self(self, nargs, kwnames, 1, 1)
    if ok:
        fits, x = _number(ctx, _arg(args, 0))
        if fits:
            st, new = float_fetch_add(mem, ctx[C_TOKEN], h, x)
            if st >= 0:
                return py_float(new)
    return _forward(py_attr(self, "_python_add"), args, nargs, kwnames)


@method
def int_get(self, args, nargs, kwnames):
    """``IntRef.get()``."""
    _ctx, mem, h, ok = _self(self, nargs, kwnames, 0, 0)
    if ok:
        st, bits = scalar_bits(mem, h, L.KIND_INT)
        if st >= 0:
            return py_int(bits)
    return _forward(py_attr(self, "_python_get"), args, nargs, kwnames)


@method
def float_get(self, args, nargs, kwnames):
    """``NumberRef.get()``."""
    _ctx, mem, h, ok = _self(self, nargs, kwnames, 0, 0)
    if ok:
        st, bits = scalar_bits(mem, h, L.KIND_FLOAT)
        if st >= 0:
            return py_float(float_from_bits(bits))
    return _forward(py_attr(self, "_python_get"), args, nargs, kwnames)


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


@method
def vector_append(self, args, nargs, kwnames):
    """``VectorRef.append(value)`` of one number to a numeric vector.  The slot ``_element``
    says what its slots hold: ``code | itemsize << 4`` (``E_*`` codes; None until the Python
    method has looked, 0 for vectors of other dtypes)."""
    ctx, mem, h, ok = _self(self, nargs, kwnames, 1, 1)
    if ok:
        eo = load_word(self + SLOT_ELEMENT)
        element = 0
        if eo != 0 and _type(ctx, eo) == ctx[C_INT]:
            element = py_as_int64(eo)[1]
        nbytes = element >> 4
        if 1 <= nbytes <= 8:
            fits, bits = _element_bits(ctx, _arg(args, 0), element & 15, nbytes)
            if fits and append_word(mem, ctx[C_TOKEN], h, bits, nbytes) >= 0:
                return py_incref(ctx[C_NONE])
    return _forward(py_attr(self, "_python_append"), args, nargs, kwnames)


@method
def vector_extend(self, args, nargs, kwnames):
    """``VectorRef.extend(values)`` of a 1-d C-contiguous ``numpy.ndarray`` (exactly) whose
    dtype is the vector's own dtype object (slot ``_dtype``): its bytes are appended as they
    are, with no Python code and no numba dispatch.  Anything else goes to ``_python_extend``."""
    ctx, mem, h, ok = _self(self, nargs, kwnames, 1, 1)
    if ok:
        a = _arg(args, 0)
        if (_type(ctx, a) == ctx[C_NDARRAY] and load_word(a + A_DESCR) == load_word(self + SLOT_DTYPE)
                and load_word(a + A_ND) & 0xFFFFFFFF == 1
                and load_word(a + A_FLAGS) & A_C_CONTIGUOUS != 0):
            n = load_word(load_word(a + A_DIMS))
            if n == 0:
                return py_incref(ctx[C_NONE])
            vw = _resolve_vec(mem, h)
            if vw >= 0:
                data = address_bytes(load_word(a + A_DATA), n * mem[vw + L.VH_ITEMSIZE])
                if append_bytes(mem, ctx[C_TOKEN], h, data) >= 0:
                    return py_incref(ctx[C_NONE])
    return _forward(py_attr(self, "_python_extend"), args, nargs, kwnames)


def element_code(dtype) -> int:
    """The ``_element`` slot of a VectorRef (read by ``vector_append``) for a vector of ``dtype`` (a numpy
    dtype), or 0 if its slots are not single native numbers."""
    if dtype.names is not None or dtype.subdtype is not None or not dtype.isnative:
        return 0
    code = {"f": E_F64 if dtype.itemsize == 8 else E_F32 if dtype.itemsize == 4 else 0,
            "i": E_INT, "u": E_UINT, "b": E_BOOL}.get(dtype.kind, 0)
    return code | dtype.itemsize << 4 if code and dtype.itemsize <= 8 else 0
