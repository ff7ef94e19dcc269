"""NumPy fidelity: what a NumPy user puts in a vector or table comes back as NumPy, pandas and
Arrow give it, or is refused up front by name (issue 24, one test per finding; the property
tests of tests/test_dtype_roundtrip.py draw the rest)."""

import collections.abc
import textwrap

import numpy as np
import pytest

import sharedstore as ss

pytestmark = pytest.mark.usefixtures("each_backend")  # the same tests, both backends


def _strings(store) -> int:
    return store.stats()["objects"].get("string", 0)


# 1 ------------------------------------------------------------------------- sub-array slots
def test_a_sub_array_element_is_one_slot(store):
    dt = np.dtype(("f4", (3,)))
    v = store.vector(dt)
    v.extend(np.zeros(2, dt))  # (numpy makes that a (2, 3) float32 array)
    assert len(v) == 2
    v.append([1, 2, 3])
    v.append(7)  # one value for the whole slot, as numpy broadcasts it
    assert len(v) == 4 and v[2].tolist() == [1, 2, 3] and v[3].tolist() == [7, 7, 7]
    assert v.view().shape == (4, 3) and v.view().dtype == np.float32
    assert v[1:3].tolist() == [[0, 0, 0], [1, 2, 3]]
    v[0] = [4, 5, 6]
    assert v.pop().tolist() == [7, 7, 7] and v[0].tolist() == [4, 5, 6]
    assert store.ref(v.id).dtype == dt and len(store.ref(v.id)) == 3
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        v.append([1, 2])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        v.extend(np.zeros((2, 4), np.float32))
    assert len(v) == 3
    assert v.to_pandas().shape == (3, 3)  # as pd.DataFrame of the (3, 3) array
    pa = pytest.importorskip("pyarrow")
    assert v.to_arrow().type == pa.list_(pa.float32(), 3)


def test_arrays_of_sub_array_elements_keep_their_shape(store):
    a = store.array(4, np.dtype(("i2", (2, 2))))
    assert a.view().shape == (4, 2, 2) and a.shape == (4,)
    a[1] = [[1, 2], [3, 4]]
    assert a[1].tolist() == [[1, 2], [3, 4]] and a.to_numpy().shape == (4, 2, 2)


# 2 --------------------------------------------------------------- plain structured to_pandas
def test_a_plain_structured_vector_converts_as_pandas_converts_the_array(store):
    pd = pytest.importorskip("pandas")
    dt = np.dtype([("a", "i1"), ("b", "f8"), ("s", "U3"), ("raw", "S2"), ("t", "M8[ns]")])
    arr = np.array([(1, 2.5, "x", b"ab", "2024-01-02"), (3, -1.0, "yz", b"", "NaT")], dtype=dt)
    v = store.vector(dt)
    v.extend(arr)
    df = v.to_pandas()
    pd.testing.assert_frame_equal(df, pd.DataFrame(arr))
    assert np.shares_memory(df["b"].to_numpy(), v.view())  # numbers stay views


def test_nested_records_flatten_as_json_normalize_names_them(store):
    pd = pytest.importorskip("pandas")
    dt = np.dtype([("id", "i4"), ("pos", [("x", "f8"), ("y", "f8")]), ("v", "f4", (2,))])
    v = store.vector(dt)
    v.append((1, (2.0, 3.0), [4, 5]))
    df = v.to_pandas()
    want = pd.json_normalize([{"id": 1, "pos": {"x": 2.0, "y": 3.0}, "v": None}])
    assert list(df.columns) == ["id", "pos.x", "pos.y", "v"]  # (in the fields' order)
    assert set(df.columns) == set(want.columns)
    assert df["pos.y"].tolist() == [3.0] and df["v"][0].tolist() == [4, 5]


# 3 ------------------------------------------------------------------- tuples with sub-arrays
def test_a_tuple_record_with_a_sub_array_field(store):
    dt = np.dtype([("a", "i1"), ("b", "f8", (3,))])
    ref = np.zeros(2, dt)
    ref[0] = (3, [1.0, 2.0, 3.0])  # what numpy takes
    ref[1]["b"] = 4.0  # (one value for a whole sub-array)
    v = store.vector(dt)
    v.append((3, [1.0, 2.0, 3.0]))
    v.append({"b": 4.0})
    assert v.view().tobytes() == ref.tobytes()
    assert isinstance(v[0], np.void) and v[0]["a"] == 3 and v[0]["b"].tolist() == [1, 2, 3]
    v.extend([(5, np.arange(3.0)), {"a": 6}])
    assert v.view()["a"].tolist() == [3, 0, 5, 6]


# 4 ------------------------------------------------------------- arrays of structs own strings
SCHEMA = textwrap.dedent("""
    [Inner]
    s = "string"
    x = "float64"

    [Outer]
    id = "int32"
    many = "Inner[2]"
    tags = "string[2]"
""")


def test_arrays_of_structs_own_their_strings(store, tmp_path):
    pa = pytest.importorskip("pyarrow")
    (tmp_path / "s.toml").write_text(SCHEMA)
    Outer = ss.load_schema(tmp_path / "s.toml")["Outer"]
    assert len(Outer.string_offsets) == 4  # two structs' "s", two tags
    t = store.vector(Outer)
    base = _strings(store)
    t.append({"id": 1, "many": [{"s": "a"}, ("b", 2.0)], "tags": ["t1", None]})
    t.append((2, [{"x": 1.0}, {"s": "c"}], ["t2", "t3"]))
    assert _strings(store) == base + 6
    rec = t[0]
    assert [r["s"] for r in rec["many"]] == ["a", "b"] and list(rec["tags"]) == ["t1", ""]
    assert isinstance(rec["many"][1], ss.Record) and rec["many"][1]["x"] == 2.0
    assert t.to_arrow().column("many").to_pylist()[1] == [{"s": "", "x": 1.0},
                                                           {"s": "c", "x": 0.0}]
    assert t.to_arrow().column("tags").type == pa.list_(pa.string(), 2)
    assert [[r["s"] for r in cell] for cell in t.to_pandas()["many"]] == [["a", "b"], ["", "c"]]
    t[1] = {"id": 3}  # the record it replaces owned "c", "t2", "t3"
    assert _strings(store) == base + 3
    t.remove(0)
    assert _strings(store) == base
    p = Outer.new(store, many=[{"s": "m1"}, {"s": "m2"}], tags=["z", "y"])
    assert [r["s"] for r in p["many"]] == ["m1", "m2"] and _strings(store) == base + 5
    p["many"] = [{"s": "n1"}, {}]  # drops m1, m2
    assert _strings(store) == base + 4  # (+1: the record's schema, interned once)
    p.drop()
    assert _strings(store) == base + 1
    t.drop()


# 5 --------------------------------------------------------------------- no silent changes
def test_values_that_would_change_are_refused_by_field_and_row(store):
    T = ss.Struct("T", {"x": "int32", "s": "str[3]", "name": "string"})
    t = store.vector(T)
    t.append({"x": 1, "name": "kept"})
    base = _strings(store)
    src = np.zeros(3, dtype=[("x", "i8"), ("s", "U10"), ("name", "U4")])
    src["x"][2] = 2 ** 40
    src["name"] = "made"
    with pytest.raises(TypeError, match=r"field 'x' of T \(int32\).*1099511627776 \(row 2\)"):
        t.extend(src)
    src["x"][2] = 0
    src["s"][1] = "abcdefghij"
    with pytest.raises(TypeError, match=r"field 's' of T.*'abcdefghij' \(row 1\)"):
        t.extend(src)
    with pytest.raises(TypeError, match=r"field 'x' of T \(int32\)"):  # not OverflowError
        t.append({"x": 2 ** 40})
    with pytest.raises(TypeError, match=r"field 'x'.*2\.5 \(row 1\)"):
        t.extend([{"x": 1}, {"x": 2.5}])
    with pytest.raises(TypeError, match=r"field 'x'"):
        t.append({"x": 2 ** 70})
    assert len(t) == 1 and _strings(store) == base  # nothing written, no string left
    t.append({"x": 3.0, "s": "abc"})  # a whole float fits an int field; 3 chars fit str[3]
    assert t.view()["x"].tolist() == [1, 3]


def test_plain_vectors_arrays_and_records_check_what_they_write(store):
    v = store.vector("int32")
    with pytest.raises(TypeError, match=r"vector of int32.*1099511627776 \(row 1\)"):
        v.extend(np.array([1, 2 ** 40]))
    with pytest.raises(TypeError, match="vector of int32"):
        v.append(2 ** 31)
    with pytest.raises(TypeError, match="vector of int32"):
        v.append(1.5)
    assert len(v) == 0
    v.extend(np.array([1.0, 2.0]))
    v[0] = np.int64(7)
    assert v.view().tolist() == [7, 2]
    u = store.vector("uint8")
    with pytest.raises(TypeError, match=r"-1 \(row 0\)"):
        u.append(-1)
    f = store.vector("float32")
    f.append(0.1)  # floats round to the field's precision
    with pytest.raises(TypeError, match="1e\\+300"):
        f.append(1e300)  # ... but never overflow to inf
    a = store.array(3, "int8")
    with pytest.raises(TypeError, match="array of int8"):
        a[0] = 300
    assert a.view().tolist() == [0, 0, 0]
    P = ss.Struct("P", {"n": "int16", "when": "datetime64[s]"})
    p = P.new(store, n=5)
    with pytest.raises(TypeError, match=r"field 'n' of P \(int16\)"):
        p["n"] = 70000
    with pytest.raises(TypeError, match=r"field 'when' of P"):
        p["when"] = np.datetime64("2024-01-01T00:00:00.5")  # a fraction of a second
    p["when"] = "2024-01-01T10:00"
    assert p["n"] == 5 and p["when"] == np.datetime64("2024-01-01T10:00", "s")


# 6 -------------------------------------------------------------------------------- spellings
@pytest.mark.parametrize(("spelled", "dtype"), [
    ("datetime64[ns][3]", np.dtype(("M8[ns]", (3,)))),
    ("M8[ns][3]", np.dtype(("M8[ns]", (3,)))),
    ("str[4][2]", np.dtype(("U4", (2,)))),
    ("bytes[3][2]", np.dtype(("S3", (2,)))),
    ("timedelta64[us][2, 2]", np.dtype(("m8[us]", (2, 2)))),
    ("float32[2][3]", np.dtype(("f4", (3, 2)))),  # three float32[2]
    ("(3,)f4", np.dtype(("f4", (3,)))),
    ("<U5", np.dtype("U5")),
    (">i4[2]", np.dtype((">i4", (2,)))),
    ("string[3]", np.dtype(("i8", (3,)))),
])
def test_every_spelling_takes_a_shape_suffix(spelled, dtype):
    assert ss.Struct("T", {"f": spelled}).dtype["f"] == dtype


def test_spellings_that_hold_no_fixed_size_are_refused_by_name():
    for spelled, match in (("str[0][2]", "at least 1"), ("object[2]", "no fixed size"),
                           ("U0", "no size"), ("float65[2]", "unknown type 'float65'")):
        with pytest.raises(ss.SchemaError, match=r"struct 'T', field 'f'"):
            ss.Struct("T", {"f": spelled})
        with pytest.raises(ss.SchemaError, match=match):
            ss.Struct("T", {"f": spelled})


def test_vectors_refuse_what_holds_objects_when_made(store):
    for dt, field in ((np.dtype([("a", "i4"), ("o", "O")]), "'o'"),
                      (np.dtype([("a", [("b", "U0")])]), "'a.b'"), (np.dtype("O"), "")):
        with pytest.raises(TypeError, match=f"{field}.*(Python objects|no size)"):
            store.vector(dt)


def test_numpy_integers_index_every_sequence(store):
    lst = store.vector()
    lst.extend([10, 20, 30])
    assert lst[np.int64(1)] == 20 and lst[np.int32(-1)] == 30
    lst[np.uint8(0)] = 5
    del lst[np.int64(2)]
    assert lst == [5, 20] and lst.pop(np.int16(0)) == 5
    with pytest.raises(TypeError, match="integers or slices"):
        lst["0"]
    v = store.vector("float64")
    v.extend([1.0, 2.0])
    assert v[np.int64(1)] == 2.0
    a = store.array(3, "int64")
    a[np.int8(2)] = 4
    assert a[np.int64(2)] == 4


# 7 -------------------------------------------------------------------------------- alignment
def test_an_aligned_dtype_keeps_its_flag_read_back(store):
    dt = np.dtype([("a", "i1"), ("b", "f8")], align=True)
    v = store.vector(dt)
    v.extend(np.zeros(2, dt))
    store._structs.clear()  # (read the type from the store, as another process does)
    again = store.ref(v.id)
    assert again.dtype == dt and again.dtype.isalignedstruct and again.view().dtype.isalignedstruct
    nested = np.dtype([("n", dt, (2,)), ("c", "c8")], align=True)
    assert store.ref(store.vector(nested).id).dtype["n"].base.isalignedstruct
    store["arr"] = np.zeros(3, dt)
    assert store["arr"].dtype.isalignedstruct and store.view("arr").dtype.isalignedstruct


# 8-9 ------------------------------------------------------------------------ the store as map
def test_the_store_is_a_mutable_mapping_with_a_mappings_equality(store):
    assert isinstance(store, collections.abc.MutableMapping)
    assert store == {} and not store
    store["a"] = 1
    store["b"] = "two"
    assert store == {"a": 1, "b": "two"} and store != {"a": 1}
    other = ss.attach(store.name)
    try:
        assert other == store  # another handle on the same store: the same named values
        assert store == store.map({"a": 1, "b": "two"})
    finally:
        other.close()
    with pytest.raises(TypeError, match="unhashable"):
        hash(store)


# 10 --------------------------------------------------------------------------- NumPy's protocol
def test_numpy_reads_a_vector_without_a_copy(store):
    v = store.vector("float64")
    v.extend(np.arange(1000.0))
    arr = np.asarray(v)
    assert np.shares_memory(arr, v.view())  # the store's memory: no Python loop, no copy
    assert np.sum(v) == np.sum(v.view()) == 499500.0 and np.mean(v) == 499.5
    assert np.add(v, 1)[3] == 4.0
    assert not np.shares_memory(np.array(v), v.view())  # np.array copies, as ever
    assert not np.shares_memory(np.asarray(v, copy=True), v.view())
    assert np.asarray(v, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="copy"):
        np.asarray(v, dtype=np.float32, copy=False)
    assert np.shares_memory(np.asarray(v, copy=False), v.view())
    pd = pytest.importorskip("pandas")
    s = pd.Series(v)
    assert np.shares_memory(s.to_numpy(), v.view()) and s.sum() == 499500.0
    a = store.array((4, 3), "int16")
    assert np.asarray(a).shape == (4, 3) and np.shares_memory(np.asarray(a), a.view())
    t = store.vector(ss.Struct("P", {"x": "float64", "name": "string"}))
    t.append({"x": 1.0, "name": "a"})
    raw = np.asarray(t)
    assert raw.dtype == t.dtype and isinstance(int(raw["name"][0]), int)  # raw, as view()


# 11 ------------------------------------------------------------------------ records by index
def test_a_record_read_by_index_resolves_what_it_owns(store):
    Inner = ss.Struct("Inner", {"label": "string"})
    P = ss.Struct("P", {"x": "float64", "name": "string", "other": "ref", "inner": Inner})
    t = store.vector(P)
    s = store.string("pointed at")
    t.append({"x": 1.0, "name": "first", "other": s, "inner": {"label": "deep"}})
    rec = t[0]
    assert isinstance(rec, ss.Record) and rec.struct == P and rec.dtype == P.dtype
    assert rec["name"] == "first" and rec[1] == "first" and rec["x"] == 1.0
    assert rec["other"] == s and rec["inner"]["label"] == "deep"
    assert isinstance(rec.raw["name"], np.integer) and t.view()["name"][0] == rec.raw["name"]
    assert rec.keys() == ["x", "name", "other", "inner"] and len(rec) == 4
    assert list(rec)[:2] == [1.0, "first"]
    assert rec.to_dict() == {"x": 1.0, "name": "first", "other": s, "inner": {"label": "deep"}}
    assert [r["name"] for r in t] == ["first"] and t[-1] == rec
    t.append(rec)  # its strings copied: owned by the new record
    assert t[1]["name"] == "first" and t[1].raw["name"] != rec.raw["name"]
    assert t.pop()["inner"]["label"] == "deep" and "first" in repr(rec)
    with pytest.raises(KeyError):
        rec["nope"]


def test_an_array_of_records_reads_and_owns_them_as_a_table_does(store):
    S = ss.Struct("S", {"name": "string", "n": "i4,f8"})
    a = store.array(3, S)
    base = _strings(store)
    a[0] = {"name": "x", "n": (1, 2.0)}
    a[1:3] = [{"name": "y"}, {"name": "z"}]
    a[0] = {"name": "w"}  # drops "x"
    assert _strings(store) == base + 3
    rec = a[0]
    assert isinstance(rec, ss.Record) and rec["name"] == "w" and rec["n"].tolist() == (0, 0.0)
    pytest.importorskip("pandas")
    assert a.to_pandas()["name"].tolist() == ["w", "y", "z"]
    assert list(a.to_pandas().columns) == ["name", "n.f0", "n.f1"]
    a.drop()
    assert _strings(store) == base
