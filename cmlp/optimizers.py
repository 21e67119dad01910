"""Optimizers: hyperparameters in Python, state in flat buffers, steps in C.

    net.fit(X, y, optimizer="adam", lr=1e-3)
    net.fit(X, y, optimizer=Adam(lr=1e-3, weight_decay=1e-4))

The state (velocity, Adam moments, step count) has the parameters' flat
layout, lives on the optimizer object, persists across fit() calls on the
same network (warm start) and is saved with the model and in checkpoints.
"""
import json

import numpy as np

from cmlp._layout import aligned_zeros
from cmlp._optim import KINDS
from cmlp._validation import check_number

OPT_SGD, OPT_MOMENTUM = KINDS["sgd"], KINDS["momentum"]
OPT_NESTEROV, OPT_ADAM = KINDS["nesterov"], KINDS["adam"]
OPT_ADAM_STEP = KINDS["adam_step"]
OPT_MOMENTUM_STEP, OPT_NESTEROV_STEP = KINDS["momentum_step"], KINDS["nesterov_step"]


class Optimizer:
    """Base class. Subclasses set `kind` and the hyperparameters."""
    kind = OPT_SGD
    n_state = 0
    # scikit-learn's convention: weight_decay is alpha, the L2 coefficient of
    # the *summed* loss, so each batch decays by alpha / its weight total.
    decay_per_sample = False

    def __init__(self, lr, weight_decay=0.0):
        self.lr = check_number(lr, "lr", low=0, low_open=True)
        self.weight_decay = check_number(weight_decay, "weight_decay", low=0)
        self.step = 0                 # optimizer steps taken (Adam's t)
        self.state = []               # n_state flat buffers, made on first use

    def hyperparameters(self):
        """(momentum, beta1, beta2, eps) as the C step takes them."""
        return 0.0, 0.0, 0.0, 0.0

    def bind(self, n_params, dtype):
        """Make sure the state buffers fit a network of n_params values."""
        if len(self.state) != self.n_state or any(
                s.shape != (n_params,) or s.dtype != dtype for s in self.state):
            self.state = [aligned_zeros(n_params, dtype) for _ in range(self.n_state)]
            self.step = 0
        return self.state

    def configure(self, stepper):
        """Hand kind, hyperparameters, state and step to a BatchStepper
        (cmlp._stepper), after `bind`."""
        stepper.optimizer = self.kind
        stepper.momentum, stepper.beta1, stepper.beta2, stepper.eps = self.hyperparameters()
        stepper.weight_decay = self.weight_decay
        stepper.decay_per_sample = self.decay_per_sample
        stepper.step = self.step
        state = list(self.state) + [None, None]
        stepper.set_state(state[0], state[1])

    def config(self):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"

    def to_arrays(self, prefix="optimizer_"):
        """The optimizer as .npz fields: its config as JSON, its step, its state."""
        config = self.config()
        if self.decay_per_sample:
            config["decay_per_sample"] = True
        fields = {prefix + "config": np.array(json.dumps(config)),
                  prefix + "step": np.array(self.step, dtype=np.int64)}
        for i, buffer in enumerate(self.state):
            fields[f"{prefix}state{i}"] = buffer
        return fields

    @staticmethod
    def from_arrays(fields, shape=None, dtype=None, prefix="optimizer_"):
        """Rebuild an optimizer written by to_arrays (or None if absent).

        Everything is validated (a file may have been tampered with): the
        config by the constructor, the step (an integer >= 0), and the state
        (all n_state buffers, of `shape` and `dtype` when given, finite, and
        Adam's second moment >= 0). ValueError otherwise.
        """
        if prefix + "config" not in fields:
            return None
        config = json.loads(str(fields[prefix + "config"]))
        if not isinstance(config, dict) or config.get("name") not in ("sgd", "adam"):
            raise ValueError("the optimizer config names no known optimizer")
        kind = {"sgd": SGD, "adam": Adam}[config.pop("name")]
        per_sample = config.pop("decay_per_sample", False)
        if not isinstance(per_sample, bool):
            raise ValueError("decay_per_sample must be true or false")
        optimizer = kind(**config)
        optimizer.decay_per_sample = per_sample
        step = fields[prefix + "step"]
        if step.shape != () or step.dtype.kind not in "iu" or int(step) < 0:
            raise ValueError(f"the optimizer step must be an integer >= 0, got {step!r}")
        optimizer.step = int(step)
        names = [f"{prefix}state{i}" for i in range(optimizer.n_state)]
        present = [name for name in names if name in fields]
        if present and present != names:      # none (never trained) or all of them
            raise ValueError(f"the optimizer state needs {optimizer.n_state} buffers")
        optimizer.state = [_aligned_copy(np.asarray(fields[name])) for name in present]
        for buffer in optimizer.state:
            if (shape is not None and buffer.shape != shape) or (
                    dtype is not None and buffer.dtype != dtype):
                raise ValueError(f"optimizer state is {buffer.dtype} {buffer.shape}, the "
                                 f"parameters {dtype} {shape}")
            if not np.isfinite(buffer).all():
                raise ValueError("the optimizer state holds NaN or infinite values")
        if kind is Adam and present and (optimizer.state[1] < 0).any():
            raise ValueError("Adam's second moment holds negative values")
        return optimizer


class SGD(Optimizer):
    """Mini-batch SGD, optionally with (Nesterov) momentum.

    convention="velocity" (the default, PyTorch's): v = momentum * v + g;
    p -= lr * v (or lr * (g + momentum * v) for Nesterov).
    convention="step" (scikit-learn's): v = momentum * v - lr * g; p += v
    (or momentum * v - lr * g for Nesterov). The same steps at a constant
    rate; when the rate changes, "step" keeps the old rate in the velocity.
    """

    def __init__(self, lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0,
                 convention="velocity"):
        super().__init__(lr, weight_decay)
        self.momentum = check_number(momentum, "momentum", low=0, high=1, high_open=True)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        if convention not in ("velocity", "step"):
            raise ValueError(f"convention must be 'velocity' or 'step', got {convention!r}")
        self.convention = convention
        if not self.momentum:
            self.kind = OPT_SGD
        elif convention == "step":
            self.kind = OPT_NESTEROV_STEP if self.nesterov else OPT_MOMENTUM_STEP
        else:
            self.kind = OPT_NESTEROV if self.nesterov else OPT_MOMENTUM
        self.n_state = 1 if self.momentum else 0

    def hyperparameters(self):
        return self.momentum, 0.0, 0.0, 0.0

    def config(self):
        config = {"name": "sgd", "lr": self.lr, "momentum": self.momentum,
                  "nesterov": self.nesterov, "weight_decay": self.weight_decay}
        if self.convention != "velocity":     # files of older versions load unchanged
            config["convention"] = self.convention
        return config


class Adam(Optimizer):
    """Adam with bias-corrected moments.

    correction="moments" (the default, PyTorch's): p -= lr * m_hat /
    (sqrt(v_hat) + eps). correction="step" (scikit-learn's, Kingma & Ba's
    efficient form): p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) +
    eps), so eps is added to the uncorrected root; the two differ while
    sqrt(v) is near eps.
    """
    n_state = 2

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 correction="moments"):
        super().__init__(lr, weight_decay)
        self.beta1 = check_number(beta1, "beta1", low=0, high=1, high_open=True)
        self.beta2 = check_number(beta2, "beta2", low=0, high=1, high_open=True)
        self.eps = check_number(eps, "eps", low=0, low_open=True)
        if correction not in ("moments", "step"):
            raise ValueError(f"correction must be 'moments' or 'step', got {correction!r}")
        self.correction = correction
        self.kind = OPT_ADAM_STEP if correction == "step" else OPT_ADAM

    def hyperparameters(self):
        return 0.0, self.beta1, self.beta2, self.eps

    def config(self):
        config = {"name": "adam", "lr": self.lr, "beta1": self.beta1, "beta2": self.beta2,
                  "eps": self.eps, "weight_decay": self.weight_decay}
        if self.correction != "moments":      # files of older versions load unchanged
            config["correction"] = self.correction
        return config


NAMES = ("sgd", "momentum", "nesterov", "adam")


def optimizer_for(current, optimizer=None, lr=None, momentum=None, weight_decay=None):
    """The optimizer a fit uses: `current` (the network's own, state kept)
    when no optimizer argument is given, else a new one (make_optimizer)."""
    if lr is not None:
        lr = check_number(lr, "lr", low=0, low_open=True)
    if optimizer is None and lr is None and momentum is None and weight_decay is None \
            and current is not None:
        return current
    return make_optimizer("sgd" if optimizer is None else optimizer, lr, momentum, weight_decay)


def make_optimizer(optimizer="sgd", lr=None, momentum=None, weight_decay=None):
    """An Optimizer from a name and fit()'s keyword arguments, or the object given.

    Names: "sgd" (lr 0.1), "momentum" and "nesterov" (lr 0.1, momentum 0.9),
    "adam" (lr 0.001). An Optimizer object carries its own settings, so lr,
    momentum and weight_decay must then be left as None.
    """
    if isinstance(optimizer, Optimizer):
        if any(v is not None for v in (lr, momentum, weight_decay)):
            raise ValueError("pass lr/momentum/weight_decay to the optimizer object, "
                             "not to fit(), when giving an optimizer object")
        return optimizer
    if optimizer not in NAMES:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose from {list(NAMES)} "
                         "or pass an Optimizer object")
    decay = 0.0 if weight_decay is None else weight_decay
    if optimizer == "adam":
        if momentum is not None:
            raise ValueError("momentum does not apply to adam")
        return Adam(lr=0.001 if lr is None else lr, weight_decay=decay)
    if optimizer == "sgd":
        return SGD(lr=0.1 if lr is None else lr, momentum=momentum or 0.0, weight_decay=decay)
    return SGD(lr=0.1 if lr is None else lr, momentum=0.9 if momentum is None else momentum,
               nesterov=optimizer == "nesterov", weight_decay=decay)


def _aligned_copy(values):
    """A 64-byte aligned copy of a 1-D array (any other shape is returned as
    a plain copy, for the caller's shape check to refuse)."""
    if values.ndim != 1:
        return np.array(values)
    copy = aligned_zeros(values.size, values.dtype)
    copy[:] = values
    return copy
