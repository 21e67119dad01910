"""cmlp: a Cython-compiled, C-level multilayer perceptron.

    from cmlp import Network
    net = Network([784, 128, 64, 10], activation="relu", output="softmax", seed=0)
    net.fit(X, y, epochs=10, batch_size=128, lr=0.1)

See README.md for the architecture and cmlp.reference for the NumPy twin.
"""
from cmlp.history import History
from cmlp.network import Network

__all__ = ["Network", "History"]
__version__ = "0.1.0"
