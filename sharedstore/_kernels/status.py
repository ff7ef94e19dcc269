"""Status codes returned by kernels (negative int64); ``sharedstore.errors`` maps them to exceptions."""

OK = 0
ERR_INVALID = -1      # handle was never issued / is malformed
ERR_FREED = -2        # handle's object was dropped (stale generation)
ERR_KIND = -3         # handle names an object of another kind
ERR_BUSY_ALLOC = -4   # allocator lock held by someone else past the spin budget
ERR_BUSY_OBJ = -5     # object's lock held by someone else past the spin budget
ERR_COMMIT = -6       # more memory must be committed; commit and retry
ERR_FULL = -7         # the reservation (or the handle space) is exhausted
ERR_CORRUPT = -8      # a structure read from shared memory is inconsistent
ERR_NOT_FOUND = -9    # key missing
ERR_RETRY = -10       # optimistic read kept racing with writers; call again
ERR_SCRATCH = -11     # the output buffer is too small; the size needed is in the record
ERR_BUSY_APPEND = -12  # a vector append copying outside the lock did not finish within the spin budget
ERR_VALUE_TYPE = -13  # the value there is of a type the operation does not apply to (incr)
