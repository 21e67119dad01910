"""The Network API: buffers and views, determinism, dtypes, input checks,
persistence, threads."""
import threading

import numpy as np
import pytest

from cmlp import History, Network


def toy(n=64, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, (X[:, :k].argmax(axis=1))


def test_weights_are_read_only_views_into_one_flat_buffer_set_through_checks():
    net = Network([6, 5, 3], seed=0)
    assert [w.shape for w in net.weights] == [(6, 5), (5, 3)]
    assert [b.shape for b in net.biases] == [(5,), (3,)]
    assert net.parameters.size == 6 * 5 + 5 + 5 * 3 + 3
    for view in net.weights + net.biases:
        assert np.shares_memory(view, net.parameters) and not view.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        net.weights[1][...] = 0
    with pytest.raises(TypeError):
        net.weights[0] = np.zeros((6, 5))     # replacing a view would detach it
    net.set_weights([None, np.zeros((5, 3))], [None, [0.0, 5.0, 0.0]])
    np.testing.assert_array_equal(net.predict(np.ones((4, 6))), [1, 1, 1, 1])
    assert np.all(net.weights[1] == 0)                        # the views follow
    flat = np.arange(net.parameters.size) / 100
    net.set_parameters(flat)
    np.testing.assert_array_equal(net.parameters, flat.astype(np.float32))
    np.testing.assert_array_equal(net.biases[1], flat[-3:].astype(np.float32))


def test_init_scales_he_for_relu_glorot_otherwise():
    relu = Network([2000, 500, 10], "relu", seed=0)
    tanh = Network([2000, 500, 10], "tanh", seed=0)
    assert np.isclose(relu.weights[0].std(), np.sqrt(2 / 2000), rtol=0.01)
    assert np.isclose(tanh.weights[0].std(), np.sqrt(2 / 2500), rtol=0.01)   # U(+-sqrt(6/(in+out)))
    assert np.isclose(relu.weights[1].std(), np.sqrt(2 / 510), rtol=0.05)    # output: Glorot
    assert not relu.biases[0].any()


def test_same_seed_same_weights_and_same_training():
    X, y = toy()
    a, b, c = Network([6, 8, 3], seed=7), Network([6, 8, 3], seed=7), Network([6, 8, 3], seed=8)
    np.testing.assert_array_equal(a.parameters, b.parameters)
    assert not np.array_equal(a.parameters, c.parameters)
    a.fit(X, y, epochs=3, batch_size=8, verbose=0)
    b.fit(X, y, epochs=3, batch_size=8, verbose=0)
    np.testing.assert_array_equal(a.parameters, b.parameters)
    # The shuffled order matters: without shuffling the result differs.
    d = Network([6, 8, 3], seed=7)
    d.fit(X, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    assert not np.array_equal(a.parameters, d.parameters)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype):
    X, y = toy()
    net = Network([6, 4, 3], dtype=dtype, seed=0)
    assert net.parameters.dtype == dtype
    assert net.forward(X.astype(np.float64)).dtype == dtype
    assert net.forward(X.astype(np.float32)).dtype == dtype
    _, dWs, dbs = net.gradients(X, y)
    assert all(g.dtype == dtype for g in dWs + dbs)
    net.fit(X, y, epochs=1, verbose=0)
    assert net.parameters.dtype == dtype


def test_non_contiguous_and_array_like_input():
    X, y = toy()
    net = Network([6, 4, 3], seed=0)
    expected = net.forward(np.ascontiguousarray(X[::2]))
    np.testing.assert_array_equal(net.forward(X[::2]), expected)
    np.testing.assert_array_equal(net.forward(np.asfortranarray(X[::2])), expected)
    np.testing.assert_array_equal(net.forward(X[::2].tolist()), expected)


def test_forward_into_out_and_chunking():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2500, 6)).astype(np.float32)   # > one predict chunk
    net = Network([6, 4, 3], seed=0)
    out = np.empty((2500, 3), dtype=np.float32)
    assert net.forward(X, out=out) is out
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(out[1500:], net.forward(X[1500:]))
    for bad in (np.empty((2500, 3)), np.empty((2499, 3), np.float32),
                np.empty((3, 2500), np.float32).T):
        with pytest.raises(ValueError, match="out must be"):
            net.forward(X, out=bad)


def test_predict_predict_proba_evaluate():
    X, y = toy(n=300)
    net = Network([6, 16, 3], seed=0)
    net.fit(X, y, epochs=30, batch_size=16, lr=0.1, verbose=0)
    P = net.predict_proba(X)
    np.testing.assert_array_equal(net.predict(X), P.argmax(axis=1))
    result = net.evaluate(X, y)
    assert set(result) == {"loss", "accuracy"}
    assert result["accuracy"] == np.mean(net.predict(X) == y)
    assert result["accuracy"] > 0.9
    assert np.isclose(result["loss"], -np.mean(np.log(P[np.arange(300), y])), rtol=1e-5)


def test_identity_output_regression():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (400, 3))
    Y = np.stack([np.sin(2 * X[:, 0]) * X[:, 1], X[:, 2] ** 2], axis=1)
    net = Network([3, 32, 32, 2], "tanh", "identity", "float64", seed=0)
    before = net.evaluate(X, Y)["loss"]
    history = net.fit(X, Y, epochs=200, batch_size=32, lr=0.05, verbose=0)
    after = net.evaluate(X, Y)
    assert set(after) == {"loss"}
    assert after["loss"] < before / 10
    assert "accuracy" not in history.keys()
    np.testing.assert_array_equal(net.predict(X), net.forward(X))
    with pytest.raises(ValueError, match="softmax"):
        net.predict_proba(X)
    one = Network([3, 4, 1], "tanh", "identity", seed=0)
    assert one.evaluate(X, Y[:, 0])["loss"] > 0      # 1-D targets for one output


def test_exp_output_poisson_regression(tmp_path):
    """output='exp': predictions exp(z) and half the Poisson deviance; it
    learns a log-linear mean, refuses negative targets, saves and loads."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 3))
    mean = np.exp(X @ [0.4, -0.3, 0.2] + 0.5)
    y = rng.poisson(mean).astype(float)
    net = Network([3, 16, 1], "tanh", "exp", "float64", seed=0)
    before = net.evaluate(X, y)["loss"]
    history = net.fit(X, y, epochs=40, batch_size=32, lr=0.02, verbose=0)
    after = net.evaluate(X, y)
    assert set(after) == {"loss"} and "accuracy" not in history.keys()
    assert after["loss"] < 0.7 * before
    mu = net.predict(X)
    assert mu.shape == (2000,) and (mu > 0).all()
    assert np.corrcoef(np.log(mu), np.log(mean))[0, 1] > 0.95
    # The loss is the mean half deviance of the predictions themselves.
    deviance = np.mean(np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0) - y + mu)
    assert np.isclose(after["loss"], deviance, rtol=1e-12)
    with pytest.raises(ValueError, match=">= 0"):
        net.fit(X, -y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="softmax or sigmoid"):
        net.predict_proba(X)
    net.save(tmp_path / "poisson.npz")
    loaded = Network.load(tmp_path / "poisson.npz")
    assert loaded.output == "exp"
    np.testing.assert_array_equal(loaded.predict(X), mu)


def test_history_records():
    X, y = toy()
    seen = []
    history = Network([6, 4, 3], seed=0).fit(
        X, y, epochs=3, validation_data=(X[:10], y[:10]), verbose=0,
        on_epoch_end=lambda h: seen.append(len(h)))
    assert isinstance(history, History) and len(history) == 3 and seen == [1, 2, 3]
    assert history.keys() == ["epoch", "loss", "accuracy", "lr", "seconds", "val_loss", "val_accuracy"]
    assert history["epoch"] == [1, 2, 3] and history.epoch == [1, 2, 3]
    assert all(s >= 0 for s in history.seconds)
    with pytest.raises(AttributeError, match="no column"):
        _ = history.nope
    assert len(Network([6, 4, 3], seed=0).fit(X, y, epochs=0, verbose=0)) == 0


def test_verbose_prints_a_line_per_epoch(capsys):
    X, y = toy()
    Network([6, 4, 3], seed=0).fit(X, y, epochs=2, validation_data=(X, y), verbose=1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("epoch 2/2") and "val_accuracy" in lines[1]


def test_batch_larger_than_data_and_ragged_last_batch():
    X, y = toy(n=10)
    net, ref = Network([6, 4, 3], seed=0), Network([6, 4, 3], seed=0)
    net.fit(X, y, epochs=1, batch_size=1000, shuffle=False, verbose=0)
    ref.fit(X, y, epochs=1, batch_size=10, shuffle=False, verbose=0)
    np.testing.assert_array_equal(net.parameters, ref.parameters)
    h = Network([6, 4, 3], seed=0).fit(X, y, epochs=1, batch_size=3, verbose=0)   # 3+3+3+1
    assert np.isfinite(h.loss[0])


def test_divergence_raises_instead_of_returning_garbage():
    X, y = toy()
    net = Network([6, 64, 3], "identity", seed=0)
    with pytest.raises(ValueError, match="non-finite|training diverged"):
        net.fit(X * 1e3, y, epochs=5, lr=1e3, verbose=0)
    with pytest.raises(ValueError, match="non-finite"):
        net.fit(X * 1e3, y, epochs=5, lr=1e3, verbose=0, divergence_factor=None)


def test_fold_input_standardization():
    X, y = toy()
    mean, std = X.mean(axis=0), X.std(axis=0)
    net = Network([6, 4, 3], dtype="float64", seed=0)
    expected = net.forward((X - mean) / std)
    net.fold_input_standardization(mean, std)
    np.testing.assert_allclose(net.forward(X), expected, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError):
        net.fold_input_standardization(0.0, 0.0)


BAD_CONSTRUCTORS = [
    (([784],), {}, ValueError, "input and an output"),
    (([784, 0, 10],), {}, ValueError, ">= 1"),
    (([784, "a", 10],), {}, TypeError, "integers"),
    (([4, 3, 2],), {"activation": "swish"}, ValueError, "unknown activation"),
    (([4, 2],), {"activation": "swish"}, ValueError, "unknown activation"),
    (([4, 3, 2],), {"activation": ["relu", "tanh"]}, ValueError, "1 activations"),
    (([4, 3, 2],), {"output": "softmin"}, ValueError, "unknown output"),
    (([4, 3, 1],), {"output": "softmax"}, ValueError, "2 classes"),
    (([4, 3, 2],), {"dtype": "float16"}, TypeError, "dtype"),
    (([4, 2**31, 2],), {}, ValueError, "2\\*\\*31"),
]


@pytest.mark.parametrize("args,kwargs,exc,match", BAD_CONSTRUCTORS)
def test_bad_constructor_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Network(*args, **kwargs)


def test_per_layer_activations():
    net = Network([4, 3, 3, 2], activation=["relu", "tanh"], seed=0)
    assert net.activations == ["relu", "tanh"]


def bad_inputs():
    X, y = toy(n=8)
    nan = X.copy()
    nan[2, 3] = np.nan
    inf = X.copy()
    inf[0, 0] = np.inf
    return [
        ("forward", (X[:, :5],), ValueError, "5 features but the network expects 6"),
        ("forward", (X[0],), ValueError, "2-D.*reshape"),
        ("forward", (np.empty((0, 6)),), ValueError, "empty"),
        ("forward", (nan,), ValueError, "NaN"),
        ("forward", (inf,), ValueError, "NaN or infinite"),
        ("forward", (np.full((2, 6), 1e300),), ValueError, "out of range"),
        ("forward", (np.array([["a"] * 6]),), TypeError, "numeric"),
        ("evaluate", (X, y[:7]), ValueError, "8 samples but y has 7"),
        ("evaluate", (X, y + 3), ValueError, r"\[0, 3\)"),
        ("evaluate", (X, y - 1), ValueError, r"\[0, 3\)"),
        ("evaluate", (X, y + 0.5), ValueError, "integer"),
        ("evaluate", (X, y.reshape(-1, 1)), ValueError, "1-D"),
        ("gradients", (X, y.astype(str)), TypeError, "integer"),
        ("fit", (X, y), {"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ("fit", (X, y), {"epochs": -1}, ValueError, "epochs must be >= 0"),
        ("fit", (X, y), {"epochs": 2.5}, TypeError, "epochs must be an integer"),
        ("fit", (X, y), {"lr": 0.0}, ValueError, "lr"),
        ("fit", (X, y), {"lr": float("nan")}, ValueError, "lr"),
        ("fit", (X, y), {"validation_data": (X,)}, ValueError, "X_val, y_val"),
        ("fit", (X, y), {"validation_data": (X[:, :2], y)}, ValueError, "X_val has 2 features"),
    ]


@pytest.mark.parametrize("case", bad_inputs(), ids=lambda c: f"{c[0]}-{c[-1][:20]}")
def test_bad_input_raises_naming_the_problem(case):
    method, args = case[0], case[1]
    kwargs = case[2] if len(case) == 5 else {}
    exc, match = case[-2], case[-1]
    net = Network([6, 4, 3], seed=0)
    before = net.parameters.copy()
    with pytest.raises(exc, match=match):
        getattr(net, method)(*args, verbose=0, **kwargs) if method == "fit" else \
            getattr(net, method)(*args, **kwargs)
    np.testing.assert_array_equal(net.parameters, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_caught_on_the_fast_path(dtype):
    """An input already in the network's dtype and layout is checked in C."""
    net = Network([6, 4, 3], dtype=dtype, seed=0)
    for bad in (np.nan, np.inf, -np.inf):
        X = np.ones((9, 6), dtype=dtype)      # 54 values: the vector part and the tail
        X[8, 5] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            net.forward(X)
        X = np.ones((9, 6), dtype=dtype)
        X[0, 0] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            net.predict_proba(X)


def test_regression_target_checks():
    net = Network([6, 4, 2], output="identity", seed=0)
    X = np.zeros((5, 6))
    with pytest.raises(ValueError, match="3 columns but the network has 2"):
        net.evaluate(X, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        net.evaluate(X, np.full((5, 2), np.nan))


@pytest.mark.parametrize("output", ["softmax", "identity"])
def test_save_load_roundtrip(tmp_path, output):
    net = Network([6, 5, 4, 3], ["tanh", "sigmoid"], output, "float64", seed=3)
    X, _ = toy()
    path = tmp_path / "model.npz"
    net.save(path)
    loaded = Network.load(path)
    assert (loaded.sizes, loaded.activations, loaded.output, loaded.dtype) == \
        (net.sizes, net.activations, net.output, net.dtype)
    np.testing.assert_array_equal(loaded.parameters, net.parameters)
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]   # no temp file left


def test_load_rejects_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        Network.load(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not a readable cmlp model"):
        Network.load(garbage)
    net = Network([4, 3, 2], seed=0)
    good = tmp_path / "good.npz"
    net.save(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError):
        Network.load(truncated)
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        Network.load(other)
    fields = dict(np.load(good))
    fields["parameters"] = fields["parameters"][:-1]
    np.savez(tmp_path / "short.npz", **fields)
    with pytest.raises(ValueError, match="parameters are"):
        Network.load(tmp_path / "short.npz")
    fields = dict(np.load(good))
    fields["activations"] = np.array(["swish"])
    np.savez(tmp_path / "badact.npz", **fields)
    with pytest.raises(ValueError, match="not a valid cmlp model: unknown activation"):
        Network.load(tmp_path / "badact.npz")
    fields = dict(np.load(good))
    fields["sizes"] = np.array([object()], dtype=object)
    np.savez(tmp_path / "pickled.npz", **fields)
    with pytest.raises(ValueError):
        Network.load(tmp_path / "pickled.npz")     # object arrays need pickle: refused


def test_concurrent_forward_from_threads_matches_serial():
    rng = np.random.default_rng(0)
    net = Network([64, 128, 10], seed=0)
    inputs = [rng.standard_normal((n, 64)) for n in (1, 7, 300, 3000, 5, 1200, 64, 2)]
    expected = [net.forward(X) for X in inputs]
    results = [[None] * len(inputs) for _ in range(4)]
    errors = []

    def work(slot):
        try:
            for _ in range(5):
                for i, X in enumerate(inputs):
                    results[slot][i] = net.forward(X)
        except Exception as exc:       # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for slot in results:
        for got, want in zip(slot, expected):
            np.testing.assert_array_equal(got, want)


def test_training_allocates_nothing_per_batch():
    """Peak traced memory of fit() does not grow with the number of batches:
    the workspaces are allocated once and each epoch runs in C."""
    import tracemalloc
    X, y = toy(n=4000)
    X = X.astype(np.float32)

    def peak(epochs, batch_size):
        net = Network([6, 32, 3], seed=0)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            net.fit(X, y, epochs=epochs, batch_size=batch_size, verbose=0)
            return tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()

    one_epoch = peak(1, 8)        # 500 batches
    many = peak(20, 8)            # 10,000 batches
    assert many <= one_epoch + 16_384, (one_epoch, many)
    # And the whole run needs little beyond X's copy-free checks and the
    # workspaces: far less than one allocation per batch would leave behind.
    assert one_epoch < 200_000


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_parameter_buffers_are_cache_line_aligned(dtype, tmp_path):
    # The one-row kernels read W with 64-byte vector loads; a buffer off a
    # cache-line boundary makes every load straddle two lines.
    net = Network([13, 7, 3], seed=0, dtype=dtype)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 13)), rng.integers(0, 3, 20)
    net.fit(X, y, epochs=1, batch_size=4, optimizer="adam", verbose=0)
    path = tmp_path / "m.npz"
    net.save(path)
    loaded = Network.load(path)
    for buffer in (net._parameters, net._gradients, *net.optimizer.state, loaded._parameters):
        assert buffer.ctypes.data % 64 == 0
        assert buffer.dtype == dtype and buffer.flags.c_contiguous and buffer.flags.writeable


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 5, 40, 1100])     # row kernel, small gemm, gemm, two chunks
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_non_finite_input_is_reported_whatever_layer_one_makes_of_it(dtype, rows, activation):
    # forward checks X through layer 1's pre-activations. Weights of one sign
    # make -inf in X a -inf in z1, which ReLU would turn into a clean 0: the
    # check must happen before the activation, and for every row and path.
    net = Network([20, 8, 3], activation=activation, dtype=dtype, seed=0)
    net.set_weights([np.abs(net.weights[0]), None])
    rng = np.random.default_rng(rows)
    for bad in (np.nan, np.inf, -np.inf):
        for zeros in (False, True):           # dense rows, and rows that are mostly 0
            X = rng.standard_normal((rows, 20)).astype(dtype)
            if zeros:
                X[rng.random(X.shape) < 0.9] = 0
            X[rows - 1, 7] = bad
            with pytest.raises(ValueError, match="X contains NaN or infinite"):
                net.forward(X)
    big = np.full((rows, 20), np.finfo(dtype).max / 4, dtype=dtype)     # finite, overflows
    with pytest.raises(ValueError, match="overflowed"):
        net.forward(big)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_fast_path_takes_only_arrays_it_can_read_as_they_are(dtype):
    # forward_array reads X's memory directly; every other input must fall to
    # the converting path, and all of them give the same bits.
    from cmlp import _entry
    net = Network([6, 5, 3], dtype=dtype, seed=0)
    X = np.random.default_rng(0).standard_normal((4, 6)).astype(dtype)
    want = _entry.forward_array(net._parameters, net._layout, X)
    assert want is not None and want.shape == (4, 3) and want.dtype == dtype
    np.testing.assert_array_equal(net.predict_proba(X), want)
    raw = np.zeros(X.nbytes + 1, dtype=np.uint8)
    misaligned = raw[1:].view(dtype).reshape(X.shape)
    misaligned[...] = X
    other = np.float64 if dtype == np.float32 else np.float32
    slow = {"Fortran order": np.asfortranarray(X), "byte-swapped": X.astype(X.dtype.newbyteorder()),
            "misaligned": misaligned, "strided": np.repeat(X, 2, axis=0)[::2],
            "subclass": X.view(np.ma.MaskedArray), "list": X.tolist()}
    for name, variant in slow.items():
        assert _entry.forward_array(net._parameters, net._layout, variant) is None, name
        got = net.predict_proba(variant)
        np.testing.assert_array_equal(got.reshape(-1, 3), want[:len(got.reshape(-1, 3))], err_msg=name)
    assert _entry.forward_array(net._parameters, net._layout, X.astype(other)) is None
    for bad in (X[:0], X[:, :5], X[0]):    # no rows, wrong width, 1-D: refused by the slow path
        assert _entry.forward_array(net._parameters, net._layout, bad) is None
        with pytest.raises(ValueError):
            net.predict_proba(bad)
