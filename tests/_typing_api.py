"""The whole public API, as a user's code calls it: tests/test_exports.py type-checks this file
with mypy (every public name and method must be visible to a static checker and typed as the
``assert_type`` calls say) and runs it on a real store (every call here works at run time).

One function per public class, ``use_<Class>``, touches every public attribute of the class:
the test checks that each function names them all, so a method added to a class must be added
here too.  ``sharedstore._fastpath`` replaces the hot methods (``MapRef.__getitem__``...) with C
functions at run time; a type checker sees the Python methods, which are the documented ones.
"""

from __future__ import annotations

import operator
import pickle
import sys
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import numpy as np

import sharedstore as ss
from sharedstore import dask as ssd
from sharedstore.check import CheckReport

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type

if TYPE_CHECKING:
    from distributed import Client, Nanny

Key = str | bytes | int  # (a map key, as sharedstore types it)

#: the public classes (not exceptions) and the functions here that use each
USERS = {
    "Store": ("use_Store", "use_Store_lifecycle"), "Ref": ("use_Ref",),
    "StringRef": ("use_StringRef",), "NumberRef": ("use_NumberRef",), "IntRef": ("use_IntRef",),
    "MapRef": ("use_MapRef",), "ListRef": ("use_ListRef",), "VectorRef": ("use_VectorRef",),
    "ArrayRef": ("use_ArrayRef",), "Struct": ("use_Struct",), "StructRef": ("use_StructRef",),
    "StructProxy": ("use_StructProxy",), "Record": ("use_Record",), "NodeStore": ("use_dask",),
}


def use_module(name: str, schema_file: Path) -> None:
    """The module-level functions and the error tree."""
    assert_type(ss.create(name, size=64 << 20), ss.Store).close()
    assert_type(ss.attach(name), ss.Store).close()
    with assert_type(ss.open(name), ss.Store) as opened:
        assert_type(opened.closed, bool)
    assert_type(name in ss.list_stores(), bool)
    ss.unlink(name)
    structs = assert_type(ss.load_schema(schema_file), dict[str, ss.Struct])
    assert_type(structs["Particle"], ss.Struct)
    info = ss.fastpath()
    assert_type(info.backend, str)
    assert_type(info.reason, str)
    assert_type(info.methods, tuple[str, ...])
    assert_type(info.missing, dict[str, str])
    errors: tuple[type[ss.SharedStoreError], ...] = (
        ss.InvalidHandleError, ss.InvalidNameError, ss.LockTimeoutError, ss.NodeStoreError,
        ss.SchemaError, ss.StoreClosedError, ss.StoreCorruptError, ss.StoreExistsError,
        ss.StoreFullError, ss.StoreNotFoundError, ss.StoreVersionError, ss.UntrustedStoreError,
        ss.UseAfterFreeError, ss.KindError)
    try:
        ss.attach(name)
    except errors as e:
        assert_type(e.status, int | None)
    else:
        raise AssertionError(f"attached to {name!r} after unlinking it")


def use_Store(store: ss.Store) -> None:
    assert_type(store.name, str)
    assert_type(store.path, Path)
    assert_type(store.reserved, int)
    assert_type(store.lock_timeout, float)
    assert_type(store.token, int)
    assert_type(store.closed, bool)
    assert_type(store.mem, np.ndarray)
    store.reserve(1 << 16)
    # factories
    s = assert_type(store.string("text"), ss.StringRef)
    assert_type(store.number(1.5), ss.NumberRef)
    assert_type(store.integer(2), ss.IntRef)
    assert_type(store.map({"a": 1}, b=2), ss.MapRef)
    assert_type(store.vector(), ss.ListRef)
    assert_type(store.vector("float64", capacity=8), ss.VectorRef)
    assert_type(store.array((2, 3), "float32"), ss.ArrayRef)
    assert_type(store.ref(s.id), ss.Ref)
    assert_type(store.root, ss.MapRef)
    # the root map: named values
    store["k"] = 1.5
    assert_type(store["k"], Any)
    assert_type("k" in store, bool)
    assert_type(len(store), int)
    assert_type(iter(store), Iterator[Key])
    assert_type(store.get("k", None), Any)
    store.set("k", 2.5)
    store.add("k2", "two")
    assert_type(store.delete("k2"), bool)
    del store["k"]
    store.update({"a": 1}, b=2)
    assert_type(store.setdefault("c", 3), Any)
    assert_type(store.pop("c"), Any)
    assert_type(store.popitem(), tuple[Key, Any])
    assert_type(store.keys(), KeysView[Key])
    assert_type(store.values(), ValuesView[Any])
    assert_type(store.items(), ItemsView[Key, Any])
    assert_type(store.set_many(["x", "y"], [1, 2]), int)
    assert_type(store.get_many(["x", "y", "z"], 0), list[Any])
    store["arr"] = np.arange(3)
    assert_type(store.view("arr"), np.ndarray)
    store.clear()
    # introspection
    assert_type(store.stats(), dict[str, Any])
    assert_type(store.workers(), list[dict[str, Any]])
    assert_type(store.reap(), int)
    assert_type(store.check(repair=False), CheckReport)
    assert_type(pickle.loads(pickle.dumps(store)), Any)


def use_Store_lifecycle(name: str) -> None:
    """``close``, ``unlink`` and the context manager (a store of its own)."""
    with ss.create(name, size=8 << 20) as store:
        assert_type(store, ss.Store)
    store = ss.create(name, size=8 << 20)
    store.close()
    store.unlink()


def use_Ref(store: ss.Store) -> None:
    r = assert_type(store.ref(store.string("x").id), ss.Ref)
    assert_type(r.id, int)
    assert_type(r.store, ss.Store)
    assert_type(r == r, bool)
    r.drop()


def use_StringRef(store: ss.Store) -> None:
    s = assert_type(ss.StringRef(store, store.string("a").id), ss.StringRef)
    assert_type(s.get(), str)
    s.set("b")
    assert_type(s.value, str)
    s.value = "c"
    assert_type(str(s), str)
    assert_type(s.id, int)
    assert_type(s.store, ss.Store)
    s.drop()


def use_NumberRef(store: ss.Store) -> None:
    n = assert_type(ss.NumberRef(store, store.number(1.0).id), ss.NumberRef)
    assert_type(n.get(), float)
    n.set(2.0)
    assert_type(n.add(0.5), float)
    assert_type(n.value, float)
    n.value = 3.0
    assert_type(float(n), float)
    assert_type(n.id, int)
    assert_type(n.store, ss.Store)
    n.drop()


def use_IntRef(store: ss.Store) -> None:
    i = assert_type(ss.IntRef(store, store.integer(1).id), ss.IntRef)
    assert_type(i.get(), int)
    i.set(2)
    assert_type(i.add(), int)
    assert_type(i.add(5), int)
    assert_type(i.compare_exchange(8, 9), bool)
    assert_type(i.value, int)
    i.value = 3
    assert_type(int(i), int)
    assert_type(operator.index(i), int)
    assert_type(i.id, int)
    assert_type(i.store, ss.Store)
    i.drop()


def use_MapRef(store: ss.Store) -> None:
    m = assert_type(ss.MapRef(store, store.map().id), ss.MapRef)
    m["a"] = 1
    m[b"b"] = 2.5
    m[3] = "three"
    assert_type(m["a"], Any)
    assert_type("a" in m, bool)
    assert_type(len(m), int)
    assert_type(iter(m), Iterator[Key])
    assert_type(m.get("a"), Any)
    m.set("s", store.string("ref"))
    m.add("n", None)
    assert_type(m.delete("n"), bool)
    del m["s"]
    m.update([("u", 1)], v=2)
    assert_type(m.setdefault("w", 0), Any)
    assert_type(m.pop("w"), Any)
    assert_type(m.pop("w", None), Any)
    assert_type(m.popitem(), tuple[Key, Any])
    assert_type(m.keys(), KeysView[Key])
    assert_type(m.values(), ValuesView[Any])
    assert_type(m.items(), ItemsView[Key, Any])
    assert_type(m.set_many(["x", "y"], [1, 2]), int)
    assert_type(m.get_many(["x", "y", "z"], default=0), list[Any])
    assert_type(m.incr("x"), int | float)
    assert_type(m.incr("f", 0.5), int | float)
    m.incr_many(["x", "y"], [1, 2])
    m.incr_many({"x": 1})
    m["arr"] = np.arange(4)
    assert_type(m.view("arr"), np.ndarray)
    assert_type(m == {"x": 1}, bool)
    m.clear()
    assert_type(m.id, int)
    assert_type(m.store, ss.Store)
    m.drop(recursive=True)


def use_ListRef(store: ss.Store) -> None:
    lst = assert_type(ss.ListRef(store, store.vector().id), ss.ListRef)
    lst.append(1)
    lst.extend([2, "three", None])
    lst.insert(0, 0)
    assert_type(lst[0], Any)
    assert_type(lst[1:3], list[Any])
    lst[0] = -1
    del lst[0]
    assert_type(len(lst), int)
    assert_type(iter(lst), Iterator[Any])
    assert_type(2 in lst, bool)
    assert_type(lst.count(2), int)
    assert_type(lst.index(2), int)
    lst.remove(2)
    lst.reverse()
    lst[np.int64(0):2] = [7, 8]
    assert_type(lst + [9], list[Any])  # noqa: RUF005 (ListRef.__add__ is what it uses)
    assert_type(lst * 2, list[Any])
    lst *= 1
    assert_type(lst.pop(), Any)
    assert_type(lst == [1], bool)
    lst.clear()
    assert_type(lst.id, int)
    assert_type(lst.store, ss.Store)
    lst.drop(recursive=False)


def use_VectorRef(store: ss.Store) -> None:
    v = assert_type(ss.VectorRef(store, store.vector("float64").id), ss.VectorRef)
    v.append(1.0)
    v.extend(np.arange(4.0))
    assert_type(v.insert(9.0), int)
    v[0] = 2.0
    v[1:3] = [5.0, 6.0]
    assert_type(v[0], Any)
    assert_type(v[0:2], np.ndarray)
    assert_type(len(v), int)
    assert_type(iter(v), Iterator[Any])
    v.remove(1)
    assert_type(v.free_slots(), list[int])
    assert_type(v.pop(), Any)
    v.resize(8)
    assert_type(v.dtype, np.dtype)
    assert_type(v.struct, ss.Struct | None)
    assert_type(v.to_numpy(), np.ndarray)
    assert_type(v.view(), np.ndarray)
    as_array: np.ndarray = np.asarray(v)  # (numpy's own stubs name the shape since 2.2)
    assert len(as_array) == len(v)
    assert_type(v.__array__(np.float32, copy=True), np.ndarray)
    series = v.to_pandas()
    array = v.to_arrow()
    assert len(series) == len(array) == 8
    v.clear()
    assert_type(v.id, int)
    assert_type(v.store, ss.Store)
    v.drop()


def use_ArrayRef(store: ss.Store) -> None:
    a = assert_type(ss.ArrayRef(store, store.array((3, 2), "int64").id), ss.ArrayRef)
    assert_type(a.shape, tuple[int, ...])
    assert_type(a.dtype, np.dtype)
    assert_type(a.struct, ss.Struct | None)
    a[0, 1] = 5
    a[1] = [1, 2]
    assert_type(a[0, 1], Any)
    assert_type(len(a), int)
    assert_type(iter(a), Iterator[Any])
    assert_type(a.view(), np.ndarray)
    assert_type(a.to_numpy(), np.ndarray)
    frame = a.to_pandas()
    table = a.to_arrow()
    assert len(frame) == len(table) == 3
    # a fixed shape: what would grow or shrink it raises TypeError
    fixed: tuple[Any, ...] = (a.append, a.extend, a.insert, a.remove, a.pop, a.resize,
                              a.clear, a.free_slots)
    assert all(callable(f) for f in fixed)
    assert_type(a.id, int)
    assert_type(a.store, ss.Store)
    a.drop()


def _refuse(fixed: ss.ArrayRef) -> NoReturn:
    """(Type-checked only: the methods an ArrayRef refuses never return.)"""
    fixed.append(1)


def use_Struct(store: ss.Store) -> None:
    p = ss.Struct("P", {"x": "float64", "name": "string", "owner": "ref", "pos": "float32[3]"})
    assert_type(p.name, str)
    assert_type(p.fields, dict[str, str | ss.Struct])
    assert_type(p.dtype, np.dtype[np.void])
    assert_type(p.strings, tuple[str, ...])
    assert_type(p.refs, tuple[str, ...])
    assert_type(p.string_offsets, tuple[int, ...])
    assert_type(p.json, str)
    d = assert_type(p.descriptor(), dict[str, Any])
    assert_type(ss.Struct.from_descriptor(d), ss.Struct)
    assert_type(p.new(store, x=1.0, name="a"), ss.StructRef).drop()
    assert_type(p.new_proxy(store, x=2.0), ss.StructProxy)._drop()
    assert_type(p == p, bool)


def use_StructRef(store: ss.Store) -> None:
    p = ss.Struct("P", {"x": "float64", "name": "string"})
    r = assert_type(ss.StructRef(store, p.new(store).id), ss.StructRef)
    r["x"] = 1.5
    r.set_key("name", "n")
    assert_type(r["x"], Any)
    assert_type(r.get_key("name"), Any)
    assert_type(r.struct, ss.Struct)
    assert_type(r.to_dict(), dict[str, Any])
    assert_type(r.id, int)
    assert_type(r.store, ss.Store)
    r.drop()


def use_Record(store: ss.Store) -> None:
    p = ss.Struct("P", {"x": "float64", "name": "string"})
    t = store.vector(p)
    t.append({"x": 1.0, "name": "a"})
    rec = t[0]
    assert isinstance(rec, ss.Record)
    assert_type(rec["name"], Any)
    assert_type(rec[0], Any)
    assert_type(rec.raw, np.void)
    assert_type(rec.dtype, np.dtype)
    assert_type(rec.struct, ss.Struct)
    assert_type(rec.keys(), list[str])
    assert_type(rec.to_dict(), dict[str, Any])
    assert_type(len(rec), int)
    assert_type(list(rec), list[Any])
    assert rec == t[0]
    t.drop()


def use_StructProxy(store: ss.Store) -> None:
    p = ss.Struct("P", {"x": "float64", "name": "string"})
    q = assert_type(ss.StructProxy(p.new(store)), ss.StructProxy)
    q.x = 2.0
    q.name = "q"
    assert_type(q.x, Any)
    assert_type(ss.StructProxy(store, q._id), ss.StructProxy)
    assert_type(store.ref(q._ref.id), ss.Ref)
    q._drop()


async def use_dask(client: Client, nanny: Nanny) -> None:
    """(Type-checked only: it needs a Dask cluster.)"""
    plugin = ssd.NodeStore("run1", size="4GiB")
    assert_type(plugin.run, str)
    assert_type(plugin.size, int | None)
    assert_type(plugin.name, str)
    assert_type(plugin.idempotent, bool)
    assert_type(plugin.restart, bool)
    assert_type(plugin.store_name(nanny), str)
    await plugin.setup(nanny)
    await plugin.teardown(nanny)
    assert_type(ssd.node_store(), ss.Store)
    assert_type(ssd.node_store("run1"), ss.Store)
    assert_type(ssd.store_name("run1"), str)
    assert_type(ssd.node_id(), str)
    assert_type(ssd.parse_size("4GiB"), int)
    assert_type(ssd.parse_size(None), None)
    assert_type(ssd.nodes(client), dict[str, list[str]])
    assert_type(ssd.each_node(client, len, [1], run="run1"), dict[str, Any])
    assert_type(ssd.dask_setup, click.Command)
    assert_type(ssd.NodeStoreMemoryWarning(), ssd.NodeStoreMemoryWarning)
    assert_type(ssd.NodeStoreError(), ss.NodeStoreError)


def use_all(name: str, schema_file: Path) -> None:
    """Everything above that runs without a Dask cluster, on a store called ``name``."""
    use_module(name, schema_file)
    use_Store_lifecycle(name)
    with ss.create(name, size=64 << 20) as store:
        for use in (use_Store, use_Ref, use_StringRef, use_NumberRef, use_IntRef, use_MapRef,
                    use_ListRef, use_VectorRef, use_ArrayRef, use_Struct, use_StructRef,
                    use_StructProxy, use_Record):
            use(store)
