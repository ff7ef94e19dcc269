import math

import pytest

import sharedstore as ss

pytestmark = pytest.mark.usefixtures("each_backend")  # the same tests, both backends


@pytest.mark.parametrize("text", ["", "Hello World", "ünïcödé ✓ 🎉", "x" * 100_000, "\ud800 lone"])
def test_string_roundtrip(store, text):
    s = store.string(text)
    assert s.get() == text and s.value == text and str(s) == text


def test_string_set_grows_and_shrinks(store):
    s = store.string("a")
    for text in ["b" * 10, "c" * 10_000, "", "d" * 3]:
        s.set(text)
        assert s.get() == text
    s.value = "via property"
    assert s.get() == "via property"


def test_string_type_errors(store):
    with pytest.raises(TypeError):
        store.string(b"bytes")
    with pytest.raises(TypeError):
        store.string("a").set(5)


def test_number(store):
    n = store.number(4.2)
    assert n.get() == 4.2
    assert n.add(1.0) == pytest.approx(5.2)
    n.set(math.inf)
    assert n.value == math.inf
    n.value = -0.5
    assert float(n) == -0.5


def test_integer(store):
    i = store.integer(0)
    assert i.add(5) == 5
    assert i.add(-2) == 3
    assert i.compare_exchange(3, 10) is True
    assert i.compare_exchange(3, 11) is False
    assert i.get() == 10 == int(i)
    i.set(2**63 - 1)
    assert i.add(1) == -(2**63)  # wraps like int64
    with pytest.raises(OverflowError):
        i.set(2**63)
    with pytest.raises(TypeError):
        i.add(1.5)


@pytest.mark.parametrize("make", ["string", "number", "integer", "map"])
def test_drop_then_use_raises(store, make):
    r = getattr(store, make)()
    rid = r.id
    r.drop()
    with pytest.raises(ss.UseAfterFreeError):
        r.drop()
    with pytest.raises(ReferenceError):
        store.ref(rid)
    # the slot is reused by the next object; the old handle stays dead (generations)
    new = getattr(store, make)()
    assert new.id & 0xFFFFFFFF == rid & 0xFFFFFFFF and new.id != rid
    with pytest.raises(ss.UseAfterFreeError):
        type(r)(store, rid)
    if make == "string":
        with pytest.raises(ss.UseAfterFreeError):
            r.get()
        with pytest.raises(ss.UseAfterFreeError):
            r.set("x")
    elif make == "map":
        with pytest.raises(ss.UseAfterFreeError):
            r["k"] = 1
    else:
        with pytest.raises(ss.UseAfterFreeError):
            r.add(1)


def test_ref_by_id_gives_right_class(store):
    for r in (store.string("s"), store.number(1.0), store.integer(2), store.map()):
        again = store.ref(r.id)
        assert type(again) is type(r) and again.id == r.id
    s = store.string("t")
    assert ss.StringRef(store, s.id).get() == "t"
    assert ss.StringRef(store, s.id) == s


@pytest.mark.parametrize("bogus", [0, -1, 1, 12345, 2**40 + 7, 2**63 - 1, (5 << 32) | 0])
def test_bogus_ids(store, bogus):
    with pytest.raises(ss.InvalidHandleError):
        store.ref(bogus)
    with pytest.raises(ValueError):
        ss.StringRef(store, bogus)


def test_wrong_kind_and_types(store):
    m = store.map()
    with pytest.raises(ss.InvalidHandleError, match="names a map, not a string"):
        ss.StringRef(store, m.id)
    with pytest.raises(ss.InvalidHandleError):
        ss.IntRef(store, "12")
    with pytest.raises(ss.InvalidHandleError):
        ss.IntRef(store, True)
