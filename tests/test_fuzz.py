"""Fuzzing: mutated store files never crash, hang or SIGBUS a process that attaches, checks and
reads them; they only raise the documented exceptions.

Each example mutates a few words of a small store (its header, process table, handle table and
heap; the words most worth hitting are offsets, so mutations include other words' values and
small numbers), then a forked child attaches, runs ``check()``, reads everything reachable, runs
``check(repair=True)`` and writes once.  The child's exit code is the verdict: a signal (SIGSEGV,
SIGBUS) or a hang fails the example, and hypothesis shrinks it to the fewest mutations.
``--fuzz-examples N`` runs longer (CI runs the default)."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sharedstore as ss
from sharedstore import _layout as L

from .conftest import unique_name
from .test_badinput import _in_child, _template, _write, read_everything

# 150 examples, a forked child each: about 35 s
pytestmark = pytest.mark.slow

_WORDS = None


@pytest.fixture(scope="module")
def template():
    name = unique_name("fuzz")
    try:
        data = _template(name)
    finally:
        try:
            ss.unlink(name)
        except FileNotFoundError:
            pass
    words = np.frombuffer(data, np.int64)
    top = int(words[L.W_HEAP_TOP])
    chunk = int(words[L.HT_DIR // 8])
    targets = (
        list(range(L.W_CLASS_HEADS + L.N_CLASSES))                         # header
        + list(range(L.PROC_TABLE // 8, L.PROC_TABLE // 8 + 16))           # process table
        + [L.HT_DIR // 8]                                                  # handle directory
        + list(range(chunk // 8, chunk // 8 + 24 * L.HT_WORDS))            # live handle entries
        + list(range(chunk // 8 + L.HT_CHUNK * L.HT_WORDS, top // 8))      # the objects' blocks
    )
    return data, np.array(targets), words


def _mutation(n_targets):
    return st.tuples(
        st.integers(0, n_targets - 1),
        st.sampled_from(["random", "small", "bit", "zero", "copy"]),
        st.integers(-(1 << 63), (1 << 63) - 1),
    )


def _apply(data, targets, words, muts):
    out = np.frombuffer(bytearray(data), np.int64).copy()
    for i, how, x in muts:
        w = int(targets[i])
        if how == "random":
            out[w] = x
        elif how == "small":
            out[w] = x % 64 - 8
        elif how == "bit":
            out[w] ^= np.int64(1) << np.int64(x % 63)
        elif how == "zero":
            out[w] = 0
        else:  # another word's value: most often an offset into the heap
            out[w] = words[int(targets[x % len(targets)])]
    return out.tobytes()


def test_mutated_stores_never_crash(template, tmp_path, request):
    data, targets, words = template
    path = str(tmp_path / "store")
    examples = request.config.getoption("--fuzz-examples")
    name = "fuzzed"
    ran = []

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(_mutation(len(targets)), min_size=1, max_size=6))
    def run(muts):
        _write(path, _apply(data, targets, words, muts))
        code = _in_child(read_everything, name, path)
        ran.append(code)
        assert code == 0, f"child exited with {code} after mutations {muts}"

    run()
    os.unlink(path)
    assert len(ran) >= min(examples, 50)
