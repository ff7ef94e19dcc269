"""How long a new process takes to start using a store: warm, from the shipped kernel cache,
and compiling the kernels itself.

* ``WarmStart``: import, attach to an existing map, first get (kernels cached), against the
  peers' own first get in a new process.
* ``ColdStart``: import, create a store (which loads every kernel), first set and get, in a
  new process whose local kernel cache is empty: ``shipped`` loads the kernels from the cache
  shipped in the package (what a fresh install does when its Python and numba versions are
  the shipped ones), ``compiled`` ignores it (``SHAREDSTORE_SHIPPED_CACHE=0``) and compiles
  every kernel in parallel workers, as on any other version.
* ``SpawnedWorker``: a store's creator runs with no writable cache directory but the temp dir
  (a read-only install and a read-only home); the time from starting a ``spawn`` worker to its
  first get's result, with the kernels from the shipped cache or compiled by the creator into
  its private temp directory (which the worker must find).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

from sharedstore.bench import PACK as _PACK
from sharedstore.bench import open_map as _open_map

from .common import Bench, unique_name

_FIRST_GET = {
    "sharedstore": """
        import time
        t0 = time.perf_counter()
        import sharedstore as ss
        s = ss.attach({name!r})
        v = s["k"]
        dt = time.perf_counter() - t0
        assert v == 1.5, v
        s.close()
        print(dt)
    """,
    "UltraDict": """
        import time
        t0 = time.perf_counter()
        from UltraDict import UltraDict
        u = UltraDict(name={name!r}, create=False)
        v = u["k"]
        dt = time.perf_counter() - t0
        assert v == 1.5, v
        u.close()
        print(dt)
    """,
    "lmdb": """
        import time
        t0 = time.perf_counter()
        import lmdb, struct
        env = lmdb.open({name!r}, readonly=True)
        with env.begin() as txn:
            v = struct.unpack("<d", txn.get(b"k"))[0]
        dt = time.perf_counter() - t0
        assert v == 1.5, v
        env.close()
        print(dt)
    """,
}


class WarmStart(Bench):
    """A new Python process: import, attach to an existing map, first get of one key.

    Measured in a subprocess (``python -c``), best of 3; numba's cache is warm (the parent
    has loaded the kernels).  ``track_first_get_seconds`` times from before the import to
    after the get inside the child; ``track_process_seconds`` is the child's whole wall time,
    interpreter start and exit included.
    """

    params = [["sharedstore", "UltraDict", "lmdb"]]
    param_names = ["impl"]
    timeout = 120

    def setup(self, impl):
        with self.resources() as res:
            m = _open_map(res, impl)
            if impl == "lmdb":
                with m.begin(write=True) as txn:
                    txn.put(b"k", _PACK(1.5))
                name = m.path()
                m.sync(True)
            else:
                m["k"] = 1.5
                name = m.name
            self.code = textwrap.dedent(_FIRST_GET[impl]).format(name=name)

    def _run(self):
        import time

        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", self.code], check=True, capture_output=True,
                             text=True, env=os.environ.copy())
        return float(out.stdout), time.perf_counter() - t0

    def track_first_get_seconds(self, impl):
        return min(self._run()[0] for _ in range(3))

    track_first_get_seconds.unit = "seconds"

    def track_process_seconds(self, impl):
        return min(self._run()[1] for _ in range(3))

    track_process_seconds.unit = "seconds"



_COLD_CREATE = """
    import time
    t0 = time.perf_counter()
    import sharedstore as ss
    with ss.create({name!r}) as s:
        s["k"] = 1.5
        v = s["k"]
        dt = time.perf_counter() - t0
    assert v == 1.5, v
    print(dt)
"""

#: the environment of each kernel-cache case: the shipped cache, or none (compile everything)
_CACHES = {"shipped": {}, "compiled": {"SHAREDSTORE_SHIPPED_CACHE": "0"}}


class _NewProcess(Bench):
    """A case per kernel cache (``_CACHES``); ``setup`` gives a new temporary directory
    (``self.dir``) and a store name (``self.name``), both removed at teardown."""

    params = [list(_CACHES)]
    param_names = ["cache"]
    number = 1
    timeout = 600

    def setup(self, cache):
        with self.resources() as res:
            self.dir = tempfile.mkdtemp(prefix=f"asv-{type(self).__name__}-")
            res.defer(shutil.rmtree, self.dir, True)
            self.name = unique_name(type(self).__name__.lower())
            res.defer(_unlink_quietly, self.name)  # the child unlinks it; this if it died


class ColdStart(_NewProcess):
    """A new process with an empty local kernel cache (``SHAREDSTORE_CACHE_DIR`` pointing at a
    new temporary directory): import, create a store (every kernel loaded, or compiled), first
    set and get.  What a fresh install pays once, with and without a matching shipped cache."""

    repeat = 1

    def track_create_seconds(self, cache):
        code = textwrap.dedent(_COLD_CREATE).format(name=self.name)
        env = dict(os.environ, SHAREDSTORE_CACHE_DIR=self.dir, **_CACHES[cache])
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                             text=True, env=env)
        return float(out.stdout)

    track_create_seconds.unit = "seconds"


_SPAWN = """
import multiprocessing as mp, os, sys, time
import sharedstore as ss

def first_get(name, q):
    with ss.attach(name) as s:
        q.put(s["k"])

if __name__ == "__main__":
    name = sys.argv[1]
    with ss.create(name) as s:  # (loads, or compiles, every kernel before the worker starts)
        s["k"] = 1.5
        ctx = mp.get_context("spawn")
        q = ctx.SimpleQueue()
        t0 = time.perf_counter()
        p = ctx.Process(target=first_get, args=(name, q))
        p.start()
        v = q.get()
        dt = time.perf_counter() - t0
        p.join()
    assert v == 1.5 and p.exitcode == 0, (v, p.exitcode)
    print(dt, os.environ["SHAREDSTORE_CACHE_DIR"])
"""


class SpawnedWorker(_NewProcess):
    """A creator with no writable cache place but the temp dir (its home and the cache
    variables point below a plain file) starts one ``spawn`` worker: seconds from ``start()``
    to the worker's first get's value (interpreter start, import, attach, get).  ``compiled``:
    the creator compiled every kernel into its private temp directory, where the worker must
    find them (else it would compile the kernels it uses, about 45 s)."""

    repeat = 3

    def setup(self, cache):
        super().setup(cache)
        with self.guard():
            blocker = os.path.join(self.dir, "file")
            with open(blocker, "w") as f:
                f.write("not a directory")
            os.mkdir(os.path.join(self.dir, "tmp"))
            self.script = os.path.join(self.dir, "spawn_first_get.py")
            with open(self.script, "w") as f:
                f.write(_SPAWN)
            self.env = dict(os.environ, HOME=blocker, TMPDIR=os.path.join(self.dir, "tmp"),
                            SHAREDSTORE_CACHE_DIR="", NUMBA_CACHE_DIR="", XDG_CACHE_HOME="",
                            **_CACHES[cache])
            self._run()  # the first run compiles what it must into the temp dir

    def _run(self):
        out = subprocess.run([sys.executable, self.script, self.name], check=True,
                             capture_output=True, text=True, env=self.env)
        seconds, cache_dir = out.stdout.split()
        assert cache_dir.startswith(os.path.join(self.dir, "tmp")), cache_dir
        return float(seconds)

    def track_first_get_seconds(self, cache):
        return self._run()

    track_first_get_seconds.unit = "seconds"


def _unlink_quietly(name):
    import sharedstore as ss

    try:
        ss.unlink(name)
    except ss.StoreNotFoundError:
        pass
