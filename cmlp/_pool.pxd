# cmlp's worker threads (see _pool.pyx and _pool.h).

# A task: fn(ctx, task, worker). It must compute the same thing whichever
# worker (0 = the caller, 1.. = helpers) runs it; worker picks scratch only.
ctypedef void (*task_fn)(void* ctx, Py_ssize_t task, int worker) noexcept nogil

# Run fn for every task in [0, n_tasks) on up to `threads` threads, the
# caller included; returns when all have finished.
cdef void pool_run(task_fn fn, void* ctx, Py_ssize_t n_tasks, int threads) noexcept nogil

# pool_run, but task w runs on worker w when that worker comes for it first
# (else on whoever is free): a task that works on the same data every phase
# finds it in its core's cache. At most 16 tasks (more: as pool_run).
cdef void pool_run_owned(task_fn fn, void* ctx, Py_ssize_t n_tasks, int threads) noexcept nogil

# How many threads a pass of `rows` rows through a network of `n_params`
# parameters uses when `threads` are allowed (the rule: _pool.pyx).
cdef int threads_for(int threads, Py_ssize_t rows, Py_ssize_t n_params) noexcept nogil
# The same rule with a split's own bar of multiply-adds a thread (min_work).
cdef int threads_for_work(int threads, Py_ssize_t rows, Py_ssize_t n_params,
                          Py_ssize_t min_work) noexcept nogil
# Rows a task of a row pass over n rows gets (the rule: _pool.pyx).
cdef Py_ssize_t task_rows_for(Py_ssize_t n, Py_ssize_t n_params) noexcept nogil
