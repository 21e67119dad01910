# Optimizer steps over flat buffers (see _optim.pyx). All elementwise over n
# values, in place on params and the optimizer's state.

from cython cimport floating

cpdef enum OptimizerKind:
    OPT_SGD = 0
    OPT_MOMENTUM = 1
    OPT_NESTEROV = 2
    OPT_ADAM = 3
    OPT_ADAM_STEP = 4
    OPT_MOMENTUM_STEP = 5
    OPT_NESTEROV_STEP = 6

# params (n) -= lr * grads (n): plain SGD.
cdef void sgd_update(floating* params, const floating* grads, floating lr,
                     Py_ssize_t n) noexcept nogil

# grads (n) += weight_decay * params (n): the gradient of (wd/2) ||W||^2.
cdef void l2_grad(floating* grads, const floating* params, floating weight_decay,
                  Py_ssize_t n) noexcept nogil

# velocity = momentum * velocity + grads; then
# params -= lr * velocity                      (heavy ball), or
# params -= lr * (grads + momentum * velocity) (Nesterov).
cdef void momentum_update(floating* params, floating* velocity,
                          const floating* grads, floating lr, floating momentum,
                          bint nesterov, Py_ssize_t n) noexcept nogil

# Adam (Kingma & Ba), step t >= 1:
# m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
# params -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
cdef void adam_update(floating* params, floating* m, floating* v,
                      const floating* grads, floating lr, floating beta1,
                      floating beta2, floating eps, long long t,
                      Py_ssize_t n) noexcept nogil

# Adam with the bias corrections folded into the step size (Kingma & Ba's
# "efficient" form, scikit-learn's): the same moments, then
# params -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
cdef void adam_step_update(floating* params, floating* m, floating* v,
                           const floating* grads, floating lr, floating beta1,
                           floating beta2, floating eps, long long t,
                           Py_ssize_t n) noexcept nogil

# Momentum with the rate inside the velocity (scikit-learn's SGD):
# velocity = momentum * velocity - lr * grads; then
# params += velocity                           (heavy ball), or
# params += momentum * velocity - lr * grads   (Nesterov).
# Equal to momentum_update at a constant rate; not when the rate changes.
cdef void momentum_step_update(floating* params, floating* velocity,
                               const floating* grads, floating lr, floating momentum,
                               bint nesterov, Py_ssize_t n) noexcept nogil
