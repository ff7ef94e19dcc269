"""``python -m sharedstore bench``: a short run of sharedstore against its peers, as ratios.

A subset of the asv suite (``asv_bench/``), a few seconds per comparison:

* map get: first read of each of ``n`` str keys (random order) after a write, from a map just
  filled: sharedstore's root map, a plain ``dict``, lmdb (one read transaction), UltraDict;
* map set: ``n`` new keys into an empty map (lmdb: one write transaction per key);
* counter add: ``IntRef.add(1)`` against ``multiprocessing.Value`` under its lock;
* vector extend: 1 M float64 into a growing shared vector against ``np.concatenate``;
* vector append: 100k single appends of a float against ``list.append`` + a NumPy write;
* column scan: the sum of one float64 column of a struct table, through a zero-copy view of
  the shared table against a private NumPy array.

Each figure is the best of ``repeat`` timed calls (more for calls of a few milliseconds, up to
0.3 s of them); a ratio is sharedstore's time divided by
the peer's (below 1: sharedstore is faster), next to the project's target for it where there
is one (:data:`TARGETS`).
Peers that are not installed are skipped and listed (``pip install 'sharedstore[bench]'``).

The helpers here (unique names, :class:`Resources`, test data, :func:`open_map`) are shared
with the asv benchmarks, which import them.  Only the ``bench`` command imports ``rich``.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import functools
import importlib.util
import itertools
import multiprocessing
import os
import platform
import random
import shutil
import string
import struct
import tempfile
import time
from typing import Any, Literal

import numpy as np

from .store import create
from .store import unlink as unlink_store

# ---------------------------------------------------------------------- shared with asv_bench
_counter = itertools.count()
# /dev/shm files created by this process and not removed yet: removed at exit if still there
_created_paths: set[str] = set()

ULTRADICT_BUFFER = 32 << 20
LMDB_MAP_SIZE = 1 << 30
PACK = struct.Struct("<d").pack

#: the record of the column-scan and append benchmarks
ROW = np.dtype([("pos", "<f4", (3,)), ("mass", "<f8"), ("id", "<i8"), ("alive", "?")], align=True)


def unique_name(tag: str) -> str:
    """A name no other process or earlier setup uses: ``ssbench-<pid>-<tag>-<counter>``."""
    return f"ssbench-{os.getpid()}-{tag}-{next(_counter)}"


class Resources:
    """Undo actions, run newest first by :meth:`close` (all of them, even if some fail)."""

    def __init__(self):
        self._undo = []

    def defer(self, fn, *args) -> None:
        self._undo.append((fn, args))

    def close(self) -> None:
        first = None
        while self._undo:
            fn, args = self._undo.pop()
            try:
                fn(*args)
            except Exception as exc:  # keep releasing the rest
                if first is None:
                    first = exc
        if first is not None:
            raise first

    def __enter__(self) -> Resources:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- typical resources
    def store(self, tag: str):
        """A new store with a unique name; closed and unlinked on :meth:`close`."""
        name = unique_name(tag)
        store = create(name)
        path = str(store.path)
        _created_paths.add(path)
        self.defer(_close_and_unlink_store, store, name, path)
        return store

    def shm_path(self, name: str) -> None:
        """Remember a ``/dev/shm`` file a peer made, for the exit hook (the peer's own
        cleanup runs through :meth:`defer`)."""
        path = os.path.join("/dev/shm", name)
        _created_paths.add(path)
        self.defer(_created_paths.discard, path)


def _close_and_unlink_store(store, name: str, path: str) -> None:
    try:
        store.close()
    finally:
        with contextlib.suppress(FileNotFoundError):
            unlink_store(name)
        _created_paths.discard(path)


@atexit.register
def _remove_leftovers() -> None:
    for path in list(_created_paths):
        with contextlib.suppress(OSError):
            os.unlink(path)


@functools.cache
def random_keys(n: int, seed: int = 0) -> tuple[str, ...]:
    """``n`` distinct ASCII str keys of 8 to 16 letters and digits, in random order.

    Drawn with NumPy in one go (a million keys take well under a second, not several)."""
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer((string.ascii_letters + string.digits).encode(), dtype=np.uint8)
    keys: dict[str, None] = {}
    while len(keys) < n:
        m = n - len(keys) + 16
        lengths = rng.integers(8, 17, size=m)
        text = alphabet[rng.integers(0, len(alphabet), size=int(lengths.sum()))].tobytes().decode()
        ends = np.cumsum(lengths).tolist()
        start = 0
        for end in ends:
            keys[text[start:end]] = None
            start = end
    return tuple(itertools.islice(keys, n))


@functools.cache
def random_floats(n: int, seed: int = 1) -> tuple[float, ...]:
    rng = random.Random(seed)
    return tuple(rng.random() for _ in range(n))


@functools.cache
def shuffled(keys: tuple, seed: int = 2) -> tuple:
    out = list(keys)
    random.Random(seed).shuffle(out)
    return tuple(out)


def open_map(res: Resources, impl: str):
    """A new, empty map of kind ``impl``, released by ``res``: ``"sharedstore"`` (a new
    store: its root map), ``"dict"``, ``"UltraDict"``, ``"lmdb"`` (an environment),
    ``"SharedMemoryDict"`` or ``"Manager().dict"``."""
    if impl == "sharedstore":
        return res.store("map")
    if impl == "dict":
        return {}
    if impl == "UltraDict":
        from UltraDict import UltraDict

        name = unique_name("ultra")
        res.shm_path(name)
        res.shm_path(name + "_memory")
        u = UltraDict(name=name, buffer_size=ULTRADICT_BUFFER)
        res.defer(u.close, True)  # unlink=True: its segments, and any full dump
        return u
    if impl == "lmdb":
        import lmdb

        path = tempfile.mkdtemp(prefix="ssbench-lmdb-")
        res.defer(shutil.rmtree, path, True)
        env = lmdb.open(path, map_size=LMDB_MAP_SIZE, sync=False, metasync=False)
        res.defer(env.close)
        return env
    if impl == "SharedMemoryDict":
        from shared_memory_dict import SharedMemoryDict

        name = unique_name("smd")
        res.shm_path("sm_" + name)
        d = SharedMemoryDict(name=name, size=1 << 20)
        res.defer(d.shm.unlink)
        res.defer(d.shm.close)
        return d
    if impl == "Manager().dict":
        manager = multiprocessing.Manager()
        res.defer(manager.shutdown)
        return manager.dict()
    raise ValueError(impl)


# ---------------------------------------------------------------------- the comparisons
#: the module each peer needs, by implementation name
PEER_MODULES = {"lmdb": "lmdb", "UltraDict": "UltraDict"}

#: the project's performance targets, as time ratios sharedstore / peer (at most)
TARGETS = {
    ("map get", "dict"): 2.0,
    ("map get", "lmdb"): 0.6,
    ("map get", "UltraDict"): 1.0,
    ("map set", "lmdb"): 0.35,
    ("map set", "UltraDict"): 0.25,
    ("vector extend", "np.concatenate"): 1.25,  # >= 0.8x its speed
    ("vector append", "list + numpy write"): 2.0,
    ("column scan", "private array"): 1.05,  # >= 0.95x its speed
}


def _fill(m, impl: str, keys, values) -> None:
    if impl == "lmdb":
        with m.begin(write=True) as txn:
            for k, v in zip(keys, values):
                txn.put(k.encode(), PACK(v))
    elif impl == "dict":
        m.update(zip(keys, values))
    else:
        for k, v in zip(keys, values):
            m[k] = v


def map_get(res: Resources, impl: str, n: int):
    """(prepare, timed) for ``n`` gets in random order from a map just filled."""
    keys, values = random_keys(n), random_floats(n)
    order = shuffled(keys)
    m = open_map(res, impl)
    _fill(m, impl, keys, values)
    last = dict(zip(keys, values))[order[-1]]
    if impl == "lmdb":
        border, want = [k.encode() for k in order], PACK(last)

        def timed():
            with m.begin() as txn:
                get = txn.get
                for k in border:
                    v = get(k)
            assert v == want
        return None, timed
    else:
        def prepare():
            if impl == "sharedstore":  # a write just before, as in asv's MapGet
                m["warm"] = 0.5
                del m["warm"]

        def timed():
            for k in order:
                v = m[k]
            assert v == last
        return prepare, timed


def map_set(res: Resources, impl: str, n: int):
    """(prepare, timed) for ``n`` new keys set into an empty map (a new one for each call)."""
    keys, values = random_keys(n), random_floats(n)
    state: dict[str, Any] = {}

    def prepare():
        if "res" in state:
            state.pop("res").close()  # the map of the previous call
        state["res"] = sub = Resources()
        res.defer(sub.close)
        state["m"] = open_map(sub, impl)

    if impl == "lmdb":
        bkeys, bvalues = [k.encode() for k in keys], [PACK(v) for v in values]

        def timed():
            begin = state["m"].begin
            for k, v in zip(bkeys, bvalues):
                with begin(write=True) as txn:
                    txn.put(k, v)
    else:
        def timed():
            m = state["m"]
            for k, v in zip(keys, values):
                m[k] = v
    return prepare, timed


def counter_add(res: Resources, impl: str, n: int):
    """(prepare, timed) for ``n`` atomic increments of one shared counter."""
    if impl == "multiprocessing.Value":
        c = multiprocessing.Value("q", 0, lock=True)
        lock = c.get_lock()

        def timed():
            for _ in range(n):
                with lock:
                    c.value += 1
    else:
        c = res.store("add").integer(0)
        c.add(0)
        add = c.add

        def timed():
            for _ in range(n):
                add(1)
    return None, timed


def vector_extend(res: Resources, impl: str, n: int):
    """(prepare, timed) for extending by ``n`` float64 values: a new shared vector that must
    grow, against ``np.concatenate`` onto a private array of 1000."""
    data = np.arange(n, dtype=np.float64)
    base = np.arange(1000, dtype=np.float64)
    state: dict[str, Any] = {}
    if impl == "np.concatenate":
        def timed():
            state["out"] = np.concatenate([base, data])
        return None, timed
    else:
        store = res.store("ext")

        def prepare():
            if "v" in state:
                state.pop("v").drop()
            state["v"] = v = store.vector("float64")
            v.extend(base)

        def timed():
            state["v"].extend(data)
        return prepare, timed


def vector_append(res: Resources, impl: str, n: int):
    """(prepare, timed) for ``n`` single appends of a float from Python: into a shared vector
    (emptied before each call), against ``list.append`` plus a write into a NumPy array."""
    if impl == "list + numpy write":
        lst: list[float] = []
        arr = np.zeros(n)

        def prepare():
            lst.clear()

        def timed():
            append = lst.append
            for i in range(n):
                append(1.5)
                arr[i] = 1.5
        return prepare, timed
    else:
        v = res.store("app").vector("float64", capacity=n)

        def timed():
            append = v.append
            for _ in range(n):
                append(1.5)
        return v.clear, timed


def column_scan(res: Resources, impl: str, n: int):
    """(prepare, timed) for the sum of the float64 column ``mass`` of ``n`` records."""
    rows = np.zeros(n, dtype=ROW)
    rows["mass"] = 1.0
    state = {"arr": rows}
    if impl == "shared view":
        t = res.store("scan").vector(ROW, capacity=n)
        t.extend(rows)
        state["arr"] = t.view()
        res.defer(state.clear)  # the view goes before its store closes

    def timed():
        assert state["arr"]["mass"].sum() == n
    return None, timed


#: (benchmark, setup, implementations, default n, quick n, what n counts)
COMPARISONS = [
    ("map get", map_get, ["sharedstore", "dict", "lmdb", "UltraDict"], 100_000, 2_000, "keys"),
    ("map set", map_set, ["sharedstore", "dict", "lmdb", "UltraDict"], 100_000, 2_000, "keys"),
    ("counter add", counter_add, ["IntRef", "multiprocessing.Value"], 200_000, 2_000, "adds"),
    ("vector extend", vector_extend, ["sharedstore", "np.concatenate"], 1_000_000, 10_000,
     "values"),
    ("vector append", vector_append, ["sharedstore", "list + numpy write"], 100_000, 2_000,
     "appends"),
    ("column scan", column_scan, ["shared view", "private array"], 1_000_000, 10_000, "rows"),
]


def available(impl: str) -> bool:
    module = PEER_MODULES.get(impl)
    return module is None or importlib.util.find_spec(module) is not None


#: cheap timed calls are repeated beyond ``repeat`` until they add up to this many seconds
#: (at most :data:`MAX_CALLS`): a best of 3 calls of a millisecond is mostly noise
MIN_SECONDS = 0.3
MAX_CALLS = 100


def time_one(setup, impl: str, n: int, repeat: int, min_seconds: float = MIN_SECONDS) -> float:
    """Best of at least ``repeat`` timed calls (after one untimed warm-up call), more for cheap
    calls (until ``min_seconds`` of timed calls), in seconds."""
    with Resources() as res:
        prepare, timed = setup(res, impl, n)
        best, spent, calls = float("inf"), 0.0, -1  # call -1: the warm-up
        while calls < repeat or (spent < min_seconds and calls < MAX_CALLS):
            if prepare is not None:
                prepare()
            t0 = time.perf_counter()
            timed()
            dt = time.perf_counter() - t0
            if calls >= 0:  # the first call warms caches, kernels and allocators
                best = min(best, dt)
                spent += dt
            calls += 1
        return best


def run(*, quick: bool = False, repeat: int | None = None, only=None, progress=None) -> dict:
    """Run the comparisons; return ``{"machine", "quick", "results", "ratios", "skipped"}``.

    ``progress(text)`` (optional) is called before each timing."""
    repeat = repeat or (1 if quick else 3)
    min_seconds = 0.0 if quick else MIN_SECONDS
    results, ratios, skipped = [], [], []
    for bench, setup, impls, n_full, n_quick, unit in COMPARISONS:
        if only and bench not in only:
            continue
        n = n_quick if quick else n_full
        times = {}
        for impl in impls:
            if not available(impl):
                skipped.append({"benchmark": bench, "impl": impl,
                                "reason": f"{PEER_MODULES[impl]} is not installed"})
                continue
            if progress is not None:
                progress(f"{bench}: {impl} ({n:,} {unit})")
            times[impl] = t = time_one(setup, impl, n, repeat, min_seconds)
            results.append({"benchmark": bench, "impl": impl, "n": n, "unit": unit,
                            "seconds": t, "ns_per_op": t / n * 1e9})
        ours = times.get(impls[0])
        for peer in impls[1:]:
            if peer in times and ours is not None:
                target = TARGETS.get((bench, peer))
                ratio = ours / times[peer]
                ratios.append({"benchmark": bench, "sharedstore": impls[0], "peer": peer, "n": n,
                               "sharedstore_ns_per_op": ours / n * 1e9,
                               "peer_ns_per_op": times[peer] / n * 1e9, "ratio": ratio,
                               "target": target,
                               "met": None if target is None else ratio <= target})
    return {"machine": machine(), "quick": quick, "repeat": repeat, "results": results,
            "ratios": ratios, "skipped": skipped}


def machine() -> dict:
    """What the figures were measured on."""
    import numba

    return {
        "date": datetime.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
    }


def _ns(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:,.2f} ms"
    if x >= 1e3:
        return f"{x / 1e3:,.2f} µs"
    return f"{x:,.1f} ns"


def print_report(report: dict, console) -> None:
    """The ratio table (rich), and the peers skipped."""
    from rich.table import Table

    m = report["machine"]
    title = (f"sharedstore bench{' --quick' if report['quick'] else ''}: best of "
             f"{report['repeat']}+ calls, {m['cpus']} CPUs, Python {m['python']}, "
             f"numba {m['numba']}, {m['date']}")
    table = Table(title=title, title_justify="left")
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("benchmark", "left"), ("n", "right"), ("sharedstore", "right"), ("peer", "left"),
        ("peer time", "right"), ("ratio", "right"), ("target", "right"))
    for col, justify in columns:
        table.add_column(col, justify=justify)
    for r in report["ratios"]:
        target = "" if r["target"] is None else f"<= {r['target']:g}"
        if r["met"] is not None:
            target += " [green]met[/]" if r["met"] else " [red]missed[/]"
        table.add_row(r["benchmark"], f"{r['n']:,}", _ns(r["sharedstore_ns_per_op"]), r["peer"],
                      _ns(r["peer_ns_per_op"]), f"{r['ratio']:.2f}", target)
    console.print(table)
    console.print("times are per operation (per key, add, value or row); ratio = sharedstore "
                  "time / peer time (below 1: sharedstore is faster)", soft_wrap=True)
    for s in report["skipped"]:
        console.print(f"skipped {s['impl']} ({s['benchmark']}): {s['reason']}; "
                      "pip install 'sharedstore[bench]'", soft_wrap=True)


def main(quick: bool = False, as_json: bool = False, repeat: int | None = None,
         only=None) -> int:
    """``python -m sharedstore bench``."""
    import json
    import sys

    from rich.console import Console

    # piped into a file or a README, the table keeps its lines whole instead of 80 columns
    console = Console(width=None if sys.stdout.isatty() else 110)
    err = Console(stderr=True)
    with err.status("benchmarking") as status:
        report = run(quick=quick, repeat=repeat, only=only,
                     progress=lambda text: status.update(f"benchmarking {text}"))
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, console)
    return 0
