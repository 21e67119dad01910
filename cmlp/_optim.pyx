"""Optimizer steps as fused C loops over the flat parameter buffer.

Design
------
* One pass over params, gradients and state per step: each optimizer is a
  single elementwise loop (no temporaries), run under nogil by the engine
  after the backward pass has filled the gradient buffer.
* Optimizer state lives in flat buffers with the parameters' layout, so it
  is saved with the model and restored for bit-identical resumption.
* Conventions follow PyTorch's SGD (velocity accumulates raw gradients,
  dampening 0) and Adam (bias-corrected moments, eps outside the sqrt);
  momentum_step_update and adam_step_update are scikit-learn's SGD (the
  rate inside the velocity) and Adam (the corrections in the step
  size, so eps is added to the uncorrected root), computed in its order.
* Each kernel has a NumPy twin of the same name in cmlp/reference.py.
"""
from libc.math cimport pow, sqrt, sqrtf


cdef void sgd_update(floating* params, const floating* grads, floating lr,
                     Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        params[i] -= lr * grads[i]


cdef void l2_grad(floating* grads, const floating* params, floating weight_decay,
                  Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        grads[i] += weight_decay * params[i]


cdef void momentum_update(floating* params, floating* velocity,
                          const floating* grads, floating lr, floating momentum,
                          bint nesterov, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating vel
    if nesterov:
        for i in range(n):
            vel = momentum * velocity[i] + grads[i]
            velocity[i] = vel
            params[i] -= lr * (grads[i] + momentum * vel)
    else:
        for i in range(n):
            vel = momentum * velocity[i] + grads[i]
            velocity[i] = vel
            params[i] -= lr * vel


cdef void adam_update(floating* params, floating* m, floating* v,
                      const floating* grads, floating lr, floating beta1,
                      floating beta2, floating eps, long long t,
                      Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g, m_hat, v_hat
    # The bias corrections are computed once per step, in double.
    cdef floating c1 = <floating> (1.0 - pow(beta1, <double> t))
    cdef floating c2 = <floating> (1.0 - pow(beta2, <double> t))
    for i in range(n):
        g = grads[i]
        m[i] = beta1 * m[i] + (1 - beta1) * g
        v[i] = beta2 * v[i] + (1 - beta2) * g * g
        m_hat = m[i] / c1
        v_hat = v[i] / c2
        if floating is float:
            params[i] -= lr * m_hat / (sqrtf(v_hat) + eps)
        else:
            params[i] -= lr * m_hat / (sqrt(v_hat) + eps)


cdef void momentum_step_update(floating* params, floating* velocity,
                               const floating* grads, floating lr, floating momentum,
                               bint nesterov, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating vel
    for i in range(n):
        vel = momentum * velocity[i] - lr * grads[i]
        velocity[i] = vel
        if nesterov:
            params[i] += momentum * vel - lr * grads[i]
        else:
            params[i] += vel


cdef void adam_step_update(floating* params, floating* m, floating* v,
                           const floating* grads, floating lr, floating beta1,
                           floating beta2, floating eps, long long t,
                           Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g, m_i, v_i
    # lr_t as scikit-learn computes it, in double: lr * sqrt(1 - b2^t) / (1 - b1^t).
    cdef floating lr_t = <floating> (lr * sqrt(1.0 - pow(beta2, <double> t))
                                     / (1.0 - pow(beta1, <double> t)))
    for i in range(n):
        # Locals, so the compiler need not reload m and v after each store
        # (the buffers might alias, as far as it knows).
        g = grads[i]
        m_i = beta1 * m[i] + (1 - beta1) * g
        v_i = beta2 * v[i] + (1 - beta2) * (g * g)
        m[i] = m_i
        v[i] = v_i
        if floating is float:
            params[i] -= lr_t * m_i / (sqrtf(v_i) + eps)
        else:
            params[i] -= lr_t * m_i / (sqrt(v_i) + eps)


# The codes as Python sees them (cmlp.optimizers picks the C step by these).
KINDS = {"sgd": OPT_SGD, "momentum": OPT_MOMENTUM, "nesterov": OPT_NESTEROV, "adam": OPT_ADAM,
         "adam_step": OPT_ADAM_STEP, "momentum_step": OPT_MOMENTUM_STEP,
         "nesterov_step": OPT_NESTEROV_STEP}
