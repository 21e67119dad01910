"""One layer of the forward or backward pass on a block of its units, for a
batch split over threads by columns (cmlp._data_parallel, cmlp._unit_split).

Design
------
* The workspace and deltas are laid out as cmlp._engine's for the batch's m
  rows: layer l's slot at m * sum(sizes[1:l+1]), row i at i * sizes[l+1].
  A task writes only its columns [c0, c1) of a layer's slot (and of its
  dropout mask and `next` buffer), so tasks on other columns run at once.
* Each computes what forward_pass / backward_deltas compute for those
  columns, with the same elementwise kernels and the same dropout draws
  (value j of row i is draw i * n_out + j of the layer's mask): the bits of
  the elementwise parts do not depend on the split.
"""
from cython cimport floating
from libc.stdint cimport uint64_t

from cmlp._engine cimport Layout, layer_input
from cmlp._kernels cimport (ACT_GELU, activation_backward, activation_forward, dropout_backward,
                            dropout_forward, dropout_seed, dropout_seed_at, linear_backward_input,
                            linear_forward_columns)


cdef inline Py_ssize_t _slot_offset(const Layout* layout, Py_ssize_t l) noexcept nogil:
    # Values per row before layer l's slot: sum(sizes[1:l+1]).
    cdef Py_ssize_t i, offset = 0
    for i in range(1, l + 1):
        offset += layout.sizes[i]
    return offset


cdef void layer_forward_columns(floating* work, const floating* params, const Layout* layout,
                                const floating* X, Py_ssize_t m, Py_ssize_t l, Py_ssize_t c0,
                                Py_ssize_t c1, bint train, uint64_t dropout_key,
                                uint64_t step, bint z_done=False) noexcept nogil:
    cdef Py_ssize_t i, n_out = layout.sizes[l + 1], width = c1 - c0
    cdef Py_ssize_t offset = _slot_offset(layout, l)
    cdef floating* slot = work + m * offset
    cdef floating* next_ = work + m * (layout.act_width + offset)
    cdef floating* mask = work + m * (layout.act_width + layout.hidden_width + offset)
    cdef floating* a
    cdef uint64_t seed
    if not z_done:
        linear_forward_columns(slot, X if l == 0 else layer_input(work, layout, m, l, train),
                               params + layout.w_offsets[l], params + layout.b_offsets[l], m,
                               layout.sizes[l], n_out, c0, c1, 0, layout.sizes[l])
    if l == layout.n_layers - 1:
        return
    # As forward_pass, on these columns of each row (the same elementwise
    # kernels, the same dropout draws: value j of row i is draw i * n_out + j).
    a = next_ if layout.activations[l] == ACT_GELU else slot
    for i in range(m):
        activation_forward(layout.activations[l], a + i * n_out + c0, slot + i * n_out + c0,
                           width)
    if train and layout.dropout[l] > 0:
        seed = dropout_seed(dropout_key, step, l)
        for i in range(m):
            dropout_forward(next_ + i * n_out + c0, mask + i * n_out + c0, a + i * n_out + c0,
                            layout.dropout[l],
                            dropout_seed_at(seed, i * n_out + c0), width)


cdef void layer_delta_columns(floating* deltas, const floating* params, floating* work,
                              const Layout* layout, Py_ssize_t m, Py_ssize_t l,
                              Py_ssize_t c0, Py_ssize_t c1, bint train) noexcept nogil:
    cdef Py_ssize_t i, n = layout.sizes[l], width = c1 - c0
    cdef Py_ssize_t offset = _slot_offset(layout, l - 1)
    cdef floating* da = deltas + m * offset
    cdef floating* slot = work + m * offset
    cdef floating* mask = work + m * (layout.act_width + layout.hidden_width + offset)
    linear_backward_input(da, deltas + m * (offset + n), params + layout.w_offsets[l], m, n,
                          layout.sizes[l + 1], c0, c1)
    for i in range(m):
        if train and layout.dropout[l - 1] > 0:
            dropout_backward(da + i * n + c0, mask + i * n + c0, da + i * n + c0, width)
        activation_backward(layout.activations[l - 1], da + i * n + c0, slot + i * n + c0,
                            da + i * n + c0, width)
