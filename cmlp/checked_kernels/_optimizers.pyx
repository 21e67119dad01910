"""The optimizer updates of cmlp._optim on flat parameter vectors (copies).

See cmlp.checked_kernels for what these wrappers check."""

from cython cimport floating

from cmlp cimport _optim as O
from cmlp.checked_kernels._checks import _fit, _floats


# -------------------------------------------------------------- optimiser ----

def sgd_update(params, grads, lr):
    """A copy of params after one step: params - lr * grads."""
    params, grads = _floats(params, grads)
    if params.shape != grads.shape:
        raise ValueError(f"params {params.shape} and grads {grads.shape} must have one shape")
    out = params.copy()
    if out.size:
        _sgd_update(out.reshape(-1), grads.reshape(-1), float(lr))
    return out


def _sgd_update(floating[::1] params, const floating[::1] grads, double lr):
    _fit(params.shape[0] == grads.shape[0] > 0)
    with nogil:
        O.sgd_update(&params[0], &grads[0], <floating> lr, params.shape[0])


def _vectors(*arrays):
    arrays = _floats(*arrays)
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"arrays must share one shape, got {[a.shape for a in arrays]}")
    return [a.reshape(-1) for a in arrays]


def l2_grad(grads, params, weight_decay):
    """A copy of grads plus weight_decay * params."""
    grads, params = _vectors(grads, params)
    out = grads.copy()
    if out.size:
        _l2_grad(out, params, float(weight_decay))
    return out


def _l2_grad(floating[::1] grads, const floating[::1] params, double weight_decay):
    _fit(params.shape[0] == grads.shape[0] > 0)
    with nogil:
        O.l2_grad(&grads[0], &params[0], <floating> weight_decay, grads.shape[0])


def momentum_update(params, velocity, grads, lr, momentum, nesterov):
    """(params', velocity') after one (Nesterov) momentum step, as copies."""
    params, velocity, grads = _vectors(params, velocity, grads)
    params, velocity = params.copy(), velocity.copy()
    if params.size:
        _momentum_update(params, velocity, grads, float(lr), float(momentum), bool(nesterov))
    return params, velocity


def _momentum_update(floating[::1] params, floating[::1] velocity,
                     const floating[::1] grads, double lr, double momentum,
                     bint nesterov):
    _fit(params.shape[0] == velocity.shape[0] == grads.shape[0] > 0)
    with nogil:
        O.momentum_update(&params[0], &velocity[0], &grads[0], <floating> lr,
                          <floating> momentum, nesterov, params.shape[0])


def adam_update(params, m, v, grads, lr, beta1, beta2, eps, t):
    """(params', m', v') after Adam step t (t >= 1), as copies."""
    return _adam_copies(_adam_update, params, m, v, grads, lr, beta1, beta2, eps, t)


def _adam_copies(step, params, m, v, grads, lr, beta1, beta2, eps, t):
    """Checked copies of the Adam buffers, stepped by `step` (a wrapper below)."""
    params, m, v, grads = _vectors(params, m, v, grads)
    if int(t) < 1:
        raise ValueError(f"Adam's step t must be >= 1, got {t}")
    params, m, v = params.copy(), m.copy(), v.copy()
    if params.size:
        step(params, m, v, grads, float(lr), float(beta1), float(beta2), float(eps), int(t))
    return params, m, v


def _adam_update(floating[::1] params, floating[::1] m, floating[::1] v,
                 const floating[::1] grads, double lr, double beta1, double beta2,
                 double eps, long long t):
    _fit(params.shape[0] == m.shape[0] == v.shape[0] == grads.shape[0] > 0 and t >= 1)
    with nogil:
        O.adam_update(&params[0], &m[0], &v[0], &grads[0], <floating> lr,
                      <floating> beta1, <floating> beta2, <floating> eps, t,
                      params.shape[0])


def adam_step_update(params, m, v, grads, lr, beta1, beta2, eps, t):
    """(params', m', v') after scikit-learn's Adam step t (t >= 1), as copies."""
    return _adam_copies(_adam_step_update, params, m, v, grads, lr, beta1, beta2, eps, t)


def _adam_step_update(floating[::1] params, floating[::1] m, floating[::1] v,
                      const floating[::1] grads, double lr, double beta1, double beta2,
                      double eps, long long t):
    _fit(params.shape[0] == m.shape[0] == v.shape[0] == grads.shape[0] > 0 and t >= 1)
    with nogil:
        O.adam_step_update(&params[0], &m[0], &v[0], &grads[0], <floating> lr,
                           <floating> beta1, <floating> beta2, <floating> eps, t,
                           params.shape[0])


def momentum_step_update(params, velocity, grads, lr, momentum, nesterov):
    """(params', velocity') after one step of scikit-learn's SGD momentum, as copies."""
    params, velocity, grads = _vectors(params, velocity, grads)
    params, velocity = params.copy(), velocity.copy()
    if params.size:
        _momentum_step_update(params, velocity, grads, float(lr), float(momentum),
                              bool(nesterov))
    return params, velocity


def _momentum_step_update(floating[::1] params, floating[::1] velocity,
                          const floating[::1] grads, double lr, double momentum,
                          bint nesterov):
    _fit(params.shape[0] == velocity.shape[0] == grads.shape[0] > 0)
    with nogil:
        O.momentum_step_update(&params[0], &velocity[0], &grads[0], <floating> lr,
                               <floating> momentum, nesterov, params.shape[0])
