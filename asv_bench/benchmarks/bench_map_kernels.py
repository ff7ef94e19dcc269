"""Map lookups in bulk and inside ``@njit`` code, a loop of gets of one key, and hostile keys.

* ``KernelLookups``: 1k, 100k or 1M str keys looked up inside an ``@njit`` function:
  sharedstore's ``sharedstore.kernels.map_get_float`` one key at a time and
  ``map_get_float_many`` for all keys, against ``numba.typed.Dict.get`` in the same loop (the
  target: >= 4x faster per key), and ``MapRef.get_many`` from Python (one kernel call).
  A fifth case only reads the keys (length, first and last character) in the same loop: the
  cost of reading keys from a typed List of str in random memory order before any lookup (a
  reference, not a strict floor: it does not fetch keys ahead, as ``_many`` does).
* ``KernelIntLookups``: the same for int64 keys (an int64 array): ``map_get_float`` and
  ``map_get_float_many`` against ``numba.typed.Dict[int64, float64]``.
* ``KernelLookupSpeedup``: the ratio the target states, typed.Dict's time over sharedstore's
  for the same lookups (int64 and str keys, one by one and ``_many``), measured in turn.
* ``UserKernelFirstCompile``: the first call of a user's ``@njit`` function that calls
  ``map_get_float``, in a new process with an empty numba cache, against the same function
  over a ``numba.typed.Dict``: the seconds from the call to its return (the compile).
* ``SingleKeyGets``: 10 M gets of one key in a Python loop: the cost of each call on a hot key.
* ``AdversarialKeys``: 100k keys whose hashes collide under one fixed seed, inserted into a
  store (with its own random seed), next to 100k random keys of the same length.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import numba
import numpy as np

from sharedstore import _layout as L
from sharedstore._kernels import hashmap as KM
from sharedstore._testing import colliding_keys  # the generator the test checks
from sharedstore.kernels import map_get_float, map_get_float_many

from .common import (
    Bench,
    interleaved,
    median_ratio,
    random_floats,
    random_keys,
    shuffled,
    unique_name,
)


# No cache=True for the functions that inline sharedstore's kernels: numba keys its cache on
# this file alone, so after a change to sharedstore.kernels a cached copy would time old code.
@numba.njit(nogil=True)
def _sum_shared(mem, map_id, keys):
    s = 0.0
    for k in keys:
        s += map_get_float(mem, map_id, k, 0.0)
    return s


@numba.njit(nogil=True)
def _sum_shared_many(mem, map_id, keys, out):
    map_get_float_many(mem, map_id, keys, 0.0, out)
    return out.sum()


@numba.njit(nogil=True, cache=True)
def _touch_keys(keys, _expected):
    s = 0
    for k in keys:
        s += len(k) + ord(k[0]) + ord(k[len(k) - 1])
    return _expected if s > 0 else -1.0  # (the loop's result is used: it is not optimised out)


@numba.njit(nogil=True, cache=True)
def _sum_typed(d, keys):
    s = 0.0
    for k in keys:
        s += d.get(k, 0.0)
    return s


class KernelLookups(Bench):
    params = [["sharedstore-njit", "sharedstore-njit-many", "typed.Dict-njit",
               "sharedstore-get_many", "keys alone (no lookup)"],
              [1000, 100_000, 1_000_000]]
    param_names = ["impl", "n"]
    timeout = 300

    def setup(self, impl, n):
        keys = random_keys(n)
        values = random_floats(n)
        order = shuffled(keys)
        self.expected = sum(values)
        with self.resources() as res:
            if impl == "typed.Dict-njit":
                d = numba.typed.Dict.empty(numba.types.unicode_type, numba.types.float64)
                for k, v in zip(keys, values):
                    d[k] = v
                self.args = (d, numba.typed.List(order))
                self.fn = _sum_typed
            elif impl == "keys alone (no lookup)":
                self.args = (numba.typed.List(order), self.expected)
                self.fn = _touch_keys
            else:
                store = res.store("kern")
                m = store.map()
                m.set_many(keys, values)
                if impl == "sharedstore-njit":
                    self.args = (store.mem, m.id, numba.typed.List(order))
                    self.fn = _sum_shared
                elif impl == "sharedstore-njit-many":
                    self.args = (store.mem, m.id, numba.typed.List(order), np.empty(n))
                    self.fn = _sum_shared_many
                else:
                    self.args = (list(order),)
                    self.fn = lambda keys, m=m: sum(m.get_many(keys))
            self.fn(*self.args)  # compile / warm

    def time_lookups(self, impl, n):
        assert abs(self.fn(*self.args) - self.expected) < 1e-6 * n


# ---------------------------------------------------------------------- int64 keys
@numba.njit(nogil=True, cache=True)
def _fill_typed(d, keys, values):
    for i in range(len(keys)):
        d[keys[i]] = values[i]


def _int_keys(n: int, seed: int = 5) -> np.ndarray:
    """``n`` distinct int64 keys spread over the whole range, in random order."""
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(-(1 << 62), 1 << 62, size=n + n // 8 + 16))[:n]
    rng.shuffle(keys)
    return keys


def _lookup_case(store, key: str, n: int):
    """``(args of _sum_shared, args of _sum_typed, expected sum)`` over the same ``n`` keys
    (int64: an int64 array; str: a typed List), the keys in a random order."""
    values = np.asarray(random_floats(n))
    if key == "int64":
        keys = _int_keys(n)
        order = keys[np.random.default_rng(6).permutation(n)]
        d = numba.typed.Dict.empty(numba.types.int64, numba.types.float64)
        _fill_typed(d, keys, values)
        m = store.map()
        for k, v in zip(keys.tolist(), values.tolist()):
            m[k] = v
    else:
        keys = random_keys(n)
        order = numba.typed.List(shuffled(keys))
        d = numba.typed.Dict.empty(numba.types.unicode_type, numba.types.float64)
        _fill_typed(d, numba.typed.List(keys), values)
        m = store.map()
        m.set_many(keys, values.tolist())
    return (store.mem, m.id, order), (d, order), float(values.sum())


class KernelIntLookups(Bench):
    """``n`` int64 keys (an int64 array, random order) looked up inside an ``@njit`` loop:
    ``map_get_float`` one key at a time, ``map_get_float_many`` for all, against
    ``numba.typed.Dict[int64, float64].get`` in the same loop (target: >= 4x faster)."""

    params = [["sharedstore-njit", "sharedstore-njit-many", "typed.Dict-njit"],
              [1000, 100_000, 1_000_000]]
    param_names = ["impl", "n"]
    timeout = 300

    def setup(self, impl, n):
        with self.resources() as res:
            shared, typed, self.expected = _lookup_case(res.store("kint"), "int64", n)
            if impl == "typed.Dict-njit":
                self.fn, self.args = _sum_typed, typed
            elif impl == "sharedstore-njit":
                self.fn, self.args = _sum_shared, shared
            else:
                self.fn, self.args = _sum_shared_many, (*shared, np.empty(n))
            self.fn(*self.args)  # compile / warm

    def time_lookups(self, impl, n):
        assert abs(self.fn(*self.args) - self.expected) < 1e-6 * n


SPEEDUP_ROUNDS = 7


class KernelLookupSpeedup(Bench):
    """How many times faster sharedstore's ``@njit`` lookups are than ``numba.typed.Dict``'s
    for the same ``n`` keys in the same loop (target: >= 4): typed.Dict's time over
    sharedstore's, the two timed in turn, median of ``SPEEDUP_ROUNDS`` (each a best of
    enough calls for ~0.1 s).  ``key``: int64 (an int64 array) or str (a typed List, as
    ``KernelLookups``); ``way``: ``map_get_float`` one by one or ``map_get_float_many``."""

    params = [["int64", "str"], ["one by one", "many"], [1000, 100_000, 1_000_000]]
    param_names = ["key", "way", "n"]
    timeout = 600

    def setup(self, key, way, n):
        with self.resources() as res:
            shared, typed, self.expected = _lookup_case(res.store("kspeed"), key, n)
            if way == "many":
                self.shared = (_sum_shared_many, (*shared, np.empty(n)))
            else:
                self.shared = (_sum_shared, shared)
            self.typed = (_sum_typed, typed)
            for fn, args in (self.shared, self.typed):
                assert abs(fn(*args) - self.expected) < 1e-6 * n  # compile / warm
        self.calls = max(1, 100_000 // n)

    def _time(self, which):
        fn, args = self.shared if which == "sharedstore" else self.typed
        best = float("inf")
        for _ in range(self.calls):
            t = time.perf_counter()
            fn(*args)
            best = min(best, time.perf_counter() - t)
        return best

    def track_speedup(self, key, way, n):
        t = interleaved(["typed.Dict", "sharedstore"], self._time, SPEEDUP_ROUNDS)
        return median_ratio(t["typed.Dict"], t["sharedstore"])

    track_speedup.unit = "x faster than typed.Dict"  # type: ignore[attr-defined]


_FIRST_COMPILE = """
import sys, time
import numba
import numpy as np

impl, key, name = sys.argv[1:4]
n = 1000
if key == "int64":
    keys = np.arange(n, dtype=np.int64) * 7919
else:
    keys = numba.typed.List([f"key{i:06d}" for i in range(n)])

if impl == "sharedstore":
    import sharedstore as ss
    from sharedstore.kernels import map_get_float

    store = ss.create(name)  # (loads sharedstore's own kernels)
    t_fill = time.perf_counter()
    m = store.map()
    for i in range(n):
        m[keys[i] if key == "str" else int(keys[i])] = float(i)

    @numba.njit(cache=True)
    def user(mem, map_id, keys):
        s = 0.0
        for k in keys:
            s += map_get_float(mem, map_id, k, 0.0)
        return s

    args = (store.mem, m.id, keys)
else:
    t_fill = time.perf_counter()
    kt = numba.types.int64 if key == "int64" else numba.types.unicode_type
    d = numba.typed.Dict.empty(kt, numba.types.float64)
    for i in range(n):
        d[keys[i]] = float(i)

    @numba.njit(cache=True)
    def user(d, keys):
        s = 0.0
        for k in keys:
            s += d.get(k, 0.0)
        return s

    args = (d, keys)

t0 = time.perf_counter()
s = user(*args)
dt = time.perf_counter() - t0
assert s == n * (n - 1) / 2, s
if impl == "sharedstore":
    del args, m
    store.close()
    ss.unlink(name)
print(dt, time.perf_counter() - t_fill)
"""


class UserKernelFirstCompile(Bench):
    """A user's ``@numba.njit(cache=True)`` function summing ``map_get_float`` over 1000 keys
    (int64 or str), called once in a new process whose ``NUMBA_CACHE_DIR`` is a new, empty
    directory (sharedstore's own kernels load from their cache as usual): the seconds from
    the call to its return, i.e. the compile of the user's function with the sharedstore
    code it inlines.  The peer: the same function over a ``numba.typed.Dict`` (filled from
    Python before the timer).

    ``track_first_call_seconds``: from the call to its return.
    ``track_fill_and_first_call_seconds``: from before the container is made (the store
    already open, its kernels loaded) to the call's return: with typed.Dict this includes the
    compiles its creation and its first sets from Python cause, which a user pays too."""

    params = [["sharedstore", "typed.Dict"], ["int64", "str"]]
    param_names = ["impl", "key"]
    number = 1
    repeat = 1
    timeout = 600

    def setup(self, impl, key):
        with self.resources() as res:
            self.dir = tempfile.mkdtemp(prefix="ssbench-compile-")
            res.defer(shutil.rmtree, self.dir, True)
            self.script = os.path.join(self.dir, "user_kernel.py")
            with open(self.script, "w") as f:
                f.write(textwrap.dedent(_FIRST_COMPILE))
            self.name = unique_name("compile")
            res.defer(_unlink_store_quietly, self.name)  # the child unlinks it; this if it died

    def _run(self, impl, key):
        cache = tempfile.mkdtemp(dir=self.dir, prefix="numba-cache-")
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, self.script, impl, key, self.name], check=True,
                             capture_output=True, text=True, env=env, timeout=self.timeout)
        call, fill_and_call = out.stdout.split()[-2:]
        return float(call), float(fill_and_call)

    def track_first_call_seconds(self, impl, key):
        return self._run(impl, key)[0]

    track_first_call_seconds.unit = "seconds"  # type: ignore[attr-defined]

    def track_fill_and_first_call_seconds(self, impl, key):
        return self._run(impl, key)[1]

    track_fill_and_first_call_seconds.unit = "seconds"  # type: ignore[attr-defined]


def _unlink_store_quietly(name):
    import sharedstore as ss

    try:
        ss.unlink(name)
    except ss.StoreNotFoundError:
        pass


class SingleKeyGets(Bench):
    """10 M gets of one key in a Python loop: the cost of each call on a hot key."""

    params = [["sharedstore", "dict", "UltraDict"]]
    param_names = ["impl"]
    number = 1
    repeat = 1
    timeout = 300
    N = 10_000_000

    def setup(self, impl):
        with self.resources() as res:
            if impl == "sharedstore":
                self.m = res.store("one")
            elif impl == "dict":
                self.m = {}
            else:
                from UltraDict import UltraDict

                from .common import unique_name

                name = unique_name("ultra1")
                res.shm_path(name)
                res.shm_path(name + "_memory")
                self.m = UltraDict(name=name)
                res.defer(self.m.close, True)
            self.m["key"] = {"value": "Hello"} if impl != "sharedstore" else "Hello"
            self.m["key"]

    def time_gets(self, impl):
        m = self.m
        for _ in range(self.N):
            m["key"]


class AdversarialKeys(Bench):
    """Insert 100k keys crafted to share their low 8 hash bits under seed 0, or 100k random
    keys of the same length (16 bytes): with the store's random seed both cost the same."""

    params = [["crafted", "random"]]
    param_names = ["keys"]
    number = 1
    timeout = 300

    def setup(self, keys):
        if keys == "crafted":
            self.keys = colliding_keys(seed=0, bits=8, n=100_000)
            assert len({KM.hash_bytes(k, L.V_BYTES, 0) & 0xFF for k in self.keys[:1000]}) == 1
        else:
            rng = np.random.default_rng(3)
            self.keys = [rng.bytes(12) + i.to_bytes(4, "little") for i in range(100_000)]
        with self.resources() as res:
            self.store = res.store("adv")

    def time_insert(self, keys):
        m = self.store.map()
        for i, k in enumerate(self.keys):
            m[k] = i
        m.drop()
