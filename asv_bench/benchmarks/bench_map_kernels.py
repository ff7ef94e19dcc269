"""Map lookups in bulk and inside ``@njit`` code, a loop of gets of one key, and hostile keys.

* ``KernelLookups``: 1k, 100k or 1M str keys looked up inside an ``@njit`` function:
  sharedstore's ``sharedstore.kernels.map_get_float`` one key at a time and
  ``map_get_float_many`` for all keys, against ``numba.typed.Dict.get`` in the same loop (the
  target: >= 4x faster per key), and ``MapRef.get_many`` from Python (one kernel call).
  A fifth case only reads the keys (length, first and last character) in the same loop: the
  cost of reading keys from a typed List of str in random memory order before any lookup (a
  reference, not a strict floor: it does not fetch keys ahead, as ``_many`` does).
* ``SingleKeyGets``: 10 M gets of one key in a Python loop: the cost of each call on a hot key.
* ``AdversarialKeys``: 100k keys whose hashes collide under one fixed seed, inserted into a
  store (with its own random seed), next to 100k random keys of the same length.
"""

import numba
import numpy as np

from sharedstore import _layout as L
from sharedstore._kernels import hashmap as KM
from sharedstore._testing import colliding_keys  # the generator the test checks
from sharedstore.kernels import map_get_float, map_get_float_many

from .common import Bench, random_floats, random_keys, shuffled


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
