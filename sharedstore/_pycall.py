"""Builtin functions over the entry points of ``_kernels/pyentry.py``: the hot paths' calls.

Each entry point is a C function with CPython's ``METH_FASTCALL`` signature.  This module
describes it to the interpreter with a ``PyMethodDef`` and makes a builtin function of it
(``PyCFunction_NewEx``) whose ``self`` is an int: the address of a store's *context* array.
Calling one costs about what calling ``len`` does; there is no numba dispatcher or unboxing on
the way.  :class:`Calls` holds one store's context and builtins.

An entry point answers :data:`SLOW` when the Python path must do the work (and has changed
nothing), and :data:`MISSING` when a key is absent.  Where the interpreter is not CPython, or
its object layout is not the one probed here, every call answers SLOW: the library stays
correct, only slower.
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np

from ._kernels import pyentry as PE


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"<sharedstore {self.name}>"

    def __reduce__(self):
        raise TypeError(f"{self!r} is private to this process")


SLOW = _Marker("SLOW")  # "take the Python path"
MISSING = _Marker("MISSING")  # "no such key"

_METH_FASTCALL = 0x0080


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


def _type_offset() -> int:
    """Byte offset of an object's type pointer, probed on a few objects; -1 if not found.

    It is 8 in CPython's usual builds (after the reference count)."""
    probes = (1.5, "x", b"x", 12345, None, True)
    for off in (8, 16, 24):
        if all(ctypes.c_ssize_t.from_address(id(o) + off).value == id(type(o)) for o in probes):
            return off
    return -1


def _supported() -> bool:
    return (sys.implementation.name == "cpython" and hasattr(ctypes, "pythonapi")
            and ctypes.sizeof(ctypes.c_void_p) == 8 and sys.byteorder == "little")


_TYPE_OFFSET = _type_offset() if _supported() else -1
_defs: dict[str, _MethodDef] = {}  # kept alive for as long as the builtins that point at them


def _builtin(name: str, self_obj):
    """A builtin function calling entry point ``name`` of ``pyentry`` with ``self_obj``."""
    d = _defs.get(name)
    if d is None:
        address = getattr(PE, name).load()
        d = _defs[name] = _MethodDef(name.encode(), address, _METH_FASTCALL, None)
    new = ctypes.pythonapi.PyCFunction_NewEx
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.py_object, ctypes.py_object]
    return new(ctypes.addressof(d), self_obj, None)


def _always_slow(*args):
    return SLOW


#: the builtins a Store has, by attribute name: entry point in ``pyentry``
ENTRIES = {
    "map_get": "map_get_entry",
    "map_set": "map_set_entry",
    "int_add": "int_add_entry",
    "float_add": "float_add_entry",
    "scalar_get": "scalar_get_entry",
    "vector_append": "vector_append_entry",
}


class Calls:
    """One store's context and builtin functions in this process: ``calls.map_get(h, key)``.

    ``mem`` is the store's mapping (an int64 array); ``token`` this process's lock token.  Each
    builtin is made on its first call (loading its entry point from the cache): until then its
    attribute is a stand-in that makes it, puts it in its place and forwards the call, so
    attaching loads no entry point a process never calls.  :meth:`close` makes every later call
    answer SLOW (the Python path then says the store is closed), so nothing reads the mapping
    after it is gone."""

    def __init__(self, mem: np.ndarray, token: int):
        self.ctx = np.zeros(PE.CTX_WORDS, dtype=np.int64)
        usable = _TYPE_OFFSET >= 0
        if usable:
            c = self.ctx
            c[PE.C_MEM] = mem.ctypes.data
            c[PE.C_WORDS] = len(mem)
            c[PE.C_TOKEN] = token
            c[PE.C_TYPE_AT] = _TYPE_OFFSET
            for i, o in ((PE.C_STR, str), (PE.C_BYTES, bytes), (PE.C_INT, int),
                         (PE.C_FLOAT, float), (PE.C_NONE, None), (PE.C_TRUE, True),
                         (PE.C_FALSE, False), (PE.C_SLOW, SLOW), (PE.C_MISSING, MISSING)):
                c[i] = id(o)
        for attr, name in ENTRIES.items():
            setattr(self, attr, self._stand_in(attr, name) if usable else _always_slow)

    def _stand_in(self, attr: str, name: str):
        def first_call(*args):
            fn = self.__dict__[attr]
            if fn is first_call:  # (a caller may have kept the stand-in itself)
                fn = _builtin(name, int(self.ctx.ctypes.data))
                setattr(self, attr, fn)
            return fn(*args)

        return first_call

    def set_token(self, token: int) -> None:
        self.ctx[PE.C_TOKEN] = token

    def close(self) -> None:
        self.ctx[PE.C_MEM] = 0
