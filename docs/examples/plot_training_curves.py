"""
Training curves on MNIST
========================

Train the reference network 784-128-64-10 (ReLU, softmax + cross-entropy)
with SGD and a cosine schedule, holding out MNIST's test set as validation
data, then draw the loss, accuracy and learning rate of every epoch from the
returned :class:`cmlp.History`.
"""
import os

import matplotlib.pyplot as plt

from cmlp import Network
from cmlp.datasets import load_mnist

X_train, y_train, X_test, y_test = load_mnist(os.environ.get("CMLP_DATA"))
net = Network([784, 128, 64, 10], activation="relu", output="softmax", seed=0)
history = net.fit(X_train, y_train, epochs=8, batch_size=128, lr=0.1, schedule="cosine",
                  validation_data=(X_test, y_test), verbose=0)
print(f"test accuracy after {len(history.loss)} epochs: {history.val_accuracy[-1]:.4f}")

# %%
# The three curves, as :meth:`cmlp.History.plot` draws them for a PNG file,
# here by hand on one figure.
epochs = range(1, len(history.loss) + 1)
fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(11, 3.2))
ax_loss.plot(epochs, history.loss, label="train")
ax_loss.plot(epochs, history.val_loss, label="test")
ax_loss.set(title="cross-entropy", xlabel="epoch")
ax_loss.legend()
ax_acc.plot(epochs, history.accuracy, label="train")
ax_acc.plot(epochs, history.val_accuracy, label="test")
ax_acc.set(title="accuracy", xlabel="epoch")
ax_lr.plot(epochs, history.lr)
ax_lr.set(title="learning rate (cosine)", xlabel="epoch")
fig.tight_layout()
