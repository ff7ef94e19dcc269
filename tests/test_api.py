import builtins

import sharedstore as ss


def test_every_name_in_all_resolves():
    for name in ss.__all__:
        assert getattr(ss, name) is not None, name


def test_error_tree_mixes_in_builtins():
    pairs = {
        ss.StoreNotFoundError: FileNotFoundError,
        ss.StoreExistsError: FileExistsError,
        ss.StoreFullError: MemoryError,
        ss.UseAfterFreeError: ReferenceError,
        ss.InvalidHandleError: ValueError,
        ss.SchemaError: ValueError,
        ss.LockTimeoutError: TimeoutError,
        ss.InvalidNameError: ValueError,
        ss.NodeStoreError: RuntimeError,
    }
    for err, base in pairs.items():
        assert issubclass(err, ss.SharedStoreError)
        assert issubclass(err, base)
    assert issubclass(ss.StoreCorruptError, ss.SharedStoreError)


def test_open_is_not_the_builtin():
    assert ss.open is not builtins.open
