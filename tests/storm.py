"""The crash storm: workers write at random, a killer SIGKILLs them at random instants and
restarts them, and afterwards every completed write is checked against the store.

Each worker logs to its own append-only file, one ``os.write`` per line: ``B seq op arg .`` before
an operation and ``D seq op arg result micros .`` after it returned (a SIGKILL can cut a write
short: a line without its final ``.`` is ignored).  An operation with a ``B`` and
no ``D`` was in flight when its worker was killed: it may or may not have happened.  Everything
with a ``D`` happened, and must be in the store unless a later operation of the same worker on
the same thing undid it.  Workers own disjoint keys, slots and records, so their logs never need
merging.

Operations (on objects shared by every worker):

- ``set``/``del``: a map key ``"w:k"`` gets a value of one of six kinds (int, float, str, bytes
  up to 3 KiB, a pickled dict, a numpy array) that encodes ``seq``, or is deleted;
- ``str``: a key ``"w:sj"`` gets a new string object (content ``"str<seq>"``), or the key is
  deleted and its string dropped (two calls: a kill between them orphans one string);
- ``ins``/``rem``: a record ``(w, seq, check)`` goes into a free slot of a shared table, or one
  of this worker's records is removed;
- ``ext``: ``EXT_ROWS`` records ``(w + EXT_MARK, seq, check)`` are appended to the table in one
  ``extend`` (4.8 KB: copied outside the table's lock, so kills land mid-copy);
- ``add``: the worker's integer counter gets +1;
- ``view``: the worker takes a zero-copy view of the table and holds it (so kills find workers
  holding views, whose pins the reaper must release);
- ``fld``/``fstr``: the worker's struct record gets ``count = seq`` / ``name = "n<seq>"`` (an owned
  string: the old one is dropped);
- ``put``: the worker overwrites its own vector of ``BLOCK_ROWS`` records in place
  (``block[0:BLOCK_ROWS] = rows``, every row ``(w, seq, check)``: several undo chunks, so kills
  land mid-chunk and between chunks), or one record of it (``block[k] = row``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import sharedstore as ss

ROW = np.dtype([("w", "<i8"), ("seq", "<i8"), ("check", "<i8")])
KEYS_PER_WORKER = 64
STRINGS_PER_WORKER = 16
#: a worker waits at most this long for a lock before LockTimeoutError (a failure)
LOCK_TIMEOUT = 2.0
EXT_ROWS = 200  # rows per "ext" op
EXT_MARK = 1000  # added to ``w`` in rows an "ext" wrote (``rem`` removes only "ins" records)
EXT_MAX_LEN = 200_000  # no "ext" once the table is this long
BLOCK_ROWS = 600  # rows of each worker's block (14.4 KB: 4 undo chunks of whole records)
MISSING = object()


def check_of(w: int, seq: int) -> int:
    return (w * 1_000_003 + seq * 7919) & 0x7FFFFFFFFFFF


def value_of(seq: int):
    kind = seq % 6
    if kind == 0:
        return seq
    if kind == 1:
        return seq + 0.5
    if kind == 2:
        return f"s{seq}:" + "x" * (seq % 700)
    if kind == 3:
        return b"b%d:" % seq + bytes(seq % 3000)
    if kind == 4:
        return {"seq": seq, "pad": list(range(seq % 20))}
    return np.full(1 + seq % 50, seq, dtype=np.int64)


def seq_of(value) -> int:
    """The seq a map value was written with (inverse of :func:`value_of`); -1 if malformed."""
    try:
        if isinstance(value, bool):
            return -1
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value - 0.5)
        if isinstance(value, str):
            head, _ = value.split(":", 1)
            seq = int(head[1:])
        elif isinstance(value, bytes):
            head, _ = value.split(b":", 1)
            seq = int(head[1:])
        elif isinstance(value, dict):
            seq = value["seq"]
        else:
            seq = int(value[0])
        expected = value_of(seq)
        if isinstance(expected, np.ndarray):
            ok = isinstance(value, np.ndarray) and np.array_equal(expected, value)
        else:
            ok = type(expected) is type(value) and expected == value
        return seq if ok else -1
    except (ValueError, KeyError, TypeError, IndexError):
        return -1


# ---------------------------------------------------------------------- worker side
def worker(name: str, ids: dict, wid: int, incarnation: int, log: str) -> None:
    """Do random operations until killed, logging each (see the module doc)."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, b"\n")  # a kill can cut the last line short: ours start on a line of their own
    try:
        store = ss.attach(name)
        store.lock_timeout = LOCK_TIMEOUT
        m = store.ref(ids["map"])
        table = store.ref(ids["table"])
        counter = store.ref(ids["counters"][wid])
        rec = store.ref(ids["records"][wid])
        block = store.ref(ids["blocks"][wid])
        rng = random.Random(incarnation * 1000 + wid)
        n = 0
        while True:
            n += 1
            seq = incarnation << 32 | n
            r = rng.random()
            if r < 0.25:
                op, arg = "set", f"{wid}:{rng.randrange(KEYS_PER_WORKER)}"
            elif r < 0.35:
                op, arg = "del", f"{wid}:{rng.randrange(KEYS_PER_WORKER)}"
            elif r < 0.45:
                op, arg = "str", f"{wid}:s{rng.randrange(STRINGS_PER_WORKER)}"
            elif r < 0.6:
                op, arg = "ins", "-"
            elif r < 0.7:
                op, arg = "rem", "-"
            elif r < 0.72 and len(table) < EXT_MAX_LEN:  # (a table of GBs would only time
                op, arg = "ext", "-"                         # its own growth)
            elif r < 0.72:
                op, arg = "ins", "-"
            elif r < 0.75:
                op, arg = "add", "-"
            elif r < 0.8:
                op, arg = "view", "-"
            elif r < 0.85:
                op, arg = "fld", "-"
            elif r < 0.9:
                op, arg = "put", str(rng.randrange(BLOCK_ROWS)) if rng.random() < 0.3 else "all"
            else:
                op, arg = "fstr", "-"
            if op == "rem":  # find one of our records first (only we remove ours)
                length = len(table)
                arg = "none"
                for _ in range(8):
                    if not length:
                        break
                    k = rng.randrange(length)
                    w, rseq, _ = table[k]
                    if w == wid and rseq:
                        arg = f"{k}:{rseq}"
                        break
            os.write(fd, f"B {seq} {op} {arg} .\n".encode())  # "." ends a whole line
            t0 = time.perf_counter()
            result = "-"
            if op == "set":
                m[arg] = value_of(seq)
            elif op == "del":
                m.delete(arg)
            elif op == "str":
                old = m.get(arg)
                if old is None:
                    m[arg] = store.string(f"str{seq}")
                    result = "create"
                else:
                    m.delete(arg)
                    old.drop()
                    result = "drop"
            elif op == "ins":
                row = np.zeros(1, ROW)[0]
                row["w"], row["seq"], row["check"] = wid, seq, check_of(wid, seq)
                result = str(table.insert(row))
            elif op == "ext":
                rows = np.zeros(EXT_ROWS, ROW)
                rows["w"], rows["seq"] = wid + EXT_MARK, seq
                rows["check"] = check_of(wid + EXT_MARK, seq)
                table.extend(rows)
            elif op == "rem":
                if arg != "none":
                    table.remove(int(arg.split(":")[0]))
            elif op == "add":
                counter.add(1)
            elif op == "view":  # hold a view (its pin) until the next one, or the kill
                held = table.view()
                result = str(int(held["check"][-1:].sum()))
            elif op == "fld":
                rec["count"] = seq
            elif op == "put":
                rows = np.zeros(BLOCK_ROWS if arg == "all" else 1, ROW)
                rows["w"], rows["seq"], rows["check"] = wid, seq, check_of(wid, seq)
                if arg == "all":
                    block[0:BLOCK_ROWS] = rows
                else:
                    block[int(arg)] = rows[0]
            else:
                rec["name"] = f"n{seq}"
            micros = int((time.perf_counter() - t0) * 1e6)
            os.write(fd, f"D {seq} {op} {arg} {result} {micros} .\n".encode())
    except BaseException:
        os.write(fd, ("E " + traceback.format_exc().replace("\n", " | ") + "\n").encode())
        os._exit(3)


# ---------------------------------------------------------------------- the run
@dataclass
class Op:
    seq: int
    op: str
    arg: str
    done: bool = False
    result: str = ""
    micros: int = 0


@dataclass
class StormResult:
    seconds: float = 0.0
    kills: int = 0
    starts: int = 0
    ops_done: int = 0
    ops_in_flight: int = 0
    max_op_seconds: float = 0.0
    errors: list = field(default_factory=list)
    bad_exits: list = field(default_factory=list)
    logs: dict = field(default_factory=dict)  # wid -> [Op]


def setup(store, workers: int) -> dict:
    """The shared objects every worker writes to; their ids."""
    Rec = ss.Struct("StormRecord", {"count": "int64", "name": "string"})
    store["storm"] = m = store.map()
    store["table"] = table = store.vector(ROW)
    counters = [store.integer(0) for _ in range(workers)]
    records = [Rec.new(store, count=0) for _ in range(workers)]
    blocks = [store.vector(ROW) for _ in range(workers)]
    for b in blocks:
        b.extend(np.zeros(BLOCK_ROWS, ROW))
        store[f"block-{b.id}"] = b
    store["counters"] = [c.id for c in counters]
    store["records"] = [r.id for r in records]
    for r in records:
        store[f"record-{r.id}"] = r
    for c in counters:
        store[f"counter-{c.id}"] = c
    return {"map": m.id, "table": table.id, "counters": [c.id for c in counters],
            "records": [r.id for r in records], "blocks": [b.id for b in blocks]}


def run(store, ids: dict, logdir: Path, seconds: float, workers: int = 3, seed: int = 0,
        max_gap: float = 0.01, min_kills: int = 0) -> StormResult:
    """Run ``workers`` workers for ``seconds``, SIGKILLing a random one every 0..``max_gap`` s
    and restarting it, and on until ``min_kills`` kills if it has fewer by then (a busy machine
    starts processes slowly), for at most ``8 * seconds``; kill them all at the end.  Returns
    the parsed logs."""
    ctx = mp.get_context("fork")
    rng = random.Random(seed)
    res = StormResult()
    procs = {}
    incarnation = 0

    def start(wid):
        nonlocal incarnation
        incarnation += 1
        p = ctx.Process(target=worker, args=(store.name, ids, wid, incarnation,
                                             str(logdir / f"worker-{wid}.log")), daemon=True)
        p.start()
        procs[wid] = p
        res.starts += 1

    def kill(wid):
        p = procs[wid]
        if p.exitcode is None:
            os.kill(p.pid, signal.SIGKILL)
        p.join(30)
        if p.exitcode != -signal.SIGKILL:
            res.bad_exits.append((wid, p.exitcode))
        res.kills += 1

    t0 = time.monotonic()
    for wid in range(workers):
        start(wid)
    while time.monotonic() - t0 < seconds or (
            res.kills < min_kills and time.monotonic() - t0 < 8 * seconds):
        time.sleep(rng.uniform(0, max_gap))
        wid = rng.randrange(workers)
        kill(wid)
        start(wid)
    for wid in range(workers):
        kill(wid)
    res.seconds = time.monotonic() - t0
    for wid in range(workers):
        res.logs[wid] = ops = parse(logdir / f"worker-{wid}.log", res)
        res.ops_done += sum(o.done for o in ops)
        res.ops_in_flight += sum(not o.done for o in ops)
    return res


def parse(path: Path, res: StormResult) -> list[Op]:
    ops: list[Op] = []
    by_seq: dict[int, Op] = {}
    if not path.exists():
        return ops
    for line in path.read_text().splitlines():
        if line.startswith("E "):
            res.errors.append(line[2:])
            continue
        parts = line.split(" ")
        # a SIGKILL can cut a write short: a cut line is skipped (a cut "D" leaves its op in
        # flight, which the verification treats as "may have happened": never a false alarm)
        if parts[-1] != ".":
            continue
        if parts[0] == "B" and len(parts) == 5 and parts[1].isdigit():
            o = Op(int(parts[1]), parts[2], parts[3])
            ops.append(o)
            by_seq[o.seq] = o
        elif (parts[0] == "D" and len(parts) == 7 and parts[5].isdigit()
              and int(parts[1]) in by_seq):
            o = by_seq[int(parts[1])]
            o.done, o.result, o.micros = True, parts[4], int(parts[5])
            res.max_op_seconds = max(res.max_op_seconds, o.micros / 1e6)
    return ops


# ---------------------------------------------------------------------- verification
def _allowed(history: list[tuple[Op, object]]):
    """Effects a thing may show after ``history`` (ops in log order, each with its effect):
    the last completed op's, or any in-flight op's after it; MISSING if nothing completed."""
    last = max((i for i, (o, _) in enumerate(history) if o.done), default=-1)
    allowed = [MISSING] if last < 0 else [history[last][1]]
    allowed += [eff for o, eff in history[last + 1:] if not o.done]
    return allowed


def verify(store, ids: dict, res: StormResult) -> dict:
    """Check every logged write against the store; returns counts of what was verified.
    Raises AssertionError describing the first write that is missing or wrong."""
    m = store.ref(ids["map"])
    table = store.ref(ids["table"])
    rows = table.view().copy()
    counts = {"keys": 0, "strings": 0, "records": 0, "extends": 0, "counters": 0, "fields": 0,
              "block_rows": 0, "puts": 0, "puts_cut": 0}
    undone_ins = 0
    for wid, ops in res.logs.items():
        keys: dict[str, list] = {}
        held: dict[str, object] = {}  # a str key: MISSING, or the seq of the string it holds
        inserted: dict[int, Op] = {}
        extended: list[Op] = []
        removed: dict[int, Op] = {}
        adds_done = adds_flight = 0
        fields: dict[str, list] = {"fld": [], "fstr": []}
        puts: list[list] = [[] for _ in range(BLOCK_ROWS)]  # per row: (op, seq) in log order
        for o in ops:
            if o.op == "set":
                keys.setdefault(o.arg, []).append((o, o.seq))
            elif o.op == "del":
                keys.setdefault(o.arg, []).append((o, MISSING))
            elif o.op == "str":
                # it creates a string if the key holds none, else removes it: a completed op
                # says which; an op in flight would have done the opposite of the last state
                state = held.get(o.arg, MISSING)
                if o.done:
                    eff = o.seq if o.result == "create" else MISSING
                    held[o.arg] = eff
                else:
                    eff = o.seq if state is MISSING else MISSING
                keys.setdefault(o.arg, []).append((o, eff))
            elif o.op == "ins":
                if o.done:
                    inserted[o.seq] = o
                else:
                    undone_ins += 1
            elif o.op == "ext":
                extended.append(o)
            elif o.op == "rem" and o.arg != "none":
                removed[int(o.arg.split(":")[1])] = o
            elif o.op == "add":
                adds_done += o.done
                adds_flight += not o.done
            elif o.op in fields:
                fields[o.op].append((o, o.seq))
            elif o.op == "put":
                for k in range(BLOCK_ROWS) if o.arg == "all" else [int(o.arg)]:
                    puts[k].append((o, o.seq))
        for key, hist in keys.items():
            allowed = _allowed(hist)
            v = m.get(key, MISSING)
            if isinstance(v, ss.StringRef):
                got = int(v.get()[3:])
            else:
                got = v if v is MISSING else seq_of(v)
            assert got in allowed, f"worker {wid}: key {key!r} holds seq {got}, allowed {allowed}"
            counts["strings" if ":s" in key else "keys"] += 1
        for seq, o in inserted.items():
            k = int(o.result)
            rem = removed.get(seq)
            row = rows[k] if k < len(rows) else None
            present = row is not None and int(row["w"]) == wid and int(row["seq"]) == seq
            if rem is None:
                assert present, f"worker {wid}: record {seq} missing from slot {k}"
            elif rem.done:
                assert not present, f"worker {wid}: removed record {seq} still in slot {k}"
            counts["records"] += 1
        # an extend is all or nothing: a completed one has all its rows, once; one cut short
        # by a kill has all or none (a copy cut short is zeroed and freed by the next writer)
        mine = rows[rows["w"] == wid + EXT_MARK]["seq"]
        seqs, per = np.unique(mine, return_counts=True)
        found = dict(zip(seqs.tolist(), per.tolist()))
        for o in extended:
            n = found.pop(o.seq, 0)
            assert n == EXT_ROWS or (n == 0 and not o.done), (
                f"worker {wid}: extend {o.seq} ({'done' if o.done else 'in flight'}) left {n} rows")
            counts["extends"] += 1
        assert not found, f"worker {wid}: rows of extends nobody logged: {found}"
        got = store.ref(ids["counters"][wid]).get()
        assert adds_done <= got <= adds_done + adds_flight, (
            f"worker {wid}: counter {got}, {adds_done} adds done, {adds_flight} in flight")
        counts["counters"] += 1
        # writes in place: every row whole, holding the last completed write's seq or an
        # in-flight one's after it (a write cut short by a kill changed whole records only)
        block = store.ref(ids["blocks"][wid]).view().copy()
        assert len(block) == BLOCK_ROWS
        for k, row in enumerate(block.tolist()):
            w, seq, check = row
            allowed = [0 if a is MISSING else a for a in _allowed(puts[k])]
            assert seq in allowed, f"worker {wid}: block row {k} holds seq {seq}, allowed {allowed}"
            assert seq == 0 or (w == wid and check == check_of(w, seq)), (
                f"worker {wid}: block row {k} torn: {row}")
        counts["block_rows"] += BLOCK_ROWS
        counts["puts"] += sum(o.op == "put" for o in ops)
        counts["puts_cut"] += sum(o.op == "put" and not o.done for o in ops)
        rec = store.ref(ids["records"][wid])
        for name, hist in (("count", fields["fld"]), ("name", fields["fstr"])):
            if not hist:
                continue
            allowed = _allowed(hist)
            v = rec[name]
            got = v if name == "count" else int(v[1:])
            assert got in allowed, f"worker {wid}: field {name} = {got}, allowed {allowed}"
            counts["fields"] += 1
    # every record in the table is whole, and was written by a logged insert
    live = rows[rows["seq"] != 0]
    torn = np.flatnonzero((rows["seq"] != 0) & (rows["check"] != check_of(rows["w"], rows["seq"])))
    assert len(torn) == 0, f"torn records at {torn[:10].tolist()}: {rows[torn[:10]].tolist()}"
    logged = {o.seq for ops in res.logs.values() for o in ops if o.op in ("ins", "ext")}
    assert set(live["seq"].tolist()) <= logged, "a record no insert wrote"
    counts["undone_inserts"] = undone_ins
    return counts


def orphan_strings(store, ids: dict) -> int:
    """Live string objects that nothing holds: strings a killed two-step ``str`` op created
    and never stored, or removed and never dropped."""
    m = store.ref(ids["map"])
    held = sum(isinstance(v, ss.StringRef) for v in m.values())
    held += sum(bool(store.ref(r)["name"]) for r in ids["records"])
    interned = store.stats()["objects"].get("string", 0) - held
    return interned - _interned_strings(store)


def _interned_strings(store) -> int:
    """Strings the store itself holds: interned type descriptors (schema map values)."""
    from sharedstore import _layout as L

    schemas = ss.MapRef._trusted(store, int(store.mem[L.W_SCHEMAS]))
    return len(schemas)
