"""VectorRef: typed vectors and tables of records, free lists, and views that stay safe."""

import gc
import multiprocessing as mp
import os
import time

import numba
import numpy as np
import pytest

import sharedstore as ss
from sharedstore import _calls
from sharedstore import _layout as L
from sharedstore._kernels import heap as KH
from sharedstore.kernels import vector_append, vector_length

from . import _workers as W
from .test_structs import SCHEMAS

pytestmark = pytest.mark.usefixtures("each_backend")  # the same tests, both backends


def test_numeric_vector_like_a_list(store):
    v = store.vector("int64")
    v.extend(np.arange(10))
    v.append(10)
    assert len(v) == 11 and v[3] == 3 and v[-1] == 10 and list(v) == list(range(11))
    assert v.pop() == 10 and len(v) == 10
    v[3] = 7
    v[5:7] = [50, 60]
    assert v[2:8].tolist() == [2, 7, 4, 50, 60, 7]
    assert v.view().tolist() == [0, 1, 2, 7, 4, 50, 60, 7, 8, 9]
    v.resize(12)
    assert v[-1] == 0 and len(v) == 12
    v.clear()
    assert len(v) == 0
    with pytest.raises(IndexError):
        v[0]
    with pytest.raises(IndexError):
        v.pop()
    with pytest.raises(ValueError):
        v.resize(-1)


def test_big_extend_and_dtype_roundtrip(store):
    v = store.vector(np.float32)
    data = np.random.default_rng(0).random(1_000_000).astype(np.float32)
    v.extend(data)
    assert np.array_equal(v.view(), data)
    again = store.ref(v.id)
    assert again.dtype == np.float32 and len(again) == 1_000_000
    assert store.vector(np.dtype("<c16")).dtype == np.complex128
    with pytest.raises(TypeError):
        store.vector(object)
    assert isinstance(store.vector(None), ss.ListRef)


def test_table_of_records(store):
    P = ss.load_schema(SCHEMAS / "particles.toml")["Particle"]
    t = store.vector(P)
    store["particles"] = t
    t.append({"mass": 1.0, "name": "a", "alive": True})
    t.extend([{"mass": 2.0, "name": "b"}, {"mass": 3.0, "pos": [1, 2, 3]}])
    k = t.insert({"mass": 4.0, "name": "d"})
    assert k == 3
    t.remove(1)
    assert t.free_slots() == [1] and len(t) == 4 and t[1]["mass"] == 0
    assert t.insert({"mass": 5.0}) == 1 and t.free_slots() == []
    with pytest.raises(IndexError):
        t.remove(99)
    view = store["particles"].view()
    assert view["mass"].tolist() == [1.0, 5.0, 3.0, 4.0] and view["mass"].sum() == 13.0
    assert view[view["alive"]]["mass"].tolist() == [1.0]
    assert store["particles"].struct == P and store["particles"].dtype == P.dtype
    arr = np.zeros(2, dtype=P.dtype)
    arr["mass"] = [6, 7]
    t.extend(arr)
    assert t[-1]["mass"] == 7.0 and len(t) == 6


def test_table_strings_are_owned(store):
    P = ss.load_schema(SCHEMAS / "particles.toml")["Particle"]
    t = store.vector(P)
    t.extend([{"name": f"n{i}"} for i in range(10)])
    strings = store.stats()["objects"]["string"]
    t.remove(0)
    assert store.stats()["objects"]["string"] == strings - 1
    t.drop()
    assert store.stats()["objects"]["string"] == strings - 10


def test_to_pandas(store):
    pd = pytest.importorskip("pandas")
    P = ss.load_schema(SCHEMAS / "particles.toml")["Particle"]
    t = store.vector(P)
    t.extend([{"name": f"n{i}", "mass": i} for i in range(3)])
    df = t.to_pandas()
    assert isinstance(df, pd.DataFrame) and df["name"].tolist() == ["n0", "n1", "n2"]
    assert df["mass"].sum() == 3


def test_view_survives_growth_until_collected(store):
    v = store.vector("int64", capacity=8)
    v.extend(np.arange(8))
    old = v.view()
    part = old[2:5]  # a derived view keeps the block pinned too
    v.extend(np.arange(100))  # grows: the records move to a new block
    for _ in range(200):  # memory freed now would be reused by these
        store.string("y" * 64)
    assert old.tolist() == list(range(8)) and part.tolist() == [2, 3, 4]
    old[0] = 99  # writes go to the old block: the vector does not see them
    assert v[0] == 0 and len(v.view()) == 108
    del old
    gc.collect()
    assert part.tolist() == [2, 3, 4]
    before = store.stats()["used"]
    del part
    gc.collect()
    assert store.stats()["used"] < before  # the old block is freed once no view reaches it


def test_view_of_other_process_survives_growth(store):
    """A view held here stays valid while a second process grows the vector and churns memory."""
    v = store.vector("int64", capacity=1000)
    v.extend(np.arange(1000))
    ready, done = store.integer(0), store.integer(0)
    view = v.view()
    p = mp.get_context("spawn").Process(target=W.grow_and_churn,
                                        args=(store.name, v.id, ready.id, done.id))
    p.start()
    ready.set(1)
    deadline = time.monotonic() + 60
    while done.get() == 0 and time.monotonic() < deadline:
        assert view[999] == 999
        time.sleep(0.001)
    p.join(60)
    assert p.exitcode == 0 and done.get() == 1
    assert view.tolist() == list(range(1000))  # the old block was never reused
    assert len(v) == 11_000 and v[10_999] == 7


def test_dropped_vector_keeps_viewed_memory(store):
    v = store.vector("float64")
    v.extend(np.ones(100))
    view = v.view()
    v.drop()
    for _ in range(100):
        store.string("z" * 800)
    assert view.sum() == 100.0
    with pytest.raises(ss.UseAfterFreeError):
        len(v)


@pytest.mark.parametrize("batch", [1, 500, 0])  # 0: batches of 1, 500 and 170 at once
def test_concurrent_appends_lose_nothing(store, batch):
    # batches of 500 records (12 KB) copy outside the vector's lock; single ones under it
    dt = np.dtype([("a", "<i8"), ("b", "<i8"), ("c", "<f8")])
    v = store.vector(dt)
    n = 1500 if batch == 1 else 4000
    batches = [batch] * 3 if batch else [1, 500, 170]
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=W.append_records, args=(store, v.id, k * n, n, batches[k]))
             for k in range(2)]
    for p in procs:
        p.start()
    W.append_records(store, v.id, 2 * n, n, batches[2])
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    arr = v.to_numpy()
    assert len(arr) == 3 * n
    assert sorted(arr["a"].tolist()) == list(range(3 * n))  # nothing lost, nothing twice
    assert (arr["b"] == -arr["a"]).all() and (arr["c"] == arr["a"] * 0.5).all()  # none torn


@numba.njit(nogil=True)
def _njit_append(mem, token, vid, n):
    out = np.empty(1, dtype=np.float64)
    for i in range(n):
        out[0] = i * 0.5
        r = vector_append(mem, token, vid, out)
        if r < 0:
            return r
    return vector_length(mem, vid)


@pytest.mark.slow  # compiles the user's @njit function (no cache): seconds
def test_njit_append_and_view(store):
    v = store.vector("float64")
    store.reserve(1 << 20)
    assert _njit_append(store.mem, store.token, v.id, 1000) == 1000
    assert v.view().sum() == sum(i * 0.5 for i in range(1000))


def test_fixed_array(store):
    a = store.array((100, 3), "float32")
    a.view()[:] = 1
    assert a.shape == (100, 3) and a.view().sum() == 300 and a[5].tolist() == [1, 1, 1]
    a[5, 1] = 7
    store["a"] = a
    b = store["a"]
    assert isinstance(b, ss.ArrayRef) and b.shape == (100, 3) and b[5, 1] == 7
    with pytest.raises(TypeError, match="fixed shape"):
        a.append(1)
    view = a.view()
    a.drop()
    assert view.sum() == 306  # a view keeps the memory it shows
    with pytest.raises(ss.UseAfterFreeError):
        a.view()


def test_list_of_any_values(store):
    objs = store.vector()
    s = store.string("x")
    objs.append(s)
    objs.append({"any": 1})
    objs.extend([1, 2.5, "s", None])
    assert len(objs) == 6 and objs[0].get() == "x" and objs[1] == {"any": 1} and objs[-1] is None
    assert objs == [s, {"any": 1}, 1, 2.5, "s", None] and objs[2:4] == [1, 2.5]
    objs.insert(1, "ins")
    assert objs[1] == "ins" and objs[2] == {"any": 1}
    del objs[1]
    assert objs.pop() is None and objs.pop(0) == s and len(objs) == 4
    objs[0] = 5
    assert list(objs) == [5, 1, 2.5, "s"]
    with pytest.raises(IndexError):
        objs[10]
    again = store.ref(objs.id)
    assert isinstance(again, ss.ListRef) and again == [5, 1, 2.5, "s"]
    objs.clear()
    assert len(objs) == 0
    objs.append(s)
    objs.drop(recursive=True)
    with pytest.raises(ss.UseAfterFreeError):
        s.get()


def test_list_concurrent_appends(store):
    lst = store.vector()
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=W.list_appender, args=(store, lst.id, f"p{k}", 500))
             for k in range(2)]
    for p in procs:
        p.start()
    W.list_appender(store, lst.id, "main", 500)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    items = list(lst)
    assert len(items) == 1500 and len(set(items)) == 1500
    for label in ("p0", "p1", "main"):  # each writer's items are in its order
        mine = [int(x.split("-")[1]) for x in items if x.startswith(label + "-")]
        assert mine == list(range(500))


def _growth_cost(store, v) -> int:
    before = store.stats()["used"]
    v.extend(np.arange(100))  # grows: the old block is retired, and freed unless pinned
    return store.stats()["used"] - before


def test_exiting_process_releases_its_pins(store):
    import subprocess
    import sys

    control = store.vector("int64", capacity=8)
    control.extend(np.arange(8))
    v = store.vector("int64", capacity=8)
    v.extend(np.arange(8))
    pinned = store.vector("int64", capacity=8)
    pinned.extend(np.arange(8))
    code = "import tests._workers as W, sys; W.view_then_exit(sys.argv[1], int(sys.argv[2]), True)"
    out = subprocess.run([sys.executable, "-c", code, store.name, str(v.id)], capture_output=True,
                         text=True, timeout=120, cwd=str(SCHEMAS.parent))
    assert out.returncode == 0, out.stderr
    keep = pinned.view()
    assert _growth_cost(store, v) == _growth_cost(store, control)  # its pin was released
    assert _growth_cost(store, pinned) > _growth_cost(store, store.vector("int64"))  # still held
    assert keep.tolist() == list(range(8))


def test_exit_with_a_view_of_a_closed_store_is_quiet(store):
    import subprocess
    import sys

    v = store.vector("int64", capacity=8)
    v.extend(np.arange(8))
    control = store.vector("int64", capacity=8)
    control.extend(np.arange(8))
    code = ("import sharedstore as ss, sys; s = ss.attach(sys.argv[1]); "
            "keep = s.ref(int(sys.argv[2])).view(); s.close()")
    out = subprocess.run([sys.executable, "-c", code, store.name, str(v.id)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stderr == "", out.stderr  # no error from a finalizer
    assert _growth_cost(store, v) == _growth_cost(store, control)  # and the pin was released


def test_forked_child_does_not_release_parent_pin(store):
    v = store.vector("int64", capacity=8)
    v.extend(np.arange(8))
    holder = [v.view()]
    p = mp.get_context("fork").Process(target=W.drop_inherited_view, args=(holder,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    v.extend(np.arange(100))  # grows and retires the block the parent's view still shows
    for _ in range(300):
        store.string("q" * 64)
    assert holder[0].tolist() == list(range(8))  # still pinned by the parent: not reused


def test_forked_child_keeps_its_own_pin_on_a_block_it_inherited_a_view_of(store):
    """The inherited view's release must not take the child's own pin of the same block."""
    v = store.vector("int64", capacity=8)
    v.extend(np.arange(8))
    holder = [v.view()]
    ctx = mp.get_context("fork")
    released = ctx.Event()
    p = ctx.Process(target=W.own_view_outlives_inherited, args=(holder, v, released))
    p.start()
    holder.clear()  # the parent's pin goes
    released.set()
    p.join(60)
    assert p.exitcode == 0


@pytest.mark.parametrize("how", ["os._exit", "SIGKILL"])
def test_pins_of_a_process_that_dies_with_views_are_released(store, how):
    """A worker that leaves by os._exit (as multiprocessing workers do) or is killed while it
    holds views: reaping its process-table entry releases its pins, so the old blocks are freed."""
    v = store.vector("int64", capacity=8)
    v.extend(np.arange(8))
    ready = store.integer(0)
    p = mp.get_context("fork").Process(target=W.view_then_die, args=(store.name, v.id, ready.id,
                                                                     how == "SIGKILL"))
    p.start()
    p.join(60)
    assert ready.get() == 2
    v.extend(np.arange(1000))  # grows: the worker's view pinned the old block
    r = store.check()
    assert r.clean and r.stats["pinned_blocks"] == 0, str(r)  # reaped: pins released, freed
    assert store.stats()["workers"] == 1


def test_close_with_views_keeps_them_valid(name):
    """Closing every handle of the process while a view lives keeps the process registered
    (the view's block stays pinned) until the view goes; then it detaches."""
    s = ss.create(name)
    try:
        v = s.vector("int64", capacity=8)
        v.extend(np.arange(8))
        view = v.view()
        vid = v.id
        del v
        s.close()
        with ss.attach(name) as other:
            assert other._att is s._att  # (the same mapping: the view kept it)
            assert [w["pid"] for w in other.workers()] == [os.getpid()]
        assert s._att.handles == 0 and not s._att.detached
        c = mp.get_context("spawn")
        p = c.Process(target=W.grow_vector_and_churn, args=(name, vid))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        assert view.tolist() == list(range(8))  # the old block was not freed under the view
        del view
        gc.collect()
        assert s._att.detached  # the last view went: the process left the table
        with ss.attach(name) as other:
            assert other._att is not s._att
            assert other.check().clean
    finally:
        ss.unlink(name)


def _header(store, v):
    """The word index of vector ``v``'s header in ``store.mem``."""
    e = KH.handle_resolve(store.mem, v.id, L.KIND_VECTOR)
    return int(store.mem[e + L.H_VALUE]) // 8 + 1


def _dead_token(store):
    """The lock token of a process that attached to ``store`` and died."""
    ours, theirs = mp.Pipe()
    p = mp.get_context("fork").Process(target=W.attach_and_vanish, args=(store.name, theirs))
    p.start()
    assert ours.poll(60)
    token = ours.recv()
    p.join(60)
    return token


def test_insert_killed_mid_copy_leaves_its_free_slot_zeroed(store):
    """A process killed while it copied a record into a free slot (holding the lock): the
    writer that takes the lock over zeroes the slot again, and it stays on the free list."""
    dt = np.dtype([("a", "<i8"), ("b", "<f8")])
    v = store.vector(dt)
    v.extend(np.ones(10, dtype=dt))
    v.remove(4)
    vw = _header(store, v)
    at = int(store.mem[vw + L.VH_DATA]) + 8 + L.D_RECORDS + 4 * dt.itemsize
    store.mem.view(np.uint8)[at:at + 8] = 0xAB  # half the record, then the kill
    store.mem[vw + L.VH_WRITING] = 5
    store.mem[_calls.lock_word(store._att, v.id)] = _dead_token(store)
    v.remove(7)  # takes the lock over, repairs, removes
    assert v.to_numpy()[4].tolist() == (0, 0.0) and sorted(v.free_slots()) == [4, 7]
    assert int(store.mem[vw + L.VH_WRITING]) == 0 and store.check().clean
    assert v.insert((5, 5.0)) == 7 and v.insert((6, 6.0)) == 4
    assert v.to_numpy()["a"].tolist() == [1, 1, 1, 1, 6, 1, 1, 5, 1, 1]


def test_remove_killed_mid_zeroing_is_finished_by_the_next_reader(store):
    """A process killed while it zeroed a removed record (holding the lock, the version odd):
    a reader waits on the lock, takes it over and finishes the remove: the slot is zero and on
    the free list, the version even."""
    dt = np.dtype([("a", "<i8"), ("b", "<f8")])
    v = store.vector(dt)
    v.extend(np.ones(10, dtype=dt))
    v.remove(1)  # (the free list exists, with room: a remove makes room before it zeroes)
    vw = _header(store, v)
    at = int(store.mem[vw + L.VH_DATA]) + 8 + L.D_RECORDS + 4 * dt.itemsize
    store.mem.view(np.uint8)[at:at + 8] = 0  # half the record, then the kill
    store.mem[vw + L.VH_WRITING] = 5
    store.mem[vw + L.VH_VERSION] += 1
    store.mem[_calls.lock_word(store._att, v.id)] = _dead_token(store)
    assert v[4].tolist() == (0, 0.0) and sorted(v.free_slots()) == [1, 4]
    assert int(store.mem[vw + L.VH_WRITING]) == 0 and int(store.mem[vw + L.VH_VERSION]) % 2 == 0
    assert store.check().clean
    assert v.insert((7, 7.0)) == 4


def test_write_in_place_killed_mid_chunk_is_rolled_back(store):
    """A process killed while it overwrote a chunk (its old records in the undo block): the
    writer that takes the lock over copies them back; check() flags an undo record out of
    bounds."""
    dt = np.dtype([("a", "<i8"), ("b", "<f8")])
    v = store.vector(dt)
    v.extend(np.ones(10, dtype=dt))
    v[0] = (2, 2.0)  # (the first write in place makes the undo block)
    vw = _header(store, v)
    u = int(store.mem[vw + L.VH_UNDO])
    assert u != 0 and int(store.mem[vw + L.VH_UNDO_AT]) == 0
    data = int(store.mem[vw + L.VH_DATA]) + 8 + L.D_RECORDS
    buf = store.mem.view(np.uint8)
    buf[u + 8:u + 8 + 3 * dt.itemsize] = buf[data + 5 * dt.itemsize:data + 8 * dt.itemsize]
    store.mem[vw + L.VH_UNDO_N] = 3
    store.mem[vw + L.VH_UNDO_AT] = 6  # slots 5 .. 7 logged, then half overwritten and killed
    buf[data + 5 * dt.itemsize:data + 6 * dt.itemsize + 8] = 0xAB
    store.mem[vw + L.VH_VERSION] += 1
    store.mem[_calls.lock_word(store._att, v.id)] = _dead_token(store)
    v[9] = (3, 3.0)  # takes the lock over, rolls the chunk back, writes
    assert v.to_numpy().tolist() == [(2, 2.0)] + [(1, 1.0)] * 8 + [(3, 3.0)]
    assert int(store.mem[vw + L.VH_UNDO_AT]) == 0 and store.check().clean
    store.mem[vw + L.VH_UNDO_N] = 5
    store.mem[vw + L.VH_UNDO_AT] = 8  # 7 .. 12: past the length
    report = store.check()
    assert not report.clean and "undo" in str(report)
    store.mem[vw + L.VH_UNDO_AT] = 0
    assert store.check().clean


def test_append_of_a_process_that_died_copying_is_reclaimed(store):
    """A process killed while it copied an append outside the lock: the next writer finds its
    slots, zeroes them, frees them (insert reuses them) and goes on."""
    dt = np.dtype([("a", "<i8"), ("b", "<f8")])
    v = store.vector(dt, capacity=64)
    v.extend(np.ones(10, dtype=dt))
    dead = _dead_token(store)
    vw = _header(store, v)
    records = store.mem.view(np.uint8)
    at = int(store.mem[vw + L.VH_DATA]) + 8 + L.D_RECORDS + 10 * dt.itemsize
    records[at:at + 5 * dt.itemsize] = 0xAB  # half-copied records of the dead appender
    store.mem[vw + L.VH_APPEND_END] = 15
    store.mem[vw + L.VH_APPENDER] = dead
    v.append((7, 7.0))  # waits for the dead appender, reclaims, appends
    assert len(v) == 16 and int(store.mem[vw + L.VH_APPENDER]) == 0
    arr = v.to_numpy()
    assert (arr[10:15]["a"] == 0).all() and (arr[10:15]["b"] == 0).all() and arr[15]["a"] == 7
    assert sorted(v.free_slots()) == [10, 11, 12, 13, 14]
    assert v.insert((3, 3.0)) in range(10, 15) and store.check().clean
    v.extend(np.ones(100, dtype=dt))  # growth after a reclaim
    assert len(v) == 116 and store.check().clean


def test_append_waits_for_a_live_appender_then_times_out(store):
    v = store.vector("int64")
    v.extend(np.arange(4))
    vw = _header(store, v)
    store.mem[vw + L.VH_APPEND_END] = 6
    store.mem[vw + L.VH_APPENDER] = store.token  # a copy of this very (live) process
    store.lock_timeout = 0.3
    try:
        with pytest.raises(ss.LockTimeoutError, match="appending"):
            v.append(5)
        with pytest.raises(ss.LockTimeoutError, match="appending"):
            v[0] = 1  # everything that changes the vector waits too
        assert len(v) == 4 and v.to_numpy().tolist() == [0, 1, 2, 3]
    finally:
        store.mem[vw + L.VH_APPENDER] = 0
    v.append(4)
    assert v.to_numpy().tolist() == [0, 1, 2, 3, 4] and store.check().clean


def test_write_in_place_leaves_the_allocator_lock_alone(store):
    """Once a vector has its undo block, ``v[i] = x`` and ``v[a:b] = xs`` take only the vector's
    lock: they go on while another process holds the allocator lock (allocations wait)."""
    v = store.vector("int64")
    v.extend(np.arange(10))
    v[0] = 5  # (the first write in place makes the undo block)
    store.lock_timeout = 0.2
    store.mem[L.W_ALLOC_LOCK] = store.token  # the allocator busy, its owner alive
    try:
        v[1] = 7
        v[2:4] = np.array([8, 9])
        with pytest.raises(ss.LockTimeoutError):
            store.string("x")
    finally:
        store.mem[L.W_ALLOC_LOCK] = 0
    assert v.to_numpy()[:5].tolist() == [5, 7, 8, 9, 4]
    assert store.check().clean
