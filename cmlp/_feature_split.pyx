"""A training step over threads whose first layer is split by input
features: each thread keeps its rows of W1 in its own core's cache.

Design
------
* cmlp._data_parallel's split by rows has every thread read all of W1 each
  step, after the other threads wrote their rows of it in the last step's
  update: those rows travel from core to core every step. For 784-128-64-10
  at batch 128 on 2 threads, OpenBLAS's packing of W1 (sgemm_itcopy) took
  4x its one-thread time (perf), and the split gained 1.30x. (Splitting W1
  by columns instead, with the smaller layers run by every thread, moved
  less but ran 1.05x: two gathers of the whole batch, three barriers.)
* Here task t owns input features [f0, f1) of the first layer, that is rows
  [f0, f1) of W1, for the whole run (cmlp._pool's owned jobs give task t to
  thread t):
  - phase A: task t gathers columns [f0, f1) of the batch's rows and
    computes its partial pre-activations P_t = X[:, f0:f1] @ W1[f0:f1, :]
    (+ b1 for t = 0) for all rows (each thread packs half of W1 and half of X: together,
    what one thread packs);
  - phase B, by rows as cmlp._data_parallel's shares (or, by the rule of
    cmlp._unit_split, by the units of hidden layer 1): z1 = P_0 + P_1 + ...
    (in task order) for the share's rows, then the rest of the forward
    pass and the deltas of every layer for them. A share has at least
    PHASE_B_MIN_ROWS rows, so a small batch has fewer shares than threads
    (one share: the caller runs it alone). Each share's gemms pack all of
    W2, read from the core that stepped it: on 16-32 rows that costs more
    than a second thread saves. One share against two, interleaved in one
    process (2 threads, 5-9 rounds): 784-128-64-10 1.03-1.05x as fast at
    batch 32, 1.03x at 64, 0.92-1.04x at 128; 784-512-256-10 1.07x at 32,
    1.04x at 64, 0.91x at 128, 0.83x at 512;
  - phase 2: task t's dW1[f0:f1, :] = X[:, f0:f1]^T @ dz1 over all rows,
    and the step on those rows of W1 (task 0: b1 too), then the other
    layers' blocks as cmlp._data_parallel's phase 2.
  What crosses between cores is activation-sized (the partial sums of the
  other task's rows, dz1), never W1.
* Phase 2 of one step and phase A of the next run as one job when the next
  batch has as many rows: task t steps its rows of W1, then computes P_t of
  the next batch from them. Two jobs a step instead of three (one, where
  phase B is one share run by the caller), and the other
  layers' blocks (claimed by whichever thread is free) absorb the
  difference between the threads' phase A.
* Bits depend on the task count (the order of z1's partial sums) and the
  share count (each share's sum of the loss), both set by the thread
  count and the batch's rows, never on the schedule.
* The rule (by_features): the first layer holds at least FIRST_SHARE
  times the weights of all the others. Such a step splits from
  FEATURE_MIN_WORK multiply-adds a thread (cmlp._pool's rule for the other
  splits asks 4x more): each thread's gemms keep all the batch's rows, so
  they stay as fast as one thread's (measured: cmlp/_pool.pyx).
"""
from cython cimport floating
from libc.stdlib cimport free
from libc.string cimport memcpy, memset

from cmlp._data_parallel cimport (SplitStep, n_weight_blocks, share_pass, share_rows, step_range,
                                  weight_block)
from cmlp._engine cimport Layout
from cmlp._kernels cimport bias_gradient, linear_forward, weight_gradient_rows
from cmlp._pool cimport pool_run_owned
from cmlp._unit_split cimport by_units, sum_partials, unit_forward, unit_weight_gradients

cdef extern from "stdlib.h" nogil:
    int posix_memalign(void** memptr, size_t alignment, size_t size)

cdef enum:
    FIRST_SHARE = 2
    ALIGN = 128
    PHASE_B_MIN_ROWS = 64

cdef bint _fuse_phase_a = True


def fuse_phase_a(enabled=None):
    """Whether phase 2 of a step runs phase A of the next batch in the same
    job (the default); set with `enabled`. Returns the previous setting.
    For tests and benchmarks: the bits are the same either way."""
    global _fuse_phase_a
    previous = bool(_fuse_phase_a)
    if enabled is not None:
        _fuse_phase_a = bool(enabled)
    return previous


cdef bint by_features(const Layout* layout, int threads) noexcept nogil:
    cdef Py_ssize_t l, rest = 0
    for l in range(1, layout.n_layers):
        rest += layout.sizes[l] * layout.sizes[l + 1]
    return (layout.n_layers > 1 and layout.sizes[0] >= 8 * threads
            and rest * FIRST_SHARE <= layout.sizes[0] * layout.sizes[1])


def splits_by_features(sizes, int threads):
    """Whether a network of these layer widths trains on `threads` threads
    with its first layer split by input features (cmlp._feature_split)."""
    cdef Py_ssize_t l, rest = 0
    sizes = [int(n) for n in sizes]
    for l in range(1, len(sizes) - 1):
        rest += sizes[l] * sizes[l + 1]
    return (len(sizes) > 2 and sizes[0] >= 8 * threads
            and rest * FIRST_SHARE <= sizes[0] * sizes[1])


cdef inline Py_ssize_t phase_b_shares(int threads, Py_ssize_t m) noexcept nogil:
    return max(1, min(threads, m // PHASE_B_MIN_ROWS))


def phase_b_shares_for(int threads, Py_ssize_t m):
    """How many shares phase B of a feature-split step of m rows on
    `threads` threads is cut into (each of PHASE_B_MIN_ROWS rows at least)."""
    return phase_b_shares(threads, m)


cdef inline Py_ssize_t _aligned(Py_ssize_t n, Py_ssize_t item) noexcept nogil:
    return (n * item + ALIGN - 1) // ALIGN * ALIGN // item


cdef int feature_split_allocate(SplitStep* s, int copies, Py_ssize_t batch) except -1:
    cdef const Layout* layout = s.layout
    cdef Py_ssize_t item = sizeof(float) if s.single else sizeof(double)
    cdef Py_ssize_t widest = (layout.sizes[0] + copies - 1) // copies
    cdef Py_ssize_t x = _aligned(batch * widest, item)
    cdef Py_ssize_t partial = _aligned(batch * layout.sizes[1], item)
    cdef Py_ssize_t width2 = layout.sizes[2] if layout.n_layers > 2 else 0
    cdef Py_ssize_t zeros = max(layout.sizes[1], width2)
    cdef void* memory = NULL
    s.partial_at, s.partial2_at = x, x + partial
    s.copy_stride = x + partial + _aligned(batch * width2, item)
    # The blocks, then a zero bias for the partial sums of tasks t > 0.
    if posix_memalign(&memory, ALIGN, (copies * s.copy_stride + zeros) * item) != 0:
        raise MemoryError(f"the feature split's {copies} blocks of a batch")
    memset(<char*> memory + copies * s.copy_stride * item, 0, zeros * item)
    s.copies, s.n_copies = memory, copies
    s.phase_a_next = s.phase_a_done = NULL
    return 0


cdef void feature_split_free(SplitStep* s) noexcept nogil:
    free(s.copies)
    s.copies, s.n_copies = NULL, 0


cdef inline floating* _copy(const SplitStep* s, Py_ssize_t t, floating* dtype_) noexcept nogil:
    return <floating*> s.copies + t * s.copy_stride


cdef inline void _features(const SplitStep* s, Py_ssize_t t, Py_ssize_t* f0,
                           Py_ssize_t* f1) noexcept nogil:
    f0[0] = t * s.d // s.feature_blocks
    f1[0] = (t + 1) * s.d // s.feature_blocks


cdef inline void _phase_a(SplitStep* s, Py_ssize_t t, const Py_ssize_t* order,
                          floating* dtype_) noexcept nogil:
    # Features [f0, f1) of the m rows `order` into block t, and P_t (task 0's
    # with b1 in it). linear_forward, not one gemm: on a few rows it takes
    # OpenBLAS's small-matrix kernel, where one gemm packs its block of W1
    # (at batch 32, sgemm_itcopy took a third of the split's time, perf).
    cdef Py_ssize_t i, f0, f1, d = s.d, n1 = s.layout.sizes[1]
    cdef const floating* X = <const floating*> s.X
    cdef floating* x_t = _copy(s, t, dtype_)
    cdef const floating* W1 = <const floating*> s.params + s.layout.w_offsets[0]
    cdef const floating* bias = (<const floating*> s.params + s.layout.b_offsets[0] if t == 0
                                 else _copy(s, s.n_copies, dtype_))   # the zero bias
    _features(s, t, &f0, &f1)
    for i in range(s.m):
        memcpy(x_t + i * (f1 - f0), X + order[i] * d + f0, (f1 - f0) * sizeof(floating))
    linear_forward(x_t + s.partial_at, x_t, W1 + f0 * n1, bias, s.m, f1 - f0, n1)


cdef void _phase_a_task(void* ctx, Py_ssize_t t, int worker) noexcept nogil:
    cdef SplitStep* s = <SplitStep*> ctx
    if s.single:
        _phase_a(s, t, s.order, <float*> NULL)
    else:
        _phase_a(s, t, s.order, <double*> NULL)


cdef inline void _phase_b(SplitStep* s, Py_ssize_t p, floating* dtype_) noexcept nogil:
    # Share p's rows: z1 = the partial sums in task order (P_0 holds b1),
    # into layer 1's slot where the whole batch's would be; then the rest of
    # the share as cmlp._data_parallel runs it.
    cdef Py_ssize_t r0, rows, n1 = s.layout.sizes[1]
    share_rows(s, p, &r0, &rows)
    sum_partials(s, s.partial_at, 0, n1, r0, r0 + rows, 0, n1, dtype_)   # layer 1's slot first
    share_pass(s, p, 1)


cdef void _phase_b_task(void* ctx, Py_ssize_t p, int worker) noexcept nogil:
    cdef SplitStep* s = <SplitStep*> ctx
    if s.single:
        _phase_b(s, p, <float*> NULL)
    else:
        _phase_b(s, p, <double*> NULL)


cdef double feature_split_forward_backward(SplitStep* s, int threads,
                                           Py_ssize_t* hits) noexcept nogil:
    cdef Py_ssize_t p
    cdef double loss = 0
    s.feature_blocks = threads
    if s.phase_a_done != s.order:
        pool_run_owned(_phase_a_task, s, threads, threads)
    s.phase_a_done = NULL
    s.shares = phase_b_shares(threads, s.m)
    s.by_units = by_units(s.layout, threads, s.m)
    if s.by_units:
        unit_forward(s, threads)
    elif s.shares == 1:
        _phase_b_task(s, 0, 0)          # the caller is worker 0
    else:
        pool_run_owned(_phase_b_task, s, s.shares, threads)
    hits[0] = 0
    for p in range(s.shares):
        loss += s.loss[p]
        hits[0] += s.hits[p]
    return loss


cdef inline void _first_layer_rows(SplitStep* s, Py_ssize_t t, floating* dtype_) noexcept nogil:
    # Rows [f0, f1) of dW1 from block t's features over all rows (task 0: db1
    # too), or with a fused SGD step the step itself on those rows.
    cdef const Layout* layout = s.layout
    cdef Py_ssize_t f0, f1, n1 = layout.sizes[1]
    cdef bint fused = s.step_now and s.fused_sgd
    cdef floating* target = <floating*> (s.params if fused else s.grads)
    cdef floating alpha = -<floating> s.lr if fused else 1
    cdef const floating* dz1 = <const floating*> s.deltas     # layer 1's region comes first
    cdef Py_ssize_t w0 = layout.w_offsets[0], b0 = layout.b_offsets[0]
    _features(s, t, &f0, &f1)
    weight_gradient_rows(target + w0 + f0 * n1, dz1, _copy(s, t, dtype_), alpha,
                         1 if fused else 0, s.m, f1 - f0, n1, n1, f1 - f0)
    if t == 0:
        bias_gradient(target + b0, dz1, alpha, 1 if fused else 0, s.m, n1, n1)
    if s.step_now and not fused:
        step_range(s, w0 + f0 * n1, w0 + f1 * n1)
        if t == 0:
            step_range(s, b0, b0 + n1)
    if s.step_now and s.phase_a_next != NULL:
        # Phase A of the next batch reads only these rows of W1 (and b1),
        # just stepped: one job (and one wait) a step less. The copies are
        # scratch, so a run that stops before that batch just drops it.
        _phase_a(s, t, s.phase_a_next, dtype_)


cdef void _phase_2_task(void* ctx, Py_ssize_t j, int worker) noexcept nogil:
    cdef SplitStep* s = <SplitStep*> ctx
    if j >= s.feature_blocks:
        weight_block(s, j - s.feature_blocks, 1, s.work, s.deltas, NULL)   # not by_units
    elif s.single:
        _first_layer_rows(s, j, <float*> NULL)
    else:
        _first_layer_rows(s, j, <double*> NULL)


cdef void feature_split_weight_gradients(SplitStep* s, int threads, bint step,
                                         const Py_ssize_t* next_order) noexcept nogil:
    s.step_now, s.threads = step, threads
    s.phase_a_next = next_order if step and _fuse_phase_a else NULL
    if s.by_units:
        # dz1, which the rows of W1 need whole, and the other layers first.
        unit_weight_gradients(s, threads)
    pool_run_owned(_phase_2_task, s,
                   s.feature_blocks + (0 if s.by_units else n_weight_blocks(s, 1)), threads)
    s.phase_a_done, s.phase_a_next = s.phase_a_next, NULL


MIN_WORK = FEATURE_MIN_WORK
