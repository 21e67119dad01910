"""A release smoke test: an installed cmlp trains, predicts, saves, loads and
serves scikit-learn, on whichever Python runs this. .ci/run runs it on each of
CPython 3.9-3.13 against the repaired wheel; it exits non-zero on any failure.

    python .ci/smoke.py MNIST_DIR
"""
import os
import sys
import tempfile

import numpy as np
import scipy

import cmlp
from cmlp import Network
from cmlp.datasets import load_mnist


def main(data_dir):
    assert "site-packages" in cmlp.__file__, f"not the installed cmlp: {cmlp.__file__}"
    X_train, y_train, X_test, y_test = load_mnist(data_dir)
    net = Network([784, 128, 64, 10], seed=0)
    net.fit(X_train, y_train, epochs=1, batch_size=64, lr=0.1, verbose=False)
    accuracy = net.evaluate(X_test, y_test)["accuracy"]
    assert accuracy > 0.9, accuracy
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "net.npz")
        net.save(path)
        same = np.array_equal(Network.load(path).predict_proba(X_test[:500]),
                              net.predict_proba(X_test[:500]))
    assert same, "the loaded network predicts differently"

    from sklearn.datasets import load_digits
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cmlp.sklearn import MLPClassifier
    X, y = load_digits(return_X_y=True)
    model = make_pipeline(StandardScaler(), MLPClassifier(max_iter=60, random_state=0))
    cv = cross_val_score(model, X, y, cv=3).mean()
    assert cv > 0.9, cv
    print(f"smoke: Python {sys.version.split()[0]}, numpy {np.__version__}, scipy "
          f"{scipy.__version__}, cmlp {cmlp.__version__}: MNIST 784-128-64-10, 1 epoch, "
          f"test accuracy {accuracy:.4f}; save/load predicts the same bits; "
          f"MLPClassifier pipeline on digits, 3-fold accuracy {cv:.4f}")


if __name__ == "__main__":
    main(sys.argv[1])
