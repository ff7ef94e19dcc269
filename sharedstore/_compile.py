"""Compiling kernels ahead: what no cache layer holds, in parallel processes, under a lock.

:func:`ensure` is what ``sharedstore.create`` runs (through ``_jit.load_all``) before it loads
every kernel: it reads the cache indexes (:mod:`sharedstore._cache`) to find the kernels no
layer holds, takes an exclusive ``flock`` on the local cache directory (a second process
waits, then finds everything cached), logs one line with the time to expect, and compiles the
missing kernels in ``jobs`` worker processes (default: one per CPU).  The parent feeds kernel
names to the workers one at a time, longest first, so a long kernel does not leave the other
workers idle at the end; each worker compiles disjoint kernels into the cache (several
processes compiling the same kernels at once have crashed numba).  The parent then loads them.

:func:`build_portable` makes the shipped layer for one interpreter, in workers run with
``NUMBA_CPU_NAME=generic`` (``python -m sharedstore compile --portable``).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import importlib
import json
import os
import selectors
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import _cache
from ._cache import log

#: the interpreters and numba version the shipped cache is built for: what CI installs
#: (``.ci/constraints.txt`` pins numba; a test checks the two agree and the cache is current)
SHIPPED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
SHIPPED_NUMBA = "0.68.1"

_lock = threading.RLock()
_depth = 0
_in_worker = False  # a worker compiles under its parent's lock


@contextlib.contextmanager
def lock():
    """Hold the local cache directory's compile lock (re-entrant; waits for other processes)."""
    global _depth
    root = _cache.local_dir()
    if root is None or _in_worker:
        yield
        return
    with _lock:
        if _depth:
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        with open(root / ".compile.lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            _depth = 1
            try:
                yield
            finally:
                _depth = 0
                fcntl.flock(f, fcntl.LOCK_UN)


def _estimates() -> dict[str, float]:
    """Seconds each kernel took to compile when the shipped cache was built (the newest
    manifest for this interpreter's tag if there is one)."""
    paths = sorted(_cache.SHIPPED.glob("*/manifest.json"))
    mine = _cache.SHIPPED / _cache.tag() / "manifest.json"
    for path in ([mine] if mine in paths else []) + paths:
        try:
            return json.loads(path.read_text())["seconds"]
        except (OSError, ValueError, KeyError):
            continue
    return {}


def ensure(kernels, jobs: int | None = None, progress=None) -> list[str]:
    """Compile into the cache every kernel of ``kernels`` that no cache layer holds.

    ``progress(done, total, name)`` is called with ``done == 0`` before the first compile and
    after each kernel.  Returns the names of the kernels compiled here."""
    missing = [k for k in kernels if k.dispatcher is None and not k.cached()]
    if not missing or _cache.local_dir() is None:
        return []  # (with no cache directory each kernel compiles in memory when it is loaded)
    with lock():
        missing = [k for k in missing if not k.cached()]  # another process may have done them
        if missing:
            _compile(missing, jobs, progress, dict(os.environ), sys.executable)
    return [k.name for k in missing]


def _jobs(jobs: int | None, n: int) -> int:
    return max(1, min(jobs or os.cpu_count() or 1, n))


def _compile(kernels, jobs, progress, env, python, expect_tag=None) -> dict[str, float]:
    """Compile ``kernels`` in ``jobs`` processes of ``python`` with ``env``; the seconds each
    took.  A kernel a worker could not compile is left to its ``load()`` here.  Logs the one
    line that says how long to wait, unless it is a portable build (``expect_tag``)."""
    est = _estimates()
    known = sorted(est.values())
    typical = known[len(known) // 2] if known else 0.0
    kernels = sorted(kernels, key=lambda k: -est.get(k.name, typical))
    jobs = _jobs(jobs, len(kernels))
    if expect_tag is None:
        eta = f": ~{max(1.0, sum(est.get(k.name, typical) for k in kernels) / jobs):.0f} s" \
            if known else ""
        log.warning("compiling sharedstore kernels for this machine, once%s (%d kernels in %d "
                    "processes; `python -m sharedstore compile` does it ahead)",
                    eta, len(kernels), jobs)
    if progress:
        progress(0, len(kernels), None)
    env = dict(env, PYTHONPATH=os.pathsep.join(
        p for p in (str(_cache.PACKAGE.parent), env.get("PYTHONPATH")) if p))
    return _Workers(python, env, jobs, expect_tag).run([k.name for k in kernels], progress)


class _Workers:
    """``jobs`` worker processes, each given one kernel name at a time."""

    def __init__(self, python, env, jobs, expect_tag=None):
        code = "import sharedstore._compile as c; c.worker()"
        self.procs = [subprocess.Popen([python, "-c", code], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, env=env, text=True, bufsize=1)
                      for _ in range(jobs)]
        self.expect_tag = expect_tag

    def run(self, names, progress) -> dict[str, float]:
        todo = list(names)
        seconds: dict[str, float] = {}
        sel = selectors.DefaultSelector()
        try:
            for p in self.procs:
                assert p.stdout is not None  # (Popen(stdout=PIPE))
                sel.register(p.stdout, selectors.EVENT_READ, p)
            while len(sel.get_map()):
                for key, _ in sel.select():
                    p = key.data
                    line = p.stdout.readline()
                    if not line:  # exited (or died: its kernel is left to load())
                        sel.unregister(p.stdout)
                        continue
                    word, _, rest = line.rstrip("\n").partition(" ")
                    if word == "ready" and self.expect_tag and rest != self.expect_tag:
                        raise RuntimeError(f"a worker compiles for {rest}, not {self.expect_tag}")
                    if word == "done":
                        name, _, secs = rest.rpartition(" ")
                        seconds[name] = float(secs)
                        if progress:
                            progress(len(seconds), len(names), name)
                    elif word == "failed":
                        log.warning("a compile worker failed on %s", rest)
                    if todo:
                        p.stdin.write(todo.pop(0) + "\n")
                    else:
                        p.stdin.close()
        finally:
            sel.close()
            for p in self.procs:
                if p.stdin and not p.stdin.closed:
                    p.stdin.close()
                p.wait()
                if p.stdout:
                    p.stdout.close()
        return seconds


def worker() -> None:
    """A compile worker's loop: says ``ready <tag>``, then compiles each kernel named on stdin
    into the cache and says ``done <name> <seconds>`` (``failed <name> <error>``)."""
    global _in_worker
    _in_worker = True
    from . import _jit

    print("ready", _cache.tag(), flush=True)
    for line in sys.stdin:
        name = line.strip()
        t0 = time.perf_counter()
        try:
            importlib.import_module(name.partition(":")[0])
            [k] = [k for k in _jit._KERNELS if k.name == name]
            k.load()
        except Exception as e:  # (reported to the parent, which compiles the kernel itself)
            print("failed", name, repr(e).replace("\n", " "), flush=True)
        else:
            print("done", name, f"{time.perf_counter() - t0:.3f}", flush=True)


# ---------------------------------------------------------------------------- portable
def find_python(version: str) -> str | None:
    """An interpreter of CPython ``version`` ("3.12") that runs: on PATH, or under pyenv."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    pyenv = glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", "python"))
    # (newest patch release first; a pyenv shim on PATH fails for a version not selected)
    pyenv.sort(key=lambda p: [int(x) if x.isdigit() else -1
                              for x in p.split(os.sep)[-3].split(".")], reverse=True)
    for python in [shutil.which(f"python{version}"), *pyenv]:
        if python:
            try:
                if _run(python, "import sys; print('%d.%d' % sys.version_info[:2])") == version:
                    return python
            except (OSError, subprocess.CalledProcessError):
                continue
    return None


def _run(python: str, code: str, env=None) -> str:
    return subprocess.run([python, "-c", code], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def build_env(python: str, numba_version: str = SHIPPED_NUMBA) -> str:
    """An interpreter like ``python`` that has ``numba_version``: ``python`` itself if it has
    it, else a virtualenv made for it under the local cache directory (numpy, numba and, on
    3.10, tomli installed by pip)."""
    try:
        if _run(python, "import numba, numpy; print(numba.__version__)") == numba_version:
            return python
    except subprocess.CalledProcessError:
        pass
    version = _run(python, "import sys; print('%d.%d' % sys.version_info[:2])")
    base = _cache.local_dir() or Path(os.path.expanduser("~/.cache/sharedstore"))
    venv = base / "build-envs" / f"python{version}-numba{numba_version}"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pkgs = [f"numba=={numba_version}", "numpy"] + (["tomli"] if version == "3.10" else [])
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", *pkgs], check=True)
    return str(py)


def build_portable(python: str, kernels, jobs: int | None = None, progress=None,
                   root: Path | None = None) -> Path:
    """Compile ``kernels`` into the shipped layer for interpreter ``python`` (which must have
    the numba version to ship: see :func:`build_env`): a fresh ``<root>/<tag>/`` with a
    ``manifest.json`` (versions, module stamps, compile seconds).  Returns that directory."""
    root = root or _cache.SHIPPED
    env = dict(os.environ, PYTHONPATH=str(_cache.PACKAGE.parent), NUMBA_CPU_NAME="generic",
               NUMBA_CPU_FEATURES="")
    env.pop("NUMBA_OPT", None)  # the shipped cache is numba's default optimisation level
    facts = json.loads(_run(python, (
        "import json, sys, numba, platform; import sharedstore._cache as c; "
        "print(json.dumps({'tag': c.tag(), 'numba': numba.__version__, "
        "'python': '%d.%d.%d' % sys.version_info[:3], 'machine': platform.machine()}))"), env))
    out = root / facts["tag"]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env[_cache.BUILD_ENV] = str(out)
    seconds = _compile(kernels, jobs, progress, env, python, expect_tag=facts["tag"])
    missing = sorted({k.name for k in kernels} - set(seconds))
    if missing:
        raise RuntimeError(f"the portable build of {facts['tag']} did not compile {missing}")
    modules = sorted({k.py_func.__module__ for k in kernels})
    manifest = dict(facts, cpu="generic", opt=3,
                    stamps={m: _cache.module_stamp(m, facts["numba"], 3) for m in modules},
                    seconds={n: round(s, 2) for n, s in sorted(seconds.items())})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out
