"""The ref contract (``tests/_contract.py``) for every kind of ref, obtained every way: from its
factory, ``store.ref(id)``, ``Class(store, id)``, ``pickle`` in this process, and in a spawned
worker.  Every step (a public method, or protocol) runs as the *first* call on a fresh ref of
a fresh object; then ``drop()`` must give back exactly the objects and bytes it held."""

import gc
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

import pytest

from . import _contract as C

SPAWNED = "spawned worker"
pytestmark = pytest.mark.usefixtures("each_backend")


@pytest.fixture(scope="module")
def spawned():
    """One spawned worker for the module: refs reach it pickled, as they reach a pool's."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        yield pool


def _warm(store, kind, spawned, backend):
    """Run every step once first, here and in the worker: the store interns a vector's dtype
    once, and a process's first view makes its pin list; those stay (they are not an
    object's to free)."""
    steps = C.KINDS[kind].steps
    make = C.KINDS[kind].make
    here = C.run_steps(kind, {s: make(store) for s in steps})
    there = spawned.submit(C.run_steps, kind, {s: make(store) for s in steps}, backend)
    there = there.result(120)
    assert {s: r for s, r in {**here, **there}.items() if r != "ok"} == {}


@pytest.mark.parametrize("way", [*C.WAYS, SPAWNED])
@pytest.mark.parametrize("kind", list(C.KINDS))
def test_every_step_of_every_ref_every_way(store, kind, way, spawned, each_backend):
    _warm(store, kind, spawned, each_backend)
    gc.collect()
    before = C.snapshot(store)
    made = {step: C.KINDS[kind].make(store) for step in C.KINDS[kind].steps}
    if way == SPAWNED:
        results = spawned.submit(C.run_steps, kind, made, each_backend).result(timeout=120)
    else:
        refs = {step: C.WAYS[way](store, ref) for step, ref in made.items()}
        assert all(type(refs[s]) is type(made[s]) for s in made)
        del made
        results = C.run_steps(kind, refs)
        del refs
    assert {s: r for s, r in results.items() if r != "ok"} == {}
    gc.collect()  # (views taken by the steps pin their blocks until they are garbage)
    assert C.snapshot(store) == before  # drop() gave back exactly what the objects held
    assert store.check().clean


def test_the_contract_covers_every_public_method():
    """A public method added to a ref class without a step here fails this test."""
    import sharedstore as ss

    classes = {"string": ss.StringRef, "number": ss.NumberRef, "integer": ss.IntRef,
               "map": ss.MapRef, "list": ss.ListRef, "vector": ss.VectorRef,
               "table": ss.VectorRef, "array": ss.ArrayRef, "struct": ss.StructRef}
    inherited = {"drop", "id", "store"} | set(dir(object))
    mixins = {"map": "abc", "list": "abc"}
    for kind, cls in classes.items():
        public = {n for n in dir(cls) if not n.startswith("_")} - inherited
        if kind in mixins:  # the collections.abc mixins are covered by the steps that use them
            public = {n for n in public if n in cls.__dict__}
        covered = {n for step in C.KINDS[kind].steps for n in step.replace("/", " ").split()}
        missing = public - covered - {"to_arrow", "value"} - _NOT_FOR[kind]
        assert not missing, f"{kind}: no contract step for {sorted(missing)}"


# methods that do not apply to a kind, with the reason
_NOT_FOR = {
    "string": set(), "number": set(), "integer": set(), "map": set(), "list": set(),
    "vector": {"shape"},  # (VectorRef has no shape; ArrayRef's shape step covers it)
    "table": {"to_numpy", "clear", "resize", "shape"},  # (the vector kind covers these)
    "array": {"append", "extend", "insert", "remove", "resize", "pop", "clear", "free_slots",
              "struct"},  # (refused: the "fixed shape" step)
    "struct": set(),
}
