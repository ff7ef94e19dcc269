"""The ``sharedstore`` command line: a demo, and tools to inspect and clean up stores.

Run it as ``python -m sharedstore COMMAND`` (or ``sharedstore COMMAND`` once installed)::

    demo [--workers N] [--records N] [--steps N] [--keep] [--json]
                                 worker processes share a table, a map and a counter
    bench [--quick] [--repeat N] [--only NAME] [--json]
                                 time sharedstore against its peers; print the ratios
    compile [--jobs N] [--portable [--python PY ...]]
                                 compile the kernels ahead (this machine's cache, or the
                                 portable one shipped in the package)
    ls [--json]                  the stores in /dev/shm, their sizes and processes
    info NAME [--json]           a store's stats, named values and processes
    stats NAME [--json]          a store's sizes, objects by kind and processes
    dump NAME KEY [--json]       one named value, refs resolved
    check NAME [--repair] [--json]
                                 walk the store, report every inconsistency (exit 1 if damaged)
    rm NAME                      remove a store
    gc [--dry-run]               remove the stores no live process is attached to
    dask-memory [--size SIZE] [--workers N] [--json]
                                 a table's memory on a Dask node: node store vs copy per worker

Every command returns an exit code: 0 on success, 1 when sharedstore reports an error (one line
on stderr, no traceback), 2 for a usage error and 130 when interrupted.

``ls``, ``info`` and ``gc`` attach to the stores they look at, which registers this process in
each store's process table for a moment; the counts and lists of processes they print leave that
entry out.
"""

from __future__ import annotations

import argparse
import json
import pprint
import reprlib
import sys
import time

from . import (
    ArrayRef,
    IntRef,
    ListRef,
    MapRef,
    NumberRef,
    Ref,
    SharedStoreError,
    StoreNotFoundError,
    StringRef,
    StructRef,
    UseAfterFreeError,
    VectorRef,
    attach,
    list_stores,
    unlink,
)
from .errors import human_bytes

#: gc looks at a store's process table twice, this many seconds apart, before removing it, so
#: that a store whose creator is between writing its header and registering is not taken for dead
GC_RECHECK_SECONDS = 0.05

_preview = reprlib.Repr()
_preview.maxstring = 40
_preview.maxother = 40


# ---------------------------------------------------------------------- demo
def run_demo(args: argparse.Namespace) -> int:
    """``demo``: worker processes share a table, a map and a counter (:mod:`sharedstore.demo`)."""
    from .demo import run

    if not args.json:  # (with --json, create() compiles what it must, with no bar)
        compile_kernels(_console())
    return run(args.workers, args.records, args.steps, keep=args.keep, as_json=args.json)


# ---------------------------------------------------------------------- bench
def run_bench(args: argparse.Namespace) -> int:
    """``bench``: a short run of the comparisons with peers (:mod:`sharedstore.bench`)."""
    from .bench import main as bench_main

    return bench_main(quick=args.quick, as_json=args.json, repeat=args.repeat, only=args.only)


# ---------------------------------------------------------------------- dask-memory
def run_dask_memory(args: argparse.Namespace) -> int:
    """``dask-memory``: PSS of a LocalCluster's workers holding a table once in the node store
    and as a copy per worker (:mod:`sharedstore._dask_memory`; needs sharedstore[dask])."""
    try:
        from ._dask_memory import main as memory_main
        from .dask import NodeStore  # noqa: F401  (is distributed installed?)
    except ImportError as e:
        print(f"sharedstore dask-memory: error: {e}; pip install 'sharedstore[dask]'",
              file=sys.stderr)
        return 1
    return memory_main(args.size, args.workers, as_json=args.json)

# ---------------------------------------------------------------------- compile
def compile_kernels(console, jobs: int | None = None) -> list[str]:
    """Load every kernel, compiling what no cache holds in ``jobs`` processes behind a progress
    bar (rich; shown only once there is something to compile).  The names compiled."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from . import _jit

    done: list[str] = []
    bar = Progress("[bold]compiling kernels for this machine (once)", BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    task = None

    def progress(n, total, name):
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("", total=total)
        if name:
            done.append(name)
        bar.update(task, completed=n)

    try:
        _jit.load_all(jobs=jobs, progress=progress)
    finally:
        if task is not None:
            bar.stop()
    return done


def run_compile(args: argparse.Namespace) -> int:
    """``compile``: every kernel into this machine's cache, or (``--portable``) into the
    portable cache shipped in the package, for each interpreter of ``--python``."""
    from . import _cache, _compile, _jit

    console = _console()
    started = time.perf_counter()
    if not args.portable:
        compiled = compile_kernels(console, args.jobs)
        where = _cache.local_dir()
        shipped = _cache.shipped_dir()
        console.print(f"{len(_jit._KERNELS)} kernels ready in {time.perf_counter() - started:.1f}"
                      f" s: {len(compiled)} compiled into {where}"
                      + (f", the rest from {shipped}" if shipped else ""))
        return 0
    _jit.import_kernel_modules()  # (nothing is loaded here: the workers compile)
    pythons = args.python or [_compile.find_python(v) for v in _compile.SHIPPED_PYTHONS]
    if None in pythons:
        missing = [v for v, p in zip(_compile.SHIPPED_PYTHONS, pythons) if p is None]
        print(f"sharedstore compile: error: no CPython {', '.join(missing)} on PATH or under "
              "pyenv: install it, or name the interpreters with --python", file=sys.stderr)
        return 1
    for python in pythons:
        t0 = time.perf_counter()
        interpreter = _compile.build_env(python)
        out = _compile.build_portable(interpreter, list(_jit._KERNELS), jobs=args.jobs)
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        console.print(f"{out.name}: {len(_jit._KERNELS)} kernels in "
                      f"{time.perf_counter() - t0:.1f} s, {human_bytes(size)} ({python})")
    return 0


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
        f"format version {stats['format_version']}, value kinds: "
        + ", ".join(stats["value_kinds"])
        + (" (a kind <tag>: only a newer sharedstore reads it)"
           if any(k.startswith("kind ") for k in stats["value_kinds"]) else ""),
    ]


def other_processes(store) -> list[dict]:
    """``store.workers()`` without the entry this command's own attach added.

    A process has one entry per store however many times it attaches: if the process running
    the command held the store open already (its other handles, or views), that entry is its
    own and stays in the list."""
    procs = store.workers()
    att = store._att
    if att.handles <= 1 and not att.pins:  # this command's attach registered the process
        procs = [p for p in procs if not p["self"]]
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


def _console():
    """A rich console for tables; piped output keeps its lines whole (no 80-column wrap)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def _table(*columns: str, title: str | None = None):
    """A borderless rich table whose first column is left-aligned and the rest right-aligned."""
    from rich.table import Table

    table = Table(*columns, title=title, title_justify="left", box=None, pad_edge=False,
                  header_style="bold")
    for col in table.columns[1:]:
        col.justify = "right"
    return table


def print_store_table(rows: list[dict]) -> None:
    """Print the rows of :func:`store_summary` as a table (rich)."""
    table = _table("NAME", "RESERVED", "COMMITTED", "USED", "WORKERS", "VALUES")
    errors = []
    for r in rows:
        if "error" in r:
            table.add_row(r["name"], "?", "?", "?", "?", "?")
            errors.append(f"{r['name']}: {r['error']}")
            continue
        table.add_row(
            r["name"], human_bytes(r["reserved"]), human_bytes(r["committed"]),
            human_bytes(r["used"]), str(r["workers"]), str(r["named_values"]),
        )
    _console().print(table)
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
    except Exception as e:  # unpickling runs foreign code: any error is possible
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
    """Print :func:`store_report` for people: its stats, then tables of the named values and
    of the attached processes (rich)."""
    from rich.markup import escape

    console = _console()
    stats = report["stats"]
    console.print(escape(f"store {stats['name']!r} at {stats['path']}"))
    for line in stats_lines(stats):
        console.print("  " + escape(line))
    values = report["values"]
    table = _table("key", "kind", "preview", title=f"named values ({len(values)})")
    table.columns[1].justify = table.columns[2].justify = "left"
    for v in sorted(values, key=lambda v: _key_text(v["key"])):
        table.add_row(escape(_key_text(v["key"])), v["kind"], escape(v["preview"]))
    console.print(table)
    console.print(f"attached processes ({len(report['workers'])})")
    for line in process_lines(report["workers"]):
        console.print("  " + line)


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


def run_check(args: argparse.Namespace) -> int:
    """``check NAME [--repair]``: walk the whole store; exit 1 if it is damaged (debris of killed
    operations alone is not damage: it is reported, and ``--repair`` reclaims it)."""
    with attach(args.name) as store:
        report = store.check(repair=args.repair)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report)
    return 0 if report.ok else 1


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
    if isinstance(value, (StringRef, NumberRef, IntRef)):
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

    from .bench import COMPARISONS  # (no rich import either)
    from .demo import DEFAULT_RECORDS, DEFAULT_STEPS, DEFAULT_WORKERS  # (no rich import)

    demo = sub.add_parser("demo", help="worker processes share a table, a map and a counter")
    demo.add_argument("--workers", type=positive_int, default=DEFAULT_WORKERS, metavar="N",
                      help=f"worker processes to start (default: {DEFAULT_WORKERS})")
    demo.add_argument("--records", type=positive_int, default=DEFAULT_RECORDS, metavar="N",
                      help=f"particle records in the shared table (default: {DEFAULT_RECORDS:,})")
    demo.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, metavar="N",
                      help=f"times each worker moves each of its particles (default: "
                           f"{DEFAULT_STEPS})")
    demo.add_argument("--keep", action="store_true",
                      help="keep the store afterwards (default: remove it)")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON, no bar")
    demo.set_defaults(func=run_demo)

    bench = sub.add_parser("bench", help="time sharedstore against its peers; print the ratios")
    bench.add_argument("--quick", action="store_true",
                       help="small sizes, one timed call each (a smoke test, not figures)")
    bench.add_argument("--repeat", type=positive_int, metavar="N",
                       help="timed calls per figure at least, the best is kept (default: 3, "
                            "more for calls of a few ms; quick: 1)")
    bench.add_argument("--only", action="append", metavar="BENCHMARK",
                       choices=[c[0] for c in COMPARISONS],
                       help="run only this comparison (repeatable)")
    bench.add_argument("--json", action="store_true", help="print JSON")
    bench.set_defaults(func=run_bench)

    comp = sub.add_parser("compile", help="compile the kernels ahead (image builds, CI)")
    comp.add_argument("--jobs", type=positive_int, metavar="N",
                      help="compile in N processes (default: one per CPU)")
    comp.add_argument("--portable", action="store_true",
                      help="build the cache shipped in the package (generic x86-64 code) for "
                           "each --python, in place of this machine's cache")
    comp.add_argument("--python", nargs="+", metavar="PY",
                      help="with --portable: the interpreters to build for (default: CPython "
                           "3.10-3.13 found on PATH or under pyenv; each gets a virtualenv "
                           "with the numba version to ship if it lacks it)")
    comp.set_defaults(func=run_compile)

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

    check = sub.add_parser("check", help="walk a store and report every inconsistency")
    check.add_argument("name", metavar="NAME")
    check.add_argument("--repair", action="store_true",
                       help="free what killed operations leaked, rebuild lists and counts")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=run_check)

    rm = sub.add_parser("rm", help="remove a store")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(func=run_rm)

    gc = sub.add_parser("gc", help="remove the stores no live process is attached to")
    gc.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    gc.set_defaults(func=run_gc)

    memory = sub.add_parser("dask-memory",
                            help="a table's memory on a Dask node: node store vs copy per worker")
    memory.add_argument("--size", default="1GB", metavar="SIZE",
                        help="the table's size, such as 1GB or 256MiB (default: 1GB)")
    memory.add_argument("--workers", type=positive_int, default=3, metavar="N",
                        help="worker processes of the LocalCluster (default: 3)")
    memory.add_argument("--json", action="store_true", help="print JSON")
    memory.set_defaults(func=run_dask_memory)
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
