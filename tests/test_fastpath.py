"""The builtin fast paths (``_pycall``/``_kernels/pyentry.py``): the same results as the Python
paths, every case they do not handle handed over (never wrong), no reference leaked."""

import os
import sys

import numpy as np
import pytest

import sharedstore as ss
from sharedstore import _layout as L
from sharedstore._kernels import pyentry as PE
from sharedstore._pycall import MISSING, SLOW

NATIVE_KEYS = ["k", "é€𝄞", "", b"raw\x00", b"", 0, -1, 2**63 - 1, -(2**63)]
NATIVE_VALUES = [None, True, False, 0, -7, 2**63 - 1, -(2**63), 1.5, float("inf"), -0.0,
                 "", "text", "é€𝄞" * 50, b"", b"\x00\xff" * 300]


def test_native_keys_and_values_take_the_fast_path(store):
    m = store.map()
    calls = store._calls
    for k in NATIVE_KEYS:
        for v in NATIVE_VALUES:
            assert calls.map_set(m.id, k, v) is None
            got = calls.map_get(m.id, k)
            assert type(got) is type(v) and got == v
            assert m[k] == v and type(m[k]) is type(v)
    assert calls.map_get(m.id, "absent") is MISSING
    assert calls.map_get(m.id, 12345) is MISSING


class StrKey(str):
    pass


@pytest.mark.parametrize("key", [True, StrKey("k"), 2**63, "lone \ud800 surrogate",
                                 bytearray(b"k"), 1.5, None])
def test_other_keys_go_the_python_way(store, key):
    m = store.map()
    assert store._calls.map_get(m.id, key) is SLOW
    if isinstance(key, (float, type(None))):
        with pytest.raises(TypeError):
            m[key] = 1
        assert key not in m
        return
    if key == 2**63:
        with pytest.raises(TypeError):
            m[key] = 1
        return
    m[key] = "v"
    assert m[key] == "v" and key in m and m.get(key) == "v"


@pytest.mark.parametrize("value", [2**64, [1, 2], {"a": 1}, np.arange(3), "bad \udcff text",
                                   StrKey("sub"), np.float64(2.5), 3 + 4j])
def test_other_values_go_the_python_way(store, value):
    m = store.map()
    assert store._calls.map_set(m.id, "k", value) is SLOW
    assert "k" not in m  # SLOW means nothing was written
    m["k"] = value
    got = m["k"]
    if isinstance(value, np.ndarray):
        assert np.array_equal(got, value)
    else:
        assert got == value
    if type(value) is str:  # stored text that is not strict UTF-8 is decoded by the Python path
        assert store._calls.map_get(m.id, "k") is SLOW


def test_refs_and_pickles_read_back_through_the_python_path(store):
    m = store.map()
    s = store.string("hi")
    m["s"], m["obj"] = s, {"n": [1]}
    assert store._calls.map_get(m.id, "s") is SLOW and m["s"] == s
    assert m["obj"] == {"n": [1]}


def test_no_reference_leaks(store):
    m = store.map()
    m["none"], m["t"], m["f"], m["float"], m["text"] = None, True, False, 1.5, "x" * 40
    m["obj"] = [1]
    key = "float"
    objs = (None, True, False, SLOW, MISSING, key)
    before = [sys.getrefcount(o) for o in objs]
    for _ in range(2000):
        m["none"], m["t"], m["f"], m[key], m["absent2"] = None, True, False, m[key], m["none"]
        assert m.get("absent") is None and "absent" not in m
        m["obj"]  # SLOW, then the Python path
        m["obj"] = [2]
        del m["absent2"]
    # a reference leaked (or freed twice) per call would move a count by thousands; the
    # interpreter's own bookkeeping moves None's by a few
    assert all(abs(sys.getrefcount(o) - b) < 100 for o, b in zip(objs, before))


def test_closed_store_and_dropped_map(name):
    store = ss.create(name)
    m = store.map()
    m["a"] = 1.0
    dropped = store.map()
    dropped.drop()
    with pytest.raises(ss.UseAfterFreeError):
        dropped["a"]
    with pytest.raises(ss.UseAfterFreeError):
        dropped["a"] = 1
    calls = store._calls
    store.close()
    assert calls.map_get(m.id, "a") is SLOW and calls.map_set(m.id, "a", 2.0) is SLOW
    with pytest.raises(ss.StoreClosedError):
        m["a"]
    with pytest.raises(ss.StoreClosedError):
        m["a"] = 2.0
    with pytest.raises(ss.StoreClosedError):
        store["a"]


def test_numbers(store):
    i, n = store.integer(5), store.number(0.5)
    assert i.add(2) == 7 and i.add(-10) == -3 and i.get() == -3
    assert i.add(np.int32(3)) == 0  # a NumPy int: the Python path
    with pytest.raises(TypeError):
        i.add(1.5)
    assert n.add(1) == 1.5 and n.add(0.25) == 1.75 and n.add(np.float32(0.25)) == 2.0
    assert n.get() == 2.0
    with pytest.raises(TypeError):
        n.add("1")
    i.set(2**63 - 1)
    assert i.add(1) == -(2**63)  # wraps, as documented
    n.drop()
    with pytest.raises(ss.UseAfterFreeError):
        n.add(1.0)
    with pytest.raises(ss.UseAfterFreeError):
        n.get()


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "int32", "int16", "int8",
                                   "uint64", "uint32", "uint16", "uint8", "bool"])
def test_vector_append_matches_numpy(store, dtype):
    dt = np.dtype(dtype)
    v = store.vector(dtype)
    assert PE.element_code(dt) != 0
    values = [True, False] if dt.kind == "b" else [0, 1, 2, 100]
    if dt.kind == "f":
        values += [1.5, -2.25, 1e30, float("inf")]
    elif dt.kind == "i":
        values += [-1, int(np.iinfo(dt).min), int(np.iinfo(dt).max)]
    elif dt.kind == "u":
        values += [int(np.iinfo(dt).max) if dt.itemsize < 8 else 2**63 - 1]
    for x in values:
        v.append(x)
    assert v.view().tolist() == np.array(values, dtype=dt).tolist()


def test_vector_append_refuses_what_extend_refuses(store):
    ints, small, floats = store.vector("int64"), store.vector("int8"), store.vector("float64")
    with pytest.raises(TypeError):
        ints.append(1.5)
    with pytest.raises(OverflowError):
        small.append(300)
    floats.append(2**60)  # ints go into float vectors, as numpy converts them
    floats.append(np.float32(0.5))
    assert floats.view().tolist() == [float(2**60), 0.5] and len(ints) == len(small) == 0
    records = store.vector(np.dtype([("a", "<i4"), ("b", "<f8")]))
    assert PE.element_code(records.dtype) == 0
    records.append((1, 2.0))
    assert records[0] == (1, 2.0)


def test_vector_append_grows_and_keeps_views(store):
    v = store.vector("float64")
    first = None
    for i in range(5000):
        v.append(float(i))
        if i == 10:
            first = v.view()
    assert v.view().tolist() == [float(i) for i in range(5000)]
    assert first.tolist() == [float(i) for i in range(11)]  # the old block, still pinned


def _forked_child_writes(store, r):
    ok = store._calls.ctx[PE.C_TOKEN] == store.token
    store["child"] = 2.5  # the fast path, with the child's own lock token
    store["counter"].add(1)
    os.write(r, b"1" if ok else b"0")


def test_forked_child_uses_its_own_token(store):
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    store["counter"] = store.integer(0)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            _forked_child_writes(store, w)
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert store["child"] == 2.5 and store["counter"].get() == 1
    # the child's lock token was its own: the map's lock is free again for the parent
    store["parent"] = 1.0
    assert store["parent"] == 1.0


def test_kinds_are_checked(store):
    i = store.integer(1)
    s = store.string("x")
    assert store._calls.scalar_get(s.id, L.KIND_INT) is SLOW
    assert store._calls.int_add(s.id, 1) is SLOW
    assert store._calls.map_get(i.id, "k") is SLOW
    with pytest.raises(ss.InvalidHandleError):
        ss.MapRef(store, i.id)
