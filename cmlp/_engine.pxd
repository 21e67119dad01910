# Whole-network passes over one flat parameter buffer (see _engine.pyx).

from cython cimport floating
from libc.stdint cimport int32_t, uint64_t

from cmlp._sparse cimport CsrRows

# Where each layer lives in the flat buffers. Layer l maps width sizes[l] to
# sizes[l + 1]; its W (sizes[l], sizes[l+1]) starts at w_offsets[l] and its
# b (sizes[l+1]) at b_offsets[l], in the parameter buffer and, identically,
# in the gradient buffer.
cdef struct Layout:
    Py_ssize_t n_layers
    const Py_ssize_t* sizes        # (n_layers + 1)
    const Py_ssize_t* w_offsets    # (n_layers)
    const Py_ssize_t* b_offsets    # (n_layers)
    const int32_t* activations     # (n_layers); the last is ACT_IDENTITY
    const double* dropout          # (n_layers): drop rate after each layer; the last is 0
    int output                     # OUT_SOFTMAX, OUT_IDENTITY, OUT_SIGMOID or OUT_EXP
    Py_ssize_t n_params
    Py_ssize_t act_width           # sum(sizes[1:]): activations kept per row
    Py_ssize_t hidden_width        # sum(sizes[1:-1]): hidden units per row
    Py_ssize_t max_width           # max(sizes[1:]): one delta buffer per row

# The workspace of m rows, work (m * work_per_row), work_per_row =
# act_width + 2 * hidden_width + 2 * max_width, holds in turn:
#   slots  (m * act_width)     layer l's activation a_l, or z_l for a gelu
#                              layer (the input its derivative needs); the
#                              raw outputs last
#   next   (m * hidden_width)  what hidden layer l hands on when that is not
#                              its slot: gelu(z_l), and/or a_l after dropout
#   masks  (m * hidden_width)  the dropout factors of hidden layer l
#   two delta buffers (m * max_width each)
# Hidden layer l's part of each region starts at m * sum(sizes[1:l+1]).
#
# train: apply dropout (layout.dropout) with masks drawn from dropout_key at
# step `step`; otherwise the deterministic (predict) pass.
# Returns a pointer to the raw outputs (m, sizes[n_layers]) inside work.
# If first_finite is given, it is set to whether layer 1's pre-activations
# z1 are all finite: a NaN or infinity anywhere in a row of X makes that
# row of z1 non-finite (IEEE sums and products keep it; the weights are
# finite), so this checks X at a sixth of the reads for MNIST's 784 -> 128.
# sparse: X is these CSR rows instead (X is then NULL), e.g. TF-IDF features.
# layers_done: the z of the first layers_done layers is already in their
# slots, all but the last of them activated: 1 for layer 1's z1 (put there
# by backward_pass's x_next, or cmlp._feature_split's partial sums), 2 for
# cmlp._unit_split's z2; start from the last one's activation.
# row0, region_rows: these m rows are rows row0.. of a training batch of
# region_rows rows (a worker thread's share, cmlp._data_parallel) whose
# workspace is laid out for all region_rows of them: each share's rows land
# where the whole batch's would, and draw that part of the batch's dropout
# masks, so nothing depends on how a batch is split. region_rows 0: work is
# laid out for these m rows alone (row0 still picks the masks). panels
# (float32 only): every layer's W packed by cmlp_pack_panels, for
# cmlp/_panel_gemm.h's product in place of BLAS (inference).
cdef floating* forward_pass(floating* work, const floating* params,
                            const Layout* layout, const floating* X,
                            Py_ssize_t m, bint train, uint64_t dropout_key,
                            uint64_t step, bint* first_finite=*,
                            Py_ssize_t layers_done=*,
                            const CsrRows* sparse=*,
                            Py_ssize_t row0=*, Py_ssize_t region_rows=*,
                            float** panels=*) noexcept nogil

# After forward_pass on the same work/X/m/train: the gradient of the loss's
# (weighted) batch mean into grads; or, with grads == NULL, the plain-SGD
# step at rate sgd_lr applied to params in place as it goes
# (linear_backward_sgd), with no gradient buffer (and nothing changed if the
# loss is non-finite). weights (m) or NULL. Returns the (weighted) loss *sum*.
# x_next (fused SGD at m == 1 only, else NULL): the next row to train on; its
# layer-1 pre-activation is computed in the same pass over W1 as the update
# and left in layer 1's slot, for forward_pass(..., layers_done=1).
# sparse: the CSR rows that were forward_pass's input (X NULL); needs grads.
# gradient_scale multiplies every gradient (through dL/dz_out, m x k values:
# no pass over the gradient buffer), e.g. a data-parallel rank's share.
cdef double backward_pass(floating* grads, floating* params, floating* work,
                          const Layout* layout, const floating* X,
                          const int32_t* labels, const floating* targets,
                          const floating* weights, Py_ssize_t m, bint train,
                          floating sgd_lr, Py_ssize_t* n_correct,
                          const floating* x_next=*, floating gradient_scale=*,
                          const CsrRows* sparse=*) noexcept nogil

# backward_pass's deltas without its gradients, for a share of a batch
# split over threads (cmlp._data_parallel): after forward_pass(work, ...,
# m, train, row0=row0, region_rows=M), dL/dz of every layer l >= lowest
# (0-based; the layers below are left to the caller) for these rows into
# deltas (M * act_width, laid out like the slots: layer l's region at
# M * sum(sizes[1:l+1]), these rows from row0 on), times gradient_scale.
# Returns the (weighted) loss sum; nothing more is computed when it is not
# finite.
cdef double backward_deltas(floating* deltas, const floating* params, floating* work,
                            const Layout* layout, const int32_t* labels,
                            const floating* targets, const floating* weights, Py_ssize_t m,
                            bint train, floating gradient_scale, Py_ssize_t* n_correct,
                            Py_ssize_t row0, Py_ssize_t region_rows,
                            Py_ssize_t lowest=*) noexcept nogil

# backward_deltas' first step alone: the output layer's deltas for these
# rows (loss backward, times gradient_scale); returns the loss sum.
cdef double output_deltas(floating* deltas, floating* work, const Layout* layout,
                          const int32_t* labels, const floating* targets,
                          const floating* weights, Py_ssize_t m, floating gradient_scale,
                          Py_ssize_t* n_correct, Py_ssize_t row0,
                          Py_ssize_t region_rows) noexcept nogil

# Layer l's input (l >= 1) in a workspace after forward_pass(work, ..., m,
# train): (m, sizes[l]), what layer l - 1 handed on.
cdef const floating* layer_input(const floating* work, const Layout* layout, Py_ssize_t m,
                                 Py_ssize_t l, bint train) noexcept nogil

# ValueError("engine call with buffers that do not fit: <what>") unless ok.
cdef int require(bint ok, str what) except -1

# Workspace values per batch row (see above).
cdef Py_ssize_t work_per_row(const Layout* layout) noexcept nogil

# Seconds on the monotonic clock.
cdef double monotonic_seconds() noexcept nogil

# For long loops run without the GIL: when SIGNAL_INTERVAL has passed since
# *last_check, take the GIL and run pending signal handlers; -1 with the
# handler's exception (KeyboardInterrupt) set, else 0.
cdef int check_signals(double* last_check) except -1 nogil

# 1 if all n values are finite (no NaN, no inf), else 0.
cdef bint all_finite(const floating* x, Py_ssize_t n) noexcept nogil


cdef class NetLayout:
    cdef Layout c
    cdef readonly object sizes, w_offsets, b_offsets, activations, dropout
    # The O(1) checks of the def entry points that take raw buffers (they are
    # reachable from Python, so a wrong buffer is a ValueError, not a crash):
    # parameter count, rows >= 1 and input width; labels (n, in [0, k)) for
    # softmax, else targets (n, k); weights (n) or (0).
    cdef int check_call(self, Py_ssize_t n_params, Py_ssize_t rows,
                        Py_ssize_t features) except -1
    cdef int check_data(self, Py_ssize_t n, const int32_t[::1] labels,
                        Py_ssize_t target_rows, Py_ssize_t target_cols,
                        Py_ssize_t n_weights) except -1
