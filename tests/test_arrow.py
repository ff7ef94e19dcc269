"""VectorRef.to_arrow(): zero-copy where Arrow's layout allows, strings resolved, pins held."""

import gc
import sys

import numpy as np
import pytest

import sharedstore as ss

from .test_structs import SCHEMAS

pa = pytest.importorskip("pyarrow")


def _data_address(arrow_array) -> int:
    return arrow_array.buffers()[1].address


def _pins(store) -> int:
    return sum(store._pins.values())


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "int8", "uint16"])
def test_numeric_vector_is_zero_copy(store, dtype):
    v = store.vector(dtype)
    v.extend(np.arange(100) % 50)
    a = v.to_arrow()
    assert isinstance(a, pa.Array) and a.type == pa.from_numpy_dtype(np.dtype(dtype))
    assert a.to_pylist() == (np.arange(100) % 50).tolist()
    assert _data_address(a) == v.view().ctypes.data  # the shared memory itself


def test_bool_and_empty_vectors(store):
    v = store.vector("bool")
    v.extend([True, False, True])
    assert v.to_arrow().to_pylist() == [True, False, True]  # Arrow packs bools: a copy
    assert len(store.vector("float64").to_arrow()) == 0


def test_table_of_records_resolves_strings_and_keeps_types(store):
    P = ss.load_schema(SCHEMAS / "particles.toml")["Particle"]
    t = store.vector(P)
    t.extend([{"mass": 1.5, "id": 7, "name": "alpha", "tag": "ab", "pos": [1, 2, 3],
               "alive": True},
              {"mass": 2.5, "id": 8, "tag": "c"}])
    table = t.to_arrow()
    assert isinstance(table, pa.Table)
    assert table.column_names == ["pos", "mass", "id", "name", "tag", "alive"]
    assert table.schema.field("pos").type == pa.list_(pa.float32(), 3)
    assert table.schema.field("mass").type == pa.float64()
    assert table.schema.field("name").type == pa.string()
    assert table.schema.field("tag").type == pa.string()
    assert table.schema.field("alive").type == pa.bool_()
    assert table.to_pylist() == [
        {"pos": [1.0, 2.0, 3.0], "mass": 1.5, "id": 7, "name": "alpha", "tag": "ab",
         "alive": True},
        {"pos": [0.0, 0.0, 0.0], "mass": 2.5, "id": 8, "name": "", "tag": "c", "alive": False},
    ]
    # interleaved records cannot be an Arrow column as they are: each column is one copy
    assert table.column("mass").chunk(0).buffers()[1].address != t.view()["mass"].ctypes.data


def test_nested_records_become_struct_arrays(store):
    structs = ss.load_schema(SCHEMAS / "particles.toml")
    Cell = structs["Cell"]
    t = store.vector(Cell)
    rec = np.zeros(1, dtype=Cell.dtype)
    rec["size"] = 2.0
    rec["first"]["mass"] = 3.0
    rec["first"]["name"] = store.string("inner").id  # the record owns it from here
    rec["first"]["tag"] = "t"
    t.extend(rec)
    [row] = t.to_arrow().to_pylist()
    assert row["size"] == 2.0 and row["center"] == [0.0, 0.0, 0.0]
    assert row["first"]["mass"] == 3.0 and row["first"]["name"] == "inner"
    assert row["first"]["tag"] == "t" and row["owner"] == 0


def test_sub_arrays_are_zero_copy_fixed_size_lists(store):
    a = store.array((4, 3), "float32")
    a[:] = np.arange(12, dtype=np.float32).reshape(4, 3)
    arr = a.to_arrow()
    assert arr.type == pa.list_(pa.float32(), 3)
    assert arr.to_pylist() == np.arange(12).reshape(4, 3).tolist()
    assert _data_address(arr.values) == a.view().ctypes.data
    cube = store.array((2, 2, 2), "int64")
    assert cube.to_arrow().to_pylist() == [[[0, 0], [0, 0]], [[0, 0], [0, 0]]]


def test_arrow_buffers_hold_the_pin_while_the_vector_grows(store):
    v = store.vector("float64", capacity=1000)
    v.extend(np.arange(1000.0))
    before = _pins(store)
    a = v.to_arrow()
    address = _data_address(a)
    gc.collect()
    assert _pins(store) == before + 1  # the view is gone from Python, its pin is not
    v.extend(np.zeros(100_000))  # grows: the records move to a new block
    for _ in range(20):  # churn that would reuse the old block if it were freed
        store.vector("float64").extend(np.full(1000, -1.0))
    assert _data_address(a) == address and a.to_pylist() == np.arange(1000.0).tolist()
    table = pa.table({"x": a})
    del a
    gc.collect()
    assert _pins(store) == before + 1  # the table holds the buffer, the buffer the view
    del table
    gc.collect()
    assert _pins(store) == before


def test_a_missing_pyarrow_says_how_to_install_it_and_pins_nothing(store, monkeypatch):
    v = store.vector("float64")
    v.extend([1.0])
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'sharedstore\[arrow\]'"):
        v.to_arrow()
    assert _pins(store) == 0
