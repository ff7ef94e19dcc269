"""The one place where numba compile flags are decided, and kernels made lazily.

Every kernel is compiled with :data:`FLAGS` (``nogil=True`` so several threads can run kernels
at once) on first use, or loaded from the kernel cache (:mod:`sharedstore._cache`: a portable
layer shipped in the package, then this machine's).  :func:`load_all` makes sure every kernel
is cached first (:mod:`sharedstore._compile` compiles what is missing in parallel processes),
then loads them all: the process that creates a store calls it, so workers never compile.

This module is part of every kernel's cache stamp (the flags shape the code); the cache and
compile machinery is imported inside functions, so editing it recompiles nothing.
"""

from __future__ import annotations

import functools
import sys

import numba

#: numba flags for every kernel.  ``boundscheck`` stays off: kernels check every offset they
#: read from shared memory themselves, against the committed size.
FLAGS = dict(nogil=True, error_model="numpy", boundscheck=False)

_UNSET = object()


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
        self.compiled = None  # once loaded: whether it was compiled here (not from a cache)
        self._cache = _UNSET
        functools.update_wrapper(self, func)

    @property
    def name(self) -> str:
        """``module:qualname``, how :mod:`sharedstore._compile` names a kernel to its workers."""
        return f"{self.py_func.__module__}:{self.py_func.__qualname__}"

    def cache(self):
        """This kernel's :class:`sharedstore._cache.KernelCache`, or None with no cache layer."""
        if self._cache is _UNSET:
            from . import _cache

            found = _cache.layers()
            self._cache = _cache.KernelCache(self.py_func, found) if found else None
        return self._cache

    def cached(self) -> bool:
        """Whether a cache layer holds this kernel (its index is read; its code is not)."""
        from numba.core.registry import cpu_target

        c = self.cache()
        return c is not None and c.has(self.signature, cpu_target.target_context.codegen())

    def _compile(self, cache):
        """The numba dispatcher of this kernel, loaded from ``cache`` or compiled into it."""
        d = numba.njit(**FLAGS)(self.py_func)
        if cache is not None:
            d._cache = cache
        d.compile(self.signature)
        d.disable_compile()
        return d

    def load(self):
        """Compile (or load) the kernel and put its fastest callable in its module's namespace."""
        if self.dispatcher is None:
            self.dispatcher = self._build()
            self.entry = _entry_point(self.dispatcher)
            setattr(sys.modules[self.py_func.__module__], self.py_func.__name__, self.entry)
        return self.entry

    def _build(self):
        cache = self.cache()
        self.compiled = cache is None or not self.cached()
        if not self.compiled or cache is None:
            return self._compile(cache)
        from . import _compile

        with _compile.lock():  # compiling: not while another process compiles into the cache
            return self._compile(cache)

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
    """A method entry point (``_fastpath/entries.py``): compiled on first use as a C function
    with :data:`METHOD_SIGNATURE`; ``load()`` returns its address (``sharedstore._fastpath``
    makes a method descriptor of it)."""

    def _compile(self, cache):
        from numba.core import sigutils
        from numba.core.ccallback import CFunc

        # numba.cfunc(sig, cache=...)(func), with this kernel's cache in place of numba's
        options = {k: v for k, v in FLAGS.items() if k != "nogil"}  # called with the GIL
        c = CFunc(self.py_func, sigutils.normalize_signature(self.signature), locals={},
                  options=options)
        if cache is not None:
            c._cache = cache
        c.compile()
        return c

    def load(self):
        if self.dispatcher is None:
            self.dispatcher = self._build()
            self.entry = self.dispatcher.address
        return self.entry

    def __call__(self, *args):
        raise TypeError(f"{self.py_func.__name__} is a method entry point: see sharedstore._fastpath")


def method(func):
    """Decorate a method entry point; compiled with :data:`FLAGS` (less ``nogil``) on first use."""
    k = LazyMethod(METHOD_SIGNATURE, func)
    _KERNELS.append(k)
    return k


def import_kernel_modules() -> None:
    """Import every package module that defines kernels, so :data:`_KERNELS` holds them all
    (``_kernels/check.py`` is otherwise imported only by ``store.check()``)."""
    import importlib

    from . import _cache

    for module in _cache.kernel_modules():
        importlib.import_module(module)


def load_all(jobs: int | None = None, progress=None) -> None:
    """Load every kernel and entry point of the package, compiling first, in ``jobs``
    processes, whatever no cache layer holds (see :func:`sharedstore._compile.ensure`)."""
    from . import _compile

    import_kernel_modules()
    _compile.ensure(_KERNELS, jobs=jobs, progress=progress)
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

    The library's own kernels use this for their helpers: every array they pass between
    helpers on a hot path has no owner (the entry points make theirs from addresses; the
    functions of :mod:`sharedstore.kernels` call ``unowned`` first), so a call LLVM inlines
    costs them next to nothing more than IR inlining, and it compiles in half the time (numba's
    IR inlining deep-copies the callee's IR at every call site, nested: 30 of 62 s of a cold
    compile).  The smallest steps of the hot paths stay :func:`inline` (the entry points'
    reading of their arguments, the map's probe and bounds checks: they call intrinsics and each
    other, a level or two deep): through ``hot`` steps, ``append`` and ``m[k] = v`` were 3-5%
    slower, a call of numba's reference counting for each array passed, owner or not."""
    return numba.njit(nogil=True, error_model="numpy", forceinline=True)(func)


def inline(func):
    """Decorate an entry point of :mod:`sharedstore.kernels` that users' ``@njit`` code calls
    with its own arrays (or a tiny leaf step of the C entry points): numba inlines its IR into
    each caller.

    A call LLVM inlines (:func:`hot`) still takes and drops a reference on every array that has
    an owner (two atomic operations, ~30 ns on a hot lookup), and a user's ``store.mem`` has
    one; inlining the IR leaves no call (a lookup loop: 16 against 22 ns a key).  It costs
    compile time in every caller, which users pay in their own functions; the library's kernels
    use it only for leaves (see :func:`hot`)."""
    return numba.njit(nogil=True, error_model="numpy", inline="always")(func)


#: argument types used in kernel signatures
MEM = numba.types.int64[::1]
OUT = numba.types.uint8[::1]
BYTES = numba.types.Bytes(numba.types.uint8, 1, "C", readonly=True)
RO_BYTES = numba.types.Array(numba.types.uint8, 1, "C", readonly=True)
WORDS = numba.types.int64[::1]
