"""The training loop (issue 8): the gradient hook, Ctrl-C during training and
inference, mid-epoch checkpoints, Network.resume, callbacks as objects, old
files still loading."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cmlp import Network, TrainingDiverged
from cmlp.callbacks import Callback, Checkpoint, EarlyStopping

from helpers import ENV, TESTS_DIR, Crash, blobs, crash_after, popen_cli, run_cli

DATA = pathlib.Path(__file__).parent / "data"


# ------------------------------------------------------------ gradient hook ----

@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_hook_that_halves_gradients_equals_half_the_learning_rate(optimizer):
    X, y = blobs(n=200, seed=1)
    kwargs = dict(epochs=3, batch_size=16, optimizer=optimizer, verbose=0)
    hooked = Network([10, 16, 3], dtype="float64", seed=2)
    calls = []

    def halve(gradients, batch_weight):
        calls.append(batch_weight)
        gradients *= 0.5
    hooked.fit(X, y, lr=0.1, gradient_hook=halve, **kwargs)
    plain = Network([10, 16, 3], dtype="float64", seed=2)
    plain.fit(X, y, lr=0.05, **kwargs)
    # SGD's fused step and the hooked one differ only in rounding.
    np.testing.assert_allclose(hooked.parameters, plain.parameters, rtol=1e-12, atol=1e-14)
    assert calls == ([16.0] * 12 + [8.0]) * 3          # 200 rows: 12 batches of 16, one of 8


def test_hook_sees_the_batch_weight_and_the_flat_gradient_buffer():
    X, y = blobs(n=40, seed=2)
    w = np.linspace(0.5, 2.0, 40)
    net = Network([10, 4, 3], dtype="float64", seed=0)
    seen = []

    def record(gradients, batch_weight):
        assert gradients is net._gradients and gradients.shape == net.parameters.shape
        seen.append((batch_weight, gradients.copy()))
    net.fit(X, y, epochs=1, batch_size=40, shuffle=False, sample_weight=w,
            gradient_hook=record, verbose=0)
    start = Network([10, 4, 3], dtype="float64", seed=0)
    _, dW, db = start.gradients(X, y, sample_weight=w)
    assert seen[0][0] == pytest.approx(w.sum(), rel=1e-15)
    expected = np.concatenate([a.ravel() for pair in zip(dW, db) for a in pair])
    np.testing.assert_allclose(seen[0][1], expected, rtol=1e-12, atol=1e-15)


def test_an_error_in_the_hook_leaves_a_consistent_state():
    X, y = blobs(n=160, seed=3)
    net = Network([10, 8, 3], seed=4, dropout=0.2)

    calls = []

    def fail_on_third(gradients, batch_weight):
        calls.append(batch_weight)
        if len(calls) == 3:
            raise Crash()
    with pytest.raises(Crash):
        net.fit(X, y, epochs=1, batch_size=16, optimizer="adam", shuffle=False,
                gradient_hook=fail_on_third, verbose=0)
    assert net.optimizer.step == 2 and net._batches_done == 2
    # The same two batches, trained alone, give the same parameters.
    two = Network([10, 8, 3], seed=4, dropout=0.2)
    two.fit(X[:32], y[:32], epochs=1, batch_size=16, optimizer="adam", shuffle=False, verbose=0)
    np.testing.assert_array_equal(net.parameters, two.parameters)
    np.testing.assert_array_equal(net.optimizer.state[1], two.optimizer.state[1])


def test_gradient_hook_must_be_callable():
    X, y = blobs(n=20)
    with pytest.raises(TypeError, match="gradient_hook"):
        Network([10, 3]).fit(X, y, gradient_hook=3, verbose=0)


# --------------------------------------------------------------- interrupts ----

def interrupt_at(batch):
    """A gradient hook that delivers SIGINT to this process at the given
    batch: the handler raises KeyboardInterrupt as it would from C."""
    calls = []

    def hook(gradients, batch_weight):
        calls.append(batch_weight)
        if len(calls) == batch:
            os.kill(os.getpid(), signal.SIGINT)
    return hook


@pytest.mark.parametrize("progress", [False, True])
def test_interrupted_run_resumes_mid_epoch_bit_identically(tmp_path, progress):
    X, y = blobs(n=300, seed=5)
    w = np.linspace(0.5, 2.0, 300)
    kwargs = dict(epochs=4, batch_size=16, optimizer="adam", schedule="cosine",
                  weight_decay=1e-3, sample_weight=w, validation_split=0.2,
                  early_stopping=True, patience=3, verbose=0)
    whole = Network([10, 12, 3], "gelu", seed=6, dropout=0.3)
    history = whole.fit(X, y, **kwargs)

    path = tmp_path / "run.npz"
    first = Network([10, 12, 3], "gelu", seed=6, dropout=0.3)
    with pytest.raises(KeyboardInterrupt):          # 15 batches an epoch: stop in epoch 2
        first.fit(X, y, checkpoint=path, gradient_hook=interrupt_at(22), **kwargs)
    # The network holds the last completed batch, and its counters match it.
    assert first._batches_done == first.optimizer.step == 21
    assert np.isfinite(first.parameters).all()
    with np.load(path) as saved:
        assert int(saved["checkpoint_epoch"]) == 1 and int(saved["batches_done"]) == 21
        assert json.loads(str(saved["checkpoint_position"]))["rows_done"] == 6 * 16
        np.testing.assert_array_equal(saved["parameters"], first.parameters)

    resumed, resumed_history = Network.resume(path, X, y, sample_weight=w, verbose=0,
                                              progress=progress)
    np.testing.assert_array_equal(resumed.parameters, whole.parameters)
    np.testing.assert_array_equal(resumed.optimizer.state[1], whole.optimizer.state[1])
    assert resumed_history.epoch == history.epoch and resumed_history.lr == history.lr
    assert resumed_history.val_loss == history.val_loss
    np.testing.assert_allclose(resumed_history.loss, history.loss, rtol=1e-12)


CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from cmlp import Network
    method = sys.argv[1]
    rng = np.random.default_rng(0)
    X = rng.random((100000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 100000)
    net = Network([784, 2048, 2048, 10], seed=0)
    start = time.monotonic()
    print("ready", flush=True)
    try:
        if method == "fit":
            net.fit(X, y, epochs=1, batch_size=64, optimizer="adam", verbose=0)
        elif method == "partial_fit":
            net.partial_fit(X, y, batch_size=64, optimizer="adam")
        elif method == "evaluate":
            net.evaluate(X, y)
        else:
            net.predict(X)
    except KeyboardInterrupt:
        caught = time.monotonic()
        step = net.optimizer.step if net.optimizer is not None else 0
        print(caught, caught - start, net._batches_done, step,
              bool(np.isfinite(net.parameters).all()), flush=True)
        sys.exit(0)
    print("finished without an interrupt", flush=True)
""")


def interrupt(method):
    """Run `method` in a child on the big net, SIGINT it 2 s in; returns the
    latency from the signal to the child's KeyboardInterrupt (both clocks
    are CLOCK_MONOTONIC, one machine) and the child's report."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, method], stdout=subprocess.PIPE,
                            text=True, env=ENV, cwd=TESTS_DIR)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(2.0)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    caught, elapsed, batches, step, finite = out.split()
    return float(caught) - sent, float(elapsed), int(batches), int(step), finite


@pytest.mark.parametrize("method", ["fit", "partial_fit", "evaluate", "predict"])
def test_ctrl_c_stops_a_long_call_within_a_second(method):
    """784-2048-2048-10 on 100,000 rows: an epoch takes 25-40 s, a predict
    ~15 s. SIGINT 2 s in must raise KeyboardInterrupt within 1 s: the
    product's promise, so the limit stays. On a loaded machine the child may
    simply not be scheduled for a while after the signal (once seen: 1015 ms
    while other jobs ran), so one measurement over the limit is repeated once;
    both are reported, and the call fails only if the second is over too."""
    latencies = []
    for _ in range(2):
        latency, elapsed, batches, step, finite = interrupt(method)
        latencies.append(latency)
        assert latency >= 0 and finite == "True" and batches == step
        if latency <= 1.0:
            break
    print(f"{method}: KeyboardInterrupt " + ", then ".join(f"{t * 1000:.0f} ms" for t in latencies)
          + f" after SIGINT ({batches} batches done)")
    assert latencies[-1] <= 1.0, f"measured {[round(t * 1000) for t in latencies]} ms"
    if method in ("fit", "partial_fit"):
        # The run really was long: the whole epoch would take > 10 s, ten
        # times the latency allowed (20-40 s on the machines seen so far).
        assert batches > 0
        assert elapsed * (100000 / 64) / batches > 10


def test_cli_ctrl_c_checkpoints_mid_epoch_and_resumes_bit_identically(mnist_path, tmp_path):
    options = ["--data", mnist_path, "--hidden", "256", "--batch-size", "16", "--epochs", "2",
               "--optimizer", "adam", "--dropout", "0.2"]
    whole = tmp_path / "whole.npz"
    assert run_cli("train", *options, "--save", str(whole)).returncode == 0

    ckpt = tmp_path / "run.npz"
    # An epoch takes ~2 s. On a slow build (the sanitizer run) SIGINT can land
    # before the first batch: then nothing is written and the CLI says so;
    # try again a little later.
    for delay in (1.0, 2.0, 4.0, 8.0):
        proc = popen_cli("train", *options, "--checkpoint", str(ckpt), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().startswith("Network(")     # data loaded
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        if ckpt.exists():
            break
        assert "interrupted before training began; no checkpoint written" in err
    assert f"{ckpt} holds every finished batch" in err and "cmlp: interrupted" in err
    with np.load(ckpt) as saved:
        position = json.loads(str(saved["checkpoint_position"]))
        assert int(saved["checkpoint_epoch"]) == 0 and 0 < position["rows_done"] < 60000
        assert int(saved["batches_done"]) * 16 == position["rows_done"]

    resumed = tmp_path / "resumed.npz"
    result = run_cli("train", "--resume", str(ckpt), "--save", str(resumed))
    assert result.returncode == 0, result.stderr
    assert len([line for line in result.stdout.splitlines() if line.startswith("epoch ")]) == 2
    np.testing.assert_array_equal(Network.load(resumed).parameters,
                                  Network.load(whole).parameters)


# ------------------------------------------------------------------ resume ----

def test_resume_is_one_call_and_refuses_changing_the_run(tmp_path):
    X, y = blobs(n=120, seed=7)
    kwargs = dict(epochs=4, batch_size=10, optimizer="momentum", schedule="step", verbose=0)
    whole = Network([10, 6, 3], seed=1)
    whole.fit(X, y, **kwargs)
    crashed = Network([10, 6, 3], seed=1)
    with pytest.raises(Crash):
        crashed.fit(X, y, checkpoint=tmp_path / "c.npz", on_epoch_end=crash_after(1), **kwargs)
    with pytest.raises(ValueError, match="batch_size"):
        Network.resume(tmp_path / "c.npz", X, y, batch_size=20)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        Network.resume(tmp_path / "c.npz", X, y, epochs=0)
    net, history = Network.resume(tmp_path / "c.npz", X, y, verbose=0)
    np.testing.assert_array_equal(net.parameters, whole.parameters)
    assert history.epoch == [1, 2, 3, 4]
    # The checkpoint went on being written: extending the run continues it.
    longer, history = Network.resume(tmp_path / "c.npz", X, y, epochs=6, verbose=0)
    assert history.epoch == [1, 2, 3, 4, 5, 6] and longer.optimizer.step == 6 * 12


def test_files_written_before_the_split_still_load_and_resume():
    """tests/data was written by commit c989f6d (tests/data/make_legacy_fixtures.py)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 6))
    y = rng.integers(0, 3, 200)
    model = Network.load(DATA / "legacy_model.npz")
    np.testing.assert_array_equal(model.predict_proba(X[:20]),
                                  np.load(DATA / "legacy_model_proba.npy"))
    assert model.dropout == [0.2] and model.optimizer.step == 26

    import shutil
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = shutil.copy(DATA / "legacy_checkpoint.npz", tmp)
        net, history = Network.resume(path, X, y, verbose=0)
    # OpenBLAS picks its sgemm kernel by CPU, so float32 sums round by the
    # machine: the fixture's epochs were run elsewhere, and on an AMD EPYC
    # (OpenBLAS's Haswell kernels) the resumed run differs from it by float32
    # rounding (1.5e-7 relative, measured), the same run as the code it was
    # written with gives there too. Bit-identical resumption on one machine:
    # test_interrupted_run_resumes_mid_epoch_bit_identically.
    np.testing.assert_allclose(net.parameters, np.load(DATA / "legacy_checkpoint_resumed.npy"),
                               rtol=1e-5, atol=1e-7)
    assert history.epoch == [1, 2, 3, 4]


# --------------------------------------------------------------- callbacks ----

def test_callbacks_as_objects_equal_the_keyword_shorthands(tmp_path):
    X, y = blobs(n=200, seed=8)
    by_keywords = Network([10, 8, 3], seed=3)
    h1 = by_keywords.fit(X, y, epochs=12, lr=0.3, validation_split=0.25, early_stopping=True,
                         patience=2, checkpoint=tmp_path / "a.npz", verbose=0)
    by_objects = Network([10, 8, 3], seed=3)
    ends = []

    class Count(Callback):
        def on_epoch_end(self, run, record):
            ends.append(record["epoch"])
            return False
    h2 = by_objects.fit(X, y, epochs=12, lr=0.3, validation_split=0.25, verbose=0,
                        callbacks=[Count(), Checkpoint(tmp_path / "b.npz"), EarlyStopping(2)])
    np.testing.assert_array_equal(by_keywords.parameters, by_objects.parameters)
    assert h1.val_loss == h2.val_loss and h1.best_epoch == h2.best_epoch
    assert ends == h2.epoch
    with pytest.raises(TypeError, match="Callback"):
        Network([10, 3]).fit(X, y, callbacks=[print], verbose=0)


def test_parameters_after_y_are_keyword_only():
    X, y = blobs(n=20)
    with pytest.raises(TypeError):
        Network([10, 3]).fit(X, y, 3)


def test_one_dimensional_regression_targets_predict_one_dimension(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    net = Network([3, 8, 1], "tanh", output="identity", seed=0)
    net.fit(X, y, epochs=5, verbose=0)
    assert net.predict(X).shape == (50,) and net.forward(X).shape == (50, 1)
    assert ((net.predict(X) - y) ** 2).shape == (50,)
    net.save(tmp_path / "r.npz")
    assert Network.load(tmp_path / "r.npz").predict(X).shape == (50,)
    net.fit(X, y[:, None], epochs=1, verbose=0)
    assert net.predict(X).shape == (50, 1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_batch_one_sgd_epoch_equals_one_row_at_a_time(dtype, activation):
    # Within an epoch, batch-1 plain SGD computes each next row's first layer
    # during the previous update (one pass over W1); partial_fit on one row
    # has no next row and takes the plain path. Same bits either way.
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 12))
    X[rng.random(X.shape) < 0.5] = 0
    y = rng.integers(0, 3, 40)
    fused = Network([12, 9, 3], activation=activation, dtype=dtype, seed=1)
    fused.fit(X, y, epochs=1, batch_size=1, lr=0.05, shuffle=False, verbose=0)
    plain = Network([12, 9, 3], activation=activation, dtype=dtype, seed=1)
    for i in range(len(X)):
        plain.partial_fit(X[i:i + 1], y[i:i + 1], batch_size=1, lr=0.05, shuffle=False)
    np.testing.assert_array_equal(fused.parameters, plain.parameters)


def test_hook_is_called_for_a_batch_whose_loss_is_non_finite_then_the_fit_stops():
    # A hook that is a collective (an allreduce) must be reached by every
    # process at every batch, also the one where this process diverges;
    # that batch is then not applied, and the fit raises TrainingDiverged.
    X, y = blobs(n=64, seed=5)
    X[40] = 1e308                           # finite, but overflows layer 1
    net = Network([10, 16, 3], dtype="float64", seed=0)
    start = net.parameters.copy()
    calls = []
    with pytest.raises(TrainingDiverged, match="non-finite"):
        net.fit(X, y, epochs=1, batch_size=16, shuffle=False,
                gradient_hook=lambda g, w: calls.append(w), verbose=0)
    assert calls == [16.0, 16.0, 16.0]      # batches 1, 2 and the diverging 3rd
    np.testing.assert_array_equal(net.parameters, start)
