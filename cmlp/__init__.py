"""cmlp: a Cython-compiled, C-level multilayer perceptron.

    from cmlp import Network
    net = Network([784, 128, 64, 10], activation="relu", output="softmax", seed=0)
    net.fit(X, y, epochs=10, batch_size=128, lr=0.1)

See README.md for the architecture and cmlp.reference for the NumPy twin.
"""
try:
    from cmlp import _engine  # noqa: F401  (compiled; fails first if not built)
except ImportError as exc:       # pragma: no cover - depends on how it was installed
    import glob as _glob
    import os as _os
    if not _glob.glob(_os.path.join(__path__[0], "_engine.*.so")):
        raise ImportError(
            "cmlp's compiled extensions are missing: this looks like an unbuilt source tree "
            f"({__path__[0]} has no compiled _engine module). Install with 'pip install .' and "
            "run from another directory, or build in place with 'pip install -e .'") from None
    raise ImportError(f"cmlp's compiled extensions do not load here: {exc}") from exc

from cmlp._scale import InputScaleWarning
from cmlp._version import __version__ as __version__
from cmlp.callbacks import Callback, Checkpoint, EarlyStopping, ProgressBar
from cmlp.history import History
from cmlp.network import Network, load_history
from cmlp.optimizers import SGD, Adam
from cmlp.training import TrainingDiverged

__all__ = ["Network", "History", "load_history", "SGD", "Adam", "TrainingDiverged",
           "InputScaleWarning", "Callback",
           "Checkpoint", "EarlyStopping", "ProgressBar"]
