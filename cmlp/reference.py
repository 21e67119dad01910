"""The NumPy reference: cmlp's network written straight from the equations.

Every C kernel in cmlp._kernels, cmlp._losses and cmlp._optim (exposed to
Python by cmlp.checked_kernels) has a twin here with the same name and
signature, and tests/test_kernels.py compares each pair. ReferenceNetwork
composes the twins into the same network, initialised identically for the
same seed (cmlp._layout), so the engine can be checked end to end: forward,
loss, gradients, SGD, training.

Math, with m rows in the batch and W of shape (n_in, n_out):
    z = a_prev @ W + b,  a = act(z)
    softmax + cross-entropy:  dL/dz_out = (p - onehot(y)) / m
    identity + MSE, L = 1/(2m) sum (yhat - y)^2:  dL/dz_out = (yhat - y) / m
    exp + half Poisson deviance, L = 1/m sum exp(z) - y z + y log y - y:
        dL/dz_out = (exp(z) - y) / m
    dW = a_prev^T @ dz,  db = sum(dz, axis=0),  da_prev = dz @ W^T
    dz_prev = da_prev * act'(z_prev)
Nothing here is tuned for speed.
"""
import numpy as np
from scipy.special import erfc, expit, xlogy

from cmlp._layout import (
    check_architecture,
    check_dropout,
    dropout_key,
    init_params,
    shuffle_seed,
    split_flat,
)

LEAKY_SLOPE = 0.01


# ---------------------------------------------------------------- kernels ----

def linear_forward(a_prev, W, b):
    return a_prev @ W + b


def panel_linear(a_prev, W, b, relu=False):
    """linear_forward by cmlp's packed AVX-512 product (float32, inference),
    with relu then relu_forward."""
    z = a_prev @ W + b
    return relu_forward(z) if relu else z


def linear_backward(dz, a_prev, W):
    return dz @ W.T, a_prev.T @ dz, dz.sum(axis=0)


def linear_backward_input(dz, W, c0=0, c1=None):
    """Columns [c0, c1) of dz @ W^T."""
    return dz @ W[c0:c1].T


def linear_forward_columns(a_prev, W, b, c0, c1, k0=0, k1=None):
    """Columns [c0, c1) of a_prev[:, k0:k1] @ W[k0:k1] + b."""
    return a_prev[:, k0:k1] @ W[k0:k1, c0:c1] + b[c0:c1]


def weight_gradient_rows(out, dz, a_prev, alpha, beta):
    """alpha * a_prev^T @ dz + beta * out (a_prev: the m rows of the columns taken)."""
    return alpha * (a_prev.T @ dz) + beta * out


def bias_gradient(out, dz, alpha, beta):
    """beta * out + alpha * (dz summed over its rows)."""
    return beta * out + alpha * dz.sum(axis=0)


def linear_backward_sgd(dz, a_prev, W, b, lr):
    """linear_backward, then one SGD step on W and b (da_prev uses the old W)."""
    da_prev, dW, db = linear_backward(dz, a_prev, W)
    return da_prev, sgd_update(W, dW, lr), sgd_update(b, db, lr)


def linear_backward_sgd_next_forward(dz, a_prev, W, b, lr, x_next):
    """A first layer's SGD step (no da_prev), then the next row's forward
    through the updated layer: (W', b', z_next)."""
    _, W_new, b_new = linear_backward_sgd(dz, a_prev, W, b, lr)
    return W_new, b_new, linear_forward(x_next, W_new, b_new)


def csr_linear_forward(X, W, b):
    """z = X @ W + b for scipy.sparse X, never densified (scipy's csr @ dense)."""
    return np.asarray(X.tocsr().astype(W.dtype) @ W) + b


def csr_linear_backward(dz, X):
    """(dW, db) = (X^T @ dz, sum of dz over rows) for sparse X."""
    return np.asarray(X.tocsr().astype(dz.dtype).T @ dz), dz.sum(axis=0)


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
    return expit(z)


def sigmoid_backward(a, da):
    return da * a * (1 - a)


def leaky_relu_forward(z):
    return np.where(z > 0, z, np.asarray(LEAKY_SLOPE, dtype=z.dtype) * z)


def leaky_relu_backward(a, da):
    return np.where(a > 0, da, np.asarray(LEAKY_SLOPE, dtype=da.dtype) * da)


def gelu_forward(z):
    return 0.5 * z * erfc(-z / np.sqrt(2.0)).astype(z.dtype)


def gelu_backward(z, da):
    z64 = z.astype(np.float64)
    slope = 0.5 * erfc(-z64 / np.sqrt(2.0)) + z64 * np.exp(-0.5 * z64 * z64) / np.sqrt(2 * np.pi)
    return da * slope.astype(da.dtype)


# Dropout: counter-based SplitMix64, so masks depend on (key, step, layer,
# index) only. uint64 array arithmetic wraps modulo 2^64, as in C.
_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = 2**64 - 1


def _mix64(z):
    """SplitMix64's output function on a uint64 array."""
    z = np.asarray(z, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _mix64_int(x):
    # On a one-element array: NumPy warns of (intended) wraparound in scalar math.
    return int(_mix64(np.array([x & _MASK64], dtype=np.uint64))[0])


def dropout_seed(key, step, layer):
    return _mix64_int(_mix64_int(key + step * _GOLDEN) + layer)


def dropout_forward(a, rate, seed):
    """(out, mask): value i is dropped when the top 53 bits of the i-th
    SplitMix64 output of `seed` are below rate * 2^53; kept values are
    scaled by 1 / (1 - rate)."""
    n = a.size
    counters = (np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(_GOLDEN))
    keep = (_mix64(counters) >> np.uint64(11)) >= np.uint64(int(rate * 2.0**53))
    scale = np.asarray(1.0 / (1.0 - rate), dtype=a.dtype)
    mask = np.where(keep, scale, np.asarray(0, dtype=a.dtype)).reshape(a.shape)
    return np.where(mask != 0, a * scale, np.asarray(0, dtype=a.dtype)), mask


def dropout_backward(mask, dout):
    return dout * mask


def softmax_forward(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _row_shares(sample_weight, m, dtype):
    """Each row's share of the batch mean: 1/m, or w_i / sum(w) (0 if sum(w) = 0)."""
    if sample_weight is None:
        return np.full(m, 1, dtype=dtype) / np.asarray(m, dtype=dtype)
    w = np.asarray(sample_weight, dtype=np.float64)
    total = w.sum()
    return (w / total if total else np.zeros(m)).astype(dtype)


def _weighted_sum(row_losses, sample_weight):
    if sample_weight is None:
        return float(row_losses.sum())
    return float((np.asarray(sample_weight, dtype=np.float64) * row_losses).sum())


def softmax_xent_loss(z, labels, sample_weight=None):
    rows = np.arange(z.shape[0])
    losses = -_log_softmax(z.astype(np.float64))[rows, labels]
    return _weighted_sum(losses, sample_weight), int((z.argmax(axis=1) == labels).sum())


def softmax_xent_backward(z, labels, sample_weight=None):
    m = z.shape[0]
    onehot = np.zeros_like(z)
    onehot[np.arange(m), labels] = 1
    dz = (softmax_forward(z) - onehot) * _row_shares(sample_weight, m, z.dtype)[:, None]
    return (dz,) + softmax_xent_loss(z, labels, sample_weight)


def mse_loss(yhat, y, sample_weight=None):
    r = (yhat - y).astype(np.float64)
    return 0.5 * _weighted_sum((r * r).sum(axis=1), sample_weight)


def mse_backward(yhat, y, sample_weight=None):
    m = y.shape[0]
    dz = (yhat - y) * _row_shares(sample_weight, m, y.dtype)[:, None]
    return dz, mse_loss(yhat, y, sample_weight)


def exp_forward(z):
    return np.exp(z)


def poisson_loss(z, y, sample_weight=None):
    """scikit-learn's half Poisson deviance of mu = exp(z), summed per row:
    y log(y / mu) - y + mu."""
    z64, y64 = z.astype(np.float64), y.astype(np.float64)
    losses = (xlogy(y64, y64 / np.exp(z64)) - y64 + np.exp(z64)).sum(axis=1)
    return _weighted_sum(losses, sample_weight)


def poisson_backward(z, y, sample_weight=None):
    m = y.shape[0]
    dz = (exp_forward(z) - y) * _row_shares(sample_weight, m, y.dtype)[:, None]
    return dz, poisson_loss(z, y, sample_weight)


def sigmoid_bce_loss(z, y, sample_weight=None):
    """Binary cross-entropy from logits, softplus(z) - y z, summed per row;
    a hit is a row with every label right."""
    z64, y64 = z.astype(np.float64), y.astype(np.float64)
    losses = (np.logaddexp(0, z64) - y64 * z64).sum(axis=1)
    hits = int(((z > 0) == (y > 0.5)).all(axis=1).sum())
    return _weighted_sum(losses, sample_weight), hits


def sigmoid_bce_backward(z, y, sample_weight=None):
    m = y.shape[0]
    dz = (sigmoid_forward(z) - y) * _row_shares(sample_weight, m, y.dtype)[:, None]
    return (dz,) + sigmoid_bce_loss(z, y, sample_weight)


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


def momentum_step_update(params, velocity, grads, lr, momentum, nesterov):
    """scikit-learn's SGD momentum: the rate inside the velocity."""
    dt = params.dtype
    mu, rate = np.asarray(momentum, dtype=dt), np.asarray(lr, dtype=dt)
    velocity = mu * velocity - rate * grads
    step = mu * velocity - rate * grads if nesterov else velocity
    return params + step, velocity


def adam_step_update(params, m, v, grads, lr, beta1, beta2, eps, t):
    """scikit-learn's Adam: the bias corrections in the step size, eps added
    to the uncorrected root (its AdamOptimizer, in its order of operations)."""
    dt = params.dtype
    b1, b2 = np.asarray(beta1, dtype=dt), np.asarray(beta2, dtype=dt)
    m = b1 * m + (1 - b1) * grads
    v = b2 * v + (1 - b2) * (grads * grads)
    lr_t = np.asarray(lr * np.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t), dtype=dt)
    return params - lr_t * m / (np.sqrt(v) + np.asarray(eps, dtype=dt)), m, v


_FORWARD = {"identity": lambda z: z, "relu": relu_forward, "tanh": tanh_forward,
            "sigmoid": sigmoid_forward, "leaky_relu": leaky_relu_forward,
            "gelu": gelu_forward}
# Each takes (a, da), except gelu, which takes (z, da).
_BACKWARD = {"identity": lambda a, da: da, "relu": relu_backward, "tanh": tanh_backward,
             "sigmoid": sigmoid_backward, "leaky_relu": leaky_relu_backward,
             "gelu": gelu_backward}


# ---------------------------------------------------------------- network ----

class ReferenceNetwork:
    """The same MLP as cmlp.Network, in plain NumPy, layer by layer.

    Same constructor arguments and, for the same seed, the same initial
    weights, the same mini-batch order and the same dropout masks as
    cmlp.Network.
    """

    def __init__(self, sizes, activation="relu", output="softmax", dtype="float32", seed=None,
                 dropout=0.0):
        self.sizes, self.activations, self.output, self.dtype = check_architecture(
            sizes, activation, output, dtype)
        self.dropout = check_dropout(dropout, len(self.sizes) - 2)
        self._unflat(init_params(self.sizes, self.activations, seed, self.dtype))
        self._shuffle_rng = np.random.default_rng(shuffle_seed(seed))
        self.dropout_key = dropout_key(np.random.SeedSequence(seed).entropy)
        self.batches_done = 0

    def _forward_all(self, X, train=False, step=0):
        """(inputs, saved, masks): inputs[l] is layer l's input (X first) and
        inputs[L] the raw outputs; saved[l] what hidden layer l's derivative
        needs (z for gelu, else a); masks[l] its dropout mask or None."""
        inputs, saved, masks = [np.asarray(X, dtype=self.dtype)], [], []
        L = len(self.weights)
        for l, (W, b) in enumerate(zip(self.weights, self.biases)):
            z = linear_forward(inputs[-1], W, b)
            if l == L - 1:
                inputs.append(z)
                break
            name = self.activations[l]
            a = _FORWARD[name](z)
            saved.append(z if name == "gelu" else a)
            mask = None
            if train and self.dropout[l] > 0:
                a, mask = dropout_forward(a, self.dropout[l],
                                          dropout_seed(self.dropout_key, step, l))
            masks.append(mask)
            inputs.append(a)
        return inputs, saved, masks

    def forward(self, X):
        raw = self._forward_all(X)[0][-1]
        if self.output == "softmax":
            return softmax_forward(raw)
        if self.output == "exp":
            return exp_forward(raw)
        return sigmoid_forward(raw) if self.output == "sigmoid" else raw

    def _loss_backward(self, raw, y, sample_weight):
        if self.output == "softmax":
            dz, loss, _ = softmax_xent_backward(raw, np.asarray(y), sample_weight)
            return dz, loss
        target = np.asarray(y, dtype=self.dtype).reshape(raw.shape)
        if self.output == "sigmoid":
            dz, loss, _ = sigmoid_bce_backward(raw, target, sample_weight)
            return dz, loss
        if self.output == "exp":
            return poisson_backward(raw, target, sample_weight)
        return mse_backward(raw, target, sample_weight)

    def loss(self, X, y, sample_weight=None):
        """The (weighted) mean loss, without dropout."""
        raw = self._forward_all(X)[0][-1]
        total = raw.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        return self._loss_backward(raw, y, sample_weight)[1] / total

    def gradients(self, X, y, sample_weight=None, train=False, step=0):
        """(mean loss, [dW per layer], [db per layer]); with train, dropout
        uses the masks of training step `step`."""
        inputs, saved, masks = self._forward_all(X, train, step)
        m = inputs[-1].shape[0]
        dz, loss = self._loss_backward(inputs[-1], y, sample_weight)
        dWs, dbs = [], []
        for l in range(len(self.weights) - 1, -1, -1):
            da_prev, dW, db = linear_backward(dz, inputs[l], self.weights[l])
            dWs.insert(0, dW)
            dbs.insert(0, db)
            if l > 0:
                if masks[l - 1] is not None:
                    da_prev = dropout_backward(masks[l - 1], da_prev)
                dz = _BACKWARD[self.activations[l - 1]](saved[l - 1], da_prev)
        total = m if sample_weight is None else float(np.sum(sample_weight))
        return loss / total, dWs, dbs

    def sgd_step(self, X, y, lr, sample_weight=None):
        """One training step of plain SGD (dropout on, as in training)."""
        loss, dWs, dbs = self._train_gradients(X, y, sample_weight)
        self.weights = [sgd_update(W, dW, lr) for W, dW in zip(self.weights, dWs)]
        self.biases = [sgd_update(b, db, lr) for b, db in zip(self.biases, dbs)]
        return loss

    def _flat(self, arrays_w, arrays_b):
        return np.concatenate([a.ravel() for pair in zip(arrays_w, arrays_b) for a in pair])

    def _unflat(self, flat):
        weights, biases = split_flat(flat, self.sizes)
        self.weights = [W.copy() for W in weights]
        self.biases = [b.copy() for b in biases]

    def _train_gradients(self, X, y, sample_weight):
        # Dropout masks are numbered by the batches trained, as in Network.fit.
        result = self.gradients(X, y, sample_weight, train=True, step=self.batches_done)
        self.batches_done += 1
        return result

    def optimizer_step(self, X, y, optimizer, lr, state, sample_weight=None):
        """One step of `optimizer` (a cmlp.optimizers object, read for its
        settings only) at rate lr; `state` is a dict this method keeps."""
        loss, dWs, dbs = self._train_gradients(X, y, sample_weight)
        if optimizer.weight_decay:
            dWs = [l2_grad(dW, W, optimizer.weight_decay) for dW, W in zip(dWs, self.weights)]
        params, grads = self._flat(self.weights, self.biases), self._flat(dWs, dbs)
        state["t"] = state.get("t", 0) + 1
        config = optimizer.config()
        if config["name"] == "adam":
            m = state.get("m", np.zeros_like(params))
            v = state.get("v", np.zeros_like(params))
            update = adam_step_update if config.get("correction") == "step" else adam_update
            params, state["m"], state["v"] = update(
                params, m, v, grads, lr, config["beta1"], config["beta2"], config["eps"], state["t"])
        elif config["momentum"]:
            velocity = state.get("velocity", np.zeros_like(params))
            update = momentum_step_update if config.get("convention") == "step" \
                else momentum_update
            params, state["velocity"] = update(
                params, velocity, grads, lr, config["momentum"], config["nesterov"])
        else:
            params = sgd_update(params, grads, lr)
        self._unflat(params)
        return loss

    def fit(self, X, y, epochs=1, batch_size=128, lr=0.1, shuffle=True, optimizer=None,
            schedule=None, sample_weight=None):
        """Mini-batch training, visiting rows in cmlp.Network.fit's order.

        optimizer: a cmlp.optimizers object (default plain SGD at lr);
        schedule: a cmlp.schedules object (default constant). Returns the
        per-epoch (weighted) mean training losses.
        """
        from cmlp.optimizers import SGD
        from cmlp.schedules import Constant
        optimizer = optimizer or SGD(lr=lr)
        schedule = schedule or Constant()
        state = {}
        X = np.asarray(X, dtype=self.dtype)
        y = np.asarray(y)
        n = X.shape[0]
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=self.dtype)
        losses = []
        for epoch in range(epochs):
            rate = schedule(epoch, epochs, optimizer.lr)
            order = self._shuffle_rng.permutation(n) if shuffle else np.arange(n)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                w_batch = None if w is None else w[idx]
                mean = self.optimizer_step(X[idx], y[idx], optimizer, rate, state, w_batch)
                total += mean * (len(idx) if w is None else float(w_batch.astype(np.float64).sum()))
            losses.append(total / (n if w is None else float(w.astype(np.float64).sum())))
        return losses
