"""Many processes at once: writes through stale ids, false alarms, consistent batch reads,
snapshots under writes, liveness across pid namespaces, atomic counters, the c backend under
finalizers, kind checks, and a randomized stress whose logs must replay to the final state.

The scenarios are in tests/_scenarios.py (also a script: ``python -m tests._scenarios all 10``
counts what goes wrong in a library version), the stress in tests/_stress.py.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import sharedstore as ss
from sharedstore import _layout as L
from sharedstore._kernels import heap as KH

from . import _scenarios, _stress
from .conftest import unique_name

SECONDS = 2.5  # each scenario's run: bounded, and long enough to have found the old bugs


def _no_bad(name: str, res: dict) -> None:
    bad = {k: res.get(k, 0) for k in _scenarios.BAD[name]}
    assert not any(bad.values()), f"{name}: {bad} in {res}"


@pytest.mark.usefixtures("each_backend")
def test_a_write_through_a_dropped_map_id_never_lands_elsewhere():
    res = _scenarios.stale_write(SECONDS)
    _no_bad("stale_write", res)
    assert res["writes"] > 1000 and res["private"] > 100 and res["published"] > 100
    assert res.get("expected_errors", 0) > 0  # (the writers did race the drops)


@pytest.mark.usefixtures("each_backend")
def test_stale_ids_of_every_kind_are_refused():
    """Integers, numbers, strings, vectors and maps dropped while other processes write through
    their ids: the writes raise, and no object made meanwhile ever changes."""
    res = _scenarios.stale_kinds(SECONDS)
    _no_bad("stale_kinds", res)
    assert res.get("expected_errors", 0) > 0


@pytest.mark.usefixtures("each_backend")
def test_readers_racing_set_and_delete_never_see_damage():
    res = _scenarios.false_damage(SECONDS)
    _no_bad("false_damage", res)
    assert res["reads"] > 10_000


@pytest.mark.usefixtures("each_backend")
def test_get_many_reads_one_state_of_the_map():
    res = _scenarios.get_many_mix(SECONDS)
    _no_bad("get_many_mix", res)
    assert res["reads"] > 1000 and res["pairs"] > 1000


@pytest.mark.slow  # a map of 100k keys copied a few times under a writer: 3-6 s
def test_a_snapshot_finishes_under_a_full_speed_writer():
    """``items()`` of a big map while another process writes one other key as fast as it can:
    a few optimistic tries, then the map's lock (writers wait), never an endless restart."""
    res = _scenarios.snapshot(20.0, keys=100_000)
    busy = max(res["busy_s"])
    assert busy < 10 * res["alone_s"] + 2.0, res  # (asv measures the ratio: bench_concurrency)


def test_vector_reads_finish_under_writes_in_place(store):
    v = store.vector("int64")
    v.extend(np.zeros(200_000, dtype=np.int64))
    stop = store.integer(0)
    p = mp.get_context("fork").Process(target=_overwrite_forever, args=(store, v.id, stop.id))
    p.start()
    try:
        time.sleep(0.1)
        t = time.monotonic()
        for _ in range(20):
            a = v.to_numpy()
            assert (a == a[0]).all()  # one write's state throughout
        assert time.monotonic() - t < 20
    finally:
        stop.set(1)
        p.join(30)
    assert p.exitcode == 0


def _overwrite_forever(store, vid, stop_id):
    v, stop = store.ref(vid), store.ref(stop_id)
    block = np.zeros(len(v), dtype=np.int64)
    i = 0
    while stop.get() == 0:
        i += 1
        block[:] = i
        v[0:len(block)] = block


# ------------------------------------------------------------------ atomic counters
def _count_words(store, map_id, words, rounds):
    m = store.ref(map_id)
    for _ in range(rounds):
        for w in words:
            m.incr(w)


def _count_batches(store, map_id, counts, rounds):
    m = store.ref(map_id)
    for _ in range(rounds):
        m.incr_many(counts)


@pytest.mark.usefixtures("each_backend")
def test_incr_from_many_processes_is_exact(store):
    m = store.map()
    words = [f"w{i}" for i in range(50)]
    batch = {f"w{i}": i + 1 for i in range(0, 50, 7)}
    c = mp.get_context("fork")
    procs = [c.Process(target=_count_words, args=(store, m.id, words, 40)) for _ in range(3)]
    procs += [c.Process(target=_count_batches, args=(store, m.id, batch, 60)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for w in words:
        assert m[w] == 3 * 40 + 2 * 60 * batch.get(w, 0), w
        assert type(m[w]) is int


def _setdefault_race(store, map_id, key, mine, q):
    q.put(store.ref(map_id).setdefault(key, mine))


def test_setdefault_inserts_once_and_everyone_sees_the_winner(store):
    m = store.map()
    c = mp.get_context("fork")
    for round_ in range(5):
        q = c.SimpleQueue()
        procs = [c.Process(target=_setdefault_race, args=(store, m.id, f"k{round_}", i, q))
                 for i in range(4)]
        for p in procs:
            p.start()
        got = [q.get() for _ in procs]
        for p in procs:
            p.join(30)
        assert len(set(got)) == 1 and m[f"k{round_}"] == got[0]


def test_incr_refuses_what_is_not_a_counter(store):
    m = store.map({"s": "text", "i": 1, "f": 0.5})
    with pytest.raises(TypeError, match="nothing was changed"):
        m.incr("s")
    with pytest.raises(TypeError):
        m.incr("i", 0.5)  # (an int value stays an int)
    assert m.incr("f", 2) == 2.5 and m.incr("i", -3) == -2
    with pytest.raises(TypeError):
        m.incr("i", "1")
    with pytest.raises(TypeError):
        m.incr_many({"i": 1, "s": 1})
    assert m["i"] == -2 and m["s"] == "text"  # (refused whole)
    assert m.incr("new", 2**62) == 2**62 and m.incr("new", 2**62) == -(2**63)  # (wraps)


ACCUMULATE = """
import numba
from sharedstore.kernels import map_incr_float

@numba.njit(nogil=True)
def accumulate(mem, token, map_id, keys, xs):
    for i in range(len(keys)):
        status, _ = map_incr_float(mem, token, map_id, keys[i], xs[i])
        if status < 0:
            return status
    return 0
"""


@pytest.mark.slow  # compiles a user's @njit function: a few seconds
def test_the_readme_accumulate_example_is_exact_from_two_processes(store):
    ns = {}
    exec(ACCUMULATE, ns)
    m = store.map()
    keys = np.arange(64, dtype=np.int64)
    xs = np.ones(64)
    store.reserve(1 << 20)
    ns["accumulate"](store.mem, store.token, m.id, keys, xs)  # (compiles here, before forking)
    c = mp.get_context("fork")
    q = c.SimpleQueue()
    procs = [c.Process(target=_accumulate_compiled, args=(store, ns["accumulate"], m.id, keys,
                                                          xs, 300, q)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join(60)
    assert results == [0, 0]
    assert all(m[k] == 601.0 for k in range(64)), m.get_many(list(range(64)))


def _accumulate_compiled(store, fn, map_id, keys, xs, rounds, q):
    r = 0
    for _ in range(rounds):
        r = min(r, fn(store.mem, store.token, map_id, keys, xs))
    q.put(r)


def _die_holding_object_and_pool_locks(store, map_id):
    from sharedstore._kernels import locks as KL

    word = KH.handle_lock_word(store.mem, map_id)
    assert KL.lock_acquire_nowait(store.mem, word, store.token) == 1
    assert KL.lock_acquire_nowait(store.mem, L.W_ALLOC_LOCK, store.token) == 1
    os._exit(0)  # (as a kill would: no atexit, both locks held)


def test_a_process_dead_holding_an_object_lock_and_the_pool_lock_is_reaped_promptly(store):
    # The writer that takes the object's lock over reaps the dead process, whose entry's
    # reaping waits for the pool's lock, which the same dead process holds: that wait must
    # see it dead, though the reaper holds its liveness lock meanwhile.
    m = store.map({"x": 1})
    p = mp.get_context("fork").Process(target=_die_holding_object_and_pool_locks,
                                       args=(store, m.id))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    store.lock_timeout = 10
    t = time.monotonic()
    m["y"] = 2
    assert time.monotonic() - t < 5
    assert dict(m) == {"x": 1, "y": 2} and not [w for w in store.workers() if not w["self"]]
    assert store.check().clean


# ------------------------------------------------------------------ liveness across namespaces
HOLDER = """
import os, sys, time
import sharedstore as ss
from sharedstore._kernels import heap as KH, locks as KL

store = ss.attach(sys.argv[1])
m = store["m"]
word = KH.handle_lock_word(store.mem, m.id)
assert KL.lock_acquire_nowait(store.mem, word, store.token) == 1  # a write in progress, held
store["ready"] = os.getpid()
while store.get("release") is None:
    time.sleep(0.01)
KL.lock_release_owned(store.mem, word, store.token)
store.close()
"""

_UNSHARE = shutil.which("unshare")


def _in_own_pid_namespace(name: str) -> subprocess.Popen:
    """The holder script in a pid namespace (and /proc) of its own, as in another container."""
    return subprocess.Popen([_UNSHARE, "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                             HOLDER, name], start_new_session=True)


def _wait_ready(store, p) -> int:
    deadline = time.monotonic() + 120
    while store.get("ready") is None:
        assert p.poll() is None, "the holder died"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return store["ready"]


@pytest.mark.skipif(_UNSHARE is None or os.geteuid() != 0, reason="needs root and unshare")
def test_a_live_holder_in_another_pid_namespace_keeps_its_lock(store):
    store["m"] = store.map({"x": 1})
    p = _in_own_pid_namespace(store.name)
    try:
        ns_pid = _wait_ready(store, p)
        assert ns_pid < 10  # (its pid there: a process of ours may have that pid here)
        store.lock_timeout = 1.0
        with pytest.raises(ss.LockTimeoutError, match="is alive"):
            store["m"]["y"] = 2  # it waits for the holder, alive: never takes the lock over
        assert len([w for w in store.workers() if not w["self"]]) == 1
        store["release"] = 1
        assert p.wait(60) == 0
        store["m"]["y"] = 2
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert dict(store["m"]) == {"x": 1, "y": 2}


@pytest.mark.skipif(_UNSHARE is None or os.geteuid() != 0, reason="needs root and unshare")
def test_a_holder_killed_in_another_pid_namespace_is_taken_over(store):
    store["m"] = store.map({"x": 1})
    p = _in_own_pid_namespace(store.name)
    try:
        _wait_ready(store, p)
        os.killpg(p.pid, signal.SIGKILL)  # while it holds the map's lock
        p.wait(30)
        store.lock_timeout = 10.0
        t = time.monotonic()
        store["m"]["y"] = 2  # the dead holder's lock is taken over, the map repaired
        assert time.monotonic() - t < 5
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert dict(store["m"]) == {"x": 1, "y": 2}
    assert [w["self"] for w in store.workers()] == [True]  # its entry was reaped
    assert store.check().clean


def test_reaping_spares_a_process_that_holds_its_liveness_lock(store):
    """An entry whose pid is unknown here (another namespace's) but whose liveness lock is
    held is alive; once the lock is gone, it is reaped."""
    from sharedstore import _segment as seg

    att = store._att
    pids = store.mem[L.PROC_TABLE // 8:L.PROC_TABLE // 8 + L.PROC_MAX * L.PROC_WORDS:L.PROC_WORDS]
    i = int(np.flatnonzero(pids == 0)[0])
    fd = seg.reopen(att.fd, att.path)  # another open file description: as another process's
    try:
        assert seg.live_lock(fd, i) is True
        assert KH.proc_claim(store.mem, i, 4_000_000 - 1, 0, 0) > 0  # (no such pid here)
        assert store.reap() == 0 and len(store.workers()) == 2
    finally:
        os.close(fd)  # the "process" dies: the kernel drops its lock
    assert store.reap() == 1 and len(store.workers()) == 1


# ------------------------------------------------------------------ the c backend under stress
FINALIZER = """
import gc, sys
import sharedstore as ss

name = sys.argv[1]
store = ss.create(name)
try:
    m = store.map({f"k{i}": i for i in range(100)})
    keys = [f"k{i}" for i in range(100)]

    class Closer:  # garbage in a cycle: its finalizer runs in a collection, at any allocation
        def __init__(self, what):
            self.what, self.me = what, self
        def __del__(self):
            if self.what == "close":
                store.close()
            else:
                keys.clear()

    outcome = []
    for what in ("shrink", "close"):
        for _ in range(50):
            Closer(what)
            gc.set_threshold(1)
            try:
                got = m.get_many(keys)
                assert got == list(range(len(got))) or got == [None] * len(got), got
                outcome.append("ok")
            except ss.StoreClosedError:
                outcome.append("closed")
                break
            finally:
                gc.set_threshold(700)
            keys[:] = [f"k{i}" for i in range(100)]
    print(" ".join(sorted(set(outcome))))
finally:
    ss.unlink(name)
"""


@pytest.mark.parametrize("backend", ["auto", "0"])
def test_get_many_survives_finalizers_that_close_the_store(backend):
    name = unique_name("fin")
    env = {**os.environ, "SHAREDSTORE_FASTPATH": backend}
    r = subprocess.run([sys.executable, "-c", FINALIZER, name], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "closed" in r.stdout.split()


def test_private_slots_are_read_only(store):
    m, v = store.map(), store.vector("float64")
    for obj, slot in ((m, "_cx"), (m, "_id"), (store, "_cx"), (store, "_id"), (v, "_dtype"),
                      (v, "_element")):
        with pytest.raises(AttributeError):
            setattr(obj, slot, 4096)
    m["k"] = 1
    assert m["k"] == 1


@pytest.mark.usefixtures("each_backend")
def test_a_method_of_one_ref_class_refuses_another_kind(store):
    i, x, s = store.integer(1), store.number(1.5), store.string("s")
    a, v, m, lst = store.array(3), store.vector("int64"), store.map(), store.vector()
    calls = [
        lambda: ss.NumberRef.get(i), lambda: ss.NumberRef.add(i, 1.0),
        lambda: ss.NumberRef.set(i, 2.0), lambda: ss.IntRef.get(x), lambda: ss.IntRef.add(x, 1),
        lambda: ss.IntRef.compare_exchange(x, 1, 2), lambda: ss.StringRef.get(i),
        lambda: ss.StringRef.set(i, "x"), lambda: ss.VectorRef.append(a, 1.0),
        lambda: ss.VectorRef.extend(a, np.zeros(2)), lambda: ss.VectorRef.resize(a, 9),
        lambda: ss.MapRef.__setitem__(lst, "k", 1), lambda: ss.MapRef.__getitem__(lst, 0),
        lambda: ss.MapRef.get_many(lst, [0]), lambda: ss.MapRef.incr(lst, 0),
        lambda: ss.ListRef.append(m, 1),
    ]
    for call in calls:
        with pytest.raises(TypeError):
            call()
    assert i.get() == 1 and x.get() == 1.5 and s.get() == "s" and len(a) == 3 and len(v) == 0
    assert len(m) == 0 and len(lst) == 0 and a.view().tolist() == [0.0, 0.0, 0.0]


# ------------------------------------------------------------------ the randomized stress
@pytest.mark.slow  # 4 processes for 6 s, then the checks
def test_randomized_stress_replays_to_the_final_state(store, request):
    logs = _stress.run(store, workers=4, seconds=6.0)
    counts = _stress.check(store, logs)
    assert counts["ops"] > 10_000 and counts["reads_checked"] > 1000
    assert counts["stale_refused"] > 0 and counts["stale_ok"] > 0
    request.node.user_properties.append(("stress", counts))
    print("stress:", counts)
