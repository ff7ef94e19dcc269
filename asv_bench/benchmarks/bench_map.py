"""The store's root map (``store[k] = v``, ``store[k]``) against dict-like peers.

``n`` (1k, 100k, 1M) distinct str keys of 8 to 16 characters with float values; sets go in one
random order, gets in another.  A timed call does all ``n`` keys: divide by ``n`` for one operation.

Peers, each used the way its documentation suggests:

* ``dict``: a plain dict in this process (the floor).
* ``UltraDict``: its defaults (``shared_lock=None``: a ``multiprocessing.RLock``, which only
  excludes processes that inherited it through fork; ``shared_lock=True`` would need the
  ``atomics`` package) except ``buffer_size``, set to 32 MiB so the sets never trigger a full
  dump (with the default 10 kB buffer every few hundred sets re-pickle the whole dict).
* ``lmdb``: an environment in a temporary directory, ``map_size`` 1 GiB, ``sync=False,
  metasync=False`` (no fsync per commit: sharedstore does not persist either); keys encoded to
  bytes and values packed with ``struct`` before the timed loop, and gets return the raw bytes,
  so the peer does less work than ``store[k]`` (which decodes a float).  Gets run in one read
  transaction, sets in one write transaction each.
* ``SharedMemoryDict`` (shared-memory-dict) and ``Manager().dict``: only ``n=1000`` (each
  SharedMemoryDict access pickles or unpickles the whole dict; a Manager access is a round
  trip to the manager process), in classes of their own.
"""

import multiprocessing

from sharedstore.bench import PACK as _PACK
from sharedstore.bench import open_map as _open_map

from .common import Bench, random_floats, random_keys, shuffled


def _encoded(keys, values):
    return [k.encode() for k in keys], [_PACK(v) for v in values]


#: map sizes: the curve of cost per key against size (1M: sets take seconds per peer)
SIZES = [1000, 100_000, 1_000_000]


class _MapBase(Bench):
    timeout = 180

    def _data(self, n):
        self.keys = random_keys(n)
        self.values = random_floats(n)
        self.order = shuffled(self.keys)
        if self.impl == "lmdb":
            self.bkeys, self.bvalues = _encoded(self.keys, self.values)
            self.border = [k.encode() for k in self.order]

    def _fill(self):
        m = self.m
        if self.impl == "lmdb":
            with m.begin(write=True) as txn:
                for k, v in zip(self.bkeys, self.bvalues):
                    txn.put(k, v)
        elif self.impl in ("dict", "Manager().dict"):
            m.update(dict(zip(self.keys, self.values)))
        else:
            for k, v in zip(self.keys, self.values):
                m[k] = v

    def _count(self):
        if self.impl == "lmdb":
            return self.m.stat()["entries"]
        return len(self.m)


class MapGet(_MapBase):
    """Get every key once, in random order, from a map just filled with ``n`` keys.

    For sharedstore every get reads the shared table (a process keeps no copy of what it
    read).  ``MapGetRepeated`` measures a second pass over the same keys.
    """

    params = [["sharedstore", "dict", "UltraDict", "lmdb"], SIZES]
    param_names = ["impl", "n"]
    number = 1  # every timed call is the first pass after setup, whatever the asv version

    def setup(self, impl, n):
        self.impl = impl
        self._data(n)
        with self.resources() as res:
            self.m = _open_map(res, impl)
            self._fill()
            assert self._count() == n
            self.last = dict(zip(self.keys, self.values))[self.order[-1]]
            if impl == "lmdb":
                self.last = _PACK(self.last)
            # warm: kernels, caches, UltraDict's update stream
            if impl == "lmdb":
                with self.m.begin() as txn:
                    assert txn.get(self.border[-1]) == self.last
            else:
                assert all(self.m[k] is not None for k in self.order[:100])
            if impl == "sharedstore":  # a write: the warm reads are no longer cached
                self.m["warm"] = 0.5
                del self.m["warm"]
                assert self._count() == n

    def time_get(self, impl, n):
        if impl == "lmdb":
            with self.m.begin() as txn:
                get = txn.get
                for k in self.border:
                    v = get(k)
        else:
            m = self.m
            for k in self.order:
                v = m[k]
        assert v == self.last


class MapGetRepeated(MapGet):
    """As MapGet, after one full pass of gets: steady-state reads with no writes in between
    (UltraDict serves them from its local dict; sharedstore reads the shared table again)."""

    def setup(self, impl, n):
        super().setup(impl, n)
        with self.guard():
            self.time_get(impl, n)


class MapSet(_MapBase):
    """Insert ``n`` new keys into an empty map (a fresh one for every timed call)."""

    params = [["sharedstore", "dict", "UltraDict", "lmdb"], SIZES]
    param_names = ["impl", "n"]
    number = 1  # every timed call starts from an empty map, whatever the asv version

    def setup(self, impl, n):
        self.impl = impl
        self._data(n)
        with self.resources() as res:
            self.m = _open_map(res, impl)
            # warm the code paths on a key the timed loop does not use, then remove it
            if impl == "lmdb":
                with self.m.begin(write=True) as txn:
                    txn.put(b"warm", _PACK(0.5))
                    txn.delete(b"warm")
            else:
                self.m["warm"] = 0.5
                del self.m["warm"]
            assert self._count() == 0

    def time_set(self, impl, n):
        if impl == "lmdb":
            begin = self.m.begin
            for k, v in zip(self.bkeys, self.bvalues):
                with begin(write=True) as txn:
                    txn.put(k, v)
        else:
            m = self.m
            for k, v in zip(self.keys, self.values):
                m[k] = v
        assert self._count() == n


class MapGetSlowPeers(MapGet):
    """As MapGet, for the peers too slow for 100k keys."""

    params = [["SharedMemoryDict", "Manager().dict"], [1000]]


class MapSetSlowPeers(MapSet):
    """As MapSet, for the peers too slow for 100k keys."""

    params = [["SharedMemoryDict", "Manager().dict"], [1000]]


# ---------------------------------------------------------------------- concurrent readers
READ_TOTAL = 100_000
READ_KEYS = 100_000
_FORK = multiprocessing.get_context("fork")
_reader: dict = {}


def _init_reader(m, barrier):
    """Pool initializer: the map (a store, or a dict) is inherited through fork."""
    _reader.update(m=m, barrier=barrier)


def _reader_ready(_):
    return len(_reader["m"])


def _read(args):
    """``count`` gets of distinct keys, in this worker's random order, once every worker has
    its task."""
    seed, count = args
    m = _reader["m"]
    order = shuffled(random_keys(READ_KEYS), seed)
    _reader["barrier"].wait(timeout=60)
    total = 0.0
    for i in range(count):
        total += m[order[i % READ_KEYS]]
    return total


class MapGetThroughput(Bench):
    """``READ_TOTAL`` root-map gets (a map of ``READ_KEYS`` keys) split over ``processes``
    readers that run at once: readers never lock, so 2 processes on 2 cores should approach
    2x the throughput of 1.  No process reads a key twice.  A ``fork`` Pool started in
    ``setup``; process start is not timed.  Every reader's sum of values is checked.

    The peer, a plain dict that each worker inherits (a private copy-on-write copy), shares
    nothing: its 2-vs-1 ratio is what this machine's cores give at best in the same run."""

    params = [["sharedstore", "dict"], [1, 2]]
    param_names = ["impl", "processes"]
    number = 1
    timeout = 180

    def setup(self, impl, processes):
        keys, values = random_keys(READ_KEYS), random_floats(READ_KEYS)
        value = dict(zip(keys, values))
        per = READ_TOTAL // processes
        self.tasks = [(10 + w, per) for w in range(processes)]
        self.sums = []
        for seed, count in self.tasks:
            order = shuffled(keys, seed)
            self.sums.append(sum(value[order[i % READ_KEYS]] for i in range(count)))
        with self.resources() as res:
            if impl == "sharedstore":
                m = res.store("readers")
                for k, v in zip(keys, values):
                    m[k] = v
                m[keys[0]]  # kernels loaded before the fork
            else:
                m = value
            barrier = _FORK.Barrier(processes)
            pool = _FORK.Pool(processes, initializer=_init_reader, initargs=(m, barrier))
            res.defer(pool.join)
            res.defer(pool.terminate)
            self.pool = pool
            assert pool.map(_reader_ready, range(processes), chunksize=1) == [READ_KEYS] * processes

    def time_get(self, impl, processes):
        sums = self.pool.map(_read, self.tasks, chunksize=1)
        assert sums == self.sums, (sums, self.sums)


class MapMemory(Bench):
    """Shared memory per entry of a map of ``n`` str keys of 12 bytes holding floats, beyond
    the key's own 12 bytes (the target: <= 48 bytes): the store's ``used`` bytes
    before and after the keys go in, divided by ``n``.  Entry blocks, table slots at the load
    the table has after growing to ``n``, and allocator rounding are all counted."""

    params = [[1000, 100_000, 1_000_000]]
    param_names = ["n"]
    timeout = 300

    def setup(self, n):
        keys = [f"k{i:011d}" for i in range(n)]  # 12 bytes each
        with self.resources() as res:
            self.store = res.store("mem")
            m = self.store.map()
            before = self.store.stats()["used"]
            m.set_many(keys, [0.5] * n)
            self.per_entry = (self.store.stats()["used"] - before) / n - 12

    def track_bytes_per_entry_beyond_key(self, n):
        return self.per_entry

    track_bytes_per_entry_beyond_key.unit = "bytes"
