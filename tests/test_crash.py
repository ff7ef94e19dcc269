"""Workers SIGKILLed at random instants in the middle of writes leave a usable, consistent store."""

import multiprocessing as mp
import os
import random
import signal
import time

import numpy as np
import pytest

from sharedstore import _calls
from sharedstore import _layout as L
from sharedstore._kernels import heap as KH

from . import _workers as W

# rounds of writer processes killed with SIGKILL: 2-3 s a test
pytestmark = pytest.mark.slow


def test_random_kills_during_writes(store):
    m = store.map()
    counter = store.integer(0)
    ctx = mp.get_context("fork")
    rng = random.Random(1)
    kills = 0
    for round_ in range(12):
        procs = [ctx.Process(target=W.churn_forever,
                             args=(store, m.id, counter.id, round_ * 10 + i))
                 for i in range(2)]
        for p in procs:
            p.start()
        time.sleep(rng.uniform(0.05, 0.3))
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            p.join(30)
            assert p.exitcode == -signal.SIGKILL
            kills += 1
        # every survivor operation still works, promptly, after each round
        store.lock_timeout = 5
        t = time.monotonic()
        m["parent"] = "alive"
        store.string("after a kill").drop()
        counter.add(1)
        assert time.monotonic() - t < 5
    assert kills == 24
    # the map is consistent: every key listed is readable and holds a value written for it
    items = dict(m.items())
    assert len(items) == len(m) == len(list(m))
    for k, v in items.items():
        if k == "parent":
            assert v == "alive"
        else:
            assert v == k * (len(v) // len(k)) and len(v) % len(k) == 0
    for k in list(items):
        assert m.delete(k)
    assert len(m) == 0
    assert counter.get() >= 12
    assert [w["pid"] for w in store.workers()] == [os.getpid()]


def test_kills_during_writes_in_place_leave_no_torn_record(store):
    """A worker overwrites 64 records of 2 KiB in place (``v[0:64] = rows``), round after
    round, and is SIGKILLed at random instants: every record read afterwards holds one round's
    value throughout (whoever takes the dead writer's lock over puts the old records of a
    chunk cut short back)."""
    dt = np.dtype([("w", "<i8", (256,))])
    v = store.vector(dt)
    v.extend(np.zeros(64, dtype=dt))
    stop = store.integer(0)
    ctx = mp.get_context("fork")
    rng = random.Random(2)
    store.lock_timeout = 5
    vw = int(store.mem[KH.handle_resolve(store.mem, v.id, L.KIND_VECTOR) + L.H_VALUE]) // 8 + 1
    held = cut = 0
    for round_ in range(12):
        p = ctx.Process(target=W.overwrite_rows, args=(store, v.id, stop.id, 64))
        p.start()
        time.sleep(rng.uniform(0.05, 0.2))
        os.kill(p.pid, signal.SIGKILL)
        p.join(30)
        assert p.exitcode == -signal.SIGKILL
        held += int(store.mem[_calls.lock_word(store._att, v.id)]) != 0
        cut += int(store.mem[vw + L.VH_UNDO_AT]) != 0
        if round_ % 2:  # a write takes the lock over first (and mends), or ...
            v.extend(np.zeros(1, dtype=dt))
            v.resize(64)
        rows = v[0:64]["w"]  # ... the read waits on the dead writer's lock, and mends
        for i, w in enumerate(rows):
            assert (w == w[0]).all(), f"round {round_}: record {i} torn: {sorted(set(w.tolist()))}"
        assert int(store.mem[vw + L.VH_UNDO_AT]) == 0 and int(store.mem[vw + L.VH_VERSION]) % 2 == 0
        # A kill between taking the lock and the version's first change (or between its last
        # change and the release) leaves nothing to mend: the read need not wait, and the dead
        # writer's lock stays, debris, until the next write takes it over (seen once in CI).
        report = store.check()
        assert report.ok and all(p.code == "dead-lock" and p.where == v.id
                                 for p in report.problems), report
        v[0:64] = np.zeros(64, dtype=dt)
        assert store.check().clean
    assert held >= 1, "none of the 12 kills came while the worker held the lock"
    print(f"kills holding the lock: {held}, in a chunk's copy: {cut}")
