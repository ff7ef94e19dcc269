import multiprocessing as mp
import os
import time

import numpy as np
import pytest

import sharedstore as ss

from . import _workers as W
from .conftest import CONTEXTS


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_pool_increments_add_up(store, ctx):
    hits = store.integer(0)
    total = store.number(0.0)
    n = 2000
    with mp.get_context(ctx).Pool(2) as pool:
        pids = pool.starmap(W.add_many, [(store, hits.id, total.id, n)] * 4, chunksize=1)
    assert hits.get() == 4 * n
    assert total.get() == 4 * n * 0.5
    assert os.getpid() not in pids


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_worker_reads_parent_and_parent_reads_worker(store, ctx):
    store["greeting"] = store.string("Hello World")
    with mp.get_context(ctx).Pool(2) as pool:
        assert pool.map(W.read_greeting, [store] * 4) == ["Hello World"] * 4
        sid = pool.apply(W.write_back, (store, "from-worker", "written by a worker"))
    assert store["from-worker"].get() == "written by a worker"
    assert store["from-worker"].id == sid
    assert store["from-worker-plain"]["text"] == "written by a worker"


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_processes_attach_by_name(store, ctx):
    hits = store.integer(0)
    c = mp.get_context(ctx)
    procs = [c.Process(target=W.attach_and_add, args=(store.name, hits.id, 3000)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert hits.get() == 6000


def test_concurrent_map_writers(store):
    m = store.map()
    c = mp.get_context("fork")
    procs = [c.Process(target=W.map_writer, args=(store, m.id, i * 2000, 2000)) for i in range(2)]
    for p in procs:
        p.start()
    W.map_writer(store, m.id, 4000, 2000)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(m) == 6000
    assert all(m[f"key-{k}"] == k for k in range(6000))


def test_forked_child_registers_itself(store):
    c = mp.get_context("fork")
    p = c.Process(target=W.attach_and_add, args=(store.name, store.integer(0).id, 1))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    pids = [w["pid"] for w in store.workers()]
    assert pids == [os.getpid()]


def test_dead_worker_is_reaped(store):
    p = mp.get_context("fork").Process(target=W.exit_without_close, args=(store.name,))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert [w["pid"] for w in store.workers()] == [os.getpid()]


@pytest.mark.parametrize("which", ["alloc", "map"])
@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_sigkilled_lock_holder_does_not_block(store, which, ctx):
    """A child killed while holding the allocator lock or a map's lock is taken over."""
    store["before"] = "kept"
    ready = store.integer(0)
    p = mp.get_context(ctx).Process(target=W.die_holding_lock, args=(store.name, which, ready.id))
    p.start()
    p.join(60)
    assert p.exitcode == -9
    assert ready.get() == 1
    store.lock_timeout = 5
    t = time.monotonic()
    store["after"] = store.string("not blocked")  # needs the map lock and the allocator lock
    assert time.monotonic() - t < 5
    assert store["after"].get() == "not blocked" and store["before"] == "kept"
    assert len(store) == 2
    assert [w["pid"] for w in store.workers()] == [os.getpid()]


def test_live_lock_holder_times_out(store):
    ready, release = store.integer(0), store.integer(0)
    p = mp.get_context("fork").Process(
        target=W.hold_lock_alive, args=(store.name, ready.id, release.id, 30)
    )
    p.start()
    try:
        deadline = time.monotonic() + 30
        while ready.get() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        store.lock_timeout = 0.5
        with pytest.raises(ss.LockTimeoutError, match=f"process {p.pid}"):
            store.string("blocked")
    finally:
        release.set(1)
        p.join(30)
    assert p.exitcode == 0
    assert store.string("fine now").get() == "fine now"


def test_a_live_pid_without_a_liveness_lock_is_dead(store):
    """A lock whose owner's entry names a pid that runs, but holds no liveness lock (the
    process that registered it is gone: pid reused, or another pid namespace's), is taken
    over: liveness is the kernel's lock, never the pid alone."""
    from sharedstore import _layout as L
    from sharedstore._kernels import heap as KH
    from sharedstore._kernels import locks as KL

    # register a fake process in a free entry: pid 1 (alive), and no liveness lock
    pids = store.mem[L.PROC_TABLE // 8:L.PROC_TABLE // 8 + L.PROC_MAX * L.PROC_WORDS:L.PROC_WORDS]
    free = int(np.flatnonzero(pids == 0)[0])
    token = KH.proc_claim(store.mem, free, 1, 0, 0)
    assert token > 0
    assert KL.lock_acquire_nowait(store.mem, L.W_ALLOC_LOCK, token) == 1
    store.lock_timeout = 5
    assert store.string("taken over").get() == "taken over"
    assert KL.lock_owner(store.mem, L.W_ALLOC_LOCK) == 0
    assert 1 not in [w["pid"] for w in store.workers()]


@pytest.mark.slow  # a reader racing a writer process: 2 s
def test_vector_reads_never_see_a_record_half_overwritten(store):
    """One process overwrites records in place (``v[0:4] = rows``) while another reads them
    without locks (``v[i]``, ``v[a:b]``): every record read holds one round's value throughout."""
    dt = np.dtype([("w", "<i8", (256,))])  # 2 KiB records: a copy takes long enough to race
    v = store.vector(dt)
    v.extend(np.zeros(4, dtype=dt))
    stop = store.integer(0)
    p = mp.get_context("fork").Process(target=W.overwrite_rows, args=(store, v.id, stop.id, 4))
    p.start()
    try:
        deadline = time.monotonic() + 2.0
        reads = changed = 0
        last = 0
        while time.monotonic() < deadline:
            rows = [np.asarray(v[i % 4][0]) for i in range(reads, reads + 4)] + list(v[0:4]["w"])
            for w in rows:
                assert (w == w[0]).all(), f"a torn record: values {sorted(set(w.tolist()))}"
                changed += int(w[0]) != last
                last = int(w[0])
            reads += 4
    finally:
        stop.set(1)
        p.join(30)
    assert p.exitcode == 0
    assert reads > 1000 and changed > 100  # (the reads did race the writes)


@pytest.mark.slow  # a reader racing a writer process: 3 s
def test_reader_never_sees_torn_values_during_writes(store):
    """One process writes (insert, replace, delete, resize) while another reads without locks."""
    m = store.map()
    result = store.integer(-1)
    n = 3000
    p = mp.get_context("fork").Process(target=W.map_reader, args=(store, m.id, n, 3.0, result.id))
    p.start()
    deadline = time.monotonic() + 2.5
    rounds = 0
    while time.monotonic() < deadline:
        for k in range(n):
            m[f"key-{k}"] = k if rounds % 2 else f"value-{k}-" * 10
        for k in range(0, n, 3):
            del m[f"key-{k}"]
        rounds += 1
    p.join(30)
    assert p.exitcode == 0
    wrong, hits = divmod(result.get(), 1_000_000_000)
    assert wrong == 0
    assert hits > 1000 and rounds >= 2
