# C-level atomics for the compiled backend.  Everything lives in
# include/fc_atomic.h; every call site states its memory order and why.
from libc.stdint cimport int64_t, uint32_t, uintptr_t


cdef extern from "fc_atomic.h" nogil:
    ctypedef struct fc_atomic_u32:
        pass
    ctypedef struct fc_atomic_size:
        pass
    ctypedef struct fc_padded_size:
        fc_atomic_size v
    ctypedef struct fc_atomic_uptr:
        pass
    ctypedef struct fc_atomic_i64:
        pass
    ctypedef struct fc_padded_i64:
        fc_atomic_i64 v
    ctypedef struct fc_atomic_ptr:
        pass

    void fc_u32_init(fc_atomic_u32 *a, uint32_t x)
    uint32_t fc_u32_load_relaxed(fc_atomic_u32 *a)
    uint32_t fc_u32_fetch_add_seq_cst(fc_atomic_u32 *a, uint32_t x)
    uint32_t fc_u32_load_seq_cst(fc_atomic_u32 *a)
    void fc_u32_store_seq_cst(fc_atomic_u32 *a, uint32_t x)
    uint32_t fc_u32_load_acquire(fc_atomic_u32 *a)
    void fc_u32_store_release(fc_atomic_u32 *a, uint32_t x)
    void fc_u32_store_relaxed(fc_atomic_u32 *a, uint32_t x)

    void fc_size_init(fc_atomic_size *a, size_t x)
    size_t fc_size_load_relaxed(fc_atomic_size *a)
    size_t fc_size_load_acquire(fc_atomic_size *a)
    void fc_size_store_release(fc_atomic_size *a, size_t x)
    bint fc_size_cas_weak_relaxed(fc_atomic_size *a, size_t *expected, size_t desired)
    void fc_size_store_relaxed(fc_atomic_size *a, size_t x)
    size_t fc_size_load_seq_cst(fc_atomic_size *a)
    size_t fc_size_fetch_add_seq_cst(fc_atomic_size *a, size_t x)
    size_t fc_size_fetch_sub_seq_cst(fc_atomic_size *a, size_t x)
    bint fc_size_cas_weak_seq_cst(fc_atomic_size *a, size_t *expected, size_t desired)
    size_t fc_size_fetch_or_seq_cst(fc_atomic_size *a, size_t x)

    void fc_i64_init(fc_atomic_i64 *a, int64_t x)
    int64_t fc_i64_load_relaxed(fc_atomic_i64 *a)
    int64_t fc_i64_load_acquire(fc_atomic_i64 *a)
    int64_t fc_i64_load_seq_cst(fc_atomic_i64 *a)
    void fc_i64_store_relaxed(fc_atomic_i64 *a, int64_t x)
    void fc_i64_store_release(fc_atomic_i64 *a, int64_t x)
    bint fc_i64_cas_strong_seq_cst(fc_atomic_i64 *a, int64_t *expected, int64_t desired)
    int64_t fc_i64_fetch_add_seq_cst(fc_atomic_i64 *a, int64_t x)

    void fc_ptr_init(fc_atomic_ptr *a, void *x)
    void *fc_ptr_load_relaxed(fc_atomic_ptr *a)
    void *fc_ptr_load_acquire(fc_atomic_ptr *a)
    void fc_ptr_store_relaxed(fc_atomic_ptr *a, void *x)
    void fc_ptr_store_release(fc_atomic_ptr *a, void *x)
    bint fc_ptr_cas_strong_acq_rel(fc_atomic_ptr *a, void **expected, void *desired)

    void fc_fence_release()
    void fc_fence_seq_cst()

    void fc_uptr_init(fc_atomic_uptr *a, uintptr_t x)
    uintptr_t fc_uptr_load_relaxed(fc_atomic_uptr *a)
    bint fc_uptr_cas_strong_relaxed(fc_atomic_uptr *a, uintptr_t *expected, uintptr_t desired)
    uintptr_t fc_uptr_load_acquire(fc_atomic_uptr *a)
    void fc_uptr_store_relaxed(fc_atomic_uptr *a, uintptr_t x)
    bint fc_uptr_cas_strong_acq_rel(fc_atomic_uptr *a, uintptr_t *expected, uintptr_t desired)
