import contextlib
import gc
import os
import uuid

import pytest

import sharedstore as ss
from sharedstore import _fastpath

SHM = "/dev/shm"


def _shm_files():
    """The suite's own files in /dev/shm: stores whose names carry this process's pid (every
    test names its stores so: ``unique_name``), not another program's files, nor the stores of
    another test run on the same machine."""
    mine = f"-{os.getpid()}"
    try:
        return {f for f in os.listdir(SHM) if f.startswith("sharedstore.") and mine in f}
    except FileNotFoundError:
        return set()


@pytest.fixture(scope="session", autouse=True)
def shm_left_clean():
    """The suite leaves /dev/shm as it found it (its own files: see ``_shm_files``)."""
    before = _shm_files()
    yield
    left = _shm_files() - before
    assert not left, f"tests left files in /dev/shm: {sorted(left)}"


@pytest.fixture(scope="session", autouse=True)
def imports_out_of_the_collectors_way():
    """Move the objects alive once the test modules are imported (numba's, pandas', Dask's...)
    out of the cyclic garbage collector's walks (``gc.freeze``): the many tests that call
    ``gc.collect()`` to release their own views then walk their own objects alone (60 ms a
    collection down to a few in a process with all of them loaded)."""
    gc.freeze()
    yield
    gc.unfreeze()


def unique_name(prefix="test"):
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def name():
    """A fresh store name; whatever store gets that name is unlinked at teardown."""
    n = unique_name()
    yield n
    try:
        ss.unlink(n)
    except FileNotFoundError:
        pass


@pytest.fixture
def store(name):
    """A fresh store, closed and unlinked at teardown even if the test fails."""
    s = ss.create(name)
    try:
        yield s
    finally:
        s.close()


CONTEXTS = ["fork", "spawn", "forkserver"]


@pytest.fixture(params=["c", "python"])
def each_backend(request, monkeypatch):
    """Run a test with the fast path's c backend and with the Python methods alone: the same
    assertions hold both ways (``pytestmark = pytest.mark.usefixtures("each_backend")``).
    Processes the test starts follow it (SHAREDSTORE_FASTPATH)."""
    with backend(request.param == "c", monkeypatch):
        yield request.param


@contextlib.contextmanager
def backend(enabled: bool, monkeypatch):
    """The c backend (``enabled``) or the Python methods in place, in this process and the
    processes it starts, then what ran before back."""
    before = ss.fastpath()
    monkeypatch.setenv("SHAREDSTORE_FASTPATH", "auto" if enabled else "0")
    _fastpath.use(enabled, f"the test's {'c' if enabled else 'python'} backend")
    try:
        yield
    finally:
        _fastpath.use(before.backend == "c", before.reason)


def pytest_addoption(parser):
    parser.addoption(
        "--storm-seconds", type=float, default=6.0,
        help="how long the crash storm (tests/test_storm.py) runs; CI uses the default",
    )
    parser.addoption(
        "--fuzz-examples", type=int, default=150,
        help="examples for the store-file fuzz test (tests/test_fuzz.py); CI uses the default",
    )
    parser.addoption(
        "--dtype-examples", type=int, default=60,
        help="examples for each dtype round-trip property (tests/test_dtype_roundtrip.py); "
             "CI uses the default",
    )
