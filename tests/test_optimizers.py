"""Optimizers, weight decay, schedules, warm start and checkpoints."""
import numpy as np
import pytest
from conftest import assert_close

from cmlp import Network, reference
from cmlp import checked_kernels as kernels
from cmlp.optimizers import SGD, Adam, make_optimizer
from cmlp.reference import ReferenceNetwork
from cmlp.schedules import Constant, Cosine, InverseScaling, Step, make_schedule

from helpers import Crash, crash_after

DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_kernels_match_reference(dtype):
    rng = np.random.default_rng(0)
    p, g, s1 = (rng.standard_normal(1003).astype(dtype) for _ in range(3))
    s2 = rng.random(1003).astype(dtype)
    assert_close(kernels.l2_grad(g, p, 0.01), reference.l2_grad(g, p, 0.01), dtype)
    for name in ("momentum_update", "momentum_step_update"):
        for nesterov in (False, True):
            got = getattr(kernels, name)(p, s1, g, 0.05, 0.9, nesterov)
            want = getattr(reference, name)(p, s1, g, 0.05, 0.9, nesterov)
            for a, b in zip(got, want):
                assert a.dtype == dtype
                assert_close(a, b, dtype)
    for name in ("adam_update", "adam_step_update"):
        for t in (1, 2, 1000):
            got = getattr(kernels, name)(p, s1, s2, g, 1e-3, 0.9, 0.999, 1e-8, t)
            want = getattr(reference, name)(p, s1, s2, g, 1e-3, 0.9, 0.999, 1e-8, t)
            for a, b in zip(got, want):
                assert_close(a, b, dtype)
        with pytest.raises(ValueError, match="t must be >= 1"):
            getattr(kernels, name)(p, s1, s2, g, 1e-3, 0.9, 0.999, 1e-8, 0)


def test_step_conventions_differ_only_where_they_should():
    """scikit-learn's conventions: SGD momentum with the rate in the velocity
    equals PyTorch's at one rate; Adam with eps on the uncorrected root
    differs from eps on the corrected one while sqrt(v) is near eps."""
    rng = np.random.default_rng(3)
    p, g, v0 = (rng.standard_normal(50) for _ in range(3))
    velocity = np.zeros(50)
    a, va = kernels.momentum_update(p, velocity, g, 0.1, 0.9, True)
    b, vb = kernels.momentum_step_update(p, velocity, g, 0.1, 0.9, True)
    np.testing.assert_allclose(a, b, rtol=1e-14)
    np.testing.assert_allclose(vb, -0.1 * va, rtol=1e-14)
    tiny = np.full(50, 1e-9)      # gradients of the size of eps
    zeros = np.zeros(50)
    moments = kernels.adam_update(p, zeros, zeros, tiny, 1e-3, 0.9, 0.999, 1e-8, 1)[0]
    step = kernels.adam_step_update(p, zeros, zeros, tiny, 1e-3, 0.9, 0.999, 1e-8, 1)[0]
    # t = 1: moments form lr * g / (|g| + eps); step form lr * sqrt(1 - b2) / (1 - b1)
    # * (1 - b1) g / (sqrt(1 - b2) |g| + eps).
    # (p - p' loses ~1e-12 of the step to cancellation, hence rtol 1e-9.)
    np.testing.assert_allclose(p - moments, 1e-3 * 1e-9 / (1e-9 + 1e-8), rtol=1e-9)
    c2 = np.sqrt(0.001)
    np.testing.assert_allclose(p - step, 1e-3 * c2 * 1e-9 / (c2 * 1e-9 + 1e-8), rtol=1e-9)
    with pytest.raises(ValueError, match="correction"):
        Adam(correction="paper")
    with pytest.raises(ValueError, match="convention"):
        SGD(momentum=0.9, convention="keras")


OPTIMIZERS = [
    lambda: SGD(lr=0.05, weight_decay=0.01),
    lambda: SGD(lr=0.05, momentum=0.9),
    lambda: SGD(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.001),
    lambda: Adam(lr=0.01),
    lambda: Adam(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01),
    # scikit-learn's conventions (the cosine schedule changes the rate each epoch).
    lambda: SGD(lr=0.05, momentum=0.9, nesterov=True, convention="step"),
    lambda: SGD(lr=0.05, momentum=0.9, convention="step", weight_decay=0.01),
    lambda: Adam(lr=0.01, correction="step"),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("make", OPTIMIZERS, ids=lambda m: repr(m()))
def test_training_with_optimizer_tracks_reference(dtype, make):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((150, 9))
    y = rng.integers(0, 4, 150)
    net = Network([9, 12, 7, 4], "tanh", dtype=dtype, seed=4)
    ref = ReferenceNetwork([9, 12, 7, 4], "tanh", dtype=dtype, seed=4)
    history = net.fit(X, y, epochs=3, batch_size=16, optimizer=make(), schedule="cosine",
                      verbose=0)
    losses = ref.fit(X, y, epochs=3, batch_size=16, optimizer=make(), schedule=Cosine())
    for got, want in zip(history.loss, losses):
        assert_close(got, want, dtype, factor=100)
    for a, b in zip(net.weights + net.biases, ref.weights + ref.biases):
        assert_close(a, b, dtype, factor=100)
    assert history.lr == [Cosine()(e, 3, make().lr) for e in range(3)]


def test_weight_decay_leaves_biases_alone():
    X = np.zeros((4, 3))          # zero input: no data gradient on W, only decay
    y = np.array([0, 1, 0, 1])
    net = Network([3, 2], "relu", dtype="float64", seed=0)
    W0, b0 = net.weights[0].copy(), net.biases[0].copy()
    net.fit(X, y, epochs=1, batch_size=4, optimizer="sgd", lr=0.1, weight_decay=0.5,
            shuffle=False, verbose=0)
    np.testing.assert_allclose(net.weights[0], W0 * (1 - 0.1 * 0.5), rtol=1e-14)
    _, _, dbs = Network([3, 2], "relu", dtype="float64", seed=0).gradients(X, y)
    np.testing.assert_allclose(net.biases[0], b0 - 0.1 * dbs[0], rtol=1e-14)


def test_schedules():
    assert [Constant()(e, 10, 0.1) for e in (0, 9)] == [0.1, 0.1]
    assert [round(Step(every=2, gamma=0.5)(e, 10, 0.1), 12) for e in range(5)] == \
        [0.1, 0.1, 0.05, 0.05, 0.025]
    assert Step()(3, 9, 1.0) == 0.1 and Step()(2, 9, 1.0) == 1.0      # every = epochs / 3
    assert Cosine()(0, 4, 0.2) == 0.2 and np.isclose(Cosine()(2, 4, 0.2), 0.1)
    assert np.isclose(InverseScaling()(3, 10, 0.1), 0.05)
    assert isinstance(make_schedule("invscaling"), InverseScaling)
    assert isinstance(make_schedule({"name": "step", "every": 3, "gamma": 0.5}), Step)
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("exponential")


def test_optimizer_arguments():
    assert make_optimizer("adam").lr == 0.001
    assert make_optimizer("nesterov").momentum == 0.9 and make_optimizer("nesterov").nesterov
    assert make_optimizer("sgd", lr=0.3).kind == SGD(lr=0.3).kind
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("rmsprop")
    with pytest.raises(ValueError, match="optimizer object"):
        make_optimizer(Adam(), lr=0.1)
    with pytest.raises(ValueError, match="momentum does not apply"):
        make_optimizer("adam", momentum=0.9)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD(nesterov=True)
    with pytest.raises(ValueError, match="beta1"):
        Adam(beta1=1.0)
    with pytest.raises(TypeError, match="lr"):
        Adam(lr="fast")
    with pytest.raises(ValueError, match="lr"):
        SGD(lr=-1)


def test_warm_start_continues_optimizer_state():
    """Two fit() calls of one epoch equal one fit() of two, bit for bit."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((100, 5)).astype(np.float32)
    y = rng.integers(0, 3, 100)
    a, b = Network([5, 8, 3], seed=1), Network([5, 8, 3], seed=1)
    a.fit(X, y, epochs=2, batch_size=10, optimizer=Adam(lr=0.01), verbose=0)
    b.fit(X, y, epochs=1, batch_size=10, optimizer=Adam(lr=0.01), verbose=0)
    b.fit(X, y, epochs=1, batch_size=10, verbose=0)           # continues b.optimizer
    np.testing.assert_array_equal(a.parameters, b.parameters)
    assert a.optimizer.step == b.optimizer.step == 20


def test_optimizer_state_is_saved_with_the_model(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((50, 4))
    y = rng.integers(0, 2, 50)
    net = Network([4, 6, 2], seed=0)
    net.fit(X, y, epochs=2, optimizer="nesterov", lr=0.05, verbose=0)
    net.save(tmp_path / "m.npz")
    loaded = Network.load(tmp_path / "m.npz")
    assert loaded.optimizer.config() == net.optimizer.config()
    assert loaded.optimizer.step == net.optimizer.step
    np.testing.assert_array_equal(loaded.optimizer.state[0], net.optimizer.state[0])


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_resume_from_checkpoint_is_bit_identical(tmp_path, optimizer):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 6)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    kwargs = dict(epochs=5, batch_size=32, optimizer=optimizer, schedule="cosine",
                  weight_decay=1e-3, verbose=0)
    whole = Network([6, 10, 3], seed=9)
    full_history = whole.fit(X, y, **kwargs)

    path = tmp_path / "run.npz"
    crashed = Network([6, 10, 3], seed=9)

    with pytest.raises(Crash):
        crashed.fit(X, y, checkpoint=path, on_epoch_end=crash_after(2), **kwargs)

    resumed, fit_kwargs = Network.load_checkpoint(path)
    assert fit_kwargs["initial_epoch"] == 2 and len(fit_kwargs["history"]) == 2
    history = resumed.fit(X, y, verbose=0, **fit_kwargs)
    np.testing.assert_array_equal(resumed.parameters, whole.parameters)
    np.testing.assert_array_equal(resumed.optimizer.state[0], whole.optimizer.state[0])
    assert history.epoch == [1, 2, 3, 4, 5]
    assert history.loss == full_history.loss and history.lr == full_history.lr


def test_load_checkpoint_rejects_plain_models(tmp_path):
    net = Network([3, 2], seed=0)
    net.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="not a checkpoint"):
        Network.load_checkpoint(tmp_path / "m.npz")


def toy_split(n=400, seed=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 8)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.standard_normal(n) > 0).astype(int)
    return X, y


def test_validation_split_is_seeded_and_disjoint():
    X, y = toy_split()
    h1 = Network([8, 6, 2], seed=2).fit(X, y, epochs=2, validation_split=0.25, verbose=0)
    h2 = Network([8, 6, 2], seed=2).fit(X, y, epochs=2, validation_split=0.25, verbose=0)
    assert h1.val_loss == h2.val_loss and "val_accuracy" in h1.keys()
    # The same split by hand: train on the kept rows, validate on the held-out ones.
    from cmlp._layout import split_seed
    order = np.random.default_rng(split_seed(2)).permutation(400)
    held, kept = np.sort(order[:100]), np.sort(order[100:])
    net = Network([8, 6, 2], seed=2)
    h3 = net.fit(X[kept], y[kept], epochs=2, validation_data=(X[held], y[held]), verbose=0)
    assert h3.val_loss == h1.val_loss and h3.loss == h1.loss
    with pytest.raises(ValueError, match="not both"):
        net.fit(X, y, validation_split=0.2, validation_data=(X, y), verbose=0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        net.fit(X, y, validation_split=1.0, verbose=0)


def test_early_stopping_restores_best_weights():
    X, y = toy_split()
    net = Network([8, 64, 2], seed=0)
    history = net.fit(X, y, epochs=200, batch_size=8, lr=0.5, validation_split=0.3,
                      early_stopping=True, patience=3, verbose=0)
    assert len(history) < 200                                  # it stopped
    best = int(np.argmin(history.val_loss)) + 1
    assert history.best_epoch == best and len(history) == best + 3
    # The restored weights are the best epoch's: its val_loss, evaluated again.
    from cmlp._layout import split_seed
    order = np.random.default_rng(split_seed(0)).permutation(400)
    held = np.sort(order[:120])
    assert np.isclose(net.evaluate(X[held], y[held])["loss"], min(history.val_loss), rtol=1e-6)
    with pytest.raises(ValueError, match="needs validation"):
        Network([8, 2], seed=0).fit(X, y, early_stopping=True, verbose=0)


def test_early_stopping_resumes_exactly(tmp_path):
    X, y = toy_split()
    kwargs = dict(epochs=60, batch_size=8, lr=0.5, validation_split=0.3, early_stopping=True,
                  patience=4, verbose=0)
    whole = Network([8, 64, 2], seed=1)
    full = whole.fit(X, y, **kwargs)
    assert len(full) < 60

    crashed = Network([8, 64, 2], seed=1)
    stop_at = max(1, len(full) - 3)
    with pytest.raises(Crash):
        crashed.fit(X, y, checkpoint=tmp_path / "c.npz", on_epoch_end=crash_after(stop_at),
                    **kwargs)
    net, fit_kwargs = Network.load_checkpoint(tmp_path / "c.npz")
    history = net.fit(X, y, **{**fit_kwargs, "verbose": 0})
    assert history.val_loss == full.val_loss and history.best_epoch == full.best_epoch
    np.testing.assert_array_equal(net.parameters, whole.parameters)


def test_resuming_a_run_that_already_stopped_trains_no_further(tmp_path):
    X, y = toy_split()
    net = Network([8, 64, 2], seed=1)
    history = net.fit(X, y, epochs=60, batch_size=8, lr=0.5, validation_split=0.3,
                      early_stopping=True, patience=2, checkpoint=tmp_path / "c.npz", verbose=0)
    assert len(history) < 60
    resumed, fit_kwargs = Network.load_checkpoint(tmp_path / "c.npz")
    again = resumed.fit(X, y, **{**fit_kwargs, "verbose": 0})
    assert len(again) == len(history) and again.best_epoch == history.best_epoch
    np.testing.assert_array_equal(resumed.parameters, net.parameters)
