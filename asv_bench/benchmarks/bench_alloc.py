"""The heap allocator under churn: raw alloc/free, string create/drop, memory after churn.

Timed calls do ``OPS`` operations (divide by ``OPS`` for one).  The ``track_*`` figures run
``CYCLES`` create/drop cycles and report what the store holds afterwards: if freed blocks are
reused, ``used`` returns to where it started and ``committed`` stops growing.
"""

from sharedstore._kernels.heap import heap_alloc_free_test

from .common import Bench

OPS = 10_000
CYCLES = 100_000
RING = 8  # strings alive at once during the churn cycles


def _alloc_free(store, nbytes):
    """One allocate-and-free of ``nbytes`` through the store's slow path when it needs memory."""
    args = (store.mem, store._token, nbytes)
    r = heap_alloc_free_test(*args)
    if r < 0:
        r = store._slow(r, heap_alloc_free_test, args, "heap_alloc_free_test", hint=nbytes)
    return r


class Alloc(Bench):
    """Allocator churn for blocks of ``nbytes`` (a size class below a page, one near a
    page, a large block) and string create+drop churn of strings of ``nbytes`` bytes."""

    params = [[16, 1000, 100_000]]
    param_names = ["nbytes"]
    timeout = 120

    def setup(self, nbytes):
        self.value = "x" * nbytes
        # sizes between nbytes/2 and 3*nbytes/2, so the churn mixes neighbouring size classes
        self.values = ["y" * max(1, nbytes // 2 + nbytes * i // 15) for i in range(16)]
        with self.resources() as res:
            self.store = res.store("alloc")
            assert _alloc_free(self.store, nbytes) > 0  # kernel warm, memory committed
            self.store.string(self.value).drop()
            self.store.string(max(self.values, key=len)).drop()

    def time_alloc_free(self, nbytes):
        mem, token = self.store.mem, self.store._token
        for _ in range(OPS):
            if heap_alloc_free_test(mem, token, nbytes) < 0:
                _alloc_free(self.store, nbytes)

    def time_string_create_drop(self, nbytes):
        string = self.store.string
        v = self.value
        for _ in range(OPS):
            string(v).drop()

    # ------------------------------------------------------------------ memory after churn
    def _churn(self):
        """``CYCLES`` cycles of create one string, drop the oldest of ``RING`` alive; then
        drop the rest.  Returns the store's stats before and after."""
        store = self.store
        before = store.stats()
        string = store.string
        values = self.values
        ring = [string(values[i]) for i in range(RING)]
        for i in range(CYCLES - RING):
            ring[i % RING].drop()
            ring[i % RING] = string(values[i % len(values)])
        for r in ring:
            r.drop()
        after = store.stats()
        assert after["objects"].get("string", 0) == before["objects"].get("string", 0)
        return before, after

    def track_used_bytes_after_churn(self, nbytes):
        return self._churn()[1]["used"]

    track_used_bytes_after_churn.unit = "bytes"

    def track_used_bytes_leaked_by_churn(self, nbytes):
        before, after = self._churn()
        return after["used"] - before["used"]

    track_used_bytes_leaked_by_churn.unit = "bytes"

    def track_committed_bytes_after_churn(self, nbytes):
        return self._churn()[1]["committed"]

    track_committed_bytes_after_churn.unit = "bytes"

    # ------------------------------------------------------------------ peak memory
    def peakmem_reference(self, nbytes):
        pass

    def peakmem_string_create_drop(self, nbytes):
        string = self.store.string
        v = self.value
        for _ in range(OPS):
            string(v).drop()

    def peakmem_1000_live_strings(self, nbytes):
        string = self.store.string
        v = self.value
        live = [string(v) for _ in range(1000)]
        assert len(live) == 1000

    def peakmem_1000_live_strings_python(self, nbytes):
        """Peer: 1000 distinct Python str objects of the same size, in a list."""
        v = self.value[:-8]
        live = [v + f"{i:08d}" for i in range(1000)]
        assert len(live) == 1000
