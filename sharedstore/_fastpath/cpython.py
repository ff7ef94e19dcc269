"""CPython facts the fast path relies on, probed; method descriptors of C entry points; the
context array the entry points read.

Each entry point (``entries.py``) is a C function with CPython's
``METH_FASTCALL | METH_KEYWORDS`` signature.  :func:`descriptor` describes one to the
interpreter with a ``PyMethodDef`` and makes a method descriptor of it (``PyDescr_NewMethod``,
as C extension types do), so ``m[k]`` runs no Python code: the interpreter calls the C function
with the ref and the arguments.  The entry point reads the ref's ``_cx`` slot (the address of
its store's :class:`Context`) and ``_id`` slot at fixed offsets (``entries.SLOT_*``), and
numpy arrays' fields at ``entries.A_*``; :func:`slot_offset` and :func:`array_layout_ok` check
those offsets on this interpreter before anything is installed.
"""

from __future__ import annotations

import ctypes
import struct
import sys
from typing import Any

import numpy as np

from . import entries as PE

_METH_FASTCALL_KEYWORDS = 0x0080 | 0x0002


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


def _type_offset() -> int:
    """Byte offset of an object's type pointer, probed on a few objects; -1 if not found.

    It is 8 in CPython's usual builds (after the reference count)."""
    if sys.implementation.name != "cpython" or not hasattr(ctypes, "pythonapi"):
        return -1
    probes = (1.5, "x", b"x", 12345, None, True)
    for off in (8, 16, 24):
        if all(ctypes.c_ssize_t.from_address(id(o) + off).value == id(type(o)) for o in probes):
            return off
    return -1


TYPE_OFFSET = _type_offset()

#: where the entry points read each slot they use (byte offsets in the instance)
SLOT_OFFSETS = {"_cx": PE.SLOT_CX, "_id": PE.SLOT_ID, "_dtype": PE.SLOT_DTYPE,
                "_element": PE.SLOT_ELEMENT}


def slot_offset(cls: type, name: str) -> int:
    """The byte offset of slot ``name`` in instances of ``cls``, found by storing an object in
    it and looking for its address; -1 if ``name`` is not a slot or was not found."""
    member: Any = writable_member(cls, name)
    if type(member).__name__ != "member_descriptor" or TYPE_OFFSET < 0:
        return -1
    obj: object = object.__new__(cls)
    marks = (object(), object())
    found = []
    for mark in marks:
        member.__set__(obj, mark)
        found.append({off for off in range(0, cls.__basicsize__ - 7, 8)
                      if ctypes.c_ssize_t.from_address(id(obj) + off).value == id(mark)})
    member.__delete__(obj)
    both = found[0] & found[1]
    return both.pop() if len(both) == 1 else -1


def slots_ok(cls: type, slots) -> bool:
    """Whether the slots ``slots`` of ``cls`` are where the entry points read them."""
    return TYPE_OFFSET >= 0 and all(slot_offset(cls, s) == SLOT_OFFSETS[s] for s in slots)


def _word(address: int) -> int:
    return ctypes.c_ssize_t.from_address(address).value


def array_layout_ok() -> bool:
    """Whether numpy arrays keep their data pointer, dimensions, dtype and flags where
    ``entries.A_*`` says (probed on a few arrays, contiguous or not)."""
    if TYPE_OFFSET < 0:
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


def complex_layout_ok() -> bool:
    """Whether a complex object holds its real and imaginary parts where the entry points read
    them as V_COMPLEX's 16 bytes (``entries.CPLX_VALUE``), probed on a few values."""
    if TYPE_OFFSET < 0 or complex.__basicsize__ < PE.CPLX_VALUE + 16:
        return False
    for z in (complex(1.5, -2.25), complex(-0.0, 1e300), 3j):
        got = ctypes.string_at(id(z) + PE.CPLX_VALUE, 16)
        if got != struct.pack("<dd", z.real, z.imag):
            return False
    return True


_defs: list[_MethodDef] = []  # kept alive for as long as the descriptors that point at them


def descriptor(cls: type, name: str, address: int, doc: str):
    """A method descriptor for ``cls.name`` calling the C entry point at ``address``."""
    d = _MethodDef(name.encode(), address, _METH_FASTCALL_KEYWORDS, doc.encode())
    _defs.append(d)
    new = ctypes.pythonapi.PyDescr_NewMethod
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.py_object, ctypes.c_void_p]
    return new(cls, ctypes.addressof(d))


class Context:
    """One store handle's context in this process: the int64 array the entry points read
    through a ref's ``_cx`` slot (``address``).

    ``mem`` is the store's mapping (an int64 array); ``token`` this process's lock token.
    :meth:`close` makes every later call hand over to the Python methods (which then say the
    store is closed), so nothing reads the mapping after it is gone."""

    def __init__(self, mem: np.ndarray, token: int):
        self.ctx = c = np.zeros(PE.CTX_WORDS, dtype=np.int64)
        self.address = int(c.ctypes.data)
        if TYPE_OFFSET >= 0:
            c[PE.C_MEM] = mem.ctypes.data
            c[PE.C_WORDS] = len(mem)
            c[PE.C_TOKEN] = token
            c[PE.C_TYPE_AT] = TYPE_OFFSET
            c[PE.C_STR:PE.C_COMPLEX + 1] = _TYPE_IDS

    def set_token(self, token: int) -> None:
        self.ctx[PE.C_TOKEN] = token

    def close(self) -> None:
        self.ctx[PE.C_MEM] = 0


# the addresses of the types and singletons the entry points compare objects with (complex's
# only where its layout is as they read it: else 0, which no object's type is, and complex
# values take the Python methods)
_TYPE_IDS = [0] * (PE.C_COMPLEX + 1 - PE.C_STR)
for _i, _o in ((PE.C_STR, str), (PE.C_BYTES, bytes), (PE.C_INT, int), (PE.C_FLOAT, float),
               (PE.C_NONE, None), (PE.C_TRUE, True), (PE.C_FALSE, False), (PE.C_LIST, list),
               (PE.C_NDARRAY, np.ndarray), (PE.C_COMPLEX, complex)):
    _TYPE_IDS[_i - PE.C_STR] = id(_o)
if not complex_layout_ok():
    _TYPE_IDS[PE.C_COMPLEX - PE.C_STR] = 0


# ---------------------------------------------------------------------- read-only slots
class _MemberDef(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("type", ctypes.c_int), ("offset", ctypes.c_ssize_t),
                ("flags", ctypes.c_int), ("doc", ctypes.c_char_p)]


_T_OBJECT_EX = 16  # (Py_T_OBJECT_EX: an object slot; AttributeError while unset)
_READONLY = 1
_members: list[_MemberDef] = []  # kept alive for as long as the descriptors that point at them


def protect(cls: type, names: tuple[str, ...]) -> None:
    """Make the slots ``names`` of ``cls`` read-only from Python (a C entry point reads them at
    fixed offsets: ``m._cx = 4096`` would send it to another address).  The writable member
    descriptor of each stays on the class as ``_w<name>`` (``Ref._w_cx.__set__(ref, value)``),
    for the library's own writes.  Where a read-only member cannot be made (no CPython C API),
    the slots stay writable."""
    for name in names:
        if "_w" + name in cls.__dict__:
            continue  # (protected already)
        member = cls.__dict__[name]
        setattr(cls, "_w" + name, member)
        offset = slot_offset(cls, name)
        if offset < 0:
            continue
        d = _MemberDef(name.encode(), _T_OBJECT_EX, offset, _READONLY, None)
        new = ctypes.pythonapi.PyDescr_NewMember
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.py_object, ctypes.c_void_p]
        _members.append(d)
        setattr(cls, name, new(cls, ctypes.addressof(d)))


def writable_member(cls: type, name: str) -> Any:
    """The writable member descriptor of slot ``name`` of ``cls`` (:func:`protect` keeps it)."""
    for c in cls.__mro__:
        w = c.__dict__.get("_w" + name)
        if w is not None:
            return w
        if name in c.__dict__:
            return c.__dict__[name]
    return None
