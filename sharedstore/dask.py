"""Dask distributed: one shared store per node for all of its worker processes.

::

    from dask.distributed import Client, LocalCluster
    from sharedstore.dask import NodeStore, node_store

    client = Client(LocalCluster(n_workers=4, threads_per_worker=1))
    client.register_plugin(NodeStore("run1", size="4GiB"))   # one store per node, made by its nanny

    def task(i):
        store = node_store()      # this worker's node store, attached once per process
        return store["hits"].add(1)

Or, for workers started from the command line, as a nanny preload:
``DASK_SHAREDSTORE__RUN=run1 DASK_SHAREDSTORE__SIZE=4GiB dask worker --preload-nanny
sharedstore.dask SCHEDULER`` (or the ``distributed.nanny.preload`` config, with
``distributed.nanny.preload-argv: [--run, run1, --size, 4GiB]``).  It installs the same plugin
in the nanny before the nanny registers with the scheduler, so nothing races the first task.

How :class:`NodeStore` fits Dask's lifecycle (``distributed/nanny.py``):

- ``setup(nanny)`` runs in the nanny's process, on its event loop: when the plugin is
  registered (the scheduler sends it to every nanny), and when a nanny starts after that (the
  scheduler hands it the registered plugins before the nanny starts its worker process).  It
  loads or compiles the kernels and opens the node's store in a thread (off the event loop),
  then puts the store's name into ``nanny.env``, the environment the worker process starts
  with.  ``nanny.env`` is the dict the nanny's ``WorkerProcess`` keeps, so the name reaches
  every later start of the worker too: a worker killed (even with SIGKILL) is restarted by its
  nanny with the same environment, and reattaches.
- ``restart = True``: registered while workers run, the plugin restarts them after ``setup``
  so that they start with the name (as Dask's own ``Environ`` plugin does).  Register it
  before you submit work; a nanny that starts later runs ``setup`` before its worker starts.
- ``idempotent = True``: registering the same run again is ignored.
- ``teardown(nanny)`` runs when the nanny closes (before it stops its worker), or when the
  plugin is unregistered (``client.unregister_worker_plugin(name, nanny=True)``; then the
  worker is restarted without the store).  The nannies of one process share one attachment; the
  last nanny of the machine to let go unlinks the store (see :mod:`sharedstore._nodestore`):
  after the cluster closes no store of the run is left.  A cluster that crashed leaves its
  stores for ``sharedstore gc``; a new cluster of the same run replaces such a store.

Memory: the nanny and the worker judge a worker's memory by its RSS, and RSS counts every page
of the store the worker touched, shared or not (dask/distributed#4304).  The plugin warns once
(:class:`NodeStoreMemoryWarning`) when the store could take so much of a worker's
``memory_limit`` that the nanny would restart the worker; see the README's Dask section.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, overload

import click
import dask
from dask.utils import parse_bytes
from distributed import Nanny
from distributed.core import Status
from distributed.diagnostics.plugin import NannyPlugin

from . import _nodestore as _ns
from ._nodestore import node_id, node_store, store_name
from .errors import NodeStoreError, human_bytes

if TYPE_CHECKING:
    from distributed import Client

    from .store import Store

__all__ = [
    "NodeStore",
    "NodeStoreError",
    "NodeStoreMemoryWarning",
    "dask_setup",
    "each_node",
    "node_id",
    "node_store",
    "nodes",
    "parse_size",
    "store_name",
]

logger = logging.getLogger(__name__)


class NodeStoreMemoryWarning(UserWarning):
    """The node store could take so much of a worker's ``memory_limit`` that the nanny would
    restart the worker (its RSS counts the store pages it touched)."""


@overload
def parse_size(size: None) -> None: ...


@overload
def parse_size(size: int | float | str) -> int: ...


def parse_size(size: int | float | str | None) -> int | None:
    """A store size in bytes: a number, or a human string (``"4GiB"``, ``"512 MB"``, ``"1e9"``);
    None stays None (the default reservation).

    Raises
    ------
    TypeError
        For anything but a number, a str or None.
    ValueError
        For a string that is no size, or a size that is not positive.
    """
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, float, str)):
        raise TypeError(f"size must be a number of bytes or a str such as '4GiB', "
                        f"not {type(size).__name__}")
    n = parse_bytes(size)  # a ValueError that names a string it cannot read
    if n <= 0:
        raise ValueError(f"size={size!r} is not a positive number of bytes")
    return int(n)


class NodeStore(NannyPlugin):
    """A nanny plugin that gives every worker process of a node the node's shared store.

    Parameters
    ----------
    run
        Names the store: one store per run and node (:func:`store_name`).
    size
        The store's reservation: bytes, or a string such as ``"4GiB"``.  Default: as large as
        ``/dev/shm`` (memory is only committed as it is used).

    Examples
    --------
    >>> client.register_plugin(NodeStore("run1", size="4GiB"))  # doctest: +SKIP
    >>> client.submit(lambda: node_store()["hits"].add(1))  # doctest: +SKIP
    """

    idempotent = True
    restart = True

    def __init__(self, run: str, size: int | str | None = None):
        """See the class doc.

        Raises
        ------
        ValueError
            For a run name that is not a non-empty str, or a size that is no size.
        TypeError
            For a size that is neither a number nor a str.
        """
        store_name(run, "")  # a bad run name fails here, in the client, not in every nanny
        self.run = run
        self.size = parse_size(size)
        self.name = f"sharedstore-node-store-{run}"

    def store_name(self, nanny: Nanny) -> str:
        """The name of this run's store on ``nanny``'s node."""
        return store_name(self.run, node_id(nanny.env))

    async def setup(self, nanny: Nanny) -> None:
        """Open (or create) the node's store for ``nanny`` and give its worker the name (Dask
        calls it: see the module doc)."""
        name = self.store_name(nanny)
        store = await asyncio.to_thread(_ns.hold, name, self.size, id(nanny))
        _ns.set_env_store(nanny.env, self.run, name)
        logger.info("node store %r of run %r: %s reserved", name, self.run,
                    human_bytes(store.reserved))
        warn_memory(nanny, store)

    async def teardown(self, nanny: Nanny) -> None:
        """Let go of the node's store for ``nanny``; the last nanny of the node unlinks it
        (Dask calls it: see the module doc)."""
        name = self.store_name(nanny)
        _ns.set_env_store(nanny.env, self.run, None)
        if not _ns.is_holder(name, id(nanny)):
            return  # its setup failed (or never ran): nothing to undo
        if nanny.status == Status.running and nanny.process is not None:
            # unregistered while the nanny stays: its worker must not go on with a store that
            # is about to go away
            await nanny.restart(reason=f"{self.name}-removed")
        if await asyncio.to_thread(_ns.release, name, id(nanny)):
            logger.info("node store %r of run %r removed", name, self.run)


# ---------------------------------------------------------------------- memory accounting
_warned: set[tuple[str, int | None]] = set()


def memory_risk(store_bytes: int, memory_limit: int | None,
                target: float | Literal[False] | None,
                terminate: float | Literal[False] | None) -> str | None:
    """Why a worker's RSS could reach the nanny's restart threshold because of the store, or
    None.

    A worker that touches all of the store counts ``store_bytes`` in its RSS.  Dask lets the
    worker's own data grow to ``target`` of ``memory_limit`` before it spills; the nanny
    restarts the worker at ``terminate``.  Risky when the two together reach ``terminate``."""
    if not memory_limit or terminate is False or terminate is None:
        return None  # no limit, or the nanny never restarts a worker for its memory
    own = (target or 0) * memory_limit
    if store_bytes + own < terminate * memory_limit:
        return None
    return (
        f"a worker that touches all of the store ({human_bytes(store_bytes)}) counts it in its "
        f"RSS (dask/distributed#4304); with the {target or 0:.0%} of its memory_limit "
        f"({human_bytes(memory_limit)}) its own data reaches before Dask spills, that crosses "
        f"the {terminate:.0%} at which the nanny restarts it.  Create the store with a smaller "
        f"size=, give the workers a larger memory_limit, or raise "
        f"distributed.worker.memory.terminate"
    )


def warn_memory(nanny: Nanny, store: Store) -> None:
    """Warn once per process and store when :func:`memory_risk` finds one for ``nanny``."""
    mm = nanny.memory_manager
    key = (store.name, mm.memory_limit)
    if key in _warned:
        return
    target = dask.config.get("distributed.worker.memory.target", config=nanny.config)
    why = memory_risk(store.reserved, mm.memory_limit, target, mm.memory_terminate_fraction)
    if why:
        _warned.add(key)
        warnings.warn(f"node store {store.name!r}: {why}", NodeStoreMemoryWarning, stacklevel=2)


# ---------------------------------------------------------------------- from the client
def nodes(client: Client, run: str | None = None) -> dict[str, list[str]]:
    """The cluster's workers by node: ``{store name: [worker address, ...]}``.

    Route partitioned work to a node with ``client.submit(f, ..., workers=nodes[name])``.

    Parameters
    ----------
    client
        A client of the cluster.
    run
        The run whose stores name the nodes; needed only if the workers have several.

    Raises
    ------
    NodeStoreError
        If a worker has no node store (of ``run``): ``client.run`` passes the worker's error
        on.
    """
    names = client.run(_ns.store_name_here, run)
    out: dict[str, list[str]] = {}
    for address, name in sorted(names.items()):
        out.setdefault(name, []).append(address)
    return out


def each_node(client: Client, fn: Callable[..., Any], *args: Any, run: str | None = None,
              **kwargs: Any) -> dict[str, Any]:
    """Run ``fn(*args, **kwargs)`` once on each node (as a task on one of its workers) and
    return the results by node store name: load read-mostly data into each node's store, or
    reduce each node's state, then combine the results on the client.

    Parameters
    ----------
    client
        A client of the cluster.
    fn, *args, **kwargs
        The task; ``fn`` finds the node's store with :func:`node_store`.
    run
        As for :func:`nodes`.

    Returns
    -------
    dict
        ``{store name: fn's result on that node}``.

    Examples
    --------
    >>> hits = each_node(client, lambda: node_store()["hits"].get())  # doctest: +SKIP
    >>> total = sum(hits.values())  # doctest: +SKIP
    """
    call = functools.partial(fn, *args, **kwargs)
    futures = {
        name: client.submit(call, workers=addresses[:1], allow_other_workers=False, pure=False)
        for name, addresses in nodes(client, run).items()
    }
    return client.gather(futures)


# ---------------------------------------------------------------------- as a nanny preload
def default_run(scheduler_address: str) -> str:
    """The run of a preloaded nanny given no run name: one per scheduler address."""
    return "dask-" + hashlib.sha256(scheduler_address.encode()).hexdigest()[:6]


@click.command()
@click.option("--run", default=None,
              help="the run's name (default: the sharedstore.run config, $DASK_SHAREDSTORE__RUN; "
                   "else one per scheduler address)")
@click.option("--size", default=None,
              help="the store's reservation, such as 4GiB (default: the sharedstore.size config, "
                   "$DASK_SHAREDSTORE__SIZE; else as large as /dev/shm)")
async def dask_setup(nanny: Nanny, run: str | None, size: str | None) -> None:
    """Nanny preload (``dask worker --preload-nanny sharedstore.dask``): install
    :class:`NodeStore` in the nanny before it registers with the scheduler."""
    if not isinstance(nanny, Nanny):
        raise TypeError(f"sharedstore.dask is a nanny preload, not one for a "
                        f"{type(nanny).__name__}: pass it with --preload-nanny (or the "
                        f"distributed.nanny.preload config)")
    run = run or dask.config.get("sharedstore.run", None) or default_run(nanny.scheduler_addr)
    size = size if size is not None else dask.config.get("sharedstore.size", None)
    result = await nanny.plugin_add(plugin=NodeStore(str(run), size))
    if result.get("status") != "OK":
        raise NodeStoreError(f"the NodeStore plugin of run {run!r} failed to set up: "
                             f"{result.get('text') or result}")
