"""The support tier: what more than one primitive, or both backends of one,
share.  Nothing here imports a primitive, a backend or the high layer.

args        argument checks, one wording for every bad value
report      reporting an exception no caller can receive (excepthook, unraisable)
executor    the concurrent.futures.Executor shell both pool cores plug into
futures     PoolFuture, and settling futures whatever fails
spares      spare threads for workers that must block (compensation)
waits       timeouts as deadlines, and waiting for them (pure Python)
owner       which thread owns one side of a single-producer/consumer structure
typecodes   the array typecodes TypedRingBuffer takes
deadline    (.pxd) timeouts as deadlines for the compiled primitives
atomic, sync, gc  (.pxd + fc_*.h) the C atomics, mutex/condvar/futex and GC
            hooks the compiled primitives are built on
"""
