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
* `forward` and `evaluate` allocate their own scratch per call (malloc) and
  touch no shared mutable state, so threads may share one network. Inputs
  are processed in chunks of CHUNK rows.
* `forward` checks its input for NaN/inf in C before computing: the check is
  part of the Python boundary, done here only because a NumPy isfinite pass
  costs more than the whole one-sample forward it guards. It also checks its
  outputs: with finite inputs and parameters (the Network guarantees both)
  a NaN/inf output means the dtype overflowed, which the caller must hear
  about rather than get a confident wrong class.
* Python validates (cmlp/network.py), Cython computes: nothing under nogil
  checks shapes, dtypes or values. The def entry points, reachable from
  Python, check in O(1) (labels: O(n)) that their buffers fit the layout,
  so a wrong call is a ValueError rather than a crash.
"""
import numpy as np

cimport numpy as cnp
from libc.math cimport isfinite
from libc.stdint cimport int32_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from cmlp._kernels import ACTIVATION_CODES, OUTPUT_CODES

from cmlp._fork_gate cimport gate_enter, gate_leave
from cmlp._sparse cimport CsrMatrix, CsrRows, csr_linear_backward, csr_linear_forward

from cmlp._kernels cimport (
    ACT_GELU, OUT_EXP, OUT_SIGMOID, OUT_SOFTMAX, activation_backward,
    activation_forward, dropout_backward, dropout_forward, dropout_seed, exp_forward,
    linear_backward, linear_backward_sgd, linear_backward_sgd_next_forward, linear_forward,
    mse_backward, mse_loss, poisson_backward, poisson_loss,
    sigmoid_bce_backward, sigmoid_bce_loss, sigmoid_forward,
    softmax_forward, softmax_xent_backward, softmax_xent_loss,
)

# NumPy's C API, for forward_array only: checking an input and allocating
# the output through it costs nanoseconds, against ~1 us for typed
# memoryviews and np.empty on a one-row call.
cnp.import_array()

cdef extern from "Python.h":
    # Runs pending signal handlers (in the main thread); -1 with the
    # handler's exception (KeyboardInterrupt for SIGINT) set.
    int PyErr_CheckSignals() except -1

# Rows per chunk in forward/evaluate: big enough for efficient GEMMs, small
# enough that the scratch stays cache-friendly.
cdef enum:
    CHUNK = 1024
    # Multiply-adds below which forward keeps the GIL (~50 us of work).
    GIL_RELEASE_WORK = 1 << 19

# Long GIL-free loops look for pending signals (Ctrl-C) this often: a GIL
# round trip every 50 ms costs nothing measurable and keeps the answer to
# Ctrl-C well under a second (one batch or chunk can still run to its end).
cdef double SIGNAL_INTERVAL = 0.05


cdef int _require(bint ok, str what) except -1:
    if not ok:
        raise ValueError(f"engine call with buffers that do not fit: {what}")
    return 0


def _check_layout(const Py_ssize_t[::1] sizes, const Py_ssize_t[::1] w_offsets,
                  const Py_ssize_t[::1] b_offsets, const int32_t[::1] activations,
                  const double[::1] dropout, int output, Py_ssize_t n_params):
    # A layout whose offsets or sizes lie would send every kernel out of
    # bounds: they must be exactly what cmlp._layout.offsets computes.
    cdef Py_ssize_t l, L = sizes.shape[0] - 1, offset = 0
    _require(L >= 1 and w_offsets.shape[0] == L and b_offsets.shape[0] == L
             and activations.shape[0] == L and dropout.shape[0] == L, "layout lengths")
    for l in range(L):
        _require(1 <= sizes[l] < 2**31 and 1 <= sizes[l + 1] < 2**31, "layer sizes")
        _require(w_offsets[l] == offset, "weight offsets")
        offset += sizes[l] * sizes[l + 1]
        _require(b_offsets[l] == offset, "bias offsets")
        offset += sizes[l + 1]
        _require(activations[l] in ACTIVATION_CODES.values(), "activation codes")
        _require(0 <= dropout[l] < 1, "dropout rates")
    _require(offset == n_params, "parameter count")
    _require(output in OUTPUT_CODES.values(), "output code")


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
        _require(n_params == self.c.n_params, "the parameter buffer does not fit the layout")
        _require(rows >= 1, "no rows")
        _require(features == self.c.sizes[0], "the input width does not fit the layout")
        return 0

    cdef int check_data(self, Py_ssize_t n, const int32_t[::1] labels,
                        Py_ssize_t target_rows, Py_ssize_t target_cols,
                        Py_ssize_t n_weights) except -1:
        cdef Py_ssize_t i, k = self.c.sizes[self.c.n_layers]
        if self.c.output == OUT_SOFTMAX:
            _require(labels.shape[0] == n, "a softmax network needs one label per row")
            for i in range(n):
                _require(0 <= labels[i] < k, "labels out of range")
        else:
            _require(target_rows == n and target_cols == k, "targets must be (n, k)")
        _require(n_weights == 0 or n_weights == n, "weights must be (n,) or empty")
        return 0

    @property
    def work_per_row(self):
        """Workspace values needed per batch row."""
        return _work_per_row(&self.c)


cdef inline Py_ssize_t _work_per_row(const Layout* layout) noexcept nogil:
    return layout.act_width + 2 * layout.hidden_width + 2 * layout.max_width


cdef inline bint _hands_on_next(const Layout* layout, Py_ssize_t l, bint train) noexcept nogil:
    # Whether hidden layer l handed on its `next` buffer (rather than its
    # slot) in forward_pass: the layer below's input in backward_pass.
    return layout.activations[l] == ACT_GELU or (train and layout.dropout[l] > 0)


cdef floating* forward_pass(floating* work, const floating* params,
                            const Layout* layout, const floating* X,
                            Py_ssize_t m, bint train, uint64_t dropout_key,
                            uint64_t step, bint* first_finite=NULL,
                            bint first_layer_done=False,
                            const CsrRows* sparse=NULL) noexcept nogil:
    cdef Py_ssize_t l, n_in, n_out, offset = 0, L = layout.n_layers
    cdef const floating* a_prev = X
    cdef floating* slot = work
    cdef floating* next_
    cdef floating* a
    cdef floating* mask
    for l in range(L):
        n_in = layout.sizes[l]
        n_out = layout.sizes[l + 1]
        slot = work + m * offset
        if l == 0 and sparse != NULL:
            csr_linear_forward(slot, sparse, params + layout.w_offsets[0],
                               params + layout.b_offsets[0], m, n_in, n_out)
        elif l > 0 or not first_layer_done:
            linear_forward(slot, a_prev, params + layout.w_offsets[l],
                           params + layout.b_offsets[l], m, n_in, n_out)
        if l == 0 and first_finite != NULL:
            first_finite[0] = all_finite(slot, m * n_out)
        if l == L - 1:
            break                             # raw outputs: the loss takes the logits
        # gelu keeps z in the slot for its derivative and writes a to `next`;
        # the others overwrite z with a in place.
        next_ = work + m * (layout.act_width + offset)
        a = next_ if layout.activations[l] == ACT_GELU else slot
        activation_forward(layout.activations[l], a, slot, m * n_out)
        if train and layout.dropout[l] > 0:
            mask = work + m * (layout.act_width + layout.hidden_width + offset)
            dropout_forward(next_, mask, a, layout.dropout[l],
                            dropout_seed(dropout_key, step, l), m * n_out)
            a = next_
        a_prev = a
        offset += n_out
    return slot


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
    cdef double loss
    if layout.output == OUT_SOFTMAX:
        loss = softmax_xent_backward(dz, out, labels, weights, m, k, n_correct)
    elif layout.output == OUT_SIGMOID:
        loss = sigmoid_bce_backward(dz, out, targets, weights, m, k, n_correct)
    elif layout.output == OUT_EXP:
        loss = poisson_backward(dz, out, targets, weights, m, k)
        n_correct[0] = 0
    else:
        loss = mse_backward(dz, out, targets, weights, m, k)
        n_correct[0] = 0
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


# The unused one of labels/targets (and absent weights) is passed empty;
# its pointer is NULL.
cdef inline const int32_t* _labels_ptr(const int32_t[::1] labels):
    return &labels[0] if labels.shape[0] > 0 else NULL


cdef inline const floating* _targets_ptr(const floating[:, ::1] targets):
    return &targets[0, 0] if targets.shape[0] > 0 else NULL


cdef inline const floating* _weights_ptr(const floating[::1] weights):
    return &weights[0] if weights.shape[0] > 0 else NULL


cdef void* _scratch(const Layout* layout, Py_ssize_t rows, size_t itemsize) noexcept nogil:
    return malloc(rows * _work_per_row(layout) * itemsize)


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


cdef int _forward_rows(floating* work, const floating* params,
                       const Layout* layout, const floating* X,
                       floating* out, Py_ssize_t n,
                       Py_ssize_t chunk, const CsrRows* sparse=NULL) except -1 nogil:
    # 1 when done; 0 at the first chunk holding NaN/inf; 2 at the first
    # chunk whose outputs are not finite (overflow); -1 on a signal.
    # X is NULL for sparse rows (their values were checked at the boundary).
    cdef Py_ssize_t start = 0, m, d = layout.sizes[0]
    cdef Py_ssize_t k = layout.sizes[layout.n_layers]
    cdef floating* raw
    cdef double last_check = monotonic_seconds()
    cdef bint first_finite
    cdef CsrRows rows
    while start < n:
        if start > 0:
            check_signals(&last_check)
        m = min(chunk, n - start)
        # X is checked through layer 1's output (see forward_pass), which is
        # in cache and a sixth of X's size on MNIST: scanning X itself cost
        # 5 % of a 2048-row call. Only a bad chunk is scanned, to tell a
        # NaN/inf in X from an overflow in layer 1.
        # One chunk is one fork-gate section (cmlp._fork_gate).
        gate_enter()
        if sparse != NULL:
            rows = sparse[0]
            rows.first += start
            raw = forward_pass(work, params, layout, NULL, m, False, 0, 0, &first_finite,
                               False, &rows)
            if not first_finite:
                gate_leave()
                return 2
        else:
            raw = forward_pass(work, params, layout, X + start * d, m, False, 0, 0,
                               &first_finite)
            if not first_finite:
                gate_leave()
                return 0 if not all_finite(X + start * d, m * d) else 2
        if layout.output == OUT_SOFTMAX:
            softmax_forward(out + start * k, raw, m, k)
        elif layout.output == OUT_SIGMOID:
            sigmoid_forward(out + start * k, raw, m * k)
        elif layout.output == OUT_EXP:
            exp_forward(out + start * k, raw, m * k)
        else:
            memcpy(out + start * k, raw, m * k * sizeof(floating))
        gate_leave()
        # With finite inputs and parameters only an overflow gets here; the
        # activations carry NaN on, so it cannot be silently rounded away.
        if not all_finite(out + start * k, m * k):
            return 2
        start += m
    return 1


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
        _require(csr.data.dtype == dtype, "X must have the parameters' dtype")
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
            floating[:, ::1] out):        # OUT (n, sizes[L]): probabilities or raw
    """Network outputs for X into `out`. Returns 1 when done, 0 if X holds
    a NaN or an infinity, 2 if an output came out NaN or infinite (an
    overflow); rows from the first bad chunk on are then not computed.

    The GIL is released when the call has at least GIL_RELEASE_WORK
    multiply-adds to do; a smaller call (one or a few rows) keeps it, since
    handing the GIL to a waiting thread and back costs more than the call.
    A signal (Ctrl-C) between chunks raises its exception.
    """
    cdef _Input x = _input(X, np.float32 if floating is float else np.float64)
    cdef Py_ssize_t n = x.n, chunk = min(n, CHUNK)
    cdef int finite
    cdef floating* work
    layout.check_call(params.shape[0], n, x.d)
    _require(out.shape[0] == n and out.shape[1] == layout.c.sizes[layout.c.n_layers],
             "out must be (n, k)")
    work = <floating*> _scratch(&layout.c, chunk, sizeof(floating))
    if work == NULL:
        raise MemoryError()
    try:
        if n * layout.c.n_params >= GIL_RELEASE_WORK:
            with nogil:
                finite = _forward_rows(work, &params[0], &layout.c, <const floating*> x.x,
                                       &out[0, 0], n, chunk, x.sparse)
        else:
            finite = _forward_rows(work, &params[0], &layout.c, <const floating*> x.x,
                                   &out[0, 0], n, chunk, x.sparse)
    finally:
        free(work)
    return finite


def forward_array(cnp.ndarray params, NetLayout layout, object X):
    """Network.forward's fast path, with no buffer acquisition: X must
    already be a C-contiguous, aligned, native-order (n >= 1, sizes[0])
    array of the parameters' dtype (float32 or float64). Returns a new (n, k)
    output array, or None if X is anything else: the caller then validates
    and converts it and calls `forward`. Raises ValueError for a NaN or an
    infinity in X, or an overflow (see forward_error)."""
    cdef cnp.ndarray x, out
    cdef cnp.npy_intp dims[2]
    cdef int type_num = cnp.PyArray_TYPE(params), status
    cdef Py_ssize_t n, chunk
    cdef void* work
    _require((type_num == cnp.NPY_FLOAT32 or type_num == cnp.NPY_FLOAT64)
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
    n = x.shape[0]
    chunk = min(n, CHUNK)
    layout.check_call(cnp.PyArray_SIZE(params), n, x.shape[1])
    dims[0] = n
    dims[1] = layout.c.sizes[layout.c.n_layers]
    out = cnp.PyArray_EMPTY(2, dims, type_num, 0)
    work = _scratch(&layout.c, chunk, cnp.PyArray_ITEMSIZE(params))
    if work == NULL:
        raise MemoryError()
    try:
        if n * layout.c.n_params >= GIL_RELEASE_WORK:
            with nogil:
                status = _forward_typed(type_num == cnp.NPY_FLOAT32, work,
                                        cnp.PyArray_DATA(params), &layout.c,
                                        cnp.PyArray_DATA(x), cnp.PyArray_DATA(out), n, chunk)
        else:
            status = _forward_typed(type_num == cnp.NPY_FLOAT32, work, cnp.PyArray_DATA(params),
                                    &layout.c, cnp.PyArray_DATA(x), cnp.PyArray_DATA(out), n,
                                    chunk)
    finally:
        free(work)
    if status != 1:
        raise forward_error(status, params.dtype.name)
    return out


cdef int _forward_typed(bint single, void* work, const void* params, const Layout* layout,
                        const void* X, void* out, Py_ssize_t n,
                        Py_ssize_t chunk) except -1 nogil:
    if single:
        return _forward_rows(<float*> work, <const float*> params, layout, <const float*> X,
                             <float*> out, n, chunk)
    return _forward_rows(<double*> work, <const double*> params, layout, <const double*> X,
                         <double*> out, n, chunk)


def forward_error(int status, str dtype_name):
    """The ValueError for forward's status 0 (NaN/inf in X) or 2 (overflow)."""
    if status == 0:
        return ValueError("X contains NaN or infinite values")
    remedy = "scale the inputs, or use float64" if dtype_name == "float32" else "scale the inputs"
    return ValueError(f"the forward pass overflowed {dtype_name}: an output is NaN or "
                      f"infinite (inputs or weights too large for {dtype_name}; {remedy})")


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


def evaluate(const floating[::1] params, NetLayout layout,
             object X,                          # IN (n, sizes[0]): dense or CsrMatrix
             const int32_t[::1] labels,         # IN (n) for softmax, else (0)
             const floating[:, ::1] targets,    # IN (n, k) for identity/sigmoid, else (0, k)
             const floating[::1] weights):      # IN (n) sample weights, or (0)
    """Return (weighted loss sum, number of rows predicted right) over X.
    A signal (Ctrl-C) between chunks raises its exception."""
    cdef _Input x = _input(X, np.float32 if floating is float else np.float64)
    cdef const floating* X0 = <const floating*> x.x
    cdef CsrRows rows
    cdef Py_ssize_t n = x.n, k = layout.c.sizes[layout.c.n_layers], d = x.d
    cdef Py_ssize_t chunk = min(n, CHUNK), start = 0, m, correct = 0, hits = 0
    cdef const int32_t* lab = _labels_ptr(labels)
    cdef const floating* tgt = _targets_ptr(targets)
    cdef const floating* w = _weights_ptr(weights)
    cdef floating* raw
    cdef double loss = 0, last_check = monotonic_seconds()
    cdef floating* work
    layout.check_call(params.shape[0], n, d)
    layout.check_data(n, labels, targets.shape[0], targets.shape[1], weights.shape[0])
    work = <floating*> _scratch(&layout.c, chunk, sizeof(floating))
    if work == NULL:
        raise MemoryError()
    try:
        with nogil:
            while start < n:
                if start > 0:
                    check_signals(&last_check)
                m = min(chunk, n - start)
                gate_enter()
                if x.sparse != NULL:
                    rows = x.sparse[0]
                    rows.first += start
                    raw = forward_pass(work, &params[0], &layout.c, NULL, m, False, 0, 0,
                                       NULL, False, &rows)
                else:
                    raw = forward_pass(work, &params[0], &layout.c, X0 + start * d, m,
                                       False, 0, 0)
                loss += _loss_sum(&layout.c, raw, lab + start if lab != NULL else NULL,
                                  tgt + start * k if tgt != NULL else NULL,
                                  w + start if w != NULL else NULL, m, &hits)
                gate_leave()
                correct += hits
                start += m
    finally:
        free(work)
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
    _require(grads.shape[0] == params.shape[0], "grads must be like params")
    _require(work.shape[0] >= m and work.shape[1] == _work_per_row(&layout.c),
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
