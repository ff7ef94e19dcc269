"""The ``sharedstore`` command line: a demo, and tools to inspect and clean up stores.

Run it as ``python -m sharedstore COMMAND`` (or ``sharedstore COMMAND`` once installed)::

    demo [--workers N] [--tasks N] [--keep]   worker processes share one store
    ls [--json]                               the stores in /dev/shm, their sizes and processes
    info NAME [--json]                        a store's stats, named values and processes
    rm NAME                                   remove a store
    gc [--dry-run]                            remove the stores no live process is attached to

Every command returns an exit code: 0 on success, 1 when sharedstore reports an error (one line
on stderr, no traceback), 2 for a usage error and 130 when interrupted.

``ls``, ``info`` and ``gc`` attach to the stores they look at, which registers this process in
each store's process table for a moment; the counts and lists of processes they print leave that
entry out.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pprint
import reprlib
import signal
import sys
import time

from . import (
    ArrayRef,
    ListRef,
    MapRef,
    Ref,
    SharedStoreError,
    StoreNotFoundError,
    StructRef,
    UseAfterFreeError,
    VectorRef,
    attach,
    create,
    list_stores,
    unlink,
)
from .errors import human_bytes

#: how many times each demo task adds 1 to the shared counter ``hits``
HITS_PER_TASK = 5000

GREETING = "Hello from the parent"

#: the demo prints the results of the first this many tasks
MAX_TASK_LINES = 12

#: gc looks at a store's process table twice, this many seconds apart, before removing it, so
#: that a store whose creator is between writing its header and registering is not taken for dead
GC_RECHECK_SECONDS = 0.05

_preview = reprlib.Repr()
_preview.maxstring = 40
_preview.maxother = 40


# ---------------------------------------------------------------------- demo: worker side
def demo_task(store, task_id: int) -> None:
    """One demo task, run in a worker process.

    Reads the parent's greeting, adds 1 to the shared counter ``hits`` :data:`HITS_PER_TASK`
    times, adds this task's share to the shared number ``total`` and writes what it did into the
    shared map ``results`` under ``f"task-{task_id}"``.

    Parameters
    ----------
    store : sharedstore.Store
        The demo's store.  It arrives pickled by name and re-attaches in this process (once per
        process: later tasks reuse the attached store).
    task_id : int
        The task's number, from 0.
    """
    start = time.perf_counter()
    greeting = store["greeting"].get()
    hits = store["hits"]
    last = 0
    for _ in range(HITS_PER_TASK):
        last = hits.add(1)
    store["total"].add(task_share(task_id))
    store["results"][f"task-{task_id}"] = {
        "pid": os.getpid(),
        "greeting": greeting,
        "greeting_len": len(greeting),
        "hits_added": HITS_PER_TASK,
        "hits_after_last_add": last,
        "seconds": time.perf_counter() - start,
    }


def task_share(task_id: int) -> float:
    """What task ``task_id`` adds to ``total``: ``task_id + 0.5``.

    Sums of halves are exact in float64, so the parent can check ``total`` with ``==``."""
    return task_id + 0.5


def _ignore_sigint() -> None:
    """Pool initializer: Ctrl-C is the parent's to handle; it terminates the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------------- demo: parent side
def run_demo(args: argparse.Namespace) -> int:
    """``demo``: share a store with a pool of spawned worker processes and report what happened.

    The store is closed and removed at the end, also after an error or Ctrl-C, unless
    ``args.keep``.

    Parameters
    ----------
    args : argparse.Namespace
        ``workers``, ``tasks`` and ``keep``.

    Returns
    -------
    int
        0 if every shared value is what the tasks should have made it, else 1.
    """
    started = time.perf_counter()
    store = create(f"demo-{os.getpid()}")
    try:
        seed_demo_store(store)
        during = run_demo_tasks(store, args.workers, args.tasks)
        after = store.workers()
        elapsed = time.perf_counter() - started
        print_demo_report(store, args, during, after, elapsed)
        return check_demo_store(store, args.tasks)
    finally:
        dispose_demo_store(store, keep=args.keep)


def seed_demo_store(store) -> None:
    """Put the demo's shared objects into ``store`` as named values."""
    store["greeting"] = store.string(GREETING)
    store["hits"] = store.integer(0)
    store["total"] = store.number(0.0)
    store["results"] = store.map()


def run_demo_tasks(store, n_workers: int, n_tasks: int) -> list[dict]:
    """Run ``n_tasks`` :func:`demo_task` calls on a spawn-context pool of ``n_workers`` processes.

    Returns
    -------
    list of dict
        ``store.workers()`` taken after the tasks finished, while the pool's processes were
        still attached.
    """
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(n_workers, initializer=_ignore_sigint) as pool:
        pool.starmap(demo_task, [(store, t) for t in range(n_tasks)], chunksize=1)
        attached = store.workers()
        pool.close()
        pool.join()  # the workers exit cleanly, and so detach from the store
    return attached


def demo_results(store) -> list[tuple[str, dict]]:
    """The entries of the shared map ``results``, in task order."""
    return sorted(store["results"].items(), key=lambda kv: int(kv[0].rpartition("-")[2]))


def expected_hits(n_tasks: int) -> int:
    return n_tasks * HITS_PER_TASK


def expected_total(n_tasks: int) -> float:
    return sum(task_share(t) for t in range(n_tasks))


def check_demo_store(store, n_tasks: int) -> int:
    """Check the shared values against what ``n_tasks`` tasks must have made them.

    Prints ``OK`` or each problem (on stderr).

    Returns
    -------
    int
        0 if all is as expected, else 1.
    """
    problems = []
    hits, want = store["hits"].get(), expected_hits(n_tasks)
    if hits != want:
        problems.append(f"hits is {hits:,}, expected exactly {want:,}: increments were lost")
    total, want_total = store["total"].get(), expected_total(n_tasks)
    if total != want_total:
        problems.append(f"total is {total!r}, expected {want_total!r}")
    done = {key for key, _ in demo_results(store)}
    missing = [f"task-{t}" for t in range(n_tasks) if f"task-{t}" not in done]
    if missing:
        problems.append(f"no result from {', '.join(missing)}")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"OK: hits is exactly {want:,} and every task reported back")
    return 0


def dispose_demo_store(store, *, keep: bool) -> None:
    """Close the demo's store and remove it, unless ``keep``."""
    store.close()
    if keep:
        print(f"kept store {store.name!r}: look at it with `python -m sharedstore info "
              f"{store.name}`, remove it with `python -m sharedstore rm {store.name}`")
        return
    try:
        store.unlink()
    except StoreNotFoundError:
        pass  # removed by someone else meanwhile (sharedstore rm)
    else:
        print(f"removed store {store.name!r}")


def print_demo_report(store, args, during: list[dict], after: list[dict], elapsed: float) -> None:
    """Print what the workers shared, which processes were attached, stats and the time taken."""
    print(f"sharedstore demo: store {store.name!r} at {store.path}")
    workers = plural(args.workers, "worker process", "worker processes")
    print(f"{workers} (multiprocessing 'spawn' Pool) ran {plural(args.tasks, 'task')}; each read "
          f"the greeting and added 1 to 'hits' {HITS_PER_TASK:,} times")
    print()
    print("What the workers shared")
    for line in shared_value_lines(store, args.tasks):
        print("  " + line)
    print()
    print("Processes attached while the pool was up: store.workers()")
    for line in process_lines(during, clock=True):
        print("  " + line)
    print("After pool.join(): the workers exited and detached")
    for line in process_lines(after, clock=True):
        print("  " + line)
    print()
    print("Store stats: store.stats()")
    for line in stats_lines(store.stats()):
        print("  " + line)
    print()
    print(f"Elapsed: {elapsed:.2f} s (start-up of the {workers} included)")


def shared_value_lines(store, n_tasks: int) -> list[str]:
    """Lines describing the demo's named values and the result of each task."""
    greeting = store["greeting"].get()
    results = demo_results(store)
    read_it = sum(1 for _, r in results if r["greeting"] == greeting)
    hits, total = store["hits"].get(), store["total"].get()
    verdict = "exact" if hits == expected_hits(n_tasks) else "WRONG"
    pids = sorted({r["pid"] for _, r in results})
    lines = [
        f"greeting  StringRef  {greeting!r}, read by {read_it:,} of {plural(n_tasks, 'task')}",
        f"hits      IntRef     {hits:,} (expected {n_tasks:,} x {HITS_PER_TASK:,} = "
        f"{expected_hits(n_tasks):,}: {verdict})",
        f"total     NumberRef  {total!r} (expected {expected_total(n_tasks)!r})",
        f"results   MapRef     {plural(len(results), 'entry', 'entries')}, written by "
        f"{plural(len(pids), 'process', 'processes')}: "
        f"{', '.join(map(str, pids))}",
    ]
    for key, r in results[:MAX_TASK_LINES]:
        lines.append(
            f"  {key:<8} pid {r['pid']:<7} read {r['greeting_len']} chars, "
            f"hits was {r['hits_after_last_add']:>9,} after its last add, "
            f"{r['seconds'] * 1e3:.1f} ms"
        )
    if len(results) > MAX_TASK_LINES:
        lines.append(f"  ... and {len(results) - MAX_TASK_LINES:,} more")
    return lines


# ---------------------------------------------------------------------- shared formatting
def process_lines(processes: list[dict], *, clock: bool = False) -> list[str]:
    """One line per entry of ``store.workers()``.

    Parameters
    ----------
    processes : list of dict
        ``{"pid", "since", "self"}`` entries.
    clock : bool
        Show only the time of day they attached (else date and time).
    """
    if not processes:
        return ["(none)"]
    fmt = "%H:%M:%S" if clock else "%Y-%m-%d %H:%M:%S"
    lines = []
    for p in sorted(processes, key=lambda p: p["since"]):
        since = time.strftime(fmt, time.localtime(p["since"]))
        me = "  (this process)" if p["self"] else ""
        lines.append(f"pid {p['pid']:<7} attached since {since}{me}")
    return lines


def stats_lines(stats: dict) -> list[str]:
    """Sizes in human units and live objects by kind, from ``store.stats()``."""
    objects = ", ".join(f"{kind} {n:,}" for kind, n in stats["objects"].items()) or "none"
    return [
        f"used {human_bytes(stats['used'])}, committed {human_bytes(stats['committed'])}, "
        f"reserved {human_bytes(stats['reserved'])} (free {human_bytes(stats['free'])})",
        f"objects: {objects} ({stats['handles']:,} handles, "
        f"{stats['named_values']:,} named values)",
    ]


def other_processes(store) -> list[dict]:
    """``store.workers()`` without the entry this command's own attach added (the newest one
    with our pid: the process running the command may hold the store open too)."""
    procs = store.workers()
    mine = [p for p in procs if p["self"]]
    if mine:
        procs.remove(max(mine, key=lambda p: p["since"]))
    return procs


def plural(n: int, word: str, words: str | None = None) -> str:
    """``"1 task"``, ``"3 tasks"``; ``words`` is the plural when it is not ``word + "s"``."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {words or word + 's'}"


def _key_text(key) -> str:
    return key if isinstance(key, str) else repr(key)


def _json_key(key):
    return key if isinstance(key, (str, int)) else repr(key)


# ---------------------------------------------------------------------- ls
def run_ls(args: argparse.Namespace) -> int:
    """``ls``: each store in /dev/shm with its sizes and the number of processes attached."""
    rows = [row for row in map(store_summary, list_stores()) if row is not None]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no stores")
    else:
        print_store_table(rows)
    return 0


def store_summary(name: str) -> dict | None:
    """Sizes, named values and processes of store ``name`` (attached to and closed again).

    Returns
    -------
    dict or None
        None if the store vanished meanwhile; ``{"name", "error"}`` if it cannot be attached.
    """
    try:
        with attach(name) as store:
            stats = store.stats()
            workers = len(other_processes(store))
    except StoreNotFoundError:
        return None
    except SharedStoreError as e:
        return {"name": name, "error": str(e)}
    return {
        "name": name,
        "reserved": stats["reserved"],
        "committed": stats["committed"],
        "used": stats["used"],
        "workers": workers,
        "named_values": stats["named_values"],
    }


def print_store_table(rows: list[dict]) -> None:
    """Print the rows of :func:`store_summary` as an aligned table."""
    header = ("NAME", "RESERVED", "COMMITTED", "USED", "WORKERS", "VALUES")
    table = [header]
    errors = []
    for r in rows:
        if "error" in r:
            table.append((r["name"], "?", "?", "?", "?", "?"))
            errors.append(f"{r['name']}: {r['error']}")
            continue
        table.append((
            r["name"], human_bytes(r["reserved"]), human_bytes(r["committed"]),
            human_bytes(r["used"]), str(r["workers"]), str(r["named_values"]),
        ))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        print("  ".join(cells).rstrip())
    for error in errors:
        print(f"cannot read {error}", file=sys.stderr)


# ---------------------------------------------------------------------- info
def run_info(args: argparse.Namespace) -> int:
    """``info NAME``: a store's stats, its named values with their kind, and its processes."""
    with attach(args.name) as store:
        report = store_report(store)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_store_report(report)
    return 0


def store_report(store) -> dict:
    """``{"stats", "values", "workers"}`` of an attached store.

    ``stats["workers"]`` and ``workers`` leave out this command's own attach."""
    workers = other_processes(store)
    stats = store.stats()
    stats["workers"] = len(workers)
    described = (describe_value(store, key) for key in store)
    values = [v for v in described if v is not None]
    return {"stats": stats, "values": values, "workers": workers}


def describe_value(store, key) -> dict | None:
    """``{"key", "kind", "preview"}`` (and ``"id"`` for a ref) of the named value ``key``.

    ``kind`` is the ref's class name for a ref, else the value's type.  None if the value was
    deleted meanwhile.
    """
    try:
        value = store[key]
    except KeyError:
        return None
    except UseAfterFreeError as e:
        return {"key": _json_key(key), "kind": "dropped", "preview": str(e)}
    except Exception as e:  # noqa: BLE001  unpickling runs foreign code: any error is possible
        return {"key": _json_key(key), "kind": "unreadable", "preview": f"{type(e).__name__}: {e}"}
    if isinstance(value, Ref):
        return {"key": _json_key(key), "kind": type(value).__name__, "id": value.id,
                "preview": ref_preview(value)}
    return {"key": _json_key(key), "kind": type_name(value), "preview": _preview.repr(value)}


def ref_preview(ref) -> str:
    """A short text for what ``ref`` holds: a map's, list's or vector's size, a record's
    fields, else its value."""
    try:
        if isinstance(ref, MapRef):
            return f"{len(ref):,} keys"
        if isinstance(ref, ArrayRef):
            return f"{ref.dtype} array of shape {ref.shape}"
        if isinstance(ref, VectorRef):
            what = ref.struct.name if ref.struct is not None else ref.dtype
            return f"{len(ref):,} slots of {what}"
        if isinstance(ref, ListRef):
            return f"{len(ref):,} items"
        if isinstance(ref, StructRef):
            return _preview.repr(ref.to_dict())
        return _preview.repr(ref.get())
    except SharedStoreError as e:
        return f"{type(e).__name__}: {e}"


def type_name(value) -> str:
    """``int`` for builtins, ``module.Class`` for the rest."""
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def print_store_report(report: dict) -> None:
    """Print :func:`store_report` for people."""
    stats = report["stats"]
    print(f"store {stats['name']!r} at {stats['path']}")
    for line in stats_lines(stats):
        print("  " + line)
    values = report["values"]
    print(f"named values ({len(values)})")
    width = max((len(_key_text(v["key"])) for v in values), default=0)
    kind_width = max((len(v["kind"]) for v in values), default=0)
    for v in sorted(values, key=lambda v: _key_text(v["key"])):
        key, kind = _key_text(v["key"]).ljust(width), v["kind"].ljust(kind_width)
        print(f"  {key}  {kind}  {v['preview']}")
    print(f"attached processes ({len(report['workers'])})")
    for line in process_lines(report["workers"]):
        print("  " + line)


# ---------------------------------------------------------------------- stats, dump
def run_stats(args: argparse.Namespace) -> int:
    """``stats NAME``: sizes, objects by kind and attached processes."""
    with attach(args.name) as store:
        stats = store.stats()
        stats["workers"] = len(other_processes(store))
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(f"store {stats['name']!r} at {stats['path']}")
        for line in stats_lines(stats):
            print("  " + line)
    return 0


def run_dump(args: argparse.Namespace) -> int:
    """``dump NAME KEY``: print one named value (a ref's contents, resolved)."""
    with attach(args.name) as store:
        key = args.key
        if key not in store and key.lstrip("-").isdigit() and int(key) in store:
            key = int(key)
        if key not in store:
            print(f"sharedstore dump: no named value {args.key!r} in store {args.name!r}",
                  file=sys.stderr)
            return 1
        value = _plain(store[key])
    if args.json:
        print(json.dumps(value, indent=2, default=repr))
    else:
        print(pprint.pformat(value))
    return 0


def _plain(value):
    """A ref's contents as plain Python data (maps as dicts, vectors as lists)."""
    if isinstance(value, MapRef):
        return {_json_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, ListRef):
        return [_plain(v) for v in value]
    if isinstance(value, VectorRef):
        return value.to_numpy().tolist()
    if isinstance(value, StructRef):
        return {k: _plain(v) for k, v in value.to_dict().items()}
    if isinstance(value, Ref):
        return value.get()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


# ---------------------------------------------------------------------- rm
def run_rm(args: argparse.Namespace) -> int:
    """``rm NAME``: remove a store (processes attached to it keep it until they close it)."""
    unlink(args.name)
    print(f"removed store {args.name!r}")
    return 0


# ---------------------------------------------------------------------- gc
def run_gc(args: argparse.Namespace) -> int:
    """``gc``: remove the stores that no live process is attached to.

    A store qualifies when, after its dead processes are reaped, only this command is attached.
    A process that attaches to it between that check and the removal keeps a store that no one
    else can attach to any more.  Stores that cannot be read (corrupt) are kept and reported.
    """
    names = list_stores()
    removed = 0
    for name in names:
        verdict = abandoned(name)
        if verdict is None:
            continue
        if isinstance(verdict, str):
            print(f"kept {name!r}: {verdict}", file=sys.stderr)
            continue
        why = "no live process attached"
        if verdict:
            why += f"; reaped {plural(verdict, 'dead one')}"
        if args.dry_run:
            print(f"would remove {name!r} ({why})")
        elif remove_quietly(name):
            print(f"removed {name!r} ({why})")
        else:
            continue
        removed += 1
    what = "would remove" if args.dry_run else "removed"
    print(f"gc: {what} {removed} of {plural(len(names), 'store')}")
    return 0


def abandoned(name: str) -> int | str | None:
    """Whether store ``name`` has no live process attached.

    Returns
    -------
    int, str or None
        The number of dead processes reaped if it is abandoned; None if it is in use or gone;
        the error message if it cannot be read.
    """
    try:
        with attach(name) as store:
            reaped = store.reap()
            if other_processes(store):
                return None
            time.sleep(GC_RECHECK_SECONDS)
            if other_processes(store):
                return None
    except StoreNotFoundError:
        return None
    except SharedStoreError as e:
        return str(e)
    return reaped


def remove_quietly(name: str) -> bool:
    """Unlink store ``name``; False if it was gone already."""
    try:
        unlink(name)
    except StoreNotFoundError:
        return False
    return True


# ---------------------------------------------------------------------- argument parsing
def positive_int(text: str) -> int:
    """argparse type: an int of at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not at least 1")
    return n


def build_parser() -> argparse.ArgumentParser:
    """The parser for every command; each subparser sets ``func`` to the command's function."""
    parser = argparse.ArgumentParser(
        prog="sharedstore",
        description="Shared-memory stores for Python worker processes: demo, inspect, clean up.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="worker processes share strings, counters and maps")
    demo.add_argument("--workers", type=positive_int, default=2, metavar="N",
                      help="worker processes in the pool (default: 2)")
    demo.add_argument("--tasks", type=positive_int, default=4, metavar="N",
                      help="tasks to run on them (default: 4)")
    demo.add_argument("--keep", action="store_true",
                      help="keep the store afterwards (default: remove it)")
    demo.set_defaults(func=run_demo)

    ls = sub.add_parser("ls", help="list the stores with their sizes and attached processes")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_ls)

    info = sub.add_parser("info", help="a store's stats, named values and attached processes")
    info.add_argument("name", metavar="NAME")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)

    stats = sub.add_parser("stats", help="a store's sizes, objects and attached processes")
    stats.add_argument("name", metavar="NAME")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=run_stats)

    dump = sub.add_parser("dump", help="print one named value, refs resolved")
    dump.add_argument("name", metavar="NAME")
    dump.add_argument("key", metavar="KEY")
    dump.add_argument("--json", action="store_true", help="print JSON")
    dump.set_defaults(func=run_dump)

    rm = sub.add_parser("rm", help="remove a store")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(func=run_rm)

    gc = sub.add_parser("gc", help="remove the stores no live process is attached to")
    gc.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    gc.set_defaults(func=run_gc)
    return parser


def exit_code(e: SystemExit) -> int:
    """The int exit code a ``SystemExit`` stands for."""
    if e.code is None:
        return 0
    return e.code if isinstance(e.code, int) else 1


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code: 0 success, 1 error, 2 usage error, 130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse has printed
        return exit_code(e)
    try:
        return args.func(args)
    except SharedStoreError as e:
        print(f"sharedstore {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sharedstore {args.command}: interrupted", file=sys.stderr)
        return 130
