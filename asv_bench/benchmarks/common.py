"""Helpers shared by the benchmarks: unique names, resource cleanup, test data.

Every benchmark class derives from :class:`Bench`.  Its ``setup`` opens resources inside
``with self.resources() as res:`` and registers how to release each one (``res.defer``); its
``teardown`` releases them all, newest first.  If ``setup`` fails half way, what it opened so far
is released before the error propagates (asv does not call ``teardown`` after a failed
``setup``).  As a last resort, an ``atexit`` hook removes any store file this process created
and did not remove, so ``/dev/shm`` is left clean even when a benchmark fails.

asv may call ``setup``/``teardown`` around every timed call, so names carry a counter as well as
the pid.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import os
import random
import string

import sharedstore as ss

_counter = itertools.count()
# /dev/shm files created by this process and not removed yet: removed at exit if still there
_created_paths: set[str] = set()


def unique_name(tag: str) -> str:
    """A name no other process or earlier setup uses: ``asv-<pid>-<tag>-<counter>``."""
    return f"asv-{os.getpid()}-{tag}-{next(_counter)}"


class Resources:
    """Undo actions, run newest first by :meth:`close` (all of them, even if some fail)."""

    def __init__(self):
        self._undo = []

    def defer(self, fn, *args) -> None:
        self._undo.append((fn, args))

    def close(self) -> None:
        first = None
        while self._undo:
            fn, args = self._undo.pop()
            try:
                fn(*args)
            except Exception as exc:  # keep releasing the rest
                if first is None:
                    first = exc
        if first is not None:
            raise first

    # ---------------------------------------------------------------- typical resources
    def store(self, tag: str) -> ss.Store:
        """A new store with a unique name; closed and unlinked on :meth:`close`."""
        name = unique_name(tag)
        store = ss.create(name)
        path = str(store.path)
        _created_paths.add(path)
        self.defer(_close_and_unlink_store, store, name, path)
        return store

    def shm_path(self, name: str) -> None:
        """Remember a ``/dev/shm`` file a peer made, for the exit hook (the peer's own
        cleanup runs through :meth:`defer`)."""
        path = os.path.join("/dev/shm", name)
        _created_paths.add(path)
        self.defer(_created_paths.discard, path)


def _close_and_unlink_store(store: ss.Store, name: str, path: str) -> None:
    try:
        store.close()
    finally:
        try:
            ss.unlink(name)
        except ss.StoreNotFoundError:
            pass
        _created_paths.discard(path)


@atexit.register
def _remove_leftovers() -> None:
    for path in list(_created_paths):
        with contextlib.suppress(OSError):
            os.unlink(path)


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


@functools.lru_cache(maxsize=None)
def random_keys(n: int, seed: int = 0) -> tuple[str, ...]:
    """``n`` distinct ASCII str keys of 8 to 16 characters, in random order."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    keys: dict[str, None] = {}
    while len(keys) < n:
        keys["".join(rng.choices(alphabet, k=rng.randint(8, 16)))] = None
    return tuple(keys)


@functools.lru_cache(maxsize=None)
def random_floats(n: int, seed: int = 1) -> tuple[float, ...]:
    rng = random.Random(seed)
    return tuple(rng.random() for _ in range(n))


@functools.lru_cache(maxsize=None)
def shuffled(keys: tuple, seed: int = 2) -> tuple:
    out = list(keys)
    random.Random(seed).shuffle(out)
    return tuple(out)
