"""Whole-network passes and the training epoch, over flat buffers.

Design
------
* All parameters live in ONE contiguous buffer (per layer: W then b); the
  gradients in a second buffer with the same layout (llm.c style). The
  Python Network hands out NumPy views into them.
* A workspace of m * work_per_row values (layout in _engine.pxd) holds
  every layer's activation (or z, for gelu: what its derivative needs),
  what each hidden layer hands on when that differs (gelu's output, the
  dropped-out activation), the dropout masks and two ping-pong delta
  buffers. The Network allocates it once per run and reuses it.
* Dropout masks are a function of (key, batch counter, layer) alone (see
  _kernels.dropout_forward): no generator state to save, and a resumed run
  draws exactly the masks the uninterrupted one would have.
* The training loop over mini-batches is cmlp._stepper (BatchStepper),
  built on forward_pass/backward_pass.
* Loops that run without the GIL for long call check_signals between
  chunks or batches: Ctrl-C raises KeyboardInterrupt within ~0.1 s plus
  one chunk, and nothing is left half-written.
* The def entry points over whole arrays (forward, evaluate,
  loss_and_gradients) are cmlp._entry.
* Python validates (cmlp/network.py), Cython computes: nothing under nogil
  checks shapes, dtypes or values. NetLayout's checks serve the def entry
  points, reachable from Python: a buffer that does not fit the layout is
  a ValueError rather than a crash.
"""
from libc.math cimport isfinite
from libc.stdint cimport int32_t, uint32_t, uint64_t

from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from cmlp._kernels import ACTIVATION_CODES, OUTPUT_CODES

from cmlp._panel_gemm cimport cmlp_panel_linear
from cmlp._sparse cimport CsrRows, csr_linear_backward, csr_linear_forward

from cmlp._kernels cimport (
    ACT_GELU, ACT_RELU, OUT_EXP, OUT_SIGMOID, OUT_SOFTMAX, activation_backward,
    activation_forward, dropout_backward, dropout_forward, dropout_seed, dropout_seed_at,
    linear_backward, linear_backward_sgd, linear_backward_sgd_next_forward, linear_forward,
    linear_backward_input,
)
from cmlp._losses cimport mse_backward, poisson_backward, sigmoid_bce_backward, softmax_xent_backward

cdef extern from "Python.h":
    # Runs pending signal handlers (in the main thread); -1 with the
    # handler's exception (KeyboardInterrupt for SIGINT) set.
    int PyErr_CheckSignals() except -1

# Long GIL-free loops look for pending signals (Ctrl-C) this often: a GIL
# round trip every 50 ms costs nothing measurable and keeps the answer to
# Ctrl-C well under a second (one batch or chunk can still run to its end).
cdef double SIGNAL_INTERVAL = 0.05


cdef int require(bint ok, str what) except -1:
    if not ok:
        raise ValueError(f"engine call with buffers that do not fit: {what}")
    return 0


def _check_layout(const Py_ssize_t[::1] sizes, const Py_ssize_t[::1] w_offsets,
                  const Py_ssize_t[::1] b_offsets, const int32_t[::1] activations,
                  const double[::1] dropout, int output, Py_ssize_t n_params):
    # A layout whose offsets or sizes lie would send every kernel out of
    # bounds: they must be exactly what cmlp._layout.offsets computes.
    cdef Py_ssize_t l, L = sizes.shape[0] - 1, offset = 0
    require(L >= 1 and w_offsets.shape[0] == L and b_offsets.shape[0] == L
            and activations.shape[0] == L and dropout.shape[0] == L, "layout lengths")
    for l in range(L):
        require(1 <= sizes[l] < 2**31 and 1 <= sizes[l + 1] < 2**31, "layer sizes")
        require(w_offsets[l] == offset, "weight offsets")
        offset += sizes[l] * sizes[l + 1]
        require(b_offsets[l] == offset, "bias offsets")
        offset += sizes[l + 1]
        require(activations[l] in ACTIVATION_CODES.values(), "activation codes")
        require(0 <= dropout[l] < 1, "dropout rates")
    require(offset == n_params, "parameter count")
    require(output in OUTPUT_CODES.values(), "output code")


cdef class NetLayout:
    """Owns the index arrays of a network's layout and the C struct over them.

    Built by cmlp.network from already-validated arrays (cmlp/_layout.py).
    """

    def __init__(self, const Py_ssize_t[::1] sizes, const Py_ssize_t[::1] w_offsets,
                 const Py_ssize_t[::1] b_offsets, const int32_t[::1] activations,
                 const double[::1] dropout, int output, Py_ssize_t n_params):
        _check_layout(sizes, w_offsets, b_offsets, activations, dropout, output, n_params)
        self.sizes, self.w_offsets = sizes, w_offsets
        self.b_offsets, self.activations, self.dropout = b_offsets, activations, dropout
        cdef Py_ssize_t l
        self.c.n_layers = sizes.shape[0] - 1
        self.c.sizes = &sizes[0]
        self.c.w_offsets = &w_offsets[0]
        self.c.b_offsets = &b_offsets[0]
        self.c.activations = &activations[0]
        self.c.dropout = &dropout[0]
        self.c.output = output
        self.c.n_params = n_params
        self.c.act_width = 0
        self.c.max_width = 0
        for l in range(1, sizes.shape[0]):
            self.c.act_width += sizes[l]
            self.c.max_width = max(self.c.max_width, sizes[l])
        self.c.hidden_width = self.c.act_width - sizes[sizes.shape[0] - 1]

    cdef int check_call(self, Py_ssize_t n_params, Py_ssize_t rows,
                        Py_ssize_t features) except -1:
        require(n_params == self.c.n_params, "the parameter buffer does not fit the layout")
        require(rows >= 1, "no rows")
        require(features == self.c.sizes[0], "the input width does not fit the layout")
        return 0

    cdef int check_data(self, Py_ssize_t n, const int32_t[::1] labels,
                        Py_ssize_t target_rows, Py_ssize_t target_cols,
                        Py_ssize_t n_weights) except -1:
        cdef Py_ssize_t i, k = self.c.sizes[self.c.n_layers]
        if self.c.output == OUT_SOFTMAX:
            require(labels.shape[0] == n, "a softmax network needs one label per row")
            for i in range(n):
                require(0 <= labels[i] < k, "labels out of range")
        else:
            require(target_rows == n and target_cols == k, "targets must be (n, k)")
        require(n_weights == 0 or n_weights == n, "weights must be (n,) or empty")
        return 0

    @property
    def work_per_row(self):
        """Workspace values needed per batch row."""
        return _work_per_row(&self.c)


cdef inline Py_ssize_t _work_per_row(const Layout* layout) noexcept nogil:
    return layout.act_width + 2 * layout.hidden_width + 2 * layout.max_width


cdef Py_ssize_t work_per_row(const Layout* layout) noexcept nogil:
    return _work_per_row(layout)


cdef inline floating* _rows(floating* work, Py_ssize_t M, Py_ssize_t offset, Py_ssize_t row0,
                            Py_ssize_t width) noexcept nogil:
    # Row row0 of the region that starts M * offset into a workspace of M
    # rows, a region of `width` values a row.
    return work + M * offset + row0 * width


cdef inline bint _hands_on_next(const Layout* layout, Py_ssize_t l, bint train) noexcept nogil:
    # Whether hidden layer l handed on its `next` buffer (rather than its
    # slot) in forward_pass: the layer below's input in backward_pass.
    return layout.activations[l] == ACT_GELU or (train and layout.dropout[l] > 0)


cdef floating* forward_pass(floating* work, const floating* params,
                            const Layout* layout, const floating* X,
                            Py_ssize_t m, bint train, uint64_t dropout_key,
                            uint64_t step, bint* first_finite=NULL,
                            Py_ssize_t layers_done=0,
                            const CsrRows* sparse=NULL,
                            Py_ssize_t row0=0, Py_ssize_t region_rows=0,
                            float** panels=NULL) noexcept nogil:
    cdef Py_ssize_t l, n_in, n_out, offset = 0, L = layout.n_layers
    cdef Py_ssize_t M = region_rows if region_rows > 0 else m
    cdef const floating* a_prev = X
    cdef floating* slot = work
    cdef floating* next_
    cdef floating* a
    cdef floating* mask
    cdef bint finite, relu_done
    for l in range(L):
        n_in = layout.sizes[l]
        n_out = layout.sizes[l + 1]
        if l + 1 < layers_done:
            offset += n_out                   # done, activation and all
            continue
        slot = _rows(work, M, offset, row0 if region_rows else 0, n_out)
        relu_done = False
        if l == 0 and sparse != NULL:
            csr_linear_forward(slot, sparse, params + layout.w_offsets[0],
                               params + layout.b_offsets[0], m, n_in, n_out)
        elif floating is float and panels != NULL and l >= layers_done:
            # Inference with W packed once per call (cmlp/_panel_gemm.h); a
            # hidden ReLU and layer 1's finiteness check ride on its store.
            relu_done = l < L - 1 and layout.activations[l] == ACT_RELU
            finite = cmlp_panel_linear(slot, a_prev, panels[l], params + layout.b_offsets[l],
                                       m, n_in, n_out, relu_done)
            if l == 0 and first_finite != NULL:
                first_finite[0] = finite
        elif l >= layers_done:
            linear_forward(slot, a_prev, params + layout.w_offsets[l],
                           params + layout.b_offsets[l], m, n_in, n_out)
        if l == 0 and first_finite != NULL and not (floating is float and panels != NULL):
            first_finite[0] = all_finite(slot, m * n_out)
        if l == L - 1:
            break                             # raw outputs: the loss takes the logits
        # gelu keeps z in the slot for its derivative and writes a to `next`;
        # the others overwrite z with a in place.
        next_ = _rows(work, M, layout.act_width + offset, row0 if region_rows else 0, n_out)
        a = next_ if layout.activations[l] == ACT_GELU else slot
        if not relu_done:
            activation_forward(layout.activations[l], a, slot, m * n_out)
        if train and layout.dropout[l] > 0:
            mask = _rows(work, M, layout.act_width + layout.hidden_width + offset,
                         row0 if region_rows else 0, n_out)
            # The masks are a counter-based stream (dropout_forward): value
            # i of batch row row0 + r is draw (row0 + r) * n_out + i.
            dropout_forward(next_, mask, a, layout.dropout[l],
                            dropout_seed_at(dropout_seed(dropout_key, step, l), row0 * n_out),
                            m * n_out)
            a = next_
        a_prev = a
        offset += n_out
    return slot


cdef inline double _loss_backward(floating* dz, const floating* out, const Layout* layout,
                                  const int32_t* labels, const floating* targets,
                                  const floating* weights, Py_ssize_t m,
                                  Py_ssize_t* n_correct) noexcept nogil:
    # dL/dz_out (m, k) of the (weighted) batch mean; returns the loss sum.
    cdef Py_ssize_t k = layout.sizes[layout.n_layers]
    if layout.output == OUT_SOFTMAX:
        return softmax_xent_backward(dz, out, labels, weights, m, k, n_correct)
    if layout.output == OUT_SIGMOID:
        return sigmoid_bce_backward(dz, out, targets, weights, m, k, n_correct)
    n_correct[0] = 0
    if layout.output == OUT_EXP:
        return poisson_backward(dz, out, targets, weights, m, k)
    return mse_backward(dz, out, targets, weights, m, k)


cdef double backward_pass(floating* grads, floating* params, floating* work,
                          const Layout* layout, const floating* X,
                          const int32_t* labels, const floating* targets,
                          const floating* weights, Py_ssize_t m, bint train,
                          floating sgd_lr, Py_ssize_t* n_correct,
                          const floating* x_next=NULL,
                          floating gradient_scale=1,
                          const CsrRows* sparse=NULL) noexcept nogil:
    cdef Py_ssize_t i, l, L = layout.n_layers, n = 0
    cdef Py_ssize_t k = layout.sizes[L]
    # offset: where the slot of layer l - 1 (this layer's input) starts.
    cdef Py_ssize_t offset = layout.act_width - k
    cdef floating* out = work + m * offset                       # raw outputs
    cdef floating* dz = work + m * _work_per_row(layout) - 2 * m * layout.max_width
    cdef floating* spare = dz + m * layout.max_width
    cdef floating* swap
    cdef floating* slot
    cdef const floating* a_prev
    cdef double loss = _loss_backward(dz, out, layout, labels, targets, weights, m, n_correct)
    if grads == NULL and not isfinite(loss):
        return loss            # fused SGD: leave the parameters as they are
    if gradient_scale != 1:
        for i in range(m * k):
            dz[i] *= gradient_scale
    for l in range(L - 1, -1, -1):
        # a_prev is this layer's input: X, or what layer l - 1 handed on.
        slot = NULL
        if l == 0:
            a_prev = X
        else:
            n = layout.sizes[l]
            offset -= n
            slot = work + m * offset
            if _hands_on_next(layout, l - 1, train):
                a_prev = work + m * (layout.act_width + offset)
            else:
                a_prev = slot
        if l == 0 and sparse != NULL:
            csr_linear_backward(grads + layout.w_offsets[0], grads + layout.b_offsets[0], dz,
                                sparse, m, layout.sizes[0], layout.sizes[1])
        elif grads == NULL and l == 0 and m == 1 and x_next != NULL:
            # Batch-1 SGD: the next row's z1 comes out of the same pass over
            # W1, into layer 1's slot (free: its a1 was used above).
            linear_backward_sgd_next_forward(work, params + layout.w_offsets[0],
                                             params + layout.b_offsets[0], dz, X, sgd_lr,
                                             x_next, layout.sizes[0], layout.sizes[1])
        elif grads == NULL:
            linear_backward_sgd(spare if l > 0 else NULL,
                                params + layout.w_offsets[l],
                                params + layout.b_offsets[l], dz, a_prev, sgd_lr,
                                m, layout.sizes[l], layout.sizes[l + 1])
        else:
            linear_backward(spare if l > 0 else NULL,
                            grads + layout.w_offsets[l], grads + layout.b_offsets[l],
                            dz, a_prev, params + layout.w_offsets[l],
                            m, layout.sizes[l], layout.sizes[l + 1])
        if l > 0:
            if train and layout.dropout[l - 1] > 0:
                dropout_backward(spare, work + m * (layout.act_width + layout.hidden_width
                                                    + offset), spare, m * n)
            activation_backward(layout.activations[l - 1], spare, slot, spare, m * n)
            swap = dz
            dz = spare
            spare = swap
    return loss


cdef double output_deltas(floating* deltas, floating* work, const Layout* layout,
                          const int32_t* labels, const floating* targets,
                          const floating* weights, Py_ssize_t m, floating gradient_scale,
                          Py_ssize_t* n_correct, Py_ssize_t row0,
                          Py_ssize_t region_rows) noexcept nogil:
    cdef Py_ssize_t i, k = layout.sizes[layout.n_layers], M = region_rows
    cdef Py_ssize_t offset = layout.act_width - k                # layer L - 1's slot
    cdef floating* dz = _rows(deltas, M, offset, row0, k)
    cdef double loss = _loss_backward(dz, _rows(work, M, offset, row0, k), layout, labels,
                                      targets, weights, m, n_correct)
    if isfinite(loss) and gradient_scale != 1:
        for i in range(m * k):
            dz[i] *= gradient_scale
    return loss


cdef double backward_deltas(floating* deltas, const floating* params, floating* work,
                            const Layout* layout, const int32_t* labels,
                            const floating* targets, const floating* weights, Py_ssize_t m,
                            bint train, floating gradient_scale, Py_ssize_t* n_correct,
                            Py_ssize_t row0, Py_ssize_t region_rows,
                            Py_ssize_t lowest=0) noexcept nogil:
    cdef Py_ssize_t l, n, L = layout.n_layers, M = region_rows
    cdef Py_ssize_t offset = layout.act_width - layout.sizes[L]  # layer L - 1's slot
    cdef floating* dz = _rows(deltas, M, offset, row0, layout.sizes[L])
    cdef floating* da
    cdef floating* slot
    cdef double loss = output_deltas(deltas, work, layout, labels, targets, weights, m,
                                     gradient_scale, n_correct, row0, region_rows)
    if not isfinite(loss):
        return loss
    for l in range(L - 1, lowest, -1):
        n = layout.sizes[l]
        offset -= n
        slot = _rows(work, M, offset, row0, n)
        da = _rows(deltas, M, offset, row0, n)
        linear_backward_input(da, dz, params + layout.w_offsets[l], m, n, layout.sizes[l + 1],
                              0, n)
        if train and layout.dropout[l - 1] > 0:
            dropout_backward(da, _rows(work, M, layout.act_width + layout.hidden_width + offset,
                                       row0, n), da, m * n)
        activation_backward(layout.activations[l - 1], da, slot, da, m * n)
        dz = da
    return loss


cdef const floating* layer_input(const floating* work, const Layout* layout, Py_ssize_t m,
                                 Py_ssize_t l, bint train) noexcept nogil:
    cdef Py_ssize_t i, offset = 0
    for i in range(1, l):
        offset += layout.sizes[i]
    if _hands_on_next(layout, l - 1, train):
        return work + m * (layout.act_width + offset)
    return work + m * offset


cdef bint all_finite(const floating* x, Py_ssize_t n) noexcept nogil:
    # A float is NaN or infinite exactly when its exponent bits are all ones.
    # Testing the bits as integers and OR-ing the answers is associative, so
    # the compiler vectorises it (a float reduction it may not reorder).
    cdef Py_ssize_t i
    cdef const uint32_t* bits32
    cdef const uint64_t* bits64
    cdef uint32_t bad32 = 0
    cdef uint64_t bad64 = 0
    if floating is float:
        bits32 = <const uint32_t*> x
        for i in range(n):
            bad32 |= (bits32[i] & 0x7F800000U) == 0x7F800000U
        return bad32 == 0
    else:
        bits64 = <const uint64_t*> x
        for i in range(n):
            bad64 |= (bits64[i] & 0x7FF0000000000000ULL) == 0x7FF0000000000000ULL
        return bad64 == 0


def is_finite(const floating[:, ::1] X):
    """True if X holds no NaN and no infinity (no temporary array, no GIL)."""
    cdef bint finite
    with nogil:
        finite = all_finite(&X[0, 0], X.shape[0] * X.shape[1])
    return finite


cdef double monotonic_seconds() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec


cdef int check_signals(double* last_check) except -1 nogil:
    cdef double now = monotonic_seconds()
    if now - last_check[0] < SIGNAL_INTERVAL:
        return 0
    last_check[0] = now
    with gil:
        return PyErr_CheckSignals()
