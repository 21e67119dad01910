"""Dropout, sample/class weights, the sigmoid output, partial_fit, progress
bars and plots, at the level of Network.fit."""
import sys

import numpy as np
import pytest

from cmlp import Network, load_history

from helpers import Crash, blobs, crash_after


def test_dropout_is_off_at_predict_and_changes_training():
    X, y = blobs()
    net = Network([10, 32, 3], seed=1, dropout=0.5)
    plain = Network([10, 32, 3], seed=1)
    np.testing.assert_array_equal(net.forward(X), plain.forward(X))   # same weights, no dropout
    np.testing.assert_array_equal(net.evaluate(X, y)["loss"], plain.evaluate(X, y)["loss"])
    net.fit(X, y, epochs=1, verbose=0)
    plain.fit(X, y, epochs=1, verbose=0)
    assert not np.array_equal(net.parameters, plain.parameters)
    # Predicting twice gives the same answer: no randomness outside training.
    np.testing.assert_array_equal(net.predict_proba(X), net.predict_proba(X))


def test_dropout_is_seeded_and_learns():
    X, y = blobs(n=600, seed=2)
    runs = []
    for _ in range(2):
        net = Network([10, 64, 64, 3], seed=5, dropout=[0.5, 0.2])
        history = net.fit(X, y, epochs=8, batch_size=32, lr=0.05, verbose=0)
        runs.append(net.parameters.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert history.loss[-1] < history.loss[0] / 3
    assert net.evaluate(X, y)["accuracy"] > 0.95
    other = Network([10, 64, 64, 3], seed=6, dropout=[0.5, 0.2])
    other.fit(X, y, epochs=1, batch_size=32, lr=0.05, verbose=0)
    assert not np.array_equal(other.parameters, runs[0])


def test_dropout_arguments():
    assert Network([4, 5, 6, 2], dropout=0.25).dropout == [0.25, 0.25]
    net = Network([4, 5, 6, 2], dropout=[0.1, 0.0])
    assert net.dropout == [0.1, 0.0]
    assert "dropout=[0.1, 0.0]" in repr(net)
    net.dropout = 0.3
    assert net.dropout == [0.3, 0.3]
    for bad, exc in ((1.0, ValueError), (-0.1, ValueError), ([0.1], ValueError),
                     ("0.5", TypeError), (float("nan"), ValueError)):
        with pytest.raises(exc):
            Network([4, 5, 6, 2], dropout=bad)


def test_dropout_and_counter_are_saved(tmp_path):
    X, y = blobs()
    net = Network([10, 16, 3], seed=3, dropout=0.4)
    net.fit(X, y, epochs=2, batch_size=50, verbose=0)
    net.save(tmp_path / "m.npz")
    back = Network.load(tmp_path / "m.npz")
    assert back.dropout == [0.4] and back._batches_done == 12
    # Continuing from the file trains exactly like continuing in memory.
    net.fit(X, y, epochs=1, batch_size=50, verbose=0, shuffle=False)
    back.fit(X, y, epochs=1, batch_size=50, verbose=0, shuffle=False)
    np.testing.assert_array_equal(net.parameters, back.parameters)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_with_dropout_is_bit_identical(tmp_path, optimizer):
    X, y = blobs(n=250, seed=4)
    kwargs = dict(epochs=5, batch_size=16, optimizer=optimizer, schedule="cosine",
                  weight_decay=1e-4, sample_weight=np.linspace(0.5, 2, 250), verbose=0)
    whole = Network([10, 24, 12, 3], "gelu", seed=9, dropout=[0.3, 0.1])
    whole.fit(X, y, **kwargs)

    first = Network([10, 24, 12, 3], "gelu", seed=9, dropout=[0.3, 0.1])
    with pytest.raises(Crash):
        first.fit(X, y, checkpoint=tmp_path / "run.npz", on_epoch_end=crash_after(2), **kwargs)
    resumed, fit_kwargs = Network.load_checkpoint(tmp_path / "run.npz")
    assert fit_kwargs["initial_epoch"] == 2
    fit_kwargs.update(sample_weight=kwargs["sample_weight"], verbose=0)
    resumed.fit(X, y, optimizer=None, **fit_kwargs)
    np.testing.assert_array_equal(resumed.parameters, whole.parameters)


def test_class_weight_balanced_and_dict():
    X, y = blobs(n=200, seed=7)
    net = Network([10, 8, 3], "tanh", dtype="float64", seed=0)
    counts = np.bincount(y, minlength=3)
    balanced = len(y) / (3 * counts)
    got = net.gradients(X, y, class_weight="balanced")
    want = net.gradients(X, y, sample_weight=balanced[y])
    for g, w in zip(got[1] + got[2], want[1] + want[2]):
        np.testing.assert_array_equal(g, w)
    got = net.gradients(X, y, sample_weight=np.full(200, 2.0), class_weight={0: 3.0})
    want = net.gradients(X, y, sample_weight=np.where(y == 0, 6.0, 2.0))
    for g, w in zip(got[1], want[1]):
        np.testing.assert_array_equal(g, w)
    # Weighting a class up raises its recall on imbalanced data.
    rng = np.random.default_rng(0)
    X2 = rng.standard_normal((600, 2))
    y2 = (X2[:, 0] + 0.8 * rng.standard_normal(600) > 1.3).astype(int)     # ~15% positives
    recall = {}
    for cw in (None, "balanced"):
        m = Network([2, 8, 2], seed=1)
        m.fit(X2, y2, epochs=30, batch_size=32, lr=0.1, class_weight=cw, verbose=0)
        recall[cw] = (m.predict(X2)[y2 == 1] == 1).mean()
    assert recall["balanced"] > recall[None] + 0.1


def test_weight_errors():
    X, y = blobs(n=20)
    net = Network([10, 4, 3], seed=0)
    cases = [
        ({"sample_weight": np.ones(19)}, ValueError, r"shape \(20,\)"),
        ({"sample_weight": -np.ones(20)}, ValueError, ">= 0"),
        ({"sample_weight": np.full(20, np.nan)}, ValueError, "finite"),
        ({"sample_weight": np.zeros(20)}, ValueError, "sum to 0"),
        ({"sample_weight": np.array(["a"] * 20)}, TypeError, "numeric"),
        ({"class_weight": "equal"}, ValueError, "balanced"),
        ({"class_weight": {5: 1.0}}, ValueError, "class labels"),
        ({"class_weight": {0: -1.0}}, ValueError, ">= 0"),
        ({"class_weight": [1, 2, 3]}, TypeError, "dict"),
    ]
    w = np.zeros(20)
    w[:1] = 1
    cases.append(({"sample_weight": w, "validation_split": 0.5}, ValueError, "sum to 0"))
    before = net.parameters.copy()
    for kwargs, exc, match in cases:
        with pytest.raises(exc, match=match):
            net.fit(X, y, epochs=1, verbose=0, **kwargs)
    np.testing.assert_array_equal(net.parameters, before)
    reg = Network([10, 4, 2], output="identity")
    with pytest.raises(ValueError, match="softmax"):
        reg.fit(X, np.zeros((20, 2)), class_weight="balanced", verbose=0)


def test_sigmoid_output_learns_multi_label():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((800, 6))
    Y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] * X[:, 4] > 0], axis=1).astype(float)
    net = Network([6, 32, 3], "relu", output="sigmoid", seed=0)
    history = net.fit(X, Y, epochs=40, batch_size=32, optimizer="adam", lr=0.01, verbose=0)
    P = net.predict_proba(X)
    assert P.shape == (800, 3) and ((P >= 0) & (P <= 1)).all()
    labels = net.predict(X)
    assert labels.dtype == np.int32 and set(np.unique(labels)) <= {0, 1}
    subset_accuracy = (labels == Y).all(axis=1).mean()
    assert subset_accuracy > 0.9
    assert history.accuracy[-1] > 0.85
    assert np.isclose(net.evaluate(X, Y)["accuracy"], subset_accuracy)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        net.fit(X, Y * 2, verbose=0)
    with pytest.raises(ValueError, match="predict_proba"):
        Network([6, 3], output="identity").predict_proba(X)


def test_partial_fit_is_fit_in_pieces():
    X, y = blobs(n=256, seed=8)
    whole = Network([10, 16, 3], seed=2, dropout=0.2)
    whole.fit(X, y, epochs=3, batch_size=32, optimizer="adam", lr=0.01, shuffle=False, verbose=0)
    pieces = Network([10, 16, 3], seed=2, dropout=0.2)
    for epoch in range(3):
        for start in range(0, 256, 64):            # 64 rows = two whole batches
            record = pieces.partial_fit(X[start:start + 64], y[start:start + 64], batch_size=32,
                                        optimizer="adam" if epoch == start == 0 else None,
                                        lr=0.01 if epoch == start == 0 else None,
                                        shuffle=False)
    np.testing.assert_array_equal(pieces.parameters, whole.parameters)
    assert set(record) == {"loss", "accuracy", "lr", "seconds"}
    assert pieces.optimizer.step == 24
    # lr changes the rate in place and keeps the state; optimizer= replaces it.
    moments = pieces.optimizer.state[0].copy()
    pieces.partial_fit(X, y, lr=0.001)
    assert pieces.optimizer.lr == 0.001 and pieces.optimizer.step == 24 + 2
    assert not np.array_equal(pieces.optimizer.state[0], moments)
    pieces.partial_fit(X, y, optimizer="sgd")
    assert pieces.optimizer.config()["name"] == "sgd"


def test_progress_bar_gives_the_same_result(capsys):
    X, y = blobs(n=3000, seed=9)
    runs = []
    for progress in (False, True):
        net = Network([10, 16, 3], seed=4, dropout=0.1)
        net.fit(X, y, epochs=2, batch_size=8, optimizer="adam", verbose=0, progress=progress)
        runs.append(net.parameters.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "/3.00k" in err


def test_progress_bar_without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    X, y = blobs(n=20)
    with pytest.raises(ImportError, match=r"pip install \"cmlp\[progress\]\""):
        Network([10, 3]).fit(X, y, progress=True, verbose=0)


def test_history_plot_and_load_history(tmp_path):
    X, y = blobs()
    net = Network([10, 8, 3], seed=0)
    history = net.fit(X, y, epochs=3, validation_split=0.2, schedule="cosine", verbose=0)
    png = history.plot(tmp_path / "curves.png", title="blobs")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    net.save(tmp_path / "m.npz", history)
    assert load_history(tmp_path / "m.npz").records == history.records
    net.save(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="no training history"):
        load_history(tmp_path / "plain.npz")
    reg = Network([10, 2], output="identity").fit(X, np.zeros((300, 2)), epochs=2, verbose=0)
    reg.plot(tmp_path / "reg.png")                   # loss and lr panels only
    assert (tmp_path / "reg.png").stat().st_size > 5_000
    from cmlp.history import History
    with pytest.raises(ValueError, match="empty"):
        History().plot(tmp_path / "none.png")


def test_plot_without_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    X, y = blobs(n=20)
    history = Network([10, 3]).fit(X, y, epochs=1, verbose=0)
    with pytest.raises(ImportError, match=r"pip install \"cmlp\[plot\]\""):
        history.plot(tmp_path / "x.png")
