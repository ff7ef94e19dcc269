"""Records of a table in every form users build them: dicts, tuples, np.void, 0-d and length-1
structured arrays, structured arrays of another field order or castable types.  Refusals name
the field; strings made for refused rows, and strings of overwritten or cut-off records, are
dropped."""

import numpy as np
import pytest

import sharedstore as ss

pytestmark = pytest.mark.usefixtures("each_backend")  # the same tests, both backends

P = ss.Struct("P", {"x": "float64", "n": "int64", "label": "string", "pos": "float32[2]"})
OUTER = ss.Struct("Outer", {"id": "int32", "inner": P})


def _strings(store) -> int:
    return store.stats()["objects"].get("string", 0)


def test_one_record_in_every_form(store):
    t = store.vector(P)
    zero_d = np.zeros((), P.dtype)
    zero_d["x"] = 1
    one = np.zeros(1, P.dtype)
    one["x"] = 2
    t.append(zero_d)
    t.append(one)
    t.append(one[0])  # np.void
    t.append((4.0, 4, "four", [1, 2]))
    t.append({"x": 5.0, "label": "five"})
    assert t.insert(np.zeros((), P.dtype)) == 5
    t[5] = one
    assert t.view()["x"].tolist() == [1, 2, 2, 4, 5, 2]
    assert t.to_pandas()["label"].tolist() == ["", "", "", "four", "five", ""]


def test_another_field_order_goes_by_name(store):
    """numpy assigns one structured dtype to another by position: a table must not."""
    t = store.vector(P)
    src = np.zeros(3, dtype=[("n", "i8"), ("x", "f8")])
    src["n"], src["x"] = [1, 2, 3], [0.5, 1.5, 2.5]
    t.extend(src)
    assert t.view()["x"].tolist() == [0.5, 1.5, 2.5] and t.view()["n"].tolist() == [1, 2, 3]


def test_castable_fields_are_converted_and_others_refused_by_name(store):
    t = store.vector(P)
    ok = np.zeros(2, dtype=[("x", "f4"), ("n", "i2"), ("pos", "f8", (2,)), ("label", "U5")])
    ok["label"] = ["a", ""]
    t.extend(ok)
    assert t.to_pandas()["label"].tolist() == ["a", ""] and t.dtype == P.dtype
    fraction = np.full(1, 0.5, dtype=[("n", "f8")])
    for bad, field in ((fraction, "n"), (np.zeros(1, dtype=[("pos", "f4", (3,))]), "pos"),
                       (np.zeros(1, dtype=[("x", "U3")]), "x")):
        with pytest.raises(TypeError, match=f"field {field!r}"):
            t.extend(bad)
    with pytest.raises(TypeError, match="no field 'mass'"):
        t.extend(np.zeros(1, dtype=[("mass", "f8")]))
    assert len(t) == 2
    t.extend(np.full(1, 3.0, dtype=[("n", "f8")]))  # a whole number: the value is kept
    assert t.view()["n"].tolist() == [0, 0, 3]


def test_wrong_records_say_what_is_wrong(store):
    t = store.vector(P)
    with pytest.raises(TypeError, match="has 4 values"):
        t.append((1.0, 2))
    with pytest.raises(TypeError, match="no field 'mass'"):
        t.append({"mass": 1.0})
    with pytest.raises(TypeError, match="field 'x'"):
        t.append({"x": "heavy"})
    with pytest.raises(TypeError, match="one record"):
        t.append(np.zeros(2, P.dtype))
    with pytest.raises(TypeError, match="a record is"):
        t.append(3.5)
    with pytest.raises(TypeError, match="give a str"):
        t.append({"label": 5})
    with pytest.raises(TypeError, match="sequence of records"):
        t.extend({"x": 1.0})
    assert len(t) == 0


def test_strings_of_refused_rows_are_dropped(store):
    t = store.vector(P)
    t.append({"label": "kept"})
    before = _strings(store)
    with pytest.raises(TypeError):
        t.extend([{"label": "made first"}, {"x": "then refused"}])
    with pytest.raises(ValueError):
        t[0:1] = [{"label": "a"}, {"label": "b"}]
    assert _strings(store) == before and len(t) == 1


def test_overwritten_and_cut_off_records_drop_their_strings(store):
    t = store.vector(P)
    base = _strings(store)
    t.extend([{"label": f"s{i}"} for i in range(5)])
    assert _strings(store) == base + 5
    t[0] = {"label": "new"}  # drops "s0"
    t[1:3] = [{"label": "b"}, {"x": 1.0}]  # drops "s1", "s2"; makes "b"
    assert _strings(store) == base + 4
    t[3] = t[3]  # the same handle written back: kept
    assert t.to_pandas()["label"].tolist()[3] == "s3" and _strings(store) == base + 4
    t.pop()  # "s4"
    t.resize(2)  # the record holding no string, and "s3"
    assert _strings(store) == base + 2
    t.remove(0)
    assert _strings(store) == base + 1
    t.drop()
    assert _strings(store) == base


def test_nested_structs_own_their_strings(store):
    t = store.vector(OUTER)
    base = _strings(store)
    t.append({"id": 1, "inner": (1.0, 1, None, [0, 0])})
    rec = np.zeros((), OUTER.dtype)
    t.append(rec)
    src = np.zeros(1, dtype=[("inner", [("label", "U4"), ("x", "f8")]), ("id", "i4")])
    src["inner"]["label"] = "deep"
    src["inner"]["x"] = 2.5
    t.extend(src)
    view = t.view()
    assert view["inner"]["x"].tolist() == [1.0, 0.0, 2.5]
    h = int(view["inner"]["label"][2])
    del view
    assert store.ref(h).get() == "deep" and _strings(store) == base + 1
    t.remove(2)
    assert _strings(store) == base
