"""The training state of one run and its mini-batch loop, in C.

Design
------
* A BatchStepper owns everything a run of training steps needs besides the
  network's layout and parameters: the data it draws batches from, the
  batch scratch (allocated once), the optimizer's kind, hyperparameters and
  state buffers, and the counters (optimizer steps, batches trained), as
  llm.c's model struct owns its m/v memory. `run(order, lr)` takes just the
  rows to visit and the learning rate: it runs a whole epoch or, for a
  progress bar or partial_fit, part of one.
* The loop runs inside one `with nogil:` block: gather the mini-batch
  (at batch 1, point at the row instead), forward, backward, step. Plain
  SGD without weight decay or hook fuses its step into the backward gemms
  (no gradient buffer), and at batch 1 also computes the next row's first
  layer in the same pass over W1; anything else writes the flat gradient
  buffer and then runs one fused optimizer step over it (cmlp._optim).
* The gradient hook: between "this batch's gradients are in the buffer" and
  "the optimizer step" the loop can call gradient_hook(gradients,
  batch_weight) with the GIL, e.g. an allreduce over processes. Without a
  hook the loop never takes the GIL for it.
* Every batch updates the counters and the progress (loss sum, hits, rows)
  on the object as it completes, so whatever stops a run (a non-finite loss,
  an exception from the hook, Ctrl-C seen by check_signals between batches)
  leaves parameters, optimizer state and counters describing the same
  point: the end of the last completed batch.
* Weight decay is L2 on the weights: weight_decay * W added to the gradient
  or, with decay_per_sample (scikit-learn's alpha), weight_decay / (batch
  weight total) * W.
* A non-finite loss stops the run before that batch's update; it is raised
  as ValueError after the GIL is taken back.
* With threads > 1, a batch big enough to pay (cmlp._pool.threads_for) is
  split over worker threads (cmlp._data_parallel): its gather, passes,
  gradient sum and optimizer step all run on them, and the result depends
  on the number of shares, never on the schedule. BLAS runs one thread per
  call for the whole run (cmlp._blas.serial_blas_enter): `threads` is the
  one knob of how many cores a run uses.
* Python validates (cmlp.training, cmlp.network), Cython computes: nothing
  under nogil checks shapes, dtypes or values; the constructor and `run`
  check that the buffers fit (cheaply), since they are reachable from Python.
"""
from cython cimport floating
from libc.math cimport isfinite
from libc.stdint cimport int32_t
from libc.string cimport memcpy

import numpy as np

from cmlp._blas cimport serial_blas_enter, serial_blas_leave
from cmlp._data_parallel cimport (SplitStep, optimizer_step_range, shares_for,
                                  split_forward_backward, split_optimizer_step,
                                  split_weight_gradients)
from cmlp._feature_split cimport (FEATURE_MIN_WORK, by_features, feature_split_allocate,
                                  feature_split_forward_backward, feature_split_free,
                                  feature_split_weight_gradients)
from cmlp._engine cimport (Layout, NetLayout, backward_pass, check_signals, forward_pass,
                           monotonic_seconds, work_per_row)
from cmlp._fork_gate cimport gate_enter, gate_leave
from cmlp._optim cimport (OPT_ADAM, OPT_ADAM_STEP, OPT_MOMENTUM, OPT_MOMENTUM_STEP,
                          OPT_NESTEROV, OPT_NESTEROV_STEP, OPT_SGD)
from cmlp._pool cimport threads_for, threads_for_work
from cmlp._pool import MAX_THREADS
from cmlp._sparse cimport CsrMatrix, CsrRows


cdef class BatchStepper:
    """Runs mini-batch training steps over one data set, in C.

    Built by cmlp.training from validated arrays: parameters and gradients
    (n_params,) of the network dtype, X (n, n_features) dense or a
    CsrMatrix (batches then index its rows: nothing is gathered), labels (n,) int32
    or (0,), targets (n, k) or (0, k), weights (n,) or (0,). Set the
    optimizer with `Optimizer.configure(stepper)`.
    """

    def __init__(self, NetLayout layout, parameters, gradients, X, labels, targets, weights,
                 Py_ssize_t batch_size):
        dtype = parameters.dtype
        # O(1) checks (labels O(n)): reachable from Python, so a buffer that
        # does not fit is a ValueError here, never an out-of-bounds access.
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not (gradients.dtype == X.dtype == targets.dtype == weights.dtype == dtype
                and gradients.shape == parameters.shape and X.ndim == 2):
            raise ValueError("parameters, gradients, X, targets and weights must share one "
                             "dtype, with gradients shaped like parameters")
        layout.check_call(parameters.shape[0], X.shape[0], X.shape[1])
        layout.check_data(X.shape[0], labels, targets.shape[0], targets.shape[1],
                          weights.shape[0])
        self.layout = layout
        self.parameters, self.gradients = parameters, gradients
        self.X, self.labels, self.targets, self.weights = X, labels, targets, weights
        self.batch_size = batch_size
        k = layout.c.sizes[layout.c.n_layers]
        self.work = np.empty((batch_size, layout.work_per_row), dtype=dtype)
        sparse = isinstance(X, CsrMatrix)
        self.batch_X = np.empty((0 if sparse else batch_size, X.shape[1]), dtype=dtype)
        self.batch_labels = np.empty(batch_size if labels.shape[0] else 0, dtype=np.int32)
        self.batch_targets = np.empty((batch_size if targets.shape[0] else 0, k), dtype=dtype)
        self.batch_weights = np.empty(batch_size if weights.shape[0] else 0, dtype=dtype)
        self.optimizer = OPT_SGD
        self.state1 = self.state2 = np.empty(0, dtype=dtype)
        self.gradient_hook = None
        self.gradient_scale = 1.0
        self.sklearn_loss = False
        self.loss_scale = 1.0
        self.threads = 1
        self.deltas = np.empty((0, 0), dtype=dtype)

    def set_state(self, state1, state2):
        """The optimizer's state buffers (n_params) or empty, updated in place."""
        empty = np.empty(0, dtype=self.parameters.dtype)
        self.state1 = empty if state1 is None else state1
        self.state2 = empty if state2 is None else state2

    @property
    def fused_sgd(self):
        """Whether steps fold plain SGD into the backward pass (no gradient buffer)."""
        return (self.optimizer == OPT_SGD and self.weight_decay == 0
                and self.gradient_hook is None and not isinstance(self.X, CsrMatrix))

    def run(self, const Py_ssize_t[::1] order, double lr):
        """Train on the rows `order` lists, batch_size at a time (the last
        batch may be smaller), at learning rate lr. Batch t (counting every
        batch, batches_done before it) draws its dropout masks from
        dropout_seed(dropout_key, t, layer).

        Returns (weighted loss sum, rows predicted right, rows trained), each
        loss measured before its batch's update, with dropout; the same
        figures are left in loss_sum, n_correct, rows_done, also when the run
        stops early. Raises ValueError on a non-finite loss (that batch not
        applied), KeyboardInterrupt on Ctrl-C (seen between batches), and
        whatever the gradient hook raises.
        """
        self.loss_sum = 0
        self.n_correct = self.rows_done = 0
        if not _rows_within(order, self.X.shape[0]):
            raise ValueError("order holds rows outside the data")
        self._check_optimizer()
        if not 1 <= self.threads <= MAX_THREADS:
            raise ValueError(f"threads must be in [1, {MAX_THREADS}]")
        if self.threads > 1 and self.deltas.shape[0] == 0:
            self.deltas = np.empty((self.batch_size, self.layout.c.act_width),
                                   dtype=self.parameters.dtype)
        if self.parameters.dtype == np.float32:
            _run[float](self, self.parameters, self.gradients, self._dense_X(), self.targets,
                        self.weights, self.work, self.batch_X, self.batch_targets,
                        self.batch_weights, self.state1, self.state2, self.deltas,
                        order, lr)
        else:
            _run[double](self, self.parameters, self.gradients, self._dense_X(), self.targets,
                         self.weights, self.work, self.batch_X, self.batch_targets,
                         self.batch_weights, self.state1, self.state2, self.deltas,
                         order, lr)
        return self.loss_sum, self.n_correct, self.rows_done

    def _dense_X(self):
        # _run's dense X: the data, or an empty stand-in when it is sparse.
        if isinstance(self.X, CsrMatrix):
            return np.empty((0, self.X.shape[1]), dtype=self.parameters.dtype)
        return self.X

    def _check_optimizer(self):
        # The C step reads as many state buffers as the kind needs: they must fit.
        n_state = {OPT_SGD: 0, OPT_MOMENTUM: 1, OPT_NESTEROV: 1, OPT_ADAM: 2,
                   OPT_ADAM_STEP: 2, OPT_MOMENTUM_STEP: 1, OPT_NESTEROV_STEP: 1}.get(self.optimizer)
        if n_state is None or any(
                state.shape[0] != self.parameters.shape[0]
                for state in (self.state1, self.state2)[:n_state]):
            raise ValueError("the optimizer kind and its state buffers do not fit")

    def empty_step(self, double lr):
        """One optimizer step to which this process contributes no rows (a
        data-parallel rank whose share of a global batch is empty): the
        gradient buffer is zeroed, the hook called with batch weight 0 (it
        brings in the other ranks' gradients), then the optimizer step, and
        the counters advance as for a batch."""
        if self.gradient_hook is None:
            raise ValueError("empty_step is for data-parallel runs: it needs a gradient hook")
        self._check_optimizer()
        self.gradients[...] = 0
        self.hook_loss, self.hook_weight = 0.0, 0.0
        self.gradient_hook(self.gradients, 0.0)
        if not isfinite(self.hook_loss):
            raise ValueError(
                "the training loss became non-finite on another process; the learning "
                "rate is probably too high for this data")
        decay = self.weight_decay
        if self.decay_per_sample and decay != 0:
            if not self.hook_weight > 0:
                raise ValueError("empty_step needs the hook to give the global batch weight "
                                 "(hook_weight) to scale a per-sample decay by")
            decay /= self.hook_weight
        if self.parameters.dtype == np.float32:
            _empty_step[float](self, self.parameters, self.gradients, self.state1, self.state2,
                               lr, decay)
        else:
            _empty_step[double](self, self.parameters, self.gradients, self.state1, self.state2,
                                lr, decay)
        self.step += 1
        self.batches_done += 1


cdef int _empty_step(BatchStepper self, floating[::1] params, floating[::1] grads,
                     floating[::1] state1, floating[::1] state2, double lr,
                     double weight_decay) except -1:
    cdef floating* s1 = &state1[0] if state1.shape[0] > 0 else NULL
    cdef floating* s2 = &state2[0] if state2.shape[0] > 0 else NULL
    with nogil:
        gate_enter()
        optimizer_step_range(&params[0], &grads[0], s1, s2, &self.layout.c, self.optimizer,
                             <floating> lr, <floating> self.momentum, <floating> self.beta1,
                             <floating> self.beta2, <floating> self.eps,
                             <floating> weight_decay, self.step + 1, 0,
                             self.layout.c.n_params)
        gate_leave()
    return 0


cdef int _run(BatchStepper self, floating[::1] params, floating[::1] grads,
              const floating[:, ::1] X,            # IN (n, sizes[0])
              const floating[:, ::1] targets,      # IN (n, k) or (0, k)
              const floating[::1] weights,         # IN (n) or (0)
              floating[:, ::1] work,               # scratch (batch, work_per_row)
              floating[:, ::1] batch_X,            # scratch (batch, sizes[0])
              floating[:, ::1] batch_targets,      # scratch (batch, k) or (0, k)
              floating[::1] batch_weights,         # scratch (batch) or (0)
              floating[::1] state1,                # INOUT velocity / Adam m, or (0)
              floating[::1] state2,                # INOUT Adam v, or (0)
              floating[:, ::1] deltas,             # scratch (batch, act_width) or (0, 0)
              const Py_ssize_t[::1] order,         # IN rows to visit, in order
              double lr) except -1:
    cdef const Layout* layout = &self.layout.c
    cdef const int32_t[::1] labels = self.labels
    cdef int32_t[::1] batch_labels = self.batch_labels
    cdef Py_ssize_t n = order.shape[0], d = X.shape[1], k = layout.sizes[layout.n_layers]
    cdef Py_ssize_t batch = work.shape[0], start = 0, m, i, row, hits = 0
    cdef bint softmax = labels.shape[0] > 0
    cdef bint weighted = weights.shape[0] > 0
    cdef bint hooked = self.gradient_hook is not None
    cdef bint per_sample = self.decay_per_sample and self.weight_decay != 0
    cdef bint fused = self.fused_sgd
    cdef bint sklearn_loss = self.sklearn_loss
    cdef bint finite = True
    cdef int kind = self.optimizer
    cdef double loss, batch_weight, last_check = monotonic_seconds()
    cdef floating f_lr = <floating> lr, f_momentum = <floating> self.momentum
    cdef floating f_beta1 = <floating> self.beta1, f_beta2 = <floating> self.beta2
    cdef floating f_eps = <floating> self.eps, f_decay = <floating> self.weight_decay
    cdef floating f_scale = <floating> self.gradient_scale
    cdef floating* s1 = &state1[0] if state1.shape[0] > 0 else NULL
    cdef floating* s2 = &state2[0] if state2.shape[0] > 0 else NULL
    cdef const int32_t* lab = &batch_labels[0] if softmax else NULL
    cdef const floating* tgt = &batch_targets[0, 0] if not softmax else NULL
    cdef const floating* w = &batch_weights[0] if weighted else NULL
    cdef const floating* x = &batch_X[0, 0] if batch_X.shape[0] > 0 else NULL
    cdef const floating* x_next
    cdef bint next_ready = False
    # Sparse X: each batch is its rows of the CSR matrix, listed by order.
    cdef CsrRows rows
    cdef const CsrRows* sparse = NULL
    cdef int threads = self.threads if not isinstance(self.X, CsrMatrix) else 1
    cdef int parts = 1
    cdef SplitStep split
    cdef bint features = False
    split.copies = NULL
    if isinstance(self.X, CsrMatrix):
        rows = (<CsrMatrix> self.X).c
        sparse = &rows
    if threads > 1:
        _split_setup(&split, self, &params[0], &grads[0], &work[0, 0], &deltas[0, 0],
                     &X[0, 0], &batch_X[0, 0],
                     &targets[0, 0] if not softmax else NULL,
                     &weights[0] if weighted else NULL,
                     &batch_targets[0, 0] if not softmax else NULL,
                     &batch_weights[0] if weighted else NULL, s1, s2, floating is float)
        if by_features(layout, threads):
            feature_split_allocate(&split, threads, batch)
    serial_blas_enter()
    try:
        with nogil:
            while start < n:
                if start > 0:
                    check_signals(&last_check)
                m = min(batch, n - start)
                if threads > 1:
                    # The feature split pays from less work a thread than the others.
                    parts = (threads_for_work(threads, m, layout.n_params, FEATURE_MIN_WORK)
                             if split.copies != NULL else threads_for(threads, m, layout.n_params))
                # Fork-gate sections (cmlp._fork_gate): the passes, and the
                # optimizer step; never the hook, which runs Python.
                gate_enter()
                if sparse != NULL:
                    rows.rows = &order[start]
                if parts > 1:
                    # The batch split over the threads (cmlp._data_parallel).
                    split.order, split.m = &order[start], m
                    split.shares = shares_for(parts, m)
                    split.batch_index = self.batches_done
                    split.weight_total = m
                    if weighted:
                        split.weight_total = 0
                        for i in range(m):
                            split.weight_total += weights[order[start + i]]
                    features = split.copies != NULL and by_features(layout, parts)
                    if features:
                        loss = feature_split_forward_backward(&split, parts, &hits)
                    else:
                        loss = split_forward_backward(&split, parts, &hits)
                    if hooked:
                        # The hook sees the whole batch's gradient; the step follows it.
                        _split_weight_gradients(&split, parts, False, features, NULL)
                    x_next = NULL
                else:
                    if batch == 1:
                        # A single row is already contiguous: no gather.
                        row = order[start]
                        if sparse == NULL:
                            x = &X[row, 0]
                        if softmax:
                            lab = &labels[row]
                        else:
                            tgt = &targets[row, 0]
                        if weighted:
                            w = &weights[row]
                    else:
                        for i in range(m):
                            row = order[start + i]
                            if sparse == NULL:
                                memcpy(&batch_X[i, 0], &X[row, 0], d * sizeof(floating))
                            if softmax:
                                batch_labels[i] = labels[row]
                            else:
                                memcpy(&batch_targets[i, 0], &targets[row, 0],
                                       k * sizeof(floating))
                            if weighted:
                                batch_weights[i] = weights[row]
                    forward_pass(&work[0, 0], &params[0], layout, x, m, True, self.dropout_key,
                                 self.batches_done, NULL, next_ready, sparse)
                    # Batch-1 plain SGD computes the next row's first layer in the same
                    # pass over W1 as this step's update (linear_backward_sgd_next_forward).
                    x_next = (&X[order[start + 1], 0] if fused and batch == 1 and start + 1 < n
                              else NULL)
                    loss = backward_pass(NULL if fused else &grads[0], &params[0], &work[0, 0],
                                         layout, x, lab, tgt, w, m, True, f_lr, &hits, x_next,
                                         f_scale, sparse)
                gate_leave()
                next_ready = x_next != NULL
                if hooked or per_sample or sklearn_loss:
                    batch_weight = m
                    if weighted:
                        batch_weight = 0
                        for i in range(m):
                            batch_weight += w[i]
                if hooked:
                    # Called even when the loss is non-finite: a hook that is a
                    # collective must be reached by every process, and tells
                    # them all through hook_loss whether any of them diverged.
                    self.hook_loss, self.hook_weight, self.hook_rows = loss, batch_weight, m
                    with gil:
                        self.gradient_hook(self.gradients, batch_weight)
                    batch_weight = self.hook_weight
                    if not isfinite(self.hook_loss):
                        finite = False
                if not isfinite(loss):
                    finite = False
                if not finite:
                    break
                if per_sample:
                    f_decay = <floating> (self.weight_decay / batch_weight)
                if sklearn_loss:
                    # rows / weight * (mean loss) + this batch's share of the L2
                    # term, at the weights before the step (decay > 0 never fuses
                    # the step into the backward pass). Under a reducing hook,
                    # rows and weight are the global batch's and the ranks' parts
                    # add up to it.
                    loss = ((self.hook_rows if hooked else m) / batch_weight * self.loss_scale
                            * loss + 0.5 * self.weight_decay
                            * _weight_square_sum(&params[0], layout) * m / batch_weight)
                if parts > 1:
                    # The step on the threads: after the hook, over slices of
                    # the gradient; else fused with phase 2's gradients.
                    gate_enter()
                    split.lr, split.weight_decay, split.t = f_lr, f_decay, self.step + 1
                    if hooked:
                        split_optimizer_step(&split, parts)
                    else:
                        # With it, phase A of a next batch as big (cmlp._feature_split).
                        _split_weight_gradients(&split, parts, True, features,
                                                &order[start + m] if start + 2 * m <= n else NULL)
                    gate_leave()
                elif not fused:
                    gate_enter()
                    optimizer_step_range(&params[0], &grads[0], s1, s2, layout, kind, f_lr,
                                         f_momentum, f_beta1, f_beta2, f_eps, f_decay,
                                         self.step + 1, 0, layout.n_params)
                    gate_leave()
                self.step += 1
                self.batches_done += 1
                self.loss_sum += loss
                self.n_correct += hits
                self.rows_done += m
                start += m
    finally:
        serial_blas_leave()
        feature_split_free(&split)
    if not finite:
        raise ValueError(
            f"the training loss became non-finite after {self.rows_done} samples of this "
            "pass; the learning rate is probably too high for this data")
    return 0


cdef inline void _split_weight_gradients(SplitStep* split, int parts, bint step,
                                         bint features,
                                         const Py_ssize_t* next_order) noexcept nogil:
    if features:
        feature_split_weight_gradients(split, parts, step, next_order)
    else:
        split_weight_gradients(split, parts, step)


cdef int _split_setup(SplitStep* split, BatchStepper self, floating* params, floating* grads,
                      floating* work, floating* deltas, const floating* X, floating* batch_X,
                      const floating* targets, const floating* weights,
                      floating* batch_targets, floating* batch_weights,
                      floating* s1, floating* s2, bint single) except -1:
    # The parts of a SplitStep that stay the same for a whole run.
    cdef const Layout* layout = &self.layout.c
    cdef const int32_t[::1] labels = self.labels
    cdef int32_t[::1] batch_labels = self.batch_labels
    split.layout, split.single = layout, single
    split.params, split.grads = params, grads
    split.work, split.work_per_row, split.deltas = work, work_per_row(layout), deltas
    split.X, split.batch_X = X, batch_X
    split.labels = &labels[0] if labels.shape[0] > 0 else NULL
    split.batch_labels = &batch_labels[0] if labels.shape[0] > 0 else NULL
    split.targets, split.weights = targets, weights
    split.batch_targets, split.batch_weights = batch_targets, batch_weights
    split.d, split.k = layout.sizes[0], layout.sizes[layout.n_layers]
    split.dropout_key = self.dropout_key
    split.gradient_scale = self.gradient_scale
    split.kind = self.optimizer
    split.momentum, split.beta1 = self.momentum, self.beta1
    split.beta2, split.eps = self.beta2, self.eps
    split.state1, split.state2 = s1, s2
    split.fused_sgd = self.fused_sgd
    return 0


cdef bint _rows_within(const Py_ssize_t[::1] order, Py_ssize_t n) noexcept:
    # One pass in C: np.min and np.max cost ~8 us a call, a tenth of a
    # small data set's epoch.
    cdef Py_ssize_t i
    cdef bint ok = True
    for i in range(order.shape[0]):
        ok &= 0 <= order[i] < n
    return ok


cdef double _weight_square_sum(const floating* params, const Layout* layout) noexcept nogil:
    """sum of W^2 over every layer's weights (not the biases), in double."""
    cdef double total = 0
    cdef Py_ssize_t l, i, size
    cdef const floating* W
    for l in range(layout.n_layers):
        W = params + layout.w_offsets[l]
        size = layout.sizes[l] * layout.sizes[l + 1]
        for i in range(size):
            total += <double> W[i] * W[i]
    return total
