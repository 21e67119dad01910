"""The engine's def entry points over whole arrays: forward, evaluate, gradients.

Design
------
* Rows are processed in tasks of at most 1024 rows (big enough for
  efficient GEMMs, small enough that the scratch stays in cache; fewer for
  a big network, cmlp._pool.task_rows_for), on up to
  `threads` threads (cmlp._pool): each worker has its own scratch, and each
  task writes only its own rows of the output (forward) or its own partial
  sums (evaluate, added in task order). evaluate's task size depends on
  the network and n only, so its sums do not depend on the thread count.
* Every entry point allocates its own scratch per call (malloc) and touches
  no shared mutable state, so threads may share one network. While cmlp's
  threads run (or threads= was given) BLAS runs one thread per call
  (cmlp._blas.serial_blas_enter); a call too small to split at all keeps
  the one-thread path it always had, without resolving the default.
* `forward` checks its input for NaN/inf in C before computing: the check is
  part of the Python boundary, done here only because a NumPy isfinite pass
  costs more than the whole one-sample forward it guards. It also checks its
  outputs: with finite inputs and parameters (the Network guarantees both)
  a NaN/inf output means the dtype overflowed, which the caller must hear
  about rather than get a confident wrong class.
* Calls below GIL_RELEASE_WORK multiply-adds keep the GIL and run on the
  calling thread: handing the GIL over and back costs more than they do.
* Between rounds of tasks (and chunks) the caller runs check_signals:
  Ctrl-C raises KeyboardInterrupt within ~0.1 s plus one round.
* Reachable from Python, so each checks in O(1) (labels: O(n)) that its
  buffers fit the layout (NetLayout): a wrong call is a ValueError.
"""
import numpy as np

cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from cmlp._blas cimport serial_blas_enter, serial_blas_leave
from cmlp._engine cimport (Layout, NetLayout, all_finite, backward_pass, check_signals,
                           forward_pass, monotonic_seconds, require, work_per_row)
from cmlp._fork_gate cimport gate_enter, gate_leave
from cmlp._kernels cimport OUT_EXP, OUT_SIGMOID, OUT_SOFTMAX, exp_forward, sigmoid_forward
from cmlp._losses cimport (mse_loss, poisson_loss, sigmoid_bce_loss, softmax_forward,
                           softmax_xent_loss)
from cmlp._panel_gemm cimport cmlp_free_layers, cmlp_pack_layers, cmlp_panel_gemm_available
from cmlp._pool cimport pool_run, task_rows_for, threads_for
from cmlp._sparse cimport CsrMatrix, CsrRows

from cmlp._threads import default_threads

# NumPy's C API, for forward_array: checking an input and allocating the
# output through it costs nanoseconds, against ~1 us for typed memoryviews
# and np.empty on a one-row call.
cnp.import_array()

cdef enum:
    # Multiply-adds below which forward keeps the GIL (~50 us of work).
    GIL_RELEASE_WORK = 1 << 19
    # Tasks per round between two looks for signals: two a thread, so
    # that Ctrl-C waits for about two tasks at most.
    TASKS_PER_THREAD = 2
    MAX_WORKERS = 64
    ROUND = TASKS_PER_THREAD * MAX_WORKERS
    # Rows from which a dense float32 call packs its weights for
    # cmlp/_panel_gemm.h: 784-128-64-10 predict_proba at 64 rows ran 1.21x
    # faster than through BLAS (packing included), at 32 rows 1.01x.
    PANEL_MIN_ROWS = 64
    # Each worker holds a packed copy of W: networks above 2^24 parameters
    # (64 MB of float32) stay with BLAS rather than copy that per thread.
    PANEL_MAX_PARAMS = 1 << 24

# Tests turn the packed product off to compare it with BLAS (use_panels).
cdef bint panels_enabled = True


def use_panels(enabled=None):
    """Whether batched float32 inference uses cmlp's packed AVX-512 product
    (cmlp/_panel_gemm.h) where the CPU has it; with an argument, set it and
    return the previous value (for tests and benchmarks)."""
    global panels_enabled
    before = bool(panels_enabled and cmlp_panel_gemm_available())
    if enabled is not None:
        panels_enabled = bool(enabled)
    return before


# One round of tasks: rows [start, start + n) of the call, in tasks of
# task_rows; void* so one struct serves float and double (single).
cdef struct _Rows:
    const Layout* layout
    bint single
    const void* params
    const void* X                   # IN (n_all, d), or NULL for sparse
    const CsrRows* sparse           # IN, or NULL
    void* out                       # OUT (n_all, k) for forward, else NULL
    const int32_t* labels           # IN for evaluate (softmax), else NULL
    const void* targets             # IN for evaluate (others), else NULL
    const void* weights             # IN for evaluate, or NULL
    void* scratch[MAX_WORKERS]      # per worker (task_rows, work_per_row)
    bint use_panels                 # float32 dense: W packed for cmlp/_panel_gemm.h
    float** panels[MAX_WORKERS]     # per worker, packed by its first task (or NULL: BLAS)
    Py_ssize_t start, n, task_rows
    int status[ROUND]               # OUT forward: 1 done, 0 NaN/inf in X, 2 overflow
    double loss[ROUND]              # OUT evaluate: weighted loss sums
    Py_ssize_t hits[ROUND]          # OUT evaluate


cdef inline void _task_rows(const _Rows* job, Py_ssize_t t, Py_ssize_t* first,
                            Py_ssize_t* rows, CsrRows* sparse) noexcept nogil:
    first[0] = job.start + t * job.task_rows
    rows[0] = min(job.task_rows, job.start + job.n - first[0])
    if job.sparse != NULL:
        sparse[0] = job.sparse[0]
        sparse.first += first[0]


cdef inline void _forward_task_typed(_Rows* job, Py_ssize_t t, int worker,
                                     floating* dtype_) noexcept nogil:
    cdef const Layout* layout = job.layout
    cdef Py_ssize_t first, m, d = layout.sizes[0], k = layout.sizes[layout.n_layers]
    cdef CsrRows rows
    cdef bint first_finite
    cdef const floating* X = <const floating*> job.X
    cdef floating* out
    cdef floating* raw
    _task_rows(job, t, &first, &m, &rows)
    out = <floating*> job.out + first * k
    # X is checked through layer 1's output (see forward_pass), which is in
    # cache and a sixth of X's size on MNIST: scanning X itself cost 5 % of
    # a 2048-row call. Only a bad task is scanned, to tell a NaN/inf in X
    # from an overflow in layer 1 (sparse values were checked at the boundary).
    raw = forward_pass(<floating*> job.scratch[worker], <const floating*> job.params, layout,
                       X + first * d if X != NULL else NULL, m, False, 0, 0, &first_finite,
                       False, &rows if job.sparse != NULL else NULL, 0, 0,
                       _worker_panels(job, worker))
    if not first_finite:
        job.status[t] = 0 if X != NULL and not all_finite(X + first * d, m * d) else 2
        return
    if layout.output == OUT_SOFTMAX:
        softmax_forward(out, raw, m, k)
    elif layout.output == OUT_SIGMOID:
        sigmoid_forward(out, raw, m * k)
    elif layout.output == OUT_EXP:
        exp_forward(out, raw, m * k)
    else:
        memcpy(out, raw, m * k * sizeof(floating))
    # With finite inputs and parameters only an overflow gets here; the
    # activations carry NaN on, so it cannot be silently rounded away.
    job.status[t] = 1 if all_finite(out, m * k) else 2


cdef void _forward_task(void* ctx, Py_ssize_t t, int worker) noexcept nogil:
    cdef _Rows* job = <_Rows*> ctx
    if job.single:
        _forward_task_typed(job, t, worker, <float*> NULL)
    else:
        _forward_task_typed(job, t, worker, <double*> NULL)


cdef double _loss_sum(const Layout* layout, const floating* raw, const int32_t* labels,
                      const floating* targets, const floating* weights, Py_ssize_t m,
                      Py_ssize_t* hits) noexcept nogil:
    cdef Py_ssize_t k = layout.sizes[layout.n_layers]
    if layout.output == OUT_SOFTMAX:
        return softmax_xent_loss(raw, labels, weights, m, k, hits)
    if layout.output == OUT_SIGMOID:
        return sigmoid_bce_loss(raw, targets, weights, m, k, hits)
    hits[0] = 0
    if layout.output == OUT_EXP:
        return poisson_loss(raw, targets, weights, m, k)
    return mse_loss(raw, targets, weights, m, k)


cdef inline void _evaluate_task_typed(_Rows* job, Py_ssize_t t, int worker,
                                      floating* dtype_) noexcept nogil:
    cdef const Layout* layout = job.layout
    cdef Py_ssize_t first, m, d = layout.sizes[0], k = layout.sizes[layout.n_layers]
    cdef CsrRows rows
    cdef const floating* X = <const floating*> job.X
    cdef const floating* targets = <const floating*> job.targets
    cdef const floating* weights = <const floating*> job.weights
    cdef floating* raw
    _task_rows(job, t, &first, &m, &rows)
    raw = forward_pass(<floating*> job.scratch[worker], <const floating*> job.params, layout,
                       X + first * d if X != NULL else NULL, m, False, 0, 0, NULL, False,
                       &rows if job.sparse != NULL else NULL, 0, 0,
                       _worker_panels(job, worker))
    job.loss[t] = _loss_sum(layout, raw, job.labels + first if job.labels != NULL else NULL,
                            targets + first * k if targets != NULL else NULL,
                            weights + first if weights != NULL else NULL, m, &job.hits[t])


cdef void _evaluate_task(void* ctx, Py_ssize_t t, int worker) noexcept nogil:
    cdef _Rows* job = <_Rows*> ctx
    if job.single:
        _evaluate_task_typed(job, t, worker, <float*> NULL)
    else:
        _evaluate_task_typed(job, t, worker, <double*> NULL)


cdef int _run_rows(_Rows* job, Py_ssize_t n_all, int threads, bint evaluating,
                   double* loss, Py_ssize_t* correct) except -1 nogil:
    # Rounds of tasks over all n_all rows. forward: 1 when done, else the
    # status of the first bad task (its rows and later ones may be
    # unwritten); evaluate: 1, with the sums in *loss, *correct.
    cdef Py_ssize_t t, n_tasks, per_round = TASKS_PER_THREAD * threads * job.task_rows
    cdef double last_check = monotonic_seconds()
    job.start = 0
    while job.start < n_all:
        if job.start > 0:
            check_signals(&last_check)
        job.n = min(per_round, n_all - job.start)
        n_tasks = (job.n + job.task_rows - 1) // job.task_rows
        gate_enter()                      # one fork-gate section a round
        pool_run(_evaluate_task if evaluating else _forward_task, job, n_tasks, threads)
        gate_leave()
        for t in range(n_tasks):
            if evaluating:
                loss[0] += job.loss[t]
                correct[0] += job.hits[t]
            elif job.status[t] != 1:
                return job.status[t]
        job.start += job.n
    return 1


cdef int _resolve_threads(object threads) except -1:
    return default_threads() if threads is None else threads


cdef inline float** _worker_panels(_Rows* job, int worker) noexcept nogil:
    # Each worker packs its own copy on its first task: packing reads W,
    # which every core may cache, where a copy packed by the caller would
    # travel to the other cores on every call. NULL (out of memory): BLAS.
    if job.use_panels and job.panels[worker] == NULL:
        job.panels[worker] = cmlp_pack_layers(job.layout.n_layers, job.layout.sizes,
                                              job.layout.w_offsets, <const float*> job.params)
    return job.panels[worker]


cdef int _call_rows(_Rows* job, NetLayout layout, Py_ssize_t n, object threads,
                    size_t itemsize, bint evaluating, double* loss,
                    Py_ssize_t* correct) except -1:
    # Split n rows over the threads, give each worker scratch, run, free.
    cdef int t_count = 1, w, status
    cdef bint release = n * layout.c.n_params >= GIL_RELEASE_WORK
    cdef bint serial_blas
    # The default is resolved (a syscall and a lock) only for a call that
    # could be split at all: a few rows keep the one-thread path of before.
    if release and threads_for(MAX_WORKERS, n, layout.c.n_params) > 1:
        t_count = threads_for(_resolve_threads(threads), n, layout.c.n_params)
    # BLAS one thread a call while cmlp's threads run, or when the caller
    # asked for threads=1; else, as before threads=, OpenBLAS's own choice.
    serial_blas = t_count > 1 or threads is not None
    job.layout = &layout.c
    # evaluate: the same task size whatever the threads (the same sums).
    job.task_rows = task_rows_for(n, layout.c.n_params)
    if not evaluating:
        job.task_rows = min(job.task_rows, (n + t_count - 1) // t_count)
    t_count = min(t_count, (n + job.task_rows - 1) // job.task_rows)
    for w in range(t_count):
        job.scratch[w] = NULL
        job.panels[w] = NULL
    # Dense float32 calls of PANEL_MIN_ROWS rows or more multiply by W
    # packed once per worker (cmlp/_panel_gemm.h); the rest use BLAS. Not a
    # function of the thread count: evaluate's sums stay the same for any.
    job.use_panels = (job.single and job.sparse == NULL and n >= PANEL_MIN_ROWS
                      and layout.c.n_params <= PANEL_MAX_PARAMS
                      and panels_enabled and cmlp_panel_gemm_available())
    try:
        for w in range(t_count):
            job.scratch[w] = malloc(job.task_rows * work_per_row(&layout.c) * itemsize)
            if job.scratch[w] == NULL:
                raise MemoryError()
        if not release:
            return _run_rows(job, n, 1, evaluating, loss, correct)
        with nogil:
            if serial_blas:
                serial_blas_enter()
            try:
                status = _run_rows(job, n, t_count, evaluating, loss, correct)
            finally:
                if serial_blas:
                    serial_blas_leave()
        return status
    finally:
        for w in range(t_count):
            free(job.scratch[w])
            cmlp_free_layers(job.panels[w])


cdef class _Input:
    """X as the passes read it: dense rows (x) or CSR rows (sparse)."""
    cdef const void* x
    cdef const CsrRows* sparse
    cdef Py_ssize_t n, d
    cdef object keep                # holds the buffer x points into


cdef _Input _input(object X, object dtype):
    # The one place an entry point's X is typed: a CsrMatrix of the
    # parameters' dtype, or a C-contiguous 2-D array of it.
    cdef _Input got = _Input.__new__(_Input)
    cdef CsrMatrix csr
    cdef const float[:, ::1] x32
    cdef const double[:, ::1] x64
    if isinstance(X, CsrMatrix):
        csr = <CsrMatrix> X
        require(csr.data.dtype == dtype, "X must have the parameters' dtype")
        got.sparse, got.x, got.n, got.d, got.keep = &csr.c, NULL, csr.n_rows, csr.n_cols, csr
        return got
    got.sparse = NULL
    if dtype == np.float32:
        x32 = X
        got.n, got.d, got.keep = x32.shape[0], x32.shape[1], x32
        got.x = &x32[0, 0] if got.n > 0 and got.d > 0 else NULL
    else:
        x64 = X
        got.n, got.d, got.keep = x64.shape[0], x64.shape[1], x64
        got.x = &x64[0, 0] if got.n > 0 and got.d > 0 else NULL
    return got


def forward(const floating[::1] params, NetLayout layout,
            object X,                     # IN  (n, sizes[0]): dense or CsrMatrix
            floating[:, ::1] out,         # OUT (n, sizes[L]): probabilities or raw
            object threads=None):         # None (cmlp._threads.default_threads) or >= 1
    """Network outputs for X into `out`. Returns 1 when done, 0 if X holds
    a NaN or an infinity, 2 if an output came out NaN or infinite (an
    overflow); rows from the first bad task on may then be unwritten.

    A call of at least GIL_RELEASE_WORK multiply-adds releases the GIL and
    splits its rows over up to `threads` threads (cmlp._pool.threads_for);
    a smaller one (one or a few rows) keeps the GIL and this thread.
    A signal (Ctrl-C) between rounds raises its exception.
    """
    cdef _Input x = _input(X, np.float32 if floating is float else np.float64)
    cdef _Rows job
    layout.check_call(params.shape[0], x.n, x.d)
    require(out.shape[0] == x.n and out.shape[1] == layout.c.sizes[layout.c.n_layers],
            "out must be (n, k)")
    job.single, job.params, job.X, job.sparse = floating is float, &params[0], x.x, x.sparse
    job.out = &out[0, 0]
    return _call_rows(&job, layout, x.n, threads, sizeof(floating), False, NULL, NULL)


def forward_array(cnp.ndarray params, NetLayout layout, object X, object threads=None):
    """Network.forward's fast path, with no buffer acquisition: X must
    already be a C-contiguous, aligned, native-order (n >= 1, sizes[0])
    array of the parameters' dtype (float32 or float64). Returns a new (n, k)
    output array, or None if X is anything else: the caller then validates
    and converts it and calls `forward`. Raises ValueError for a NaN or an
    infinity in X, or an overflow (see forward_error). `threads` as for
    `forward`."""
    cdef cnp.ndarray x, out
    cdef cnp.npy_intp dims[2]
    cdef int type_num = cnp.PyArray_TYPE(params), status
    cdef _Rows job
    require((type_num == cnp.NPY_FLOAT32 or type_num == cnp.NPY_FLOAT64)
            and cnp.PyArray_NDIM(params) == 1 and cnp.PyArray_ISCARRAY_RO(params)
            and cnp.PyArray_ISNOTSWAPPED(params),
            "params must be a C-contiguous, aligned float32 or float64 vector")
    if type(X) is not cnp.ndarray:
        return None
    x = <cnp.ndarray> X
    if (cnp.PyArray_TYPE(x) != type_num or cnp.PyArray_NDIM(x) != 2
            or not cnp.PyArray_ISCARRAY_RO(x) or not cnp.PyArray_ISNOTSWAPPED(x)
            or x.shape[0] < 1 or x.shape[1] != layout.c.sizes[0]):
        return None
    layout.check_call(cnp.PyArray_SIZE(params), x.shape[0], x.shape[1])
    dims[0] = x.shape[0]
    dims[1] = layout.c.sizes[layout.c.n_layers]
    out = cnp.PyArray_EMPTY(2, dims, type_num, 0)
    job.single, job.params, job.X = type_num == cnp.NPY_FLOAT32, cnp.PyArray_DATA(params), \
        cnp.PyArray_DATA(x)
    job.sparse, job.out = NULL, cnp.PyArray_DATA(out)
    status = _call_rows(&job, layout, x.shape[0], threads, cnp.PyArray_ITEMSIZE(params), False,
                        NULL, NULL)
    if status != 1:
        raise forward_error(status, params.dtype.name)
    return out


def forward_error(int status, str dtype_name):
    """The ValueError for forward's status 0 (NaN/inf in X) or 2 (overflow)."""
    if status == 0:
        return ValueError("X contains NaN or infinite values")
    remedy = "scale the inputs, or use float64" if dtype_name == "float32" else "scale the inputs"
    return ValueError(f"the forward pass overflowed {dtype_name}: an output is NaN or "
                      f"infinite (inputs or weights too large for {dtype_name}; {remedy})")


# The unused one of labels/targets (and absent weights) is passed empty;
# its pointer is NULL.
cdef inline const int32_t* _labels_ptr(const int32_t[::1] labels):
    return &labels[0] if labels.shape[0] > 0 else NULL


cdef inline const floating* _targets_ptr(const floating[:, ::1] targets):
    return &targets[0, 0] if targets.shape[0] > 0 else NULL


cdef inline const floating* _weights_ptr(const floating[::1] weights):
    return &weights[0] if weights.shape[0] > 0 else NULL


def evaluate(const floating[::1] params, NetLayout layout,
             object X,                          # IN (n, sizes[0]): dense or CsrMatrix
             const int32_t[::1] labels,         # IN (n) for softmax, else (0)
             const floating[:, ::1] targets,    # IN (n, k) for identity/sigmoid, else (0, k)
             const floating[::1] weights,       # IN (n) sample weights, or (0)
             object threads=None):              # as for forward
    """Return (weighted loss sum, number of rows predicted right) over X,
    the same bits for any thread count. A signal (Ctrl-C) between rounds
    raises its exception."""
    cdef _Input x = _input(X, np.float32 if floating is float else np.float64)
    cdef _Rows job
    cdef double loss = 0
    cdef Py_ssize_t correct = 0
    layout.check_call(params.shape[0], x.n, x.d)
    layout.check_data(x.n, labels, targets.shape[0], targets.shape[1], weights.shape[0])
    job.single, job.params, job.X, job.sparse = floating is float, &params[0], x.x, x.sparse
    job.out, job.labels = NULL, _labels_ptr(labels)
    job.targets, job.weights = _targets_ptr(targets), _weights_ptr(weights)
    _call_rows(&job, layout, x.n, threads, sizeof(floating), True, &loss, &correct)
    return loss, correct


def loss_and_gradients(const floating[::1] params, floating[::1] grads,
                       NetLayout layout,
                       object X,                        # IN (m, sizes[0]): dense or CsrMatrix
                       const int32_t[::1] labels,       # IN (m) or (0)
                       const floating[:, ::1] targets,  # IN (m, k) or (0, k)
                       const floating[::1] weights,     # IN (m) or (0)
                       floating[:, ::1] work,           # scratch (m, work_per_row)
                       bint train=False, unsigned long long dropout_key=0,
                       unsigned long long step=0):
    """Gradient of the (weighted) mean loss over all m rows of X into `grads`.

    With train, dropout is applied with the masks of training step `step`
    (as train_epoch would draw them); otherwise the pass is deterministic.
    Returns (weighted loss sum, number correct).
    """
    cdef _Input x = _input(X, np.float32 if floating is float else np.float64)
    cdef const floating* X0 = <const floating*> x.x
    cdef Py_ssize_t m = x.n, correct = 0
    cdef const int32_t* lab = _labels_ptr(labels)
    cdef const floating* tgt = _targets_ptr(targets)
    cdef const floating* w = _weights_ptr(weights)
    cdef double loss
    layout.check_call(params.shape[0], m, x.d)
    layout.check_data(m, labels, targets.shape[0], targets.shape[1], weights.shape[0])
    require(grads.shape[0] == params.shape[0], "grads must be like params")
    require(work.shape[0] >= m and work.shape[1] == work_per_row(&layout.c),
            "work must be (m, work_per_row)")
    with nogil:
        gate_enter()
        forward_pass(&work[0, 0], &params[0], &layout.c, X0, m, train, dropout_key, step,
                     NULL, False, x.sparse)
        # With a gradient buffer, backward_pass only reads params.
        loss = backward_pass(&grads[0], <floating*> &params[0], &work[0, 0], &layout.c,
                             X0, lab, tgt, w, m, train, 0, &correct, NULL, 1, x.sparse)
        gate_leave()
    return loss, correct
