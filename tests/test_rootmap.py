import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import sharedstore as ss

from .conftest import unique_name

pytestmark = pytest.mark.usefixtures("each_backend")  # the same tests, both backends


def test_named_values(store):
    s = store.string("Hello")
    store["greeting"] = s
    store.set("n", 4.2)
    store["i"] = 7
    store["nested"] = {"value": "Hello", "list": [1, 2]}
    assert store["greeting"].get() == "Hello"
    assert isinstance(store["greeting"], ss.StringRef)
    assert store.get("n") == 4.2 and store["i"] == 7
    assert store["nested"] == {"value": "Hello", "list": [1, 2]}
    assert "greeting" in store and "nope" not in store
    assert len(store) == 4 and sorted(store) == ["greeting", "i", "n", "nested"]
    assert store.get("nope") is None and store.get("nope", 0) == 0
    assert store.delete("n") is True and store.delete("n") is False
    del store["i"]
    with pytest.raises(KeyError):
        store["i"]
    with pytest.raises(KeyError):
        del store["i"]
    assert dict(store.items())["nested"]["list"] == [1, 2]


def test_value_types(store):
    values = [None, True, False, 0, -1, 2**63 - 1, 2**100, 1.5, float("inf"), "", "ü",
              b"", b"\x00\xff", (1, 2), {"a": 1}, np.arange(3)]
    for i, v in enumerate(values):
        store[f"v{i}"] = v
    for i, v in enumerate(values):
        got = store[f"v{i}"]
        if isinstance(v, np.ndarray):
            assert np.array_equal(got, v)
        else:
            assert got == v and type(got) is type(v)


def test_key_types(store):
    store["s"] = 1
    store[b"s"] = 2
    store[7] = 3
    store[True] = 4  # True == 1, as in a dict
    assert store["s"] == 1 and store[b"s"] == 2 and store[7] == 3 and store[1] == 4
    with pytest.raises(TypeError):
        store[1.5] = 0
    with pytest.raises(TypeError):
        store[2**64] = 0
    assert 1.5 not in store


def test_many_keys_grow_and_shrink(store):
    n = 5000
    for k in range(n):
        store[f"key-{k}"] = k
    assert len(store) == n
    assert all(store[f"key-{k}"] == k for k in range(n))
    used_full = store.stats()["used"]
    for k in range(n):
        del store[f"key-{k}"]
    assert len(store) == 0 and list(store) == []
    assert store.stats()["used"] < used_full


def test_large_values_and_replace_frees(store):
    store["big"] = "x" * 1_000_000
    assert store["big"] == "x" * 1_000_000
    used = store.stats()["used"]
    for _ in range(50):
        store["big"] = "y" * 1_000_000
    assert store["big"][0] == "y"
    assert store.stats()["used"] <= used + 4096


keys = st.one_of(st.text(max_size=12), st.binary(max_size=12), st.integers(-(2**63), 2**63 - 1))
values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                   st.text(max_size=40), st.binary(max_size=40),
                   st.lists(st.integers(), max_size=3))


class RootMapMachine(RuleBasedStateMachine):
    """The root map behaves as a dict."""

    known = Bundle("known")

    @initialize()
    def setup(self):
        self.name = unique_name("hyp")
        self.store = ss.create(self.name, size=64 << 20)
        self.model = {}

    @rule(target=known, k=keys, v=values)
    def set(self, k, v):
        self.store[k] = v
        self.model[k if not isinstance(k, bool) else int(k)] = v
        return k

    @rule(k=known)
    def delete(self, k):
        assert self.store.delete(k) == (k in self.model)
        self.model.pop(k, None)

    @rule(k=st.one_of(keys, known))
    def get(self, k):
        if k in self.model:
            assert self.store[k] == self.model[k]
        else:
            with pytest.raises(KeyError):
                self.store[k]

    @invariant()
    def same_contents(self):
        if hasattr(self, "store"):
            assert len(self.store) == len(self.model)
            assert dict(self.store.items()) == self.model

    def teardown(self):
        if hasattr(self, "store"):
            self.store.close()
            ss.unlink(self.name)


def test_root_map_behaves_as_a_dict():
    run_state_machine_as_test(
        RootMapMachine, settings=settings(max_examples=60, stateful_step_count=40, deadline=None))
