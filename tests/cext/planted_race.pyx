# cython: language_level=3, freethreading_compatible=True
"""Test-only: a data race on purpose, for ThreadSanitizer to report
(tests/test_tsan_sees_races.py).  Two threads add to one plain C integer,
without the GIL and with no synchronisation between their writes."""
from libc.stdint cimport uint64_t

import threading

# volatile: each increment is its own load and store, so the two threads'
# loops overlap in time (a compiler may otherwise fold the loop into one add,
# and the threads' later atomic refcounting would order the two adds).
cdef volatile uint64_t shared_total = 0


cdef void bump(Py_ssize_t n) noexcept nogil:
    global shared_total
    for _ in range(n):
        # The planted race: a plain read-modify-write from both threads.
        shared_total += 1


def _work(Py_ssize_t n, barrier):
    barrier.wait()
    with nogil:
        bump(n)


def race(Py_ssize_t n):
    """bump(n) on two threads at once; returns the racy total."""
    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=_work, args=(n, barrier)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return shared_total
