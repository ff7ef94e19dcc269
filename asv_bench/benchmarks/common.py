"""Helpers shared by the benchmarks: unique names, resource cleanup, test data.

The helpers themselves live in :mod:`sharedstore.bench` (``python -m sharedstore bench`` runs a
short subset of this suite with them).  Every benchmark class derives from :class:`Bench`.  Its
``setup`` opens resources inside ``with self.resources() as res:`` and registers how to release
each one (``res.defer``); its ``teardown`` releases them all, newest first.  If ``setup`` fails
half way, what it opened so far is released before the error propagates (asv does not call
``teardown`` after a failed ``setup``).  As a last resort, an ``atexit`` hook removes any store
file this process created and did not remove, so ``/dev/shm`` is left clean even when a benchmark
fails.

asv may call ``setup``/``teardown`` around every timed call, so names carry a counter as well as
the pid.
"""

from __future__ import annotations

import contextlib

# the helpers `python -m sharedstore bench` uses too: one copy, in the package
from sharedstore.bench import (  # noqa: F401  (re-exported for the benchmark modules)
    Resources,
    random_floats,
    random_keys,
    shuffled,
    unique_name,
)


class Bench:
    """Base class: ``setup`` fills ``self.res`` inside ``with self.resources()``; ``teardown``
    releases it."""

    @contextlib.contextmanager
    def resources(self):
        self.teardown()  # never leak a previous setup's resources
        res = self.res = Resources()
        try:
            yield res
        except BaseException:
            self.teardown()
            raise

    @contextlib.contextmanager
    def guard(self):
        """More setup work on the resources already held: release them all if it fails."""
        try:
            yield self.res
        except BaseException:
            self.teardown()
            raise

    def teardown(self, *params) -> None:
        res = self.__dict__.pop("res", None)
        if res is not None:
            res.close()
