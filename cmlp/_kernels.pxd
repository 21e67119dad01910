# Layer kernels of cmlp: one forward/backward pair per layer kind, over
# contiguous row-major buffers. Outputs come first; shapes are in comments.
# All are `noexcept nogil` and check nothing: callers validate at the Python
# boundary (cmlp.network, cmlp.checked_kernels).

from cython cimport floating
from libc.stdint cimport uint64_t

# Activation codes, shared with cmlp/_layout.py (ACTIVATIONS).
cpdef enum Activation:
    ACT_IDENTITY = 0
    ACT_RELU = 1
    ACT_TANH = 2
    ACT_SIGMOID = 3
    ACT_LEAKY_RELU = 4  # slope 0.01 for z < 0 (PyTorch's default)
    ACT_GELU = 5        # exact, z * Phi(z); its derivative needs z, not a

# Output/loss codes, shared with cmlp/_layout.py (OUTPUTS).
cpdef enum Output:
    OUT_SOFTMAX = 0     # softmax + cross-entropy, integer labels
    OUT_IDENTITY = 1    # identity + 1/(2m) sum of squares, float targets
    OUT_SIGMOID = 2     # sigmoid + binary cross-entropy, multi-label targets
    OUT_EXP = 3         # exp (log link) + half Poisson deviance, targets >= 0

# z (m, n_out) = a_prev (m, n_in) @ W (n_in, n_out) + b (n_out)
cdef void linear_forward(floating* z, const floating* a_prev,
                         const floating* W, const floating* b,
                         Py_ssize_t m, Py_ssize_t n_in,
                         Py_ssize_t n_out) noexcept nogil

# dW (n_in, n_out) = a_prev^T @ dz;  db (n_out) = sum over rows of dz;
# da_prev (m, n_in) = dz @ W^T, skipped when da_prev is NULL (first layer).
cdef void linear_backward(floating* da_prev, floating* dW, floating* db,
                          const floating* dz, const floating* a_prev,
                          const floating* W, Py_ssize_t m, Py_ssize_t n_in,
                          Py_ssize_t n_out) noexcept nogil

# The two halves of linear_backward, for a batch split over threads
# (cmlp._data_parallel): each thread's rows get their da_prev, and each
# thread then takes whole rows of dW over every share of the batch.
# Columns [c0, c1) of da_prev (m, n_in) = dz (m, n_out) @ W^T: those of
# W's rows only (all of them: 0, n_in).
cdef void linear_backward_input(floating* da_prev, const floating* dz, const floating* W,
                                Py_ssize_t m, Py_ssize_t n_in, Py_ssize_t n_out,
                                Py_ssize_t c0, Py_ssize_t c1) noexcept nogil
# Columns [c0, c1) of z (m, n_out) = a_prev[:, k0:k1] @ W[k0:k1, :] + b, for
# a_prev (m, n_in): a thread's part of a layer whose batch is too small to
# split by rows (all inputs: k0, k1 = 0, n_in), or the part of z that inputs
# [k0, k1) contribute (cmlp._unit_split: b is then zero for all but one part).
cdef void linear_forward_columns(floating* z, const floating* a_prev, const floating* W,
                                 const floating* b, Py_ssize_t m, Py_ssize_t n_in,
                                 Py_ssize_t n_out, Py_ssize_t c0, Py_ssize_t c1,
                                 Py_ssize_t k0, Py_ssize_t k1) noexcept nogil
# out (rows, n_out) = alpha * a_prev^T @ dz + beta * out, where a_prev is m
# rows of `rows` columns, lda apart (columns of a wider a_prev), dz (m, n_out)
# and out rows ld apart (ld >= n_out: columns of wider matrices): rows of dW
# (alpha 1), or of an SGD step in place on W (alpha -lr, beta 1).
cdef void weight_gradient_rows(floating* out, const floating* dz, const floating* a_prev,
                               floating alpha, floating beta, Py_ssize_t m,
                               Py_ssize_t rows, Py_ssize_t n_out, Py_ssize_t ld,
                               Py_ssize_t lda) noexcept nogil
# out (n_out) = beta * out + alpha * (sum over the m rows of dz, ld apart),
# added row by row as linear_backward does (so shares added in order give
# its bits).
cdef void bias_gradient(floating* out, const floating* dz, floating alpha, floating beta,
                        Py_ssize_t m, Py_ssize_t n_out, Py_ssize_t ld) noexcept nogil

# Backward fused with the SGD step, for plain SGD training:
# da_prev (m, n_in) = dz @ W^T with the *old* W (skipped when NULL), then
# W -= lr * a_prev^T @ dz and b -= lr * sum over rows of dz, in place.
cdef void linear_backward_sgd(floating* da_prev, floating* W, floating* b,
                              const floating* dz, const floating* a_prev,
                              floating lr, Py_ssize_t m, Py_ssize_t n_in,
                              Py_ssize_t n_out) noexcept nogil

# One row (m = 1) of a first layer (no da_prev): the SGD step of
# linear_backward_sgd, then z_next (n_out) = x_next (n_in) @ W + b with the
# updated W and b, bit for bit linear_forward's, in one pass over W.
cdef void linear_backward_sgd_next_forward(floating* z_next, floating* W, floating* b,
                                           const floating* dz, const floating* a_prev,
                                           floating lr, const floating* x_next,
                                           Py_ssize_t n_in, Py_ssize_t n_out) noexcept nogil

# Elementwise over n values; a may alias z, dz may alias da. The backward
# kernels take the forward *output* a (each of these activations has its
# derivative as a function of its output), except gelu_backward, which
# takes the input z.
cdef void relu_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil
cdef void relu_backward(floating* dz, const floating* a, const floating* da,
                        Py_ssize_t n) noexcept nogil
cdef void tanh_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil
cdef void tanh_backward(floating* dz, const floating* a, const floating* da,
                        Py_ssize_t n) noexcept nogil
cdef void sigmoid_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil
cdef void sigmoid_backward(floating* dz, const floating* a, const floating* da,
                           Py_ssize_t n) noexcept nogil
cdef void exp_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil
cdef void leaky_relu_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil
cdef void leaky_relu_backward(floating* dz, const floating* a, const floating* da,
                              Py_ssize_t n) noexcept nogil
cdef void gelu_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil
cdef void gelu_backward(floating* dz, const floating* z, const floating* da,
                        Py_ssize_t n) noexcept nogil
# Dispatch on an Activation code. For ACT_GELU, activation_backward's
# `a_or_z` must be z; for every other code, the output a.
cdef void activation_forward(int activation, floating* a, const floating* z,
                             Py_ssize_t n) noexcept nogil
cdef void activation_backward(int activation, floating* dz, const floating* a_or_z,
                              const floating* da, Py_ssize_t n) noexcept nogil

# Inverted dropout over n values: each is kept with probability 1 - rate and
# then scaled by 1 / (1 - rate), so the expected output equals a and nothing
# changes at predict time. mask (n) receives the factor (0 or 1 / (1 - rate));
# out may alias a. The keep decisions are a pure function of (seed, index):
# value i is dropped when the top 53 bits of the i-th SplitMix64 output of
# `seed` fall below rate * 2^53 (see dropout_seed).
cdef void dropout_forward(floating* out, floating* mask, const floating* a,
                          double rate, uint64_t seed, Py_ssize_t n) noexcept nogil
# da (n) = dout * mask; da may alias dout.
cdef void dropout_backward(floating* da, const floating* mask,
                           const floating* dout, Py_ssize_t n) noexcept nogil
# The seed of one layer's dropout mask at one training step.
cdef uint64_t dropout_seed(uint64_t key, uint64_t step, uint64_t layer) noexcept nogil
# The seed whose draw 0 is draw `index` of seed's stream (dropout_forward's
# draw i of seed s is draw 0 of s + i * the golden ratio 2^64 / phi): the
# seed of a part of a mask that starts at value `index`.
cdef inline uint64_t dropout_seed_at(uint64_t seed, uint64_t index) noexcept nogil:
    return seed + index * <uint64_t> 0x9E3779B97F4A7C15ULL

# The output-layer and loss kernels (cmlp._losses), here too for code that
# cimports them from cmlp._kernels.
from cmlp._losses cimport (mse_backward, mse_loss, poisson_backward, poisson_loss,
                           sigmoid_bce_backward, sigmoid_bce_loss, softmax_forward,
                           softmax_xent_backward, softmax_xent_loss)
