"""The fast path: the hot methods as C functions, a backend chosen once at import.

The classes define every method in Python: those are the real, documented methods, and the
*python* backend runs them.  The *c* backend puts C entry points (``entries.py``) in
the place of the methods listed in :data:`METHODS`: ``m[k]`` then runs no Python frame and
costs about what ``d[k]`` costs plus the lookup.  An entry point does the common cases (str,
bytes or int keys; None, bool, int64, float, complex, str, bytes values: the kinds marked ``c``
in ``_layout.VALUE_KINDS``; numbers) and hands everything
else (refs, arrays, pickled values, keyword arguments, a busy lock, memory to commit, a closed
store) to the Python method, kept as the class's ``_python_<name>`` attribute, with the same
results and errors.

The choice, made once when ``sharedstore`` is imported:

- ``SHAREDSTORE_FASTPATH=0``: the python backend.
- ``auto`` (the default): the c backend where this interpreter qualifies (:func:`gates`) and
  the probes of ``cpython.py`` find every slot and array field where the entry points read
  them; a method whose probe fails keeps its Python method.  On an interpreter that qualifies,
  a failed probe warns once (the speed is lost, and you should know).
- ``1``: the c backend, or ``ImportError`` saying why not.

``sharedstore.fastpath()`` says which backend runs, why, and which methods it covers.  Entry
points compile (or load from the kernel cache) on their method's first call, so importing the
library loads none.
"""

from __future__ import annotations

import os
import struct
import sys
import sysconfig
import warnings
from dataclasses import dataclass, field

#: interpreter facts the entry points rely on, as explicit gates: CPython's object layout and
#: C API (PyDescr_NewMethod, METH_FASTCALL) in the versions tested, 64-bit pointers, and the
#: GIL (an entry point reads list items it does not own, and a closed store's context is
#: zeroed while no other thread can be inside an entry point)
PY_MIN = (3, 10)
PY_MAX = (3, 13)  # the newest minor version the suite has run on
PY312_PLUS = sys.version_info >= (3, 12)  # (immortal objects: refcounts of None/True change)
PY313_PLUS = sys.version_info >= (3, 13)  # (free-threaded builds exist: see free_threaded())


def free_threaded() -> bool:
    """Whether this interpreter runs without the GIL (a ``python3.13t`` build, GIL off)."""
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        return False
    return not getattr(sys, "_is_gil_enabled", lambda: True)()


def gates() -> str:
    """Why this interpreter cannot have the c backend; "" if it qualifies."""
    if sys.implementation.name != "cpython":
        return f"{sys.implementation.name} is not CPython (the entry points use its C API)"
    if not PY_MIN <= sys.version_info[:2] <= PY_MAX:
        return (f"CPython {sys.version_info[0]}.{sys.version_info[1]} is outside the versions "
                f"the fast path is tested on ({PY_MIN[0]}.{PY_MIN[1]} to "
                f"{PY_MAX[0]}.{PY_MAX[1]})")
    if struct.calcsize("P") != 8 or sys.byteorder != "little":
        return "the entry points read 64-bit little-endian words"
    if free_threaded():
        return "a free-threaded build: the entry points rely on the GIL"
    return ""


@dataclass(frozen=True)
class Method:
    """One method the c backend can run: ``cls.name`` as entry point ``entry``, reading the
    instance slots ``slots`` (and numpy arrays' fields if ``arrays``)."""

    cls: str  # "module.Class", within sharedstore
    name: str
    entry: str
    slots: tuple = ("_cx", "_id")
    arrays: bool = False

    @property
    def fallback(self) -> str:
        """Where the Python method is kept for the entry point to hand over to."""
        return "_python_" + self.name.strip("_")


#: every method the c backend runs (the entry points call the ``fallback`` attribute)
METHODS = (
    Method("store.Store", "__getitem__", "map_getitem"),
    Method("store.Store", "__setitem__", "map_setitem"),
    Method("store.Store", "__contains__", "map_contains"),
    Method("store.Store", "get", "map_get"),
    Method("maps.MapRef", "__getitem__", "map_getitem"),
    Method("maps.MapRef", "__setitem__", "map_setitem"),
    Method("maps.MapRef", "__contains__", "map_contains"),
    Method("maps.MapRef", "get", "map_get"),
    Method("maps.MapRef", "get_many", "map_get_many"),
    Method("refs.NumberRef", "get", "float_get"),
    Method("refs.NumberRef", "add", "float_add"),
    Method("refs.IntRef", "get", "int_get"),
    Method("refs.IntRef", "add", "int_add"),
    Method("vectors.VectorRef", "append", "vector_append", ("_cx", "_id", "_element")),
    Method("vectors.VectorRef", "extend", "vector_extend", ("_cx", "_id", "_dtype"), True),
)


@dataclass(frozen=True)
class FastPath:
    """What :func:`sharedstore.fastpath` reports.

    Attributes
    ----------
    backend : str
        ``"c"`` (C entry points run the hot methods) or ``"python"``.
    reason : str
        Why this backend: the setting, or what this interpreter lacks.
    methods : tuple of str
        The methods the c backend runs (``"MapRef.__getitem__"``...); empty for python.
    missing : dict
        Methods the c backend could not take, and why (a failed probe).
    """

    backend: str
    reason: str
    methods: tuple[str, ...] = ()
    missing: dict[str, str] = field(default_factory=dict)


_state = FastPath("python", "not chosen yet")
_installed: list = []  # (class, name, the Python method) of every stand-in put in place


def _setting() -> str:
    value = os.environ.get("SHAREDSTORE_FASTPATH", "auto").strip().lower() or "auto"
    if value not in ("auto", "0", "1"):
        raise ImportError(f"SHAREDSTORE_FASTPATH={value!r}: use auto, 0 or 1")
    return value


def _class(path: str) -> type:
    module, name = path.rsplit(".", 1)
    return getattr(sys.modules[f"sharedstore.{module}"], name)


#: the slots C entry points read at fixed offsets, made read-only from Python on every backend
PROTECTED = (("store.Store", ("_cx", "_id")), ("refs.Ref", ("_cx", "_id")),
             ("vectors.VectorRef", ("_dtype", "_element")))


def protect_slots() -> None:
    """Make the slots of :data:`PROTECTED` read-only from Python (once, at import)."""
    from . import cpython

    if sys.implementation.name == "cpython":
        for path, names in PROTECTED:
            cpython.protect(_class(path), names)


def choose() -> FastPath:
    """Choose the backend (once, when sharedstore is imported) and put it in place."""
    setting = _setting()
    if setting == "0":
        return use(False, "SHAREDSTORE_FASTPATH=0")
    why = gates()
    if why:
        if setting == "1":
            raise ImportError(f"SHAREDSTORE_FASTPATH=1, but the fast path cannot run here: {why}")
        return use(False, why)
    info = use(True, "SHAREDSTORE_FASTPATH=1" if setting == "1" else "this interpreter qualifies")
    if info.missing:
        text = "; ".join(f"{m}: {why}" for m, why in info.missing.items())
        if setting == "1":
            raise ImportError(f"SHAREDSTORE_FASTPATH=1, but some methods cannot run in C: {text}")
        warnings.warn(f"sharedstore's fast path is off for {len(info.missing)} methods on this "
                      f"interpreter ({text}); they run in Python, slower.  Please report it.",
                      RuntimeWarning, stacklevel=3)
    return info


def use(enabled: bool, reason: str) -> FastPath:
    """Put the c backend in place (``enabled``) or the Python methods back; return what runs.
    Tests switch backends with it; users set ``SHAREDSTORE_FASTPATH``."""
    global _state
    from . import cpython

    for cls, name, python in _installed:
        setattr(cls, name, python)
    _installed.clear()
    if not enabled:
        _state = FastPath("python", reason)
        return _state
    arrays_ok = cpython.array_layout_ok()
    done: list[str] = []
    missing: dict[str, str] = {}
    for m in METHODS:
        cls = _class(m.cls)
        label = f"{cls.__name__}.{m.name}"
        if not cpython.slots_ok(cls, m.slots):
            missing[label] = f"its slots {m.slots} are not where the entry point reads them"
            continue
        if m.arrays and not arrays_ok:
            missing[label] = "numpy's array fields are not where the entry point reads them"
            continue
        python = cls.__dict__[m.name]
        setattr(cls, m.fallback, python)
        setattr(cls, m.name, _StandIn(m, cls, python))
        _installed.append((cls, m.name, python))
        done.append(label)
    _state = FastPath("c", reason, tuple(done), missing)
    return _state


def info() -> FastPath:
    """Which backend runs the hot methods, why, and which methods (public as
    ``sharedstore.fastpath()``; ``SHAREDSTORE_FASTPATH`` chooses it at import).

    Returns
    -------
    FastPath
        ``backend`` (``"c"`` or ``"python"``), ``reason``, ``methods`` (those the c backend
        runs) and ``missing`` (those it could not take, and why).
    """
    return _state


class _StandIn:
    """In a class until its method's first call: then it loads the entry point (compiling it
    or reading it from the kernel cache) and puts the method descriptor in its place, so
    importing the library loads no entry point."""

    def __init__(self, method: Method, cls: type, python):
        self.method, self.cls, self.python = method, cls, python
        self.__doc__ = python.__doc__

    def install(self):
        from . import cpython
        from . import entries as PE

        cls, name = self.cls, self.method.name
        current = cls.__dict__.get(name)
        if current is not self:  # (installed already by another thread, or switched back)
            return current
        doc = self.python.__doc__ or ""
        sig = _text_signature(self.python)
        fn = cpython.descriptor(cls, name, getattr(PE, self.method.entry).load(),
                                f"{name}{sig}\n--\n\n{doc}")
        setattr(cls, name, fn)
        return fn

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self.python  # (introspection of the class sees the Python method)
        return self.install().__get__(obj, objtype)


def _text_signature(fn) -> str:
    """``($self, key, /)``: the signature CPython shows for a builtin method."""
    import inspect

    params = [p.replace(annotation=inspect.Parameter.empty)
              for p in list(inspect.signature(fn).parameters.values())[1:]]
    text = ", ".join(["$self", *(str(p) for p in params)]) if params else "$self"
    return f"({text})"
