"""Struct schemas: dtypes, schema files, and the errors they give."""

import json
from pathlib import Path

import numpy as np
import pytest

import sharedstore as ss

pytestmark = pytest.mark.usefixtures("each_backend")  # the same tests, both backends

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def test_struct_dtype_is_aligned_and_typed():
    P = ss.Struct("Particle", {"x": "float64", "y": "float64", "name": "string", "tag": "str[8]"})
    dt = P.dtype
    assert dt.names == ("x", "y", "name", "tag")
    assert dt["x"] == np.float64 and dt["tag"] == np.dtype("U8") and dt["name"] == np.int64
    assert dt.isalignedstruct and dt.itemsize % dt.alignment == 0
    assert P.strings == ("name",) and P.refs == ()


def test_every_field_kind():
    Inner = ss.Struct("Inner", {"a": "int8", "b": "float64"})
    S = ss.Struct("S", {
        "f": "f4", "c": "complex128", "t": "datetime64[ns]", "b": "bool", "raw": "bytes[5]",
        "v": "float32[3]", "m": "int64[2, 3]", "inner": Inner, "o": "ref", "s": "string",
    })
    dt = S.dtype
    assert dt["v"].shape == (3,) and dt["m"].shape == (2, 3) and dt["raw"] == np.dtype("S5")
    assert dt["inner"] == Inner.dtype and dt["t"] == np.dtype("datetime64[ns]")
    assert S.refs == ("o",) and S.strings == ("s",)
    rec = np.zeros(2, dtype=dt)
    rec["inner"]["b"] = 2.5
    assert rec["inner"]["b"].sum() == 5.0


@pytest.mark.parametrize(("fields", "match"), [
    ({"x": "float65"}, "unknown type 'float65'"),
    ({"x": "str"}, "no fixed size"),
    ({"x": "str[0]"}, "at least 1"),
    ({"x": "float32[0]"}, "at least 1"),
    ({"x": "float32[-2]"}, "at least 1"),
    ({"x": "object"}, "no fixed size"),
    ({"x": 5}, "must be a string or a Struct"),
    ({"1x": "int8"}, "not an identifier"),
    ({}, "at least one field"),
])
def test_bad_fields(fields, match):
    with pytest.raises(ss.SchemaError, match=match):
        ss.Struct("S", fields)
    with pytest.raises(ValueError):
        ss.Struct("S", fields)


def test_bad_struct_name():
    with pytest.raises(ss.SchemaError, match="not an identifier"):
        ss.Struct("my struct", {"x": "int8"})


def test_load_the_shipped_schema():
    structs = ss.load_schema(SCHEMAS / "particles.toml")
    P, C = structs["Particle"], structs["Cell"]
    assert ss.Struct("Particle", {"pos": "float32[3]", "mass": "float64", "id": "int64",
                                  "name": "string", "tag": "str[8]", "alive": "bool"}) == P
    assert C.dtype["first"] == P.dtype and C.refs == ("owner",)


def test_json_schema_matches_toml(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"Particle": {"pos": "float32[3]", "mass": "float64", "id": "int64",
                                          "name": "string", "tag": "str[8]", "alive": "bool"}}))
    assert ss.load_schema(p)["Particle"] == ss.load_schema(SCHEMAS / "particles.toml")["Particle"]


def test_schema_errors_name_file_line_and_field(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[A]\nx = "int8"\n\n[B]\ny = "float64"\nz = "floatish"\n')
    with pytest.raises(ss.SchemaError, match=r"bad.toml, line 6\).*|struct 'B', field 'z'") as e:
        ss.load_schema(p)
    assert "struct 'B', field 'z'" in str(e.value) and "line 6" in str(e.value)

    p.write_text('[A]\nx = "int8"\nx = "int16"\n')
    with pytest.raises(ss.SchemaError, match="line 3"):
        ss.load_schema(p)

    p.write_text('[A]\nx = "Later"\n[Later]\ny = "int8"\n')
    with pytest.raises(ss.SchemaError, match="unknown type 'Later'"):
        ss.load_schema(p)

    p.write_text('x = "int8"\n')
    with pytest.raises(ss.SchemaError, match="must be a table of fields"):
        ss.load_schema(p)

    j = tmp_path / "dup.json"
    j.write_text('{"A": {"x": "int8",\n "x": "int16"}}')
    with pytest.raises(ss.SchemaError, match="line 2: duplicate name 'x'"):
        ss.load_schema(j)

    j.write_text('{"A": {"x": "int8",}')
    with pytest.raises(ss.SchemaError, match="not valid JSON"):
        ss.load_schema(j)


# ---------------------------------------------------------------------------- records in a store
import multiprocessing as mp  # noqa: E402

from . import _workers as W  # noqa: E402


@pytest.fixture
def Particle():
    return ss.load_schema(SCHEMAS / "particles.toml")["Particle"]


def test_new_get_set(store, Particle):
    p = Particle.new(store, mass=1.0, name="a", pos=[1, 2, 3])
    assert p["mass"] == 1.0 and p["name"] == "a" and p["tag"] == "" and p["alive"] is False
    assert p["pos"].tolist() == [1.0, 2.0, 3.0]
    p["mass"] = 2.0
    p.set_key("name", "b")
    p["tag"] = "hello"
    p["alive"] = True
    assert p.get_key("mass") == 2.0 and p["name"] == "b" and p["tag"] == "hello" and p["alive"]
    pos = p["pos"]
    pos[0] = 99  # a copy
    assert p["pos"][0] == 1.0
    with pytest.raises(KeyError):
        p["nope"]
    with pytest.raises(TypeError, match="has no field 'nope'"):
        Particle.new(store, nope=1)
    with pytest.raises(TypeError):
        p["name"] = 5


def test_proxy(store, Particle):
    q = Particle.new_proxy(store, id=7)
    q.mass += 1
    q.name = "proxied"
    assert (q.id, q.mass, q.name) == (7, 1.0, "proxied")
    with pytest.raises(AttributeError):
        q.nope = 1
    with pytest.raises(AttributeError):
        _ = q.nope
    assert "mass" in dir(q)
    assert store.ref(q._id)["name"] == "proxied"
    q._drop()
    with pytest.raises(ss.UseAfterFreeError):
        _ = q.mass


def test_drop_frees_owned_strings_and_memory(store, Particle):
    Particle.new(store).drop()  # interns the schema (one string, one entry in the schema map)
    base = store.stats()
    for _ in range(200):
        p = Particle.new(store, name="x" * 100, mass=1.0)
        p["name"] = "y" * 300  # the old string is dropped
        p.drop()
    after = store.stats()
    assert after["used"] == base["used"]
    assert after["objects"].get("struct", 0) == 0
    assert after["objects"]["string"] == base["objects"]["string"] == 1  # the interned schema
    with pytest.raises(ss.UseAfterFreeError):
        p["mass"]
    with pytest.raises(ss.UseAfterFreeError):
        p.drop()


def test_nested_struct_strings_are_owned(store):
    structs = ss.load_schema(SCHEMAS / "particles.toml")
    Cell = structs["Cell"]
    c = Cell.new(store, size=2.0)
    o = store.string("owner")
    c["owner"] = o
    c["first"] = np.zeros((), dtype=structs["Particle"].dtype)
    assert c["owner"].get() == "owner" and c["first"]["mass"] == 0
    first = Cell.dtype.fields["first"][1]
    assert Cell.string_offsets == (first + structs["Particle"].string_offsets[0],)
    c.drop()
    assert o.get() == "owner"  # refs are not owned


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_worker_opens_record_without_schema(store, Particle, ctx):
    p = Particle.new(store, mass=1.5, name="shared", pos=[1, 2, 3], id=9)
    with mp.get_context(ctx).Pool(1) as pool:
        name, fields = pool.apply(W.read_struct, (store, p.id))
    assert name == "Particle" and fields["mass"] == 1.5 and fields["name"] == "shared"
    assert fields["pos"] == [1.0, 2.0, 3.0] and fields["id"] == 9
    assert p["mass"] == 2.5 and p["name"] == "shared!"


def test_concurrent_string_field_writes_do_not_leak(store, Particle):
    p = Particle.new(store, name="start")
    strings = store.stats()["objects"]["string"]
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=W.rename_many, args=(store, p.id, 2000, f"w{i}")) for i in range(2)]
    for q in procs:
        q.start()
    W.rename_many(store, p.id, 2000, "parent")
    for q in procs:
        q.join(60)
        assert q.exitcode == 0
    assert store.stats()["objects"]["string"] == strings  # one string owned, none leaked
    assert p["name"].rsplit("-", 1)[1] == "1999"
