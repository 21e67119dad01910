"""
The first layer's weights as images
===================================

Each of the 128 hidden units of the first layer has one weight per pixel:
column ``j`` of ``net.weights[0]`` (shape ``(784, 128)``, W is ``(n_in,
n_out)``) reshaped to 28x28. After a few epochs the weights are still mostly
their random He initialisation, so the figure draws what training changed,
``W - W_init``: the strokes that now excite (red) or inhibit (blue) unit
``j``, inside the digit area (the border pixels are always 0 in MNIST and
their weights never move).
"""
import os

import matplotlib.pyplot as plt
import numpy as np

from cmlp import Network
from cmlp.datasets import load_mnist

X_train, y_train, X_test, y_test = load_mnist(os.environ.get("CMLP_DATA"))
net = Network([784, 128, 64, 10], seed=0)
W_init = net.weights[0].copy()
net.fit(X_train, y_train, epochs=5, batch_size=128, lr=0.1, verbose=0)
print(f"test accuracy: {net.evaluate(X_test, y_test)['accuracy']:.4f}")

W = net.weights[0] - W_init             # weights[0]: a read-only view into the flat buffer
fig, axes = plt.subplots(4, 8, figsize=(8, 4.4))
for unit, ax in enumerate(axes.ravel()):
    image = W[:, unit].reshape(28, 28)
    limit = np.abs(image).max()
    ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_axis_off()
fig.suptitle("W - W_init of the first 32 hidden units of 784-128-64-10")
fig.tight_layout()
