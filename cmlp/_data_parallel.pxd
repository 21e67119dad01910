# One training step split over worker threads (see _data_parallel.pyx).

from cython cimport floating
from libc.stdint cimport int32_t, uint64_t

from cmlp._engine cimport Layout

cdef enum:
    MAX_SHARES = 64         # one a thread, CMLP_POOL_MAX_THREADS threads

# A batch of m dense rows cut into `shares` consecutive shares. Pointers are
# void* so that one struct serves float and double (`single`).
cdef struct SplitStep:
    const Layout* layout
    bint single                     # float32 (else float64)
    void* params                    # (n_params) INOUT at the step
    void* grads                     # (n_params) OUT the batch's gradient (unless fused)
    void* work                      # scratch (batch, work_per_row): regions for m rows
    Py_ssize_t work_per_row
    void* deltas                    # scratch (batch, act_width), laid out like work
    # The data (all rows) and this batch's gathered copy of it.
    const void* X                   # IN (n, d)
    const int32_t* labels           # IN (n) for softmax, else NULL
    const void* targets             # IN (n, k), else NULL
    const void* weights             # IN (n), or NULL
    void* batch_X                   # scratch (batch, d)
    int32_t* batch_labels           # scratch (batch) or NULL
    void* batch_targets             # scratch (batch, k) or NULL
    void* batch_weights             # scratch (batch) or NULL
    const Py_ssize_t* order         # IN (m): this batch's rows
    Py_ssize_t d, k, m, shares
    uint64_t dropout_key, batch_index
    double weight_total             # the batch's weight (m when unweighted)
    double gradient_scale
    double loss[MAX_SHARES]         # OUT per share: weighted loss sums
    Py_ssize_t hits[MAX_SHARES]     # OUT per share
    # The optimizer step.
    int kind
    double lr, momentum, beta1, beta2, eps, weight_decay
    long long t
    void* state1                    # INOUT (n_params) or NULL
    void* state2                    # INOUT (n_params) or NULL
    bint fused_sgd                  # plain SGD applied to W, b by the gradient gemms
    bint step_now                   # set by split_weight_gradients for its tasks
    int threads                     # likewise
    Py_ssize_t layer                # the layer of a column job
    # The feature split (cmlp._feature_split), when allocated: per task its
    # input features of the batch (batch, width), its partial first-layer
    # pre-activations (batch, sizes[1]) and, with a second hidden layer, its
    # partial z2 (batch, sizes[2]: cmlp._unit_split).
    void* copies
    Py_ssize_t copy_stride          # elements from one task's copy to the next
    Py_ssize_t partial_at           # where a copy's partial z1 starts
    Py_ssize_t partial2_at          # where a copy's partial z2 starts
    bint by_units                   # this step's phase B runs by units
    int n_copies
    Py_ssize_t feature_blocks       # tasks of phases A and 2 (input feature blocks)
    const Py_ssize_t* phase_a_next  # IN phase 2's next batch (m rows) for phase A, or NULL
    const Py_ssize_t* phase_a_done  # the batch whose phase A the copies hold, or NULL

# How many shares a batch of m rows is cut into for `threads` threads.
cdef Py_ssize_t shares_for(int threads, Py_ssize_t m) noexcept nogil

# Phase 1: the batch's rows gathered, forward, and the deltas of every
# layer, on the threads: share by share (a share's rows through forward_pass
# and backward_deltas, scaled to its part of the batch's weighted mean), or,
# for a batch of few rows (the rule: _data_parallel.pyx), layer by layer,
# each split by columns. Returns the batch's weighted loss sum; *hits its
# hits.
cdef double split_forward_backward(SplitStep* s, int threads,
                                   Py_ssize_t* hits) noexcept nogil

# Phase 2, over blocks of rows of each W (and its b) on the threads: the
# gradient over every share (added in share order) into grads, then, with
# step, the optimizer step on the block; with step and fused_sgd, the SGD
# step straight into W and b instead (no gradient written).
cdef void split_weight_gradients(SplitStep* s, int threads, bint step) noexcept nogil

# Share p of the batch: rows [r0, r0 + rows), consecutive, the last ones
# larger by a row when m does not divide.
cdef void share_rows(const SplitStep* s, Py_ssize_t p, Py_ssize_t* r0,
                     Py_ssize_t* rows) noexcept nogil

# Share p through forward_pass and backward_deltas, in the whole batch's
# layout: its labels (targets, weights) gathered, its loss and hits into
# s.loss[p], s.hits[p]. Its rows of X are gathered first; with layers_done
# (forward_pass's) 1, its rows of z1 are in layer 1's slot of s.work
# instead; with 2, layer 1 is done and its rows of z2 are in layer 2's slot,
# and the deltas stop at layer 2's.
cdef void share_pass(SplitStep* s, Py_ssize_t p, Py_ssize_t layers_done) noexcept nogil

# Block j of phase 2's blocks of layers first.. (rows of W_l, over all m
# rows, from this workspace, deltas and batch input), as split_weight_gradients
# runs them; n_weight_blocks(s, first) of them.
cdef Py_ssize_t n_weight_blocks(const SplitStep* s, Py_ssize_t first) noexcept nogil
cdef void weight_block(SplitStep* s, Py_ssize_t j, Py_ssize_t first, const void* work,
                       const void* deltas, const void* batch_X) noexcept nogil
# Rows [i0, i1) of W_l (and b_l when i0 == 0) as one of those blocks.
cdef void weight_rows(SplitStep* s, Py_ssize_t l, Py_ssize_t i0, Py_ssize_t i1,
                      const void* work, const void* deltas, const void* batch_X) noexcept nogil

# The optimizer step (s's kind, lr, ...) on parameters [p0, p1).
cdef void step_range(SplitStep* s, Py_ssize_t p0, Py_ssize_t p1) noexcept nogil

# The optimizer step alone on slices of the parameters (after a gradient
# hook has seen grads).
cdef void split_optimizer_step(SplitStep* s, int threads) noexcept nogil

# The optimizer step on parameters [p0, p1) (weight decay on the weights in
# that range only): every optimizer is elementwise, so slices give the bits
# of one pass over all n_params.
cdef void optimizer_step_range(floating* params, floating* grads, floating* state1,
                               floating* state2, const Layout* layout, int kind,
                               floating lr, floating momentum, floating beta1,
                               floating beta2, floating eps, floating weight_decay,
                               long long step, Py_ssize_t p0, Py_ssize_t p1) noexcept nogil
