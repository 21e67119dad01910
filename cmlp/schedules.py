"""Learning-rate schedules: the rate for each epoch, from the optimizer's lr.

    net.fit(X, y, lr=0.1, schedule="cosine")
    net.fit(X, y, lr=0.1, schedule=Step(every=3, gamma=0.5))

A schedule maps (epoch, epochs, base_lr) to that epoch's rate; `epoch` counts
from 0 and `epochs` is the run's total, so a resumed run continues the same
curve.
"""
import math

from cmlp._validation import check_number


class Schedule:
    def __call__(self, epoch, epochs, base_lr):
        raise NotImplementedError

    def config(self):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """The base rate every epoch."""

    def __call__(self, epoch, epochs, base_lr):
        return base_lr

    def config(self):
        return {"name": "constant"}


class Step(Schedule):
    """base_lr * gamma ** (epoch // every); `every` defaults to a third of the run."""

    def __init__(self, every=None, gamma=0.1):
        self.every = None if every is None else check_number(every, "every", low=1, integer=True)
        self.gamma = check_number(gamma, "gamma", low=0, high=1, low_open=True)

    def __call__(self, epoch, epochs, base_lr):
        every = self.every or max(1, math.ceil(epochs / 3))
        return base_lr * self.gamma ** (epoch // every)

    def config(self):
        return {"name": "step", "every": self.every, "gamma": self.gamma}


class Cosine(Schedule):
    """Half a cosine from base_lr at the first epoch towards min_lr at the end."""

    def __init__(self, min_lr=0.0):
        self.min_lr = check_number(min_lr, "min_lr", low=0)

    def __call__(self, epoch, epochs, base_lr):
        return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1 + math.cos(math.pi * epoch / epochs))

    def config(self):
        return {"name": "cosine", "min_lr": self.min_lr}


class InverseScaling(Schedule):
    """base_lr / (epoch + 1) ** power, scikit-learn's 'invscaling' per epoch."""

    def __init__(self, power=0.5):
        self.power = check_number(power, "power", low=0, low_open=True)

    def __call__(self, epoch, epochs, base_lr):
        return base_lr / (epoch + 1) ** self.power

    def config(self):
        return {"name": "invscaling", "power": self.power}


KINDS = {"constant": Constant, "step": Step, "cosine": Cosine, "invscaling": InverseScaling}


def make_schedule(schedule="constant"):
    """A Schedule from a name in KINDS, a Schedule, or a config dict."""
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, dict):
        config = dict(schedule)
        return KINDS[config.pop("name")](**config)
    if schedule not in KINDS:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {sorted(KINDS)} "
                         "or pass a Schedule object")
    return KINDS[schedule]()
