"""
Interrupt a run and resume it, bit for bit
==========================================

``fit(checkpoint=path)`` writes the model, the optimizer state and the
position in the data after every epoch (and on Ctrl-C, mid-epoch).
:meth:`cmlp.Network.resume` continues from the file, and the result is the
same, to the bit, as the run that was never stopped. Here a callback stops
training after epoch 2 of 4 (as Ctrl-C would), and the resumed run is
compared with an uninterrupted one.
"""
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

from cmlp import Callback, Network
from cmlp.datasets import load_mnist

X_train, y_train, X_test, y_test = load_mnist(os.environ.get("CMLP_DATA"))
X, y = X_train[:20000], y_train[:20000]


class StopAfter(Callback):
    """Ask the loop to stop after `epochs` epochs (return True from on_epoch_end)."""

    def __init__(self, epochs):
        self.epochs, self.seen = epochs, 0

    def on_epoch_end(self, run, record):
        self.seen += 1
        return self.seen >= self.epochs


settings = dict(epochs=4, batch_size=64, optimizer="adam", lr=1e-3, verbose=0)
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "run.npz")
    Network([784, 128, 64, 10], seed=0).fit(X, y, checkpoint=path, callbacks=[StopAfter(2)],
                                            **settings)
    resumed, history = Network.resume(path, X, y, verbose=0)

straight = Network([784, 128, 64, 10], seed=0)
straight_history = straight.fit(X, y, **settings)
same = np.array_equal(resumed.parameters, straight.parameters)
print(f"resumed == uninterrupted, bit for bit: {same}")
print(f"test accuracy: {resumed.evaluate(X_test, y_test)['accuracy']:.4f}")

# %%
# The resumed history continues the interrupted one: epochs 1-2 were run
# before the stop, 3-4 after the resume.
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(range(1, 5), straight_history.loss, "o-", label="uninterrupted")
ax.plot(range(1, 5), history.loss, "x--", markersize=10, label="stopped at 2, resumed")
ax.set(xlabel="epoch", ylabel="training loss", xticks=range(1, 5))
ax.legend()
fig.tight_layout()
