/* cmlp's worker threads: one pool per process, for data-parallel passes.
 *
 * Design
 * ------
 * A job is n_tasks calls fn(ctx, task, worker), task in [0, n_tasks), run by
 * the calling thread (worker 0) and up to threads - 1 helper threads
 * (workers 1 .. threads - 1). Tasks are claimed one at a time from a shared
 * counter, so whichever thread is free takes the next one: a helper whose
 * core is taken by another process (a busy machine) leaves its task to the
 * caller instead of making it wait. What a task computes must depend on the
 * task index alone (its rows, its output buffer), never on the worker that
 * runs it: then results depend on how the work is split, never on the
 * schedule. `worker` only picks per-thread scratch.
 * - The claim word describes its job whole: generation (24 bits), threads
 *   (8), task count (16) and next task (16), claimed by compare-and-swap.
 *   A helper claims a task only while the word still carries the generation
 *   whose fn/ctx it read, and bounds it by the count in the same word: it
 *   can never pair one job's count with another's tasks, nor run a task of
 *   a job that is over (whose fields the caller may be rewriting). (A first
 *   version kept the count in a field of its own: a helper that read the
 *   next job's larger count beside the old word ran a task too many, and
 *   the caller waited forever, seen once in a benchmark.)
 * - Owned jobs (cmlp_pool_run_owned, at most 16 tasks): task w goes to
 *   worker w when that worker comes for it before anyone else does, the
 *   rest to whoever is free. The claim word's `next` field is then a mask
 *   of the claimed tasks. A split whose task w touches the same columns of
 *   W in every phase keeps them in one core's cache; a thread that does not
 *   come (its core taken) still has its task taken by another.
 * - Waiting spins briefly (the next step's job usually comes within
 *   microseconds), yielding the core between polls, then sleeps on a futex:
 *   idle helpers cost nothing, and a caller whose helper was descheduled
 *   mid-task gives its core to that helper rather than spinning against it.
 * - Helpers are created on first use with every signal blocked (Python's
 *   handlers run in the main thread) and live as long as the process. A
 *   forked child has none of them: a pthread_atfork handler resets the pool
 *   there, and the next job creates them anew. No OpenMP, whose runtime does
 *   not survive fork.
 * - One job at a time: a caller that finds the pool busy (another thread's
 *   predict, a nested call) runs its tasks itself, as worker 0, in order.
 * - A busy machine: a helper that claimed a task and then lost its core to
 *   another process makes the caller wait for it (a scheduler time slice,
 *   milliseconds). When two jobs in a row straggle so (the caller waited
 *   longer for helpers than its own tasks took), the next jobs run on the
 *   caller alone, the helpers left asleep: 16 of them, then twice as many
 *   after each further straggling pair (at most 4096), back to 16 after a
 *   job that did not straggle. Since results depend on the tasks, never on
 *   who runs them, this changes no bit.
 * - Linux only (futex), as cmlp's wheels are.
 */
#ifndef CMLP_POOL_H
#define CMLP_POOL_H

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* As cmlp/_dl_compat.h does for dl*: glibc 2.32/2.34 moved these into libc
   under new versions; binding the GLIBC_2.2.5 ones (and linking libpthread,
   where older glibc defines them) keeps the wheels' glibc 2.17 floor. */
#if defined(__GLIBC__) && defined(__x86_64__) && !defined(CMLP_NO_DL_COMPAT)
__asm__(".symver pthread_create,pthread_create@GLIBC_2.2.5");
__asm__(".symver pthread_sigmask,pthread_sigmask@GLIBC_2.2.5");
#endif

#define CMLP_POOL_MAX_THREADS 64
/* Idle helpers poll this long after a job before sleeping on the futex. */
#define CMLP_POOL_IDLE_SPIN_NS 500000L
/* A caller polls this long for the last task before sleeping. */
#define CMLP_POOL_WAIT_SPIN_NS 200000L
/* A job "straggles" when, after the caller's own tasks, it waits longer for
   a helper than those tasks took it, and longer than this. */
#define CMLP_POOL_STRAGGLE_NS 50000L
#define CMLP_POOL_SOLO_MIN 16
#define CMLP_POOL_SOLO_MAX 4096

typedef void (*cmlp_task_fn)(void *ctx, Py_ssize_t task, int worker);

typedef struct {
    /* The current job, written by its caller before `generation` moves. */
    cmlp_task_fn fn;
    void *ctx;
    /* generation (24 bits) | threads (8) | n_tasks (16) | next task (16). */
    uint64_t claim;
    int remaining;          /* futex word: tasks not finished yet */
    int caller_sleeping;
    int generation;         /* futex word: bumped once per job */
    int sleepers;           /* helpers asleep on `generation` */
    int n_helpers;
    int busy;               /* a caller owns the pool */
    int atfork_registered;
    /* Adaptive participation (the busy-machine rule, see above); read and
       written only by the caller that owns `busy`. */
    int solo_left;          /* jobs still to run on the caller alone */
    int solo_next;          /* the length of the next solo stretch */
    int straggles;          /* jobs in a row that waited long for a helper */
    long jobs_shared, jobs_solo;   /* counts, for cmlp._pool.stats() */
    pthread_mutex_t grow;   /* serialises creating helpers */
} cmlp_pool_t;

static cmlp_pool_t cmlp_pool = {.solo_next = CMLP_POOL_SOLO_MIN};
static pthread_mutex_t cmlp_pool_grow_init = PTHREAD_MUTEX_INITIALIZER;

static long cmlp_futex(int *word, int op, int value) {
    return syscall(SYS_futex, word, op, value, NULL, NULL, 0);
}

static long cmlp_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static inline void cmlp_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#define CMLP_CLAIM_GEN(c) ((uint32_t)((c) >> 40))
#define CMLP_CLAIM_THREADS(c) ((int)(((c) >> 32) & 0xFF))
#define CMLP_CLAIM_TASKS(c) ((uint32_t)(((c) >> 16) & 0xFFFF))
#define CMLP_CLAIM_NEXT(c) ((uint32_t)((c) & 0xFFFF))
#define CMLP_GEN_MASK 0xFFFFFFu
/* The task count's top bit marks an owned job. */
#define CMLP_OWNED 0x8000u
#define CMLP_MAX_TASKS 0x7FFF
#define CMLP_MAX_OWNED_TASKS 16
/* The task to claim in claim word c by `worker`, or -1 when none is left. */
static inline int cmlp_claim_index(uint64_t c, int worker) {
    uint32_t tasks = CMLP_CLAIM_TASKS(c), next = CMLP_CLAIM_NEXT(c), free_;
    if (!(tasks & CMLP_OWNED))
        return next < tasks ? (int)next : -1;
    tasks &= ~CMLP_OWNED;
    free_ = ~next & (tasks >= 16 ? 0xFFFFu : (1u << tasks) - 1u);
    if (!free_)
        return -1;
    if (worker < (int)tasks && (free_ >> worker & 1u))
        return worker;
    return __builtin_ctz(free_);
}
static inline uint64_t cmlp_claimed(uint64_t c, int index) {
    return CMLP_CLAIM_TASKS(c) & CMLP_OWNED ? c | (1u << index) : c + 1;
}

/* Claim and run tasks of generation `gen` (24 bits) until none is left. */
static void cmlp_pool_work(uint32_t gen, cmlp_task_fn fn, void *ctx, int worker) {
    for (;;) {
        uint64_t c = __atomic_load_n(&cmlp_pool.claim, __ATOMIC_ACQUIRE);
        int index;
        if (CMLP_CLAIM_GEN(c) != gen || worker >= CMLP_CLAIM_THREADS(c))
            return;
        index = cmlp_claim_index(c, worker);
        if (index < 0)
            return;
        if (!__atomic_compare_exchange_n(&cmlp_pool.claim, &c, cmlp_claimed(c, index), 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue;
        fn(ctx, (Py_ssize_t)index, worker);
        if (__atomic_sub_fetch(&cmlp_pool.remaining, 1, __ATOMIC_SEQ_CST) == 0
                && __atomic_load_n(&cmlp_pool.caller_sleeping, __ATOMIC_SEQ_CST))
            cmlp_futex(&cmlp_pool.remaining, FUTEX_WAKE_PRIVATE, 1);
    }
}

static void *cmlp_pool_helper(void *arg) {
    int worker = (int)(intptr_t)arg;
    int seen = __atomic_load_n(&cmlp_pool.generation, __ATOMIC_ACQUIRE);
    for (;;) {
        int gen = __atomic_load_n(&cmlp_pool.generation, __ATOMIC_ACQUIRE);
        if (gen == seen) {
            long deadline = cmlp_now_ns() + CMLP_POOL_IDLE_SPIN_NS;
            int polls = 0;
            while ((gen = __atomic_load_n(&cmlp_pool.generation, __ATOMIC_ACQUIRE)) == seen) {
                if (++polls < 64) {
                    cmlp_cpu_relax();
                    continue;
                }
                polls = 0;
                if (cmlp_now_ns() > deadline) {
                    __atomic_add_fetch(&cmlp_pool.sleepers, 1, __ATOMIC_SEQ_CST);
                    if (__atomic_load_n(&cmlp_pool.generation, __ATOMIC_SEQ_CST) == seen)
                        cmlp_futex(&cmlp_pool.generation, FUTEX_WAIT_PRIVATE, seen);
                    __atomic_sub_fetch(&cmlp_pool.sleepers, 1, __ATOMIC_SEQ_CST);
                    deadline = cmlp_now_ns() + CMLP_POOL_IDLE_SPIN_NS;
                } else {
                    sched_yield();   /* on a busy core, let the other process run */
                }
            }
        }
        seen = gen;
        /* The job's fields were written before `generation` moved; if they
           are overwritten by a later job meanwhile, the claim's generation
           no longer matches and nothing is run with them. */
        cmlp_pool_work((uint32_t)gen & CMLP_GEN_MASK,
                       __atomic_load_n(&cmlp_pool.fn, __ATOMIC_RELAXED),
                       __atomic_load_n(&cmlp_pool.ctx, __ATOMIC_RELAXED), worker);
    }
    return NULL;
}

static void cmlp_pool_after_fork_child(void) {
    /* The helpers do not exist here: start from an empty pool. */
    int registered = cmlp_pool.atfork_registered;
    memset(&cmlp_pool, 0, sizeof cmlp_pool);
    cmlp_pool.atfork_registered = registered;
    cmlp_pool.solo_next = CMLP_POOL_SOLO_MIN;
    pthread_mutex_init(&cmlp_pool.grow, NULL);
}

/* Make sure threads - 1 helpers exist; returns how many threads can work. */
static int cmlp_pool_grow(int threads) {
    sigset_t all, old;
    pthread_attr_t attr;
    pthread_t thread;
    if (threads > CMLP_POOL_MAX_THREADS)
        threads = CMLP_POOL_MAX_THREADS;
    if (__atomic_load_n(&cmlp_pool.n_helpers, __ATOMIC_ACQUIRE) >= threads - 1)
        return threads;
    pthread_mutex_lock(&cmlp_pool_grow_init);
    if (!cmlp_pool.atfork_registered) {
        pthread_mutex_init(&cmlp_pool.grow, NULL);
        pthread_atfork(NULL, NULL, cmlp_pool_after_fork_child);
        cmlp_pool.atfork_registered = 1;
    }
    pthread_mutex_unlock(&cmlp_pool_grow_init);
    pthread_mutex_lock(&cmlp_pool.grow);
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    while (cmlp_pool.n_helpers < threads - 1) {
        if (pthread_create(&thread, &attr, cmlp_pool_helper,
                           (void *)(intptr_t)(cmlp_pool.n_helpers + 1)) != 0)
            break;           /* out of threads: run with the ones there are */
        __atomic_add_fetch(&cmlp_pool.n_helpers, 1, __ATOMIC_RELEASE);
    }
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    threads = cmlp_pool.n_helpers + 1 < threads ? cmlp_pool.n_helpers + 1 : threads;
    pthread_mutex_unlock(&cmlp_pool.grow);
    return threads;
}

/* Run fn(ctx, task, worker) for every task in [0, n_tasks) on up to
   `threads` threads (this one included); returns when all have finished.
   owned: task w to worker w when it comes first (n_tasks <= 16). */
static void cmlp_pool_job(cmlp_task_fn fn, void *ctx, Py_ssize_t n_tasks, int threads,
                          int owned) {
    Py_ssize_t t;
    int expected = 0, r;
    uint32_t gen;
    long deadline, started, own_done, waited;
    if (n_tasks <= 0)
        return;
    if (threads > n_tasks)
        threads = (int)n_tasks;
    if (threads > 1)
        threads = cmlp_pool_grow(threads);
    if (owned && n_tasks > CMLP_MAX_OWNED_TASKS)
        owned = 0;
    if (threads <= 1 || n_tasks > CMLP_MAX_TASKS
            || !__atomic_compare_exchange_n(&cmlp_pool.busy, &expected, 1, 0,
                                            __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        for (t = 0; t < n_tasks; t++)
            fn(ctx, t, 0);
        return;
    }
    if (cmlp_pool.solo_left > 0) {
        cmlp_pool.solo_left--;
        cmlp_pool.jobs_solo++;
        for (t = 0; t < n_tasks; t++)
            fn(ctx, t, 0);
        __atomic_store_n(&cmlp_pool.busy, 0, __ATOMIC_RELEASE);
        return;
    }
    started = cmlp_now_ns();
    cmlp_pool.jobs_shared++;
    gen = (uint32_t)__atomic_load_n(&cmlp_pool.generation, __ATOMIC_RELAXED) + 1;
    __atomic_store_n(&cmlp_pool.fn, fn, __ATOMIC_RELAXED);
    __atomic_store_n(&cmlp_pool.ctx, ctx, __ATOMIC_RELAXED);
    __atomic_store_n(&cmlp_pool.remaining, (int)n_tasks, __ATOMIC_SEQ_CST);
    __atomic_store_n(&cmlp_pool.caller_sleeping, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&cmlp_pool.claim, ((uint64_t)(gen & CMLP_GEN_MASK) << 40)
                     | ((uint64_t)threads << 32)
                     | ((uint64_t)(n_tasks | (owned ? CMLP_OWNED : 0)) << 16), __ATOMIC_RELEASE);
    __atomic_store_n(&cmlp_pool.generation, (int)gen, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&cmlp_pool.sleepers, __ATOMIC_SEQ_CST) > 0)
        cmlp_futex(&cmlp_pool.generation, FUTEX_WAKE_PRIVATE, threads - 1);
    cmlp_pool_work(gen & CMLP_GEN_MASK, fn, ctx, 0);
    /* Every task is claimed; wait for the ones other threads still run. */
    own_done = cmlp_now_ns();
    deadline = own_done + CMLP_POOL_WAIT_SPIN_NS;
    for (r = 0; __atomic_load_n(&cmlp_pool.remaining, __ATOMIC_SEQ_CST) != 0; r++) {
        if (r % 64 != 63) {
            cmlp_cpu_relax();
            continue;
        }
        if (cmlp_now_ns() > deadline)
            break;
        sched_yield();       /* a helper descheduled on this core gets it back */
    }
    __atomic_store_n(&cmlp_pool.caller_sleeping, 1, __ATOMIC_SEQ_CST);
    while ((r = __atomic_load_n(&cmlp_pool.remaining, __ATOMIC_SEQ_CST)) != 0)
        cmlp_futex(&cmlp_pool.remaining, FUTEX_WAIT_PRIVATE, r);
    waited = cmlp_now_ns() - own_done;
    if (waited > own_done - started && waited > CMLP_POOL_STRAGGLE_NS) {
        if (++cmlp_pool.straggles >= 2) {
            cmlp_pool.solo_left = cmlp_pool.solo_next;
            if (cmlp_pool.solo_next < CMLP_POOL_SOLO_MAX)
                cmlp_pool.solo_next *= 2;
            cmlp_pool.straggles = 0;
        }
    } else {
        cmlp_pool.straggles = 0;
        cmlp_pool.solo_next = CMLP_POOL_SOLO_MIN;
    }
    __atomic_store_n(&cmlp_pool.busy, 0, __ATOMIC_RELEASE);
}

static void cmlp_pool_run(cmlp_task_fn fn, void *ctx, Py_ssize_t n_tasks, int threads) {
    cmlp_pool_job(fn, ctx, n_tasks, threads, 0);
}
static void cmlp_pool_run_owned(cmlp_task_fn fn, void *ctx, Py_ssize_t n_tasks,
                                int threads) {
    cmlp_pool_job(fn, ctx, n_tasks, threads, 1);
}
static void cmlp_pool_stats(long *shared, long *solo) {
    *shared = cmlp_pool.jobs_shared;
    *solo = cmlp_pool.jobs_solo;
}

/* Forget the busy-machine rule's history (straggles, solo stretch), as at
   start; nothing when a job is running. */
static void cmlp_pool_forget_stragglers(void) {
    int expected = 0;
    if (!__atomic_compare_exchange_n(&cmlp_pool.busy, &expected, 1, 0, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED))
        return;
    cmlp_pool.solo_left = 0;
    cmlp_pool.straggles = 0;
    cmlp_pool.solo_next = CMLP_POOL_SOLO_MIN;
    __atomic_store_n(&cmlp_pool.busy, 0, __ATOMIC_RELEASE);
}

static int cmlp_pool_helpers(void) {
    return __atomic_load_n(&cmlp_pool.n_helpers, __ATOMIC_ACQUIRE);
}

#endif
