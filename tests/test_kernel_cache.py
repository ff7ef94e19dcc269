"""The kernel cache: stamps from imports, where it lives, the shipped layer, falling back.

Tests that compile kernels run them in subprocesses with their own cache directory, so they
never touch the user's cache; the ones that compile kernels are ``slow`` (1-20 s each).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import pytest

from sharedstore import _cache, _compile, _jit

ROOT = Path(__file__).resolve().parent.parent
PKG = "sharedstore"


def _run(code: str, env: dict, tmp_path: Path, timeout: float = 600):
    """Run ``code`` as a script in a new interpreter with ``env`` added; fail the test on a
    non-zero exit.  ``kernel(name)`` in it is the LazyKernel ``name`` (it stays reachable
    after its module's name is bound to the compiled function)."""
    script = tmp_path / "script.py"
    script.write_text(_PRELUDE + textwrap.dedent(code))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT, env=dict(os.environ, **env))
    assert out.returncode == 0, out.stderr
    return out


_PRELUDE = """\
def kernel(name):
    import importlib
    from sharedstore import _jit
    importlib.import_module(name.partition(":")[0])
    return next(k for k in _jit._KERNELS if k.name == name)


"""
HASH_BYTES = f"{PKG}._kernels.hashmap:hash_bytes"


# ---------------------------------------------------------------------------- flags, stamps
def test_flags_decided_in_one_place():
    assert _jit.FLAGS["nogil"] is True
    assert _jit.FLAGS["boundscheck"] is False


def test_dependencies_come_from_imports():
    deps = _cache.dependencies(f"{PKG}._fastpath.entries")
    for m in ("_fastpath.entries", "_kernels.hashmap", "_kernels.atomics", "_kernels.vector",
              "_fastpath.pyapi", "_kernels.memory", "_kernels.status", "_layout", "_jit"):
        assert f"{PKG}.{m}" in deps
    # the cache machinery, the Python layer and the package's __init__ are not compiled code
    for m in ("_cache", "_compile", "store", "refs"):
        assert f"{PKG}.{m}" not in deps
    assert PKG not in deps
    assert f"{PKG}._kernels.hashmap" not in _cache.dependencies(f"{PKG}._kernels.locks")


def test_every_module_with_kernels_is_found():
    _jit.import_kernel_modules()
    defining = {k.py_func.__module__ for k in _jit._KERNELS}
    assert defining <= set(_cache.kernel_modules())
    assert len(_jit._KERNELS) >= 60


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """The package's sources copied to a temporary directory that ``_cache`` reads instead."""
    copy = tmp_path / PKG
    shutil.copytree(_cache.PACKAGE, copy, ignore=shutil.ignore_patterns(
        "__pycache__", "_kernelcache"))
    monkeypatch.setattr(_cache, "PACKAGE", copy)
    _cache.imports.cache_clear()
    yield copy
    _cache.imports.cache_clear()


def test_editing_a_module_changes_the_stamps_of_what_depends_on_it(package_copy):
    modules = [m for m in _cache.kernel_modules() if "._kernels." in m or ".entries" in m]
    before = {m: _cache.module_stamp(m) for m in modules}
    vector = package_copy / "_kernels" / "vector.py"
    vector.write_text(vector.read_text() + "\n# an edit\n")
    after = {m: _cache.module_stamp(m) for m in modules}
    changed = {m.rpartition(".")[2] for m in modules if before[m] != after[m]}
    assert {"vector", "hashmap", "lists", "entries"} <= changed  # they import vector
    assert not {"heap", "locks", "objects", "pins"} & changed  # they do not


def test_a_new_import_is_followed(package_copy):
    """Imports are read from each file's content (remembered by its digest): a module that
    starts importing another depends on it from then on."""
    heap = f"{PKG}._kernels.heap"
    assert f"{PKG}._kernels.vector" not in _cache.dependencies(heap)
    path = package_copy / "_kernels" / "heap.py"
    path.write_text(path.read_text() + "\nfrom . import vector  # noqa\n")
    _cache.imports.cache_clear()
    assert f"{PKG}._kernels.vector" in _cache.dependencies(heap)


def test_stamps_cover_the_numba_version_and_optimisation_level():
    m = f"{PKG}._kernels.locks"
    assert _cache.module_stamp(m, "0.68.1", 3) != _cache.module_stamp(m, "0.69.0", 3)
    assert _cache.module_stamp(m, "0.68.1", 3) != _cache.module_stamp(m, "0.68.1", 1)


# ---------------------------------------------------------------------------- the shipped layer
def test_ci_installs_the_numba_the_shipped_cache_is_built_for():
    pins = (ROOT / ".ci" / "constraints.txt").read_text()
    assert re.search(rf"^numba=={re.escape(_compile.SHIPPED_NUMBA)}$", pins, re.M)
    assert "-c .ci/constraints.txt" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("python", _compile.SHIPPED_PYTHONS)
def test_the_shipped_cache_is_current(python):
    """Fails when a kernel source changed and the shipped cache was not rebuilt: run
    ``python -m sharedstore compile --portable`` (see README, "Kernel cache")."""
    _jit.import_kernel_modules()
    tag_dir = _cache.SHIPPED / _cache.tag(python, _compile.SHIPPED_NUMBA)
    assert tag_dir.is_dir(), f"no shipped kernel cache {tag_dir.name}"
    manifest = json.loads((tag_dir / "manifest.json").read_text())
    modules = sorted({k.py_func.__module__ for k in _jit._KERNELS})
    want = {m: _cache.module_stamp(m, _compile.SHIPPED_NUMBA, 3) for m in modules}
    stale = sorted(m for m in modules if manifest["stamps"].get(m) != want[m])
    assert not stale, f"kernel sources changed since the shipped cache was built: {stale}"
    assert sorted(manifest["seconds"]) == sorted(k.name for k in _jit._KERNELS)
    assert manifest["python"].startswith(python + ".") and manifest["cpu"] == "generic"
    abi = python.replace(".", "")
    for k in _jit._KERNELS:
        module = k.py_func.__module__
        index = (tag_dir / f"{module.removeprefix(PKG + '.')}-{want[module]}"
                 / f"{k.py_func.__qualname__}.py{abi}.nbi")
        assert index.is_file(), f"{k.name} is missing from {tag_dir.name}"


def test_this_interpreter_loads_every_kernel_from_the_shipped_cache(tmp_path):
    """With an empty local cache, nothing is compiled (CI's versions: see the test above)."""
    if _cache.tag() not in {_cache.tag(p, _compile.SHIPPED_NUMBA) for p in
                            _compile.SHIPPED_PYTHONS}:
        pytest.skip(f"no shipped cache is declared for {_cache.tag()}")
    out = _run("""
        from sharedstore import _jit
        _jit.load_all()
        print(sum(k.compiled for k in _jit._KERNELS), len(_jit._KERNELS))
    """, {"SHAREDSTORE_CACHE_DIR": str(tmp_path / "local")}, tmp_path)
    compiled, total = map(int, out.stdout.split())
    assert (compiled, total) == (0, len(_jit._KERNELS))
    assert "compiling" not in out.stderr
    assert not any((tmp_path / "local").rglob("*.nbi"))


def _shipped_copy(tmp_path) -> Path:
    mine = _cache.SHIPPED / _cache.tag()
    if not mine.is_dir():
        pytest.skip(f"no shipped cache for {_cache.tag()}")
    copy = tmp_path / "shipped"
    shutil.copytree(mine, copy / mine.name)
    return copy


@pytest.mark.slow
def test_another_numba_version_compiles_locally(tmp_path):
    """The shipped cache of another numba version is never used: kernels compile into the
    local cache, with the same results."""
    shipped = _shipped_copy(tmp_path)
    mine = shipped / _cache.tag()
    mine.rename(shipped / _cache.tag(numba_version="0.0.1"))
    local = tmp_path / "local"
    out = _run(f"""
        from sharedstore import _cache
        k = kernel({HASH_BYTES!r})
        print(_cache.shipped_dir(), k(b"abc", 3, 7), k.compiled)
    """, {"SHAREDSTORE_SHIPPED_CACHE": str(shipped), "SHAREDSTORE_CACHE_DIR": str(local)},
        tmp_path)
    where, value, compiled = out.stdout.split()
    assert where == "None" and compiled == "True"
    assert [p.name for p in local.rglob("*.nbi")] == [f"hash_bytes.py{_py()}.nbi"]
    from sharedstore._kernels import hashmap as KM

    assert int(value) == KM.hash_bytes(b"abc", 3, 7)  # the same as from the shipped cache


def _py() -> str:
    return f"{sys.version_info[0]}{sys.version_info[1]}{sys.abiflags}"


@pytest.mark.slow
def test_a_mismatched_index_is_a_miss_not_an_error(tmp_path):
    """An index written by another numba version (or damaged) makes its kernel compile."""
    shipped = _shipped_copy(tmp_path)
    [index] = (shipped / _cache.tag()).glob(f"_kernels.hashmap-*/hash_bytes.py{_py()}.nbi")
    index.write_bytes(index.read_bytes().replace(numba.__version__.encode(), b"0.0.0", 1))
    [other] = (shipped / _cache.tag()).glob(f"_kernels.hashmap-*/map_len.py{_py()}.nbi")
    other.write_bytes(b"garbage")
    out = _run(f"""
        ks = [kernel(f"{PKG}._kernels.hashmap:{{n}}") for n in ("hash_bytes", "map_len", "map_new")]
        for k in ks:
            k.load()
        print(*(k.compiled for k in ks))
    """, {"SHAREDSTORE_SHIPPED_CACHE": str(shipped),
          "SHAREDSTORE_CACHE_DIR": str(tmp_path / "local")}, tmp_path)
    assert out.stdout.split() == ["True", "True", "False"]


@pytest.mark.slow
def test_a_stale_module_recompiles_alone(tmp_path):
    """A module whose stamp does not match (its source, or one it imports, was edited) is
    compiled locally, in parallel workers, and nothing else is; the log says so once."""
    shipped = _shipped_copy(tmp_path)
    [entries] = (shipped / _cache.tag()).glob("_fastpath.entries-*")
    entries.rename(entries.with_name("_fastpath.entries-0000000000000000"))
    local = tmp_path / "local"
    out = _run(f"""
        import sharedstore as ss
        from sharedstore import _jit
        with ss.create("cache-test-{os.getpid()}", size=8 << 20) as s:
            s["k"] = 1.5
            assert s["k"] == 1.5
        print(sorted({{k.py_func.__module__ for k in _jit._KERNELS if k.compiled}}))
    """, {"SHAREDSTORE_SHIPPED_CACHE": str(shipped), "SHAREDSTORE_CACHE_DIR": str(local)},
        tmp_path)
    assert out.stdout.strip() == "[]"  # the parent compiled nothing itself: the workers did
    assert {p.name.rpartition("-")[0] for p in local.iterdir() if p.is_dir()} == {
        "_fastpath.entries"}
    assert out.stderr.count("compiling sharedstore kernels for this machine, once") == 1


def test_a_portable_layer_takes_only_generic_code(tmp_path):
    if numba.config.CPU_NAME == "generic":
        pytest.skip("this process compiles generic code")

    def f(x):
        return x + 1

    d = numba.njit(f)
    d.compile("int64(int64)")
    [cres] = d.overloads.values()  # (compiled for this machine's CPU)
    layer = _cache._Layer(tmp_path, portable=True, writable=True)
    with pytest.raises(RuntimeError, match="NUMBA_CPU_NAME=generic"):
        _cache.KernelCache(f, [layer]).save_overload("int64(int64)", cres)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------- the local layer
@pytest.fixture
def fresh_local(monkeypatch):
    for var in ("SHAREDSTORE_CACHE_DIR", "NUMBA_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    _cache.local_dir.cache_clear()
    yield
    _cache.local_dir.cache_clear()


def test_env_cache_dir_is_used_and_exported(tmp_path, monkeypatch, fresh_local):
    monkeypatch.setenv("SHAREDSTORE_CACHE_DIR", str(tmp_path / "c"))
    assert _cache.local_dir() == tmp_path / "c"
    assert os.environ["SHAREDSTORE_CACHE_DIR"] == str(tmp_path / "c")


def test_no_writable_place_falls_back_to_a_private_temp_dir(tmp_path, monkeypatch, fresh_local):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SHAREDSTORE_CACHE_DIR", str(blocker / "x"))
    monkeypatch.setenv("HOME", str(blocker))
    monkeypatch.setattr(_cache.tempfile, "gettempdir", lambda: str(tmp_path))
    got = _cache.local_dir()
    assert got == tmp_path / f"sharedstore-{os.getuid()}"
    assert stat.S_IMODE(got.stat().st_mode) == 0o700
    assert os.environ["SHAREDSTORE_CACHE_DIR"] == str(got)  # spawned workers find it


def test_a_temp_dir_others_can_write_is_refused(tmp_path, monkeypatch, fresh_local, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SHAREDSTORE_CACHE_DIR", str(blocker / "x"))
    monkeypatch.setenv("HOME", str(blocker))
    monkeypatch.setattr(_cache.tempfile, "gettempdir", lambda: str(tmp_path))
    shared = tmp_path / f"sharedstore-{os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert _cache.local_dir() is None
    assert "not a directory private to this user" in caplog.text


@pytest.mark.slow
def test_a_read_only_home_shares_one_cache_with_spawned_workers(tmp_path):
    """No writable cache directory but the temp dir: the creator compiles there, and a worker
    started by spawn loads from it instead of compiling."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"SHAREDSTORE_CACHE_DIR": "", "NUMBA_CACHE_DIR": "", "XDG_CACHE_HOME": "",
           "HOME": str(blocker), "TMPDIR": str(tmp), "SHAREDSTORE_SHIPPED_CACHE": "0"}
    out = _run(f"""
        import multiprocessing as mp, os

        def worker(q):
            k = kernel({HASH_BYTES!r})
            k.load()
            q.put((os.environ.get("SHAREDSTORE_CACHE_DIR"), k.compiled))

        if __name__ == "__main__":
            k = kernel({HASH_BYTES!r})
            k.load()
            ctx = mp.get_context("spawn")
            q = ctx.SimpleQueue()
            p = ctx.Process(target=worker, args=(q,))
            p.start()
            p.join(120)
            assert p.exitcode == 0, p.exitcode
            print(os.environ["SHAREDSTORE_CACHE_DIR"], k.compiled, *q.get())
    """, env, tmp_path)
    parent_dir, parent_compiled, worker_dir, worker_compiled = out.stdout.split()
    assert parent_dir == worker_dir == str(tmp / f"sharedstore-{os.getuid()}")
    assert (parent_compiled, worker_compiled) == ("True", "False")


@pytest.mark.slow
def test_two_processes_never_compile_the_same_kernel(tmp_path):
    """The compile lock: two processes that both find kernels missing compile them once."""
    code = textwrap.dedent("""
        from sharedstore import _compile
        from sharedstore._kernels import heap as KH
        print(" ".join(_compile.ensure([KH.heap_init, KH.handle_kind], jobs=1)))
    """)
    env = dict(os.environ, SHAREDSTORE_SHIPPED_CACHE="0",
               SHAREDSTORE_CACHE_DIR=str(tmp_path / "local"))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    compiled = [name for out, _ in outs for name in out.split()]
    assert sorted(compiled) == [f"{PKG}._kernels.heap:handle_kind",
                                f"{PKG}._kernels.heap:heap_init"]


def test_compile_command_reports_what_it_did(tmp_path):
    out = _run("""
        from sharedstore.cli import main
        raise SystemExit(main(["compile"]))
    """, {"SHAREDSTORE_CACHE_DIR": str(tmp_path / "local")}, tmp_path)
    assert re.search(r"\d+ kernels ready in [\d.]+ s: \d+ compiled into ", out.stdout)
