"""Regression tests for the hostile review (issue 10), the items fixed so far:
save() through symlinks and never over non-regular files, with the umask's
mode, fsync and stale temporaries cleaned; load() refuses non-regular files;
the architecture is read-only; gradients() from threads; a second fit at
once; schedule hyperparameters."""
import fcntl
import os
import shutil
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from cmlp import Network, _atomic
from cmlp.schedules import Cosine, InverseScaling, Step, make_schedule

from helpers import ENV, TESTS_DIR, blobs


def small():
    net = Network([10, 4, 3], seed=0)
    X, y = blobs(n=60)
    return net, X, y


def test_save_writes_through_a_symlink(tmp_path):
    net, _, _ = small()
    target = tmp_path / "v3.npz"
    Network([10, 3], seed=1).save(target)
    link = tmp_path / "current.npz"
    link.symlink_to(target.name)
    net.save(link)
    assert link.is_symlink() and os.readlink(link) == "v3.npz"
    np.testing.assert_array_equal(Network.load(target).parameters, net.parameters)


def test_save_and_load_refuse_what_is_not_a_regular_file(tmp_path):
    net, _, _ = small()
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        net.save(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)              # left as it was
    with pytest.raises(ValueError, match="not a regular file"):
        Network.load(fifo)                                   # used to block forever
    with pytest.raises(ValueError, match="not a regular file"):
        net.save(tmp_path)                                   # a directory
    fifo_link = tmp_path / "link.npz"
    fifo_link.symlink_to(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        net.save(fifo_link)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".cmlp-")] == []


def test_saved_files_get_the_umask_mode_or_keep_theirs(tmp_path):
    net, _, _ = small()
    old = os.umask(0o022)
    try:
        net.save(tmp_path / "a.npz")
        os.umask(0o077)
        net.save(tmp_path / "b.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.npz").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "b.npz").st_mode) == 0o600
    os.chmod(tmp_path / "a.npz", 0o640)
    net.save(tmp_path / "a.npz")
    assert stat.S_IMODE(os.stat(tmp_path / "a.npz").st_mode) == 0o640


def test_stale_temporaries_are_removed_by_the_next_save(tmp_path):
    """Liveness is the writer's flock on its temporary, never the PID in its
    name (issue 19, item 4): an unlocked one past the grace period is a
    dead save's; a locked one is a live save's, whatever its PID says; a
    fresh unlocked one may be a save that has not locked it yet."""
    net, _, _ = small()
    old = time.time() - 2 * _atomic.UNLOCKED_GRACE_SECONDS
    dead = tmp_path / f".cmlp-{os.getpid()}-abc.npz.tmp"     # our PID, but no lock
    dead.write_bytes(b"x" * 1000)
    live = tmp_path / ".cmlp-999999999-def.npz.tmp"          # no such PID here, but locked
    live.write_bytes(b"y")
    for path in (dead, live):
        os.utime(path, (old, old))
    fresh = tmp_path / ".cmlp-999999998-ghi.npz.tmp"         # unlocked, seconds old
    fresh.write_bytes(b"w")
    other = tmp_path / "notes.tmp"
    other.write_bytes(b"z")
    with open(live, "rb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        net.save(tmp_path / "m.npz")
    assert not dead.exists() and live.exists() and fresh.exists() and other.exists()


SHARED_SAVER = """
import sys
import numpy as np
from cmlp import Network
net = Network([784, 2048, 2048, 10], seed=int(sys.argv[2]))   # ~27 MB a file
errors = 0
for i in range(int(sys.argv[3])):
    try:
        net.save(sys.argv[1])
    except OSError as exc:
        errors += 1
        print("error:", exc, flush=True)
print("errors", errors, flush=True)
"""


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                    reason="needs root and util-linux unshare (CI has both)")
def test_saves_from_two_pid_namespaces_to_one_directory(tmp_path):
    """Two writers in their own PID namespaces (as containers sharing a
    volume) save to one path 10 times each: each used to delete the other's
    live temporary as stale (its PID means nothing here); 20/20 failed."""
    script = tmp_path / "saver.py"
    script.write_text(SHARED_SAVER)
    target = tmp_path / "shared.npz"
    old = time.time() - 2 * _atomic.UNLOCKED_GRACE_SECONDS
    procs = [subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable,
                               str(script), str(target), str(seed), "10"],
                              stdout=subprocess.PIPE, text=True, env=ENV, cwd=TESTS_DIR)
             for seed in (1, 2)]
    # Age every temporary as it appears, so each save's clean-up considers
    # the other's (the grace period would otherwise protect it).
    deadline = time.monotonic() + 300
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        for path in tmp_path.glob(".cmlp-*.npz.tmp"):
            try:
                os.utime(path, (old, old))
            except OSError:
                pass
        time.sleep(0.005)
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    for out in outputs:
        assert out.strip().endswith("errors 0"), out
    assert Network.load(target).sizes == (784, 2048, 2048, 10)
    assert not list(tmp_path.glob(".cmlp-*.npz.tmp"))


def test_the_architecture_is_read_only():
    net, X, y = small()
    for name, value in (("output", "identity"), ("sizes", (1, 10)), ("dtype", np.float64),
                        ("activations", ["tanh"])):
        with pytest.raises(AttributeError):
            setattr(net, name, value)
    net.activations.append("tanh")                           # a copy: no effect
    assert net.activations == ["relu"]
    assert net.evaluate(X, y)["loss"] > 0 and net.predict(X).shape == (60,)


def test_gradients_are_safe_from_threads():
    net, X, y = small()
    expected = net.gradients(X, y)
    results, errors = [], []

    def work():
        try:
            for _ in range(50):
                results.append(net.gradients(X, y))
        except Exception as exc:        # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 200
    for loss, dW, db in results:
        assert loss == expected[0]
        for a, b in zip(dW + db, expected[1] + expected[2]):
            np.testing.assert_array_equal(a, b)


def test_a_second_fit_at_once_is_refused():
    net, X, y = small()
    started, release = threading.Event(), threading.Event()

    def hold(gradients, batch_weight):
        started.set()
        release.wait(10)
    worker = threading.Thread(target=lambda: net.fit(X, y, epochs=1, batch_size=60, verbose=0,
                                                     optimizer="adam", gradient_hook=hold))
    worker.start()
    assert started.wait(10)
    with pytest.raises(RuntimeError, match="already training"):
        net.fit(X, y, epochs=1, verbose=0)
    with pytest.raises(RuntimeError, match="already training"):
        net.partial_fit(X, y)
    release.set()
    worker.join()
    assert net.optimizer.step == net._batches_done == 1
    net.fit(X, y, epochs=1, batch_size=60, verbose=0)          # free again
    assert net._batches_done == 2


@pytest.mark.parametrize("make", [lambda: Cosine(min_lr=float("nan")),
                                  lambda: InverseScaling(power=float("nan")),
                                  lambda: Step(gamma=float("inf")),
                                  lambda: make_schedule({"name": "cosine", "min_lr": float("nan")})])
def test_schedule_hyperparameters_must_be_finite(make):
    with pytest.raises(ValueError, match="finite"):
        make()


def test_a_diverging_fit_raises_and_leaves_the_start_of_the_epoch():
    net = Network([1, 1], output="identity", seed=0)
    before = net.parameters.copy()
    with pytest.raises(ValueError, match="non-finite.*back where epoch 1 started"):
        net.fit([[10.0]], [[0.0]], epochs=1, lr=1e38, verbose=0)
    np.testing.assert_array_equal(net.parameters, before)
    assert net._batches_done == 0 and net.optimizer.step == 0
    # A later epoch diverging goes back to that epoch's start, with Adam's state.
    X, y = blobs(n=64)
    net = Network([10, 8, 3], seed=0)
    net.fit(X, y, epochs=1, batch_size=16, optimizer="adam", verbose=0)
    after_one = (net.parameters.copy(), [s.copy() for s in net.optimizer.state])
    net.optimizer.lr = 1e38                    # the same Adam, its state kept, diverging
    with pytest.raises(ValueError, match="back where epoch 1 started"):
        net.fit(X, y, epochs=1, batch_size=16, verbose=0)
    np.testing.assert_array_equal(net.parameters, after_one[0])
    for state, saved in zip(net.optimizer.state, after_one[1]):
        np.testing.assert_array_equal(state, saved)
    assert net._batches_done == net.optimizer.step == 4


def test_a_finite_but_exploded_fit_raises_too():
    # At lr=1e3 on MNIST Adam used to return normally at 10 % accuracy with
    # a first-epoch loss of 1e33 (finite): the loss is now held against the
    # loss the run began with.
    X, y = blobs(n=200)
    net = Network([10, 32, 3], seed=0)
    before = net.parameters.copy()
    with pytest.raises(ValueError, match=r"training diverged in epoch 1: its loss .* is over "
                                         r"1e\+06 x the loss the run began with"):
        net.fit(X, y, epochs=3, lr=1e4, optimizer="adam", batch_size=16, verbose=0)
    np.testing.assert_array_equal(net.parameters, before)
    assert net.optimizer.step == net._batches_done == 0
    # Opting out (the scikit-learn estimators do: scikit-learn stops on NaN/inf only).
    Network([10, 32, 3], seed=0).fit(X, y, epochs=1, lr=1e4, optimizer="adam", batch_size=16,
                                     verbose=0, divergence_factor=None)
    with pytest.raises(ValueError, match="divergence_factor must be"):
        net.fit(X, y, epochs=1, divergence_factor=0.5)
    # A sane run of the same data is not mistaken for one.
    history = net.fit(X, y, epochs=3, lr=1e-2, optimizer="adam", batch_size=16, verbose=0)
    assert history.records[-1]["loss"] < history.records[0]["loss"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1e39])
def test_parameters_are_set_only_through_checks(bad):
    # NaN written into the weights used to give three answers: finite
    # probabilities (one-row path), [0.5, 0.5] (gemm) and NaN (reference).
    net, X, _ = small()
    before = net.parameters.copy()
    for view in (net.parameters, net.weights[0], net.biases[1]):
        with pytest.raises(ValueError, match="read-only"):
            view[0] = bad
    W = net.weights[0].astype(np.float64)
    W[0, 0] = bad
    with pytest.raises(ValueError, match="W of layer 0 must be finite and within the float32 "
                                         r"range \(\|value\| <= 3.403e\+38\)"):
        net.set_weights([None, net.weights[1] * 2], [net.biases[0] + 1, None])
        net.set_weights([W, net.weights[1] * 2])
    flat = before.astype(np.float64)
    flat[-1] = bad
    with pytest.raises(ValueError, match="parameters must be finite"):
        net.set_parameters(flat)
    with pytest.raises(ValueError, match=r"parameters must have shape \(59,\)"):
        net.set_parameters(flat[:-1])
    with pytest.raises(ValueError, match="one W .* per layer: 2 layers"):
        net.set_weights([W])
    with pytest.raises(TypeError, match="real numbers"):
        net.set_parameters(flat.astype(complex))
    np.testing.assert_array_equal(net.biases[0], before[40:44] + 1)  # the call before went in
    net.set_weights([None, None], [before[40:44], None])
    np.testing.assert_array_equal(net.parameters[:40], before[:40])    # the failed ones did not


def test_save_refuses_non_finite_parameters(tmp_path):
    net, _, _ = small()
    net._parameters[0] = np.nan          # only reachable from underneath
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("sizes", [[784.9, 10.9], [784, True, 10], "32", {784: 0, 10: 0},
                                   [784, float("inf"), 10], b"4", [[4, 3]]])
def test_sizes_are_never_coerced(sizes):
    with pytest.raises(TypeError, match="sizes must be a list of integers"):
        Network(sizes)


def test_seed_and_activation_types():
    with pytest.raises(TypeError, match="seed"):
        Network([4, 2], seed=True)
    with pytest.raises(TypeError, match="seed"):
        Network([4, 2], seed=-1)
    with pytest.raises(TypeError, match="activation"):
        Network([4, 3, 2], activation={"relu": 1})
    assert Network(np.array([4, 3, 2]), seed=np.int64(3)).sizes == (4, 3, 2)


@pytest.mark.parametrize("method", ["fit", "partial_fit", "gradients", "evaluate"])
@pytest.mark.parametrize("weights,match", [([1e-46] * 60, "sum to 0 in float32"),
                                           ([1e39] * 60, "too large for float32")])
def test_sample_weights_checked_in_the_network_dtype(method, weights, match):
    net, X, y = small()
    kwargs = {"verbose": 0} if method == "fit" else {}
    with pytest.raises(ValueError, match=match):
        getattr(net, method)(X, y, sample_weight=np.array(weights), **kwargs)


@pytest.mark.parametrize("rows", [1, 3, 40, 2000])        # one-row loops and gemm chunks
def test_overflow_in_forward_is_an_error_on_every_path(rows):
    # float32 inputs near 3e38 used to give NaN probabilities, and predict
    # answered class 0 for them.
    net = Network([4, 8, 2], seed=0)
    X = np.full((rows, 4), 3e38, np.float32)
    for call in (net.forward, net.predict):
        with pytest.raises(ValueError, match="forward pass overflowed float32"):
            call(X)
    labels = np.zeros(rows, dtype=int)
    with pytest.raises(ValueError, match="the loss is nan: the forward pass overflowed"):
        net.evaluate(X, labels)
    with pytest.raises(ValueError, match="forward pass overflowed"):
        net.gradients(X, labels)
    # The NumPy reference agrees that there is no answer.
    with np.errstate(all="ignore"):
        assert not np.isfinite(reference_forward(net, X)).all()


def reference_forward(net, X):
    from cmlp import reference
    a = X.astype(net.dtype)
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        z = reference.linear_forward(a, W, b)
        a = reference.relu_forward(z) if i < len(net.weights) - 1 else z
    return reference.softmax_forward(a)


def test_large_finite_values_give_one_answer_whatever_the_path():
    # The same rows through the one-row loops (1 row per call) and gemm
    # (all at once), against the reference: the same classes everywhere.
    net = Network([20, 16, 3], seed=0)
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((300, 20)) * 1e15).astype(np.float32)
    X[rng.random(X.shape) < 0.5] = 0                         # zero skipping engaged
    batched = net.predict_proba(X)
    one_by_one = np.vstack([net.predict_proba(x[None]) for x in X])
    np.testing.assert_allclose(one_by_one, batched, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(one_by_one.argmax(1), reference_forward(net, X).argmax(1))


def test_out_must_not_overlap_x_and_unaligned_input_is_copied():
    net = Network([4, 4], output="identity", dtype="float64", seed=0)
    X = np.random.default_rng(0).standard_normal((6, 4))
    expected = net.forward(X)
    with pytest.raises(ValueError, match="out must not overlap X"):
        net.forward(X, out=X)                     # used to corrupt the result silently
    # An unaligned C-contiguous array (used to be read as misaligned
    # integers, which UBSan reports) is copied to an aligned one first.
    raw = np.zeros(X.nbytes + 1, dtype=np.uint8)
    unaligned = raw[1:].view(np.float64).reshape(X.shape)
    unaligned[...] = X
    assert not unaligned.flags.aligned and unaligned.flags.c_contiguous
    np.testing.assert_array_equal(net.forward(unaligned), expected)
    out = np.zeros(X.nbytes + 1, dtype=np.uint8)[1:].view(np.float64).reshape(X.shape)
    with pytest.raises(ValueError, match="aligned"):
        net.forward(X, out=out)
