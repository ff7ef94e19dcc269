"""Two nodes on one machine: a SpecCluster whose nannies run under SHAREDSTORE_NODE=a and =b.

The NodeStore plugin comes from the ``distributed.nanny.preload`` config here (the LocalCluster
tests register it through the client).  The multi-node patterns, without any network layer of
our own: read-mostly data loaded by each node, partitioned state routed with ``workers=``, and
global totals by one reduce task per node, combined on the client.  The cluster serves the
module; the last test closes it.
"""

import os
import uuid
import warnings
from types import SimpleNamespace

import dask
import pytest
from distributed import Client, Nanny, Scheduler, SpecCluster

import sharedstore as ss
from sharedstore import _nodestore as ns
from sharedstore._segment import PREFIX, SHM_DIR
from sharedstore.dask import NodeStoreMemoryWarning, each_node, nodes, store_name

from . import _dask_tasks as T

# a two-node SpecCluster with process workers: several seconds to start and close
pytestmark = pytest.mark.slow

NODES = ("a", "b")


@pytest.fixture(scope="module")
def two_nodes():
    run = f"n{uuid.uuid4().hex[:8]}"
    workers = {
        node: {"cls": Nanny, "options": {"nthreads": 1, "env": {ns.ENV_NODE: node}}}
        for node in NODES
    }
    # node b's worker may use 1.5 GiB: a 1 GiB store could take so much of it that the nanny
    # would restart the worker (the plugin warns; node a's default limit is far larger)
    workers["b"]["options"]["memory_limit"] = "1.5GiB"
    config = {"distributed.nanny.preload": ["sharedstore.dask"],
              "distributed.nanny.preload-argv": ["--run", run, "--size", "1GiB"]}
    with dask.config.set(config), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cluster = SpecCluster(workers=workers, scheduler={
            "cls": Scheduler, "options": {"dashboard": False, "dashboard_address": None}})
    client = Client(cluster)
    env = SimpleNamespace(run=run, cluster=cluster, client=client, warnings=caught,
                          names={node: store_name(run, node) for node in NODES})
    try:
        yield env
    finally:
        client.close()
        cluster.close()
        for name in env.names.values():
            assert not (SHM_DIR / (PREFIX + name)).exists()


def test_each_node_has_a_store_of_its_own(two_nodes):
    by_node = nodes(two_nodes.client)
    assert sorted(by_node) == sorted(two_nodes.names.values())
    assert all(len(addresses) == 1 for addresses in by_node.values())
    for name in two_nodes.names.values():
        assert (SHM_DIR / (PREFIX + name)).exists()


def test_the_memory_warning_came_once_for_the_node_at_risk(two_nodes):
    [w] = two_nodes.warnings  # and no other warning either
    assert issubclass(w.category, NodeStoreMemoryWarning)
    assert repr(two_nodes.names["b"]) in str(w.message)
    assert "1.5 GiB" in str(w.message) and "4304" in str(w.message)


def test_read_mostly_data_is_loaded_once_per_node(two_nodes):
    client = two_nodes.client
    loaded = each_node(client, T.load_lookup, 1000)
    assert loaded == {name: name for name in two_nodes.names.values()}
    # every task reads its own node's copy, wherever it runs
    results = client.gather(client.map(T.lookup, [[k, 999 - k] for k in range(0, 1000, 50)]))
    assert {name for name, _ in results} <= set(loaded)
    assert [values for _, values in results] == [
        [2.0 * k, 2.0 * (999 - k)] for k in range(0, 1000, 50)]
    assert sorted(each_node(client, T.node_store_loads).values()) == [1, 1]


def test_partitioned_state_is_routed_to_its_node_and_reduced_per_node(two_nodes):
    client = two_nodes.client
    by_node = nodes(client)
    owner = {two_nodes.names["a"]: lambda k: k % 2 == 0, two_nodes.names["b"]: lambda k: k % 2}
    keys = {name: [k for k in range(100) if owner[name](k)] for name in by_node}
    assert client.gather([client.submit(T.init_partition, keys[name], workers=by_node[name],
                                        pure=False) for name in by_node]) == list(by_node)
    # 120 routed tasks: each counts 5 keys of one node's partition, on that node
    routed, futures = [], []
    for name, addresses in by_node.items():
        batches = [keys[name][i:i + 5] for i in range(0, len(keys[name]), 5)] * 6
        routed += [name] * len(batches)
        futures += [client.submit(T.count_partition, b, workers=addresses, pure=False)
                    for b in batches]
    assert client.gather(futures) == routed  # each wrote to its own node's store
    # the global total: one reduce task per node, combined on the client
    totals = each_node(client, T.node_total)
    assert totals == {name: 6 * len(keys[name]) for name in by_node}
    assert sum(totals.values()) == 600
    # each node's store holds its own partition only
    for name in by_node:
        with ss.attach(name) as store:
            counts = {k: c.get() for k, c in store["counts"].items()}
        assert counts == dict.fromkeys(keys[name], 6)


def test_closing_the_cluster_removes_both_stores(two_nodes):
    paths = [SHM_DIR / (PREFIX + name) for name in two_nodes.names.values()]
    assert all(p.exists() for p in paths)
    two_nodes.client.close()
    two_nodes.cluster.close()
    assert not any(p.exists() for p in paths)
    assert not [n for n in ss.list_stores() if n in two_nodes.names.values()]
    assert os.environ.get(ns.ENV_STORES) is None  # the nannies' env was the workers', not ours
