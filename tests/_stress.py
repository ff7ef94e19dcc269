"""A randomized many-process stress in the Jepsen habit: several processes run random operations
on a few shared maps, a vector, a list and counters at full speed, each logging what it did and
what it saw; afterwards the logs are checked against the store.

- Every value a reader saw is one some writer wrote, for that key (values name their writer,
  its sequence number and the key).
- Keys ``"w<w>:<k>"`` are written (set, delete) by worker ``w`` alone, so each key's history is
  one worker's log in order: the final state of every such key equals a replay of that log.
- Counters (``incr``, ``incr_many``, ``IntRef.add``) are shared by every worker: their final
  values equal the sum of every logged delta, and every value an ``incr`` returned is one the
  counter can have had (at most the final total).
- Appends (vector and list) from every worker all land, each once.
- ``setdefault`` of a shared key: every caller got the value the one winner put there.
- Worker 0 also drops and re-creates a map whose id the others write through: a write through a
  dropped id raises ``UseAfterFreeError`` (or ``InvalidHandleError``), never lands elsewhere;
  every process checks that its private maps hold only its own keys.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import sharedstore as ss

KEYS = 24  # own keys per worker and map
COUNTERS = 6
EXPECTED = (ss.UseAfterFreeError, ss.InvalidHandleError)


def value_of(w: int, seq: int, key: str) -> Any:
    """The value worker ``w`` writes at ``seq`` under ``key``: kinds rotate, each names all."""
    kind = seq % 4
    tag = f"{w}:{seq}:{key}"
    if kind == 0:
        return tag
    if kind == 1:
        return tag.encode()
    if kind == 2:
        return {"tag": tag, "pad": list(range(seq % 7))}
    return (w << 40) | (seq << 8) | (sum(key.encode()) & 0xFF)  # an int: checked by its fields


def matches(value: Any, w: int, seq: int, key: str) -> bool:
    expected = value_of(w, seq, key)
    return type(value) is type(expected) and value == expected


def decode(value: Any) -> tuple[int, int] | None:
    """(writer, seq) a value names, or None if it is no value any writer writes."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value >> 40, (value >> 8) & 0xFFFFFFFF
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, dict):
            value = value["tag"]
        w, seq, _ = value.split(":", 2)
        return int(w), int(seq)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return None


@dataclass
class Log:
    """What one worker did and saw."""

    w: int
    ops: int = 0
    writes: list = field(default_factory=list)  # (map index, key, seq or None for delete)
    reads: list = field(default_factory=list)  # (map index, key, value seen)
    deltas: dict = field(default_factory=dict)  # counter key -> sum of its deltas
    incr_seen: list = field(default_factory=list)  # (counter key, value an incr returned)
    int_delta: int = 0
    appended: list = field(default_factory=list)
    listed: list = field(default_factory=list)
    defaults: list = field(default_factory=list)  # what setdefault returned
    stale: dict = field(default_factory=dict)  # what writes through re-created maps gave
    foreign: int = 0  # private maps that held a key this worker never wrote
    errors: list = field(default_factory=list)


def worker(store: ss.Store, ids: dict, w: int, seconds: float, q: Any) -> None:
    log = Log(w)
    try:
        _work(store, ids, w, seconds, log)
    except BaseException as e:  # (reported, never swallowed: the check fails on it)
        log.errors.append("".join(traceback.format_exception(e)))
    q.put(log)


def _work(store: ss.Store, ids: dict, w: int, seconds: float, log: Log) -> None:
    rng = random.Random(1000 + w)
    maps = [store.ref(h) for h in ids["maps"]]
    counters = store.ref(ids["counters"])
    vec = store.ref(ids["vector"])
    lst = store.ref(ids["list"])
    total = store.ref(ids["int"])
    current = store.ref(ids["current"])  # the id of the map worker 0 re-creates
    end = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < end:
        seq += 1
        log.ops += 1
        r = rng.random()
        mi = rng.randrange(len(maps))
        m = maps[mi]
        key = f"w{w}:{rng.randrange(KEYS)}"
        if r < 0.22:
            m[key] = value_of(w, seq, key)
            log.writes.append((mi, key, seq))
        elif r < 0.28:
            m.delete(key)
            log.writes.append((mi, key, None))
        elif r < 0.45:
            other = f"w{rng.randrange(ids['workers'])}:{rng.randrange(KEYS)}"
            log.reads.append((mi, other, m.get(other, None)))
        elif r < 0.52:
            keys = [f"w{rng.randrange(ids['workers'])}:{rng.randrange(KEYS)}" for _ in range(4)]
            for k, v in zip(keys, m.get_many(keys)):
                log.reads.append((mi, k, v))
        elif r < 0.56:
            for k, v in list(m.items()):
                log.reads.append((mi, k, v))
        elif r < 0.66:
            c = f"c{rng.randrange(COUNTERS)}"
            d = rng.randrange(1, 5)
            log.incr_seen.append((c, counters.incr(c, d)))
            log.deltas[c] = log.deltas.get(c, 0) + d
        elif r < 0.69:
            batch = {f"c{rng.randrange(COUNTERS)}": rng.randrange(1, 5) for _ in range(3)}
            counters.incr_many(batch)
            for c, d in batch.items():
                log.deltas[c] = log.deltas.get(c, 0) + d
        elif r < 0.74:
            total.add(3)
            log.int_delta += 3
        elif r < 0.80:
            x = (w << 32) | seq
            vec.append(x)
            log.appended.append(x)
        elif r < 0.83:
            x = (w << 32) | seq
            lst.append(x)
            log.listed.append(x)
        elif r < 0.85:
            log.defaults.append(counters.setdefault("first", f"{w}:{seq}"))
        elif r < 0.87:
            _private(store, w, seq, log)
        elif r < 0.93 and w == 0:
            _recreate(store, ids, current)
        else:
            _through_current(store, current, w, seq, log)


def _private(store: ss.Store, w: int, seq: int, log: Log) -> None:
    m = store.map()
    for k in range(4):
        m[f"p{w}:{k}"] = seq
    if set(m) != {f"p{w}:{k}" for k in range(4)}:
        log.foreign += 1
    m.drop()


def _recreate(store: ss.Store, ids: dict, current: ss.IntRef) -> None:
    old = current.get()
    new = store.map()
    current.set(new.id)
    if old:
        ss.MapRef._trusted(store, old).drop()


def _through_current(store: ss.Store, current: ss.IntRef, w: int, seq: int, log: Log) -> None:
    h = current.get()
    if not h:
        return
    m = ss.MapRef._trusted(store, h)  # (a ref to whichever map was current a moment ago)
    try:
        m[f"t{w}"] = seq
        what = "ok"
    except EXPECTED:
        what = "stale"
    except Exception as e:
        what = type(e).__name__
    log.stale[what] = log.stale.get(what, 0) + 1


def setup(store: ss.Store, workers: int) -> dict:
    first = store.map()
    current = store.integer(first.id)
    return {
        "workers": workers,
        "maps": [store.map().id for _ in range(3)],
        "counters": store.map().id,
        "vector": store.vector("int64").id,
        "list": store.vector().id,
        "int": store.integer(0).id,
        "current": current.id,
    }


def run(store: ss.Store, workers: int, seconds: float) -> list[Log]:
    ids = setup(store, workers)
    c = mp.get_context("fork")
    q = c.SimpleQueue()
    procs = [c.Process(target=worker, args=(store, ids, w, seconds, q)) for w in range(workers)]
    for p in procs:
        p.start()
    logs = [q.get() for _ in procs]
    for p in procs:
        p.join(60)
    store._stress_ids = ids  # type: ignore[attr-defined]  (for check)
    return sorted(logs, key=lambda log: log.w)


def check(store: ss.Store, logs: list[Log]) -> dict[str, Any]:
    """Every invariant of the module doc; returns counts (raises AssertionError on a breach)."""
    ids = store._stress_ids  # type: ignore[attr-defined]
    for log in logs:
        assert not log.errors, log.errors[0]
        assert log.foreign == 0, f"worker {log.w}: a private map held another's key"
        bad = {k: n for k, n in log.stale.items() if k not in ("ok", "stale")}
        assert not bad, f"worker {log.w}: writes through re-created maps gave {bad}"
    maps = [store.ref(h) for h in ids["maps"]]
    # 1. every value read was written, by its writer, for that key
    written = {(mi, key, seq) for log in logs for mi, key, seq in log.writes if seq is not None}
    reads = 0
    for log in logs:
        for mi, key, value in log.reads:
            if value is None:
                continue
            reads += 1
            ws = decode(value)
            assert ws is not None, f"read {value!r} at {key!r}: no writer writes that"
            w, seq = ws
            assert key.startswith(f"w{w}:") and matches(value, w, seq, key), (key, value)
            assert (mi, key, seq) in written, f"read {value!r} at {key!r}: never written"
    # 2. the final state of every key is its writer's last write
    for log in logs:
        last: dict[tuple[int, str], int | None] = {}
        for mi, key, seq in log.writes:
            last[(mi, key)] = seq
        for (mi, key), seq in last.items():
            got = maps[mi].get(key)
            if seq is None:
                assert got is None, f"{key!r} was deleted last, holds {got!r}"
            else:
                assert matches(got, log.w, seq, key), f"{key!r}: {got!r}, last write {seq}"
        for mi, m in enumerate(maps):
            own = {k for k in m if k.startswith(f"w{log.w}:")}
            assert own == {k for (i, k), s in last.items() if i == mi and s is not None}
    # 3. counters: exact
    counters = store.ref(ids["counters"])
    totals: dict[str, int] = {}
    for log in logs:
        for c, d in log.deltas.items():
            totals[c] = totals.get(c, 0) + d
    for c, t in totals.items():
        assert counters[c] == t, f"counter {c}: {counters[c]}, deltas sum to {t}"
    for log in logs:
        for c, seen in log.incr_seen:
            assert 0 < seen <= totals[c]
    assert store.ref(ids["int"]).get() == sum(log.int_delta for log in logs)
    # 4. appends: each once
    vec = np.sort(store.ref(ids["vector"]).to_numpy())
    assert vec.tolist() == sorted(x for log in logs for x in log.appended)
    assert sorted(store.ref(ids["list"])) == sorted(x for log in logs for x in log.listed)
    # 5. setdefault: one winner, seen by all
    seen = {v for log in logs for v in log.defaults}
    assert len(seen) <= 1 and (not seen or counters["first"] in seen), seen
    report = store.check()
    assert report.ok, str(report)
    return {
        "ops": sum(log.ops for log in logs),
        "reads_checked": reads,
        "writes": len(written),
        "incr": sum(len(log.incr_seen) for log in logs),
        "appends": len(vec),
        "stale_refused": sum(log.stale.get("stale", 0) for log in logs),
        "stale_ok": sum(log.stale.get("ok", 0) for log in logs),
        "pid": os.getpid(),
    }
