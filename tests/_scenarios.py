"""The many-process scenarios of tests/test_concurrency.py, as functions that run for a given
time and count what went wrong, so that the same script measures a version of the library
before and after a change::

    python -m tests._scenarios stale_write 10      # one scenario, 10 s
    python -m tests._scenarios all 5               # every scenario, 5 s each

Each scenario makes its own store and unlinks it, starts its processes with ``fork`` (the
kernels are loaded in the parent first), runs them at full speed for ``seconds`` and returns
a dict of counts: the ones named in ``BAD`` must be 0 for the scenario to pass.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

import sharedstore as ss

#: the count of each scenario that must be 0
BAD = {
    "stale_write": ("landed", "corrupt", "other_errors"),
    "false_damage": ("corrupt", "other_errors"),
    "get_many_mix": ("mixed", "other_errors"),
    "stale_kinds": ("landed", "corrupt", "other_errors"),
}


def _name(tag: str) -> str:
    return f"scn-{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _run(procs: list[mp.Process], seconds: float) -> None:
    for p in procs:
        p.start()
    deadline = time.monotonic() + seconds + 60
    for p in procs:
        p.join(max(1.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
            raise RuntimeError(f"a scenario process did not stop (pid {p.pid})")


def _with_store(tag: str, body: Callable[[ss.Store], dict[str, Any]]) -> dict[str, Any]:
    global _RESULTS
    _RESULTS = mp.get_context("fork").SimpleQueue()
    name = _name(tag)
    store = ss.create(name, size=1 << 30)
    try:
        return body(store)
    finally:
        store.close()
        ss.unlink(name)


_RESULTS: Any = None  # the queue workers put their counts on (made before they fork)


def _add(store: ss.Store, key: str, counts: dict[str, int]) -> None:
    """Hand a process's counts to the parent (outside the store: a scenario may damage it)."""
    _RESULTS.put(dict(counts))


def _classify(e: BaseException, counts: dict[str, int]) -> None:
    if isinstance(e, (ss.UseAfterFreeError, ss.InvalidHandleError)):
        counts["expected_errors"] = counts.get("expected_errors", 0) + 1
    elif isinstance(e, ss.StoreCorruptError):
        counts["corrupt"] = counts.get("corrupt", 0) + 1
        if counts["corrupt"] <= 3:
            traceback.print_exception(e)
    else:
        counts["other_errors"] = counts.get("other_errors", 0) + 1
        if counts["other_errors"] <= 3:
            traceback.print_exception(e)


# ---------------------------------------------------------------- 1. writes through stale ids
def _publisher(store: ss.Store, seconds: float) -> None:
    cur = store["current"]
    end = time.monotonic() + seconds
    made = 0
    while time.monotonic() < end:
        m = store.map()
        for k in range(4):
            m[f"own{k}"] = k
        cur.set(m.id)
        for k in range(4, 8):
            m[f"own{k}"] = k
        m.drop()
        made += 1
    cur.set(0)
    _add(store, "counts", {"published": made})


def _stale_writer(store: ss.Store, seconds: float) -> None:
    cur = store["current"]
    counts: dict[str, int] = {}
    end = time.monotonic() + seconds
    me = os.getpid()
    while time.monotonic() < end:
        h = cur.get()
        if h == 0:
            continue
        m = ss.MapRef._trusted(store, h)  # (as a ref made before the drop would be)
        try:
            m["stale"] = me
            counts["writes"] = counts.get("writes", 0) + 1
        except Exception as e:
            _classify(e, counts)
    _add(store, "counts", counts)


def _bystander(store: ss.Store, seconds: float) -> None:
    """Make private maps no other process knows of; count those that got the stale key."""
    counts: dict[str, int] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        m = store.map()
        try:
            for k in range(8):
                m[k] = k
            if "stale" in m:
                counts["landed"] = counts.get("landed", 0) + 1
            m.drop()
            counts["private"] = counts.get("private", 0) + 1
        except Exception as e:
            _classify(e, counts)
    _add(store, "counts", counts)


def stale_write(seconds: float) -> dict[str, Any]:
    """A map is made, published, filled and dropped in a loop; two processes write a key through
    whatever id is current; a fourth makes private maps and looks for that key in them."""

    def body(store: ss.Store) -> dict[str, Any]:
        store["current"] = store.integer(0)
        c = mp.get_context("fork")
        procs = [c.Process(target=_publisher, args=(store, seconds)),
                 c.Process(target=_stale_writer, args=(store, seconds)),
                 c.Process(target=_stale_writer, args=(store, seconds)),
                 c.Process(target=_bystander, args=(store, seconds))]
        _run(procs, seconds)
        return _totals(store)

    return _with_store("stale", body)


def _totals(store: ss.Store) -> dict[str, Any]:
    total: dict[str, int] = {}
    while not _RESULTS.empty():
        for k, v in _RESULTS.get().items():
            total[k] = total.get(k, 0) + v
    return total


# ---------------------------------------------------------------- 1b. every kind of object
def _kind_publisher(store: ss.Store, seconds: float) -> None:
    cur = store["kinds"]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        objs = [store.integer(0), store.number(0.0), store.string("x"),
                store.vector("int64"), store.map()]
        for i, o in enumerate(objs):
            cur[i] = o.id
        for o in objs:
            o.drop()
    _add(store, "counts", {})


def _kind_writer(store: ss.Store, seconds: float) -> None:
    cur = store["kinds"]
    counts: dict[str, int] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for i, cls in enumerate((ss.IntRef, ss.NumberRef, ss.StringRef, ss.VectorRef,
                                 ss.MapRef)):
            h = cur[i]
            if h == 0:
                continue
            r = cls._trusted(store, h)
            try:
                if cls is ss.IntRef:
                    r.add(1 << 40)
                elif cls is ss.NumberRef:
                    r.add(1e12)
                elif cls is ss.StringRef:
                    r.set("stale")
                elif cls is ss.VectorRef:
                    r.append(1 << 41)
                else:
                    r["stale"] = 1
            except Exception as e:
                _classify(e, counts)
    _add(store, "counts", counts)


def _kind_bystander(store: ss.Store, seconds: float) -> None:
    counts: dict[str, int] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            i, x, s = store.integer(0), store.number(0.0), store.string("mine")
            v, m = store.vector("int64"), store.map()
            v.append(1)
            m["own"] = 1
            bad = (i.get() != 0 or x.get() != 0.0 or s.get() != "mine" or list(v) != [1]
                   or "stale" in m)
            if bad:
                counts["landed"] = counts.get("landed", 0) + 1
            for o in (i, x, s, v, m):
                o.drop()
            counts["private"] = counts.get("private", 0) + 1
        except Exception as e:
            _classify(e, counts)
    _add(store, "counts", counts)


def stale_kinds(seconds: float) -> dict[str, Any]:
    """As ``stale_write``, for integers, numbers, strings, vectors and maps at once."""

    def body(store: ss.Store) -> dict[str, Any]:
        store["kinds"] = store.map(dict.fromkeys(range(5), 0))
        c = mp.get_context("fork")
        procs = [c.Process(target=_kind_publisher, args=(store, seconds)),
                 c.Process(target=_kind_writer, args=(store, seconds)),
                 c.Process(target=_kind_bystander, args=(store, seconds))]
        _run(procs, seconds)
        res = _totals(store)
        report = store.check()
        if not report.ok:
            res["check_problems"] = len(report.problems)
            print(report)
        return res

    return _with_store("kinds", body)


# ---------------------------------------------------------------- 2. false alarms
def _set_delete(store: ss.Store, seconds: float) -> None:
    m = store["m"]
    counts: dict[str, int] = {}
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        try:
            m["k"] = f"value {i}"
            m.delete("k")
        except Exception as e:
            _classify(e, counts)
        i += 1
    _add(store, "counts", counts)


def _getter(store: ss.Store, seconds: float) -> None:
    m = store["m"]
    counts: dict[str, int] = {}
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(1000):
            try:
                v = m.get("k")
                if v is not None and not v.startswith("value "):
                    counts["torn"] = counts.get("torn", 0) + 1
            except Exception as e:
                _classify(e, counts)
        n += 1000
    counts["reads"] = n
    _add(store, "counts", counts)


def false_damage(seconds: float) -> dict[str, Any]:
    """Two processes set and delete one key in a loop while two read it."""

    def body(store: ss.Store) -> dict[str, Any]:
        store["m"] = store.map({f"other{i}": i for i in range(10)})
        c = mp.get_context("fork")
        procs = [c.Process(target=f, args=(store, seconds))
                 for f in (_set_delete, _set_delete, _getter, _getter)]
        _run(procs, seconds)
        return _totals(store)

    return _with_store("damage", body)


# ---------------------------------------------------------------- 3. get_many, one state
def _pair_writer(store: ss.Store, seconds: float) -> None:
    m = store["m"]
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        i += 1
        m.set_many(["b", "a"], [i, i])  # b first: a reader never sees a ahead of b
    _add(store, "counts", {"pairs": i})


def _pair_reader(store: ss.Store, seconds: float) -> None:
    m = store["m"]
    counts: dict[str, int] = {}
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(1000):
            try:
                b, a = m.get_many(["b", "a"])
                if a > b:
                    counts["mixed"] = counts.get("mixed", 0) + 1
            except Exception as e:
                _classify(e, counts)
        n += 1000
    counts["reads"] = n
    _add(store, "counts", counts)


def get_many_mix(seconds: float) -> dict[str, Any]:
    """A writer sets ``b`` then ``a`` to one counter in one ``set_many``; ``get_many(["b",
    "a"])`` must never see ``a`` ahead of ``b``."""

    def body(store: ss.Store) -> dict[str, Any]:
        store["m"] = store.map({"a": 0, "b": 0})
        c = mp.get_context("fork")
        procs = [c.Process(target=_pair_writer, args=(store, seconds)),
                 c.Process(target=_pair_reader, args=(store, seconds))]
        _run(procs, seconds)
        return _totals(store)

    return _with_store("getmany", body)


# ---------------------------------------------------------------- 4. snapshots
def _one_key_writer(store: ss.Store, seconds: float, rate: float) -> None:
    m = store["m"]
    end = time.monotonic() + seconds
    i = 0
    pause = 1.0 / rate if rate else 0.0
    while time.monotonic() < end:
        m["hot"] = i
        i += 1
        if pause:
            time.sleep(pause)
    _add(store, "counts", {"writes": i})


def snapshot(seconds: float, keys: int = 300_000, rate: float = 0.0) -> dict[str, Any]:
    """``list(m.items())`` of a big map, alone and while another process writes one other key
    (``rate`` writes a second, 0: full speed); the snapshots give up after ``seconds``."""

    def body(store: ss.Store) -> dict[str, Any]:
        m = store.map()
        m.update({f"key{i}": i for i in range(keys)})
        store["m"] = m
        t = time.perf_counter()
        assert len(list(m.items())) == keys
        alone = time.perf_counter() - t
        store.lock_timeout = seconds
        c = mp.get_context("fork")
        p = c.Process(target=_one_key_writer, args=(store, seconds + 5, rate))
        p.start()
        time.sleep(0.2)
        times = []
        try:
            for _ in range(3):
                t = time.perf_counter()
                n = len(list(m.items()))
                times.append(time.perf_counter() - t)
                assert n in (keys, keys + 1)
        except ss.LockTimeoutError:
            times.append(float("inf"))
        finally:
            p.kill()
            p.join()
        return {"alone_s": round(alone, 3), "busy_s": [round(x, 3) for x in times]}

    return _with_store("snap", body)


SCENARIOS: dict[str, Callable[[float], dict[str, Any]]] = {
    "stale_write": stale_write,
    "stale_kinds": stale_kinds,
    "false_damage": false_damage,
    "get_many_mix": get_many_mix,
    "snapshot": snapshot,
}


def main(argv: list[str]) -> None:
    which, seconds = argv[0], float(argv[1]) if len(argv) > 1 else 5.0
    from sharedstore import _jit

    _jit.load_all()  # in the parent, before any worker starts
    names = list(SCENARIOS) if which == "all" else [which]
    for n in names:
        t = time.monotonic()
        res = SCENARIOS[n](seconds)
        bad = {k: res.get(k, 0) for k in BAD.get(n, ())}
        print(f"{n} ({time.monotonic() - t:.1f} s, {ss.fastpath().backend} backend): {res}"
              f"  -> {'FAIL ' + str(bad) if any(bad.values()) else 'ok'}", flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main(sys.argv[1:])
