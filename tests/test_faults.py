"""Faults end a job cleanly (issue 19). The MPI cases run a 2-rank job under
MPICH's mpiexec with a timeout, so a regression fails here instead of
hanging CI, and report how long the job took to end after its fault; the
others are one process: resuming on other data, Ctrl-C with a failing
checkpoint, unwritable and full disks, a damaged file's error."""
import contextlib
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from cmlp import Callback, Network

from helpers import ENV, TESTS_DIR

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
SCRIPT = os.path.join(TESTS_DIR, "mpi", "faults.py")
# What ending "in a bounded time" means here: the abort itself takes
# ABORT_GRACE_SECONDS (0.2 s) plus MPICH's teardown.
END_WITHIN_S = 10.0


def run_case(*args, timeout=120):
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, SCRIPT, *args], env=ENV,
                            cwd=TESTS_DIR, capture_output=True, text=True, timeout=timeout)
    ended = time.monotonic()
    faults = [float(t) for t in re.findall(r"fault at ([0-9.]+)", result.stderr)]
    return result, (ended - faults[0]) if faults else None


@pytest.mark.parametrize("case,message", [
    ("callback-rank-1", "RuntimeError: a callback failed on rank 1"),
    ("callback-rank-0", "RuntimeError: a callback failed on rank 0"),
    ("first-step-rank-1", "RuntimeError: a step failed on rank 1 (epoch 1"),
    ("mid-epoch-rank-1", "RuntimeError: a step failed on rank 1 (epoch 2"),
    ("validation-rank-1", "RuntimeError: validation failed on rank 1"),
    ("sigint-rank-1", "KeyboardInterrupt"),
])
def test_a_fault_on_one_rank_mid_training_ends_the_job(case, message):
    """Item 1: after the gradient reducer exists, one rank's exception used
    to hang every rank (the failing one in MPI_Win_free, the others in the
    reducer's barrier). Each stage: the first steps, mid-epoch, an epoch's
    end (callbacks), validation, Ctrl-C on that rank only."""
    result, seconds = run_case(case)
    print(f"{case}: the job ended {seconds:.2f} s after the fault")
    assert result.returncode != 0
    failing = case[-1]
    assert f"rank {failing} of 2 failed, aborting the job" in result.stderr
    assert message in result.stderr
    assert "finished" not in result.stdout
    assert seconds is not None and seconds < END_WITHIN_S


@pytest.mark.parametrize("case", ["sigterm-rank-1", "sigkill-rank-1"])
def test_a_rank_killed_ends_the_job(case):
    """The launcher sees a rank die and ends the others."""
    result, seconds = run_case(case)
    print(f"{case}: the job ended {seconds:.2f} s after the fault")
    assert result.returncode != 0
    assert "finished" not in result.stdout
    assert seconds is not None and seconds < END_WITHIN_S


def test_the_last_checkpoint_of_a_killed_job_resumes_exactly(tmp_path):
    """Rank 1 killed (SIGKILL) after epoch 3 of 6: rank 0's last checkpoint,
    resumed on 2 ranks, ends where the uninterrupted run ends, bit for bit."""
    checkpoint = tmp_path / "run.npz"
    result, seconds = run_case("sigkill-rank-1", str(checkpoint))
    print(f"sigkill-rank-1 with a checkpoint: the job ended {seconds:.2f} s after the fault")
    assert result.returncode != 0 and seconds < END_WITHIN_S
    assert checkpoint.exists()
    resumed, whole = tmp_path / "resumed.npy", tmp_path / "whole.npy"
    for args in (("resume", str(checkpoint), str(resumed)), ("whole", str(whole))):
        result, _ = run_case(*args)
        assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(np.load(resumed), np.load(whole))


def test_cli_checkpoint_to_a_missing_directory_ends_the_job(mnist_path, tmp_path):
    """`mpiexec -n 2 cmlp train --mpi --checkpoint /nonexistent/run.npz` hung."""
    start = time.monotonic()
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "cmlp", "train",
                             "--mpi", "--data", mnist_path, "--epochs", "1",
                             "--checkpoint", str(tmp_path / "missing" / "run.npz")],
                            env=ENV, cwd=TESTS_DIR, capture_output=True, text=True,
                            timeout=120)
    seconds = time.monotonic() - start
    print(f"cmlp train --mpi --checkpoint <missing dir>: ended in {seconds:.2f} s "
          "(with start-up and MNIST loading)")
    assert result.returncode != 0
    assert "does not exist" in result.stderr
    assert seconds < 60


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_to_mpiexec_ends_the_job(signame):
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, SCRIPT, "long"], env=ENV,
                            cwd=TESTS_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stderr:                      # bounded: the deadline below
            if "training" in line or time.monotonic() > deadline:
                break
        sent = time.monotonic()
        proc.send_signal(getattr(signal, signame))
        proc.communicate(timeout=60)
        seconds = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"{signame} to mpiexec: the job ended {seconds:.2f} s after it")
    assert proc.returncode != 0
    assert seconds < END_WITHIN_S


def test_a_failing_checkpoint_write_on_rank_0_ends_the_job(tmp_path):
    """A missing directory (refused before the first epoch, not after it)."""
    path = tmp_path / "missing" / "run.npz"
    result, seconds = run_case("checkpoint-rank-0", str(path))
    print(f"checkpoint-rank-0, missing directory: the job ended {seconds:.2f} s after "
          "the fault")
    assert result.returncode != 0
    assert "rank 0 of 2 failed, aborting the job" in result.stderr
    assert str(path.parent) in result.stderr and "does not exist" in result.stderr
    assert "finished" not in result.stdout
    assert seconds < END_WITHIN_S


@contextlib.contextmanager
def small_tmpfs(tmp_path, size):
    """A tmpfs of `size` (e.g. "4k") mounted under tmp_path, unmounted on
    every way out."""
    mount = tmp_path / f"tmpfs-{size}"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0,
                                reason="mounting a tmpfs needs root (CI has it)")


@NEEDS_ROOT
def test_a_checkpoint_on_a_full_disk_ends_the_job(tmp_path):
    with small_tmpfs(tmp_path, "4k") as mount:
        path = mount / "run.npz"
        result, seconds = run_case("checkpoint-rank-0", str(path))
    print(f"checkpoint-rank-0, full disk: the job ended {seconds:.2f} s after the fault")
    assert result.returncode != 0
    assert "rank 0 of 2 failed, aborting the job" in result.stderr
    assert "No space left on device" in result.stderr and str(path) in result.stderr
    assert seconds < END_WITHIN_S


@pytest.mark.parametrize("case,what", [("other-rows", "rows: rank 0 1000, rank 1 900"),
                                       ("other-net", "sizes: rank 0 [20, 16, 3], "
                                                     "rank 1 [20, 32, 3]")])
def test_ranks_given_different_data_or_networks_refuse_alike(case, what):
    """Item 2: every rank raises RanksDisagree from one allgather before
    training, naming what differs; no rank waits, no abort."""
    start = time.monotonic()
    result, _ = run_case(case)
    seconds = time.monotonic() - start
    print(f"{case}: both ranks refused in {seconds:.2f} s (with start-up)")
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        assert f"rank {rank} refused: the 2 ranks of this fit(comm=) disagree" in result.stdout
    assert what in result.stdout
    assert seconds < 60


# ------------------------------------------------ one process (items 5, 6) --

def small_run(tmp_path, rows=300):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((rows, 8)), rng.integers(0, 3, rows)
    return Network([8, 16, 3], seed=0), X, y, tmp_path / "run.npz"


class InterruptAt(Callback):
    """Ctrl-C (KeyboardInterrupt) after `rows` rows of epoch `epoch`."""
    wants_batches = True

    def __init__(self, epoch, rows, before=None):
        self.epoch, self.rows, self.before = epoch, rows, before
        self.seen = 0

    def on_batches_end(self, run, rows):
        self.seen += rows
        if run.epoch == self.epoch and run.position["rows_done"] >= self.rows:
            if self.before is not None:
                self.before()
            raise KeyboardInterrupt


def interrupted_checkpoint(tmp_path, rows=300):
    net, X, y, path = small_run(tmp_path, rows)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, epochs=4, batch_size=10, checkpoint=path, verbose=0,
                callbacks=[InterruptAt(2, 200)])
    return X, y, path


def test_resume_refuses_data_that_cannot_be_the_runs(tmp_path):
    """Item 5: resumed 200 rows into an epoch on 150 rows, the run trained 0
    rows and recorded accuracy 2.336."""
    X, y, path = interrupted_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="200 rows into an epoch.*has 150 rows"):
        Network.resume(path, X[:150], y[:150], verbose=0)
    with pytest.raises(ValueError, match="300 rows x 8 features.*250 x 8"):
        Network.resume(path, X[:250], y[:250], verbose=0)
    with pytest.raises(ValueError, match="X has 6 features but the network expects 8"):
        Network.resume(path, X[:, :6], y, verbose=0)


def test_resume_warns_about_other_data_of_the_same_shape(tmp_path):
    X, y, path = interrupted_checkpoint(tmp_path)
    with pytest.warns(UserWarning, match="differs from the data"):
        Network.resume(path, X[::-1].copy(), y[::-1].copy(), verbose=0)
    X, y, path = interrupted_checkpoint(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # the same data: no warning
        _, history = Network.resume(path, X, y, verbose=0)
    assert max(history.accuracy) <= 1


def test_ctrl_c_with_a_failing_checkpoint_raises_the_interrupt(tmp_path):
    """Item 6: Ctrl-C while the checkpoint cannot be written used to raise
    the OSError, the interrupt only in its chain."""
    net, X, y, _ = small_run(tmp_path)
    directory = tmp_path / "runs"
    directory.mkdir()
    with pytest.warns(RuntimeWarning, match="on Ctrl-C, Checkpoint failed"), \
            pytest.raises(KeyboardInterrupt) as caught:
        net.fit(X, y, epochs=4, batch_size=10, checkpoint=directory / "run.npz", verbose=0,
                callbacks=[InterruptAt(2, 100, before=lambda: shutil.rmtree(directory))])
    if hasattr(caught.value, "__notes__"):
        assert "Checkpoint failed" in caught.value.__notes__[0]


def test_an_unwritable_checkpoint_fails_before_training(tmp_path):
    net, X, y, _ = small_run(tmp_path)
    before = net.parameters.copy()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        net.fit(X, y, epochs=3, checkpoint=tmp_path / "missing" / "run.npz", verbose=0)
    np.testing.assert_array_equal(net.parameters, before)      # not an epoch trained


def test_save_errors_name_the_target_not_the_temporary(tmp_path):
    net, _, _, _ = small_run(tmp_path)
    target = tmp_path / "missing" / "m.npz"
    with pytest.raises(FileNotFoundError) as caught:
        net.save(target)
    assert str(target) in str(caught.value) and ".cmlp-" not in str(caught.value)


@NEEDS_ROOT
def test_a_full_disk_keeps_the_previous_model_and_names_the_target(tmp_path):
    with small_tmpfs(tmp_path, "2m") as mount:
        small_net = Network([8, 16, 3], seed=0)
        small_net.save(mount / "m.npz")
        big = Network([784, 512, 10], dtype="float64", seed=0)   # 3.2 MB: does not fit
        with pytest.raises(OSError) as caught:
            big.save(mount / "m.npz")
        assert caught.value.errno == errno.ENOSPC
        assert str(mount / "m.npz") in str(caught.value)
        assert Network.load(mount / "m.npz").sizes == (8, 16, 3)
        assert [p.name for p in mount.iterdir()] == ["m.npz"]  # no temporary left


def test_a_bad_format_field_is_shown_truncated(tmp_path):
    net, _, _, path = small_run(tmp_path)
    net.save(path)
    with np.load(path) as stored:
        fields = dict(stored)
    fields["format"] = np.array("x" * 100_000)
    np.savez(path, **fields)
    with pytest.raises(ValueError, match=r"\(100000 characters\)") as caught:
        Network.load(path)
    assert len(str(caught.value)) < 300
