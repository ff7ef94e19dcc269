"""Struct schemas: dtypes, schema files, and the errors they give."""

import json
from pathlib import Path

import numpy as np
import pytest

import sharedstore as ss

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


@pytest.mark.parametrize("fields, match", [
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
    assert P == ss.Struct("Particle", {"pos": "float32[3]", "mass": "float64", "id": "int64",
                                       "name": "string", "tag": "str[8]", "alive": "bool"})
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
