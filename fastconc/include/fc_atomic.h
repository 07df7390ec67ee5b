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
/* Address of the plain 32-bit word, for futex(2). */
static inline uint32_t *fc_u32_addr(fc_atomic_u32 *a) { return (uint32_t *)&a->v; }

#endif /* FASTCONC_ATOMIC_H */
