/* fc_sync.h -- the one place fastconc blocks a thread: mutex, condition
 * variable and the monotonic clock their deadlines use (plus the thread
 * identity the single-producer/single-consumer rings check).
 *
 * Contract of fc_cond_wait(cond, mutex, timeout_ns):
 *   - called and returns with the mutex held; the caller re-checks its
 *     predicate and its own deadline after every return (wake-ups may be
 *     spurious, as with pthread_cond_wait);
 *   - timeout_ns < 0 waits without a time limit;
 *   - spin != 0 lets it spin briefly before sleeping (Linux only);
 *   - returns FC_WAIT_CHECK_SIGNALS when the caller must take the GIL and run
 *     PyErr_CheckSignals() before waiting again, so that Ctrl-C reaches a
 *     main thread blocked here.
 *
 * Linux: the condition variable is a futex sequence word (Drepper, "Futexes
 * Are Tricky", 2011, the "waiters re-check under the mutex" condvar).  A
 * signal delivered to the waiting thread interrupts futex(2) with EINTR
 * (CPython installs its handlers without SA_RESTART), so the wait ends the
 * moment SIGINT arrives and nothing polls.
 *
 * Elsewhere (other POSIX systems, Windows) the native condition variable is
 * used; those do not return early on a signal, so a wait is cut into
 * FC_SIGNAL_SLICE_NS slices and reports FC_WAIT_CHECK_SIGNALS between them.
 * That path wakes 20 times a second while blocked; it is untested in CI (CI is
 * Linux) and is there so the extension still builds and behaves correctly.
 */
#ifndef FASTCONC_SYNC_H
#define FASTCONC_SYNC_H

/* Feature macros matter only before the first system header; in the
 * extension Python.h comes first and already sets them. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE 1  /* PTHREAD_MUTEX_ADAPTIVE_NP */
#elif !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdint.h>
#include <errno.h>
#include <limits.h>
#include "fc_atomic.h"

enum { FC_WAIT_OK = 0, FC_WAIT_CHECK_SIGNALS = 1 };

#define FC_SIGNAL_SLICE_NS 50000000LL

/* ------------------------------------------------------------ clock */
#if defined(_WIN32)
#include <windows.h>
static inline int64_t fc_monotonic_ns(void) {
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (int64_t)((double)c.QuadPart * 1e9 / (double)f.QuadPart);
}
#else
#include <time.h>
static inline int64_t fc_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
#endif

/* ------------------------------------------------------------ thread identity */
/* A non-zero word naming the calling OS thread (also for threads Python
 * does not know about). */
#if defined(_WIN32)
static inline uintptr_t fc_thread_id(void) { return (uintptr_t)GetCurrentThreadId() + 1; }
#else
#include <pthread.h>
static inline uintptr_t fc_thread_id(void) { return (uintptr_t)pthread_self(); }
#endif

/* The process, to tell waiters inherited through fork() (their threads did
 * not come along) from live ones. */
#if defined(_WIN32)
static inline long fc_process_id(void) { return (long)GetCurrentProcessId(); }
#else
#include <unistd.h>
/* getpid() is a system call (glibc stopped caching it in 2.25): cache it,
 * refreshed in the child by a fork handler.  Relaxed: the value only ever
 * changes in a child, before fork() returns there. */
static _Atomic long fc_pid_cache = 0;
static pthread_once_t fc_pid_once = PTHREAD_ONCE_INIT;
static void fc_pid_refresh(void) {
    atomic_store_explicit(&fc_pid_cache, (long)getpid(), memory_order_relaxed);
}
static void fc_pid_init(void) {
    fc_pid_refresh();
    pthread_atfork(NULL, NULL, fc_pid_refresh);
}
static inline long fc_process_id(void) {
    pthread_once(&fc_pid_once, fc_pid_init);
    return atomic_load_explicit(&fc_pid_cache, memory_order_relaxed);
}
#endif

/* ------------------------------------------------------------ per-thread random */
/* Marsaglia's xorshift32 (2003), one state per thread: select's shuffle
 * (crossbeam-channel utils.rs shuffle does the same).  Not for secrets. */
#if defined(_MSC_VER)
#define FC_THREAD_LOCAL __declspec(thread)
#else
#define FC_THREAD_LOCAL __thread
#endif
static inline uint32_t fc_random_u32(void) {
    static FC_THREAD_LOCAL uint32_t state = 0;
    uint32_t x = state;
    if (x == 0)
        x = ((uint32_t)(fc_thread_id() * 2654435761u) ^ (uint32_t)fc_monotonic_ns()) | 1u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    state = x;
    return x;
}

/* A uniform integer in [0, n), Lemire's multiply-shift reduction. */
static inline uint32_t fc_random_below(uint32_t n) {
    return (uint32_t)(((uint64_t)fc_random_u32() * n) >> 32);
}

/* ------------------------------------------------------------ mutex */
#if defined(_WIN32)
typedef SRWLOCK fc_mutex;
static inline int fc_mutex_init(fc_mutex *m) { InitializeSRWLock(m); return 0; }
static inline void fc_mutex_destroy(fc_mutex *m) { (void)m; }
static inline void fc_mutex_lock(fc_mutex *m) { AcquireSRWLockExclusive(m); }
/* 1 when acquired */
static inline int fc_mutex_trylock(fc_mutex *m) { return TryAcquireSRWLockExclusive(m) != 0; }
static inline void fc_mutex_unlock(fc_mutex *m) { ReleaseSRWLockExclusive(m); }
#else
#include <pthread.h>
typedef pthread_mutex_t fc_mutex;
static inline int fc_mutex_init(fc_mutex *m) {
#if defined(PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP)
    /* Critical sections here are a few pointer moves, far shorter than a
     * futex sleep and wake-up: spin a little before sleeping (glibc). */
    pthread_mutexattr_t attr;
    int r;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    r = pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
    return r;
#else
    return pthread_mutex_init(m, NULL);
#endif
}
static inline void fc_mutex_destroy(fc_mutex *m) { pthread_mutex_destroy(m); }
static inline void fc_mutex_lock(fc_mutex *m) { pthread_mutex_lock(m); }
static inline int fc_mutex_trylock(fc_mutex *m) { return pthread_mutex_trylock(m) == 0; }
static inline void fc_mutex_unlock(fc_mutex *m) { pthread_mutex_unlock(m); }
#endif

/* ------------------------------------------------------------ backoff */
/* One spin-wait hint to the CPU, and giving the core away: the two steps of
 * crossbeam-utils' Backoff. */
#if defined(_MSC_VER)
static inline void fc_cpu_relax(void) { YieldProcessor(); }
#else
static inline void fc_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
#endif
#if defined(_WIN32)
static inline void fc_yield(void) { SwitchToThread(); }
#else
#include <sched.h>
static inline void fc_yield(void) { sched_yield(); }
#endif

/* crossbeam-utils Backoff::snooze (SPIN_LIMIT 6, YIELD_LIMIT 10): spin
 * 2^step pause instructions while step <= 6, then yield the core; the
 * caller gives up waiting this way once *step > FC_BACKOFF_STEPS. */
#define FC_BACKOFF_STEPS 10
static inline void fc_backoff_snooze(int *step) {
    if (*step <= 6) {
        for (int i = 0; i < (1 << *step); i++)
            fc_cpu_relax();
    } else {
        fc_yield();
    }
    if (*step <= FC_BACKOFF_STEPS)
        (*step)++;
}

/* ------------------------------------------------------------ condition variable */
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

/* seq: bumped by every signal; sleeping: threads inside futex(2) on seq
 * (a waiter still spinning is not one), so a signal with none makes no
 * syscall. */
typedef struct { fc_atomic_u32 seq; fc_atomic_u32 sleeping; } fc_cond;

/* Spin-then-park, as crossbeam's Backoff and glibc's adaptive mutex do: a
 * waiter first watches the sequence word for up to FC_SPIN_NS before it
 * sleeps.  Under the GIL the peer that will wake us usually needs one GIL
 * hand-off (tens of microseconds on a VM) to get there; catching its signal
 * while still running saves the waker the cross-CPU wake-up of a sleeping
 * thread and us the sleep.  Callers ask for it only on the first wait of
 * a blocking call (fc_cond_wait's `spin`). */
#define FC_SPIN_NS 20000


static inline int fc_is_main_thread(void) {
    static __thread int is_main = -1;
    if (is_main < 0)
        is_main = syscall(SYS_gettid) == getpid();
    return is_main;
}

/* 1 when the word moved away from seq within the spin budget. */
static inline int fc_spin_until_changed(fc_atomic_u32 *word, uint32_t seq, int64_t timeout_ns) {
    int64_t budget = FC_SPIN_NS, until;
    if (timeout_ns >= 0 && timeout_ns < budget)
        budget = timeout_ns;
    if (budget <= 0)
        return 0;
    until = fc_monotonic_ns() + budget;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            /* relaxed: only a hint; the mutex taken after it orders the
             * predicate re-check. */
            if (fc_u32_load_relaxed(word) != seq)
                return 1;
            fc_cpu_relax();
        }
        if (fc_monotonic_ns() >= until)
            return 0;
    }
}

static inline int fc_cond_init(fc_cond *c) {
    fc_u32_init(&c->seq, 0);
    fc_u32_init(&c->sleeping, 0);
    return 0;
}
static inline void fc_cond_destroy(fc_cond *c) { (void)c; }

static inline int fc_cond_wait(fc_cond *c, fc_mutex *m, int64_t timeout_ns, int spin) {
    /* relaxed: read under the mutex, and every change to the predicate is
     * made under that mutex before the signaller bumps seq, so this read is
     * ordered before any bump that concerns us; futex(2) itself re-reads the
     * word atomically against FUTEX_WAKE. */
    uint32_t seq = fc_u32_load_relaxed(&c->seq);
    struct timespec ts, *tsp = NULL;
    long r;
    int err = 0, capped = 0;
    fc_mutex_unlock(m);
    if (spin) {
        if (fc_spin_until_changed(&c->seq, seq, timeout_ns)) {
            fc_mutex_lock(m);
            return FC_WAIT_OK;
        }
        if (fc_is_main_thread() && (timeout_ns < 0 || timeout_ns > FC_SIGNAL_SLICE_NS)) {
            /* A SIGINT handled while we spun would not interrupt the sleep
             * below: sleep at most one slice, then let the caller look at
             * signals (once: it calls again with spin=0). */
            timeout_ns = FC_SIGNAL_SLICE_NS;
            capped = 1;
        }
    }
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000LL);
        ts.tv_nsec = (long)(timeout_ns % 1000000000LL);
        tsp = &ts;
    }
    /* seq_cst: a Dekker pair with fc_cond_signal_n (bump seq, then read
     * sleeping): either the signaller sees us counted and wakes us, or our
     * futex(2) call sees its bump and returns at once. */
    fc_u32_fetch_add_seq_cst(&c->sleeping, 1);
    r = syscall(SYS_futex, fc_u32_addr(&c->seq), FUTEX_WAIT_PRIVATE, seq, tsp, NULL, 0);
    if (r == -1)
        err = errno;
    fc_u32_fetch_add_seq_cst(&c->sleeping, (uint32_t)-1);
    fc_mutex_lock(m);
    /* EAGAIN: seq moved before we slept; ETIMEDOUT: caller checks its deadline */
    if (err == EINTR || (capped && err == ETIMEDOUT))
        return FC_WAIT_CHECK_SIGNALS;
    return FC_WAIT_OK;
}

/* Wake up to n waiters.  Called after the predicate change, mutex released. */
static inline void fc_cond_signal_n(fc_cond *c, int n) {
    /* seq_cst: the bump must be visible before the kernel looks for sleepers
     * in FUTEX_WAKE, the same full barrier glibc's pthread_cond_signal uses. */
    fc_u32_fetch_add_seq_cst(&c->seq, 1);
    /* seq_cst: see fc_cond_wait.  No thread in futex(2): a spinning waiter
     * sees the bump by itself. */
    if (fc_u32_load_seq_cst(&c->sleeping))
        syscall(SYS_futex, fc_u32_addr(&c->seq), FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

#elif defined(_WIN32)
typedef CONDITION_VARIABLE fc_cond;
static inline int fc_cond_init(fc_cond *c) { InitializeConditionVariable(c); return 0; }
static inline void fc_cond_destroy(fc_cond *c) { (void)c; }
static inline int fc_cond_wait(fc_cond *c, fc_mutex *m, int64_t timeout_ns, int spin) {
    (void)spin;  /* no spinning on this path */
    int64_t slice = (timeout_ns < 0 || timeout_ns > FC_SIGNAL_SLICE_NS) ? FC_SIGNAL_SLICE_NS : timeout_ns;
    SleepConditionVariableSRW(c, m, (DWORD)((slice + 999999) / 1000000), 0);
    return slice == timeout_ns ? FC_WAIT_OK : FC_WAIT_CHECK_SIGNALS;
}
static inline void fc_cond_signal_n(fc_cond *c, int n) {
    if (n == 1) WakeConditionVariable(c); else WakeAllConditionVariable(c);
}

#else /* other POSIX */
typedef pthread_cond_t fc_cond;
static inline int fc_cond_init(fc_cond *c) {
#if defined(__APPLE__)
    return pthread_cond_init(c, NULL);  /* waits below are relative */
#else
    /* Slices measured on the monotonic clock: a wall-clock step must not
     * stretch a wait. */
    pthread_condattr_t attr;
    int r;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    r = pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
    return r;
#endif
}
static inline void fc_cond_destroy(fc_cond *c) { pthread_cond_destroy(c); }
static inline int fc_cond_wait(fc_cond *c, fc_mutex *m, int64_t timeout_ns, int spin) {
    (void)spin;  /* no spinning on this path */
    int64_t slice = (timeout_ns < 0 || timeout_ns > FC_SIGNAL_SLICE_NS) ? FC_SIGNAL_SLICE_NS : timeout_ns;
    struct timespec ts;
#if defined(__APPLE__)
    ts.tv_sec = (time_t)(slice / 1000000000LL);
    ts.tv_nsec = (long)(slice % 1000000000LL);
    pthread_cond_timedwait_relative_np(c, m, &ts);
#else
    int64_t when = fc_monotonic_ns() + slice;
    ts.tv_sec = (time_t)(when / 1000000000LL);
    ts.tv_nsec = (long)(when % 1000000000LL);
    pthread_cond_timedwait(c, m, &ts);
#endif
    return slice == timeout_ns ? FC_WAIT_OK : FC_WAIT_CHECK_SIGNALS;
}
static inline void fc_cond_signal_n(fc_cond *c, int n) {
    if (n == 1) pthread_cond_signal(c); else pthread_cond_broadcast(c);
}
#endif

#define fc_cond_broadcast(c) fc_cond_signal_n((c), INT_MAX)

/* ------------------------------------------------------------ parker */
/* The wake-up word of one blocked call (a Waiter of _channel_waker_c.pxd).
 * fc_unpark may come before fc_park; the word keeps it (a permit, as Rust's
 * std::thread::park).  fc_park returns FC_WAIT_OK when unparked, at the
 * timeout, or spuriously (the caller re-reads its selection word and its
 * deadline), FC_WAIT_CHECK_SIGNALS when the caller must take the GIL and
 * run PyErr_CheckSignals() first.  On the main thread a park lasts at most
 * FC_SIGNAL_SLICE_NS: a SIGINT handled between the caller's last look at
 * signals and the futex(2) call would not interrupt the sleep. */
enum { FC_PARK_EMPTY = 0, FC_PARK_NOTIFIED = 1, FC_PARK_SLEEPING = 2 };

#if defined(__linux__)
typedef struct { fc_atomic_u32 word; } fc_parker;
static inline void fc_parker_init(fc_parker *p) { fc_u32_init(&p->word, FC_PARK_EMPTY); }
static inline void fc_parker_destroy(fc_parker *p) { (void)p; }

static inline int fc_park(fc_parker *p, int64_t timeout_ns, int spin) {
    struct timespec ts, *tsp = NULL;
    uint32_t w = FC_PARK_EMPTY;
    int capped = 0;
    long r;
    if (spin && fc_spin_until_changed(&p->word, FC_PARK_EMPTY, timeout_ns))
        return FC_WAIT_OK;
    /* EMPTY -> SLEEPING tells fc_unpark that a FUTEX_WAKE is needed (the
     * three-state parker of Rust's futex-based std::thread::park); a word
     * already SLEEPING (an earlier park timed out) stays so. */
    if (!fc_u32_cas_strong_seq_cst(&p->word, &w, FC_PARK_SLEEPING) && w == FC_PARK_NOTIFIED)
        return FC_WAIT_OK;
    if (fc_is_main_thread() && (timeout_ns < 0 || timeout_ns > FC_SIGNAL_SLICE_NS)) {
        timeout_ns = FC_SIGNAL_SLICE_NS;
        capped = 1;
    }
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000LL);
        ts.tv_nsec = (long)(timeout_ns % 1000000000LL);
        tsp = &ts;
    }
    /* Sleeps only while the word is still SLEEPING: an unpark in between
     * makes futex(2) return EAGAIN at once. */
    r = syscall(SYS_futex, fc_u32_addr(&p->word), FUTEX_WAIT_PRIVATE, FC_PARK_SLEEPING, tsp, NULL, 0);
    if (r == -1 && (errno == EINTR || (capped && errno == ETIMEDOUT)))
        return FC_WAIT_CHECK_SIGNALS;
    return FC_WAIT_OK;
}

/* Called with the waker's mutex held: the parked thread leaves its wait
 * (and frees the parker with its C frame) only after taking that mutex. */
static inline void fc_unpark(fc_parker *p) {
    if (fc_u32_exchange_seq_cst(&p->word, FC_PARK_NOTIFIED) == FC_PARK_SLEEPING)
        syscall(SYS_futex, fc_u32_addr(&p->word), FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

#else /* a mutex, a condition variable and a flag */
typedef struct { fc_mutex m; fc_cond c; int notified; } fc_parker;
static inline void fc_parker_init(fc_parker *p) {
    fc_mutex_init(&p->m);
    fc_cond_init(&p->c);
    p->notified = 0;
}
static inline void fc_parker_destroy(fc_parker *p) {
    fc_cond_destroy(&p->c);
    fc_mutex_destroy(&p->m);
}
static inline int fc_park(fc_parker *p, int64_t timeout_ns, int spin) {
    int r = FC_WAIT_OK;
    fc_mutex_lock(&p->m);
    if (!p->notified)
        r = fc_cond_wait(&p->c, &p->m, timeout_ns, spin);
    fc_mutex_unlock(&p->m);
    return r;
}
static inline void fc_unpark(fc_parker *p) {
    fc_mutex_lock(&p->m);
    p->notified = 1;
    fc_cond_signal_n(&p->c, 1);
    fc_mutex_unlock(&p->m);
}
#endif

#endif /* FASTCONC_SYNC_H */
