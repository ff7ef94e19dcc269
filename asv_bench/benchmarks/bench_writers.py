"""Writers that scale (issue 28): several processes writing at once, counting words from two
processes, and batch calls against loops of single calls.

The throughput benchmarks (``WritersTwoMaps``, ``WritersOneMap``, ``WordCount``) start their
processes with ``fork`` before timing, release them together (a barrier), and time from the
first worker's start to the last one's end (:func:`common.run_parallel`).  Every configuration of
a class is measured in one ``setup_cache``, the configurations interleaved, ``ROUNDS`` rounds;
a ratio is the median of the per-round ratios, ops/s the median of the rounds.  So one asv run
of a class gives its whole table; the ``track_*`` only read it.

* ``WritersTwoMaps``: ``writers`` processes, each writing ``N_WRITES`` distinct str keys (int
  values) into one of 2 maps of one store (writer i into map i % 2); peers: the same into 2
  stores (a map in each), and into a private dict per process (what the machine's cores give
  with nothing shared).  Targets: 2 writers >= 1.6x one.
* ``WritersOneMap``: the same into one map, disjoint keys; peers: lmdb (one environment, a write
  transaction per key), UltraDict (its own lock, inherited through fork).  Targets: 2 writers
  >= 1.4x one; 8 writers >= 0.9x of 2 (``track_ratio_to_2_writers`` at ``writers=8``).
* ``WordCount``: 1 M words (a vocabulary of 50k str keys, every one present, Zipf distributed,
  fixed seed) counted from 2 processes into one shared map; the final counts are checked
  exactly.  The floor: a local ``collections.Counter`` in each process, sent to this process
  and merged (target: ``m.incr`` <= 1.5x the floor's time).
* ``BatchCalls``: ``set_many`` / ``update`` / ``incr_many`` against a loop of ``m[k] = v`` /
  ``m.incr`` over the same keys, in one process.

Maps grow from empty during the timed writes (every round makes new maps and stores): the
figures include the maps' growth, as a program's first writes do.
"""

import collections
import functools
import importlib.util
import os
import shutil
import statistics
import struct
import tempfile
import time

import numpy as np

from .common import (
    Bench,
    Resources,
    Skip,
    interleaved,
    median_ratio,
    random_keys,
    run_parallel,
    unique_name,
)

N_WRITES = 100_000  # distinct keys each writer sets
ROUNDS = 5
WRITERS = [1, 2, 4, 8]
ULTRADICT_BUFFER = 256 << 20  # no full dump in any round (8 writers x 100k ~ 40 MB of stream)
LMDB_MAP_SIZE = 1 << 30
_PACK_Q = struct.Struct("<q").pack


def _writer_keys(i: int, n: int) -> list:
    return [f"w{i}:{j:07d}" for j in range(n)]


# ---------------------------------------------------------------------- worker functions
def _map_writer(m, i, n):
    """Prepare: writer ``i``'s keys; run: set them (works for a MapRef, a UltraDict)."""
    keys = _writer_keys(i, n)

    def run():
        for j, k in enumerate(keys):
            m[k] = j
        return n
    return run


def _dict_writer(i, n):
    keys = _writer_keys(i, n)

    def run():
        d = {}
        for j, k in enumerate(keys):
            d[k] = j
        return len(d)
    return run


def _lmdb_writer(path, i, n):
    """Opens the environment in the worker (an LMDB environment must not cross a fork)."""
    import lmdb

    env = lmdb.open(path, map_size=LMDB_MAP_SIZE, sync=False, metasync=False)
    bkeys = [k.encode() for k in _writer_keys(i, n)]
    bvalues = [_PACK_Q(j) for j in range(n)]
    begin = env.begin

    def run():
        for k, v in zip(bkeys, bvalues):
            with begin(write=True) as txn:
                txn.put(k, v)
        env.close()
        return n
    return run


def _warm(m) -> None:
    """Load the write path before the fork (kernels, the fast path), leaving the map empty."""
    m["warm"] = 0
    del m["warm"]


def _new_lmdb(res: Resources) -> str:
    import lmdb

    path = tempfile.mkdtemp(prefix="ssbench-lmdb-")
    res.defer(shutil.rmtree, path, True)
    lmdb.open(path, map_size=LMDB_MAP_SIZE, sync=False, metasync=False).close()
    return path


def _lmdb_entries(path: str) -> int:
    import lmdb

    env = lmdb.open(path, map_size=LMDB_MAP_SIZE, readonly=True, lock=False)
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def _new_ultradict(res: Resources, buffer_size: int = ULTRADICT_BUFFER):
    from UltraDict import UltraDict

    name = unique_name("ultra")
    res.shm_path(name)
    res.shm_path(name + "_memory")
    u = UltraDict(name=name, buffer_size=buffer_size)
    res.defer(u.close, True)  # unlink=True
    return u


def _peer_missing(impl: str) -> str | None:
    module = {"lmdb": "lmdb", "UltraDict": "UltraDict"}.get(impl)
    if module and importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install 'sharedstore[bench]')"
    return None


def _summary(times: dict, ops: dict) -> dict:
    """Ops/s (median of the rounds) and the per-round ratios to 1 and 2 writers, by
    ``(impl, writers)``."""
    out: dict = {"ops": {}, "ratio": {}, "ratio2": {}}
    for (impl, w), ts in times.items():
        out["ops"][impl, w] = statistics.median(ops[impl, w] / t for t in ts)
        one = times.get((impl, 1))
        two = times.get((impl, 2))
        # throughput ratio: (ops_w / t_w) / (ops_1 / t_1), round by round
        if one is not None:
            out["ratio"][impl, w] = median_ratio([ops[impl, w] * t for t in one],
                                                 [ops[impl, 1] * t for t in ts])
        if two is not None:
            out["ratio2"][impl, w] = median_ratio([ops[impl, w] * t for t in two],
                                                  [ops[impl, 2] * t for t in ts])
    return out


class _Throughput(Bench):
    """``track_*`` read the table ``setup_cache`` measured; a configuration it could not
    measure (a peer not installed) is skipped."""

    param_names = ["impl", "writers"]
    number = 1
    timeout = 1200

    def setup(self, cache, impl, writers):
        reason = cache["skipped"].get(impl)
        if reason:
            raise Skip(reason)

    def track_throughput_ratio(self, cache, impl, writers):
        return cache["ratio"][impl, writers]

    track_throughput_ratio.unit = "x one writer's ops/s"  # type: ignore[attr-defined]

    def track_ops_per_second(self, cache, impl, writers):
        return cache["ops"][impl, writers]

    track_ops_per_second.unit = "writes/s"  # type: ignore[attr-defined]


class WritersTwoMaps(_Throughput):
    """``writers`` processes, each setting ``N_WRITES`` new str keys: into 2 maps of one store
    (writer i into map i % 2), into 2 stores (a map each), or into a private dict each.

    ``track_throughput_ratio``: all writers' writes per second over one writer's in the same
    layout (target: >= 1.6 at 2 writers; a private dict per process shows what 2 cores give
    with nothing shared).  ``track_ops_per_second``: writes per second of all writers."""

    params = [["one store, 2 maps", "2 stores", "private dicts"], WRITERS]

    def setup_cache(self):
        configs = [(impl, w) for impl in self.params[0] for w in WRITERS]
        ops = {(impl, w): w * N_WRITES for impl, w in configs}
        return dict(_summary(interleaved(configs, _measure_two_maps, ROUNDS), ops), skipped={})

    setup_cache.timeout = 1200  # type: ignore[attr-defined]


def _measure_two_maps(config) -> float:
    impl, writers = config
    args = range(writers)
    with Resources() as res:
        if impl == "private dicts":
            seconds, outs = run_parallel(_dict_writer, [(i, N_WRITES) for i in args])
            assert outs == [N_WRITES] * writers
            return seconds
        if impl == "one store, 2 maps":
            store = res.store("w2m")
            maps = [store.map(), store.map()]
        else:
            maps = [res.store("w2s").map(), res.store("w2s").map()]
        for m in maps:
            _warm(m)
        seconds, _ = run_parallel(_map_writer, [(maps[i % 2], i, N_WRITES) for i in args])
        assert sum(len(m) for m in maps) == writers * N_WRITES
        return seconds


class WritersOneMap(_Throughput):
    """``writers`` processes setting ``N_WRITES`` new str keys each (disjoint) into one map:
    sharedstore's, lmdb's (one environment; each worker opens it and writes one key per write
    transaction, ``sync=False``), UltraDict's (made before the fork: its default lock, a
    ``multiprocessing.RLock``, is shared through fork; every write takes it).

    ``track_throughput_ratio``: writes per second over one writer's (target at 2: >= 1.4);
    ``track_ratio_to_2_writers``: over 2 writers' (target at 8: >= 0.9, on 2 cores);
    ``track_ops_per_second``."""

    params = [["sharedstore", "lmdb", "UltraDict"], WRITERS]

    def setup_cache(self):
        impls = [i for i in self.params[0] if not _peer_missing(i)]
        configs = [(impl, w) for impl in impls for w in WRITERS]
        ops = {(impl, w): w * N_WRITES for impl, w in configs}
        out = _summary(interleaved(configs, _measure_one_map, ROUNDS), ops)
        out["skipped"] = {i: _peer_missing(i) for i in self.params[0] if _peer_missing(i)}
        return out

    setup_cache.timeout = 1200  # type: ignore[attr-defined]

    def track_ratio_to_2_writers(self, cache, impl, writers):
        return cache["ratio2"][impl, writers]

    track_ratio_to_2_writers.unit = "x 2 writers' ops/s"  # type: ignore[attr-defined]


def _measure_one_map(config) -> float:
    impl, writers = config
    with Resources() as res:
        if impl == "lmdb":
            path = _new_lmdb(res)
            seconds, _ = run_parallel(_lmdb_writer, [(path, i, N_WRITES) for i in range(writers)])
            assert _lmdb_entries(path) == writers * N_WRITES
            return seconds
        m = res.store("w1m").map() if impl == "sharedstore" else _new_ultradict(res)
        _warm(m)
        seconds, _ = run_parallel(_map_writer, [(m, i, N_WRITES) for i in range(writers)])
        assert len(m) == writers * N_WRITES
        return seconds


# ---------------------------------------------------------------------- word count
WORDS = 1_000_000
VOCABULARY = 50_000
ZIPF_S = 1.0  # word of rank r drawn with probability ~ 1 / r**ZIPF_S
WORD_SEED = 28
CHUNK = 10_000  # words per Counter / incr_many call / UltraDict lock / redis pipeline
COUNT_PROCESSES = 2
COUNT_ROUNDS = 3
REDIS_URL = os.environ.get("SSBENCH_REDIS", "redis://localhost:6379/0")

FLOOR = "local Counter + merge"
COUNTERS = [FLOOR, "sharedstore incr", "sharedstore incr_many(Counter(chunk))",
            "sharedstore incr_many(Counter(share))", "UltraDict + lock, per word",
            "UltraDict + lock, Counter(chunk)", "redis HINCRBY pipelined"]


@functools.cache
def _text() -> np.ndarray:
    """Word indices: every word of the vocabulary once, the rest drawn by Zipf's law, shuffled."""
    rng = np.random.default_rng(WORD_SEED)
    p = 1.0 / np.arange(1, VOCABULARY + 1) ** ZIPF_S
    drawn = rng.choice(VOCABULARY, size=WORDS - VOCABULARY, p=p / p.sum())
    idx = np.concatenate([np.arange(VOCABULARY), drawn]).astype(np.int32)
    rng.shuffle(idx)
    return idx


def _vocabulary() -> tuple:
    return random_keys(VOCABULARY, seed=WORD_SEED)


def _shares() -> list:
    bounds = np.linspace(0, WORDS, COUNT_PROCESSES + 1).astype(int)
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def _chunks(words):
    return [words[a:a + CHUNK] for a in range(0, len(words), CHUNK)]


def _counter_worker(impl, target, lo, hi):
    """Prepare: this worker's words as a list of the vocabulary's str objects (their pages
    copied on write now, not in the timed part); run: count them into ``target``."""
    vocab = _vocabulary()
    words = [vocab[i] for i in _text()[lo:hi].tolist()]
    counter = collections.Counter
    if impl == FLOOR:
        return lambda: counter(words)
    if impl == "sharedstore incr":
        def run():
            incr = target.incr
            for w in words:
                incr(w)
    elif impl == "sharedstore incr_many(Counter(chunk))":
        def run():
            for chunk in _chunks(words):
                target.incr_many(counter(chunk))
    elif impl == "sharedstore incr_many(Counter(share))":
        def run():
            target.incr_many(counter(words))
    elif impl == "UltraDict + lock, per word":
        def run():
            lock, get = target.lock, target.get
            for w in words:
                with lock:
                    target[w] = get(w, 0) + 1
    elif impl == "UltraDict + lock, Counter(chunk)":
        def run():
            lock, get = target.lock, target.get
            for chunk in _chunks(words):
                c = counter(chunk)
                with lock:
                    for w, n in c.items():
                        target[w] = get(w, 0) + n
    elif impl == "redis HINCRBY pipelined":
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.ping()

        def run():
            for chunk in _chunks(words):
                pipe = client.pipeline(transaction=False)
                for w in chunk:
                    pipe.hincrby(target, w, 1)
                pipe.execute()
            client.close()
    else:
        raise ValueError(impl)
    return run


def _merge(counters):
    total = counters[0]
    for c in counters[1:]:
        total.update(c)
    return total


def _redis_missing() -> str | None:
    if importlib.util.find_spec("redis") is None:
        return "the redis package is not installed"
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.ping()
        client.close()
    except Exception as exc:  # no server: skip, never fail
        return f"no redis server at {REDIS_URL}: {exc}"
    return None


def _counter_missing(impl: str) -> str | None:
    if impl.startswith("UltraDict"):
        return _peer_missing("UltraDict")
    if impl.startswith("redis"):
        return _redis_missing()
    return None


def _expected_counts() -> dict:
    vocab = _vocabulary()
    counts = np.bincount(_text(), minlength=VOCABULARY)
    return dict(zip(vocab, counts.tolist()))


def _measure_count(impl) -> float:
    expected = _expected_counts()
    shares = _shares()
    with Resources() as res:
        merge = None
        if impl == FLOOR:
            target, merge = None, _merge
        elif impl.startswith("sharedstore"):
            target = res.store("count").map()
            target.incr("warm")
            del target["warm"]
        elif impl.startswith("UltraDict"):
            target = _new_ultradict(res)
        else:
            import redis

            target = unique_name("count")
            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
            res.defer(client.close)
            res.defer(client.delete, target)
        seconds, merged = run_parallel(_counter_worker, [(impl, target, lo, hi)
                                                         for lo, hi in shares], merge=merge)
        if impl == FLOOR:
            got = dict(merged)
        elif impl.startswith("redis"):
            got = {k.decode(): int(v) for k, v in client.hgetall(target).items()}
        else:
            got = dict(target.items())
        assert got == expected, "the counts are not exact"
        return seconds


class WordCount(Bench):
    """``WORDS`` words (``VOCABULARY`` distinct str keys, Zipf distributed, fixed seed) counted
    by ``COUNT_PROCESSES`` processes, half each, into one shared map, the final counts
    checked exactly:

    * ``local Counter + merge`` (the floor): ``Counter(words)`` in each worker, sent to this
      process (pickled through a pipe) and merged; its time ends when the merge does.
    * ``sharedstore incr``: ``m.incr(w)`` per word.
    * ``sharedstore incr_many(Counter(chunk))``: ``m.incr_many(Counter(chunk))`` per
      ``CHUNK`` words; ``...(share)``: one call with the Counter of the worker's whole half.
    * ``UltraDict + lock``: ``with u.lock: u[w] = u.get(w, 0) + n`` per word, or per
      ``Counter(chunk)`` under one lock (its default lock, a ``multiprocessing.RLock``
      shared through fork; ``shared_lock=True`` needs the ``atomics`` package).
    * ``redis HINCRBY pipelined``: a pipeline of ``CHUNK`` HINCRBY per execute, against a
      server at ``$SSBENCH_REDIS`` (default ``redis://localhost:6379/0``); skipped when the
      ``redis`` package or the server is missing.

    ``track_ratio_to_floor``: time over the floor's in the same round, median of
    ``COUNT_ROUNDS`` (target for ``m.incr``: <= 1.5); ``track_seconds``: median time."""

    params = [COUNTERS]
    param_names = ["impl"]
    number = 1
    timeout = 1800

    def setup_cache(self):
        skipped = {i: _counter_missing(i) for i in COUNTERS if _counter_missing(i)}
        configs = [i for i in COUNTERS if i not in skipped]
        times = interleaved(configs, _measure_count, COUNT_ROUNDS)
        return {"skipped": skipped,
                "seconds": {i: statistics.median(t) for i, t in times.items()},
                "ratio": {i: median_ratio(t, times[FLOOR]) for i, t in times.items()}}

    setup_cache.timeout = 1800  # type: ignore[attr-defined]

    def setup(self, cache, impl):
        if impl in cache["skipped"]:
            raise Skip(cache["skipped"][impl])

    def track_ratio_to_floor(self, cache, impl):
        return cache["ratio"][impl]

    track_ratio_to_floor.unit = "x local Counter + merge"  # type: ignore[attr-defined]

    def track_seconds(self, cache, impl):
        return cache["seconds"][impl]

    track_seconds.unit = "seconds"  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- batch calls
BATCH_ROUNDS = 5


class BatchCalls(Bench):
    """One call for ``n`` keys against a Python loop of single calls, in one process:

    * ``set_many``: ``m.set_many(keys, values)`` vs ``for k, v in zip(keys, values): m[k] = v``
    * ``update``: ``m.update(d)`` vs ``for k, v in d.items(): m[k] = v``
    * ``incr_many``: ``m.incr_many(counts)`` (a dict of key -> 1..3) vs
      ``for k, c in counts.items(): m.incr(k, c)``

    ``keys``: ``new`` into an empty map (a new one for every call: its growth included) or
    ``existing`` (every key already there).  ``track_batch_over_loop``: the batch's time over
    the loop's, measured in turn, median of ``BATCH_ROUNDS`` (below 1: the batch is faster);
    ``track_batch_ns_per_key``: the batch's time per key (median)."""

    params = [["set_many", "update", "incr_many"], [1000, 100_000, 1_000_000],
              ["new", "existing"]]
    param_names = ["op", "n", "keys"]
    number = 1
    timeout = 600

    def setup(self, op, n, keys):
        self.keys = list(random_keys(n))
        self.values = [float(i) for i in range(n)]
        self.mapping = ({k: 1 + i % 3 for i, k in enumerate(self.keys)} if op == "incr_many"
                        else dict(zip(self.keys, self.values)))
        with self.resources() as res:
            self.store = res.store("batch")
            self.m = self.store.map()
            # the existing keys (int values for the counters); warm
            self.m.set_many(self.keys, [0] * n if op == "incr_many" else self.values)
            self.m.incr_many({"warm": 1})
            self.m.incr("warm")
            del self.m["warm"]

    def _target(self, keys):
        if keys == "existing":
            return self.m
        m = self.store.map()
        m["warm"] = 0
        del m["warm"]
        return m

    def _time(self, how, op, keys):
        m = self._target(keys)
        t = time.perf_counter()
        if how == "batch":
            if op == "set_many":
                m.set_many(self.keys, self.values)
            elif op == "update":
                m.update(self.mapping)
            else:
                m.incr_many(self.mapping)
        elif op == "incr_many":
            incr = m.incr
            for k, c in self.mapping.items():
                incr(k, c)
        else:
            items = zip(self.keys, self.values) if op == "set_many" else self.mapping.items()
            for k, v in items:
                m[k] = v
        seconds = time.perf_counter() - t
        assert len(m) == len(self.keys)
        if m is not self.m:
            m.drop()
        return seconds

    def _rounds(self, op, keys):
        return interleaved(["batch", "loop"], lambda how: self._time(how, op, keys),
                           BATCH_ROUNDS)

    def track_batch_over_loop(self, op, n, keys):
        t = self._rounds(op, keys)
        return median_ratio(t["batch"], t["loop"])

    track_batch_over_loop.unit = "batch time / loop time"  # type: ignore[attr-defined]

    def track_batch_ns_per_key(self, op, n, keys):
        seconds = statistics.median(self._time("batch", op, keys) for _ in range(BATCH_ROUNDS))
        return seconds / n * 1e9

    track_batch_ns_per_key.unit = "ns per key"  # type: ignore[attr-defined]
