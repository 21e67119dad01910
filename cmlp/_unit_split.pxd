# Phase B of a feature-split step by the units of hidden layer 1 (see
# _unit_split.pyx).

from cython cimport floating
from libc.string cimport memcpy

from cmlp._data_parallel cimport SplitStep
from cmlp._engine cimport Layout

# Rows [r0, r1), columns [c0, c1) of a layer's pre-activations (m, width),
# whose slot starts `slot` values into s.work: the sum, in task order, of
# the feature tasks' partial ones (`at` values into each task's copy; task
# 0's holds the bias). Phase B's z1 by rows, job 1's by units, job 2's z2.
cdef inline void sum_partials(SplitStep* s, Py_ssize_t at, Py_ssize_t slot, Py_ssize_t width,
                              Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0, Py_ssize_t c1,
                              floating* dtype_) noexcept nogil:
    cdef Py_ssize_t i, j, t
    cdef floating* z
    cdef const floating* partial
    for i in range(r0, r1):
        z = <floating*> s.work + slot + i * width + c0
        memcpy(z, <const floating*> s.copies + at + i * width + c0, (c1 - c0) * sizeof(floating))
        for t in range(1, s.feature_blocks):
            partial = <const floating*> s.copies + t * s.copy_stride + at + i * width + c0
            for j in range(c1 - c0):
                z[j] += partial[j]

# Whether a step of m rows in `tasks` feature tasks runs phase B by units.
cdef bint by_units(const Layout* layout, int tasks, Py_ssize_t m) noexcept nogil

# After phase A: z1 and z2 by units, then the rest of the forward pass and
# the deltas down to dz2 in s.shares row shares (loss and hits per share in
# s.loss, s.hits).
cdef void unit_forward(SplitStep* s, int threads) noexcept nogil

# dz1 by units, the rows of dW2 by units (stepped with s.step_now), the
# blocks of the layers after layer 2. Phase 2's rows of W1 follow.
cdef void unit_weight_gradients(SplitStep* s, int threads) noexcept nogil
