"""numba kernels over the store's memory: int64 arrays and ints in, ints out.

Kernels never raise and never import the Python layer; they return status codes that
``sharedstore.errors`` turns into exceptions.
"""
