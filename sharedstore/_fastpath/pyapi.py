"""CPython C-API calls from jitted code, as numba intrinsics, for the entry points (``entries``).

A Python object is passed around as its address (an int64: ``PyObject *`` as an integer), so
jitted code can compare type pointers and pick values out of argument arrays with plain integer
arithmetic.  Every function here is called by name (``PyFloat_FromDouble``...): the process that
runs the code is the Python interpreter, which exports them, so a cached kernel links to them
like to any C function (as numba's own wrappers do).  Only stable-ABI functions are used.

Conventions, as in C: a function that makes an object returns its address (a new reference),
or 0 with a Python exception set (only ``MemoryError`` can happen for the ones used here).
Functions that can fail on a bad argument report it in their result and clear the exception,
so the caller can take the Python path instead (which raises the right error itself).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._kernels.memory import _addr  # (a pointer as an int64 address)

_I8P = ir.IntType(8).as_pointer()
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_F64 = ir.DoubleType()


def _c(builder, name, ret, args):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args), name)


def _obj(builder, value):
    """An int64 object address as a ``PyObject *``."""
    return builder.inttoptr(value, _I8P)


# ---------------------------------------------------------------------------- reading objects
@intrinsic
def py_as_int64(typingctx, obj):
    """(ok, value) of an int object; ok is 0 (exception cleared) if it does not fit in int64."""
    sig = types.UniTuple(types.int64, 2)(types.int64)

    def codegen(context, builder, sig, args):
        over = cgutils.alloca_once_value(builder, ir.Constant(_I32, 0))
        fn = _c(builder, "PyLong_AsLongLongAndOverflow", _I64, [_I8P, _I32.as_pointer()])
        v = builder.call(fn, [_obj(builder, args[0]), over])
        bad = builder.icmp_signed("==", v, ir.Constant(_I64, -1))
        with builder.if_then(bad, likely=False):
            occurred = builder.call(_c(builder, "PyErr_Occurred", _I8P, []), [])
            with builder.if_then(cgutils.is_not_null(builder, occurred)):
                builder.call(_c(builder, "PyErr_Clear", ir.VoidType(), []), [])
                builder.store(ir.Constant(_I32, 1), over)
        ok = builder.zext(builder.icmp_signed("==", builder.load(over), ir.Constant(_I32, 0)), _I64)
        return context.make_tuple(builder, sig.return_type, [ok, v])

    return sig, codegen


@intrinsic
def py_as_float64(typingctx, obj):
    """The value of a float object (the caller has checked its type is exactly float)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, sig, args):
        return builder.call(_c(builder, "PyFloat_AsDouble", _F64, [_I8P]), [_obj(builder, args[0])])

    return sig, codegen


@intrinsic
def py_utf8(typingctx, obj):
    """(address, length) of a str object's UTF-8 bytes (CPython keeps them with the object; for
    an ASCII str they are its own data).  Length -1 (exception cleared) if it has none: a str
    with lone surrogates."""
    sig = types.UniTuple(types.int64, 2)(types.int64)

    def codegen(context, builder, sig, args):
        n = cgutils.alloca_once_value(builder, ir.Constant(_I64, -1))
        fn = _c(builder, "PyUnicode_AsUTF8AndSize", _I8P, [_I8P, _I64.as_pointer()])
        p = builder.call(fn, [_obj(builder, args[0]), n])
        with builder.if_then(cgutils.is_null(builder, p), likely=False):
            builder.call(_c(builder, "PyErr_Clear", ir.VoidType(), []), [])
            builder.store(ir.Constant(_I64, -1), n)
        return context.make_tuple(builder, sig.return_type, [_addr(builder, p), builder.load(n)])

    return sig, codegen


@intrinsic
def py_bytes_data(typingctx, obj):
    """(address, length) of a bytes object's data (the caller has checked its type)."""
    sig = types.UniTuple(types.int64, 2)(types.int64)

    def codegen(context, builder, sig, args):
        o = _obj(builder, args[0])
        p = builder.call(_c(builder, "PyBytes_AsString", _I8P, [_I8P]), [o])
        n = builder.call(_c(builder, "PyBytes_Size", _I64, [_I8P]), [o])
        return context.make_tuple(builder, sig.return_type, [_addr(builder, p), n])

    return sig, codegen


# ---------------------------------------------------------------------------- making objects
@intrinsic
def py_float(typingctx, x):
    """A new float object."""
    sig = types.int64(types.float64)

    def codegen(context, builder, sig, args):
        return _addr(builder, builder.call(_c(builder, "PyFloat_FromDouble", _I8P, [_F64]), args))

    return sig, codegen


@intrinsic
def py_complex(typingctx, re, im):
    """A new complex object."""
    sig = types.int64(types.float64, types.float64)

    def codegen(context, builder, sig, args):
        fn = _c(builder, "PyComplex_FromDoubles", _I8P, [_F64, _F64])
        return _addr(builder, builder.call(fn, args))

    return sig, codegen


@intrinsic
def py_int(typingctx, x):
    """A new int object."""
    sig = types.int64(types.int64)

    def codegen(context, builder, sig, args):
        return _addr(builder, builder.call(_c(builder, "PyLong_FromLongLong", _I8P, [_I64]), args))

    return sig, codegen


@intrinsic
def py_str(typingctx, addr, n):
    """A new str from ``n`` UTF-8 bytes at ``addr``; 0 (exception cleared) if they are not
    strict UTF-8 (the Python path decodes surrogates, or reports damage)."""
    sig = types.int64(types.int64, types.int64)

    def codegen(context, builder, sig, args):
        fn = _c(builder, "PyUnicode_DecodeUTF8", _I8P, [_I8P, _I64, _I8P])
        p = builder.call(fn, [_obj(builder, args[0]), args[1], ir.Constant(_I8P, None)])
        with builder.if_then(cgutils.is_null(builder, p), likely=False):
            builder.call(_c(builder, "PyErr_Clear", ir.VoidType(), []), [])
        return _addr(builder, p)

    return sig, codegen


@intrinsic
def py_bytes(typingctx, addr, n):
    """A new bytes object holding ``n`` bytes copied from ``addr``."""
    sig = types.int64(types.int64, types.int64)

    def codegen(context, builder, sig, args):
        fn = _c(builder, "PyBytes_FromStringAndSize", _I8P, [_I8P, _I64])
        return _addr(builder, builder.call(fn, [_obj(builder, args[0]), args[1]]))

    return sig, codegen


@intrinsic
def py_incref(typingctx, obj):
    """``Py_IncRef(obj)``; returns ``obj`` (to return a borrowed object as a new reference)."""
    sig = types.int64(types.int64)

    def codegen(context, builder, sig, args):
        builder.call(_c(builder, "Py_IncRef", ir.VoidType(), [_I8P]), [_obj(builder, args[0])])
        return args[0]

    return sig, codegen


@intrinsic
def py_decref(typingctx, obj):
    """``Py_DecRef(obj)``: drop a reference this code made."""
    sig = types.void(types.int64)

    def codegen(context, builder, sig, args):
        builder.call(_c(builder, "Py_DecRef", ir.VoidType(), [_I8P]), [_obj(builder, args[0])])
        return context.get_dummy_value()

    return sig, codegen


# ---------------------------------------------------------------------------- calling Python
@intrinsic(prefer_literal=True)
def py_attr(typingctx, obj, name):
    """``getattr(obj, name)`` as a new reference, 0 with the exception set; ``name`` is a
    string constant in the caller's code."""
    if not isinstance(name, types.StringLiteral):
        return None
    text = name.literal_value
    sig = types.int64(types.int64, name)

    def codegen(context, builder, sig, args):
        cname = context.insert_const_string(builder.module, text)
        fn = _c(builder, "PyObject_GetAttrString", _I8P, [_I8P, _I8P])
        return _addr(builder, builder.call(fn, [_obj(builder, args[0]), cname]))

    return sig, codegen


@intrinsic
def py_tuple_new(typingctx, n):
    """A new tuple of ``n`` empty places (fill each with :func:`py_tuple_put`); 0 if no memory."""
    sig = types.int64(types.int64)

    def codegen(context, builder, sig, args):
        return _addr(builder, builder.call(_c(builder, "PyTuple_New", _I8P, [_I64]), args))

    return sig, codegen


@intrinsic
def py_tuple_put(typingctx, tup, i, obj):
    """Put a new reference to ``obj`` in place ``i`` of a tuple just made."""
    sig = types.void(types.int64, types.int64, types.int64)

    def codegen(context, builder, sig, args):
        o = _obj(builder, args[2])
        builder.call(_c(builder, "Py_IncRef", ir.VoidType(), [_I8P]), [o])
        fn = _c(builder, "PyTuple_SetItem", _I32, [_I8P, _I64, _I8P])  # (steals the reference)
        builder.call(fn, [_obj(builder, args[0]), args[1], o])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def py_tuple_size(typingctx, tup):
    sig = types.int64(types.int64)

    def codegen(context, builder, sig, args):
        return builder.call(_c(builder, "PyTuple_Size", _I64, [_I8P]), [_obj(builder, args[0])])

    return sig, codegen


@intrinsic
def py_tuple_item(typingctx, tup, i):
    """Item ``i`` of a tuple (a borrowed reference)."""
    sig = types.int64(types.int64, types.int64)

    def codegen(context, builder, sig, args):
        fn = _c(builder, "PyTuple_GetItem", _I8P, [_I8P, _I64])
        return _addr(builder, builder.call(fn, [_obj(builder, args[0]), args[1]]))

    return sig, codegen


@intrinsic
def py_list_new(typingctx, n):
    """A new list of ``n`` empty places (fill each with :func:`py_list_take`); 0 if no memory."""
    sig = types.int64(types.int64)

    def codegen(context, builder, sig, args):
        return _addr(builder, builder.call(_c(builder, "PyList_New", _I8P, [_I64]), args))

    return sig, codegen


@intrinsic
def py_list_take(typingctx, lst, i, obj):
    """Put ``obj`` in place ``i`` of a list just made, taking over the caller's reference."""
    sig = types.void(types.int64, types.int64, types.int64)

    def codegen(context, builder, sig, args):
        fn = _c(builder, "PyList_SetItem", _I32, [_I8P, _I64, _I8P])  # (steals the reference)
        builder.call(fn, [_obj(builder, args[0]), args[1], _obj(builder, args[2])])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def py_list_size(typingctx, lst):
    sig = types.int64(types.int64)

    def codegen(context, builder, sig, args):
        return builder.call(_c(builder, "PyList_Size", _I64, [_I8P]), [_obj(builder, args[0])])

    return sig, codegen


@intrinsic
def py_list_item(typingctx, lst, i):
    """Item ``i`` of a list (a borrowed reference; ``i`` in range)."""
    sig = types.int64(types.int64, types.int64)

    def codegen(context, builder, sig, args):
        fn = _c(builder, "PyList_GetItem", _I8P, [_I8P, _I64])
        return _addr(builder, builder.call(fn, [_obj(builder, args[0]), args[1]]))

    return sig, codegen


@intrinsic
def py_dict_new(typingctx):
    sig = types.int64()

    def codegen(context, builder, sig, args):
        return _addr(builder, builder.call(_c(builder, "PyDict_New", _I8P, []), []))

    return sig, codegen


@intrinsic
def py_dict_put(typingctx, d, key, value):
    """``d[key] = value``; 0, or -1 with the exception set."""
    sig = types.int64(types.int64, types.int64, types.int64)

    def codegen(context, builder, sig, args):
        fn = _c(builder, "PyDict_SetItem", _I32, [_I8P, _I8P, _I8P])
        r = builder.call(fn, [_obj(builder, a) for a in args])
        return builder.sext(r, _I64)

    return sig, codegen


@intrinsic
def py_call(typingctx, fn, tup, kw):
    """``fn(*tup, **kw)`` (``kw`` may be 0): a new reference, 0 with the exception set."""
    sig = types.int64(types.int64, types.int64, types.int64)

    def codegen(context, builder, sig, args):
        f = _c(builder, "PyObject_Call", _I8P, [_I8P, _I8P, _I8P])
        return _addr(builder, builder.call(f, [_obj(builder, a) for a in args]))

    return sig, codegen
