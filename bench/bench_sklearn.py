"""cmlp.sklearn against scikit-learn's MLP: fit time and score, same settings.

    python bench/bench_sklearn.py [--data DIR] [--mnist-epochs N] [--sparse-rows N]
                                  [--sparse-epochs N] [--smoke]

scikit-learn's bundled real datasets (digits, breast cancer, wine: MLPClassifier;
diabetes: MLPRegressor), each in a StandardScaler pipeline, 5-fold CV (stratified
for classifiers), every estimator at scikit-learn's defaults (100 hidden ReLU
units, adam, max_iter 200, tol 1e-4, random_state 0); then MNIST (60,000 train /
10,000 test, pixels in [0, 1]) for --mnist-epochs epochs. The systems take turns
fold by fold, each fold starting with the next system. cmlp runs twice: at its
default, dtype=None (float64 for float64 input, as scikit-learn computes: the
same model as scikit-learn's), and with dtype="float32" (cmlp's fast option).
The bundled sets run once with adam (the default solver) and once with
solver="lbfgs" (its own rows). Then a sparse case: TF-IDF-like text features
(--sparse-rows x 50,000 columns, ~0.2 % stored: 250 words a document drawn
from a Zipf vocabulary plus 3 topic words of its class, 10 classes), CSR,
80/20 split, --sparse-epochs epochs of the defaults. Where the time goes: the
adam rows also give the GEMM floor of cmlp's float64 fits (the matrix products
of every epoch it ran, alone: bench/_bench_floor.pyx, median of 5 epochs times its
epochs, summed over folds), which no implementation of the same model can
beat. Fit time is the sum over folds;
the score is the mean test score (accuracy, or R^2 for diabetes) +- its std over
folds. Prints a Markdown table and writes JSON under bench/results/.
"""
import argparse
import statistics
import time
import warnings

import numpy as np
import scipy.sparse
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cmlp.sklearn import MLPClassifier, MLPRegressor

import _floor
from _common import load_data, markdown_table, write_json

_bench_floor = _floor.load()

SYSTEMS = {
    "scikit-learn": lambda kind, **kw: (SkClassifier if kind == "clf" else SkRegressor)(**kw),
    "cmlp (default, float64)": lambda kind, **kw: (
        MLPClassifier if kind == "clf" else MLPRegressor)(**kw),
    "cmlp dtype=float32": lambda kind, **kw: (
        MLPClassifier if kind == "clf" else MLPRegressor)(dtype="float32", **kw),
}


def bundled(smoke):
    sets = [("digits", "clf", datasets.load_digits), ("breast cancer", "clf",
            datasets.load_breast_cancer), ("wine", "clf", datasets.load_wine),
            ("diabetes", "reg", datasets.load_diabetes)]
    for name, kind, load in sets:
        X, y = load(return_X_y=True)
        if smoke:
            X, y = X[:120], y[:120]
        yield name, kind, X.astype(np.float64), y


def tfidf_like(n_rows, n_cols=50_000, words=250, topic_words=3, classes=10, seed=0):
    """(X CSR float64, y): documents of `words` Zipf-drawn word ids plus
    `topic_words` from their class's own 2,000-word topic, as TF-IDF rows."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n_rows)
    common = np.minimum(rng.zipf(1.3, (n_rows, words)) - 1, n_cols - 1)
    topics = rng.permutation(n_cols)[:classes * 2000].reshape(classes, 2000)
    topical = topics[y[:, None], rng.integers(0, 2000, (n_rows, topic_words))]
    ids = np.concatenate([common, topical], axis=1)
    rows = np.repeat(np.arange(n_rows), ids.shape[1])
    counts = scipy.sparse.csr_matrix((np.ones(rows.size), (rows, ids.ravel())),
                                     shape=(n_rows, n_cols))
    counts.sum_duplicates()
    return TfidfTransformer().fit_transform(counts).tocsr(), y


def sparse_case(n_rows, epochs):
    """Fit time and test accuracy of each system on tfidf_like data."""
    X, y = tfidf_like(n_rows)
    cut = int(0.8 * n_rows)
    out = {"shape": list(X.shape), "density": X.nnz / (X.shape[0] * X.shape[1])}
    for system, make in SYSTEMS.items():
        est = make("clf", random_state=0, max_iter=epochs)
        start = time.perf_counter()
        est.fit(X[:cut], y[:cut])
        out[system] = {"fit_s": time.perf_counter() - start,
                       "score": est.score(X[cut:], y[cut:]), "n_iter": est.n_iter_}
    return out


FLOOR_OF = "cmlp (default, float64)"


def gemm_floor_s(pipe, X_train):
    """The GEMM floor of the fitted pipeline's run: one epoch's products
    (median of 5) times its epochs."""
    est = pipe[-1]
    X = np.ascontiguousarray(pipe[0].transform(X_train), dtype=est.network_.dtype)
    batch = min(200, X.shape[0])
    params = est.network_._parameters.copy()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        _bench_floor.gemm_floor_epoch(params, est.network_._layout, X, batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * est.n_iter_


def cross_validated(kind, X, y, settings, folds):
    splitter = (StratifiedKFold if kind == "clf" else KFold)(folds, shuffle=True, random_state=0)
    fit_s = {name: 0.0 for name in SYSTEMS}
    scores = {name: [] for name in SYSTEMS}
    iters = {name: [] for name in SYSTEMS}
    floor = 0.0
    names = list(SYSTEMS)
    for fold, (train, test) in enumerate(splitter.split(X, y)):
        # Each fold starts with another system: none always follows another
        # library's BLAS threads still spinning down.
        for name in names[fold % len(names):] + names[:fold % len(names)]:
            make = SYSTEMS[name]
            pipe = make_pipeline(StandardScaler(), make(kind, **settings))
            start = time.perf_counter()
            pipe.fit(X[train], y[train])
            fit_s[name] += time.perf_counter() - start
            scores[name].append(pipe.score(X[test], y[test]))
            iters[name].append(pipe[-1].n_iter_)
            if name == FLOOR_OF and settings["solver"] != "lbfgs":
                floor += gemm_floor_s(pipe, X[train])
    return fit_s, scores, iters, floor


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--mnist-epochs", type=int, default=10)
    parser.add_argument("--sparse-rows", type=int, default=20_000)
    parser.add_argument("--sparse-epochs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny data, 2 folds, few epochs")
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    folds = 2 if args.smoke else 5
    settings = dict(random_state=0, max_iter=5 if args.smoke else 200)
    rows, results = [], {}
    totals = {name: 0.0 for name in SYSTEMS}
    lbfgs_totals = {name: 0.0 for name in SYSTEMS}
    floor_total = {"adam": 0.0, "lbfgs": 0.0}
    for solver, sums in (("adam", totals), ("lbfgs", lbfgs_totals)):
        for name, kind, X, y in bundled(args.smoke):
            fit_s, scores, iters, floor = cross_validated(
                kind, X, y, dict(settings, solver=solver), folds)
            key = name if solver == "adam" else f"{name}, lbfgs"
            results[key] = {system: {"fit_s": fit_s[system], "scores": scores[system],
                                     "n_iter": iters[system]} for system in SYSTEMS}
            if floor:
                results[key]["gemm_floor_s"] = floor
            rows.append([f"{key} ({X.shape[0]}x{X.shape[1]}, {folds}-fold)"] + [
                f"{statistics.mean(scores[s]):.4f} ± {statistics.pstdev(scores[s]):.4f} · "
                f"{fit_s[s]:.2f} s · {statistics.median(iters[s]):.0f} it" for s in SYSTEMS]
                + [f"{floor:.2f} s · {fit_s['scikit-learn'] / floor:.1f}× / "
                   f"{fit_s[FLOOR_OF] / floor:.1f}×" if floor else "—"])
            for system in SYSTEMS:
                sums[system] += fit_s[system]
            floor_total[solver] += floor

    X_train, y_train, X_test, y_test, source = load_data(args.data, smoke=args.smoke)
    X_train, X_test = X_train.astype(np.float64), X_test.astype(np.float64)
    mnist = {}
    for system, make in SYSTEMS.items():
        est = make("clf", random_state=0, max_iter=args.mnist_epochs if not args.smoke else 2)
        start = time.perf_counter()
        est.fit(X_train, y_train)
        mnist[system] = {"fit_s": time.perf_counter() - start,
                         "score": est.score(X_test, y_test), "n_iter": est.n_iter_}
    results["MNIST"] = mnist
    epochs = mnist["scikit-learn"]["n_iter"]
    rows.append([f"{source} ({X_train.shape[0]} train, {X_test.shape[0]} test, {epochs} epochs)"] + [
        f"{mnist[s]['score']:.4f} · {mnist[s]['fit_s']:.2f} s" for s in SYSTEMS] + ["—"])
    sparse = sparse_case(300 if args.smoke else args.sparse_rows,
                         1 if args.smoke else args.sparse_epochs)
    results["sparse"] = sparse
    base = sparse["scikit-learn"]["fit_s"]
    rows.append([f"sparse TF-IDF-like ({sparse['shape'][0]}x{sparse['shape'][1]} CSR, "
                 f"{100 * sparse['density']:.2f} % stored, 80/20, "
                 f"{sparse['scikit-learn']['n_iter']} epochs)"] + [
        f"{sparse[s]['score']:.4f} · {sparse[s]['fit_s']:.2f} s · "
        f"{sparse[s]['fit_s'] / base:.2f}× scikit-learn" for s in SYSTEMS] + ["—"])
    for label, sums in (("adam", totals), ("lbfgs", lbfgs_totals)):
        base = sums["scikit-learn"]
        floor = floor_total[label]
        rows.append([f"summed fit time, bundled sets, {label}"] + [
            f"{sums[s]:.2f} s · {sums[s] / base:.2f}× scikit-learn" for s in SYSTEMS]
            + [f"{floor:.2f} s · {floor / base:.2f}× scikit-learn" if floor else "—"])
    print("cmlp.sklearn vs scikit-learn's MLP, same settings (defaults, random_state=0); "
          "cells: mean test score ± std · summed fit time · median epochs")
    print(markdown_table(["data set", *SYSTEMS, "GEMM floor of cmlp float64 · scikit-learn / "
                          "cmlp float64 over it"], rows))
    path = write_json("sklearn", {"settings": {"folds": folds, "mnist_epochs": args.mnist_epochs,
                                               "sparse_rows": args.sparse_rows,
                                               "sparse_epochs": args.sparse_epochs,
                                               **settings},
                                  "results": results, "summed_fit_s": totals,
                                  "summed_fit_s_lbfgs": lbfgs_totals,
                                  "gemm_floor_s": floor_total["adam"]}, args.results_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
