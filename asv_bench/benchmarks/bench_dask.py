"""A Dask node's memory for one table: once in the node store against a copy per worker.

``NodeStoreMemory`` starts a LocalCluster of process workers with the ``NodeStore`` plugin and
measures, as the growth of the workers' PSS (``/proc/<pid>/smaps_rollup``), a 1 GB table read
by every worker: scattered to each (``client.scatter(table, broadcast=True)``, Dask's way), and
written once into the node store.  ``python -m sharedstore dask-memory`` prints the same
measurement as a table (:mod:`sharedstore._dask_memory`).
"""

from sharedstore._dask_memory import run

TABLE_BYTES = 10**9


class NodeStoreMemory:
    params = [[2, 3]]
    param_names = ["workers"]
    timeout = 600

    def setup_cache(self):
        return {workers: run(TABLE_BYTES, workers) for workers in self.params[0]}

    def track_pss_copy_per_worker(self, reports, workers):
        return reports[workers]["copy_per_worker"]["pss_total"]

    def track_pss_node_store(self, reports, workers):
        return reports[workers]["node_store"]["pss_total"]

    def track_node_bytes_copy_per_worker(self, reports, workers):
        return reports[workers]["copy_per_worker"]["node_bytes"]

    def track_node_bytes_node_store(self, reports, workers):
        return reports[workers]["node_store"]["node_bytes"]

    def track_rss_node_store(self, reports, workers):
        """What RSS counts, and with it Dask's memory manager (dask/distributed#4304)."""
        return reports[workers]["node_store"]["rss_total"]


for _name in dir(NodeStoreMemory):
    if _name.startswith("track_"):
        getattr(NodeStoreMemory, _name).unit = "bytes"
