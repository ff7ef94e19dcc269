"""Sample values of every kind of ``_layout.VALUE_KINDS`` (tests/test_value_kinds.py and
tests/test_fastpath.py run them)."""

import struct

import numpy as np

from sharedstore import _layout as L


class Complex(complex):
    """A subclass: stored pickled, so it reads back as itself."""


#: values of each kind, by tag: a kind of the table without samples fails
#: test_value_kinds.py (adding a kind: the checklist in sharedstore/_values.py)
SAMPLES = {
    L.V_NONE: [None],
    L.V_FALSE: [False],
    L.V_TRUE: [True],
    L.V_INT: [0, -7, 2**63 - 1, -(2**63)],
    L.V_FLOAT: [1.5, -0.0, float("inf")],
    L.V_STR: ["", "text", "é€𝄞" * 50, "lone \udcff surrogate"],
    L.V_BYTES: [b"", b"\x00\xff" * 300],
    L.V_REF: ["<ref>"],  # (made in each store: see sample)
    L.V_PICKLE: [{"a": [1, 2]}, 2**64, np.float64(2.5), np.complex128(1 - 1j), Complex(1, 2)],
    L.V_ARRAY: [np.arange(6.0).reshape(2, 3), np.array([1 + 2j, -3j])],
    L.V_COMPLEX: [1.5 - 2j, 3j, complex(-0.0, -0.0), complex(float("inf"), -1e300),
                  complex(2**53, 0.1)],
}


def sample(store, v):
    """A sample as it is stored in ``store`` (a ref's is a string of that store)."""
    return store.string("hello") if isinstance(v, str) and v == "<ref>" else v


def same(a, b):
    """``a`` is ``b``'s value, of the same type (NaNs and signed zeros included)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, complex):
        return struct.pack("<dd", a.real, a.imag) == struct.pack("<dd", b.real, b.imag)
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return a == b
