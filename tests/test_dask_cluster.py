"""A LocalCluster of process workers with the NodeStore plugin: one store for all of them.

One cluster serves the module (start-up costs seconds); the tests that change its workers (a
SIGKILL, unregistering the plugin) come last, in file order.
"""

import os
import signal
import time
import uuid

import dask
import pytest
from distributed import Client, LocalCluster

import sharedstore as ss
from sharedstore import _dask_memory
from sharedstore.dask import NodeStore, nodes, store_name

from . import _dask_tasks as T

# a LocalCluster of three process workers, restarted by the tests: 15-20 s in all
pytestmark = pytest.mark.slow

RUN = f"t{uuid.uuid4().hex[:8]}"
N_WORKERS = 3
TIMEOUT = 60


def _worker_pids(client):
    return client.run(os.getpid)  # {address: pid}


@pytest.fixture(scope="module")
def client():
    # LocalCluster closes a nanny whose worker left the scheduler 15 s (lost-worker-timeout)
    # earlier if, at that instant, no worker of its name is connected: a restart in progress 15
    # s after an earlier one (registering the plugin restarts every worker; the tests restart
    # them again) lost the cluster a nanny about one run in four (dask/distributed#3088, #7312)
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"}), \
            LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        # registered while the workers run: their nannies set the store up, then restart them
        client.register_plugin(NodeStore(RUN, size="512MiB"))
        yield client
    assert not os.path.exists(f"/dev/shm/{ss._segment.PREFIX}{store_name(RUN)}")


@pytest.fixture
def store(client):
    """The node store, attached from the test process (the nannies' process, here)."""
    s = ss.attach(store_name(RUN))
    try:
        yield s
    finally:
        s.close()


def test_every_worker_sees_the_same_store(client):
    seen = client.run(T.whoami)
    assert len(seen) == N_WORKERS
    assert {name for _, name, _ in seen.values()} == {store_name(RUN)}
    assert len({pid for pid, _, _ in seen.values()}) == N_WORKERS
    assert nodes(client) == {store_name(RUN): sorted(seen)}


def test_each_worker_process_attaches_once(client, store):
    results = client.gather(client.map(lambda i: T.whoami(), range(200), pure=False))
    by_pid = {}
    for pid, _, obj in results:
        by_pid.setdefault(pid, set()).add(obj)
    assert all(len(objs) == 1 for objs in by_pid.values())  # the same Store for every task
    entries = [w["pid"] for w in store.workers()]
    for pid in _worker_pids(client).values():
        assert entries.count(pid) == 1  # one process-table entry per worker process


def test_ten_thousand_increments_add_up(client, store):
    store["hits"] = store.integer(0)
    # 1,000 tasks of 10 increments each: 10,000 one-increment tasks cost Dask 16-20 s of
    # scheduling on the 2-core VM, none of it the store's
    pids = client.gather(client.map(T.add_hits, range(1000), n=10, pure=False))
    assert store["hits"].get() == 10_000
    assert len(set(pids)) > 1


def test_appends_from_every_worker_appear_in_the_view(client, store):
    store["rows"] = store.vector(T.Row)
    addresses = sorted(_worker_pids(client))
    futures = [client.submit(T.append_rows, 500, workers=[a], pure=False) for a in addresses]
    pids = client.gather(futures)
    view = store["rows"].view()
    assert len(view) == 500 * N_WORKERS
    assert sorted(zip(view["pid"].tolist(), view["i"].tolist())) == sorted(
        (pid, i) for pid in pids for i in range(500))


def test_registering_again_is_ignored(client):
    before = _worker_pids(client)
    assert client.register_plugin(NodeStore(RUN, size="512MiB")) == {}
    assert _worker_pids(client) == before  # no restart


def test_a_plugin_that_cannot_set_up_fails_its_registration_and_changes_nothing(client):
    before = _worker_pids(client)
    run = f"bad{uuid.uuid4().hex[:6]}"
    with pytest.raises(ValueError, match="too small"):
        client.register_plugin(NodeStore(run, size=4096))
    assert not os.path.exists(f"/dev/shm/{ss._segment.PREFIX}{store_name(run)}")
    assert _worker_pids(client) == before  # no restart; and its teardown will undo nothing
    assert set(client.run(T.whoami)) == set(before)  # the workers keep their own node store


def test_a_table_in_the_node_store_is_held_once_per_node(client):
    nbytes = 100 * 10**6
    report = _dask_memory.measure(client, nbytes, RUN)
    copies, shared = report["copy_per_worker"], report["node_store"]
    # a copy per worker: each worker's PSS grows by the whole table
    assert all(d > 0.9 * nbytes for d in copies["pss_by_worker"].values())
    # the node store: the workers share one table, though each one's RSS counts all of it
    # (the store mapping's own Rss: a worker's whole Rss may shrink meanwhile, as the copy of
    # the case before is given back); its pages count once in the workers' PSS, and what the
    # workers grow privately besides (the tasks, the kernels they load: ~10 MB each) is far
    # from a copy each
    assert all(d > 0.9 * nbytes for d in shared["store_rss_by_worker"].values())
    assert 0.9 * nbytes < shared["pss_shmem_total"] < 1.1 * nbytes
    assert shared["pss_total"] - shared["pss_shmem_total"] < 0.5 * nbytes
    assert shared["node_bytes"] < copies["node_bytes"] / 2


def test_a_worker_killed_during_locked_writes_is_restarted_and_reattaches(client, store):
    store["kv"], store["log"] = store.map(), store.vector("int64")
    store["started"] = store.integer(0)
    pids = _worker_pids(client)
    addresses = sorted(pids)
    victim, survivors = addresses[0], addresses[1:]
    tags = {a: f"w{i}" for i, a in enumerate(addresses)}
    for a in addresses:
        store[f"n:{tags[a]}"] = store.integer(0)
    futures = {a: client.submit(T.write_loop, tags[a], 60 if a == victim else 4.0, workers=[a],
                                allow_other_workers=False, pure=False) for a in addresses}
    deadline = time.monotonic() + TIMEOUT
    while store["started"].get() < len(addresses):
        assert time.monotonic() < deadline, "the write loops did not start"
        time.sleep(0.05)
    time.sleep(0.5)
    assert store.check().stats["pinned_blocks"] >= 1  # the loops' views pin retired blocks
    os.kill(pids[victim], signal.SIGKILL)
    results = client.gather([futures[a] for a in survivors])
    futures[victim].cancel()

    # the others went on: no pause longer than a few seconds, every count they made is there
    for a, r in zip(survivors, results):
        assert r["worst"] < 3.0, r
        assert store[f"n:{tags[a]}"].get() == r["n"] > 0
        for k in range(min(64, r["n"])):
            last = k + (r["n"] - 1 - k) // 64 * 64  # the last i with i % 64 == k
            assert store["kv"][f"{tags[a]}:{k}"] == last
    assert len(store["log"]) >= sum(r["n"] for r in results) + store[f"n:{tags[victim]}"].get() - 1

    # the nanny restarted the worker: a new process, which attaches to the same store
    deadline = time.monotonic() + TIMEOUT
    while True:
        now = _worker_pids(client)
        if len(now) == N_WORKERS and pids[victim] not in now.values():
            break
        assert time.monotonic() < deadline, f"no restarted worker: {now}"
        time.sleep(0.2)
    [new] = set(now) - set(survivors)
    pid, counts, kv = client.submit(T.read_counts, list(tags.values()), workers=[new],
                                    pure=False).result()
    assert pid == now[new] != pids[victim]
    assert counts == {t: store[f"n:{t}"].get() for t in tags.values()}
    assert kv == dict(store["kv"].items())
    assert pid in [w["pid"] for w in store.workers()]
    assert pids[victim] not in [w["pid"] for w in store.workers()]  # reaped

    report = store.check()
    assert report.stats["pinned_blocks"] == 0  # the dead worker's pin was released when reaped
    assert report.ok, str(report)  # at worst debris of the killed write, which repair reclaims
    if not report.clean:
        assert store.check(repair=True).ok
        assert store.check().clean


def test_unregistering_restarts_the_workers_and_removes_the_store(client):
    path = f"/dev/shm/{ss._segment.PREFIX}{store_name(RUN)}"
    before = _worker_pids(client)
    client.unregister_worker_plugin(NodeStore(RUN).name, nanny=True)
    assert not os.path.exists(path)
    errors = client.run(T.node_store_error)
    assert all("no node store is set up" in e for e in errors.values()), errors
    assert not set(client.run(os.getpid).values()) & set(before.values())
