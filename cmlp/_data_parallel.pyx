"""One training step split over worker threads: data parallelism in a process.

Networks whose first layer holds most of the weights take
cmlp._feature_split instead (its first layer split by input features);
its phase 2 runs this module's blocks for the other layers.

Design
------
* A batch of m rows is cut into consecutive shares (shares_for: one or two
  per thread). Phase 1 runs each share as a task (cmlp._pool): gather its
  rows, forward_pass, then backward_deltas, the dL/dz of every layer for
  its rows, scaled to its part of the batch's weighted mean (the deltas
  are per row, so no share needs another's). BLAS runs one thread per call
  (cmlp._blas.serial_blas_enter).
* Phase 2 splits the weight gradients by rows of each W instead: a task
  takes rows [i0, i1) of W_l and adds a_{l-1}[:, i0:i1]^T @ dz_l over the
  shares in order, so every element of dW is computed once, by one thread,
  with no per-thread gradient buffers to sum. The task then applies the
  optimizer step to its rows while they are in cache (plain SGD: the gemm
  writes W itself, alpha -lr, as linear_backward_sgd does); b_l goes with
  the block of row 0, its sum row by row over the shares in order, which
  gives linear_backward's bits. With a gradient hook (MPI) phase 2 only
  writes the gradient; the hook sees the whole batch's, and the step runs
  after it on slices of the parameters.
* Bits depend on the number of shares (the order of sums), never on the
  schedule: a share's rows, dropout masks (forward_pass's dropout_row0:
  the whole batch's masks) and a block's rows are fixed by the task index,
  whichever thread runs it.
* Tasks are claimed by whichever thread is free (cmlp._pool): a thread
  whose core is taken by another process (a busy machine) leaves the
  shares it has not started to the others, and with two shares a thread
  the others have something to take.
* Sparse input is not split (cmlp._stepper trains it on one thread): its
  first layer's gradient is a scatter over the batch's rows.
"""
from libc.stdint cimport int32_t
from libc.string cimport memcpy

from libc.math cimport isfinite

from cmlp._engine cimport Layout, backward_deltas, forward_pass, layer_input, output_deltas
from cmlp._layer_columns cimport layer_delta_columns, layer_forward_columns
from cmlp._kernels cimport bias_gradient, weight_gradient_rows
from cmlp._optim cimport (OPT_ADAM, OPT_ADAM_STEP, OPT_MOMENTUM, OPT_MOMENTUM_STEP,
                          OPT_NESTEROV, OPT_NESTEROV_STEP, adam_step_update, adam_update,
                          l2_grad, momentum_step_update, momentum_update, sgd_update)
from cmlp._pool cimport pool_run

cdef enum:
    # Parameters per phase-2 task, and per step-only task: 64 KiB of
    # float32, in L2 with room for the operands.
    SLICE = 16384
    # A batch is split by rows when each thread gets at least this many and
    # the batch has at least as many rows as the widest hidden layer has
    # units; else by columns, layer by layer. A row share streams all of
    # every W, a column block all of its input: the split that copies less
    # (measured, 2 threads: 784-512-256-10 at batch 128, 1.61x by columns
    # against 1.24x by rows; at 512, 1.71x by rows against 1.48x).
    ROW_SPLIT_ROWS = 64
    # Phase-2 blocks a thread at most (claimed by whichever thread is free),
    # and multiply-adds a block (or a column task) at least.
    BLOCKS_PER_THREAD = 2
    BLOCK_WORK = 1 << 20


cdef Py_ssize_t shares_for(int threads, Py_ssize_t m) noexcept nogil:
    # One share a thread: a gemm's speed grows with its rows (OpenBLAS packs
    # all of W on every call; 784 x 512 float32: 71 GFLOP/s at 64 rows, 92
    # at 128, 119 at 512), so more, smaller shares cost more than they
    # balance.
    return threads


cdef void share_rows(const SplitStep* s, Py_ssize_t p, Py_ssize_t* r0,
                     Py_ssize_t* rows) noexcept nogil:
    r0[0] = p * s.m // s.shares
    rows[0] = (p + 1) * s.m // s.shares - r0[0]


cdef inline void _gather(SplitStep* s, Py_ssize_t r0, Py_ssize_t rows,
                         floating* dtype_) noexcept nogil:
    # Rows [r0, r0 + rows) of the batch into its scratch: X, then the rest.
    cdef Py_ssize_t i, d = s.d
    cdef const floating* X = <const floating*> s.X
    cdef floating* batch_X = <floating*> s.batch_X
    for i in range(r0, r0 + rows):
        memcpy(batch_X + i * d, X + s.order[i] * d, d * sizeof(floating))
    _gather_labels(s, r0, rows, dtype_)


cdef inline void _gather_labels(SplitStep* s, Py_ssize_t r0, Py_ssize_t rows,
                                floating* dtype_) noexcept nogil:
    # The labels (or targets) and weights of rows [r0, r0 + rows).
    cdef Py_ssize_t i, row, k = s.k
    cdef const floating* targets = <const floating*> s.targets
    cdef const floating* weights = <const floating*> s.weights
    cdef floating* batch_targets = <floating*> s.batch_targets
    cdef floating* batch_weights = <floating*> s.batch_weights
    for i in range(r0, r0 + rows):
        row = s.order[i]
        if s.labels != NULL:
            s.batch_labels[i] = s.labels[row]
        else:
            memcpy(batch_targets + i * k, targets + row * k, k * sizeof(floating))
        if weights != NULL:
            batch_weights[i] = weights[row]


cdef inline void _labels_of(SplitStep* s, Py_ssize_t r0, Py_ssize_t rows, const int32_t** lab,
                            const floating** tgt, const floating** w,
                            double* weight) noexcept nogil:
    # The gathered labels/targets and weights of rows [r0, r0 + rows), and
    # their weight total.
    cdef Py_ssize_t i
    lab[0], tgt[0], w[0] = NULL, NULL, NULL
    if s.labels != NULL:
        lab[0] = s.batch_labels + r0
    else:
        tgt[0] = <const floating*> s.batch_targets + r0 * s.k
    weight[0] = rows
    if s.weights != NULL:
        w[0] = <const floating*> s.batch_weights + r0
        weight[0] = 0
        for i in range(rows):
            weight[0] += w[0][i]


cdef inline void _share(SplitStep* s, Py_ssize_t p, Py_ssize_t layers_done,
                        floating* dtype_) noexcept nogil:
    # Share p: rows [r0, r0 + rows) of the batch, written where the whole
    # batch's would be (forward_pass's row0, region_rows), so that phase 2
    # finds every layer's inputs and deltas as (m, width) matrices.
    cdef Py_ssize_t r0, rows, hits = 0
    cdef const int32_t* lab
    cdef const floating* tgt
    cdef const floating* w
    cdef double share_weight, scale = 0
    share_rows(s, p, &r0, &rows)
    if layers_done:
        _gather_labels(s, r0, rows, dtype_)
    else:
        _gather(s, r0, rows, dtype_)
    _labels_of(s, r0, rows, &lab, &tgt, &w, &share_weight)
    if s.weight_total > 0:
        scale = s.gradient_scale * share_weight / s.weight_total
    forward_pass(<floating*> s.work, <const floating*> s.params, s.layout,
                 NULL if layers_done else <const floating*> s.batch_X + r0 * s.d, rows,
                 True, s.dropout_key, s.batch_index, NULL, layers_done, NULL, r0, s.m)
    # The deltas of the layers from layer 1 on (0-based), or from the last
    # one done: cmlp._unit_split computes dz1 itself, by columns.
    s.loss[p] = backward_deltas(<floating*> s.deltas, <const floating*> s.params,
                                <floating*> s.work, s.layout, lab, tgt, w, rows, True,
                                <floating> scale, &hits, r0, s.m, max(layers_done - 1, 0))
    s.hits[p] = hits


cdef void share_pass(SplitStep* s, Py_ssize_t p, Py_ssize_t layers_done) noexcept nogil:
    if s.single:
        _share(s, p, layers_done, <float*> NULL)
    else:
        _share(s, p, layers_done, <double*> NULL)


cdef void _share_task(void* ctx, Py_ssize_t p, int worker) noexcept nogil:
    share_pass(<SplitStep*> ctx, p, 0)


cdef void _gather_task(void* ctx, Py_ssize_t p, int worker) noexcept nogil:
    cdef SplitStep* s = <SplitStep*> ctx
    cdef Py_ssize_t r0, rows
    share_rows(s, p, &r0, &rows)
    if s.single:
        _gather(s, r0, rows, <float*> NULL)
    else:
        _gather(s, r0, rows, <double*> NULL)


cdef inline Py_ssize_t _column_width(const SplitStep* s, Py_ssize_t work,
                                     Py_ssize_t columns) noexcept nogil:
    # Columns per task of a column job: a block a thread at most, each of at
    # least BLOCK_WORK multiply-adds.
    cdef Py_ssize_t blocks = min(max(work // BLOCK_WORK, 1), s.threads)
    return (columns + blocks - 1) // blocks


cdef void _forward_column_task(void* ctx, Py_ssize_t j, int worker) noexcept nogil:
    cdef SplitStep* s = <SplitStep*> ctx
    cdef Py_ssize_t l = s.layer, n_out = s.layout.sizes[l + 1]
    cdef Py_ssize_t per = _column_width(s, s.m * s.layout.sizes[l] * n_out, n_out)
    cdef Py_ssize_t c0 = j * per, c1 = min(c0 + per, n_out)
    if s.single:
        layer_forward_columns(<float*> s.work, <const float*> s.params, s.layout,
                              <const float*> s.batch_X, s.m, l, c0, c1, True, s.dropout_key,
                              s.batch_index)
    else:
        layer_forward_columns(<double*> s.work, <const double*> s.params, s.layout,
                              <const double*> s.batch_X, s.m, l, c0, c1, True, s.dropout_key,
                              s.batch_index)


cdef void _delta_column_task(void* ctx, Py_ssize_t j, int worker) noexcept nogil:
    cdef SplitStep* s = <SplitStep*> ctx
    cdef Py_ssize_t l = s.layer, n = s.layout.sizes[l]
    cdef Py_ssize_t per = _column_width(s, s.m * n * s.layout.sizes[l + 1], n)
    cdef Py_ssize_t c0 = j * per, c1 = min(c0 + per, n)
    if s.single:
        layer_delta_columns(<float*> s.deltas, <const float*> s.params, <float*> s.work,
                            s.layout, s.m, l, c0, c1, True)
    else:
        layer_delta_columns(<double*> s.deltas, <const double*> s.params, <double*> s.work,
                            s.layout, s.m, l, c0, c1, True)


cdef inline double _output_deltas(SplitStep* s, Py_ssize_t* hits,
                                  floating* dtype_) noexcept nogil:
    cdef const int32_t* lab
    cdef const floating* tgt
    cdef const floating* w
    cdef double weight
    _labels_of(s, 0, s.m, &lab, &tgt, &w, &weight)
    return output_deltas(<floating*> s.deltas, <floating*> s.work, s.layout, lab, tgt, w, s.m,
                         <floating> s.gradient_scale, hits, 0, s.m)


cdef double _by_columns(SplitStep* s, int threads, Py_ssize_t* hits) noexcept nogil:
    cdef Py_ssize_t l, n_out, L = s.layout.n_layers
    cdef double loss
    s.threads = threads
    pool_run(_gather_task, s, s.shares, threads)
    for l in range(L):
        s.layer, n_out = l, s.layout.sizes[l + 1]
        pool_run(_forward_column_task, s,
                 (n_out + _column_width(s, s.m * s.layout.sizes[l] * n_out, n_out) - 1)
                 // _column_width(s, s.m * s.layout.sizes[l] * n_out, n_out), threads)
    # The loss over all rows at once, as one thread computes it.
    if s.single:
        loss = _output_deltas(s, hits, <float*> NULL)
    else:
        loss = _output_deltas(s, hits, <double*> NULL)
    if isfinite(loss):
        for l in range(L - 1, 0, -1):
            s.layer, n_out = l, s.layout.sizes[l]
            pool_run(_delta_column_task, s,
                     (n_out + _column_width(s, s.m * n_out * s.layout.sizes[l + 1], n_out) - 1)
                     // _column_width(s, s.m * n_out * s.layout.sizes[l + 1], n_out), threads)
    return loss


cdef inline bint _by_rows(int threads, Py_ssize_t m, Py_ssize_t widest_hidden) noexcept nogil:
    return m >= ROW_SPLIT_ROWS * threads and m >= widest_hidden


def splits_by_rows(int threads, Py_ssize_t rows, Py_ssize_t widest_hidden):
    """Whether a batch of `rows` rows split over `threads` threads goes by
    rows (else by columns), for a network whose widest hidden layer has
    `widest_hidden` units."""
    return _by_rows(threads, rows, widest_hidden)


cdef inline Py_ssize_t _widest_hidden(const Layout* layout) noexcept nogil:
    cdef Py_ssize_t l, widest = 0
    for l in range(1, layout.n_layers):
        widest = max(widest, layout.sizes[l])
    return widest


cdef double split_forward_backward(SplitStep* s, int threads,
                                   Py_ssize_t* hits) noexcept nogil:
    cdef Py_ssize_t p
    cdef double loss = 0
    if not _by_rows(threads, s.m, _widest_hidden(s.layout)):
        return _by_columns(s, threads, hits)
    pool_run(_share_task, s, s.shares, threads)
    hits[0] = 0
    for p in range(s.shares):
        loss += s.loss[p]
        hits[0] += s.hits[p]
    return loss


cdef inline Py_ssize_t _block_rows(const SplitStep* s, Py_ssize_t l) noexcept nogil:
    # Rows of W_l per phase-2 task: at most BLOCKS_PER_THREAD blocks a
    # thread (each gemm call packs all of dz_l), each of at least
    # BLOCK_WORK multiply-adds: below ~10^6, OpenBLAS takes its small-matrix
    # kernel, whose transposed form ran these gemms at half the speed of
    # its general one (784 x 128 at 32 rows, AVX-512).
    cdef Py_ssize_t n_in = s.layout.sizes[l], n_out = s.layout.sizes[l + 1]
    cdef Py_ssize_t blocks = min(max(n_in * n_out * s.m // BLOCK_WORK, 1),
                                 BLOCKS_PER_THREAD * s.threads)
    return (n_in + blocks - 1) // blocks


cdef Py_ssize_t n_weight_blocks(const SplitStep* s, Py_ssize_t first) noexcept nogil:
    cdef Py_ssize_t l, total = 0, rows
    for l in range(first, s.layout.n_layers):
        rows = _block_rows(s, l)
        total += (s.layout.sizes[l] + rows - 1) // rows
    return total


cdef inline void _block(SplitStep* s, Py_ssize_t j, Py_ssize_t first, const floating* work,
                        const floating* deltas, const floating* batch_X) noexcept nogil:
    # Block j of layers first..: rows [i0, i1) of some W_l.
    cdef Py_ssize_t l = first, per, count
    while True:
        per = _block_rows(s, l)
        count = (s.layout.sizes[l] + per - 1) // per
        if j < count:
            break
        j -= count
        l += 1
    _rows_of_w(s, l, j * per, min((j + 1) * per, s.layout.sizes[l]), work, deltas, batch_X)


cdef inline void _rows_of_w(SplitStep* s, Py_ssize_t l, Py_ssize_t i0, Py_ssize_t i1,
                            const floating* work, const floating* deltas,
                            const floating* batch_X) noexcept nogil:
    # Rows [i0, i1) of W_l (and b_l with the block of row 0), over all m
    # rows of the batch: one gemm, as linear_backward's but for these rows
    # of dW.
    cdef const Layout* layout = s.layout
    cdef Py_ssize_t n_in = layout.sizes[l], n_out = layout.sizes[l + 1], offset = 0, m = s.m
    cdef floating* params = <floating*> s.params
    cdef floating* grads = <floating*> s.grads
    cdef floating* target
    cdef const floating* a_prev
    cdef const floating* dz
    cdef floating alpha = 1
    cdef bint fused = s.step_now and s.fused_sgd
    cdef Py_ssize_t i
    for i in range(1, l + 1):
        offset += layout.sizes[i]
    if fused:
        alpha = -<floating> s.lr
    if l == 0:
        a_prev = batch_X
    else:
        a_prev = layer_input(work, layout, m, l, True)
    dz = deltas + m * offset
    target = (params if fused else grads) + layout.w_offsets[l] + i0 * n_out
    weight_gradient_rows(target, dz, a_prev + i0, alpha, 1 if fused else 0, m, i1 - i0,
                         n_out, n_out, n_in)
    if i0 == 0:
        bias_gradient((params if fused else grads) + layout.b_offsets[l], dz, alpha,
                      1 if fused else 0, m, n_out, n_out)
    if s.step_now and not fused:
        _step(s, layout.w_offsets[l] + i0 * n_out, layout.w_offsets[l] + i1 * n_out,
              <floating*> NULL)
        if i0 == 0:
            _step(s, layout.b_offsets[l], layout.b_offsets[l] + n_out, <floating*> NULL)


cdef inline void _step(SplitStep* s, Py_ssize_t p0, Py_ssize_t p1,
                       floating* dtype_) noexcept nogil:
    optimizer_step_range(<floating*> s.params, <floating*> s.grads, <floating*> s.state1,
                         <floating*> s.state2, s.layout, s.kind, <floating> s.lr,
                         <floating> s.momentum, <floating> s.beta1, <floating> s.beta2,
                         <floating> s.eps, <floating> s.weight_decay, s.t, p0, p1)


cdef void weight_block(SplitStep* s, Py_ssize_t j, Py_ssize_t first, const void* work,
                       const void* deltas, const void* batch_X) noexcept nogil:
    if s.single:
        _block(s, j, first, <const float*> work, <const float*> deltas,
               <const float*> batch_X)
    else:
        _block(s, j, first, <const double*> work, <const double*> deltas,
               <const double*> batch_X)


cdef void weight_rows(SplitStep* s, Py_ssize_t l, Py_ssize_t i0, Py_ssize_t i1,
                      const void* work, const void* deltas, const void* batch_X) noexcept nogil:
    if s.single:
        _rows_of_w(s, l, i0, i1, <const float*> work, <const float*> deltas,
                   <const float*> batch_X)
    else:
        _rows_of_w(s, l, i0, i1, <const double*> work, <const double*> deltas,
                   <const double*> batch_X)


cdef void step_range(SplitStep* s, Py_ssize_t p0, Py_ssize_t p1) noexcept nogil:
    if s.single:
        _step(s, p0, p1, <float*> NULL)
    else:
        _step(s, p0, p1, <double*> NULL)


cdef void _block_task(void* ctx, Py_ssize_t j, int worker) noexcept nogil:
    cdef SplitStep* s = <SplitStep*> ctx
    weight_block(s, j, 0, s.work, s.deltas, s.batch_X)


cdef void split_weight_gradients(SplitStep* s, int threads, bint step) noexcept nogil:
    s.step_now, s.threads = step, threads
    pool_run(_block_task, s, n_weight_blocks(s, 0), threads)


cdef void _slice_task(void* ctx, Py_ssize_t j, int worker) noexcept nogil:
    cdef SplitStep* s = <SplitStep*> ctx
    cdef Py_ssize_t p0 = j * SLICE, p1 = min(p0 + SLICE, s.layout.n_params)
    if s.single:
        _step(s, p0, p1, <float*> NULL)
    else:
        _step(s, p0, p1, <double*> NULL)


cdef void split_optimizer_step(SplitStep* s, int threads) noexcept nogil:
    pool_run(_slice_task, s, (s.layout.n_params + SLICE - 1) // SLICE, threads)


cdef void optimizer_step_range(floating* params, floating* grads, floating* state1,
                               floating* state2, const Layout* layout, int kind,
                               floating lr, floating momentum, floating beta1,
                               floating beta2, floating eps, floating weight_decay,
                               long long step, Py_ssize_t p0, Py_ssize_t p1) noexcept nogil:
    cdef Py_ssize_t l, lo, hi, n = p1 - p0
    if weight_decay != 0:
        # L2 on the weights only: biases are not decayed.
        for l in range(layout.n_layers):
            lo = max(p0, layout.w_offsets[l])
            hi = min(p1, layout.w_offsets[l] + layout.sizes[l] * layout.sizes[l + 1])
            if lo < hi:
                l2_grad(grads + lo, params + lo, weight_decay, hi - lo)
    params += p0
    grads += p0
    if state1 != NULL:
        state1 += p0
    if state2 != NULL:
        state2 += p0
    if kind == OPT_MOMENTUM or kind == OPT_NESTEROV:
        momentum_update(params, state1, grads, lr, momentum, kind == OPT_NESTEROV, n)
    elif kind == OPT_ADAM:
        adam_update(params, state1, state2, grads, lr, beta1, beta2, eps, step, n)
    elif kind == OPT_MOMENTUM_STEP or kind == OPT_NESTEROV_STEP:
        momentum_step_update(params, state1, grads, lr, momentum, kind == OPT_NESTEROV_STEP, n)
    elif kind == OPT_ADAM_STEP:
        adam_step_update(params, state1, state2, grads, lr, beta1, beta2, eps, step, n)
    else:
        sgd_update(params, grads, lr, n)
