"""Workers SIGKILLed at random instants in the middle of writes leave a usable, consistent store."""

import multiprocessing as mp
import os
import random
import signal
import time

from . import _workers as W


def test_random_kills_during_writes(store):
    m = store.map()
    counter = store.integer(0)
    ctx = mp.get_context("fork")
    rng = random.Random(1)
    kills = 0
    for round_ in range(12):
        procs = [ctx.Process(target=W.churn_forever, args=(store, m.id, counter.id, round_ * 10 + i))
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
