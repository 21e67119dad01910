# One layer on a block of its units (see _layer_columns.pyx).

from cython cimport floating
from libc.stdint cimport uint64_t

from cmlp._engine cimport Layout

# A layer split by columns instead, for a batch too small to split by rows
# (cmlp._data_parallel), in a workspace (and deltas) laid out for its m
# rows: columns [c0, c1) of layer l's forward (z, then for a hidden layer
# its activation and dropout, as forward_pass computes them), once layer
# l - 1 is complete; X is the batch's input, read when l == 0. z_done:
# those columns of z are in the slot already (cmlp._unit_split's sums of
# partial pre-activations): the activation (and dropout) only.
cdef void layer_forward_columns(floating* work, const floating* params, const Layout* layout,
                                const floating* X, Py_ssize_t m, Py_ssize_t l, Py_ssize_t c0,
                                Py_ssize_t c1, bint train, uint64_t dropout_key,
                                uint64_t step, bint z_done=*) noexcept nogil
# Columns [c0, c1) of layer l - 1's deltas (l >= 1), once layer l's are
# complete: (dz_l @ W_l^T) times the activation's derivative (and dropout's
# mask), as backward_deltas computes them.
cdef void layer_delta_columns(floating* deltas, const floating* params, floating* work,
                              const Layout* layout, Py_ssize_t m, Py_ssize_t l,
                              Py_ssize_t c0, Py_ssize_t c1, bint train) noexcept nogil
