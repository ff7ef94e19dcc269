"""Kernel compile flags and cache location: never fail at import, even read-only."""

import os
import subprocess
import sys
from pathlib import Path

from sharedstore import _jit


def test_flags_decided_in_one_place():
    assert _jit.FLAGS["nogil"] is True
    assert "cache" in _jit.FLAGS


def test_cache_dir_keyed_by_kernel_digest():
    if _jit.CACHE_DIR is not None:
        assert _jit.CACHE_DIR.name == _jit.DIGEST


def test_no_writable_cache_location_falls_back(monkeypatch):
    monkeypatch.setattr(_jit, "_writable", lambda path: False)
    assert _jit._cache_root() is None


def test_env_cache_dir_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("SHAREDSTORE_CACHE_DIR", str(tmp_path))
    assert _jit._cache_root() == tmp_path / _jit.DIGEST


def test_import_with_unusable_cache_locations(tmp_path):
    """A read-only install with no writable home still imports and works (uncached)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env = dict(os.environ, SHAREDSTORE_CACHE_DIR=str(blocker / "x"), NUMBA_CACHE_DIR=str(blocker / "y"),
               XDG_CACHE_HOME=str(blocker / "z"), HOME=str(blocker))
    code = (
        "import sharedstore as ss, sharedstore._jit as j\n"
        "print(j.CACHE_DIR)\n"
        f"with ss.create('jit-{os.getpid()}', size=8 << 20) as s:\n"
        "    s['k'] = s.string('ok'); print(s['k'].get())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    cache_dir, value = out.stdout.split()
    assert value == "ok"
    # with no writable home the in-tree __pycache__ is the last resort (or no cache at all)
    assert cache_dir == "None" or Path(cache_dir).parent.name == "__pycache__"
