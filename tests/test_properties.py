"""Property-based tests (issue 10): every public entry point, fed shapes,
dtypes, strides, read-only and memory-mapped arrays, NaN/inf/subnormal and
huge values, labels and weights out of range, `out=` buffers, constructor
arguments and hyperparameters. The only outcomes allowed: a result equal
to cmlp.reference's, or ValueError / TypeError (MemoryError for sizes that
cannot be allocated) with a message.

Examples per test: $CMLP_HYPOTHESIS_EXAMPLES (default 1000: 6,000
over the file in CI). For a release, run the "release" profile:
    HYPOTHESIS_PROFILE=release pytest tests/test_properties.py
(10,000 examples per test).
"""
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cmlp import Network, reference
from cmlp.optimizers import SGD, Adam

settings.register_profile(
    "ci", max_examples=int(os.environ.get("CMLP_HYPOTHESIS_EXAMPLES", 1000)), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], derandomize=True)
settings.register_profile("release", parent=settings.get_profile("ci"), max_examples=10_000,
                          derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ALLOWED = (ValueError, TypeError)
ACTIVATIONS = ["relu", "leaky_relu", "gelu", "tanh", "sigmoid", "identity"]
OUTPUTS = ["softmax", "identity", "sigmoid"]
MEMMAP_DIR = tempfile.mkdtemp(prefix="cmlp-properties-")

# Values: ordinary, zero, subnormal and (sometimes) non-finite.
finite_values = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32),
    st.just(0.0), st.sampled_from([1e-40, -1e-42, 5e-324, 2.2e-308]))
any_values = st.one_of(finite_values, st.sampled_from([np.nan, np.inf, -np.inf]))


def expect_clear_error(exc):
    """An allowed failure: ValueError/TypeError with a real message."""
    assert isinstance(exc, ALLOWED), f"{type(exc).__name__}: {exc}"
    assert len(str(exc)) > 10, f"unhelpful message: {exc!r}"
    event(f"refused: {type(exc).__name__}")


def answered():
    event("answered (checked)")


def reference_logits(net, X):
    """The raw outputs cmlp.reference computes for net on X."""
    a = X
    last = len(net.weights) - 1
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        z = reference.linear_forward(a, W, b)
        name = net.activations[i] if i < last else "identity"
        a = z if name == "identity" else getattr(reference, f"{name}_forward")(z)
    return a


def reference_outputs(net, X):
    """What cmlp.reference computes for net's forward on X (in its dtype)."""
    z = reference_logits(net, X.astype(net.dtype))
    if net.output == "softmax":
        return reference.softmax_forward(z)
    return reference.sigmoid_forward(z) if net.output == "sigmoid" else z


@st.composite
def networks(draw):
    depth = draw(st.integers(0, 2))
    sizes = [draw(st.integers(1, 12)) for _ in range(depth + 1)]
    output = draw(st.sampled_from(OUTPUTS))
    sizes.append(draw(st.integers(2 if output == "softmax" else 1, 5)))
    activations = [draw(st.sampled_from(ACTIVATIONS)) for _ in range(depth)]
    return Network(sizes, activations, output, draw(st.sampled_from(["float32", "float64"])),
                   seed=draw(st.integers(0, 2**32)))


@st.composite
def inputs(draw, n_features):
    """An X for a network of n_features inputs: any dtype, shape, layout,
    writeability; mostly fitting, sometimes not."""
    rows = draw(st.sampled_from([0, 1, 2, 3, 7, 33, 200]))
    cols = n_features if draw(st.integers(0, 9)) else draw(st.integers(0, 3 * n_features + 2))
    kind = draw(st.sampled_from(["float64", "float32", "float16", "int64", "uint8", "bool",
                                 "complex128", "object", "list", "memmap", "broadcast"]))
    values = draw(st.sampled_from([finite_values, any_values]))
    base = draw(hnp.arrays(np.float64, (rows, cols), elements=values))
    if kind == "list":
        return base.tolist()
    if kind == "broadcast":            # huge logical shapes for no memory
        return np.broadcast_to(np.float32(1.0), draw(st.sampled_from(
            [(rows, 10**9), (rows, cols), (10**5, cols)])))
    if kind == "memmap":
        path = os.path.join(MEMMAP_DIR, f"x{draw(st.integers(0, 10**9))}.dat")
        if base.size == 0:
            return base
        mm = np.memmap(path, dtype=np.float32, mode="w+", shape=base.shape)
        mm[...] = base
        return np.memmap(path, dtype=np.float32, mode="r", shape=base.shape)
    with np.errstate(all="ignore"):
        X = base.astype(kind)
    layout = draw(st.sampled_from(["C", "F", "strided", "readonly"]))
    if layout == "F":
        X = np.asfortranarray(X)
    elif layout == "strided" and X.size:
        wide = np.repeat(X, 2, axis=1)
        X = wide[:, ::2]
    elif layout == "readonly":
        X.flags.writeable = False
    return X


def valid_input(X, n_features):
    arr = np.asarray(X)
    if arr.dtype.kind not in "biuf" or arr.ndim != 2 or arr.shape[0] == 0 \
            or arr.shape[1] != n_features:
        return False
    return bool(np.isfinite(arr.astype(np.float64)).all())


@given(net=networks(), data=st.data())
def test_forward_and_predict_answer_as_the_reference_or_refuse(net, data):
    X = data.draw(inputs(net.sizes[0]))
    out_kind = data.draw(st.sampled_from([None, None, "good", "shape", "dtype", "readonly",
                                          "strided", "overlap"]))
    ok = valid_input(X, net.sizes[0])
    out = None
    if out_kind is not None and ok:
        shape = (np.shape(X)[0], net.sizes[-1])
        out = np.empty(shape, dtype=net.dtype)
        if out_kind == "shape":
            out = np.empty((shape[0] + 1, shape[1]), dtype=net.dtype)
        elif out_kind == "dtype":
            out = np.empty(shape, dtype=np.float16)
        elif out_kind == "readonly":
            out.flags.writeable = False
        elif out_kind == "strided":
            out = np.empty((shape[0], 2 * shape[1]), dtype=net.dtype)[:, ::2]
            if out.flags.c_contiguous:      # one element (or one column of one row) is
                out_kind = "good"           # contiguous whatever its strides say
        elif out_kind == "overlap" and isinstance(X, np.ndarray) and X.dtype == net.dtype \
                and X.flags.writeable and X.flags.c_contiguous and X.size >= out.size:
            out = X.reshape(-1)[:out.size].reshape(shape)
        elif out_kind == "overlap":
            out_kind = "good"
    try:
        got = net.forward(X, out=out)
    except (ValueError, TypeError) as exc:
        expect_clear_error(exc)
        with np.errstate(all="ignore"):
            refused_fairly = (not ok or out_kind not in (None, "good")
                              or not np.isfinite(reference_outputs(net, np.asarray(X))).all())
        assert refused_fairly, f"refused valid input: {exc}"
        return
    assert ok and out_kind in (None, "good"), "accepted invalid input or out="
    answered()
    expected = reference_outputs(net, np.asarray(X, dtype=np.float64))
    tol = dict(rtol=1e-4, atol=1e-4) if net.dtype == np.float32 else dict(rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got, expected, **tol)
    if out is not None:
        assert got is out
    labels = net.predict(X)
    if net.output == "softmax":
        assert labels.shape == (got.shape[0],) and labels.min() >= 0
        assert labels.max() < net.sizes[-1]


@given(net=networks(), rows=st.integers(1, 40),
       scale=st.sampled_from([1e20, 1e30, 1e36, 3e38, 1e300]), data=st.data())
def test_huge_values_give_a_finite_answer_or_an_error_never_a_silent_nan(net, rows, scale, data):
    X = data.draw(hnp.arrays(np.float64, (rows, net.sizes[0]),
                             elements=st.floats(-1, 1, allow_nan=False))) * scale
    try:
        P = net.forward(X)
    except (ValueError, TypeError) as exc:
        expect_clear_error(exc)
        return
    assert np.isfinite(P).all()
    if net.output == "softmax":
        np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-4)
    answered()


@st.composite
def targets_for(draw, net, n):
    """y for the network: mostly valid, sometimes out of range or shape."""
    k = net.sizes[-1]
    if net.output == "softmax":
        return draw(st.one_of(
            hnp.arrays(np.int64, n, elements=st.integers(0, k - 1)),
            hnp.arrays(np.int64, n, elements=st.integers(-2, k + 2)),
            hnp.arrays(np.float64, n, elements=st.sampled_from([0.0, 1.0, 0.5, np.nan])),
            hnp.arrays(np.int64, n + 1, elements=st.integers(0, k - 1)),
            st.just(np.array(["a"] * n))))
    if net.output == "sigmoid":
        return draw(hnp.arrays(np.float64, (n, k), elements=st.one_of(
            st.sampled_from([0.0, 1.0]), st.floats(0, 1), st.sampled_from([-0.5, 2.0, np.nan]))))
    return draw(hnp.arrays(np.float64, draw(st.sampled_from([(n, k), (n, k + 1)])),
                           elements=any_values))


@st.composite
def sample_weights(draw, n):
    return draw(st.one_of(
        st.none(),
        hnp.arrays(np.float64, n, elements=st.floats(0, 10)),
        hnp.arrays(np.float64, n, elements=st.sampled_from([1.0, -1.0, np.nan, np.inf, 1e39,
                                                            1e-46, 0.0])),
        hnp.arrays(np.float64, n + 1, elements=st.just(1.0))))


def valid_targets(net, y, n):
    y = np.asarray(y)
    k = net.sizes[-1]
    if y.dtype.kind not in "biuf":
        return False
    if net.output == "softmax":
        return y.shape == (n,) and bool(np.isfinite(y).all() and (y == np.round(y)).all()
                                        and y.min() >= 0 and y.max() < k)
    if y.shape != (n, k) or not np.isfinite(y).all():
        return False
    return net.output != "sigmoid" or bool(((y >= 0) & (y <= 1)).all())


def valid_weights(w, n, dtype):
    if w is None:
        return True
    w = np.asarray(w)
    with np.errstate(all="ignore"):
        cast = w.astype(dtype)
        return (w.shape == (n,) and bool(np.isfinite(w).all() and (w >= 0).all())
                and bool(np.isfinite(cast).all()) and float(cast.astype(dtype).sum()) > 0)


@given(net=networks(), n=st.integers(1, 30), data=st.data())
def test_evaluate_and_gradients_answer_as_the_reference_or_refuse(net, n, data):
    X = data.draw(hnp.arrays(np.float64, (n, net.sizes[0]), elements=finite_values))
    y = data.draw(targets_for(net, n))
    w = data.draw(sample_weights(n))
    ok = valid_targets(net, y, n) and valid_weights(w, n, net.dtype)
    try:
        result = net.evaluate(X, y, sample_weight=w)
        loss, dW, db = net.gradients(X, y, sample_weight=w)
    except (ValueError, TypeError) as exc:
        expect_clear_error(exc)
        assert not ok or "overflow" in str(exc), f"refused valid input: {exc}"
        return
    assert ok, "accepted invalid labels, targets or weights"
    answered()
    assert np.isclose(result["loss"], loss, rtol=1e-5 if net.dtype == np.float32 else 1e-10)
    # The loss against the reference's, and the gradient against a finite
    # difference of it along a random direction.
    Xc = X.astype(net.dtype)
    z = reference_logits(net, Xc)
    if net.output == "softmax":
        expected = reference.softmax_xent_loss(z, np.asarray(y).astype(int), w)
    elif net.output == "sigmoid":
        expected = reference.sigmoid_bce_loss(z, np.asarray(y, dtype=net.dtype), w)
    else:
        expected = reference.mse_loss(z, np.asarray(y, dtype=net.dtype), w)
    expected = expected[0] if isinstance(expected, tuple) else expected
    total = n if w is None else float(np.asarray(w, dtype=net.dtype).sum())
    np.testing.assert_allclose(loss, expected / total,
                               rtol=1e-4 if net.dtype == np.float32 else 1e-9, atol=1e-6)
    assert all(np.isfinite(g).all() for g in dW + db)


def mostly(valid, bad):
    """`valid` nine times in ten, else `bad`: most examples get through
    validation and train, the rest probe the checks."""
    return st.integers(0, 9).flatmap(lambda i: bad if i == 0 else valid)


bad_number = st.sampled_from([0, -1, 1e39, np.nan, np.inf, True, "0.1", [0.1]])


@given(lr=mostly(st.sampled_from([None, 1e-3, 0.05, 0.5]), bad_number),
       momentum=mostly(st.sampled_from([None, None, 0.5, 0.9]), st.sampled_from([-0.1, 1, np.nan])),
       weight_decay=mostly(st.sampled_from([None, 0.0, 1e-4]), st.sampled_from([-1, np.inf])),
       batch_size=mostly(st.sampled_from([None, 1, 7, 64]),
                         st.sampled_from([0, -1, 2.5, True, "8"])),
       epochs=mostly(st.sampled_from([None, 0, 1, 2]), st.sampled_from([-1, 1.5])),
       optimizer=mostly(st.sampled_from([None, "sgd", "momentum", "nesterov", "adam",
                                         "adam-object", "sgd-object"]),
                        st.sampled_from(["rmsprop", 3])),
       schedule=mostly(st.sampled_from(["constant", "step", "cosine", "invscaling"]),
                       st.sampled_from(["nope", {"name": "cosine", "min_lr": np.nan},
                                        {"name": "step", "step_size": 0},
                                        {"name": "step", "gamma": 2},
                                        {"name": "invscaling", "power": np.inf}, 5])),
       dropout=mostly(st.sampled_from([0.0, 0.3]), st.sampled_from([-0.1, 1.0, np.nan])))
def test_fit_hyperparameters_train_or_refuse(lr, momentum, weight_decay, batch_size, epochs,
                                              optimizer, schedule, dropout):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, 5))
    y = rng.integers(0, 3, 24)
    try:
        net = Network([5, 6, 3], seed=0, dropout=dropout)
        if optimizer == "adam-object":
            optimizer = Adam(lr=lr if lr is not None else 1e-3)
            lr = None
        elif optimizer == "sgd-object":
            optimizer = SGD(lr=lr if lr is not None else 0.1, momentum=momentum or 0.0)
            lr = momentum = None
        kwargs = {key: value for key, value in dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay, batch_size=batch_size,
            epochs=epochs, optimizer=optimizer, schedule=schedule).items() if value is not None}
        history = net.fit(X, y, verbose=0, **kwargs)
    except (ValueError, TypeError) as exc:
        expect_clear_error(exc)
        return
    assert np.isfinite(net.parameters).all()
    assert all(np.isfinite(record["loss"]) for record in history.records)
    answered()


@given(sizes=mostly(st.lists(st.integers(1, 40), min_size=2, max_size=5), st.one_of(
           st.lists(st.integers(-2, 40), min_size=0, max_size=5),
           st.lists(st.sampled_from([3, 3.0, 3.5, True, "3", None, 2**31, np.int64(4), np.inf]),
                    max_size=4),
           st.sampled_from(["32", b"4", {784: 0, 10: 0}, 7, None, (4, 3), np.array([4, 3])]))),
       activation=mostly(st.sampled_from(ACTIVATIONS), st.one_of(
           st.sampled_from(["swish", "", None, 3]),
           st.lists(st.sampled_from(ACTIVATIONS + ["x"]), max_size=4), st.just({"relu": 1}))),
       output=mostly(st.sampled_from(OUTPUTS), st.sampled_from(["softmax2", None])),
       dtype=mostly(st.sampled_from(["float32", "float64", np.float32]),
                    st.sampled_from(["float16", "int32", None, 4])),
       seed=mostly(st.sampled_from([None, 0, 7, 2**63]), st.sampled_from([-1, 2**200, True, 1.5,
                                                                        "1"])),
       dropout=mostly(st.sampled_from([0.0, 0.5]),
                      st.sampled_from([-1, 1, np.nan, [0.1], [0.1, 0.2, 0.3, 0.4, 0.5]])))
def test_constructor_builds_or_refuses(sizes, activation, output, dtype, seed, dropout):
    try:
        net = Network(sizes, activation, output, dtype, seed, dropout)
    except (ValueError, TypeError, MemoryError) as exc:
        if isinstance(exc, MemoryError):
            event("refused: MemoryError")
        else:
            expect_clear_error(exc)
        return
    assert all(type(s) is int and s >= 1 for s in net.sizes) and len(net.sizes) >= 2
    assert list(net.sizes) == [int(s) for s in sizes]
    assert np.isfinite(net.parameters).all()
    X = np.zeros((2, net.sizes[0]))
    assert net.forward(X).shape == (2, net.sizes[-1])
    answered()


@given(m=st.integers(1, 6), n_in=st.integers(1, 6), n_out=st.integers(1, 6),
       dtype=st.sampled_from([np.float32, np.float64]), data=st.data())
def test_checked_kernels_equal_their_numpy_twins(m, n_in, n_out, dtype, data):
    from cmlp import checked_kernels as ck

    def array(shape, elements=finite_values):
        return data.draw(hnp.arrays(np.float64, shape, elements=elements)).astype(dtype)

    a, W, b = array((m, n_in)), array((n_in, n_out)), array(n_out)
    tol = dict(rtol=1e-4, atol=1e-3) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(ck.linear_forward(a, W, b), reference.linear_forward(a, W, b),
                               **tol)
    z = array((m, n_out), st.floats(-30, 30, width=32))
    for name in ACTIVATIONS[:-1]:                     # identity has no kernel
        np.testing.assert_allclose(getattr(ck, f"{name}_forward")(z),
                                   getattr(reference, f"{name}_forward")(z), **tol)
    if n_out >= 2:
        labels = data.draw(hnp.arrays(np.int64, m, elements=st.integers(0, n_out - 1)))
        got, expected = ck.softmax_xent_backward(z, labels), reference.softmax_xent_backward(
            z, labels)
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, **tol)
    with pytest.raises(ValueError):
        ck.linear_forward(array((m, n_in + 1)), W, b)
    answered()
