"""cmlp's worker threads: data-parallel passes inside one process.

Design
------
* One pool per process (cmlp/_pool.h): helper threads created on first use,
  a job's tasks claimed from a shared counter by whichever thread is free,
  futex sleeps when idle, reset in a forked child. No OpenMP.
* Results depend on the split, never on the schedule: a task's output is
  a function of its index, and the callers combine task outputs in index
  order (cmlp._stepper sums per-task gradient buffers in a fixed order).
* While threads run cmlp's passes, scipy's OpenBLAS runs one thread per call
  (cmlp._blas.serial_blas_enter): two levels of threads on the same cores
  would only wait for each other.
* The thread-count rule, `threads_for`: a pass is split only when every
  thread gets at least MIN_ROWS rows and MIN_WORK multiply-adds (rows x
  parameters). Measured with bench/bench_train.py on the 2-core machine
  (2 threads against 1): 784-128-64-10 at batch 32, 3.5 million
  multiply-adds a step, ran 0.91x (slower: the split's copies and
  synchronisation cost more than the half it saves), at batch 128 (14
  million) 1.17x; 784-512-256-10 at batch 32 (17 million) 1.37x. So a
  thread needs 2^22 (4.2 million) of them, and a gemm of fewer than 4 rows
  runs far below its peak. A step under cmlp._feature_split pays from less
  (its FEATURE_MIN_WORK, 2^20; threads_for_work takes a split's own bar):
  784-128-64-10 at batch 32 ran 1.30x there, 784-64-10 at batch 64 (3.3
  million) 1.24x, 784-32-10 at batch 128 (3.3 million) 1.23x, while
  64-256-256-10 at batch 32 (2.7 million, split by columns) ran 0.85x.
* The task-size rule, `task_rows_for`, for the row passes of
  cmlp._entry: CHUNK rows a task, fewer (not below MIN_TASK_ROWS) where
  that would exceed 2^TASK_WORK_LOG2 multiply-adds. A caller looks for Ctrl-C
  between rounds of tasks, so this bounds how long a signal waits.
"""

cdef extern from "_pool.h" nogil:
    ctypedef void (*cmlp_task_fn)(void* ctx, Py_ssize_t task, int worker) noexcept nogil
    void cmlp_pool_run(cmlp_task_fn fn, void* ctx, Py_ssize_t n_tasks, int threads)
    void cmlp_pool_run_owned(cmlp_task_fn fn, void* ctx, Py_ssize_t n_tasks, int threads)
    int cmlp_pool_helpers()
    void cmlp_pool_stats(long* shared, long* solo)
    void cmlp_pool_forget_stragglers()
    int CMLP_POOL_MAX_THREADS

cdef enum:
    MIN_ROWS = 4
    MIN_WORK = 1 << 22
    CHUNK = 1024
    # 2^31 multiply-adds: ~50 ms of float32 on a core (784-2048-2048-10 at
    # 88 GFLOP/s, 368 rows). Its 1024-row tasks took 0.13 s (0.4 s in the
    # sanitizer build), and Ctrl-C, waiting for a round of two tasks a
    # thread, came 1.03-1.12 s after the signal there.
    TASK_WORK_LOG2 = 31
    MIN_TASK_ROWS = 64

MAX_THREADS = CMLP_POOL_MAX_THREADS


cdef void pool_run(task_fn fn, void* ctx, Py_ssize_t n_tasks, int threads) noexcept nogil:
    cmlp_pool_run(<cmlp_task_fn> fn, ctx, n_tasks, threads)


cdef void pool_run_owned(task_fn fn, void* ctx, Py_ssize_t n_tasks,
                         int threads) noexcept nogil:
    cmlp_pool_run_owned(<cmlp_task_fn> fn, ctx, n_tasks, threads)


cdef int threads_for_work(int threads, Py_ssize_t rows, Py_ssize_t n_params,
                          Py_ssize_t min_work) noexcept nogil:
    cdef Py_ssize_t by_rows = rows // MIN_ROWS
    cdef Py_ssize_t by_work = rows * n_params // min_work
    cdef Py_ssize_t t = threads
    t = min(t, by_rows, by_work, CMLP_POOL_MAX_THREADS)
    return <int> max(t, 1)


cdef int threads_for(int threads, Py_ssize_t rows, Py_ssize_t n_params) noexcept nogil:
    return threads_for_work(threads, rows, n_params, MIN_WORK)


cdef Py_ssize_t task_rows_for(Py_ssize_t n, Py_ssize_t n_params) noexcept nogil:
    cdef Py_ssize_t rows = ((<Py_ssize_t> 1) << TASK_WORK_LOG2) // max(n_params, 1)
    return min(n, max(MIN_TASK_ROWS, min(CHUNK, rows)))


def task_rows(Py_ssize_t n, Py_ssize_t n_params):
    """Rows a task of a row pass over `n` rows of an `n_params`-parameter
    network gets (the task-size rule in this module's docstring)."""
    if n < 0 or n_params < 0:
        raise ValueError(f"n and n_params must be >= 0, got {n} and {n_params}")
    return task_rows_for(n, n_params)


def effective_threads(int threads, Py_ssize_t rows, Py_ssize_t n_params, min_work=None):
    """The threads a pass of `rows` rows of an `n_params`-parameter network
    uses when `threads` are allowed (the rule in this module's docstring);
    `min_work`: a split's own bar of multiply-adds a thread (default
    MIN_WORK; cmlp._feature_split has a lower one)."""
    if min_work is not None and min_work < 1:
        raise ValueError(f"min_work must be at least 1, got {min_work}")
    return threads_for_work(threads, rows, n_params, MIN_WORK if min_work is None else min_work)


def stats():
    """(jobs run on several threads, jobs run on the caller alone because
    helpers straggled) in this process so far: how busy the machine was."""
    cdef long shared, solo
    cmlp_pool_stats(&shared, &solo)
    return shared, solo


def _forget_stragglers():
    """Forget the busy-machine rule's history, as at start (for tests): the
    next jobs run on several threads unless they straggle themselves, not
    because an earlier test's jobs did."""
    cmlp_pool_forget_stragglers()


def helper_threads():
    """Helper threads the pool has created in this process (for tests)."""
    return cmlp_pool_helpers()


cdef struct _SquareJob:
    double* values
    Py_ssize_t n


cdef void _square_task(void* ctx, Py_ssize_t task, int worker) noexcept nogil:
    cdef _SquareJob* job = <_SquareJob*> ctx
    job.values[task] = job.values[task] * job.values[task]


cdef struct _CountJob:
    int* counts


cdef void _count_task(void* ctx, Py_ssize_t task, int worker) noexcept nogil:
    cdef _CountJob* job = <_CountJob*> ctx
    job.counts[task] += 1


def _stress(Py_ssize_t jobs, int max_threads):
    """Run `jobs` jobs back to back without the GIL, each of a different
    size (1 to 40 tasks) and thread count (2 to max_threads), every third
    one owned (pool_run_owned); returns the number of jobs in which some
    task did not run exactly once (0)."""
    cdef int counts[40]
    cdef _CountJob job
    cdef Py_ssize_t j, t, n
    cdef int threads
    cdef long bad = 0
    job.counts = counts
    with nogil:
        for j in range(jobs):
            n = 1 + (j * 7919) % 40
            threads = 2 + <int> ((j * 104729) % (max_threads - 1))
            for t in range(n):
                counts[t] = 0
            if j % 3 == 2:
                pool_run_owned(_count_task, &job, n, threads)
            else:
                pool_run(_count_task, &job, n, threads)
            for t in range(n):
                if counts[t] != 1:
                    bad += 1
                    break
    return bad


def _square_in_pool(double[::1] values, int threads):
    """values[i] **= 2, one task per value, on `threads` threads (a test of
    the pool alone)."""
    cdef _SquareJob job
    job.values = &values[0] if values.shape[0] else NULL
    job.n = values.shape[0]
    with nogil:
        pool_run(_square_task, &job, job.n, threads)
