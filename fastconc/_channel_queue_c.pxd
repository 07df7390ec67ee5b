# C-level layout of the compiled Queue: the Channel's core (_channel_c.pxd,
# whose invariants and locking rule hold here too) plus the task count's
# condition variable, guarded by the same mutex.
from fastconc._channel_c cimport _BlockingRing
from fastconc._support.sync cimport fc_cond


cdef class Queue(_BlockingRing):
    cdef fc_cond all_tasks_done
    cdef Py_ssize_t join_waiters      # threads asleep in join() on all_tasks_done
