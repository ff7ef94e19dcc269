"""The ref contract: every ref class, obtained every way a user gets one, does everything its
public API says, from its very first call, and ``drop()`` frees exactly what it should.

``KINDS`` makes one object of each ref class and lists its *steps*: one per public method (or
protocol: ``m[k]``, ``len``, iteration, pickling...), each a function that makes that call
*first* on the ref it is given, then checks what came back and what changed.  ``WAYS`` turns a
ref from the factory into the ref a user would hold.  The test runs every step of every kind on
a fresh object reached every way (a spawned worker receives it pickled), then drops it and
checks the store holds exactly what it held before.  A new ref class, method or way is one
entry here.  Spawned workers import this module, so it holds only module-level functions.
"""

from __future__ import annotations

import operator
import pickle
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import sharedstore as ss

POINT = ss.Struct("Point", {"x": "float64", "tag": "str[4]", "pos": "float32[2]",
                            "label": "string", "other": "ref"})


@dataclass(frozen=True)
class Kind:
    make: Callable  # store -> a new object's ref, as its factory returns it
    steps: dict  # name -> step(ref): that call first, then checks


def snapshot(store) -> tuple:
    """What drop() must give back: live objects by kind and bytes in live blocks."""
    st = store.stats()
    return st["objects"], st["used"]


def _raises(exc, fn, *args) -> None:
    try:
        fn(*args)
    except exc:
        return
    raise AssertionError(f"{getattr(fn, '__name__', fn)}{args} should raise {exc.__name__}")


# ---------------------------------------------------------------------- steps every ref has
def _pickled(ref):
    back = pickle.loads(pickle.dumps(ref))
    assert type(back) is type(ref) and back.id == ref.id
    if not isinstance(ref, (ss.StructProxy, ss.MapRef)):  # (a map's == compares contents)
        assert back == ref
        if type(ref).__hash__ is not None:  # (maps and lists are mutable: unhashable, as dicts)
            assert hash(back) == hash(ref)


def _ref_steps() -> dict:
    return {
        "id": lambda r: r.id > 0 or _fail("id"),
        "store": lambda r: r.store.ref(r.id).id == r.id or _fail("store"),
        "repr": lambda r: f"id={r.id}" in repr(r) or _fail("repr"),
        "pickle": _pickled,
    }


def _fail(what):
    raise AssertionError(what)


# ---------------------------------------------------------------------- the kinds
def _make_string(store):
    return store.string("héllo")


def _string_set(r):
    r.set("x" * 5000)
    assert r.get() == "x" * 5000


def _string_value_set(r):
    r.value = ""
    assert r.get() == ""


STRING = {
    "get": lambda r: r.get() == "héllo" or _fail("get"),
    "set": _string_set,
    "value": lambda r: r.value == "héllo" or _fail("value"),
    "value=": _string_value_set,
    "str": lambda r: str(r) == "héllo" or _fail("str"),
}


def _number_set(r):
    r.set(7)
    assert r.get() == 7.0 and type(r.get()) is float


def _number_value_set(r):
    r.value = -1.25
    assert r.get() == -1.25


NUMBER = {
    "get": lambda r: r.get() == 2.5 or _fail("get"),
    "add": lambda r: (r.add(1.0) == 3.5 and r.get() == 3.5) or _fail("add"),
    "set": _number_set,
    "value": lambda r: r.value == 2.5 or _fail("value"),
    "value=": _number_value_set,
    "float": lambda r: float(r) == 2.5 or _fail("float"),
}


def _int_cas(r):
    assert r.compare_exchange(5, 9) is True and r.compare_exchange(5, 1) is False
    assert r.get() == 9


def _int_set(r):
    r.set(2**62)
    assert r.get() == 2**62


def _int_value_set(r):
    r.value = 3
    assert r.get() == 3


INTEGER = {
    "get": lambda r: r.get() == 5 or _fail("get"),
    "add": lambda r: (r.add(4) == 9 and r.add() == 10) or _fail("add"),
    "compare_exchange": _int_cas,
    "set": _int_set,
    "value": lambda r: r.value == 5 or _fail("value"),
    "value=": _int_value_set,
    "int": lambda r: (int(r) == 5 and operator.index(r) == 5) or _fail("int"),
}


def _make_map(store):
    return store.map({"a": 1, "s": "text", "arr": np.arange(4.0)})


def _map_setitem(m):
    m["f"] = 1.5
    m[7], m[b"b"], m["n"] = None, b"\x00", {"nested": [1, 2]}
    m["ref"] = m.store.string("owned by nobody")
    assert m["f"] == 1.5 and m[7] is None and m[b"b"] == b"\x00" and m["n"] == {"nested": [1, 2]}
    assert m["ref"].get() == "owned by nobody"  # (drop(recursive=True) drops it)


def _map_view(m):
    view = m.view("arr")
    assert view.tolist() == [0.0, 1.0, 2.0, 3.0] and not view.flags.writeable


def _map_set_many(m):
    assert m.set_many(["g", "a"], [10, 2]) == 1 and m["a"] == 2 and m["g"] == 10


def _map_update(m):
    m.update({"h": "x"}, i=True)
    assert m["i"] is True and m["h"] == "x"


def _map_setdefault(m):
    assert m.setdefault("a", 0) == 1 and m.setdefault("j", 0) == 0 and m["j"] == 0


def _map_incr(m):
    assert m.incr("a") == 2 and m.incr("c", 3) == 3 and m.incr("f", 0.5) == 0.5
    assert m["a"] == 2 and m["c"] == 3 and m["f"] == 0.5
    _raises(TypeError, m.incr, "s")  # (a str: not a number)
    assert m["s"] == "text"


def _map_incr_many(m):
    m.incr_many(["a", "c"], [2, 5])
    m.incr_many({"a": 1})
    assert m["a"] == 4 and m["c"] == 5
    _raises(TypeError, m.incr_many, ["a", "s"], [1, 1])
    assert m["a"] == 4  # (refused whole)


def _map_popitem(m):
    key, _ = m.popitem()
    assert key not in m and len(m) == 2


def _map_clear(m):
    m.clear()
    assert len(m) == 0 and dict(m) == {}


def _map_set(m):
    m.set("k", 1)
    m.add("k2", 2)
    assert m["k"] == 1 and m["k2"] == 2


def _map_delitem(m):
    del m["a"]
    assert "a" not in m
    _raises(KeyError, m.__delitem__, "a")


MAP = {
    "getitem": lambda m: (m["a"] == 1 and m["arr"].tolist() == [0, 1, 2, 3]) or _fail("[]"),
    "getitem missing": lambda m: _raises(KeyError, m.__getitem__, "missing"),
    "setitem": _map_setitem,
    "contains": lambda m: ("a" in m and "zz" not in m) or _fail("in"),
    "get": lambda m: (m.get("s") == "text" and m.get("zz", 0) == 0) or _fail("get"),
    "get_many": lambda m: m.get_many(["a", "s", "zz"], -1) == [1, "text", -1] or _fail("get_many"),
    "set_many": _map_set_many,
    "set/add": _map_set,
    "update": _map_update,
    "setdefault": _map_setdefault,
    "incr": _map_incr,
    "incr_many": _map_incr_many,
    "view": _map_view,
    "len": lambda m: len(m) == 3 or _fail("len"),
    "iter": lambda m: sorted(m) == ["a", "arr", "s"] or _fail("iter"),
    "keys": lambda m: sorted(m.keys()) == ["a", "arr", "s"] or _fail("keys"),
    "values": lambda m: len(list(m.values())) == 3 or _fail("values"),
    "items": lambda m: dict(m.items())["s"] == "text" or _fail("items"),
    "delete": lambda m: (m.delete("a") is True and m.delete("a") is False) or _fail("delete"),
    "delitem": _map_delitem,
    "pop": lambda m: (m.pop("a") == 1 and m.pop("a", "gone") == "gone") or _fail("pop"),
    "popitem": _map_popitem,
    "clear": _map_clear,
    # (keys or sizes differ: no array value is compared, which would be ambiguous; `m != d`
    # runs __ne__, `m == d` __eq__)
    "eq": lambda m: (m != {"a": 1} and (m == {"x": 1, "y": 2, "z": 3}) is False) or _fail("eq"),
}


def _make_list(store):
    lst = store.vector()
    lst.extend([1, "two", 3.0])
    return lst


def _list_append(lst):
    lst.append({"d": 1})
    assert lst[3] == {"d": 1} and len(lst) == 4


def _list_setitem(lst):
    lst[0] = "first"
    assert lst[0] == "first"


def _list_insert(lst):
    lst.insert(1, None)
    assert list(lst) == [1, None, "two", 3.0]


def _list_delitem(lst):
    del lst[1]
    assert list(lst) == [1, 3.0]


def _list_extend(lst):
    lst.extend([4, 5])
    assert list(lst) == [1, "two", 3.0, 4, 5]


def _list_clear(lst):
    lst.clear()
    assert len(lst) == 0


LIST = {
    "len": lambda lst: len(lst) == 3 or _fail("len"),
    "getitem": lambda lst: (lst[0] == 1 and lst[-1] == 3.0) or _fail("[]"),
    "slice": lambda lst: lst[1:] == ["two", 3.0] or _fail("[:]"),
    "iter": lambda lst: list(lst) == [1, "two", 3.0] or _fail("iter"),
    "eq": lambda lst: lst == [1, "two", 3.0] or _fail("eq"),
    "append": _list_append,
    "extend": _list_extend,
    "setitem": _list_setitem,
    "insert": _list_insert,
    "delitem": _list_delitem,
    "pop": lambda lst: (lst.pop() == 3.0 and lst.pop(0) == 1 and list(lst) == ["two"])
    or _fail("pop"),
    "index/count": lambda lst: (lst.index("two") == 1 and lst.count(1) == 1) or _fail("index"),
    "contains": lambda lst: ("two" in lst and 9 not in lst) or _fail("in"),
    "clear": _list_clear,
}


def _make_vector(store):
    v = store.vector("float64")
    v.extend([1.0, 2.0, 3.0])
    return v


def _vector_append(v):
    v.append(4)
    assert v.to_numpy().tolist() == [1, 2, 3, 4]


def _vector_extend(v):
    v.extend(np.array([5.0, 6.0]))
    v.extend([7, 8])
    assert v.to_numpy().tolist() == [1, 2, 3, 5, 6, 7, 8]


def _vector_setitem(v):
    v[0] = 10
    v[1:3] = [20, 30]
    assert v.to_numpy().tolist() == [10, 20, 30]


def _vector_remove(v):
    v.remove(1)
    assert v.free_slots() == [1] and v[1] == 0.0


def _vector_insert(v):
    v.remove(0)
    assert v.insert(99) == 0 and v[0] == 99.0


def _vector_view(v):
    view = v.view()
    view[0] = 11.0  # (writable, zero-copy)
    assert v[0] == 11.0 and view.tolist() == [11, 2, 3]


def _vector_resize(v):
    v.resize(5)
    assert v.to_numpy().tolist() == [1, 2, 3, 0, 0]


def _vector_clear(v):
    v.clear()
    assert len(v) == 0


VECTOR = {
    "dtype": lambda v: (v.dtype == np.float64 and v.struct is None) or _fail("dtype"),
    "struct": lambda v: v.struct is None or _fail("struct"),
    "len": lambda v: len(v) == 3 or _fail("len"),
    "getitem": lambda v: (v[0] == 1.0 and v[-1] == 3.0) or _fail("[]"),
    "slice": lambda v: v[1:3].tolist() == [2.0, 3.0] or _fail("[:]"),
    "iter": lambda v: list(v) == [1.0, 2.0, 3.0] or _fail("iter"),
    "to_numpy": lambda v: v.to_numpy().tolist() == [1, 2, 3] or _fail("to_numpy"),
    "to_pandas": lambda v: v.to_pandas().tolist() == [1, 2, 3] or _fail("to_pandas"),
    "view": _vector_view,
    "append": _vector_append,
    "extend": _vector_extend,
    "setitem": _vector_setitem,
    "remove": _vector_remove,
    "free_slots": lambda v: v.free_slots() == [] or _fail("free_slots"),
    "insert": _vector_insert,
    "pop": lambda v: (v.pop() == 3.0 and len(v) == 2) or _fail("pop"),
    "resize": _vector_resize,
    "clear": _vector_clear,
}


def _make_table(store):
    t = store.vector(POINT)
    t.append({"x": 1.0, "label": "one"})
    t.append({"x": 2.0, "label": "two", "tag": "b"})
    return t


def _table_append(t):
    rec = np.zeros((), POINT.dtype)
    rec["x"] = 3.0
    t.append(rec)  # a 0-d structured array
    t.append(np.zeros(1, POINT.dtype)[0])  # an np.void
    t.append((5.0, "t", [1, 1], "five", None))  # a tuple of every field
    t.append(np.array([("six", 6.0)], dtype=[("label", "U8"), ("x", "f4")]))  # fields by name
    assert t.view()["x"].tolist() == [1, 2, 3, 0, 5, 6]
    assert t.to_pandas()["label"].tolist() == ["one", "two", "", "", "five", "six"]


def _table_extend(t):
    t.extend(np.zeros(2, POINT.dtype))
    t.extend([{"x": 7.0, "label": "seven"}])
    assert len(t) == 5 and t[4]["x"] == 7.0


def _table_setitem(t):
    other = t.store.string("the other")
    t[1] = {"x": 4.0, "label": "four", "other": other}
    assert t[1]["x"] == 4.0 and t[1]["other"] == other and t[1].raw["other"] == other.id
    t[0:1] = [(9.0, "n", [0, 0], "nine", None)]
    assert t[0]["x"] == 9.0
    other.drop()


def _table_remove(t):
    t.remove(0)  # (drops the record's "one")
    assert t.free_slots() == [0] and t[0]["x"] == 0.0


def _table_insert(t):
    t.remove(1)
    assert t.insert({"x": 5.0, "label": "again"}) == 1 and t[1]["x"] == 5.0


def _table_view(t):
    view = t.view()
    assert view["x"].tolist() == [1.0, 2.0] and view.dtype == POINT.dtype


TABLE = {
    "struct": lambda t: t.struct == POINT or _fail("struct"),
    "dtype": lambda t: t.dtype == POINT.dtype or _fail("dtype"),
    "len": lambda t: len(t) == 2 or _fail("len"),
    "getitem": lambda t: (t[0]["x"] == 1.0 and t[1]["tag"] == "b") or _fail("[]"),
    "iter": lambda t: [r["x"] for r in t] == [1.0, 2.0] or _fail("iter"),
    "view": _table_view,
    "to_pandas": lambda t: t.to_pandas()["label"].tolist() == ["one", "two"] or _fail("df"),
    "append": _table_append,
    "extend": _table_extend,
    "setitem": _table_setitem,
    "remove": _table_remove,
    "insert": _table_insert,
    "free_slots": lambda t: t.free_slots() == [] or _fail("free_slots"),
    "pop": lambda t: (t.pop()["x"] == 2.0 and len(t) == 1) or _fail("pop"),
}


def _make_array(store):
    a = store.array((2, 3), "float32")
    a.view()[:] = np.arange(6, dtype=np.float32).reshape(2, 3)
    return a


def _array_setitem(a):
    a[0, 0] = 9
    assert a.to_numpy()[0, 0] == 9.0


def _array_view(a):
    view = a.view()
    view[1, 1] = 7
    assert a[1, 1] == 7.0 and view.shape == (2, 3)


def _array_fixed(a):
    for method in ("append", "extend", "insert", "remove", "resize"):
        _raises(TypeError, getattr(a, method), 0)


ARRAY = {
    "shape": lambda a: a.shape == (2, 3) or _fail("shape"),
    "dtype": lambda a: a.dtype == np.float32 or _fail("dtype"),
    "len": lambda a: len(a) == 2 or _fail("len"),
    "getitem": lambda a: (a[1, 2] == 5.0 and a[0].tolist() == [0, 1, 2]) or _fail("[]"),
    "setitem": _array_setitem,
    "view": _array_view,
    "iter": lambda a: len(list(a)) == 2 or _fail("iter"),
    "to_numpy": lambda a: a.to_numpy().sum() == 15 or _fail("to_numpy"),
    "to_pandas": lambda a: a.to_pandas()[2].tolist() == [2, 5] or _fail("to_pandas"),
    "fixed shape": _array_fixed,
}


def _make_struct(store):
    return POINT.new(store, x=1.5, tag="ab", label="first", pos=[1, 2])


def _struct_setitem(p):
    p["x"] = 2
    p["label"] = "second"
    assert p["x"] == 2.0 and p["label"] == "second"


def _struct_ref_field(p):
    s = p.store.string("pointee")
    p["other"] = s
    assert p["other"] == s
    p["other"] = None
    assert p["other"] is None
    s.drop()


def _struct_set_key(p):
    p.set_key("label", "via set_key")
    assert p.get_key("label") == "via set_key"


STRUCT = {
    "getitem": lambda p: (p["x"] == 1.5 and p["tag"] == "ab" and p["label"] == "first"
                          and p["pos"].tolist() == [1, 2] and p["other"] is None) or _fail("[]"),
    "setitem": _struct_setitem,
    "ref field": _struct_ref_field,
    "get_key": lambda p: p.get_key("x") == 1.5 or _fail("get_key"),
    "set_key": _struct_set_key,
    "struct": lambda p: p.struct == POINT or _fail("struct"),
    "to_dict": lambda p: p.to_dict()["label"] == "first" or _fail("to_dict"),
}


def _proxy_setattr(q):
    q.x += 1
    q.label = "proxied"
    assert q.x == 2.5 and q.label == "proxied" and q._ref["x"] == 2.5


def _proxy_pickle(q):
    back = pickle.loads(pickle.dumps(q))
    assert back._id == q._id and back.x == 1.5


PROXY = {
    "getattr": lambda q: (q.x == 1.5 and q.label == "first" and q.tag == "ab") or _fail("."),
    "setattr": _proxy_setattr,
    "missing field": lambda q: _raises(AttributeError, setattr, q, "nope", 1),
    "dir": lambda q: set(dir(q)) == set(POINT.dtype.names) or _fail("dir"),
    "_ref": lambda q: isinstance(q._ref, ss.StructRef) or _fail("_ref"),
    "pickle": _proxy_pickle,
}

KINDS = {
    "string": Kind(_make_string, {**_ref_steps(), **STRING}),
    "number": Kind(lambda s: s.number(2.5), {**_ref_steps(), **NUMBER}),
    "integer": Kind(lambda s: s.integer(5), {**_ref_steps(), **INTEGER}),
    "map": Kind(_make_map, {**_ref_steps(), **MAP}),
    "list": Kind(_make_list, {**_ref_steps(), **LIST}),
    "vector": Kind(_make_vector, {**_ref_steps(), **VECTOR}),
    "table": Kind(_make_table, {**_ref_steps(), **TABLE}),
    "array": Kind(_make_array, {**_ref_steps(), **ARRAY}),
    "struct": Kind(_make_struct, {**_ref_steps(), **STRUCT}),
    "proxy": Kind(lambda s: ss.StructProxy(_make_struct(s)), PROXY),
}


# ---------------------------------------------------------------------- the ways
def ref_id(ref) -> int:
    return ref._id if isinstance(ref, ss.StructProxy) else ref.id


def _by_store_ref(store, ref):
    r = store.ref(ref_id(ref))
    return ss.StructProxy(r) if isinstance(ref, ss.StructProxy) else r


WAYS = {
    "factory": lambda store, ref: ref,
    "store.ref": _by_store_ref,
    "class": lambda store, ref: type(ref)(store, ref_id(ref)),  # (StructProxy(store, id) too)
    "pickle": lambda store, ref: pickle.loads(pickle.dumps(ref)),
}


def drop(ref) -> None:
    """Drop what the kind's factory made (a map with what its refs point to)."""
    if isinstance(ref, ss.StructProxy):
        ref._drop()
    elif isinstance(ref, ss.MapRef):
        ref.drop(recursive=True)
    else:
        ref.drop()


def run_step(kind: str, step: str, ref) -> str:
    """Run one step on ``ref`` (its first call), drop the object, check it is gone.  Returns
    "ok"; spawned workers run it on the refs they were sent."""
    KINDS[kind].steps[step](ref)
    target = ref._ref if isinstance(ref, ss.StructProxy) else ref
    store = target.store
    drop(ref)
    try:
        store.ref(target.id)
    except ss.UseAfterFreeError:
        return "ok"
    raise AssertionError(f"{kind}: the object is still there after drop()")


def run_steps(kind: str, refs: dict, backend: str | None = None) -> dict:
    """:func:`run_step` for each ``{step: ref}``: ``{step: "ok" or the error}``; a spawned
    worker first switches to the test's fast-path ``backend``."""
    if backend is not None and ss.fastpath().backend != backend:
        from sharedstore import _fastpath

        _fastpath.use(backend == "c", f"the test's {backend} backend")
    out = {}
    for step, ref in refs.items():
        try:
            out[step] = run_step(kind, step, ref)
        except Exception as e:  # (reported to the parent, which fails the test)
            out[step] = f"{type(e).__name__}: {e}"
    return out
