"""``python -m sharedstore demo``: worker processes share one store; a progress bar, then a summary.

The parent creates a store (which loads the kernels, so the workers find them compiled), makes
a table of ``Particle`` records (``schemas/particles.toml``), a map of word counters and a
progress counter, then starts ``--workers`` processes with the ``spawn`` method.  Each attaches
by name and works on its own slice of the table through a zero-copy view (see
:func:`sharedstore._demo_workers.move_particles`).  The parent draws a progress bar from the
counter, checks every result exactly (positions, counts, progress), prints a summary table and
removes the store, also after an error or Ctrl-C.

This module imports ``rich``; only the command line imports this module, so ``import
sharedstore`` stays light.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time

import numpy as np

from . import _demo_workers as W
from .errors import human_bytes
from .store import create

DEFAULT_WORKERS = 2
DEFAULT_RECORDS = 200_000
#: how many times each worker moves each of its particles
DEFAULT_STEPS = 50
#: how often the parent reads the progress counter
POLL_SECONDS = 0.05
#: how long the parent waits for a worker to exit once its rows are done
JOIN_SECONDS = 60.0


def chunk_size(records: int, workers: int) -> int:
    """Rows per chunk: about 40 progress updates per worker, 256 to 8192 rows each."""
    return max(256, min(8192, records // (40 * workers) or 1))


def run(workers: int = DEFAULT_WORKERS, records: int = DEFAULT_RECORDS,
        steps: int = DEFAULT_STEPS, *, keep: bool = False, as_json: bool = False,
        console=None) -> int:
    """Run the demo and print its summary (a table, or JSON with ``as_json``).

    Returns
    -------
    int
        0 if every shared value is what the workers must have made it, else 1.
    """
    from rich.console import Console

    console = console or Console()
    started = time.perf_counter()
    store = create(f"demo-{os.getpid()}")
    removed = False
    try:
        chunk = chunk_size(records, workers)
        seed(store, records)
        procs = start_workers(store, workers, steps, chunk)
        try:
            expected = W.expected_word_counts_of(records, workers, chunk)  # while they start
            watch(procs, store["progress"], records, console=console, show=not as_json)
        except BaseException:  # Ctrl-C (or an error here): stop the workers now
            stop(procs, terminate=True)
            raise
        stop(procs)
        elapsed = time.perf_counter() - started
        problems = [f"worker {i} (pid {p.pid}) exited with code {p.exitcode}"
                    for i, p in enumerate(procs) if p.exitcode != 0]
        problems += check(store, records, steps, expected)
        summary = summarize(store, records, steps, workers, elapsed, problems)
    finally:
        store.close()
        if not keep:
            try:
                store.unlink()
                removed = True
            except FileNotFoundError:
                pass  # removed meanwhile (sharedstore rm)
    summary["removed"] = removed
    if as_json:
        print(json.dumps(summary, indent=2))  # plain: never wrapped to a console's width
    else:
        print_summary(console, summary, keep=keep)
    return 0 if not problems else 1


# ---------------------------------------------------------------------- set-up
def seed(store, records: int) -> None:
    """The shared state the workers find by name: ``particles`` (``records`` particles at
    the origin, ids ``0..records-1``, random masses), ``words`` (a zero ``IntRef`` per word),
    ``progress`` (a zero ``IntRef``) and ``workers`` (each worker's report)."""
    Particle = W.particle_struct()
    table = store.vector(Particle, capacity=records)
    rows = np.zeros(records, dtype=Particle.dtype)
    rows["id"] = np.arange(records)
    rows["mass"] = np.random.default_rng(0).lognormal(0.0, 0.5, records)
    table.extend(rows)  # one kernel call; the "name" strings stay empty
    store["particles"] = table
    store["words"] = store.map({w: store.integer(0) for w in W.VOCABULARY})
    store["progress"] = store.integer(0)
    store["workers"] = store.map()


def start_workers(store, workers: int, steps: int, chunk: int) -> list:
    """Start ``workers`` spawned processes running :func:`_demo_workers.move_particles`.

    They attach by the store's name and path (the path matters only for a store outside
    /dev/shm, such as the tests' own directory)."""
    path = str(store.path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=W.move_particles, args=(store.name, path, i, workers, steps, chunk),
                         name=f"sharedstore-demo-{i}", daemon=True)
             for i in range(workers)]
    try:
        for p in procs:
            _start(p)
    except BaseException:
        stop(procs, terminate=True)
        raise
    return procs


def _start(p) -> None:
    """``p.start()`` with Ctrl-C held back until it returns: interrupted halfway, a spawned
    child would be left running, unknown to ``stop``, reading the data it was never sent (and
    printing a traceback when the parent's exit closes the pipe)."""
    if not hasattr(signal, "pthread_sigmask"):
        p.start()
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        p.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)  # (a Ctrl-C meanwhile: raised now)


def watch(procs: list, progress, total: int, *, console, show: bool) -> None:
    """Until every worker has exited, read the shared counter ``progress`` and draw it as a
    progress bar (rich draws nothing but the final state when the output is not a terminal).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("records"), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not show) as bar:
        task = bar.add_task(f"{len(procs)} workers", total=total)
        while any(p.is_alive() for p in procs):
            bar.update(task, completed=progress.get())
            if any(p.exitcode not in (None, 0) for p in procs):
                break  # one failed: stop the others (the caller reports it)
            time.sleep(POLL_SECONDS)
        bar.update(task, completed=progress.get())


def stop(procs: list, *, terminate: bool = False) -> None:
    """Wait for the workers to exit; terminate the ones still running if ``terminate`` (Ctrl-C)
    or if one of them failed (or after :data:`JOIN_SECONDS`), kill the ones that ignore that."""
    failed = any(q.exitcode not in (None, 0) for q in procs)
    for p in procs:
        if p.is_alive() and (terminate or failed):
            p.terminate()
    for p in procs:
        if p.pid is None:
            continue  # never started
        p.join(JOIN_SECONDS)
        if p.is_alive():
            p.terminate()
            p.join(5)
        if p.is_alive():
            p.kill()
            p.join()


# ---------------------------------------------------------------------- results
def check(store, records: int, steps: int, expected_words) -> list[str]:
    """What differs from what the workers must have made: each particle moved ``steps`` times
    by its velocity (exactly, in float32), alive and tagged by one worker; every word counted
    exactly; ``progress`` equal to ``records``."""
    problems = []
    view = store["particles"].view()
    try:
        want = W.velocity(view["id"]) * np.float32(steps)
        wrong = int(np.count_nonzero((view["pos"] != want).any(axis=1)))
        if wrong:
            problems.append(f"{wrong:,} of {records:,} particles are not where {steps} steps "
                            "take them")
        if not view["alive"].all() or (view["tag"] == "").any():
            problems.append("some particles were never reached by a worker")
    finally:
        del view
    counts = dict(zip(W.VOCABULARY, (r.get() for r in store["words"].get_many(W.VOCABULARY))))
    lost = {w: (counts[w], expected_words[w]) for w in W.VOCABULARY
            if counts[w] != expected_words[w]}
    if lost:
        problems.append(f"word counts differ (got, expected): {lost}")
    done = store["progress"].get()
    if done != records:
        problems.append(f"progress is {done:,}, expected {records:,}")
    return problems


def summarize(store, records: int, steps: int, workers: int, elapsed: float,
              problems: list[str]) -> dict:
    """The figures the summary shows (JSON-able)."""
    reports = sorted(store["workers"].items())
    per_worker = [dict(r, worker=int(k[1:])) for k, r in reports]
    if per_worker:
        work = max(r["ended"] for r in per_worker) - min(r["started"] for r in per_worker)
    else:
        work = 0.0
    counts = {w: r.get() for w, r in zip(W.VOCABULARY, store["words"].get_many(W.VOCABULARY))}
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    stats = store.stats()
    rate = records / work if work > 0 else None
    return {
        "store": store.name,
        "workers": workers,
        "start_method": "spawn",
        "records": records,
        "steps": steps,
        "elapsed_seconds": round(elapsed, 3),
        "work_seconds": round(work, 3),
        "records_per_second": round(rate) if rate else None,
        "moves_per_second": round(rate * steps) if rate else None,
        "words": sum(counts.values()),
        "distinct_words": sum(1 for n in counts.values() if n),
        "top_words": dict(top),
        "memory": {k: stats[k] for k in ("used", "committed", "reserved")},
        "objects": stats["objects"],
        "per_worker": per_worker,
        "ok": not problems,
        "problems": problems,
    }


def print_summary(console, s: dict, *, keep: bool) -> None:
    """The summary as rich tables."""
    from rich.table import Table

    table = Table(title=f"sharedstore demo: store {s['store']!r}", show_header=False,
                  title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rate = f"{s['records_per_second']:,} records/s" if s["records_per_second"] else "n/a"
    moves = f"{s['moves_per_second']:,} particle moves/s" if s["moves_per_second"] else ""
    mem = s["memory"]
    table.add_row("workers", f"{s['workers']} processes ({s['start_method']}), attached by name")
    table.add_row("records", f"{s['records']:,} Particle records, each moved {s['steps']} times "
                  "in place through zero-copy views")
    table.add_row("words", f"{s['words']:,} counted into {s['distinct_words']} shared IntRef "
                  f"counters; top: " + ", ".join(f"{w} {n:,}" for w, n in s["top_words"].items()))
    table.add_row("throughput", f"{rate}, {moves} ({s['work_seconds']:.2f} s of work)")
    table.add_row("memory", f"{human_bytes(mem['used'])} used, {human_bytes(mem['committed'])} "
                  f"committed, {human_bytes(mem['reserved'])} reserved")
    table.add_row("objects", ", ".join(f"{k} {v:,}" for k, v in s["objects"].items()))
    table.add_row("elapsed", f"{s['elapsed_seconds']:.2f} s (worker start-up included)")
    verdict = "[green]OK[/]: every particle, word count and the progress counter is exact"
    if not s["ok"]:
        verdict = "[red]FAILED[/]: " + "; ".join(s["problems"])
    table.add_row("check", verdict)
    console.print(table)

    workers = Table(title="workers", title_justify="left")
    for col in ("worker", "pid", "rows", "words", "seconds"):
        workers.add_column(col, justify="right")
    for r in s["per_worker"]:
        workers.add_row(str(r["worker"]), str(r["pid"]), f"{r['rows']:,}", f"{r['words']:,}",
                        f"{r['ended'] - r['started']:.2f}")
    console.print(workers)
    if keep:
        console.print(f"kept store {s['store']!r}: look at it with `python -m sharedstore info "
                      f"{s['store']}`, remove it with `python -m sharedstore rm {s['store']}`",
                      soft_wrap=True)
    elif s["removed"]:
        console.print(f"removed store {s['store']!r}", soft_wrap=True)
