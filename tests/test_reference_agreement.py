"""The C engine (Network) against the NumPy ReferenceNetwork, end to end,
plus finite-difference checks of the engine's gradients."""
import itertools

import numpy as np
import pytest
from conftest import assert_close

from cmlp import Network
from cmlp._layout import split_flat
from cmlp.reference import ReferenceNetwork

ACTIVATIONS = ["relu", "tanh", "sigmoid", "identity", "leaky_relu", "gelu"]
OUTPUTS = ["softmax", "identity", "sigmoid", "exp"]
DTYPES = ["float64", "float32"]
SIZES = [13, 16, 8, 5]
CASES = list(itertools.product(ACTIVATIONS, OUTPUTS, DTYPES))


def assert_tracks(history, ref_losses, net, ref, dtype):
    """Training losses and final parameters agree; tolerances grow with the
    number of steps, hence 100x the one-step tolerance."""
    for got, want in zip(history.loss, ref_losses):
        assert_close(got, want, dtype, factor=100)
    for a, b in zip(net.weights + net.biases, ref.weights + ref.biases):
        assert_close(a, b, dtype, factor=100)


def data(output, n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, SIZES[0]))
    if output == "softmax":
        y = rng.integers(0, SIZES[-1], n)
    elif output == "sigmoid":
        y = (rng.random((n, SIZES[-1])) < 0.4).astype(np.float64)
    elif output == "exp":
        y = rng.poisson(1.5, (n, SIZES[-1])).astype(np.float64)
    else:
        y = rng.standard_normal((n, SIZES[-1]))
    return X, y


def pair(activation, output, dtype, seed=3, dropout=0.0):
    return (Network(SIZES, activation, output, dtype, seed=seed, dropout=dropout),
            ReferenceNetwork(SIZES, activation, output, dtype, seed=seed, dropout=dropout))


@pytest.mark.parametrize("activation,output,dtype", CASES)
def test_same_initial_weights(activation, output, dtype):
    net, ref = pair(activation, output, dtype)
    for a, b in zip(net.weights + net.biases, ref.weights + ref.biases):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("activation,output,dtype", CASES)
def test_forward_loss_gradients_and_step(activation, output, dtype):
    net, ref = pair(activation, output, dtype)
    X, y = data(output)
    out = net.forward(X)
    assert out.dtype == np.dtype(dtype)
    assert_close(out, ref.forward(X), dtype)
    assert_close(net.evaluate(X, y)["loss"], ref.loss(X, y), dtype)

    loss, dWs, dbs = net.gradients(X, y)
    ref_loss, ref_dWs, ref_dbs = ref.gradients(X, y)
    assert_close(loss, ref_loss, dtype)
    for g, w in zip(dWs + dbs, ref_dWs + ref_dbs):
        assert g.dtype == np.dtype(dtype)
        assert_close(g, w, dtype)

    # One SGD step over the whole batch, in C and in NumPy.
    net.fit(X, y, epochs=1, batch_size=len(X), lr=0.5, shuffle=False, verbose=0)
    ref.sgd_step(X, y, lr=0.5)
    for a, b in zip(net.weights + net.biases, ref.weights + ref.biases):
        assert_close(a, b, dtype)


@pytest.mark.parametrize("activation,output", list(itertools.product(ACTIVATIONS, OUTPUTS)))
def test_gradients_match_finite_differences(activation, output):
    net = Network(SIZES, activation, output, "float64", seed=11)
    X, y = data(output, n=12, seed=4)
    _, dWs, dbs = net.gradients(X, y)
    analytic = np.concatenate([g.ravel() for pair_ in zip(dWs, dbs) for g in pair_])
    params = net._parameters          # perturbed in place, underneath the checks
    rng = np.random.default_rng(0)
    h = 1e-6
    for i in rng.choice(params.size, size=60, replace=False):
        saved = params[i]
        params[i] = saved + h
        up = net.evaluate(X, y)["loss"]
        params[i] = saved - h
        down = net.evaluate(X, y)["loss"]
        params[i] = saved
        numeric = (up - down) / (2 * h)
        assert abs(numeric - analytic[i]) <= 1e-6 * max(1.0, abs(numeric)), (i, numeric, analytic[i])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", OUTPUTS)
def test_training_tracks_reference(dtype, output):
    """Several shuffled epochs of mini-batch SGD, same init and batch order."""
    net, ref = pair("tanh", output, dtype, seed=21)
    X, y = data(output, n=203, seed=9)
    history = net.fit(X, y, epochs=4, batch_size=16, lr=0.05, verbose=0)
    assert_tracks(history, ref.fit(X, y, epochs=4, batch_size=16, lr=0.05), net, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_online_sgd_batch_1_tracks_reference(dtype, activation):
    """Batch 1 takes the one-row kernels (no gemm, zero inputs skipped)."""
    net, ref = pair(activation, "softmax", dtype, seed=5)
    X, y = data("softmax", n=60, seed=2)
    X[np.random.default_rng(0).random(X.shape) < 0.5] = 0
    history = net.fit(X, y, epochs=2, batch_size=1, lr=0.02, verbose=0)
    assert_tracks(history, ref.fit(X, y, epochs=2, batch_size=1, lr=0.02), net, ref, dtype)


def flat_gradients(dWs, dbs):
    return [g for pair_ in zip(dWs, dbs) for g in pair_]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_dropout_gradients_match_reference(dtype, activation):
    """One training-mode pass: the same masks, so the same gradients."""
    from cmlp import _entry
    net, ref = pair(activation, "softmax", dtype, dropout=[0.5, 0.25])
    X, y = data("softmax", n=23)
    X_, labels, targets = net._check_Xy(X, y)
    weights = np.empty(0, dtype=net.dtype)
    for step in (0, 7):
        loss, _ = _entry.loss_and_gradients(net.parameters, net._gradients, net._layout, X_,
                                             labels, targets, weights, net._workspace(23),
                                             True, net._dropout_key, step)
        ref.dropout_key = net._dropout_key
        ref_loss, ref_dWs, ref_dbs = ref.gradients(X, y, train=True, step=step)
        assert_close(loss / 23, ref_loss, dtype)
        dWs, dbs = split_flat(net._gradients, net.sizes)
        got = dWs + dbs
        for g, w in zip(got, ref_dWs + ref_dbs):
            assert_close(g, w, dtype)
    # Without train, dropout does nothing: the deterministic gradients.
    plain = Network(SIZES, activation, "softmax", dtype, seed=3)
    for g, w in zip(net.gradients(X, y)[1], plain.gradients(X, y)[1]):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [1, 16])
def test_training_with_dropout_tracks_reference(dtype, batch_size):
    net, ref = pair("relu", "softmax", dtype, seed=8, dropout=0.3)
    ref.dropout_key = net._dropout_key      # both derive it from seed 8
    X, y = data("softmax", n=96, seed=1)
    history = net.fit(X, y, epochs=3, batch_size=batch_size, lr=0.05, verbose=0)
    assert_tracks(history, ref.fit(X, y, epochs=3, batch_size=batch_size, lr=0.05),
                  net, ref, dtype)
    assert net._batches_done == ref.batches_done == 3 * -(-96 // batch_size)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", OUTPUTS)
def test_weighted_training_tracks_reference(dtype, output):
    from cmlp.optimizers import Adam
    net, ref = pair("tanh", output, dtype, seed=4)
    X, y = data(output, n=77, seed=6)
    w = np.random.default_rng(3).random(77) * 2
    history = net.fit(X, y, epochs=3, batch_size=10, optimizer=Adam(lr=0.01), sample_weight=w,
                      verbose=0)
    ref_losses = ref.fit(X, y, epochs=3, batch_size=10, optimizer=Adam(lr=0.01),
                         sample_weight=w)
    assert_tracks(history, ref_losses, net, ref, dtype)


@pytest.mark.parametrize("output", OUTPUTS)
def test_weighted_gradients_are_repeated_rows(output):
    """Integer sample weights equal repeating rows (float64, full batch)."""
    net = Network(SIZES, "gelu", output, "float64", seed=2)
    X, y = data(output, n=15, seed=5)
    counts = np.array([0, 1, 2, 3, 1, 1, 4, 1, 1, 0, 2, 1, 1, 1, 1])
    rows = np.repeat(np.arange(15), counts)
    loss, dWs, dbs = net.gradients(X, y, sample_weight=counts)
    loss_r, dWs_r, dbs_r = net.gradients(X[rows], y[rows])
    assert_close(loss, loss_r, np.float64)
    for g, w in zip(dWs + dbs, dWs_r + dbs_r):
        assert_close(g, w, np.float64)
    assert_close(net.evaluate(X, y, sample_weight=counts)["loss"], loss_r, np.float64)


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
def test_dropout_gradients_match_finite_differences(activation):
    """With its masks fixed (one training step), the dropout loss is a smooth
    function of the parameters; its gradient must match central differences."""
    from cmlp import _entry
    net = Network(SIZES, activation, "softmax", "float64", seed=12, dropout=[0.4, 0.2])
    X, y = data("softmax", n=12, seed=4)
    Xc, labels, targets = net._check_Xy(X, y)
    weights = np.linspace(0.5, 1.5, 12)
    work = net._workspace(12)

    def loss_and_grad():
        loss, _ = _entry.loss_and_gradients(net.parameters, net._gradients, net._layout, Xc,
                                             labels, targets, weights, work, True,
                                             net._dropout_key, 3)
        return loss / weights.sum(), net._gradients.copy()

    _, analytic = loss_and_grad()
    params = net._parameters          # perturbed in place, underneath the checks
    h = 1e-6
    for i in np.random.default_rng(1).choice(params.size, size=60, replace=False):
        saved = params[i]
        params[i] = saved + h
        up = loss_and_grad()[0]
        params[i] = saved - h
        down = loss_and_grad()[0]
        params[i] = saved
        numeric = (up - down) / (2 * h)
        assert abs(numeric - analytic[i]) <= 1e-6 * max(1.0, abs(numeric)), (i, numeric, analytic[i])
