import os
import pickle
import stat

import numpy as np
import pytest

import sharedstore as ss
from sharedstore import _layout as L

from .conftest import unique_name


def test_create_attach_roundtrip(name):
    with ss.create(name) as s:
        s["greeting"] = s.string("Hello World")
        with ss.attach(name) as t:
            assert t["greeting"].get() == "Hello World"
            assert t.reserved == s.reserved
        assert name in ss.list_stores()
    assert name not in ss.list_stores()  # the creator's context manager unlinks


def test_attach_context_does_not_unlink(name):
    with ss.create(name) as s:
        with ss.attach(name):
            pass
        assert name in ss.list_stores()
        s.close()
        s.close()  # idempotent
    assert name not in ss.list_stores()


def test_file_is_private_and_sparse(store):
    st = os.stat(store.path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size == store.reserved
    # reserved big, committed as used: only a few MiB are backed
    assert st.st_blocks * 512 <= store.stats()["committed"] < 16 << 20


def test_create_existing_raises(store):
    with pytest.raises(ss.StoreExistsError, match="exists already"):
        ss.create(store.name)
    with pytest.raises(FileExistsError):
        ss.create(store.name)


def test_attach_missing_raises():
    with pytest.raises(ss.StoreNotFoundError, match="create it with"):
        ss.attach(unique_name("missing"))
    with pytest.raises(FileNotFoundError):
        ss.unlink(unique_name("missing"))


def test_open_creates_then_attaches(name):
    a = ss.open(name)
    try:
        a["x"] = 1
        with ss.open(name) as b:
            assert b["x"] == 1
    finally:
        a.close()


@pytest.mark.parametrize("bad", ["", "a/b", "/", "x" * 300, "nul\0", ".", ".."])
def test_bad_names(bad):
    with pytest.raises(ss.InvalidNameError):
        ss.create(bad)
    with pytest.raises(ValueError):
        ss.attach(bad)


def test_bad_name_type():
    with pytest.raises(ss.InvalidNameError):
        ss.create(42)


def test_size_too_small(name):
    with pytest.raises(ValueError, match="too small"):
        ss.create(name, size=1000)
    assert name not in ss.list_stores()


def test_closed_store_refuses(store):
    s = store.string("a")
    store.close()
    with pytest.raises(ss.StoreClosedError):
        store["x"] = 1
    with pytest.raises(ss.StoreClosedError):
        s.get()


def test_pickle_store_and_refs(store):
    assert pickle.loads(pickle.dumps(store)) is store
    s = store.string("hi")
    n = store.number(1.5)
    i = store.integer(3)
    m = store.map()
    for r in (s, n, i, m):
        r2 = pickle.loads(pickle.dumps(r))
        assert type(r2) is type(r) and r2.id == r.id
    assert pickle.loads(pickle.dumps(s)).get() == "hi"


def test_path_backed_store(tmp_path):
    p = tmp_path / "store.bin"
    with ss.create("filestore", size=16 << 20, path=p) as s:
        s["k"] = s.string("on disk")
        with ss.attach("filestore", path=p) as t:
            assert t["k"].get() == "on disk"
    assert not p.exists()


def _write_store_file(tmp_path, data: bytes, size: int):
    p = tmp_path / "bad.bin"
    with open(p, "wb") as f:
        f.write(data)
        f.truncate(size)
    return p


def test_attach_rejects_wrong_magic(tmp_path):
    p = _write_store_file(tmp_path, b"garbage!" * 10, 8 << 20)
    with pytest.raises(ss.StoreCorruptError, match="not a sharedstore"):
        ss.attach("bad", path=p)


def test_attach_rejects_truncated(tmp_path):
    p = _write_store_file(tmp_path, b"", 1000)
    with pytest.raises(ss.StoreCorruptError, match="truncated"):
        ss.attach("bad", path=p)


def test_attach_rejects_wrong_version_and_sizes(tmp_path, name):
    with ss.create(name, size=8 << 20) as s:
        raw = bytes(s.mem[: L.PAGE // 8].view(np.uint8))
    hdr = np.frombuffer(bytearray(raw), dtype=np.int64).copy()
    hdr[L.W_VERSION] = 99
    p = _write_store_file(tmp_path, hdr.tobytes(), 8 << 20)
    with pytest.raises(ss.StoreCorruptError, match="format version 99"):
        ss.attach("bad", path=p)
    hdr[L.W_VERSION] = L.FORMAT_VERSION
    p = _write_store_file(tmp_path, hdr.tobytes(), 16 << 20)  # file size != reservation
    with pytest.raises(ss.StoreCorruptError, match="inconsistent header"):
        ss.attach("bad", path=p)


def test_stats_and_workers(store):
    st = store.stats()
    for key in ("reserved", "committed", "used", "free", "objects", "workers"):
        assert key in st
    assert st["used"] <= st["committed"] <= st["reserved"]
    store.string("x")
    store.integer(1)
    st2 = store.stats()
    assert st2["objects"]["string"] == 1 and st2["objects"]["integer"] == 1
    assert st2["used"] > st["used"]
    w = store.workers()
    assert [x["pid"] for x in w] == [os.getpid()] and w[0]["self"]


def test_html_previews(store):
    store["a"] = 1
    store["s"] = store.string("<b>")
    t = store.vector("float64")
    t.extend([1.5, 2.5])
    m = store.map({f"k{i}": i for i in range(20)})
    html = store._repr_html_()
    assert "sharedstore.Store" in html and "&lt;StringRef" in html and "<table>" in html
    assert "10 more" in m._repr_html_() and "1.5" in t._repr_html_()
    assert "VectorRef of float64: 2 slots" in t._repr_html_()
    store.close()
    assert "closed" in store._repr_html_() and "closed" in repr(store)
