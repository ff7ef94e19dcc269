"""Tasks the Dask tests run in workers (module level, so they pickle by reference)."""

import os
import time

import numpy as np

import sharedstore as ss
from sharedstore.dask import node_store

Row = ss.Struct("Row", {"pid": "int64", "i": "int64"})


def whoami():
    """(pid, node store name, id of the Store object) of this worker process."""
    store = node_store()
    return os.getpid(), store.name, id(store)


def init_hits():
    """A ``hits`` counter in this node's store (one task per node)."""
    store = node_store()
    store["hits"] = store.integer(0)
    return store.name


def hits():
    return node_store()["hits"].get()


def add_hits(i, n=10):
    """Add 1 to the node store's ``hits`` ``n`` times; return this worker's pid."""
    hits = node_store()["hits"]
    for _ in range(n):
        hits.add(1)
    return os.getpid()


def append_rows(n):
    """Append ``n`` rows (this pid, i) to the node store's ``rows`` table: one at a time, then
    in a batch."""
    table = node_store()["rows"]
    pid = os.getpid()
    half = n // 2
    for i in range(half):
        table.append({"pid": pid, "i": i})
    batch = np.zeros(n - half, Row.dtype)
    batch["pid"] = pid
    batch["i"] = np.arange(half, n)
    table.extend(batch)
    return pid


def write_loop(tag, seconds):
    """Locked writes into the node store for ``seconds`` (a map set, a vector append, then an
    atomic count of the iterations done), holding a view of the vector (a pin) all along;
    returns the iterations and the longest pause between two of them."""
    store = node_store()
    kv, log, done = store["kv"], store["log"], store[f"n:{tag}"]
    pinned = log.view()  # pins the log's data block while the loop makes it grow
    store["started"].add(1)
    last = start = time.monotonic()
    worst, i = 0.0, 0
    while last - start < seconds:
        kv[f"{tag}:{i % 64}"] = i
        log.append(i)
        done.add(1)
        i += 1
        now = time.monotonic()
        worst = max(worst, now - last)
        last = now
    del pinned  # released here; a killed worker's pin is released when it is reaped
    return {"pid": os.getpid(), "n": i, "worst": worst}


def read_counts(tags):
    """(pid, {tag: iterations counted}, {key: value} of ``kv``) as this worker sees them."""
    store = node_store()
    return (os.getpid(), {t: store[f"n:{t}"].get() for t in tags}, dict(store["kv"].items()))


def node_store_error():
    """The NodeStoreError node_store() raises here, as text (or None if it attaches)."""
    try:
        node_store()
    except ss.NodeStoreError as e:
        return str(e)
    return None


# ---------------------------------------------------------------------- multi-node patterns
def load_lookup(n):
    """Load a read-mostly table into this node's store, once per node."""
    store = node_store()
    if "lookup" not in store:
        table = store.vector("float64", capacity=n)
        table.extend(np.arange(n, dtype=np.float64) * 2.0)
        store["lookup"] = table
        store["loads"] = store.integer(0)
    store["loads"].add(1)
    return store.name


def lookup(keys):
    """Values of ``keys`` from the node's lookup table (a zero-copy view)."""
    view = node_store()["lookup"].view()
    return node_store().name, [float(view[k]) for k in keys]


def init_partition(keys):
    """This node's part of the partitioned state: a counter per key it owns."""
    store = node_store()
    store["counts"] = store.map({k: store.integer(0) for k in keys})
    return store.name


def count_partition(keys):
    """Count each key in this node's state (atomic adds: any worker of the node may run it);
    a key of another node's partition is a KeyError."""
    counts = node_store()["counts"]
    for k in keys:
        counts[k].add(1)
    return node_store().name


def node_total():
    """This node's sum of its counters: one task per node; the client adds them up."""
    return sum(c.get() for c in node_store()["counts"].values())


def node_store_loads():
    """How many times this node's lookup table was asked for (loaded once)."""
    return node_store()["loads"].get()
