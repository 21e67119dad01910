"""Phase B of a feature-split step (cmlp._feature_split) by the units of
hidden layer 1: each thread keeps its rows of W2 in its own core's cache.

Design
------
* Phase B by rows gives each thread a share of the batch's rows, and each
  share's gemms pack all of W2 twice (z2 = a1 @ W2, dz1 = dz2 @ W2^T) for
  its rows, reading the rows of W2 that the other thread stepped. On
  784-512-256-10 at batch 128, two such shares of 64 rows took 1.32x the
  time of one share of 128 rows on one thread (phase timers, 2 threads).
* Here task t owns units [u0, u1) of hidden layer 1 for the whole run: its
  columns of z1, a1 and dz1, and rows [u0, u1) of W2.
  - job 1 (owned): z1[:, u0:u1] = P_0 + P_1 + ... (phase A's partial sums,
    in task order, as phase B by rows adds them), its activation and
    dropout; then task t's part of z2, Z_t = a1[:, u0:u1] @ W2[u0:u1, :]
    (+ b2 for t = 0), into its own buffer;
  - job 2 (row shares of at least 64 rows, as phase B's): z2 = Z_0 + Z_1 +
    ... for the share's rows, then the rest of the forward pass and the
    deltas down to dz2 (share_pass with layers_done 2);
  - job 3, with the weight gradients (so after the loss is known finite):
    task t's dz1[:, u0:u1] = dz2 @ W2[u0:u1, :]^T times the activation's
    derivative (and dropout's mask), then the rows [u0, u1) of dW2 and
    their step: nothing reads those rows of W2 after that in the step. The
    blocks of the layers after layer 2 go to whichever thread is free.
  Then phase 2 runs the rows of W1 as before. What crosses between cores
  is activation-sized (the other tasks' partial sums of these units, Z_t,
  dz2), never W2; every gemm keeps all the batch's rows.
* Bits depend on the task count (the order of the sums of z1 and z2) and
  the share count, both set by the thread count and the batch's rows,
  never on the schedule. They differ from phase B by rows (z2 is summed
  over the tasks' units), as the thread count's choice of split does.
* The rule (by_units), measured against phase B by rows in one process
  (2 threads, 5-9 interleaved rounds, MNIST, float32): by units when W2
  has more than twice the rows of the batch (n1 > 2m: W2 outweighs the
  partial sums Z_t that cross instead), each task's part of W2's products
  is at least UNIT_MIN_WORK multiply-adds (a job more a step pays from
  there), and each task has UNIT_MIN_WIDTH units at least. 784-512-256-10
  ran 1.18x as fast by units at batch 32, 1.12x at 64, 1.05x at 128 (twice),
  0.995x at 256 and 0.95x at 512; 784-128-64-10 (W2 8192 weights) 0.89x at
  batch 32, 0.92x at 64 and at 128.
"""
from cmlp._data_parallel cimport (SplitStep, n_weight_blocks, share_pass, share_rows,
                                  weight_block, weight_rows)
from cmlp._engine cimport Layout, layer_input
from cmlp._layer_columns cimport layer_delta_columns, layer_forward_columns
from cmlp._kernels cimport linear_forward_columns
from cmlp._pool cimport pool_run_owned

import numpy as np

from cython cimport floating

cdef enum:
    UNIT_MIN_WIDTH = 16
    UNIT_MIN_WORK = 1 << 20

# For tests and benchmarks: -1 never, 0 by the rule, 1 whenever possible.
cdef int _mode = 0


def unit_split_mode(mode=None):
    """When phase B runs by units: "rule" (the default), "always" (every
    network it can run: for tests) or "never" (phase B by rows); set with
    `mode`. Returns the previous setting."""
    global _mode
    names = {-1: "never", 0: "rule", 1: "always"}
    previous = names[_mode]
    if mode is not None:
        if mode not in ("never", "rule", "always"):
            raise ValueError(f"mode must be 'never', 'rule' or 'always', got {mode!r}")
        _mode = {"never": -1, "rule": 0, "always": 1}[mode]
    return previous


cdef bint by_units(const Layout* layout, int tasks, Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t n1, n2
    if layout.n_layers < 3 or tasks < 2 or layout.sizes[1] < UNIT_MIN_WIDTH * tasks:
        return False
    if _mode != 0:
        return _mode > 0
    n1, n2 = layout.sizes[1], layout.sizes[2]
    return n1 > 2 * m and m * n1 * n2 >= UNIT_MIN_WORK * tasks


def splits_by_units(sizes, int tasks, Py_ssize_t m):
    """Whether phase B of a feature-split step of m rows in `tasks` tasks
    runs by the units of hidden layer 1, for a network of these layer
    widths (input, hidden..., output)."""
    cdef Layout layout
    cdef Py_ssize_t[::1] widths = np.asarray([int(n) for n in sizes], dtype=np.intp)
    if widths.shape[0] < 2 or m < 1:
        raise ValueError(f"need at least two widths and m >= 1, got {list(sizes)}, m={m}")
    layout.n_layers, layout.sizes = widths.shape[0] - 1, &widths[0]
    return by_units(&layout, tasks, m)


cdef inline void _units(const SplitStep* s, Py_ssize_t t, Py_ssize_t* u0,
                        Py_ssize_t* u1) noexcept nogil:
    # Task t's units: blocks of whole UNIT_MIN_WIDTH, the last one the rest.
    cdef Py_ssize_t n1 = s.layout.sizes[1], tasks = s.feature_blocks
    u0[0] = t * n1 // tasks // UNIT_MIN_WIDTH * UNIT_MIN_WIDTH
    u1[0] = n1 if t == tasks - 1 else (t + 1) * n1 // tasks // UNIT_MIN_WIDTH * UNIT_MIN_WIDTH


cdef inline floating* _copy(const SplitStep* s, Py_ssize_t t, floating* dtype_) noexcept nogil:
    return <floating*> s.copies + t * s.copy_stride


cdef inline void _job_1(SplitStep* s, Py_ssize_t t, floating* dtype_) noexcept nogil:
    # z1's columns [u0, u1) from the partial sums, activated; then Z_t.
    cdef const Layout* layout = s.layout
    cdef Py_ssize_t u0, u1, m = s.m, n1 = layout.sizes[1], n2 = layout.sizes[2]
    cdef const floating* params = <const floating*> s.params
    _units(s, t, &u0, &u1)
    sum_partials(s, s.partial_at, 0, n1, 0, m, u0, u1, dtype_)   # layer 1's slot comes first
    layer_forward_columns(<floating*> s.work, params, layout, <const floating*> NULL, m, 0,
                          u0, u1, True, s.dropout_key, s.batch_index, True)
    linear_forward_columns(_copy(s, t, dtype_) + s.partial2_at,
                           layer_input(<const floating*> s.work, layout, m, 1, True),
                           params + layout.w_offsets[1],
                           params + layout.b_offsets[1] if t == 0
                           else _copy(s, s.n_copies, dtype_),       # the zero bias
                           m, n1, n2, 0, n2, u0, u1)


cdef void _job_1_task(void* ctx, Py_ssize_t t, int worker) noexcept nogil:
    cdef SplitStep* s = <SplitStep*> ctx
    if s.single:
        _job_1(s, t, <float*> NULL)
    else:
        _job_1(s, t, <double*> NULL)


cdef inline void _job_2(SplitStep* s, Py_ssize_t p, floating* dtype_) noexcept nogil:
    # Share p's rows of z2 = Z_0 + Z_1 + ..., into layer 2's slot, then the
    # rest of the share.
    cdef Py_ssize_t r0, rows, n1 = s.layout.sizes[1], n2 = s.layout.sizes[2]
    share_rows(s, p, &r0, &rows)
    sum_partials(s, s.partial2_at, s.m * n1, n2, r0, r0 + rows, 0, n2, dtype_)
    share_pass(s, p, 2)


cdef void _job_2_task(void* ctx, Py_ssize_t p, int worker) noexcept nogil:
    cdef SplitStep* s = <SplitStep*> ctx
    if s.single:
        _job_2(s, p, <float*> NULL)
    else:
        _job_2(s, p, <double*> NULL)


cdef void _job_3_task(void* ctx, Py_ssize_t j, int worker) noexcept nogil:
    cdef SplitStep* s = <SplitStep*> ctx
    cdef Py_ssize_t u0, u1
    if j >= s.feature_blocks:
        weight_block(s, j - s.feature_blocks, 2, s.work, s.deltas, NULL)
        return
    _units(s, j, &u0, &u1)
    # dz1's columns with the old W2 rows, then those rows' gradient and step.
    if s.single:
        layer_delta_columns(<float*> s.deltas, <const float*> s.params, <float*> s.work,
                            s.layout, s.m, 1, u0, u1, True)
    else:
        layer_delta_columns(<double*> s.deltas, <const double*> s.params, <double*> s.work,
                            s.layout, s.m, 1, u0, u1, True)
    weight_rows(s, 1, u0, u1, s.work, s.deltas, NULL)


cdef void unit_forward(SplitStep* s, int threads) noexcept nogil:
    pool_run_owned(_job_1_task, s, s.feature_blocks, threads)
    if s.shares == 1:
        _job_2_task(s, 0, 0)            # the caller is worker 0
    else:
        pool_run_owned(_job_2_task, s, s.shares, threads)


cdef void unit_weight_gradients(SplitStep* s, int threads) noexcept nogil:
    pool_run_owned(_job_3_task, s, s.feature_blocks + n_weight_blocks(s, 2), threads)
