"""Atomic counters: ``IntRef.add`` and ``NumberRef.add`` against ``multiprocessing.Value``.

``Add`` times ``OPS`` increments from one process (divide by ``OPS`` for one).
``AddThroughput`` times ``TOTAL`` increments split over 1 or 2 worker processes and checks that
the final count is exact.
"""

import multiprocessing

from .common import Bench

OPS = 10_000
TOTAL = 200_000

_FORK = multiprocessing.get_context("fork")


class Add(Bench):
    """One process, ``OPS`` increments by 1 of one shared counter.

    The peer takes the Value's lock for each increment (``with v.get_lock(): v.value += 1``),
    which is what makes it atomic; ``IntRef.add`` is a lock-free fetch-add.
    """

    params = [["IntRef", "NumberRef", "multiprocessing.Value"]]
    param_names = ["impl"]

    def setup(self, impl):
        with self.resources() as res:
            if impl == "multiprocessing.Value":
                self.counter = multiprocessing.Value("q", 0, lock=True)
            else:
                store = res.store("add")
                self.counter = store.integer(0) if impl == "IntRef" else store.number(0.0)
                self.counter.add(1)  # kernel loaded and warm
                self.counter.add(-1)
            self.expected = 0

    def time_add(self, impl):
        c = self.counter
        if impl == "multiprocessing.Value":
            lock = c.get_lock()
            for _ in range(OPS):
                with lock:
                    c.value += 1
            final = c.value
        else:
            add = c.add
            for _ in range(OPS):
                add(1)
            final = c.get()
        self.expected += OPS
        assert final == self.expected, (final, self.expected)


# ---------------------------------------------------------------------- workers (module level)
_worker: dict = {}


def _init_worker(impl, counter, barrier):
    """Pool initializer: the counter and barrier are inherited through fork."""
    _worker.update(impl=impl, counter=counter, barrier=barrier)


def _ready(_):
    return _worker["impl"]


def _increment(n):
    """Add 1 to the shared counter ``n`` times, once every worker has its task."""
    c = _worker["counter"]
    _worker["barrier"].wait(timeout=60)  # both workers start together, one task each
    if _worker["impl"] == "multiprocessing.Value":
        lock = c.get_lock()
        for _ in range(n):
            with lock:
                c.value += 1
    else:
        add = c.add
        for _ in range(n):
            add(1)
    return n


class AddThroughput(Bench):
    """``TOTAL`` increments of one shared counter split over ``processes`` workers.

    The workers are a ``fork`` Pool started in ``setup`` (process start is not timed); the
    timed part hands each worker one task of ``TOTAL // processes`` increments, which they
    start together (a barrier), and waits for both.  The final count must be exact.  With 2
    processes on 2 cores, throughput = time(1) / time(2); the ideal is 2x.
    """

    params = [["IntRef", "multiprocessing.Value"], [1, 2]]
    param_names = ["impl", "processes"]
    number = 1  # fresh state around every timed call, whatever the asv version
    timeout = 180

    def setup(self, impl, processes):
        with self.resources() as res:
            if impl == "IntRef":
                store = res.store("throughput")
                counter = store.integer(0)
                counter.add(0)  # kernel loaded before the fork
            else:
                counter = _FORK.Value("q", 0, lock=True)
            self.counter = counter
            barrier = _FORK.Barrier(processes)
            pool = _FORK.Pool(processes, initializer=_init_worker,
                              initargs=(impl, counter, barrier))
            res.defer(pool.join)
            res.defer(pool.terminate)
            self.pool = pool
            assert pool.map(_ready, range(processes), chunksize=1) == [impl] * processes
            self.expected = 0

    def time_increments(self, impl, processes):
        per = TOTAL // processes
        done = self.pool.map(_increment, [per] * processes, chunksize=1)
        self.expected += sum(done)
        final = self.counter.get() if impl == "IntRef" else self.counter.value
        assert final == self.expected, (final, self.expected)
