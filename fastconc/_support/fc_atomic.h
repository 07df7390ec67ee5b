/* fc_atomic.h -- the one place fastconc touches C-level atomics.
 *
 * Every .pyx that needs an atomic declares it through fastconc/_atomic.pxd,
 * which wraps this header.  Each wrapper names its memory order explicitly so
 * the call site (where the reason for the order lives, in a comment) can be
 * read without looking here.
 *
 * gcc and clang get C11 <stdatomic.h>.  MSVC gets <stdatomic.h> too from
 * Visual Studio 17.5 on when built with /std:c11 /experimental:c11atomics;
 * older compilers stop here with a clear error instead of a silently racy
 * build.
 */
#ifndef FASTCONC_ATOMIC_H
#define FASTCONC_ATOMIC_H

#include <stddef.h>
#include <stdint.h>

#if defined(__STDC_NO_ATOMICS__)
#error "fastconc needs C11 <stdatomic.h>; build with FASTCONC_NO_EXTENSIONS=1 for the pure-Python backend"
#endif
#include <stdatomic.h>

/* Wrapped in structs so Cython can embed them by value in cdef classes
 * without having to spell _Atomic. */
typedef struct { _Atomic uint32_t v; } fc_atomic_u32;

static inline void fc_u32_init(fc_atomic_u32 *a, uint32_t x) { atomic_init(&a->v, x); }
static inline uint32_t fc_u32_load_relaxed(fc_atomic_u32 *a) {
    return atomic_load_explicit(&a->v, memory_order_relaxed);
}
static inline uint32_t fc_u32_fetch_add_seq_cst(fc_atomic_u32 *a, uint32_t x) {
    return atomic_fetch_add_explicit(&a->v, x, memory_order_seq_cst);
}
/* The "someone is waiting" flag of a SyncWaker and a parker's wake-up word. */
static inline uint32_t fc_u32_load_seq_cst(fc_atomic_u32 *a) {
    return atomic_load_explicit(&a->v, memory_order_seq_cst);
}
static inline void fc_u32_store_seq_cst(fc_atomic_u32 *a, uint32_t x) {
    atomic_store_explicit(&a->v, x, memory_order_seq_cst);
}
static inline uint32_t fc_u32_load_acquire(fc_atomic_u32 *a) {
    return atomic_load_explicit(&a->v, memory_order_acquire);
}
static inline void fc_u32_store_release(fc_atomic_u32 *a, uint32_t x) {
    atomic_store_explicit(&a->v, x, memory_order_release);
}
static inline void fc_u32_store_relaxed(fc_atomic_u32 *a, uint32_t x) {
    atomic_store_explicit(&a->v, x, memory_order_relaxed);
}
/* A parker's three-state word (fc_sync.h): SeqCst, as the blocking path is
 * rare and the states must not be reordered against the futex syscalls'
 * own reads of the word. */
static inline uint32_t fc_u32_exchange_seq_cst(fc_atomic_u32 *a, uint32_t x) {
    return atomic_exchange_explicit(&a->v, x, memory_order_seq_cst);
}
static inline int fc_u32_cas_strong_seq_cst(fc_atomic_u32 *a, uint32_t *expected, uint32_t desired) {
    return atomic_compare_exchange_strong_explicit(&a->v, expected, desired,
                                                   memory_order_seq_cst, memory_order_seq_cst);
}
/* Address of the plain 32-bit word, for futex(2). */
static inline uint32_t *fc_u32_addr(fc_atomic_u32 *a) { return (uint32_t *)&a->v; }

/* Ring indices: positions only ever grow and wrap modulo 2**N, so unsigned
 * size_t arithmetic (tail - head) stays right across the wrap. */
typedef struct { _Atomic size_t v; } fc_atomic_size;

static inline void fc_size_init(fc_atomic_size *a, size_t x) { atomic_init(&a->v, x); }
static inline size_t fc_size_load_relaxed(fc_atomic_size *a) {
    return atomic_load_explicit(&a->v, memory_order_relaxed);
}
static inline size_t fc_size_load_acquire(fc_atomic_size *a) {
    return atomic_load_explicit(&a->v, memory_order_acquire);
}
static inline void fc_size_store_release(fc_atomic_size *a, size_t x) {
    atomic_store_explicit(&a->v, x, memory_order_release);
}
/* Weak CAS, relaxed both ways; on failure *expected gets the current value. */
static inline int fc_size_cas_weak_relaxed(fc_atomic_size *a, size_t *expected, size_t desired) {
    return atomic_compare_exchange_weak_explicit(&a->v, expected, desired,
                                                 memory_order_relaxed, memory_order_relaxed);
}

/* The Channel's head/tail claims: SeqCst on success so the claim is in one
 * total order with a waiter's SeqCst registration and re-check (crossbeam
 * array.rs start_send/start_recv use SeqCst here); a failure only reloads. */
static inline int fc_size_cas_weak_seq_cst(fc_atomic_size *a, size_t *expected, size_t desired) {
    return atomic_compare_exchange_weak_explicit(&a->v, expected, desired,
                                                 memory_order_seq_cst, memory_order_relaxed);
}
static inline size_t fc_size_fetch_or_seq_cst(fc_atomic_size *a, size_t x) {
    return atomic_fetch_or_explicit(&a->v, x, memory_order_seq_cst);
}

/* Single-writer counters (a worker's statistics): the owner adds with a
 * relaxed load + store, other threads read relaxed for a snapshot. */
static inline void fc_size_store_relaxed(fc_atomic_size *a, size_t x) {
    atomic_store_explicit(&a->v, x, memory_order_relaxed);
}
static inline size_t fc_size_load_seq_cst(fc_atomic_size *a) {
    return atomic_load_explicit(&a->v, memory_order_seq_cst);
}
static inline size_t fc_size_fetch_add_seq_cst(fc_atomic_size *a, size_t x) {
    return atomic_fetch_add_explicit(&a->v, x, memory_order_seq_cst);
}
static inline size_t fc_size_fetch_sub_seq_cst(fc_atomic_size *a, size_t x) {
    return atomic_fetch_sub_explicit(&a->v, x, memory_order_seq_cst);
}

/* Chase-Lev deque indices: signed 64-bit, as in Le et al. 2013, so that
 * `bottom - 1` below `top` reads as "empty" instead of wrapping. */
typedef struct { _Atomic int64_t v; } fc_atomic_i64;
typedef struct { fc_atomic_i64 v; char pad[128 - sizeof(fc_atomic_i64)]; } fc_padded_i64;

static inline void fc_i64_init(fc_atomic_i64 *a, int64_t x) { atomic_init(&a->v, x); }
static inline int64_t fc_i64_load_relaxed(fc_atomic_i64 *a) {
    return atomic_load_explicit(&a->v, memory_order_relaxed);
}
static inline int64_t fc_i64_load_acquire(fc_atomic_i64 *a) {
    return atomic_load_explicit(&a->v, memory_order_acquire);
}
static inline int64_t fc_i64_load_seq_cst(fc_atomic_i64 *a) {
    return atomic_load_explicit(&a->v, memory_order_seq_cst);
}
static inline void fc_i64_store_relaxed(fc_atomic_i64 *a, int64_t x) {
    atomic_store_explicit(&a->v, x, memory_order_relaxed);
}
/* Strong CAS, seq_cst on success, relaxed on failure (the paper's take/steal
 * CAS on top); on failure *expected gets the current value. */
static inline void fc_i64_store_release(fc_atomic_i64 *a, int64_t x) {
    atomic_store_explicit(&a->v, x, memory_order_release);
}
static inline int fc_i64_cas_strong_seq_cst(fc_atomic_i64 *a, int64_t *expected, int64_t desired) {
    return atomic_compare_exchange_strong_explicit(&a->v, expected, desired,
                                                   memory_order_seq_cst, memory_order_relaxed);
}
static inline int64_t fc_i64_fetch_add_seq_cst(fc_atomic_i64 *a, int64_t x) {
    return atomic_fetch_add_explicit(&a->v, x, memory_order_seq_cst);
}

/* Pointer words: the deque's current array and its slots. */
typedef struct { _Atomic(void *) v; } fc_atomic_ptr;

static inline void fc_ptr_init(fc_atomic_ptr *a, void *x) { atomic_init(&a->v, x); }
static inline void *fc_ptr_load_relaxed(fc_atomic_ptr *a) {
    return atomic_load_explicit(&a->v, memory_order_relaxed);
}
static inline void *fc_ptr_load_acquire(fc_atomic_ptr *a) {
    return atomic_load_explicit(&a->v, memory_order_acquire);
}
static inline void fc_ptr_store_relaxed(fc_atomic_ptr *a, void *x) {
    atomic_store_explicit(&a->v, x, memory_order_relaxed);
}
static inline void fc_ptr_store_release(fc_atomic_ptr *a, void *x) {
    atomic_store_explicit(&a->v, x, memory_order_release);
}

/* Installing a lazily allocated buffer: release publishes its initialised
 * slots; a loser's acquire sees the winner's. */
static inline int fc_ptr_cas_strong_acq_rel(fc_atomic_ptr *a, void **expected, void *desired) {
    return atomic_compare_exchange_strong_explicit(&a->v, expected, desired,
                                                   memory_order_acq_rel, memory_order_acquire);
}

/* Stand-alone fences (Le et al. place them between plain-ordered accesses). */
static inline void fc_fence_release(void) { atomic_thread_fence(memory_order_release); }
static inline void fc_fence_seq_cst(void) { atomic_thread_fence(memory_order_seq_cst); }

/* A word padded to its own 128 bytes: the producer's and the consumer's hot
 * indices must not share a cache line (crossbeam's CachePadded uses 128 on
 * x86-64 and aarch64, where the adjacent-line prefetcher pairs lines). */
typedef struct { fc_atomic_size v; char pad[128 - sizeof(fc_atomic_size)]; } fc_padded_size;

/* Thread identity words (owner of one side of a single-producer /
 * single-consumer ring). */
typedef struct { _Atomic uintptr_t v; } fc_atomic_uptr;

static inline void fc_uptr_init(fc_atomic_uptr *a, uintptr_t x) { atomic_init(&a->v, x); }
static inline uintptr_t fc_uptr_load_relaxed(fc_atomic_uptr *a) {
    return atomic_load_explicit(&a->v, memory_order_relaxed);
}
static inline int fc_uptr_cas_strong_relaxed(fc_atomic_uptr *a, uintptr_t *expected, uintptr_t desired) {
    return atomic_compare_exchange_strong_explicit(&a->v, expected, desired,
                                                   memory_order_relaxed, memory_order_relaxed);
}

static inline uintptr_t fc_uptr_load_acquire(fc_atomic_uptr *a) {
    return atomic_load_explicit(&a->v, memory_order_acquire);
}
static inline void fc_uptr_store_relaxed(fc_atomic_uptr *a, uintptr_t x) {
    atomic_store_explicit(&a->v, x, memory_order_relaxed);
}
/* A waiter's selection word (crossbeam context.rs try_select: AcqRel on
 * success, Acquire on failure). */
static inline int fc_uptr_cas_strong_acq_rel(fc_atomic_uptr *a, uintptr_t *expected, uintptr_t desired) {
    return atomic_compare_exchange_strong_explicit(&a->v, expected, desired,
                                                   memory_order_acq_rel, memory_order_acquire);
}

#endif /* FASTCONC_ATOMIC_H */
