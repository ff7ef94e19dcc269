"""The hot paths' methods as C functions: the entry points of ``_kernels/pyentry.py`` put on
the classes as method descriptors.

Each entry point is a C function with CPython's ``METH_FASTCALL | METH_KEYWORDS`` signature.
:func:`method` stands in for one in a class body; on its first call it describes the entry
point to the interpreter with a ``PyMethodDef``, makes a method descriptor of it
(``PyDescr_NewMethod``, as C extension types do) and puts it in its own place, so ``m[k]`` or
``counter.add(1)`` runs no Python code at all: the interpreter calls the C function with the
ref and the arguments.  The entry point reads the ref's ``_cx`` slot (the address of its
store's :class:`Context`) and ``_id`` slot; whatever it does not handle it passes to the
class's Python method for the same operation (``_slow_getitem``...).

Where the interpreter is not CPython, or the slots are not where the entry points read them
(``pyentry.SLOT_*``, probed here on each class), the stand-in puts that Python method in its
place instead: the library stays correct, only slower.
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np

from ._kernels import pyentry as PE

_METH_FASTCALL_KEYWORDS = 0x0080 | 0x0002


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

#: where the entry points read each slot they use (byte offsets in the instance)
SLOT_OFFSETS = {"_cx": PE.SLOT_CX, "_id": PE.SLOT_ID, "_dtype": PE.SLOT_DTYPE,
                "_element": PE.SLOT_ELEMENT}


def slot_offset(cls: type, name: str) -> int:
    """The byte offset of slot ``name`` in instances of ``cls``, found by storing an object in
    it and looking for its address; -1 if ``name`` is not a slot or was not found."""
    member = next((c.__dict__[name] for c in cls.__mro__ if name in c.__dict__), None)
    if type(member).__name__ != "member_descriptor" or _TYPE_OFFSET < 0:
        return -1
    obj = object.__new__(cls)
    marks = (object(), object())
    found = []
    for mark in marks:
        member.__set__(obj, mark)
        found.append({off for off in range(0, cls.__basicsize__ - 7, 8)
                      if ctypes.c_ssize_t.from_address(id(obj) + off).value == id(mark)})
    member.__delete__(obj)
    both = found[0] & found[1]
    return both.pop() if len(both) == 1 else -1


def _word(address: int) -> int:
    return ctypes.c_ssize_t.from_address(address).value


def _array_layout() -> bool:
    """Whether numpy arrays keep their data pointer, dimensions, dtype and flags where
    ``pyentry.A_*`` says (probed on a few arrays, contiguous or not)."""
    if _TYPE_OFFSET < 0:
        return False
    base = np.arange(12.0)
    for a, contiguous in ((base, True), (base[::3], False), (np.zeros(5, dtype="u1,f4"), True),
                          (base.reshape(3, 4)[1:], True)):
        at = id(a)
        if not (_word(at + PE.A_DATA) == a.ctypes.data
                and _word(at + PE.A_ND) & 0xFFFFFFFF == a.ndim
                and _word(_word(at + PE.A_DIMS)) == a.shape[0]
                and _word(at + PE.A_DESCR) == id(a.dtype)
                and bool(_word(at + PE.A_FLAGS) & PE.A_C_CONTIGUOUS) == contiguous):
            return False
    return True


_ARRAYS = _array_layout()


def usable(cls: type, slots) -> bool:
    """Whether entry points reading ``slots`` can be installed on ``cls``."""
    return _TYPE_OFFSET >= 0 and all(slot_offset(cls, s) == SLOT_OFFSETS[s] for s in slots)


_defs: list[_MethodDef] = []  # kept alive for as long as the descriptors that point at them


def _descriptor(cls: type, name: str, entry: str, doc: str):
    address = getattr(PE, entry).load()
    d = _MethodDef(name.encode(), address, _METH_FASTCALL_KEYWORDS, doc.encode())
    _defs.append(d)
    new = ctypes.pythonapi.PyDescr_NewMethod
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.py_object, ctypes.c_void_p]
    return new(cls, ctypes.addressof(d))


class method:
    """``name = method(entry, slow, "(key, /)")`` in a class body: the method ``name`` is entry
    point ``entry`` of ``pyentry``, and ``slow`` the name of the Python method it hands what it
    does not do to (called with the same arguments).  ``signature`` is the text signature
    (after ``$self``) and ``doc`` the docstring.

    Until its first call it is this stand-in, so importing the library loads no entry point:
    the first call installs the method descriptor in its place (or the Python method, see the
    module's doc), then every call goes straight to it."""

    def __init__(self, entry: str, slow: str, signature: str, doc: str,
                 slots=("_cx", "_id"), arrays: bool = False):
        self.entry, self.slow, self.slots = entry, slow, tuple(slots)
        self.arrays = arrays  # the entry reads numpy arrays' fields (pyentry.A_*)
        self.signature, self.__doc__ = signature, doc

    def __set_name__(self, owner, name):
        self.owner, self.name = owner, name

    def install(self):
        """Put the method in this stand-in's place; return it."""
        owner, name = self.owner, self.name
        current = owner.__dict__.get(name)
        if current is not self:  # (installed already, by another thread)
            return current
        if usable(owner, self.slots) and (_ARRAYS or not self.arrays):
            params = self.signature[1:]
            text = f"{name}($self{', ' if params != ')' else ''}{params}\n--\n\n{self.__doc__}"
            fn = _descriptor(owner, name, self.entry, text)
        else:
            fn = getattr(owner, self.slow)
        setattr(owner, name, fn)
        return fn

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self  # (introspection of the class loads nothing)
        return self.install().__get__(obj, objtype)


class Context:
    """One store's context in this process: the int64 array the entry points read through a
    ref's ``_cx`` slot (``address``).

    ``mem`` is the store's mapping (an int64 array); ``token`` this process's lock token.
    :meth:`close` makes every later call hand over to the Python methods (which then say the
    store is closed), so nothing reads the mapping after it is gone."""

    def __init__(self, mem: np.ndarray, token: int):
        self.ctx = c = np.zeros(PE.CTX_WORDS, dtype=np.int64)
        self.address = int(c.ctypes.data)
        if _TYPE_OFFSET >= 0:
            c[PE.C_MEM] = mem.ctypes.data
            c[PE.C_WORDS] = len(mem)
            c[PE.C_TOKEN] = token
            c[PE.C_TYPE_AT] = _TYPE_OFFSET
            for i, o in ((PE.C_STR, str), (PE.C_BYTES, bytes), (PE.C_INT, int),
                         (PE.C_FLOAT, float), (PE.C_NONE, None), (PE.C_TRUE, True),
                         (PE.C_FALSE, False), (PE.C_LIST, list), (PE.C_NDARRAY, np.ndarray)):
                c[i] = id(o)

    def set_token(self, token: int) -> None:
        self.ctx[PE.C_TOKEN] = token

    def close(self) -> None:
        self.ctx[PE.C_MEM] = 0
