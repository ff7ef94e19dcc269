"""Where compiled kernels are kept: a portable layer shipped in the package, and this machine's.

Each kernel (``_jit.LazyKernel``) keeps its compiled code in numba's cache format (an ``.nbi``
index and ``.nbc`` data per kernel), looked up in two layers, in this order:

1. **Shipped** (read-only): ``sharedstore/_kernelcache/<tag>/``, where ``<tag>`` names the
   interpreter, the numba version and the platform (:func:`tag`).  Compiled by
   ``python -m sharedstore compile --portable`` in processes run with ``NUMBA_CPU_NAME=generic``,
   so the object code runs on any x86-64; its index keys carry the generic CPU in place of the
   host's.  Nothing ever writes it at run time.  ``$SHAREDSTORE_SHIPPED_CACHE`` names another
   root (tests), or ``0`` to ignore it.
2. **Local** (writable, this machine's CPU): the first usable of ``$SHAREDSTORE_CACHE_DIR``,
   ``$NUMBA_CACHE_DIR/sharedstore``, ``$XDG_CACHE_HOME/sharedstore`` (``~/.cache/sharedstore``)
   and a private directory under the temp dir (mode 0700, owned by this user, refused
   otherwise).  The choice is exported as ``$SHAREDSTORE_CACHE_DIR``, so workers started by
   ``spawn`` or ``forkserver`` use the same one.  With none usable, kernels compile in memory.

In both, a kernel's files live in ``<module>-<stamp>/``.  A module's *stamp* hashes its source
and the sources of the package modules it imports, transitively (found by reading the imports,
not from a list), with the numba version, ``NUMBA_OPT`` and the object header size the entry
points read past: numba inlines helpers across files, so an edit anywhere below a kernel must
reach its stamp, and an edit elsewhere must not.  Editing ``_fastpath/entries.py`` recompiles
the entry points only; editing ``atomics.py``, everything.

A version mismatch of any kind (Python, numba, platform, stamp, optimisation level) finds no
shipped entry and falls through to the local layer, which compiles: never wrong code, never
an error.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

import numba
from numba.core import caching, compiler, config, sigutils
from numba.core.runtime import rtsys
from numba.core.typing import signature as _signature

PACKAGE = Path(__file__).resolve().parent
_NAME = __name__.rpartition(".")[0]  # "sharedstore"
SHIPPED = PACKAGE / "_kernelcache"
#: the CPU part of a portable index key, as numba makes it under ``NUMBA_CPU_NAME=generic``
GENERIC_CPU = ("generic", "")
#: set by ``python -m sharedstore compile --portable`` in its workers: the one layer they write
BUILD_ENV = "SHAREDSTORE_CACHE_BUILD"

log = logging.getLogger(_NAME)


# ---------------------------------------------------------------------------- stamps
def _in_package(module: str) -> bool:
    return module.startswith(_NAME + ".")


def _source_path(module: str) -> Path | None:
    """The source file of ``module`` (dotted), or None if it has none.  A module outside the
    package (a test's own kernels) counts by its file alone."""
    if not _in_package(module):
        path = getattr(sys.modules.get(module), "__file__", None)
        return Path(path) if path and path.endswith(".py") else None
    base = PACKAGE.joinpath(*module.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _top_level(body):
    """Statements run at import (into ``if`` and ``try`` blocks, not into functions)."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            for block in (node.body, node.orelse, getattr(node, "finalbody", []),
                          *(h.body for h in getattr(node, "handlers", []))):
                yield from _top_level(block)


_MEMO = "imports.json"
_memo: dict | None = None


def _statements(source: bytes) -> list:
    """``[level, module, names]`` of each import statement run at the top level of ``source``
    (``from .. import x`` is ``[2, "", ["x"]]``, ``import a.b`` is ``[0, None, ["a.b"]]``).
    Parsing is most of a stamp's cost at a warm start (25-50 ms for the 11 files below the
    entry points), so what it finds is kept in the local cache directory by the source's
    digest: an edited file is parsed again."""
    global _memo
    key = hashlib.sha256(source).hexdigest()[:32]
    if _memo is None:
        _memo = {}
        root = local_dir()
        with contextlib.suppress(OSError, ValueError):
            _memo = json.loads((root / _MEMO).read_text()) if root else {}
    if key not in _memo:
        found: list[list[Any]] = []
        for node in _top_level(ast.parse(source).body):
            if isinstance(node, ast.Import):
                found.append([0, None, [a.name for a in node.names]])
            elif isinstance(node, ast.ImportFrom):
                found.append([node.level, node.module or "", [a.name for a in node.names]])
        _memo[key] = found
        root = local_dir()
        if root is not None:
            with contextlib.suppress(OSError), tempfile.NamedTemporaryFile(
                    "w", dir=root, suffix=".tmp", delete=False) as f:
                json.dump(_memo, f)
            with contextlib.suppress(OSError):
                os.replace(f.name, root / _MEMO)
    return _memo[key]


@functools.cache
def imports(module: str) -> frozenset[str]:
    """The package modules that ``module`` imports at its top level (not transitively).

    ``from . import status`` names the module ``status``; ``from .hashmap import x`` the
    module ``hashmap``.  Imports inside functions are left out: numba code cannot import, so
    they never shape a kernel (``_jit`` loads this module that way)."""
    path = _source_path(module)
    if path is None:
        return frozenset()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for level, base, names in _statements(path.read_bytes()):
        if base is None:  # import a.b
            found.update(names)
            continue
        if level:
            parts = package.split(".")
            parent = ".".join(parts[:len(parts) - level + 1])
            base = f"{parent}.{base}" if base else parent
        for name in names:  # a submodule, or a name defined in ``base``
            found.add(f"{base}.{name}" if _source_path(f"{base}.{name}") else base)
    return frozenset(m for m in found if _in_package(m) and _source_path(m) is not None)


def dependencies(module: str) -> list[str]:
    """``module`` and every package module it imports, transitively, sorted."""
    seen = {module}
    todo = [module]
    while todo:
        for m in imports(todo.pop()):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return sorted(seen)


def kernel_modules() -> list[str]:
    """The package modules that may define kernels: those that import ``_jit`` (found by
    reading every module's imports, so moving or splitting kernel files needs no list)."""
    jit = f"{_NAME}._jit"
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if jit in imports(module):
            found.append(module)
    return found


def module_stamp(module: str, numba_version: str | None = None, opt: int | None = None) -> str:
    """The stamp of ``module``'s kernels: a digest of the sources they are compiled from and of
    what else decides their code (``numba_version`` and ``opt``: numba's and ``NUMBA_OPT`` by
    default)."""
    # (numba.config sets OPT at run time, out of type checkers' sight)
    opt = int(config.OPT) if opt is None else opt  # type: ignore[attr-defined]
    h = hashlib.sha256(f"numba {numba_version or numba.__version__} opt {opt} "
                       f"object header {object.__basicsize__}".encode())
    for dep in dependencies(module):
        path = _source_path(dep)
        h.update(f"\0{dep}\0".encode())
        h.update(path.read_bytes() if path else b"?")
    return h.hexdigest()[:16]


_stamps: dict[str, str] = {}


def _stamp(module: str) -> str:
    if module not in _stamps:
        _stamps[module] = module_stamp(module)
    return _stamps[module]


# ---------------------------------------------------------------------------- layers
def tag(python: str | None = None, numba_version: str | None = None) -> str:
    """The shipped layer's directory name for interpreter ``python`` ("3.11": CPython 3.11) and
    ``numba_version`` (default: this process's)."""
    if python is None:
        cache_tag = f"{sys.implementation.cache_tag}{sys.abiflags}"
    else:
        cache_tag = "cpython-" + python.replace(".", "")
    machine = platform.machine().lower() or "unknown"
    return f"{cache_tag}-numba{numba_version or numba.__version__}-{machine}-{sys.platform}"


def shipped_dir() -> Path | None:
    """This process's shipped layer, or None if there is none for it."""
    root = os.environ.get("SHAREDSTORE_SHIPPED_CACHE")
    if root is not None and root.strip() in ("", "0"):
        return None
    path = (Path(root) if root is not None else SHIPPED) / tag()
    return path if path.is_dir() else None


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _private_temp_dir() -> Path | None:
    """``<temp dir>/sharedstore-<uid>``, made mode 0700; None if it exists and is not this
    user's own private directory (a cache another user can write runs their code here)."""
    path = Path(tempfile.gettempdir()) / f"sharedstore-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        log.warning("not caching sharedstore kernels in %s: it is not a directory private to "
                    "this user (mode 0700); remove it or set SHAREDSTORE_CACHE_DIR", path)
        return None
    return path if _writable(path) else None


@functools.cache
def local_dir() -> Path | None:
    """The writable layer's root (see the module's doc), exported as ``$SHAREDSTORE_CACHE_DIR``;
    None if no place is usable."""
    candidates = []
    if os.environ.get("SHAREDSTORE_CACHE_DIR"):
        candidates.append(Path(os.environ["SHAREDSTORE_CACHE_DIR"]))
    if os.environ.get("NUMBA_CACHE_DIR"):
        candidates.append(Path(os.environ["NUMBA_CACHE_DIR"]) / "sharedstore")
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates.append(Path(xdg) / "sharedstore")
    root = next((c for c in candidates if _writable(c)), None) or _private_temp_dir()
    if root is not None:
        os.environ["SHAREDSTORE_CACHE_DIR"] = str(root)
    return root


class _Layer:
    """One directory of kernel caches.  ``portable``: index keys carry the generic CPU."""

    def __init__(self, root: Path, portable: bool, writable: bool):
        self.root, self.portable, self.writable = root, portable, writable

    def magic(self, codegen) -> tuple:
        triple, *cpu = codegen.magic_tuple()
        return (triple, *GENERIC_CPU) if self.portable else (triple, *cpu)


def layers() -> list[_Layer]:
    """The layers a kernel is looked up in, in order; the writable one (if any) is last."""
    build = os.environ.get(BUILD_ENV)
    if build:  # a portable build writes its own layer and reads nothing else
        return [_Layer(Path(build), portable=True, writable=True)]
    found = []
    shipped = shipped_dir()
    if shipped is not None:
        found.append(_Layer(shipped, portable=True, writable=False))
    local = local_dir()
    if local is not None:
        found.append(_Layer(local, portable=False, writable=True))
    return found


def signature_text(sig) -> str:
    """A kernel signature (text or numba's) in one canonical form, for index keys."""
    args, ret = sigutils.normalize_signature(sig)
    return str(_signature(ret, *args))


class KernelCache(caching._Cache):
    """numba's cache interface over :func:`layers` for one kernel: loads from the first layer
    that has it, saves to the writable one.  A dispatcher or ``CFunc`` uses it as its
    ``_cache``; the files are numba's own (``IndexDataCacheFile``)."""

    def __init__(self, py_func, layer_list: list[_Layer]):
        self._py_func = py_func
        module = py_func.__module__
        self._dir = f"{module.removeprefix(_NAME + '.')}-{_stamp(module)}"
        self._base = (f"{py_func.__qualname__}.py{sys.version_info[0]}{sys.version_info[1]}"
                      f"{sys.abiflags}")
        self._layers = layer_list
        self._code = hashlib.sha256(py_func.__code__.co_code).hexdigest()
        self._enabled = py_func.__closure__ is None  # (a closure's cells would need a key too)

    def _file(self, layer: _Layer) -> caching.IndexDataCacheFile:
        return caching.IndexDataCacheFile(str(layer.root / self._dir), self._base,
                                          self._dir.rpartition("-")[2])

    def _key(self, sig, layer: _Layer, codegen) -> tuple:
        return signature_text(sig), layer.magic(codegen), self._code

    @property
    def cache_path(self):
        return str(self._layers[-1].root / self._dir) if self._layers else None

    def has(self, sig, codegen) -> bool:
        """Whether a layer holds this kernel for ``sig`` (reads the indexes, not the code)."""
        for layer in self._layers:
            try:
                if self._key(sig, layer, codegen) in self._file(layer)._load_index():
                    return True
            except Exception:  # an unreadable index is a miss, as numba treats it
                continue
        return False

    def load_overload(self, sig, target_context):
        if not self._enabled:
            return None
        # Loading needs numba's runtime (the NRT functions the code calls) and its code
        # generator, not the typing and lowering registries ``target_context.refresh()`` loads
        # (0.14-0.35 s at the first load of a process: half a warm start).  A compile
        # refreshes them itself.
        rtsys.initialize(target_context)
        codegen = target_context.codegen()
        for layer in self._layers:
            try:
                data = self._file(layer).load(self._key(sig, layer, codegen))
            except Exception as e:  # a damaged file: compile instead
                log.debug("kernel cache %s unreadable: %s", layer.root, e)
                continue
            if data is not None:
                return compiler.CompileResult._rebuild(target_context, *data)
        return None

    def save_overload(self, sig, data):
        writable = [layer for layer in self._layers if layer.writable]
        if not (self._enabled and writable) or data.library.has_dynamic_globals:
            return
        layer = writable[-1]
        magic = layer.magic(data.codegen)
        if layer.portable and data.codegen.magic_tuple() != magic:
            raise RuntimeError("a portable kernel cache is compiled with NUMBA_CPU_NAME=generic; "
                               "run `python -m sharedstore compile --portable`")
        os.makedirs(layer.root / self._dir, exist_ok=True)
        self._file(layer).save(self._key(sig, layer, data.codegen), data._reduce())

    def enable(self):
        self._enabled = True

    def disable(self):
        self._enabled = False

    def flush(self):
        for layer in self._layers:
            if layer.writable:
                self._file(layer).flush()
