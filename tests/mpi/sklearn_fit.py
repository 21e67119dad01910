"""Run under mpiexec by tests/test_distributed.py: the scikit-learn
estimators' fit(comm=) against one process, with alpha (per-sample decay,
which must divide by the global batch's weight), early stopping, sample
weights and a batch size that does not divide the data. Rank 0 prints one
JSON line per case."""
import json
import warnings

import numpy as np
from mpi4py import MPI

from cmlp.sklearn import MLPClassifier, MLPRegressor

comm = MPI.COMM_WORLD
rng = np.random.default_rng(0)
X = rng.standard_normal((301, 10))
y_class = rng.integers(0, 3, 301)
y_reg = X[:, :2] @ np.array([[1.0, -2.0], [0.5, 1.0]]) + 0.1 * rng.standard_normal((301, 2))
w = rng.random(301) + 0.5
cases = [
    ("classifier sgd", MLPClassifier, y_class, dict(solver="sgd", momentum=0.9), None),
    ("classifier adam weighted", MLPClassifier, y_class, dict(solver="adam"), w),
    ("classifier early stopping", MLPClassifier, y_class,
     dict(solver="adam", early_stopping=True, n_iter_no_change=2), None),
    ("regressor adam", MLPRegressor, y_reg, dict(solver="adam"), w),
]
warnings.simplefilter("ignore")          # max_iter reached: expected here
for (name, kind, y, params, weights), dtype in [(c, d) for c in cases
                                                for d in ("float32", "float64")]:
    def make(kind=kind, dtype=dtype, params=params):
        return kind(hidden_layer_sizes=(16,), alpha=0.01, batch_size=37, max_iter=8,
                    learning_rate_init=0.01, random_state=0, tol=0, dtype=dtype, **params)
    model = make().fit(X, y, sample_weight=weights, comm=comm)
    params_all = comm.gather(model.network_.parameters.copy(), root=0)
    curves = comm.gather(model.loss_curve_, root=0)
    if comm.rank == 0:
        one = make().fit(X, y, sample_weight=weights)
        ref = one.network_.parameters
        print(json.dumps({
            "case": name, "dtype": dtype, "n_iter": [model.n_iter_, one.n_iter_],
            "relative": float(np.max(np.abs(params_all[0] - ref)) / np.max(np.abs(ref))),
            "ranks_equal": all(np.array_equal(p, params_all[0]) for p in params_all),
            "curves_equal": all(c == curves[0] for c in curves),
            "curve_relative": float(np.max(np.abs(np.subtract(curves[0], one.loss_curve_))
                                           / np.abs(one.loss_curve_)))}), flush=True)
