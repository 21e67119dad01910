"""
A scikit-learn pipeline and grid search
=======================================

:class:`cmlp.sklearn.MLPClassifier` is scikit-learn's ``MLPClassifier``
(same parameters, same results, faster), so it goes in a ``Pipeline`` behind a
``StandardScaler`` and into ``GridSearchCV`` like any estimator. Here: 5,000
MNIST rows, 3-fold search over the hidden layer width and the L2 penalty.
"""
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cmlp.datasets import load_mnist
from cmlp.sklearn import MLPClassifier

X_train, y_train, X_test, y_test = load_mnist(os.environ.get("CMLP_DATA"))
X, y = X_train[:5000], y_train[:5000]

pipeline = make_pipeline(StandardScaler(), MLPClassifier(max_iter=15, random_state=0))
grid = {"mlpclassifier__hidden_layer_sizes": [(32,), (128,)],
        "mlpclassifier__alpha": [1e-4, 1e-1]}
search = GridSearchCV(pipeline, grid, cv=3).fit(X, y)
print("best:", search.best_params_, f"cv accuracy {search.best_score_:.4f}")
print(f"refit on 5,000 rows, MNIST test accuracy: {search.score(X_test, y_test):.4f}")

# %%
# Mean cross-validated accuracy of every cell of the grid.
scores = search.cv_results_["mean_test_score"].reshape(2, 2)
fig, ax = plt.subplots(figsize=(4.5, 3.5))
ax.imshow(scores, cmap="viridis")
for (i, j), score in np.ndenumerate(scores):
    ax.text(j, i, f"{score:.3f}", ha="center", va="center", color="white")
ax.set(xticks=[0, 1], xticklabels=["1e-4", "1e-1"], xlabel="alpha",
       yticks=[0, 1], yticklabels=["(32,)", "(128,)"], ylabel="hidden_layer_sizes")
fig.tight_layout()
