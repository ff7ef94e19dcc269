"""CPython's own conformance tests of lists and mappings (``test.list_tests``,
``test.mapping_tests``, from the standard library's test package) run against ListRef, MapRef
and the Store.

Each test class of the standard library runs whole; a test that cannot apply is skipped, the
skip naming the test and its reason (``pytest -rs`` lists them).  The reasons are of two kinds:
what a shared object is not (keys of any hashable type, a repr of its items, values that are
the objects given rather than copies, a live iterator, instances of classes that cannot be
pickled), and what the stdlib test asks of ``list``/``dict`` beyond the
MutableSequence/MutableMapping protocols (``sort``, ``copy``, ``fromkeys``).
"""

import unittest

import pytest

import sharedstore as ss

from .conftest import unique_name

list_tests = pytest.importorskip("test.list_tests")
mapping_tests = pytest.importorskip("test.mapping_tests")


@pytest.fixture(autouse=True)
def _objects_live_in_a_fresh_store(request, store):
    """Every test's lists and maps live in the ``store`` fixture's store (unlinked at
    teardown, whatever happens); a Store test's stores are unlinked too."""
    made = []

    def new_store(**items):
        s = ss.create(unique_name("proto"))
        made.append(s)
        s.update(items)
        return s

    for cls in (_List, _Map):
        cls.store = store
    _Stores.new = staticmethod(new_store)
    yield
    for s in made:
        s.close()
        try:
            s.unlink()
        except FileNotFoundError:
            pass


def _skipping(skips):
    """A class decorator: each test of ``skips`` skipped, the reason naming it (``-rs``)."""
    def apply(cls):
        for name, reason in skips.items():
            assert hasattr(cls, name), name  # (a stdlib test renamed: its skip goes too)
            setattr(cls, name, unittest.skip(f"{cls.__name__}.{name}: {reason}")(
                lambda self: None))
        return cls
    return apply


class _List(ss.ListRef):
    """``type2test`` for the list tests: ``_List(iterable)`` is a new ListRef of the test's
    store holding it; ``lst.__init__(iterable)`` refills it, as ``list.__init__`` does."""

    __slots__ = ()
    store = None

    def __new__(cls, *args, **kwargs):
        lst = ss.ListRef.__new__(cls)
        lst._init(cls.store, cls.store.vector().id)
        return lst

    def __init__(self, items=()):
        self.clear()
        self.extend(items)


class _Map(ss.MapRef):
    """``type2test`` for the mapping tests: a new MapRef of the test's store, filled as
    ``dict(*args, **kwargs)``."""

    __slots__ = ()
    store = None

    def __new__(cls, *args, **kwargs):
        m = ss.MapRef.__new__(cls)
        m._init(cls.store, cls.store.map().id)
        return m

    def __init__(self, other=(), /, **kwargs):
        self.clear()
        self.update(other, **kwargs)


class _Stores:
    """``type2test`` for the Store: a new store (``new`` is set per test)."""

    new = None


NOT_LIST = ("a ListRef is a MutableSequence (with + and * as list's, giving local lists); "
            "list's {} is not part of that protocol")
REPR = "a ref's repr names the shared object (<{} id=... of store ...>), not its items"
LOCAL_CLASS = ("stores an instance of a class defined inside the test function: a value that is "
               "not native is pickled, and such a class cannot be")
COPIES = ("a value read back is a copy (the store holds values, not Python objects): the "
          "list setdefault() returns is not the one stored, and appending to it changes "
          "nothing stored")
KEYS = ("keys are str, bytes or int: a key of a class with its own __hash__ and __eq__ is a "
        "TypeError, never hashed or compared")


@_skipping({
    "test_copy": NOT_LIST.format("copy()"),
    "test_sort": NOT_LIST.format("sort()"),
    "test_repr": REPR.format("ListRef"),
    "test_repr_deep": REPR.format("ListRef"),
    "test_contains_order": LOCAL_CLASS,
    "test_index": LOCAL_CLASS,
    "test_remove": LOCAL_CLASS,
    "test_pickle": "a ref pickles as its store and id (the same shared list in another "
                   "process), not as a copy of its items (tests/_contract.py checks that)",
    "test_exhausted_iterator": "a ListRef's iterator reads one consistent snapshot, taken by "
                               "iter(): items appended after it do not appear",
    "test_free_after_iterating": "a ListRef's iterator holds its snapshot, not the ListRef: "
                                 "the helper's object is freed before the helper has made "
                                 "its iterator, which the helper cannot handle",
})
class TestListRef(list_tests.CommonTest):
    type2test = _List


@_skipping({
    "test_fromkeys": "dict.fromkeys is not part of the MutableMapping protocol "
                     "(store.map(dict.fromkeys(keys)) is the way)",
    "test_copy": "dict.copy() is not part of the MutableMapping protocol (store.map(m) or "
                 "dict(m) is the way)",
    "test_popitem": "pops from a map and its copy(), which is not part of the MutableMapping "
                    "protocol",
    "test_repr": REPR.format("MapRef"),
    "test_repr_deep": REPR.format("MapRef"),
    "test_setdefault": COPIES,
    "test_getitem": KEYS,
    "test_pop": KEYS,
    "test_eq": KEYS,
})
class TestMapRef(mapping_tests.TestHashMappingProtocol):
    type2test = _Map


@_skipping({
    "test_fromkeys": "dict.fromkeys is not part of the MutableMapping protocol",
    "test_copy": "dict.copy() is not part of the MutableMapping protocol; a store is one "
                 "shared object (dict(store) is a copy of its named values)",
    "test_popitem": "expects two mappings filled alike to pop alike: each store hashes with a "
                    "random seed of its own (against hash flooding), so two stores order the "
                    "same keys differently",
    "test_setdefault": COPIES,
})
class TestStore(mapping_tests.TestMappingProtocol):
    def _empty_mapping(self):
        return _Stores.new()

    def type2test(self, *args, **kwargs):
        return _Stores.new(**dict(*args, **kwargs))
