import numpy as np
import pytest

import sharedstore as ss
from sharedstore import _layout as L
from sharedstore._attachment import _block_span
from sharedstore._kernels import heap as KH


def test_size_classes_cover_and_agree():
    sizes = [KH.class_size(c) for c in range(200)]
    assert sizes == [L.class_size(c) for c in range(200)]
    assert sizes == sorted(set(sizes)) and all(s % 8 == 0 for s in sizes)
    for n in [*range(1, 2000), 10**6, 10**9, 2**40 + 3]:
        c = KH.size_class(n)
        assert L.class_size(c) >= n and (c == 0 or L.class_size(c - 1) < n)
        assert L.class_size(c) <= max(16, n * 1.25 + 8)  # at most 25% waste


@pytest.mark.slow  # a million strings: 2 s
def test_million_string_churn_keeps_used_flat(store):
    """Freed blocks and handle slots are reused: create/drop in a loop does not grow the heap."""
    for _ in range(1000):
        store.string("warm up the free lists").drop()
    before = store.stats()
    for _ in range(1_000_000):
        store.string("some text").drop()
    st = store.stats()
    assert st["used"] == before["used"]
    assert st["committed"] == before["committed"]
    assert st["handles"] == before["handles"]  # the one freed slot is reused every time


def _random_churn(store, rng, steps):
    """Random string creates and drops; drops every survivor at the end."""
    live = []
    for _ in range(steps):
        if live and rng.random() < 0.5:
            live.pop(int(rng.integers(len(live)))).drop()
        else:
            live.append(store.string("x" * int(rng.integers(0, 3000))))
    for r in live:
        r.drop()


def test_mixed_churn_reuses_memory(store):
    rng = np.random.default_rng(0)
    _random_churn(store, rng, 20_000)
    base = store.stats()["used"]
    _random_churn(store, rng, 20_000)
    assert store.stats()["used"] == base


def test_commit_grows_with_use(store):
    c0 = store.stats()["committed"]
    s = store.string("x" * (50 << 20))
    assert store.stats()["committed"] >= c0 + (50 << 20)
    assert len(s.get()) == 50 << 20


def test_a_big_allocation_commits_its_block_once(store):
    """Committed memory is real memory on tmpfs: a big block commits what it spans, not twice."""
    for n in (1 << 20, 12_500_000, 1 << 24):  # 8 MB, 100 MB (class 96 MiB), 128 MiB (160 MiB)
        assert _block_span(n * 8) == L.class_size(KH.size_class(n * 8 + 8))
        before = store.stats()
        store.vector("float64", capacity=n)
        st = store.stats()
        slack_before = before["committed"] - before["used"]
        # what the block needs and a page more, or the usual 50% step if that is more
        assert st["committed"] - st["used"] <= max(slack_before, before["committed"] // 2) + L.PAGE


def test_full_store_raises_and_stays_usable(name):
    with ss.create(name, size=8 << 20) as store:
        refs = []
        full = r"is full \(reserved 8.0 MiB\): create it with a larger size="
        with pytest.raises(ss.StoreFullError, match=full):
            for _ in range(1000):
                refs.append(store.string("x" * 100_000))
        with pytest.raises(MemoryError):
            store.string("y" * (20 << 20))  # larger than the whole reservation
        assert len(refs) > 10
        for r in refs[:10]:
            r.drop()
        again = [store.string("z" * 100_000) for _ in range(10)]  # freed memory is reused
        assert again[-1].get() == "z" * 100_000
        store["still"] = "works"
        assert store["still"] == "works"


def test_handle_table_grows_past_one_chunk(store):
    n = L.HT_CHUNK + 100
    refs = [store.integer(i) for i in range(n)]
    assert refs[-1].get() == n - 1 and refs[0].get() == 0
    assert store.stats()["handles"] >= n
