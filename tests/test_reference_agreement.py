"""The C engine (Network) against the NumPy ReferenceNetwork, end to end,
plus finite-difference checks of the engine's gradients."""
import itertools

import numpy as np
import pytest

from cmlp import Network
from cmlp.reference import ReferenceNetwork
from conftest import assert_close

ACTIVATIONS = ["relu", "tanh", "sigmoid", "identity"]
OUTPUTS = ["softmax", "identity"]
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
    y = rng.integers(0, SIZES[-1], n) if output == "softmax" else rng.standard_normal((n, SIZES[-1]))
    return X, y


def pair(activation, output, dtype, seed=3):
    return (Network(SIZES, activation, output, dtype, seed=seed),
            ReferenceNetwork(SIZES, activation, output, dtype, seed=seed))


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
    params = net.parameters
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
