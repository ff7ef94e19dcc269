"""Shared strings: create, get and set, against a plain dict and ``Manager().dict()``.

Each timed call does ``OPS`` operations; divide by ``OPS`` for the time of one.
"""

import multiprocessing

from .common import Bench

OPS = 10_000


class Strings(Bench):
    """``store.string(v)``, ``StringRef.get()``, ``StringRef.set(v)`` against the same
    operations on a str value in a plain dict and in a ``multiprocessing.Manager().dict()``.

    For the dicts, *create* inserts ``OPS`` new keys (a Python str is immutable: storing it
    is the nearest thing to making a shared copy), *get* reads one key and *set* rebinds it.
    The Manager is started in ``setup`` (not timed) and shut down in ``teardown``.
    """

    params = [["sharedstore", "dict", "Manager().dict"], [16, 4096]]
    param_names = ["impl", "length"]
    timeout = 120

    def setup(self, impl, length):
        self.a = "a" * (length - 1) + "é"  # one 2-byte UTF-8 char: not a pure-ASCII fast path
        self.b = "b" * (length - 1) + "è"
        self.alternating = [self.a, self.b] * (OPS // 2)
        with self.resources() as res:
            if impl == "sharedstore":
                self.store = res.store("strings")
                self.ref = self.store.string(self.a)
                self.store.string(self.a).drop()  # kernels loaded and warm
                self.ref.set(self.b)
                self.ref.set(self.a)
                assert self.ref.get() == self.a
            elif impl == "dict":
                self.d = {"k": self.a}
            else:
                manager = multiprocessing.Manager()
                res.defer(manager.shutdown)
                self.d = manager.dict()
                self.d["k"] = self.a
                assert self.d["k"] == self.a

    def time_create(self, impl, length):
        if impl == "sharedstore":
            string = self.store.string
            a = self.a
            for _ in range(OPS):
                string(a)
        else:
            d = self.d
            a = self.a
            for i in range(OPS):
                d[i] = a

    def time_get(self, impl, length):
        if impl == "sharedstore":
            get = self.ref.get
            for _ in range(OPS):
                get()
        else:
            d = self.d
            for _ in range(OPS):
                d["k"]

    def time_set(self, impl, length):
        if impl == "sharedstore":
            set_ = self.ref.set
            for v in self.alternating:
                set_(v)
        else:
            d = self.d
            for v in self.alternating:
                d["k"] = v
