# Phase B of a feature-split step by the units of hidden layer 1 (see
# _unit_split.pyx).

from cmlp._data_parallel cimport SplitStep
from cmlp._engine cimport Layout

# Whether a step of m rows in `tasks` feature tasks runs phase B by units.
cdef bint by_units(const Layout* layout, int tasks, Py_ssize_t m) noexcept nogil

# After phase A: z1 and z2 by units, then the rest of the forward pass and
# the deltas down to dz2 in s.shares row shares (loss and hits per share in
# s.loss, s.hits).
cdef void unit_forward(SplitStep* s, int threads) noexcept nogil

# dz1 by units, the rows of dW2 by units (stepped with s.step_now), the
# blocks of the layers after layer 2. Phase 2's rows of W1 follow.
cdef void unit_weight_gradients(SplitStep* s, int threads) noexcept nogil
