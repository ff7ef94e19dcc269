"""The one place where numba compile flags and the kernel cache location are decided.

Every kernel is compiled with :data:`FLAGS` (``nogil=True`` so several threads can run kernels
at once, ``cache=True`` where a writable cache directory exists).

The cache lives in a directory keyed by a digest of *all* kernel sources (every ``.py`` file in
``_kernels/``, ``_layout.py`` and this file, which holds the flags) and the numba version.
numba's own cache is keyed per source file only, so an edit in ``atomics.py`` would otherwise
leave a stale copy of it inlined in the cached ``hashmap.py`` kernels.
The directory is the first writable one of:

1. ``$SHAREDSTORE_CACHE_DIR``
2. ``$NUMBA_CACHE_DIR/sharedstore``
3. ``$XDG_CACHE_HOME/sharedstore`` (default ``~/.cache/sharedstore``)
4. ``_kernels/__pycache__`` next to the sources

If none is writable (a read-only install with a read-only home), kernels compile without a
cache: slower to start, never a failure at import.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numba
from numba.core import caching

_PKG = Path(__file__).resolve().parent
_KERNEL_DIR = _PKG / "_kernels"


def _source_digest() -> str:
    # (the entry points in pyentry.py read slots at offsets past the object header)
    h = hashlib.sha256(f"{numba.__version__} {object.__basicsize__}".encode())
    for path in sorted(_KERNEL_DIR.glob("*.py")) + [_PKG / "_layout.py", _PKG / "_jit.py"]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


DIGEST = _source_digest()


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _cache_root() -> Path | None:
    candidates = []
    if os.environ.get("SHAREDSTORE_CACHE_DIR"):
        candidates.append(Path(os.environ["SHAREDSTORE_CACHE_DIR"]))
    if os.environ.get("NUMBA_CACHE_DIR"):
        candidates.append(Path(os.environ["NUMBA_CACHE_DIR"]) / "sharedstore")
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates.append(Path(xdg) / "sharedstore")
    candidates.append(_KERNEL_DIR / "__pycache__")
    for root in candidates:
        if _writable(root / DIGEST):
            return root / DIGEST
    return None


CACHE_DIR = _cache_root()


class _KernelCacheLocator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """Cache locator for sharedstore kernels only: one directory per kernel-source digest."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(CACHE_DIR / Path(py_file).stem)

    def get_cache_path(self):
        return self._cache_path

    def get_source_stamp(self):
        # The digest already covers every kernel source; mtimes would only add false misses
        # (a fresh checkout has new mtimes but the same code).
        return DIGEST

    @classmethod
    def from_function(cls, py_func, py_file):
        if CACHE_DIR is None or Path(py_file).resolve().parent != _KERNEL_DIR:
            return None
        return super().from_function(py_func, py_file)


_CACHE = CACHE_DIR is not None and hasattr(caching, "CacheImpl")
if _CACHE and _KernelCacheLocator not in caching.CacheImpl._locator_classes:
    caching.CacheImpl._locator_classes.insert(0, _KernelCacheLocator)

#: numba flags for every kernel.  ``boundscheck`` stays off: kernels check every offset they
#: read from shared memory themselves, against the committed size.
FLAGS = dict(nogil=True, cache=_CACHE, error_model="numpy", boundscheck=False)


class LazyKernel:
    """A kernel compiled (or loaded from the cache) on first use, for a fast ``import``.

    On first use it replaces itself in its module with the numba dispatcher, so later calls
    through the module (``KM.map_get(...)``) cost nothing extra.  :func:`load_all` loads every
    kernel: the process that creates a store calls it, so workers never compile (several
    processes compiling one cold cache at once have crashed numba)."""

    def __init__(self, signature, func):
        self.signature = signature
        self.py_func = func
        self.dispatcher = None
        self.entry = None
        functools.update_wrapper(self, func)

    def load(self):
        """Compile (or load) the kernel and put its fastest callable in its module's namespace."""
        if self.dispatcher is None:
            self.dispatcher = numba.njit(self.signature, **FLAGS)(self.py_func)
            self.entry = _entry_point(self.dispatcher)
            setattr(sys.modules[self.py_func.__module__], self.py_func.__name__, self.entry)
        return self.entry

    def __call__(self, *args):
        return self.load()(*args)


_KERNELS: list[LazyKernel] = []


def _entry_point(dispatcher):
    """The compiled function's own CPython wrapper, skipping the dispatcher's type resolution.

    A kernel has exactly one signature, so there is nothing to resolve: calling the wrapper of
    that one overload halves the cost of a call (about 450 -> 225 ns for five arguments on the
    development machine).  The wrapper still unboxes every argument by the signature's types,
    so a wrong argument is a TypeError, as through the dispatcher.  If numba stops exposing it,
    the dispatcher is used."""
    try:
        (sig,) = dispatcher.signatures
        entry = dispatcher.overloads[sig].entry_point
    except (AttributeError, KeyError, ValueError):
        return dispatcher
    return entry if callable(entry) else dispatcher


def kernel(signature):
    """Decorate a kernel: ``@kernel(sig)``, compiled with :data:`FLAGS` on first use."""

    def wrap(func):
        k = LazyKernel(signature, func)
        _KERNELS.append(k)
        return k

    return wrap


#: the C signature of a method entry point: CPython's METH_FASTCALL | METH_KEYWORDS
#: ``(self, args, nargs, kwnames)``, objects as their addresses (``PyObject *`` and
#: ``Py_ssize_t`` are both 64-bit integers in the ABI)
METHOD_SIGNATURE = numba.types.intp(numba.types.intp, numba.types.intp, numba.types.intp,
                                    numba.types.intp)


class LazyMethod(LazyKernel):
    """A method entry point (``_kernels/pyentry.py``): compiled on first use as a C function
    with :data:`METHOD_SIGNATURE`; ``load()`` returns its address (``sharedstore._pycall``
    makes a method descriptor of it)."""

    def load(self):
        if self.dispatcher is None:
            options = {k: v for k, v in FLAGS.items() if k != "nogil"}  # called with the GIL
            self.dispatcher = numba.cfunc(self.signature, **options)(self.py_func)
            self.entry = self.dispatcher.address
        return self.entry

    def __call__(self, *args):
        raise TypeError(f"{self.py_func.__name__} is a method entry point: see _pycall")


def method(func):
    """Decorate a method entry point; compiled with :data:`FLAGS` (less ``nogil``) on first use."""
    k = LazyMethod(METHOD_SIGNATURE, func)
    _KERNELS.append(k)
    return k


def load_all() -> None:
    """Compile or load from the cache every kernel and entry point defined so far."""
    for k in _KERNELS:
        k.load()


def helper(func):
    """Decorate a helper that kernels call; it is compiled into its callers and cached with them."""
    return numba.njit(nogil=True, error_model="numpy")(func)


def hot(func):
    """Decorate a small helper of the read path: LLVM inlines it into every caller
    (``forceinline``), including users' own ``@njit`` functions that look keys up through
    :mod:`sharedstore.kernels`.  A numba call LLVM leaves in place costs 10-30 ns (the status
    protocol, arrays passed as seven words, a reference count taken and dropped); a lookup runs
    through a dozen such steps.

    The library's own kernels use this, never :func:`inline`: every array they pass between
    helpers on a hot path has no owner (the entry points make theirs from addresses; the
    functions of :mod:`sharedstore.kernels` call ``unowned`` first), so a call LLVM inlines
    costs them nothing more than IR inlining, and it compiles in half the time (numba's IR
    inlining deep-copies the callee's IR at every call site: 30 of 62 s of a cold compile)."""
    return numba.njit(nogil=True, error_model="numpy", forceinline=True)(func)


def inline(func):
    """Decorate an entry point of :mod:`sharedstore.kernels` that users' ``@njit`` code calls
    with its own arrays: numba inlines its IR into each caller.

    A call LLVM inlines (:func:`hot`) still takes and drops a reference on every array that has
    an owner (two atomic operations, ~30 ns on a hot lookup), and a user's ``store.mem`` has
    one; inlining the IR leaves no call (a lookup loop: 16 against 22 ns a key).  It costs
    compile time in every caller, which users pay in their own functions, never the library's
    kernels (see :func:`hot`)."""
    return numba.njit(nogil=True, error_model="numpy", inline="always")(func)


#: argument types used in kernel signatures
MEM = numba.types.int64[::1]
OUT = numba.types.uint8[::1]
BYTES = numba.types.Bytes(numba.types.uint8, 1, "C", readonly=True)
RO_BYTES = numba.types.Array(numba.types.uint8, 1, "C", readonly=True)
WORDS = numba.types.int64[::1]
