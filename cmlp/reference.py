"""The NumPy reference: cmlp's network written straight from the equations.

Every C kernel in cmlp._kernels (exposed to Python by cmlp.kernels) has a
twin here with the same name and signature, and tests/test_kernels.py
compares each pair. ReferenceNetwork composes the twins into the same
network, initialised identically for the same seed (cmlp._layout), so the
engine can be checked end to end: forward, loss, gradients, SGD, training.

Math, with m rows in the batch and W of shape (n_in, n_out):
    z = a_prev @ W + b,  a = act(z)
    softmax + cross-entropy:  dL/dz_out = (p - onehot(y)) / m
    identity + MSE, L = 1/(2m) sum (yhat - y)^2:  dL/dz_out = (yhat - y) / m
    dW = a_prev^T @ dz,  db = sum(dz, axis=0),  da_prev = dz @ W^T
    dz_prev = da_prev * act'(z_prev)
Nothing here is tuned for speed.
"""
import numpy as np

from cmlp._layout import check_architecture, init_params, offsets, shuffle_seed


# ---------------------------------------------------------------- kernels ----

def linear_forward(a_prev, W, b):
    return a_prev @ W + b


def linear_backward(dz, a_prev, W):
    return dz @ W.T, a_prev.T @ dz, dz.sum(axis=0)


def linear_backward_sgd(dz, a_prev, W, b, lr):
    """linear_backward, then one SGD step on W and b (da_prev uses the old W)."""
    da_prev, dW, db = linear_backward(dz, a_prev, W)
    return da_prev, sgd_update(W, dW, lr), sgd_update(b, db, lr)


def relu_forward(z):
    return np.maximum(z, 0)


def relu_backward(a, da):
    # relu'(z) = 1 for z > 0, else 0; z > 0 exactly where a = relu(z) > 0.
    return da * (a > 0)


def tanh_forward(z):
    return np.tanh(z)


def tanh_backward(a, da):
    return da * (1 - a * a)


def sigmoid_forward(z):
    return 1 / (1 + np.exp(-z))


def sigmoid_backward(a, da):
    return da * a * (1 - a)


def softmax_forward(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_xent_loss(z, labels):
    rows = np.arange(z.shape[0])
    loss = -_log_softmax(z.astype(np.float64))[rows, labels].sum()
    return float(loss), int((z.argmax(axis=1) == labels).sum())


def softmax_xent_backward(z, labels):
    m = z.shape[0]
    onehot = np.zeros_like(z)
    onehot[np.arange(m), labels] = 1
    dz = (softmax_forward(z) - onehot) / np.asarray(m, dtype=z.dtype)
    return (dz,) + softmax_xent_loss(z, labels)


def mse_loss(yhat, y):
    r = (yhat - y).astype(np.float64)
    return float(0.5 * (r * r).sum())


def mse_backward(yhat, y):
    m = y.shape[0]
    return (yhat - y) / np.asarray(m, dtype=y.dtype), mse_loss(yhat, y)


def sgd_update(params, grads, lr):
    return params - np.asarray(lr, dtype=params.dtype) * grads


def l2_grad(grads, params, weight_decay):
    return grads + np.asarray(weight_decay, dtype=params.dtype) * params


def momentum_update(params, velocity, grads, lr, momentum, nesterov):
    dt = params.dtype
    velocity = np.asarray(momentum, dtype=dt) * velocity + grads
    step = grads + np.asarray(momentum, dtype=dt) * velocity if nesterov else velocity
    return params - np.asarray(lr, dtype=dt) * step, velocity


def adam_update(params, m, v, grads, lr, beta1, beta2, eps, t):
    dt = params.dtype
    b1, b2 = np.asarray(beta1, dtype=dt), np.asarray(beta2, dtype=dt)
    m = b1 * m + (1 - b1) * grads
    v = b2 * v + (1 - b2) * grads * grads
    m_hat = m / np.asarray(1 - beta1 ** t, dtype=dt)
    v_hat = v / np.asarray(1 - beta2 ** t, dtype=dt)
    return params - np.asarray(lr, dtype=dt) * m_hat / (np.sqrt(v_hat) + np.asarray(eps, dtype=dt)), m, v


_FORWARD = {"identity": lambda z: z, "relu": relu_forward,
            "tanh": tanh_forward, "sigmoid": sigmoid_forward}
_BACKWARD = {"identity": lambda a, da: da, "relu": relu_backward,
             "tanh": tanh_backward, "sigmoid": sigmoid_backward}


# ---------------------------------------------------------------- network ----

class ReferenceNetwork:
    """The same MLP as cmlp.Network, in plain NumPy, layer by layer.

    Same constructor arguments and, for the same seed, the same initial
    weights and the same mini-batch order as cmlp.Network.
    """

    def __init__(self, sizes, activation="relu", output="softmax", dtype="float32", seed=None):
        self.sizes, self.activations, self.output, self.dtype = check_architecture(
            sizes, activation, output, dtype)
        flat = init_params(self.sizes, self.activations, seed, self.dtype)
        w_off, b_off, _ = offsets(self.sizes)
        pairs = list(zip(self.sizes[:-1], self.sizes[1:]))
        self.weights = [flat[w:w + i * o].reshape(i, o).copy() for w, (i, o) in zip(w_off, pairs)]
        self.biases = [flat[b:b + o].copy() for b, (_, o) in zip(b_off, pairs)]
        self._shuffle_rng = np.random.default_rng(shuffle_seed(seed))

    def _forward_all(self, X):
        """Every layer's output a_0 = X, a_1, ..., a_L (raw outputs last)."""
        acts = [np.asarray(X, dtype=self.dtype)]
        names = self.activations + ["identity"]
        for W, b, name in zip(self.weights, self.biases, names):
            acts.append(_FORWARD[name](linear_forward(acts[-1], W, b)))
        return acts

    def forward(self, X):
        raw = self._forward_all(X)[-1]
        return softmax_forward(raw) if self.output == "softmax" else raw

    def loss(self, X, y):
        raw = self._forward_all(X)[-1]
        m = raw.shape[0]
        if self.output == "softmax":
            return softmax_xent_loss(raw, y)[0] / m
        return mse_loss(raw, np.asarray(y, dtype=self.dtype).reshape(raw.shape)) / m

    def gradients(self, X, y):
        """(mean loss, [dW per layer], [db per layer])."""
        acts = self._forward_all(X)
        m = acts[-1].shape[0]
        if self.output == "softmax":
            dz, loss, _ = softmax_xent_backward(acts[-1], np.asarray(y))
        else:
            target = np.asarray(y, dtype=self.dtype).reshape(acts[-1].shape)
            dz, loss = mse_backward(acts[-1], target)
        dWs, dbs = [], []
        for l in range(len(self.weights) - 1, -1, -1):
            da_prev, dW, db = linear_backward(dz, acts[l], self.weights[l])
            dWs.insert(0, dW)
            dbs.insert(0, db)
            if l > 0:
                dz = _BACKWARD[self.activations[l - 1]](acts[l], da_prev)
        return loss / m, dWs, dbs

    def sgd_step(self, X, y, lr):
        loss, dWs, dbs = self.gradients(X, y)
        self.weights = [sgd_update(W, dW, lr) for W, dW in zip(self.weights, dWs)]
        self.biases = [sgd_update(b, db, lr) for b, db in zip(self.biases, dbs)]
        return loss

    def _flat(self, arrays_w, arrays_b):
        return np.concatenate([a.ravel() for pair in zip(arrays_w, arrays_b) for a in pair])

    def _unflat(self, flat):
        w_off, b_off, _ = offsets(self.sizes)
        pairs = list(zip(self.sizes[:-1], self.sizes[1:]))
        self.weights = [flat[w:w + i * o].reshape(i, o).copy() for w, (i, o) in zip(w_off, pairs)]
        self.biases = [flat[b:b + o].copy() for b, (_, o) in zip(b_off, pairs)]

    def optimizer_step(self, X, y, optimizer, lr, state):
        """One step of `optimizer` (a cmlp.optimizers object, read for its
        settings only) at rate lr; `state` is a dict this method keeps."""
        loss, dWs, dbs = self.gradients(X, y)
        if optimizer.weight_decay:
            dWs = [l2_grad(dW, W, optimizer.weight_decay) for dW, W in zip(dWs, self.weights)]
        params, grads = self._flat(self.weights, self.biases), self._flat(dWs, dbs)
        state["t"] = state.get("t", 0) + 1
        config = optimizer.config()
        if config["name"] == "adam":
            m = state.get("m", np.zeros_like(params))
            v = state.get("v", np.zeros_like(params))
            params, state["m"], state["v"] = adam_update(
                params, m, v, grads, lr, config["beta1"], config["beta2"], config["eps"], state["t"])
        elif config["momentum"]:
            velocity = state.get("velocity", np.zeros_like(params))
            params, state["velocity"] = momentum_update(
                params, velocity, grads, lr, config["momentum"], config["nesterov"])
        else:
            params = sgd_update(params, grads, lr)
        self._unflat(params)
        return loss

    def fit(self, X, y, epochs=1, batch_size=128, lr=0.1, shuffle=True, optimizer=None,
            schedule=None):
        """Mini-batch training, visiting rows in cmlp.Network.fit's order.

        optimizer: a cmlp.optimizers object (default plain SGD at lr);
        schedule: a cmlp.schedules object (default constant).
        """
        from cmlp.optimizers import SGD
        from cmlp.schedules import Constant
        optimizer = optimizer or SGD(lr=lr)
        schedule = schedule or Constant()
        state = {}
        X = np.asarray(X, dtype=self.dtype)
        y = np.asarray(y)
        n = X.shape[0]
        losses = []
        for epoch in range(epochs):
            rate = schedule(epoch, epochs, optimizer.lr)
            order = self._shuffle_rng.permutation(n) if shuffle else np.arange(n)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                total += self.optimizer_step(X[idx], y[idx], optimizer, rate, state) * len(idx)
            losses.append(total / n)
        return losses
