"""store.check(): it finds each kind of damage, says where, and repair=True fixes what it can."""

import multiprocessing as mp
import time

import numpy as np
import pytest

import sharedstore as ss
from sharedstore import _layout as L
from sharedstore._kernels import heap as KH

from . import _workers as W


def fill(store):
    """A store with one of everything, some of it churned (free blocks, free slots, tombstones)."""
    store["n"] = 1
    store["text"] = "x" * 300
    m = store.map({f"k{i}": i for i in range(200)})
    store["m"] = m
    for i in range(0, 200, 3):
        del m[f"k{i}"]
    v = store.vector("float64")
    v.extend(np.arange(5000.0))
    store["v"] = v
    for i in range(10):
        v.remove(i * 7)
    lst = store.vector()
    lst.extend(["a", 2, None])
    store["list"] = lst
    for i in range(50):
        store.string("churn" * i).drop()
    store["s"] = store.string("kept")
    store["i"] = store.integer(5)
    return m, v


def codes(report):
    return sorted({p.code for p in report.problems})


def entry(store, h):
    return KH.handle_resolve(store.mem, h, -1)


def test_a_busy_store_checks_clean(store):
    fill(store)
    r = store.check()
    assert r.clean, str(r)
    assert r.stats["heap_walked"] and r.stats["leaked_blocks"] == 0
    assert r.stats["maps"] >= 4 and r.stats["vectors"] == 1
    assert r.stats["used_bytes"] == store.stats()["used"] - L.HEAP_START
    assert "ok" in str(r)
    assert store.check(repair=True).repaired == []


def test_a_pinned_old_block_is_not_a_leak(store):
    v = store.vector("int64")
    v.extend(np.arange(10))
    view = v.view()
    v.extend(np.arange(10_000))  # grows: the old block stays for the view
    r = store.check()
    assert r.clean and r.stats["pinned_blocks"] == 1 and "pinned by views" in str(r)
    del view
    r = store.check()
    assert r.clean and r.stats["pinned_blocks"] == 0


def test_leaked_block_and_lost_slot_are_repaired(store):
    fill(store)
    used = store.stats()["used"]
    s = store.string("y" * 1000)
    e = entry(store, s.id)
    mem = store.mem
    # what a process killed half-way through dropping a string leaves: the handle is retired,
    # the block is not freed and the slot is on no free list
    meta = int(mem[e + L.H_META])
    mem[e + L.H_META] = ((meta >> 8) + 1) << 8 | L.KIND_FREE
    r = store.check()
    assert codes(r) == ["handle-slot-unlisted", "leak", "object-count"]
    assert r.ok and not r.clean and "leftover" in str(r)  # debris of a kill, not damage
    leak = next(p for p in r.problems if p.code == "leak")
    assert "string block" in leak.message and leak.repairable
    assert r.stats["leaked_blocks"] == 1 and r.stats["leaked_bytes"] >= 1008
    r = store.check(repair=True)
    assert r.clean, str(r)
    assert {p.code for p in r.repaired} == {"handle-slot-unlisted", "leak", "object-count"}
    assert store.stats()["used"] == used
    # the memory and the slot are reused
    s2 = store.string("y" * 1000)
    assert s2.id & 0xFFFFFFFF == s.id & 0xFFFFFFFF
    assert store.stats()["used"] > used
    with pytest.raises(ss.UseAfterFreeError):
        s.get()


def test_broken_free_list_is_rebuilt(store):
    fill(store)
    mem = store.mem
    c = next(c for c in range(L.N_CLASSES) if mem[L.W_CLASS_HEADS + c])
    mem[L.W_CLASS_HEADS + c] = L.HEAP_START + 8  # inside a block, not a block
    r = store.check()
    assert "free-list" in codes(r) and "free-block-unlisted" in codes(r)
    assert not r.ok  # a bad link is damage no kill can cause
    with pytest.raises(ss.StoreCorruptError, match="free-list"):
        r.raise_if_bad()
    assert f"size class {c}" in str(r)
    r = store.check(repair=True)
    assert r.clean, str(r)
    for i in range(100):  # the rebuilt lists hand out good blocks
        store.string("z" * (i % 40)).drop()
    assert store.check().clean


def test_free_list_cycle_is_found(store):
    fill(store)
    mem = store.mem
    c = next(c for c in range(L.N_CLASSES) if mem[L.W_CLASS_HEADS + c])
    head = int(mem[L.W_CLASS_HEADS + c])
    mem[head // 8 + 1] = head  # the block links to itself
    r = store.check()
    assert "free-list" in codes(r)
    assert store.check(repair=True).clean


def test_wrong_counts_are_repaired(store):
    m, _ = fill(store)
    n = len(m)
    mem = store.mem
    mw = KH.object_words(mem, entry(store, m.id), L.MAP_WORDS)
    mem[mw + L.M_COUNT] += 5
    mem[L.W_USED] -= 64
    mem[L.W_OBJECTS + L.KIND_STRING] += 2
    r = store.check()
    assert codes(r) == ["map-count", "object-count", "used-bytes"]
    assert f"records {n + 5} entries; its table holds {n}" in str(r)
    r = store.check(repair=True)
    assert r.clean and len(r.repaired) == 3
    assert len(m) == len(dict(m.items()))


def test_damaged_map_entry_is_removed(store):
    m, _ = fill(store)
    mem = store.mem
    mw = KH.object_words(mem, entry(store, m.id), L.MAP_WORDS)
    t = int(mem[mw + L.M_TABLE])
    cap = int(mem[t // 8 + 1])
    slots = mem[t // 8 + 2:t // 8 + 2 + cap]
    live = [i for i, s in enumerate(slots.tolist()) if s > L.SLOT_TOMB]
    eoff = (int(slots[live[0]]) & L.SLOT_OFF_MASK) << 3
    mem[eoff // 8 + 1 + L.E_META] = 0x7F7F  # key and value tags that mean nothing
    r = store.check()
    assert codes(r) == ["map-entry"]
    assert f"slot {live[0]}" in str(r)
    n = len(m)
    r = store.check(repair=True)
    assert r.clean, str(r)
    assert len(m) == n - 1 == len(dict(m.items()))
    m["new"] = 1  # the map still works, and the entry's block was freed
    assert store.check().clean


def test_entry_a_lookup_cannot_find_is_reported(store):
    m = store.map({"a": 1})
    mem = store.mem
    mw = KH.object_words(mem, entry(store, m.id), L.MAP_WORDS)
    t = int(mem[mw + L.M_TABLE])
    cap = int(mem[t // 8 + 1])
    sw = t // 8 + 2
    i = next(i for i in range(cap) if mem[sw + i] > L.SLOT_TOMB)
    j = (i + cap // 2) % cap
    mem[sw + j], mem[sw + i] = mem[sw + i], 0  # move the entry far from its home slot
    r = store.check()
    assert codes(r) == ["map-probe"]
    assert not r.problems[0].repairable
    assert "[cannot be repaired]" in str(r)


def test_object_with_a_damaged_block_is_dropped(store):
    fill(store)
    s = store.string("victim")
    m = store.map()
    mem = store.mem
    e = entry(store, s.id)
    mem[e + L.H_VALUE] = mem[entry(store, m.id) + L.H_VALUE]  # the string now points at a map
    r = store.check()
    assert "object-block" in codes(r) or "shared-block" in codes(r)
    r = store.check(repair=True)
    assert r.clean, str(r)
    with pytest.raises(ss.UseAfterFreeError):
        s.get()
    assert m.get("x") is None and len(m) == 0


def test_damaged_vector_is_dropped(store):
    _, v = fill(store)
    mem = store.mem
    vw = KH.object_words(mem, entry(store, v.id), L.VEC_WORDS)
    mem[vw + L.VH_LEN] = mem[vw + L.VH_CAP] + 10
    r = store.check()
    assert codes(r) == ["vector"] and "outside 0 .. capacity" in str(r)
    used = store.stats()["used"]
    r = store.check(repair=True)
    assert r.clean, str(r)
    assert store.stats()["used"] < used  # its blocks were freed on the second pass
    with pytest.raises(ss.UseAfterFreeError):
        len(v)


def test_broken_heap_walk_is_reported_not_repaired(store):
    m, _ = fill(store)
    mem = store.mem
    mw = KH.object_words(mem, entry(store, m.id), L.MAP_WORDS)
    t = int(mem[mw + L.M_TABLE])
    mem[t // 8] = 0x5A5A5A5A5A5A5A5A  # the table block's header: no class, no tag
    for repair in (False, True):
        r = store.check(repair=repair)
        assert not r.ok
        assert r.problems[0].code == "heap-walk" and f"at byte {t}" in str(r)
        assert not r.stats["heap_walked"] and r.repaired == []
    assert "map-table" in codes(r)


def test_dead_lock_holder_is_reported_and_taken_over(store, name):
    m = store.map()
    store["m"] = m
    ready = store.integer(0)
    p = mp.get_context("fork").Process(target=W.die_holding_lock,
                                       args=(name, "root", ready.id))
    p.start()
    p.join(30)
    r = store.check()
    assert codes(r) == ["dead-lock"] and f"process {p.pid}" in str(r)
    assert r.ok and not r.clean  # debris (a kill leaves it), not damage
    r = store.check(repair=True)
    assert r.clean and r.repaired[0].code == "dead-lock"
    store["after"] = 1


def check_in_loop(name, progress_id, rounds):
    """Check at least ``rounds`` times, and until the writer has done 2000 operations."""
    with ss.attach(name) as s:
        progress = s.ref(progress_id)
        bad = []
        done = 0
        deadline = time.monotonic() + 120
        while (done < rounds or progress.get() < 2000) and time.monotonic() < deadline:
            r = s.check()
            done += 1
            if not r.clean:
                bad.append(str(r))
        return bad, done, progress.get()


@pytest.mark.slow  # checks racing writer processes: 1.5 s
def test_check_while_others_write(store, name):
    """The walk holds the allocator lock: writers in other processes never make it see a torn
    structure or a false leak."""
    fill(store)
    stop = store.integer(0)
    progress = store.integer(0)
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        writer = pool.apply_async(W.churn_until, (name, stop.id, progress.id))
        checker = pool.apply_async(check_in_loop, (name, progress.id, 30))
        bad, rounds, seen = checker.get(180)
        stop.set(1)
        n = writer.get(60)
    assert bad == []
    assert rounds >= 30 and seen >= 2000 and n >= seen
    assert store.check().clean


def test_check_command(store, capsys):
    import json

    from sharedstore.cli import main

    fill(store)
    assert main(["check", store.name]) == 0
    assert "ok" in capsys.readouterr().out
    s = store.string("y" * 100)
    mem = store.mem
    e = entry(store, s.id)
    mem[e + L.H_META] = ((int(mem[e + L.H_META]) >> 8) + 1) << 8 | L.KIND_FREE  # a leak
    assert main(["check", store.name, "--json"]) == 0  # debris of a kill is not damage
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and not out["clean"] and "leak" in {p["code"] for p in out["problems"]}
    assert main(["check", store.name, "--repair"]) == 0
    assert "repaired  leak" in capsys.readouterr().out
    mem[L.W_CLASS_HEADS + 3] = L.HEAP_START + 8  # damage
    assert main(["check", store.name]) == 1
    assert "free-list" in capsys.readouterr().out
    assert main(["check", store.name, "--repair"]) == 0
    assert main(["check", "no-such-store-here"]) == 1
