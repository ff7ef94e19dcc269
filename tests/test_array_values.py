"""NumPy arrays as map values: read back as copies (``m[k]``) or as zero-copy, read-only views
(``m.view(k)``) whose memory stays valid after the value is replaced, in every process."""

import gc
import multiprocessing as mp
import time

import numpy as np
import pytest

import sharedstore as ss
from sharedstore import _layout as L

from . import _workers as W

pytestmark = pytest.mark.usefixtures("each_backend")  # the same tests, both backends

ARRAYS = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.array(3.5),  # 0-d
    np.zeros((0, 3)),
    np.arange(10)[::2],  # not contiguous
    np.arange(6, dtype=">i4"),  # big-endian
    np.array([True, False]),
    np.array(["ab", "c"]),
    np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "<i2"), ("b", "<f8")]),
    np.asfortranarray(np.arange(6).reshape(2, 3)),
    np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
]


@pytest.mark.parametrize("a", ARRAYS, ids=lambda a: f"{a.dtype}{a.shape}")
def test_arrays_read_back_as_copies_and_as_views(store, a):
    m = store.map()
    m["a"] = a
    got, view = m["a"], m.view("a")
    for x in (got, view):
        assert x.dtype == a.dtype and x.shape == a.shape and np.array_equal(x, a)
    assert got.flags.writeable and not view.flags.writeable
    with pytest.raises(ValueError):
        view[...] = 0
    got[...] = 0  # a copy: the stored array does not change
    assert np.array_equal(m["a"], a)
    assert store.check().clean


def test_a_view_is_zero_copy(store):
    store["big"] = np.arange(1_000_000, dtype=np.float64)
    v1, v2 = store.view("big"), store.view("big")
    assert np.shares_memory(v1, v2)  # both read the store's memory
    start = store._mem.ctypes.data
    assert start <= v1.ctypes.data < start + store.reserved
    assert v1.sum() == np.arange(1_000_000, dtype=np.float64).sum()


def test_views_survive_replace_delete_clear_and_drop(store):
    m = store.map()
    views = []
    for i, how in enumerate(["replace", "delete", "clear", "drop"]):
        m["a"] = np.full(100, i)
        views.append(m.view("a"))
        if how == "replace":
            m["a"] = np.zeros(3)
        elif how == "delete":
            del m["a"]
        elif how == "clear":
            m.clear()
        else:
            m.drop()
        for _ in range(200):  # allocate: a freed block would be reused now
            store.string("z" * 800)
    assert [v.tolist() for v in views] == [[i] * 100 for i in range(4)]
    r = store.check()
    assert r.clean and r.stats["pinned_blocks"] == 4, str(r)
    used = store.stats()["used"]
    part = views[0][10:20]  # a derived array keeps the block too
    del views
    gc.collect()
    assert store.check().stats["pinned_blocks"] == 1 and part.tolist() == [0] * 10
    del part
    gc.collect()
    assert store.check().stats["pinned_blocks"] == 0 and store.stats()["used"] < used


def test_replacing_arrays_leaks_nothing(store):
    m = store.map()
    m["a"] = np.zeros(500)
    m.view("a")  # (the first view makes this process's pin list: made before counting)
    gc.collect()
    used = store.stats()["used"]
    for i in range(500):
        m["a"] = np.full(500, float(i))
        if i % 50 == 0:
            v = m.view("a")
            assert v[0] == i
            del v
    assert store.stats()["used"] == used and m["a"][0] == 499.0
    del m["a"]
    r = store.check()
    assert r.clean and r.stats["pinned_blocks"] == 0


def test_view_errors(store):
    m = store.map()
    m["n"] = 1.5
    m["b"] = b"bytes"
    with pytest.raises(KeyError):
        m.view("missing")
    with pytest.raises(TypeError, match="not an array"):
        m.view("n")
    with pytest.raises(TypeError, match="not an array"):
        m.view("b")
    m.drop()
    with pytest.raises(ss.UseAfterFreeError):
        m.view("n")


def test_arrays_in_batches_items_and_lists(store):
    m = store.map()
    m.set_many(["p", "q"], [np.ones(2), np.arange(4).reshape(2, 2)])
    m.update({"r": np.array([7])})
    assert [x.tolist() for x in m.get_many(["p", "q", "r"])] == [[1.0, 1.0], [[0, 1], [2, 3]],
                                                                  [7]]
    assert {k: v.tolist() for k, v in m.items()} == {"p": [1.0, 1.0], "q": [[0, 1], [2, 3]],
                                                      "r": [7]}
    lst = store.vector()
    lst.append(np.arange(3))
    assert lst[0].tolist() == [0, 1, 2]
    assert store.check().clean


def test_a_view_in_one_process_survives_replacement_in_another(store):
    """The hard requirement, for map values: a second process replaces and deletes the value
    over and over while allocating, and the view taken here keeps its contents."""
    m = store.map()
    m["a"] = np.arange(1000, dtype=np.int64)
    ready, done = store.integer(0), store.integer(0)
    view = m.view("a")
    p = mp.get_context("spawn").Process(
        target=W.replace_arrays_and_churn, args=(store.name, m.id, "a", ready.id, done.id, 300))
    p.start()
    try:
        ready.set(1)
        deadline = time.monotonic() + 60
        while done.get() == 0 and time.monotonic() < deadline:
            assert view[999] == 999 and view[0] == 0
            got = m.get("a")  # copies read meanwhile are whole arrays the writer wrote
            assert got is None or (len(got) == 1000 and ((got == got[0]).all() or got[999] == 999))
            time.sleep(0.001)
    finally:
        p.join(60)
        if p.is_alive():
            p.kill()
    assert p.exitcode == 0 and done.get() == 1
    assert view.tolist() == list(range(1000))
    del view
    gc.collect()
    r = store.check()
    assert r.clean and r.stats["pinned_blocks"] == 0, str(r)


@pytest.mark.parametrize("how", ["os._exit", "SIGKILL"])
def test_pins_of_a_dead_viewer_are_released(store, how):
    m = store.map()
    m["a"] = np.arange(100)
    ready = store.integer(0)
    p = mp.get_context("fork").Process(target=W.array_view_then_die,
                                       args=(store.name, m.id, "a", ready.id, how == "SIGKILL"))
    p.start()
    p.join(60)
    assert ready.get() == 2
    m["a"] = np.zeros(1)  # retires the block the dead worker pinned
    r = store.check()
    assert r.clean and r.stats["pinned_blocks"] == 0, str(r)  # reaped: pins released, freed


def test_check_finds_and_repairs_a_damaged_array_entry(store):
    m = store.map()
    m["ok"] = np.arange(4)
    m["bad"] = np.arange(5)
    mem = store._mem
    # find the entry of "bad" and point its payload at a block that is not a data block
    for off in range(L.HEAP_START, int(mem[L.W_HEAP_TOP]), 8):
        hdr = int(mem[off // 8])
        is_array = (int(mem[off // 8 + 1]) >> 8) & 0xFF == L.V_ARRAY
        if (hdr >> 8) & 0xFF == L.TAG_ENTRY and is_array and store._mm[off + 24:off + 27] == b"bad":
            mem[off // 8 + 2] = off  # the entry itself
            break
    else:
        pytest.fail("entry not found")
    r = store.check()
    assert not r.clean
    with pytest.raises(ss.StoreCorruptError):
        m.view("bad")
    with pytest.raises(ss.StoreCorruptError):
        m["bad"]
    store.check(repair=True)
    assert store.check().clean and "bad" not in m and m["ok"].tolist() == [0, 1, 2, 3]
