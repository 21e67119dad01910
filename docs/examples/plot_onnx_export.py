"""
Export to ONNX and serve with ONNX Runtime
==========================================

:meth:`cmlp.Network.to_onnx` writes the trained network as an ONNX graph
(MatMul, Add and the activations; softmax at the end), which any ONNX runtime
can serve. Its probabilities agree with ``predict_proba`` to float32 rounding.
"""
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import onnxruntime

from cmlp import Network
from cmlp.datasets import load_mnist

X_train, y_train, X_test, y_test = load_mnist(os.environ.get("CMLP_DATA"))
net = Network([784, 128, 64, 10], seed=0)
net.fit(X_train, y_train, epochs=3, batch_size=128, lr=0.1, verbose=0)

with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "mnist.onnx")
    net.to_onnx(path)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    onnx_proba = session.run(None, {name: X_test})[0]

cmlp_proba = net.predict_proba(X_test)
print(f"largest difference over 10,000 rows: {np.abs(onnx_proba - cmlp_proba).max():.2e}")
print(f"same labels: {np.array_equal(onnx_proba.argmax(1), net.predict(X_test))}")

# %%
# Twelve test digits with the label ONNX Runtime gives them.
fig, axes = plt.subplots(2, 6, figsize=(8, 3))
for ax, image, proba in zip(axes.ravel(), X_test, onnx_proba):
    ax.imshow(image.reshape(28, 28), cmap="gray_r")
    ax.set_title(f"{proba.argmax()} ({proba.max():.2f})")
    ax.set_axis_off()
fig.tight_layout()
