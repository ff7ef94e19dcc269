"""Helpers shared by the benchmarks: unique names, resource cleanup, test data.

The helpers themselves live in :mod:`sharedstore.bench` (``python -m sharedstore bench`` runs a
short subset of this suite with them).  Every benchmark class derives from :class:`Bench`.  Its
``setup`` opens resources inside ``with self.resources() as res:`` and registers how to release
each one (``res.defer``); its ``teardown`` releases them all, newest first.  If ``setup`` fails
half way, what it opened so far is released before the error propagates (asv does not call
``teardown`` after a failed ``setup``).  As a last resort, an ``atexit`` hook removes any store
file this process created and did not remove, so ``/dev/shm`` is left clean even when a benchmark
fails.

asv may call ``setup``/``teardown`` around every timed call, so names carry a counter as well as
the pid.

Multi-figure benchmarks (several ``track_*`` read from one measurement) measure in
``setup_cache``, which asv runs once per class and whose result it passes to ``setup`` and every
``track_*`` as their first argument: there, resources are held in a ``with Resources() as res:``
block of their own.  :func:`run_parallel` runs one round of forked worker processes released
together; :func:`interleaved` runs configurations in turn, a few rounds, so each ratio compares
figures measured side by side.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import statistics
import threading
import time
import traceback

# the helpers `python -m sharedstore bench` uses too: one copy, in the package
from sharedstore.bench import (  # noqa: F401  (re-exported for the benchmark modules)
    Resources,
    random_floats,
    random_keys,
    shuffled,
    unique_name,
)

FORK = multiprocessing.get_context("fork")
MB = 1 << 20


class Bench:
    """Base class: ``setup`` fills ``self.res`` inside ``with self.resources()``; ``teardown``
    releases it."""

    @contextlib.contextmanager
    def resources(self):
        self.teardown()  # never leak a previous setup's resources
        res = self.res = Resources()
        try:
            yield res
        except BaseException:
            self.teardown()
            raise

    @contextlib.contextmanager
    def guard(self):
        """More setup work on the resources already held: release them all if it fails."""
        try:
            yield self.res
        except BaseException:
            self.teardown()
            raise

    def teardown(self, *params) -> None:
        res = self.__dict__.pop("res", None)
        if res is not None:
            res.close()


class Skip(NotImplementedError):
    """Raised in ``setup``: asv records the case as skipped (``n/a``), not failed."""


# ---------------------------------------------------------------------- parallel rounds
class WorkerError(RuntimeError):
    """A worker of :func:`run_parallel` failed; the message is its traceback."""


def _parallel_child(prepare, args, barrier, conn, timeout):
    try:
        try:
            run = prepare(*args)
        except BaseException:
            barrier.abort()  # release the others now instead of at the timeout
            raise
        barrier.wait(timeout)
        t0 = time.perf_counter()
        out = run()
        t1 = time.perf_counter()
        conn.send((True, t0, t1, out))
    except BaseException:
        conn.send((False, traceback.format_exc()))
    finally:
        conn.close()


def run_parallel(prepare, args_list, merge=None, timeout: float = 600.0):
    """One round: a ``fork`` process per entry of ``args_list``; each calls
    ``prepare(*args)`` (not timed: it builds its keys, opens what it writes to) and gets a
    function of no arguments, waits until every worker and this process are ready (a
    barrier), then calls it.

    Returns ``(seconds, outs)``: ``seconds`` from the first worker's start to the last one's
    end (``time.perf_counter`` is the system-wide monotonic clock on Linux, so the workers'
    readings compare), ``outs`` the functions' results in order.  With ``merge``, the end is
    when ``merge(outs)`` returns in this process (receiving the results included) and its
    result replaces ``outs``.  A worker's exception is raised here as :class:`WorkerError`;
    every worker is joined (killed past ``timeout``) before this returns.
    """
    barrier = FORK.Barrier(len(args_list) + 1)
    procs, readers = [], []
    try:
        for args in args_list:
            r, w = FORK.Pipe(duplex=False)
            p = FORK.Process(target=_parallel_child, args=(prepare, tuple(args), barrier, w,
                                                           timeout), daemon=True)
            p.start()
            w.close()
            procs.append(p)
            readers.append(r)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout)  # (broken: a worker failed, its message says why)
        msgs = []
        for r in readers:
            if not r.poll(timeout):
                raise WorkerError(f"a worker sent no result within {timeout} s")
            msgs.append(r.recv())
        errors = [m[1] for m in msgs if not m[0]]
        if errors:
            first = [e for e in errors if "BrokenBarrierError" not in e] or errors
            raise WorkerError(first[0])
        start = min(m[1] for m in msgs)
        outs = [m[3] for m in msgs]
        if merge is None:
            return max(m[2] for m in msgs) - start, outs
        merged = merge(outs)
        return time.perf_counter() - start, merged
    finally:
        for p in procs:
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join(10)
        for r in readers:
            r.close()


def interleaved(configs, measure, rounds: int) -> dict:
    """``{config: [measure(config) for each round]}``, the configurations run in turn within
    a round (reversed every other round, so none is always first after a pause)."""
    out: dict = {c: [] for c in configs}
    for r in range(rounds):
        for c in (configs if r % 2 == 0 else list(reversed(configs))):
            out[c].append(measure(c))
    return out


def median_ratio(num: list, den: list) -> float:
    """The median of the per-round ratios ``num[i] / den[i]`` (each round's pair measured side
    by side: slow drifts of the machine cancel)."""
    return statistics.median(a / b for a, b in zip(num, den))


# ---------------------------------------------------------------------- memory figures
def file_bytes(path) -> int:
    """Bytes a file holds on its filesystem (``st_blocks * 512``): on tmpfs, the memory its
    pages take."""
    return os.stat(path).st_blocks * 512


def heap_top(store) -> int:
    """The store's heap top (the end of the memory ever handed out), in bytes: from
    ``store.stats()`` once it reports one, else from the header word
    ``sharedstore._layout.W_HEAP_TOP``, else ``committed``."""
    st = store.stats()
    for key in ("heap_top", "heap top"):
        if key in st:
            return int(st[key])
    from sharedstore import _layout

    word = getattr(_layout, "W_HEAP_TOP", None)
    return int(store.mem[word]) if word is not None else int(st["committed"])


def shm_file(res: Resources, tag: str, nbytes: int) -> str:
    """A new ``/dev/shm`` file of ``nbytes`` (``ftruncate``: no page touched yet), removed by
    ``res`` (and at exit if the process dies first).  Returns its path."""
    name = unique_name(tag)
    path = os.path.join("/dev/shm", name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    res.shm_path(name)
    res.defer(_unlink_quietly, path)
    try:
        os.ftruncate(fd, nbytes)
    finally:
        os.close(fd)
    return path


def _unlink_quietly(path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
