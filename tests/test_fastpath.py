"""The hot paths' C methods (``sharedstore._fastpath``): the same results as the
Python methods, every case they do not handle handed over to those (never wrong, never a
partial write), no reference leaked."""

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

import sharedstore as ss
from sharedstore import _fastpath
from sharedstore import _layout as L
from sharedstore._fastpath import cpython as CP
from sharedstore._fastpath import entries as PE
from sharedstore.maps import MapRef
from sharedstore.refs import IntRef, NumberRef
from sharedstore.store import Store
from sharedstore.vectors import VectorRef

from ._samples import SAMPLES, same, sample
from .conftest import backend

NATIVE_KEYS = ["k", "é€𝄞", "", b"raw\x00", b"", 0, -1, 2**63 - 1, -(2**63)]
NATIVE_VALUES = [None, True, False, 0, -7, 2**63 - 1, -(2**63), 1.5, float("inf"), -0.0,
                 "", "text", "é€𝄞" * 50, b"", b"\x00\xff" * 300, 1.5 - 2j, complex(-0.0, 0)]

SLOW_METHODS = [(MapRef, n) for n in ("_python_getitem", "_python_setitem", "_python_contains",
                                      "_python_get")]
SLOW_METHODS += [(Store, n) for n in ("_python_getitem", "_python_setitem", "_python_contains",
                                      "_python_get")]
SLOW_METHODS += [(IntRef, "_python_add"), (IntRef, "_python_get"), (NumberRef, "_python_add"),
                 (NumberRef, "_python_get"), (VectorRef, "_python_append"),
                 (VectorRef, "_python_extend")]


@pytest.fixture(autouse=True)
def c_backend():
    """This file tests the c backend: it is in place for every test where this interpreter can
    have it, also in a run that turned it off (``SHAREDSTORE_FASTPATH=0``).  (Its own
    MonkeyPatch: a test's ``monkeypatch.undo()`` must not turn it off.)"""
    if _fastpath.gates():
        yield  # (the tests that need it say so)
        return
    with pytest.MonkeyPatch.context() as mp, backend(True, mp):
        yield


@pytest.fixture
def handed(monkeypatch):
    """``handed(cls, name)``: the argument tuples ``cls.<name>`` is called with from now on
    (it still does its work)."""

    def watch(cls, name):
        seen = []
        original = getattr(cls, name)

        def spy(self, *args, **kwargs):
            seen.append(args + tuple(kwargs.items()))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, spy)
        return seen

    return watch


def test_the_c_methods_are_installed_on_cpython(store):
    """A renamed or added slot would move what the entry points read: the probe must agree
    with entries.SLOT_*, or every hot path silently becomes the Python one."""
    if sys.implementation.name != "cpython":
        pytest.skip("CPython only")
    v = store.vector("float64")
    m = store.map()
    m["a"], store["b"] = 1.0, 2.0
    assert m["a"] + store["b"] + m.get("a") + store.get("b") == 6.0
    assert "a" in m and "b" in store
    store.integer(0).add(1), store.integer(0).get(), store.number(0.0).add(1.0)
    store.number(0.0).get(), v.append(1.0), v.extend(np.zeros(3))
    for cls, names in ((MapRef, ("__getitem__", "__setitem__", "__contains__", "get")),
                       (Store, ("__getitem__", "__setitem__", "__contains__", "get")),
                       (IntRef, ("add", "get")), (NumberRef, ("add", "get")),
                       (VectorRef, ("append", "extend"))):
        for name in names:
            assert type(cls.__dict__[name]).__name__ == "method_descriptor", (cls, name)
    assert CP.slot_offset(VectorRef, "_element") == PE.SLOT_ELEMENT
    assert CP.slot_offset(VectorRef, "_dtype") == PE.SLOT_DTYPE
    assert CP.array_layout_ok()  # numpy's array layout is where entries.A_* reads it
    assert CP.complex_layout_ok()  # a complex's two doubles are where entries.CPLX_VALUE reads
    assert ss.fastpath().backend == "c" and not ss.fastpath().missing
    assert str(inspect.signature(MapRef.get)) == "(self, /, key, default=None)"
    assert "default" in MapRef.get.__doc__


def test_native_keys_and_values_take_the_fast_path(store, handed):
    m = store.map()
    i, n, vec = store.integer(1), store.number(0.5), store.vector("int64")
    seen = [handed(cls, name) for cls, name in SLOW_METHODS]
    for k in NATIVE_KEYS:
        for v in NATIVE_VALUES:
            m[k] = v
            got = m[k]
            assert type(got) is type(v) and got == v
            assert m.get(k) == v and k in m
            store[k] = v
            assert store[k] == v and store.get(k, 1) == v and k in store
    assert "absent" not in m and m.get("absent") is None and m.get(12345, 7) == 7
    assert "absent" not in store and store.get(12345, 7) == 7
    assert i.add() == 2 and i.add(3) == 5 and i.get() == 5 and n.add(1) == 1.5
    assert n.get() == 1.5
    vec.extend(np.array([0]))
    vec.append(7)  # (the first append asks the Python method what the vector holds ...)
    vec.append(8)
    assert vec.view().tolist() == [0, 7, 8]
    # ... and appends it: only that first append was handed over
    assert [s for s in seen if s] == [[(7,)]]


def test_the_kinds_marked_c_take_the_fast_path(store, handed):
    """Every value kind whose row of ``_layout.VALUE_KINDS`` says ``c`` is written and read
    by the C methods alone; every other kind is handed to the Python methods."""
    m = store.map()
    set_seen = handed(MapRef, "_python_setitem")
    get_seen = handed(MapRef, "_python_getitem")
    for kind in L.VALUE_KINDS:
        for v in SAMPLES[kind.tag]:
            v = sample(store, v)
            if type(v) is str and "\udcff" in v:
                continue  # (text that is not strict UTF-8: test_other_values_go_the_python_way)
            set_seen.clear()
            get_seen.clear()
            m["k"] = v
            assert same(m["k"], v)
            c = kind.c and (kind.tag != L.V_COMPLEX or CP.complex_layout_ok())
            assert (not set_seen and not get_seen) == c, (kind.name, v)


def test_a_missing_key_raises_key_error_through_the_python_method(store, handed):
    seen = handed(MapRef, "_python_getitem")
    m = store.map()
    with pytest.raises(KeyError, match="nope"):
        m["nope"]
    with pytest.raises(KeyError):
        store["nope"]
    assert seen == [("nope",)]


class StrKey(str):
    pass


@pytest.mark.parametrize("key", [True, StrKey("k"), 2**63, "lone \ud800 surrogate",
                                 bytearray(b"k"), 1.5, None])
def test_other_keys_go_the_python_way(store, key, handed):
    m = store.map()
    seen = handed(MapRef, "_python_get")
    try:
        assert m.get(key) is None
    except TypeError:  # (not a key type: the Python method says so)
        assert isinstance(key, (float, type(None))) or key == 2**63
    assert seen == [(key,)]
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
                                   StrKey("sub"), np.float64(2.5), np.complex128(3 + 4j)])
def test_other_values_go_the_python_way(store, value, monkeypatch, handed):
    m = store.map()
    skipped = []
    monkeypatch.setattr(MapRef, "_python_setitem", lambda self, k, v: skipped.append(k))
    m["k"] = value
    assert skipped == ["k"] and "k" not in m  # handed over having written nothing
    monkeypatch.undo()
    m["k"] = value
    seen = handed(MapRef, "_python_getitem")
    got = m["k"]
    if isinstance(value, np.ndarray):
        assert np.array_equal(got, value)
    else:
        assert got == value
    if type(value) is str:  # stored text that is not strict UTF-8 is decoded by the Python path
        assert seen == [("k",)]


def test_refs_and_pickles_read_back_through_the_python_path(store, handed):
    m = store.map()
    s = store.string("hi")
    m["s"], m["obj"] = s, {"n": [1]}
    seen = handed(MapRef, "_python_getitem")
    assert m["s"] == s and m["obj"] == {"n": [1]}
    assert seen == [("s",), ("obj",)]


def test_arguments_the_c_methods_do_not_take(store):
    m = store.map()
    m["k"] = 1.0
    assert m.get("k", default=3) == 1.0 and m.get(key="zz", default=3) == 3
    assert store.get("zz", default=4) == 4
    with pytest.raises(TypeError):
        m.get()
    with pytest.raises(TypeError):
        m.get("k", 1, 2)
    with pytest.raises(TypeError):
        m.__getitem__("k", "extra")
    i = store.integer(0)
    assert i.add(x=2) == 2
    with pytest.raises(TypeError):
        i.add(1, 2)
    with pytest.raises(TypeError):
        i.get(1)
    with pytest.raises(TypeError):
        MapRef.get(store.integer(0), "k")  # the descriptor checks the class of self


def test_a_ref_without_its_slots_fails_cleanly(store):
    bare = MapRef.__new__(MapRef)  # (no store: the C method must not read anything)
    with pytest.raises(AttributeError):
        bare["k"]
    with pytest.raises(AttributeError):
        bare["k"] = 1


class _Moved:
    __slots__ = ("_a", "_cx", "_id")  # _cx is not where the entry points read it

    def get(self, key, default=None):
        return ("python", key, default)


def test_a_class_whose_slots_are_elsewhere_keeps_its_python_method(monkeypatch):
    monkeypatch.setattr(_fastpath, "METHODS", (_fastpath.Method("x._Moved", "get", "map_get"),))
    monkeypatch.setattr(_fastpath, "_class", lambda path: _Moved)
    try:
        with pytest.warns(RuntimeWarning, match="fast path is off for 1 methods"):
            info = _fastpath.choose()
        assert info.backend == "c" and info.methods == ()
        assert "_Moved.get" in info.missing and "slots" in info.missing["_Moved.get"]
        assert _Moved().get("k") == ("python", "k", None)
    finally:
        monkeypatch.undo()
        _fastpath.choose()
    assert ss.fastpath().backend == "c" and len(ss.fastpath().methods) == len(_fastpath.METHODS)


def test_no_reference_leaks(store):
    m = store.map()
    m["none"], m["t"], m["f"], m["float"], m["text"] = None, True, False, 1.5, "x" * 40
    m["obj"] = [1]
    key, default = "float", object()
    objs = (None, True, False, key, default)
    before = [sys.getrefcount(o) for o in objs]
    for _ in range(2000):
        m["none"], m["t"], m["f"], m[key], m["absent2"] = None, True, False, m[key], m["none"]
        assert m.get("absent") is None and "absent" not in m and m.get("x", default) is default
        assert "float" in m and m.get(key, default) == 1.5
        m["obj"]  # handed over
        m["obj"] = [2]
        try:
            m["absent"]
        except KeyError:
            pass
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
    store.close()
    with pytest.raises(ss.StoreClosedError):
        m["a"]
    with pytest.raises(ss.StoreClosedError):
        m["a"] = 2.0
    with pytest.raises(ss.StoreClosedError):
        assert "a" in m
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
    with pytest.raises(TypeError, match="int8"):  # (the value named, as extend names it)
        small.append(300)
    floats.append(2**60)  # ints go into float vectors, as numpy converts them
    floats.append(np.float32(0.5))
    assert floats.view().tolist() == [float(2**60), 0.5] and len(ints) == len(small) == 0
    records = store.vector(np.dtype([("a", "<i4"), ("b", "<f8")]))
    assert PE.element_code(records.dtype) == 0
    records.append((1, 2.0))
    assert records[0].tolist() == (1, 2.0)  # (an np.void, as numpy reads a record)


def test_vector_append_grows_and_keeps_views(store):
    v = store.vector("float64")
    first = None
    for i in range(5000):
        v.append(float(i))
        if i == 10:
            first = v.view()
    assert v.view().tolist() == [float(i) for i in range(5000)]
    assert first.tolist() == [float(i) for i in range(11)]  # the old block, still pinned


def test_vector_extend_takes_arrays_of_its_dtype_in_c(store, handed):
    """An exact ndarray, 1-d, C-contiguous, of the vector's own dtype object is copied by the C
    method; every other argument is handed to _python_extend, with the same result."""
    slow = handed(VectorRef, "_python_extend")
    v = store.vector("float64")
    v.extend(np.arange(3.0))
    v.extend(np.arange(5000.0))  # (big: copied outside the vector's lock)
    v.extend(np.zeros(0))
    t = store.vector(np.dtype([("a", "<i4"), ("b", "<f8")]))
    rows = np.zeros(4, dtype=t.dtype)
    rows["a"] = [1, 2, 3, 4]
    t.extend(rows)
    assert slow == []
    expected = list(range(3)) + list(range(5000))
    handed_over = [np.arange(10.0)[::2], np.arange(6.0).reshape(2, 3)[:, 0],
                   np.arange(4, dtype=np.float32), np.arange(4), [1.0, 2.0], (3.0,),
                   np.ma.masked_array([7.0, 8.0]), np.arange(4.0).astype(">f8")]
    for values in handed_over:
        v.extend(values)
        expected += [float(x) for x in np.asarray(values)]
    assert len(slow) == len(handed_over)
    assert v.view().tolist() == expected
    with pytest.raises(ValueError):
        v.extend(np.zeros((2, 2)))  # a 2-d array: refused by the Python method
    same = np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")])  # equal dtype, another object
    same["a"] = [5, 6]
    t.extend(same)
    assert t.view()["a"].tolist() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(TypeError):
        v.extend(np.arange(3.0), 1)
    n = len(v)
    v.extend(values=np.arange(3.0))  # a keyword: handed to the Python method, which takes it
    assert len(v) == n + 3


def test_vector_extend_in_c_fails_cleanly(name):
    store = ss.create(name)
    v, dropped = store.vector("float64"), store.vector("float64")
    v.extend(np.arange(3.0))
    dropped.extend(np.arange(2.0))
    dropped.drop()
    with pytest.raises(ss.UseAfterFreeError):
        dropped.extend(np.arange(3.0))
    assert len(v) == 3
    big = np.arange(200_000.0)
    for _ in range(20):  # past what the store has committed: the Python method commits more
        v.extend(big)
    assert len(v) == 3 + 20 * len(big) and v.view()[-1] == big[-1]
    store.close()
    with pytest.raises(ss.StoreClosedError):
        v.extend(np.arange(3.0))


def _forked_child_writes(store, r):
    ok = store._context.ctx[PE.C_TOKEN] == store.token
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
    with pytest.raises(ss.InvalidHandleError):
        IntRef(store, s.id)
    with pytest.raises(ss.InvalidHandleError):
        ss.MapRef(store, i.id)
    fake = IntRef._trusted(store, s.id)  # a handle of the wrong kind: the kernels refuse it
    with pytest.raises(ss.InvalidHandleError):
        fake.add(1)
    with pytest.raises(ss.InvalidHandleError):
        fake.get()
    with pytest.raises(ss.InvalidHandleError):
        MapRef._trusted(store, i.id)["k"]


def _backend_in_subprocess(value: str) -> subprocess.CompletedProcess:
    code = ("import sharedstore as ss, sharedstore.maps as M; f = ss.fastpath(); "
            "print(f.backend, type(M.MapRef.__dict__['__getitem__']).__name__)")
    env = dict(os.environ, SHAREDSTORE_FASTPATH=value)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(("value", "backend"), [("0", "python function"), ("1", "c _StandIn"),
                                            ("auto", "c _StandIn")])
def test_the_backend_is_chosen_once_at_import(value, backend):
    out = _backend_in_subprocess(value)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == backend.split()


def test_a_bad_setting_is_refused_at_import():
    out = _backend_in_subprocess("yes")
    assert out.returncode != 0 and "SHAREDSTORE_FASTPATH='yes': use auto, 0 or 1" in out.stderr


def test_the_gates_are_explicit(monkeypatch):
    assert _fastpath.gates() == ""  # this CPython qualifies
    monkeypatch.setattr(_fastpath, "PY_MAX", (3, 9))
    assert "outside the versions" in _fastpath.gates()
    monkeypatch.setattr(_fastpath, "free_threaded", lambda: True)
    monkeypatch.setattr(_fastpath, "PY_MAX", (3, 99))
    assert "free-threaded" in _fastpath.gates()
    monkeypatch.setenv("SHAREDSTORE_FASTPATH", "1")
    with pytest.raises(ImportError, match="free-threaded"):
        _fastpath.choose()
    monkeypatch.undo()
    assert _fastpath.choose().backend == "c"
