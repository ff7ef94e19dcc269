"""Attach, close and pickle as pools use them: one mapping and one process-table entry per
process however often it attaches; clear errors for a closed store, a ref of another store, and
a store created again under the same name."""

import gc
import multiprocessing as mp
import os
import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import sharedstore as ss
from sharedstore import _segment as seg

from . import _workers as W
from .conftest import unique_name


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _maps(path=None) -> int:
    """Memory mappings of this process (of the file ``path`` only, if given)."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if path is None or line.rstrip().endswith(str(path)))


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


@pytest.mark.slow  # 100,000 attaches: 2-3 s
def test_attach_per_task_reuses_the_mapping_and_entry(store):
    """100,000 ``ss.attach(name)["n"].add(1)``, never closed: the right count, one entry, and
    flat file descriptors, mappings and memory (a new entry per attach filled the table at
    1,024)."""
    store["n"] = store.integer(0)
    ss.attach(store.name)["n"].add(1)  # (anything made once per process, made)
    gc.collect()
    fds, maps, rss = _fds(), _maps(), _rss_kib()
    assert _maps(store.path) == 1
    for _ in range(100_000):
        ss.attach(store.name)["n"].add(1)
    gc.collect()
    assert store["n"].get() == 100_001
    assert [w["pid"] for w in store.workers()] == [os.getpid()]
    assert _fds() == fds and _maps(store.path) == 1
    # (the interpreter's own allocator may map an arena or two more: 1 a thousand attaches
    # would be 100; RSS likewise, where 100k mappings would be GBs)
    assert _maps() - maps <= 4 and _rss_kib() - rss < 8 << 10


def test_attach_without_a_held_store_maps_and_releases_each_time(name):
    """With no other handle in the process, each attach maps the store and garbage collection
    of its last handle unmaps it and leaves the table: nothing accumulates."""
    s = ss.create(name)
    s["n"] = s.integer(0)
    s.close()
    ss.attach(name)["n"].add(1)
    gc.collect()
    fds, maps = _fds(), _maps()
    for _ in range(2_000):
        ss.attach(name)["n"].add(1)
    gc.collect()
    assert _fds() == fds and _maps(seg.shm_path(name)) == 0 and _maps() - maps <= 4
    with ss.attach(name) as s:
        assert s["n"].get() == 2_001 and len(s.workers()) == 1


def test_handles_share_one_attachment_and_close_alone(store):
    other = ss.attach(store.name)
    assert other is not store and other._att is store._att
    m = other.map({"k": 1})
    other.close()
    with pytest.raises(ss.StoreClosedError, match="attach to it again"):
        m["k"]
    assert store.ref(m.id)["k"] == 1  # the store's other handle is untouched
    assert store._att.handles == 1 and not store._att.detached


def test_a_garbage_collected_handle_releases_the_process(name):
    s = ss.create(name)
    att = s._att
    del s
    gc.collect()
    assert att.detached  # the only handle went: the process left the table and unmapped
    with ss.attach(name) as s:
        assert s._att is not att and len(s.workers()) == 1


def test_unpickling_reuses_the_open_store(store):
    assert pickle.loads(pickle.dumps(store)) is store
    m = store.map()
    assert pickle.loads(pickle.dumps(m))._store is store


def test_pool_tasks_that_attach_each_time_leave_one_entry_per_process(store):
    store["hits"] = store.integer(0)
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        pids = list(pool.map(W.attach_and_count, [store.name] * 200))
        entries = [w["pid"] for w in store.workers()]
        # (a worker's handle is collected when its task returns: it may have left already)
        assert set(entries) <= {os.getpid(), *pids} and len(entries) == len(set(entries)) <= 3
    assert store["hits"].get() == 200


# ---------------------------------------------------------------------- bad use, clear errors
CLOSED_STORE_CALLS = {
    "getitem": lambda s: s["k"],
    "setitem": lambda s: s.__setitem__("k", 1),
    "contains": lambda s: "k" in s,
    "get": lambda s: s.get("k"),
    "delete": lambda s: s.delete("k"),
    "len": len,
    "iter": list,
    "string": lambda s: s.string("x"),
    "integer": lambda s: s.integer(1),
    "map": lambda s: s.map(),
    "vector": lambda s: s.vector("f8"),
    "array": lambda s: s.array(3),
    "ref": lambda s: s.ref(1),
    "stats": lambda s: s.stats(),
    "workers": lambda s: s.workers(),
    "check": lambda s: s.check(),
    "reserve": lambda s: s.reserve(1 << 20),
    "mem": lambda s: s.mem,
    "root": lambda s: s.root,
    "get_many": lambda s: s.get_many(["k"]),
}


@pytest.mark.parametrize("call", list(CLOSED_STORE_CALLS))
def test_a_closed_store_says_so(name, call):
    with ss.create(name) as s:
        s["k"] = 1
        s.close()
        with pytest.raises(ss.StoreClosedError, match=f"store {name!r} was closed"):
            CLOSED_STORE_CALLS[call](s)


CLOSED_REF_CALLS = {
    "map getitem": lambda s: (s.map({"k": 1}), lambda m: m["k"]),
    "map setitem": lambda s: (s.map(), lambda m: m.__setitem__("k", 2)),
    "map contains": lambda s: (s.map(), lambda m: "k" in m),
    "map get_many": lambda s: (s.map(), lambda m: m.get_many(["k"])),
    "int add": lambda s: (s.integer(0), lambda i: i.add(1)),
    "number get": lambda s: (s.number(1.0), lambda n: n.get()),
    "string get": lambda s: (s.string("x"), lambda r: r.get()),
    "vector append": lambda s: (s.vector("f8"), lambda v: v.append(1.0)),
    "vector extend": lambda s: (s.vector("f8"), lambda v: v.extend(np.ones(3))),
    "vector view": lambda s: (s.vector("f8"), lambda v: v.view()),
    "struct field": lambda s: (ss.Struct("S", {"x": "f8"}).new(s), lambda p: p["x"]),
    "list append": lambda s: (s.vector(), lambda lst: lst.append(1)),
}


@pytest.mark.parametrize("call", list(CLOSED_REF_CALLS))
def test_a_ref_of_a_closed_store_says_so(name, call):
    with ss.create(name) as s:
        ref, use = CLOSED_REF_CALLS[call](s)
        use(ref)  # (works while open; the hot paths are installed)
        s.close()
        with pytest.raises(ss.StoreClosedError):
            use(ref)


def test_a_ref_of_another_store_is_refused(store, name):
    P = ss.Struct("P", {"x": "f8", "r": "ref"})
    with ss.create(unique_name("other")) as other:
        try:
            foreign = other.string("elsewhere")
            m = store.map()
            t = store.vector(P)
            rec = P.new(store)
            for put in (lambda: m.__setitem__("f", foreign), lambda: store.vector().append(foreign),
                        lambda: m.set_many(["f"], [foreign]), lambda: rec.__setitem__("r", foreign),
                        lambda: t.append({"x": 1.0, "r": foreign})):
                with pytest.raises(ss.InvalidHandleError, match="belongs to store"):
                    put()
            assert "f" not in m and len(t) == 0 and rec["r"] is None
        finally:
            other.unlink()


def test_a_store_created_again_under_the_name_is_not_the_one_pickled(name):
    s = ss.create(name)
    m = s.map({"k": "old"})
    blob = pickle.dumps(m)
    s.close()
    ss.unlink(name)
    with ss.create(name) as again:
        again.map({"k": "new"})  # (an object with the same id, in the new store)
        with pytest.raises(ss.StoreNotFoundError, match="created again"):
            pickle.loads(blob)
        p = mp.get_context("spawn").Process(target=W.unpickle_expecting_replaced, args=(blob,))
        p.start()
        p.join(60)
        assert p.exitcode == 0


def test_a_pickled_ref_finds_the_old_store_while_this_process_still_maps_it(name):
    old = ss.create(name)
    m = old.map({"k": "old"})
    blob = pickle.dumps(m)
    ss.unlink(name)
    with ss.create(name) as again:
        assert pickle.loads(blob)["k"] == "old"  # this process still maps the store it named
        assert again._att is not old._att
    old.close()


def test_wrong_ref_classes_say_which_to_use(store):
    v, a = store.vector("f8"), store.array(4)
    with pytest.raises(ss.InvalidHandleError, match="ArrayRef"):
        ss.VectorRef(store, a.id)
    with pytest.raises(ss.InvalidHandleError, match="VectorRef"):
        ss.ArrayRef(store, v.id)
    with pytest.raises(TypeError, match="needs the Store"):
        ss.MapRef("not a store", 1)
    with pytest.raises(TypeError, match="StructProxy wraps"):
        ss.StructProxy(v)


def test_a_forked_child_uses_its_own_entry(store):
    """A child forked while the parent holds handles registers itself (never the parent's
    entry), and leaves the table when it exits."""
    counter = store.integer(0)
    p = mp.get_context("fork").Process(target=W.forked_child_checks_its_entry,
                                       args=(store, counter.id))
    p.start()
    p.join(30)
    assert p.exitcode == 0 and counter.get() == 1
    assert [w["pid"] for w in store.workers()] == [os.getpid()]
