# cython: language_level=3, freethreading_compatible=True
"""The compiled deque's own algorithm raced without the GIL (built by
tests/test_deque.py against the *installed* fastconc, so no test-only code
ships in the wheel).
"""
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport free, malloc

from fastconc._deque_c cimport (
    Deque,
    deque_free_arrays,
    deque_init,
    deque_len,
    deque_push,
    deque_steal,
    deque_take,
)
from fastconc._support.atomic cimport fc_atomic_size, fc_size_init, fc_size_load_acquire, fc_size_store_release


cdef class DequeRace:
    """The C deque driven by one owner and
    several thieves that all run WITHOUT the GIL, so the algorithm's races
    (lost steals, the last-item CAS, growth under steals) really happen even
    on a GIL build.  Values are tagged integers, never dereferenced."""
    cdef Deque deque
    cdef Py_ssize_t n
    cdef int64_t **logs            # per taker (thieves..., owner last): values taken
    cdef Py_ssize_t *counts
    cdef int takers
    cdef fc_atomic_size owner_done
    cdef bint initialised

    def __cinit__(self, Py_ssize_t n, int thieves):
        cdef int k
        if n < 1 or thieves < 1:
            raise ValueError("n and thieves must be >= 1")
        self.n = n
        self.takers = thieves + 1
        self.logs = <int64_t **>malloc(self.takers * sizeof(int64_t *))
        self.counts = <Py_ssize_t *>malloc(self.takers * sizeof(Py_ssize_t))
        if self.logs == NULL or self.counts == NULL or deque_init(&self.deque) < 0:
            raise MemoryError()
        for k in range(self.takers):
            self.logs[k] = <int64_t *>malloc(n * sizeof(int64_t))
            self.counts[k] = 0
            if self.logs[k] == NULL:
                raise MemoryError()
        fc_size_init(&self.owner_done, 0)
        self.initialised = True

    def __dealloc__(self):
        cdef int k
        if self.logs != NULL:
            for k in range(self.takers):
                free(self.logs[k])
            free(self.logs)
        free(self.counts)
        if self.initialised:
            deque_free_arrays(&self.deque)

    cdef inline void _log(self, int k, PyObject *x) noexcept nogil:
        self.logs[k][self.counts[k]] = <int64_t>(<uintptr_t>x >> 4) - 1
        self.counts[k] += 1

    def owner(self):
        """Push 0..n-1 in bursts (some large, to grow the array while thieves
        read it), popping part of each burst; then drain."""
        cdef Py_ssize_t i = 0, j, burst
        cdef PyObject *x
        cdef int me = self.takers - 1
        with nogil:
            while i < self.n:
                burst = 1 + i % 7 if i % 4096 else 3000
                j = i
                while j < self.n and j < i + burst:
                    if deque_push(&self.deque, <PyObject *><uintptr_t>((j + 1) << 4)) < 0:
                        break
                    j += 1
                i = j
                for _ in range(burst // 2 + 1):
                    x = deque_take(&self.deque)
                    if x == NULL:
                        break
                    self._log(me, x)
            x = deque_take(&self.deque)
            while x != NULL:
                self._log(me, x)
                x = deque_take(&self.deque)
            # release: the thieves' acquire sees every push before it.
            fc_size_store_release(&self.owner_done, 1)

    def thief(self, int k):
        cdef bint lost
        cdef PyObject *x
        if not 0 <= k < self.takers - 1:
            raise ValueError("no such thief")
        with nogil:
            while True:
                x = deque_steal(&self.deque, &lost)
                if x != NULL:
                    self._log(k, x)
                # acquire: pairs with the owner's release of owner_done.
                elif (not lost and fc_size_load_acquire(&self.owner_done)
                        and deque_len(&self.deque) == 0):
                    break

    def taken(self):
        """Values taken, one list per thief, the owner's last."""
        return [[self.logs[k][i] for i in range(self.counts[k])] for k in range(self.takers)]
