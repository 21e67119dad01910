# Whole-network passes over one flat parameter buffer (see _engine.pyx).

from cython cimport floating
from libc.stdint cimport int32_t

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
    int output                     # OUT_SOFTMAX or OUT_IDENTITY
    Py_ssize_t n_params
    Py_ssize_t act_width           # sum(sizes[1:]): activations kept per row
    Py_ssize_t max_width           # max(sizes[1:]): one delta buffer per row

# work (m * (act_width + 2 * max_width)): a_1 .. a_L, then two delta buffers.
# Returns a pointer to the raw outputs a_L (m, sizes[n_layers]) inside work.
cdef floating* forward_pass(floating* work, const floating* params,
                            const Layout* layout, const floating* X,
                            Py_ssize_t m) noexcept nogil

# After forward_pass on the same work/X/m: the gradient of the batch-mean
# loss into grads; or, with grads == NULL, the plain-SGD step at rate sgd_lr
# applied to params in place as it goes (linear_backward_sgd), with no
# gradient buffer (and nothing changed if the loss is non-finite). Returns
# the loss *sum* over the m rows.
cdef double backward_pass(floating* grads, floating* params, floating* work,
                          const Layout* layout, const floating* X,
                          const int32_t* labels, const floating* targets,
                          Py_ssize_t m, floating sgd_lr,
                          Py_ssize_t* n_correct) noexcept nogil

# 1 if all n values are finite (no NaN, no inf), else 0.
cdef bint all_finite(const floating* x, Py_ssize_t n) noexcept nogil


cdef class NetLayout:
    cdef Layout c
    cdef readonly object sizes, w_offsets, b_offsets, activations
