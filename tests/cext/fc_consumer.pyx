# cython: language_level=3, freethreading_compatible=True
"""A third-party extension using fastconc's nogil C API (built by
tests/test_ring_capi.py against the *installed* fastconc).

run(ring, n): a C thread (pthread, never known to Python) pushes 0..n-1
through the ring while the calling thread pops them, both without the GIL;
returns how many values arrived in order (n when everything is right).
"""
from libc.stdint cimport int64_t

from fastconc._ring_c cimport TypedCore, TypedRingBuffer, typed_pop, typed_pop_n, typed_push_n


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_t:
        pass
    int pthread_create(pthread_t *thread, void *attr, void *(*start)(void *) noexcept nogil,
                       void *arg)
    int pthread_join(pthread_t thread, void **retval)

cdef extern from "<sched.h>" nogil:
    int sched_yield()


cdef struct Job:
    TypedCore *core
    int64_t n


cdef void *produce(void *arg) noexcept nogil:
    cdef Job *job = <Job *>arg
    cdef int64_t batch[64]
    cdef int64_t next_value = 0, k, i
    while next_value < job.n:
        k = job.n - next_value
        if k > 64:
            k = 64
        for i in range(k):
            batch[i] = next_value + i
        k = typed_push_n(job.core, batch, k)
        next_value += k
        if k == 0:
            sched_yield()
    return NULL


def run(TypedRingBuffer ring, int64_t n):
    if ring.typecode not in ("q", "l") or ring.itemsize != 8:
        raise ValueError("needs a 64-bit signed ring")
    cdef Job job
    cdef pthread_t producer
    cdef int64_t expected = 0, got, i, one
    cdef int64_t buf[100]
    cdef bint in_order = True
    job.core = ring.core_c()
    job.n = n
    with nogil:
        if pthread_create(&producer, NULL, produce, &job) != 0:
            with gil:
                raise OSError("pthread_create failed")
        while expected < n:
            # Alternate single pops and batches, exercising both entry points.
            if expected % 2:
                if typed_pop(job.core, &one):
                    in_order = in_order and one == expected
                    expected += 1
                else:
                    sched_yield()
                continue
            got = typed_pop_n(job.core, buf, 100)
            for i in range(got):
                in_order = in_order and buf[i] == expected + i
            expected += got
            if got == 0:
                sched_yield()
        pthread_join(producer, NULL)
    return expected if in_order else -1
