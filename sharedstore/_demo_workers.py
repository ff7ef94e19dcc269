"""Worker functions of the demo (``python -m sharedstore demo``) and of the notebooks.

They live in a module of the package, not in ``__main__`` or a notebook cell, so that processes
started with the ``spawn`` method can import them.  This module imports nothing heavy beyond
sharedstore itself: it is what every spawned worker loads.

The shared state a worker finds in the store, by name:

``particles``
    a table of ``Particle`` records (``schemas/particles.toml``): ``store.vector(Particle)``.
``words``
    a map from each word of :data:`VOCABULARY` to an ``IntRef`` counter (made by the parent,
    so workers only ever ``add`` to counters that exist: no read-modify-write race).
``progress``
    an ``IntRef``: records done so far, which the parent reads to draw its progress bar.
"""

from __future__ import annotations

import random
import signal
from collections import Counter
from pathlib import Path

import numpy as np

from .store import attach
from .structs import load_schema

#: the words of the generated text the workers count
VOCABULARY = [
    "shared", "memory", "store", "worker", "process", "numba", "kernel", "view", "table", "record",
    "particle", "map", "vector", "counter", "atomic", "lock", "handle", "heap", "block", "page",
    "string", "number", "zero", "copy", "pin", "grow", "attach", "spawn", "fork", "python",
    "numpy", "pandas", "arrow", "schema", "struct", "field",
]

#: words of generated text per record
WORDS_PER_RECORD = 8

#: the schema file the demo and the notebook take ``Particle`` from
SCHEMA_FILE = "particles.toml"


def schema_path(name: str = SCHEMA_FILE) -> Path:
    """Where schema file ``name`` is: ``sharedstore/schemas/`` in an installed wheel (the
    build copies the repository's ``schemas/`` there), else the repository's ``schemas/``
    next to the package (a source checkout or an editable install).

    Raises
    ------
    FileNotFoundError
        If neither place has it (a broken install: reinstall sharedstore).
    """
    pkg = Path(__file__).resolve().parent
    candidates = (pkg / "schemas" / name, pkg.parent / "schemas" / name)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"schema file {name!r} is in neither {candidates[0].parent} nor {candidates[1].parent}: "
        "reinstall sharedstore"
    )


def particle_struct():
    """The ``Particle`` struct of ``schemas/particles.toml``."""
    return load_schema(schema_path())["Particle"]


def velocity(ids: np.ndarray) -> np.ndarray:
    """The velocity of each particle, from its id: multiples of 1/4 between -1 and 1, so
    that sums of a few hundred steps are exact in float32 and the parent can check them
    with ``==``."""
    ids = np.asarray(ids, dtype=np.int64)
    v = np.empty((len(ids), 3), dtype=np.float32)
    v[:, 0] = (ids % 9 - 4) * 0.25
    v[:, 1] = (ids % 5 - 2) * 0.5
    v[:, 2] = (ids % 3 - 1) * 0.25
    return v


def text_for(first: int, count: int) -> str:
    """The generated text of records ``first .. first + count - 1``: ``WORDS_PER_RECORD``
    words per record, the same for every process that asks (seeded by ``first``)."""
    rng = random.Random(first)
    return " ".join(rng.choices(VOCABULARY, k=count * WORDS_PER_RECORD))


def chunks(n: int, worker: int, n_workers: int, chunk: int):
    """``(first, stop)`` of each chunk of at most ``chunk`` rows of worker ``worker``'s slice
    when ``n`` rows are split into ``n_workers`` contiguous slices of nearly equal size."""
    lo, hi = n * worker // n_workers, n * (worker + 1) // n_workers
    for first in range(lo, hi, chunk):
        yield first, min(first + chunk, hi)


def expected_word_counts_of(n: int, n_workers: int, chunk: int) -> Counter:
    """What the word counters hold once ``n_workers`` demo workers counted the text of their
    chunks of ``n`` records (the parent's check)."""
    total: Counter[str] = Counter()
    for worker in range(n_workers):
        for first, stop in chunks(n, worker, n_workers, chunk):
            total.update(text_for(first, stop - first).split())
    return total


def add_word_counts(counters: dict, text: str) -> int:
    """Count the words of ``text`` and add each count to its shared ``IntRef`` (one atomic
    fetch-add per distinct word); return the number of words."""
    counts = Counter(text.split())
    for word, n in counts.items():
        counters[word].add(n)
    return sum(counts.values())


def word_counters(store) -> dict:
    """``{word: IntRef}`` from the map ``store["words"]``, read in one ``get_many`` call."""
    words = store["words"]
    return dict(zip(VOCABULARY, words.get_many(VOCABULARY)))


def _ignore_sigint() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the parent handles it (it stops
    # the workers and removes the store), the workers must not die half way through a line.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------------- the demo's worker
def move_particles(name: str, path: str | None, worker: int, n_workers: int, steps: int,
                   chunk: int) -> None:
    """Demo worker: attach to store ``name`` (at ``path`` if not None) and work on this
    worker's slice of the table.

    For each of its :func:`chunks`, through a zero-copy view: move every particle ``steps``
    times by its :func:`velocity`, mark it ``alive`` and tag it with the worker (``"w0"``,
    ``"w1"``...); count the words of the chunk's :func:`text_for` into the shared counters;
    add the chunk's rows to ``progress``.  At the end, write a report into the map
    ``workers`` under ``"w<worker>"``.
    """
    import os
    import time

    _ignore_sigint()
    started = time.time()
    store = attach(name, path=path)
    try:
        table, progress = store["particles"], store["progress"]
        counters = word_counters(store)
        view = table.view()  # zero-copy: writes land in shared memory
        tag = f"w{worker}"
        rows_done = words = 0
        for first, stop in chunks(len(view), worker, n_workers, chunk):
            rows = view[first:stop]  # still a view: no copy
            vel = velocity(rows["id"])
            pos = rows["pos"]
            for _ in range(steps):
                pos += vel
            rows["alive"] = True
            rows["tag"] = tag
            words += add_word_counts(counters, text_for(first, stop - first))
            progress.add(stop - first)
            rows_done += stop - first
            del rows, pos
        del view  # release the view's pin before detaching
        store["workers"][tag] = {"pid": os.getpid(), "rows": rows_done, "words": words,
                                 "started": started, "ended": time.time()}
    finally:
        store.close()


# ---------------------------------------------------------------------- the notebook's worker
def fill_particles(name: str, worker: int, records: int, batch: int, pause: float = 0.0,
                   path: str | None = None) -> None:
    """Notebook worker: append ``records`` new particles to the shared table in batches of
    ``batch`` (concurrent appends lose nothing), count each batch's words into the shared
    counters, and add each batch to ``progress``; sleep ``pause`` seconds between batches so
    that a watcher sees the store grow.

    Ids are ``worker * records + i``; masses are drawn from a lognormal distribution seeded
    by the worker, positions from a normal distribution around the worker's own centre."""
    import time

    _ignore_sigint()
    store = attach(name, path=path)
    try:
        table, progress = store["particles"], store["progress"]
        counters = word_counters(store)
        rng = np.random.default_rng(worker)
        dtype = table.dtype
        for first in range(0, records, batch):
            n = min(batch, records - first)
            rows = np.zeros(n, dtype=dtype)
            rows["id"] = worker * records + first + np.arange(n)
            rows["mass"] = rng.lognormal(mean=worker * 0.5, sigma=0.4, size=n)
            rows["pos"] = rng.normal(loc=3.0 * worker, scale=1.0, size=(n, 3))
            rows["alive"] = True
            rows["tag"] = f"w{worker}"
            table.extend(rows)
            add_word_counts(counters, text_for(worker * records + first, n))
            progress.add(n)
            if pause:
                time.sleep(pause)
    finally:
        store.close()
