"""Memory that comes back (issue 26): what a store holds after deletes, drops, dead views and a
long churn.

* ``ReinsertMemory``: 1M keys with 16-byte values, every other key deleted, those 500k keys
  inserted again with 32-byte values: ``committed / used`` and the re-insert's growth of
  ``committed``.
* ``DropReturnsBlocks``: a map of 1M values and a vector of 20M float64, both dropped: the
  store file's blocks on ``/dev/shm`` at the peak and after the drop (after / peak).
* ``ForkedViewRounds``: 30 rounds of a 16 MB vector, a forked child that takes a view and
  exits with ``os._exit(0)``, the vector dropped: the file's blocks at the end (target
  < 128 MB), with no manual call.
* ``Churn``: random sets and deletes at a fixed working set (~100k keys, values of 8..512
  bytes) for ``$SSBENCH_SOAK_SECONDS`` (default 20 s): the slope of the heap top (and of
  ``committed``, ``used``) in MB per hour, sampled every second.  A long soak with a CSV and a
  plot (from the repository's root, with ``PYTHONPATH`` pointing at the code to measure)::

      python -m asv_bench.benchmarks.bench_memory soak --minutes 30 --csv soak.csv --plot soak.png

What the allocation-heavy paths cost: ``bench_map.MapSet`` (new keys), ``bench_vectors.Append``
and ``AppendThroughput`` (appends), ``bench_strings.Strings.time_create`` and
``bench_alloc.Alloc.time_string_create_drop`` (strings).
"""

import argparse
import gc
import os
import sys
import time

import numpy as np

from .common import FORK, MB, Bench, Resources, file_bytes, heap_top


def _figures(store) -> dict:
    st = store.stats()
    return {"committed": st["committed"], "used": st["used"], "heap_top": heap_top(store),
            "file": file_bytes(store.path)}


# ---------------------------------------------------------------------- re-insert
REINSERT_KEYS = 1_000_000


class ReinsertMemory(Bench):
    """A map filled with ``REINSERT_KEYS`` str keys of 12 bytes holding 16-byte bytes values;
    every other key deleted; those 500k keys set again with 32-byte values (so the freed
    entries are a size too small for them).

    ``track_committed_over_used``: ``committed / used`` at the end (1.0: every committed
    byte holds live data); ``track_fill_committed_over_used``: the same after the fill, for
    reference; ``track_reinsert_committed_growth_mb``: how much ``committed`` grew during the
    re-insert (the freed memory reused: about the 8 MB the bigger values add, or less);
    ``track_end_used_mb``: ``used`` at the end."""

    number = 1
    timeout = 300

    def setup_cache(self):
        keys = [f"k{i:011d}" for i in range(REINSERT_KEYS)]
        v16, v32 = b"0123456789abcdef", b"0123456789abcdef" * 2
        with Resources() as res:
            store = res.store("reinsert")
            m = store.map()
            for k in keys:
                m[k] = v16
            fill = _figures(store)
            half = keys[1::2]
            for k in half:
                del m[k]
            deleted = _figures(store)
            for k in half:
                m[k] = v32
            end = _figures(store)
            assert len(m) == REINSERT_KEYS and m[keys[1]] == v32 and m[keys[0]] == v16
        return {"fill": fill, "deleted": deleted, "end": end}

    setup_cache.timeout = 300  # type: ignore[attr-defined]

    def track_committed_over_used(self, cache):
        return cache["end"]["committed"] / cache["end"]["used"]

    track_committed_over_used.unit = "committed / used"  # type: ignore[attr-defined]

    def track_fill_committed_over_used(self, cache):
        return cache["fill"]["committed"] / cache["fill"]["used"]

    track_fill_committed_over_used.unit = "committed / used"  # type: ignore[attr-defined]

    def track_reinsert_committed_growth_mb(self, cache):
        return (cache["end"]["committed"] - cache["deleted"]["committed"]) / MB

    track_reinsert_committed_growth_mb.unit = "MB"  # type: ignore[attr-defined]

    def track_end_used_mb(self, cache):
        return cache["end"]["used"] / MB

    track_end_used_mb.unit = "MB"  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- drop
class DropReturnsBlocks(Bench):
    """A map of 1M int keys holding floats and a vector of 20M float64 (160 MB) in one store,
    then both dropped (``m.drop()``, ``v.drop()``, no view left).

    ``track_after_over_peak``: the store file's blocks on ``/dev/shm``
    (``st_blocks * 512``) after the drop over their peak (near 0: the memory went back to
    the system; 1.0: the file keeps it all); ``track_peak_mb``, ``track_after_mb``; and
    ``track_committed_after_mb``, the store's ``committed`` after the drop."""

    number = 1
    timeout = 300

    def setup_cache(self):
        with Resources() as res:
            store = res.store("drop")
            m = store.map()
            for i, x in enumerate(np.random.default_rng(9).random(1_000_000).tolist()):
                m[i] = x
            peak = file_bytes(store.path)
            v = store.vector("float64")
            for _ in range(20):
                v.extend(np.ones(1_000_000))
            peak = max(peak, file_bytes(store.path))
            assert len(m) == 1_000_000 and len(v) == 20_000_000
            m.drop()
            v.drop()
            gc.collect()
            after = _figures(store)
        return {"peak": peak, "after": after["file"], "committed": after["committed"]}

    setup_cache.timeout = 300  # type: ignore[attr-defined]

    def track_after_over_peak(self, cache):
        return cache["after"] / cache["peak"]

    track_after_over_peak.unit = "after / peak"  # type: ignore[attr-defined]

    def track_peak_mb(self, cache):
        return cache["peak"] / MB

    track_peak_mb.unit = "MB"  # type: ignore[attr-defined]

    def track_after_mb(self, cache):
        return cache["after"] / MB

    track_after_mb.unit = "MB"  # type: ignore[attr-defined]

    def track_committed_after_mb(self, cache):
        return cache["committed"] / MB

    track_committed_after_mb.unit = "MB"  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- views of dead children
VIEW_ROUNDS = 30
VIEW_VALUES = 2_000_000  # 16 MB of float64


def _take_view_and_die(v):
    view = v.view()
    assert view[-1] == 1.0
    os._exit(0)


class ForkedViewRounds(Bench):
    """``VIEW_ROUNDS`` rounds of: a new 16 MB float64 vector, a ``fork`` child that takes
    ``v.view()`` and exits with ``os._exit(0)`` (its pin is never released by the child), the
    vector dropped.  No call to reclaim anything.

    ``track_file_mb_at_end``: the store file's blocks on ``/dev/shm`` at the end (target
    < 128 MB; 30 x 16 MB = 480 MB if no round's block comes back);
    ``track_committed_mb_at_end``: the store's ``committed``."""

    number = 1
    timeout = 300

    def setup_cache(self):
        ones = np.ones(VIEW_VALUES)
        with Resources() as res:
            store = res.store("deadviews")
            for _ in range(VIEW_ROUNDS):
                v = store.vector("float64")
                v.extend(ones)
                p = FORK.Process(target=_take_view_and_die, args=(v,))
                p.start()
                p.join(60)
                assert p.exitcode == 0, p.exitcode
                v.drop()
            end = _figures(store)
        return end

    setup_cache.timeout = 300  # type: ignore[attr-defined]

    def track_file_mb_at_end(self, cache):
        return cache["file"] / MB

    track_file_mb_at_end.unit = "MB"  # type: ignore[attr-defined]

    def track_committed_mb_at_end(self, cache):
        return cache["committed"] / MB

    track_committed_mb_at_end.unit = "MB"  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- churn
SOAK_ENV = "SSBENCH_SOAK_SECONDS"
CHURN_KEYSPACE = 200_000  # sets and deletes 50/50: ~100k keys live at any time
CHURN_BATCH = 10_000  # random draws per batch; the clock is read between batches
VALUE_SIZES = (8, 512)


def churn(store, seconds: float, sample_every: float = 1.0, seed: int = 26, on_sample=None,
          warmup: float | None = None):
    """Random sets (values of ``VALUE_SIZES`` bytes, uniformly) and deletes, 50/50, of keys
    drawn from ``CHURN_KEYSPACE`` in a new map of ``store`` (filled first with a random half
    of the keys), for ``warmup`` seconds (default: a tenth of ``seconds``, at most 60) and
    then ``seconds`` more, sampled every ``sample_every`` seconds.  Returns the samples:
    dicts of ``seconds`` (since the warm-up ended), ``ops`` (since then), ``live_keys``, and
    ``heap_top``, ``committed``, ``used``, ``file`` in bytes.  ``on_sample(sample)`` is
    called with each."""
    if warmup is None:
        warmup = min(60.0, seconds / 10)
    rng = np.random.default_rng(seed)
    keys = [f"key{i:07d}" for i in range(CHURN_KEYSPACE)]
    lo, hi = VALUE_SIZES
    pool = [rng.bytes(size) for size in range(lo, hi + 1)]
    m = store.map()
    for i in rng.permutation(CHURN_KEYSPACE)[:CHURN_KEYSPACE // 2].tolist():
        m[keys[i]] = pool[i % len(pool)]
    samples = []
    ops = 0
    start = time.perf_counter() + warmup
    next_sample, end = start, start + seconds
    delete = m.delete
    while True:
        now = time.perf_counter()
        if now >= next_sample:
            if not samples:
                ops = 0  # count from the first sample
            s = dict(_figures(store), seconds=now - start, ops=ops, live_keys=len(m))
            samples.append(s)
            if on_sample is not None:
                on_sample(s)
            next_sample += sample_every * (1 + int((now - next_sample) / sample_every))
        if now >= end:
            break
        which = rng.integers(0, CHURN_KEYSPACE, CHURN_BATCH).tolist()
        sets = (rng.random(CHURN_BATCH) < 0.5).tolist()
        sizes = rng.integers(0, len(pool), CHURN_BATCH).tolist()
        for k, is_set, size in zip(which, sets, sizes):
            if is_set:
                m[keys[k]] = pool[size]
            else:
                delete(keys[k])
        ops += CHURN_BATCH
    m.drop()
    return samples


def slope_mb_per_hour(samples, field: str) -> float:
    """The least-squares slope of ``field`` (bytes) against time, in MB per hour."""
    t = np.array([s["seconds"] for s in samples]) / 3600.0
    y = np.array([s[field] for s in samples]) / MB
    if len(t) < 2 or t[-1] == t[0]:
        return float("nan")
    return float(np.polyfit(t, y, 1)[0])


def soak_seconds() -> float:
    return float(os.environ.get(SOAK_ENV, "20"))


class Churn(Bench):
    """Random ``m[k] = value`` / ``m.delete(k)``, 50/50, over a key space of 200k (so ~100k
    keys live), values of 8..512 random bytes, in one process for ``$SSBENCH_SOAK_SECONDS``
    (default 20; a soak: 1800) after a warm-up of a tenth of that (at most 60 s), sampled
    every second.  With a fixed working set, a heap that
    reuses what is freed levels off: the slopes should be ~0.

    ``track_heap_top_slope_mb_per_hour``: the heap top's least-squares slope (the end of the
    memory ever handed out; from ``store.stats()`` when it reports it, else the header word
    ``_layout.W_HEAP_TOP``); ``track_committed_slope_mb_per_hour``; ``track_used_slope_mb_per_hour``
    (the live data's, ~0 by construction: what the noise of a slope is);
    ``track_heap_top_growth_mb``: the heap top's growth from the first sample to the last;
    ``track_ops_per_second``: the churn's sets and deletes per second.  Short runs overstate
    a slope that levels off later: use the soak for the figure of record."""

    number = 1
    timeout = 2400

    def setup_cache(self):
        with Resources() as res:
            samples = churn(res.store("churn"), soak_seconds())
        return samples

    setup_cache.timeout = 2400  # type: ignore[attr-defined]

    def track_heap_top_slope_mb_per_hour(self, samples):
        return slope_mb_per_hour(samples, "heap_top")

    track_heap_top_slope_mb_per_hour.unit = "MB/h"  # type: ignore[attr-defined]

    def track_committed_slope_mb_per_hour(self, samples):
        return slope_mb_per_hour(samples, "committed")

    track_committed_slope_mb_per_hour.unit = "MB/h"  # type: ignore[attr-defined]

    def track_used_slope_mb_per_hour(self, samples):
        return slope_mb_per_hour(samples, "used")

    track_used_slope_mb_per_hour.unit = "MB/h"  # type: ignore[attr-defined]

    def track_heap_top_growth_mb(self, samples):
        return (samples[-1]["heap_top"] - samples[0]["heap_top"]) / MB

    track_heap_top_growth_mb.unit = "MB"  # type: ignore[attr-defined]

    def track_ops_per_second(self, samples):
        return samples[-1]["ops"] / samples[-1]["seconds"]

    track_ops_per_second.unit = "ops/s"  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- script mode
_COLUMNS = ["seconds", "ops", "live_keys", "heap_top", "committed", "used", "file"]


def _plot(samples, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return False
    minutes = [s["seconds"] / 60 for s in samples]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for field, style in (("heap_top", "-"), ("committed", "-"), ("used", "-"), ("file", "--")):
        slope = slope_mb_per_hour(samples, field)
        ax.plot(minutes, [s[field] / MB for s in samples], style,
                label=f"{field} ({slope:+.1f} MB/h)")
    ax.set_xlabel("minutes of churn")
    ax.set_ylabel("MB")
    ax.set_title(f"sharedstore churn: ~{CHURN_KEYSPACE // 2:,} live keys, "
                 f"values {VALUE_SIZES[0]}..{VALUE_SIZES[1]} bytes")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asv_bench.benchmarks.bench_memory",
                                     description="Churn a store at a fixed working set and "
                                     "sample its memory every second.")
    sub = parser.add_subparsers(dest="command", required=True)
    soak = sub.add_parser("soak", help="run the churn; print the slopes; write CSV / PNG")
    length = soak.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="how long (default: 30)")
    length.add_argument("--seconds", type=float, help="how long, in seconds")
    soak.add_argument("--warmup", type=float,
                      help="seconds of churn before the first sample (default: a tenth of "
                      "the run, at most 60)")
    soak.add_argument("--csv", help="write the samples to this CSV file")
    soak.add_argument("--plot", help="write a PNG plot here (needs matplotlib)")
    soak.add_argument("--quiet", action="store_true", help="no line per minute")
    args = parser.parse_args(argv)

    seconds = args.seconds if args.seconds is not None else 60 * (args.minutes or 30)
    csv = open(args.csv, "w") if args.csv else None  # noqa: SIM115 (written as samples come)
    if csv:
        csv.write(",".join(_COLUMNS) + "\n")

    def on_sample(s):
        if csv:
            csv.write(",".join(f"{s[c]:.3f}" if c == "seconds" else str(s[c])
                               for c in _COLUMNS) + "\n")
            csv.flush()
        if not args.quiet and int(s["seconds"]) % 60 == 0:
            print(f"{s['seconds'] / 60:6.1f} min  heap top {s['heap_top'] / MB:8.1f} MB  "
                  f"committed {s['committed'] / MB:8.1f} MB  used {s['used'] / MB:8.1f} MB  "
                  f"{s['ops']:,} ops", flush=True)

    try:
        with Resources() as res:
            samples = churn(res.store("soak"), seconds, on_sample=on_sample,
                            warmup=args.warmup)
    finally:
        if csv:
            csv.close()
    for field in ("heap_top", "committed", "used", "file"):
        print(f"{field:9s} slope {slope_mb_per_hour(samples, field):+10.2f} MB/h   "
              f"end {samples[-1][field] / MB:9.1f} MB")
    print(f"{samples[-1]['ops']:,} ops in {samples[-1]['seconds']:.0f} s, "
          f"{len(samples)} samples" + (f", CSV {args.csv}" if args.csv else ""))
    if args.plot and _plot(samples, args.plot):
        print(f"plot {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
