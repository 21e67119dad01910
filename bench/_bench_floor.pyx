"""GEMM floors for bench/: of a training epoch, and of a forward pass.

Design: runs, for every mini-batch of an epoch, exactly the matrix products a
training step cannot avoid -- per layer one forward gemm and one weight-
gradient gemm, and one input-gradient gemm for every layer but the first
(8 calls for 784-128-64-10) -- on the real shapes, through the same BLAS
wrappers as the engine, and nothing else: no gather, bias, activation, loss
or update. Every gemm reads its input batch from one buffer that stays in
cache (the first `batch` rows of X): what the gemms cost alone, without
fetching the batch. Its time is the bar cmlp's epoch is measured against.
gemm_floor_forward does the same for prediction: the forward gemms of a whole
call in one product per layer.
"""
from libc.stdlib cimport free, malloc
from cython cimport floating

from cmlp._blas cimport gemm
from cmlp._engine cimport NetLayout


cdef void _free_all(void* a, void* b, void* c, void* d) noexcept nogil:
    free(a)
    free(b)
    free(c)
    free(d)


def gemm_floor_epoch(floating[::1] params, NetLayout layout,
                     const floating[:, ::1] X,   # IN (n, sizes[0]): rows 0..n-1 in order
                     Py_ssize_t batch):
    """Run the unavoidable GEMMs of one epoch of mini-batch training over
    X.shape[0] rows, in batches of `batch` (the last one smaller)."""
    cdef Py_ssize_t n = X.shape[0], start = 0, m, l, n_in, n_out
    cdef Py_ssize_t L = layout.c.n_layers, width = layout.c.max_width
    cdef Py_ssize_t widest = max(width, layout.c.sizes[0])
    # act: every layer's output; delta/dx: a delta and an input gradient;
    # grad: one weight gradient (the largest).
    cdef floating* act
    cdef floating* delta
    cdef floating* dx
    cdef floating* grad
    cdef const floating* a_prev
    cdef floating* a
    if batch < 1:                   # would loop forever without the GIL
        raise ValueError(f"batch must be >= 1, got {batch}")
    layout.check_call(params.shape[0], n, X.shape[1])
    act = <floating*> malloc(batch * layout.c.act_width * sizeof(floating))
    delta = <floating*> malloc(batch * widest * sizeof(floating))
    dx = <floating*> malloc(batch * widest * sizeof(floating))
    grad = <floating*> malloc(layout.c.n_params * sizeof(floating))
    if act == NULL or delta == NULL or dx == NULL or grad == NULL:
        _free_all(act, delta, dx, grad)
        raise MemoryError()
    for l in range(batch * widest):
        delta[l] = 0
    with nogil:
        while start < n:
            m = min(batch, n - start)
            a_prev = &X[0, 0]
            a = act
            for l in range(L):
                n_in, n_out = layout.c.sizes[l], layout.c.sizes[l + 1]
                gemm(False, False, <int> m, <int> n_out, <int> n_in, <floating> 1,
                     a_prev, <int> n_in, &params[layout.c.w_offsets[l]], <int> n_out,
                     <floating> 0, a, <int> n_out)
                a_prev = a
                a += m * n_out
            for l in range(L - 1, -1, -1):
                n_in, n_out = layout.c.sizes[l], layout.c.sizes[l + 1]
                a_prev = &X[0, 0] if l == 0 else act + m * _width_before(layout, l)
                gemm(True, False, <int> n_in, <int> n_out, <int> m, <floating> 1,
                     a_prev, <int> n_in, delta, <int> n_out, <floating> 0, grad,
                     <int> n_out)
                if l > 0:
                    gemm(False, True, <int> m, <int> n_in, <int> n_out, <floating> 1,
                         delta, <int> n_out, &params[layout.c.w_offsets[l]], <int> n_out,
                         <floating> 0, dx, <int> n_in)
            start += m
    _free_all(act, delta, dx, grad)


cdef inline Py_ssize_t _width_before(NetLayout layout, Py_ssize_t l) noexcept nogil:
    # Offset (per row) of layer l's input activation a_l in the act buffer.
    cdef Py_ssize_t j, total = 0
    for j in range(1, l):
        total += layout.c.sizes[j]
    return total


def gemm_floor_forward(floating[::1] params, NetLayout layout,
                       const floating[:, ::1] X,   # IN (n, sizes[0])
                       Py_ssize_t layers):
    """Run the matrix products of a forward pass over all n rows of X and
    nothing else: for each of the first `layers` layers one gemm (n, n_in) @
    (n_in, n_out), into scratch. No bias, activation, softmax or check: what
    the products cost through cmlp's BLAS, the bar for `Network.forward`.
    layers=1 gives the first layer's gemm alone."""
    cdef Py_ssize_t n = X.shape[0], l, n_in, n_out
    cdef floating* act
    cdef floating* a
    cdef const floating* a_prev
    if not 1 <= layers <= layout.c.n_layers:
        raise ValueError(f"layers must be in 1..{layout.c.n_layers}, got {layers}")
    if n >= 2**31:                  # one gemm over all rows: n is a blas_int
        raise ValueError(f"at most 2**31 - 1 rows, got {n}")
    layout.check_call(params.shape[0], n, X.shape[1])
    act = <floating*> malloc(n * layout.c.act_width * sizeof(floating))
    if act == NULL:
        raise MemoryError()
    with nogil:
        a_prev = &X[0, 0]
        a = act
        for l in range(layers):
            n_in, n_out = layout.c.sizes[l], layout.c.sizes[l + 1]
            gemm(False, False, <int> n, <int> n_out, <int> n_in, <floating> 1,
                 a_prev, <int> n_in, &params[layout.c.w_offsets[l]], <int> n_out,
                 <floating> 0, a, <int> n_out)
            a_prev = a
            a += n * n_out
    free(act)
