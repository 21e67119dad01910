# The feature split of a training step (see _feature_split.pyx).

from cmlp._data_parallel cimport SplitStep
from cmlp._engine cimport Layout

# Whether a network trains on `threads` threads with its first layer split
# by input features (the rule: _feature_split.pyx).
cdef bint by_features(const Layout* layout, int threads) noexcept nogil

# The multiply-adds a thread needs for a step to split this way
# (cmlp._pool.threads_for_work; why this bar: _feature_split.pyx).
cdef enum:
    FEATURE_MIN_WORK = 1 << 20

# Per-task blocks (features, partial z1) for up to `copies` threads and
# batches of up to `batch` rows, into s; MemoryError.
cdef int feature_split_allocate(SplitStep* s, int copies, Py_ssize_t batch) except -1
cdef void feature_split_free(SplitStep* s) noexcept nogil

# Phase 1 (A and B): the batch's rows gathered, forward and the deltas of
# every layer; returns the batch's weighted loss sum, *hits its hits.
cdef double feature_split_forward_backward(SplitStep* s, int threads,
                                           Py_ssize_t* hits) noexcept nogil

# Phase 2, as split_weight_gradients: the gradient into grads, and with
# step the optimizer step (or fused SGD straight into W and b). With step
# and next_order (the next batch's rows, as many as this batch's), each task
# then runs that batch's phase A, which the next forward_backward with
# s.order == next_order skips; any other call recomputes it.
cdef void feature_split_weight_gradients(SplitStep* s, int threads, bint step,
                                         const Py_ssize_t* next_order) noexcept nogil
