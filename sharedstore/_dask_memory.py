"""What a table costs a Dask node: once in the node store, or one copy per worker.

``python -m sharedstore dask-memory`` and the asv benchmark ``bench_dask.NodeStoreMemory`` run
:func:`run`; the tests call :func:`measure` on a cluster of their own.  Needs ``distributed``.

Memory is measured as each worker's PSS (``/proc/self/smaps_rollup``): a page mapped by *n*
processes counts 1/n in each, so the PSS of a node's processes adds up to the memory the node
spends.  RSS would count a shared page once in every process that touched it (so would Dask's
memory manager: dask/distributed#4304); it is reported beside, to show that.

Two cases, on the same workers, each measured against the workers' PSS just before it:

- *a copy per worker*, Dask's way to give every worker a table:
  ``client.scatter(table, broadcast=True)``; each worker then reads its copy.
- *the node store*: one task per node writes the table into the node store (in chunks: no
  private copy of it), then each worker reads all of it through a zero-copy view.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import numpy as np

from ._nodestore import node_store
from .errors import human_bytes

#: the table's records: 16 bytes
ROW = np.dtype([("key", "<i8"), ("mass", "<f8")])
_CHUNK_ROWS = 1 << 20
_KEY = "dask-memory-table"


def smaps_rollup(pid: int | str = "self") -> dict[str, int]:
    """The memory counters of ``/proc/<pid>/smaps_rollup``, in bytes (``Rss``, ``Pss``,
    ``Pss_Shmem``...)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def mapping_rss(path: str, pid: int | str = "self") -> int:
    """Bytes of ``path``'s mappings resident in process ``pid`` (``Rss`` in its smaps)."""
    total, inside = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 5)
            if head and "-" in head[0] and len(head) >= 5:  # a mapping's first line
                inside = len(head) == 6 and head[5].rstrip("\n") == path
            elif inside and head and head[0] == "Rss:":
                total += int(head[1]) * 1024
    return total


def rows(start: int, stop: int) -> np.ndarray:
    """Records ``start`` to ``stop`` of the table (the same in both cases)."""
    out = np.empty(stop - start, ROW)
    out["key"] = np.arange(start, stop)
    out["mass"] = out["key"] * 0.5
    return out


# ---------------------------------------------------------------------- tasks (run in workers)
def _attach(run):
    node_store(run)  # attached and kernels loaded before the first measurement


def _fill_store(key: str, nrows: int, run) -> str:
    store = node_store(run)
    table = store.vector(ROW, capacity=nrows)
    for start in range(0, nrows, _CHUNK_ROWS):
        table.extend(rows(start, min(nrows, start + _CHUNK_ROWS)))
    store[key] = table
    return store.name


def _read_store(key: str, run) -> float:
    return float(node_store(run)[key].view()["mass"].sum())


def _read_copy(table: np.ndarray) -> float:
    return float(table["mass"].sum())


def _drop_store(key: str, run) -> int:
    store = node_store(run)
    table = store[key]
    del store[key]
    table.drop()
    return os.stat(store.path).st_blocks * 512


def _store_rss(run) -> int:
    """Bytes of the node store's mapping resident in this worker."""
    return mapping_rss(str(node_store(run).path))


def _store_file_bytes(run) -> int:
    """Bytes of memory the store's file holds (tmpfs: touched or committed pages)."""
    return os.stat(node_store(run).path).st_blocks * 512


# ---------------------------------------------------------------------- the measurement
def _on_each_worker(client, fn, *args):
    """``fn(*args)`` as a task on every worker, each pinned to its worker; waits for all."""
    workers = sorted(client.scheduler_info()["workers"])
    futures = [client.submit(fn, *args, workers=[w], allow_other_workers=False, pure=False)
               for w in workers]
    return client.gather(futures)


def _deltas(before: dict, after: dict, counter: str) -> dict[str, int]:
    return {w: after[w][counter] - before[w][counter] for w in sorted(after)}


def measure(client, nbytes: int, run: str | None = None) -> dict:
    """Measure both cases on ``client``'s cluster: one node, whose nannies run the ``NodeStore``
    plugin (of run ``run``).

    Returns, for each case, the growth of the workers' PSS and RSS (by worker and in total),
    of the node store's file (tmpfs pages: touched, or committed ahead), and ``node_bytes``:
    what the node spends, the workers' private PSS (``Pss - Pss_Shmem``) plus the file."""
    nrows = nbytes // ROW.itemsize
    client.run(_attach, run)
    report: dict[str, Any] = {"table_bytes": nrows * ROW.itemsize, "rows": nrows,
              "workers": len(client.scheduler_info()["workers"])}

    # a copy per worker
    before = _snapshot(client, run)
    [table] = client.scatter([rows(0, nrows)], broadcast=True, hash=False)
    sums = _on_each_worker(client, _read_copy, table)
    report["copy_per_worker"] = _case(before, _snapshot(client, run))
    client.cancel([table])
    del table
    _wait_released(client)

    # once in the node store
    from .dask import each_node

    before = _snapshot(client, run)
    [name] = each_node(client, _fill_store, _KEY, nrows, run, run=run).values()
    store_sums = _on_each_worker(client, _read_store, _KEY, run)
    report["node_store"] = _case(before, _snapshot(client, run))
    report["node_store"]["store"] = name
    each_node(client, _drop_store, _KEY, run, run=run)
    if len(set(sums + store_sums)) != 1:
        raise AssertionError(f"the workers read different tables: {sums} {store_sums}")
    return report


def _snapshot(client, run) -> tuple[dict, int, dict]:
    from .dask import each_node

    [file_bytes] = each_node(client, _store_file_bytes, run, run=run).values()
    # (the store's Rss first: what reading a worker's smaps allocates is then in both snapshots)
    store_rss = client.run(_store_rss, run)
    return client.run(smaps_rollup), file_bytes, store_rss


def _case(before: tuple, after: tuple) -> dict:
    pss, rss = _deltas(before[0], after[0], "Pss"), _deltas(before[0], after[0], "Rss")
    shmem = _deltas(before[0], after[0], "Pss_Shmem")
    file_bytes = after[1] - before[1]
    # (the store mapping's own Rss: a worker's whole Rss may also shrink meanwhile, as the
    # memory of the case before is given back)
    store_rss = {w: after[2][w] - before[2][w] for w in sorted(after[2])}
    return {"pss_total": sum(pss.values()), "pss_by_worker": pss,
            "rss_total": sum(rss.values()), "rss_by_worker": rss,
            "store_rss_by_worker": store_rss,
            "pss_shmem_total": sum(shmem.values()), "store_file_bytes": file_bytes,
            "node_bytes": sum(pss.values()) - sum(shmem.values()) + file_bytes}


def _wait_released(client, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while any(client.has_what().values()):
        if time.monotonic() > deadline:
            raise TimeoutError("the workers kept the scattered table")
        time.sleep(0.1)


def run(nbytes: int, workers: int) -> dict:
    """Start a LocalCluster of ``workers`` process workers (one thread each) with a node store,
    :func:`measure` a table of ``nbytes``, close the cluster."""
    from distributed import Client, LocalCluster

    from .dask import NodeStore

    run_name = f"mem{uuid.uuid4().hex[:6]}"
    with LocalCluster(n_workers=0, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        # registered before the workers start: their nannies set it up first (no restart).
        # Room for the table, the allocator's rounding of its block (up to 1/4, 7% for 1e9
        # bytes) and the rest; the reservation also caps how far commits run ahead.
        client.register_plugin(NodeStore(run_name, size=nbytes + nbytes // 8 + (64 << 20)))
        cluster.scale(workers)
        client.wait_for_workers(workers, timeout=120)
        return measure(client, nbytes, run_name)


def report_lines(report: dict) -> list[str]:
    """The report of :func:`measure` as a table."""
    lines = [f"a table of {human_bytes(report['table_bytes'])} ({report['rows']:,} rows) read "
             f"by each of {report['workers']} worker processes of one node; growth of:",
             f"{'':24}{'PSS':>12}{'RSS':>12}{'store file':>12}{'node':>12}"]
    for case, label in (("copy_per_worker", "a copy per worker"),
                        ("node_store", "once in the node store")):
        c = report[case]
        lines.append(f"{label:24}" + "".join(
            f"{human_bytes(c[k]):>12}" for k in ("pss_total", "rss_total", "store_file_bytes",
                                                 "node_bytes")))
    lines.append("PSS and RSS: summed over the workers; store file: the node store's tmpfs pages; "
                 "node: the workers' private PSS plus the store file")
    return lines


def main(size: str, workers: int, as_json: bool = False) -> int:
    """``python -m sharedstore dask-memory``: :func:`run` and print its report."""
    from .dask import parse_size

    report = run(parse_size(size), workers)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(report_lines(report)))
    return 0
