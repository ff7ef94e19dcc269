"""``store.check()``: walk the whole store, report every inconsistency, repair what can be.

The walk itself is one kernel (``_kernels/check.py``) run under the allocator lock, so it sees a
settled store even while other processes work on it (they wait for the lock, a few
milliseconds for a store of a million objects).  What it checks:

- the heap: every block header from the start of the heap to its top, and the byte count;
- the free lists of every size class (each node a free block of its class, listed once) and the
  free blocks no list holds;
- the handle table: its directory, its free list, the slots no list holds, the object counts;
- every object's blocks: strings, struct records (and their schema), maps (table, entries, each
  entry's key and value tags and lengths, that a lookup finds it, the counts), vectors (data
  block, length, capacity, free list, dtype);
- allocated blocks that nothing references: *leaks*, what an operation held when its process was
  killed; and retired vector data still pinned by views (not a problem: the last view frees it);
- locks held by processes that are dead;
- map values of kinds this sharedstore does not know: damage, unless the store records that a
  newer sharedstore may have written that kind (``_layout``, Compatibility); then the check
  reports them as written by a newer sharedstore, counts them as sound, and repair leaves them
  alone.

``repair=True`` then fixes what can be rebuilt from the ground truth (the blocks' own headers and
the handle entries): leaked blocks are freed, free lists and counts rebuilt, a map entry that is
damaged is removed, an object whose own block is damaged is dropped (its id then raises
:class:`UseAfterFreeError`), dead processes' locks are taken over.  It cannot repair a heap whose
walk breaks (a damaged block header), a damaged handle directory, a block claimed by two objects
or a map entry that lookups cannot find; it says so.  It never removes what it does not
understand: a value of a kind a newer sharedstore wrote stays as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import _calls
from . import _layout as L
from ._kernels import check as KC
from ._kernels import locks as KL
from .errors import StoreCorruptError, human_bytes

#: problem records the kernel writes in one pass (more are counted, not described)
MAX_PROBLEMS = 10_000
#: repair passes at most: a dropped object's blocks are leaks that only the next pass sees
MAX_PASSES = 4

_TAG = L.TAG_NAMES
_KIND = {**L.KIND_NAMES, L.KIND_FREE: "free"}


def _kind(k: int) -> str:
    return _KIND.get(k, f"unknown kind {k}")


def _h(h: int) -> str:
    return f"object {h} (slot {h & 0xFFFFFFFF})"


# code -> (name, repairable, message(a, b, c))
_CODES: dict[int, tuple[str, bool, Callable[[int, int, int], str]]] = {
    KC.P_HEADER: ("header", False, lambda a, b, c: (
        f"header word {a} holds {b}" + (f" (committed {c})" if c else "")
        + ": the store's header is damaged")),
    KC.P_BLOCK: ("heap-walk", False, lambda a, b, c: (
        f"the block header at byte {a} is not valid (word {b:#x}): the heap cannot be walked "
        "past it, so leaks and free blocks beyond it are unknown")),
    KC.P_USED: ("used-bytes", True, lambda a, b, c: (
        f"the header counts {a} bytes in live blocks; the walk found {b}")),
    KC.P_FREELIST: ("free-list", True, lambda a, b, c: (
        f"the free list of size class {a} ({_class_size(a)} bytes) links to byte {b}, "
        "which is not a free block of that class (or is listed twice)")),
    KC.P_FREE_UNLISTED: ("free-block-unlisted", True, lambda a, b, c: (
        f"the free block at byte {a} ({b} bytes) is on no free list: it can never be reused")),
    KC.P_HT_DIR: ("handle-directory", False, lambda a, b, c: (
        f"handle chunk {a} has directory entry {b}, which is not a handle chunk: the handle "
        "table cannot be read")),
    KC.P_HT_FREELIST: ("handle-free-list", True, lambda a, b, c: (
        f"the handle free list links to slot {a}, which is not a free slot (or is listed twice)")),
    KC.P_SLOT_UNLISTED: ("handle-slot-unlisted", True, lambda a, b, c: (
        f"handle slot {a} is free but on no free list: it can never be reused")),
    KC.P_OBJECTS: ("object-count", True, lambda a, b, c: (
        f"the header counts {b} live {_kind(a)} objects; the handle table holds {c}")),
    KC.P_OBJ_BLOCK: ("object-block", True, lambda a, b, c: (
        f"{_h(a)} points at byte {b}, which is not a live {_TAG.get(c, c)} block; "
        "repair drops the object")),
    KC.P_SHARED: ("shared-block", False, lambda a, b, c: (
        f"{_h(a)} claims the {_TAG.get(c, c)} block at byte {b}, which another structure "
        "claims too")),
    KC.P_MAP_TABLE: ("map-table", True, lambda a, b, c: (
        f"map {_h(a)} has no valid table (byte {b}" + (f", capacity {c}" if c else "")
        + "); repair drops the map")),
    KC.P_MAP_ENTRY: ("map-entry", True, lambda a, b, c: (
        f"map {_h(a)}: slot {b} points at byte {c}, which is not a valid entry; repair "
        "removes it")),
    KC.P_MAP_COUNT: ("map-count", True, lambda a, b, c: (
        f"map {_h(a)} records {b} entries; its table holds {c}")),
    KC.P_MAP_USED: ("map-used", True, lambda a, b, c: (
        f"map {_h(a)} records {b} used slots; its table has {c}")),
    KC.P_MAP_PROBE: ("map-probe", False, lambda a, b, c: (
        f"map {_h(a)}: the entry in slot {b} (byte {c}) is where a lookup of its key never "
        "looks: its key cannot be found")),
    KC.P_VECTOR: ("vector", True, lambda a, b, c: (
        f"vector {_h(a)}: " + {
            KC.V_DATA: f"its data block (byte {c}) is not a live data block of its capacity",
            KC.V_LEN: f"its length {c} is outside 0 .. capacity",
            KC.V_ITEMSIZE: f"its item size {c} is not valid",
            KC.V_FREE: f"its free list ({c}) is not valid",
            KC.V_FREE_SLOT: f"its free list holds slot {c}, outside the vector",
            KC.V_DTYPE: f"its dtype id {c} names no live string",
            KC.V_UNDO: f"its undo block ({c}) or the write it records is not valid",
        }.get(b, f"problem {b} ({c})") + "; repair drops the vector")),
    KC.P_STRUCT: ("struct-schema", True, lambda a, b, c: (
        f"struct record {_h(a)} names schema {b}, which is no live string; repair drops it")),
    KC.P_LEAK: ("leak", True, lambda a, b, c: (
        f"the {_TAG.get(c, f'tag {c}')} block at byte {a} ({b} bytes) is allocated but nothing "
        "references it (an operation was killed while it held it); repair frees it")),
    KC.P_PIN_LIST: ("pin-list", True, lambda a, b, c: (
        f"process-table entry {a} points at byte {b} for its pin list, which is not a pin list; "
        "repair forgets it")),
    KC.P_PINS_EXCESS: ("pins-unrecorded", True, lambda a, b, c: (
        f"the vector data block at byte {a} is pinned {b} time(s), but attached processes record "
        f"{c} pin(s) on it: a process was killed while taking or releasing one; repair releases "
        "the rest")),
    KC.P_PIN_RECORD: ("pin-record", True, lambda a, b, c: (
        f"pin records name byte {a} ({c} pin(s)), " + (
            "which is not a vector data block" if b < 0 else f"which is pinned only {b} time(s)")
        + "; repair makes the block's pins match the records")),
    KC.P_KIND: ("object-kind", True, lambda a, b, c: (
        f"{_h(a)} has kind {b}, which is no kind of object; repair drops it")),
    KC.P_NEWER_VALUE: ("newer-value", False, lambda a, b, c: (
        f"map {_h(a)}: the value in slot {b} is of a kind this sharedstore does not know "
        f"(value tag {c}): a newer sharedstore wrote it; upgrade sharedstore to read it "
        "(repair leaves it as it is)")),
}


#: what a process killed in the middle of an operation can leave behind (its leaked blocks, a
#: slot or free block on no list, counts one off, its locks): harmless, reclaimed by repair.
#: Every other problem is damage that no kill can cause.
DEBRIS = frozenset({
    "leak", "used-bytes", "free-block-unlisted", "handle-slot-unlisted", "object-count",
    "map-count", "map-used", "dead-lock", "pins-unrecorded",
})

#: what is sound but not for this sharedstore to read: values a newer one wrote (``ok`` holds;
#: repair leaves them as they are)
NEWER = frozenset({"newer-value"})


def _class_size(c: int) -> int:
    return L.class_size(c) if 0 <= c < L.N_CLASSES else 0


@dataclass(frozen=True)
class Problem:
    """One inconsistency: ``code`` names its kind (``"leak"``, ``"map-entry"``, ...), ``where``
    is the byte offset or object id it is about, ``repairable`` says if ``repair=True`` can
    fix it; ``debris`` says it is what a killed operation leaves (see :data:`DEBRIS`),
    ``newer`` that it is a value a newer sharedstore wrote (see :data:`NEWER`)."""

    code: str
    message: str
    where: int
    repairable: bool

    @property
    def debris(self) -> bool:
        return self.code in DEBRIS

    @property
    def newer(self) -> bool:
        return self.code in NEWER

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class CheckReport:
    """What :meth:`Store.check` found.  ``problems`` are those that remain; with ``repair=True``,
    ``repaired`` are those it fixed.  ``ok`` is true when the store is sound: no problem is left
    but the debris of killed operations (leaked blocks and the like, see :data:`DEBRIS`), which
    costs memory and nothing else, and values a newer sharedstore wrote (:data:`NEWER`);
    ``clean`` when no problem at all is left.  ``stats`` has the
    walk's counts (blocks, free and leaked blocks and bytes, live handles, maps, entries,
    vectors, data blocks still pinned by views)."""

    store: str
    problems: list[Problem] = field(default_factory=list)
    repaired: list[Problem] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    more: int = 0  # problems beyond MAX_PROBLEMS, counted only

    @property
    def ok(self) -> bool:
        return not self.more and all(p.debris or p.newer for p in self.problems)

    @property
    def clean(self) -> bool:
        return not self.problems and not self.more

    def raise_if_bad(self) -> None:
        """Raise :class:`StoreCorruptError` listing the problems, unless the store is ``ok``."""
        if not self.ok:
            raise StoreCorruptError(str(self))

    def to_dict(self) -> dict:
        return {
            "store": self.store,
            "ok": self.ok,
            "clean": self.clean,
            "problems": [{**p.__dict__, "debris": p.debris, "newer": p.newer}
                         for p in self.problems],
            "repaired": [{**p.__dict__, "debris": p.debris, "newer": p.newer}
                         for p in self.repaired],
            "more_problems": self.more,
            "stats": self.stats,
        }

    def __str__(self) -> str:
        s = self.stats
        n = len(self.problems) + self.more
        if self.clean:
            verdict = "ok"
        elif self.ok:
            debris = sum(p.debris for p in self.problems)
            newer = n - debris
            parts = []
            if debris:
                parts.append(f"{debris} leftover(s) of killed operations (repair=True reclaims "
                             f"them: {human_bytes(s.get('leaked_bytes', 0))} leaked)")
            if newer:
                parts.append(f"{newer} value(s) a newer sharedstore wrote (upgrade sharedstore "
                             "to read them)")
            verdict = "ok, with " + " and ".join(parts)
        else:
            verdict = f"{n} problem(s)"
        lines = [
            f"store {self.store!r}: " + verdict
            + f"; {s.get('blocks', 0)} blocks, {human_bytes(s.get('used_bytes', 0))} in use, "
            f"{s.get('handles', 0)} objects ({s.get('maps', 0)} maps with "
            f"{s.get('entries', 0)} entries, {s.get('vectors', 0)} vectors)"
        ]
        if s.get("pinned_blocks"):
            lines.append(
                f"  {s['pinned_blocks']} old data block(s) "
                f"({human_bytes(s['pinned_bytes'])}) still pinned by views: freed when the "
                "last view goes")
        for p in self.repaired:
            lines.append(f"  repaired  {p}")
        for p in self.problems:
            tail = "" if p.repairable else "  [cannot be repaired]"
            label = "leftover" if p.debris else "newer   " if p.newer else "problem "
            lines.append(f"  {label}  {p}{tail if not p.newer else ''}")
        if self.more:
            lines.append(f"  ... and {self.more} more problem(s)")
        return "\n".join(lines)


_STAT_NAMES = {
    KC.ST_BLOCKS: "blocks", KC.ST_FREE_BLOCKS: "free_blocks", KC.ST_USED: "used_bytes",
    KC.ST_FREE_BYTES: "free_bytes", KC.ST_LEAKED_BLOCKS: "leaked_blocks",
    KC.ST_LEAKED_BYTES: "leaked_bytes", KC.ST_PINNED_BLOCKS: "pinned_blocks",
    KC.ST_PINNED_BYTES: "pinned_bytes", KC.ST_HANDLES: "handles",
    KC.ST_FREE_SLOTS: "free_slots", KC.ST_MAPS: "maps", KC.ST_ENTRIES: "entries",
    KC.ST_VECTORS: "vectors", KC.ST_WALKED: "heap_walked", KC.ST_NEWER_VALUES: "newer_values",
}


def _problems(probs: np.ndarray, n: int) -> list[Problem]:
    out = []
    for code, a, b, c in probs[:min(n, MAX_PROBLEMS) * KC.P_WORDS].reshape(-1, 4).tolist():
        name, repairable, msg = _CODES.get(
            code, ("unknown", False,
                   lambda a, b, c, code=code: f"problem {code} ({a}, {b}, {c})"))
        out.append(Problem(name, msg(a, b, c), a, repairable))
    return out


def _dead_locks(store, repair: bool, deadline: float) -> list[Problem]:
    """Locks of objects held by processes that are gone: taken over (and what they guard
    repaired) with ``repair``, else reported."""
    mem = store.mem
    found = []
    count = int(mem[L.W_HT_COUNT])
    for ch in range((count + L.HT_CHUNK - 1) >> L.HT_CHUNK_SHIFT):
        d = int(mem[L.HT_DIR // 8 + ch])
        if d <= 0 or d % 8 or d + L.HT_CHUNK * L.HT_WORDS * 8 > int(mem[L.W_COMMITTED]):
            continue  # the walk reports a damaged directory
        rows = mem[d // 8:d // 8 + L.HT_CHUNK * L.HT_WORDS].reshape(-1, L.HT_WORDS)
        for i in np.flatnonzero(rows[:, L.H_LOCK]).tolist():
            owner = int(rows[i, L.H_LOCK])
            meta = int(rows[i, L.H_META])
            if meta & 0xFF == L.KIND_FREE or not 0 < meta >> 8 <= L.GEN_MAX:
                continue  # a free or damaged entry: the walk reports it
            if owner == 0 or _calls.token_alive(store._att, owner):
                continue  # released meanwhile, or held by a live process
            slot = (ch << L.HT_CHUNK_SHIFT) + i
            h = (meta >> 8) << 32 | slot
            word = d // 8 + i * L.HT_WORDS + L.H_LOCK
            pid = _calls.token_pid(store._att, owner)
            found.append(Problem(
                "dead-lock", f"{_h(h)} is locked by process {pid}, which is gone; "
                "repair takes the lock over and repairs the object", h, True))
            if repair:
                _calls.unblock(store._att, word, h, deadline, "check", store.lock_timeout)
    return found


def _locked_pass(store, repair: bool, deadline: float):
    """One kernel pass under the allocator lock: (problem count, records, stats)."""
    mem = store.mem
    token = store.token
    while not KL.lock_acquire_nowait(mem, L.W_ALLOC_LOCK, token):
        _calls.unblock(store._att, L.W_ALLOC_LOCK, 0, deadline, "check", store.lock_timeout)
    try:
        top = int(mem[L.W_HEAP_TOP])
        count = int(mem[L.W_HT_COUNT])
        marks = np.zeros(max(0, min(top, int(mem[L.W_COMMITTED])) - L.HEAP_START) // 8 + 1,
                         np.uint8)
        slots = np.zeros(max(0, min(count, L.SLOT_MAX)) + 1, np.uint8)
        probs = np.zeros(MAX_PROBLEMS * KC.P_WORDS, np.int64)
        stats = np.zeros(KC.N_STATS, np.int64)
        n = KC.heap_check(mem, marks, slots, probs, stats, int(repair))
    finally:
        KL.lock_release_owned(mem, L.W_ALLOC_LOCK, token)
    return n, probs, stats


def check(store, repair: bool = False) -> CheckReport:
    """Check ``store``; with ``repair``, fix what can be fixed.  See :meth:`Store.check`."""
    deadline = time.monotonic() + store.lock_timeout
    report = CheckReport(store.name)
    locks = _dead_locks(store, repair, deadline)  # before reaping: the owners' pids are known
    store.reap()
    n, probs, stats = _locked_pass(store, repair, deadline)
    found = locks + _problems(probs, n)
    if repair:
        for _ in range(MAX_PASSES):
            if int(stats[KC.ST_REPAIRED]) == 0:
                break
            n, probs, stats = _locked_pass(store, True, deadline)
            found += [p for p in _problems(probs, n) if p not in found]
        n, probs, stats = _locked_pass(store, False, deadline)
        remaining = _problems(probs, n)
        report.problems = remaining
        report.repaired = [p for p in found if p not in remaining]
    else:
        report.problems = found
    report.more = max(0, n - MAX_PROBLEMS)
    report.stats = {name: int(stats[i]) for i, name in _STAT_NAMES.items()}
    report.stats["heap_walked"] = bool(report.stats["heap_walked"])
    return report
