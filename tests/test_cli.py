"""The `cmlp` command line: the default MNIST run (the acceptance target),
options, and one-line errors with exit code 2."""
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cmlp import Network, __version__, load_history
from cmlp.cli import main

from helpers import ENV, TESTS_DIR, popen_cli, run_cli

run = run_cli


def test_default_training_reaches_target_accuracy(mnist_path, tmp_path):
    """784-128-64-10 ReLU, SGD lr 0.1, batch 128, 10 epochs, float32: >= 0.975."""
    model = tmp_path / "mnist.npz"
    result = run("train", "--data", mnist_path, "--save", str(model))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    epochs = [l for l in lines if l.startswith("epoch ")]
    assert len(epochs) == 10
    assert re.fullmatch(r"epoch 10/10  loss \d\.\d{4}  train acc \d\.\d{4}  test acc \d\.\d{4}  "
                        r"lr 0\.1  \d+\.\d{2}s", epochs[-1]), epochs[-1]
    match = re.fullmatch(r"test accuracy: (0\.\d{4})", lines[-1])
    assert match, lines[-1]
    accuracy = float(match.group(1))
    assert accuracy >= 0.975

    # The saved model takes raw [0, 1] pixels and scores the same.
    from cmlp.datasets import load_mnist
    _, _, X_test, y_test = load_mnist(mnist_path)
    net = Network.load(model)
    assert net.sizes == (784, 128, 64, 10) and net.dtype == np.float32
    assert round(net.evaluate(X_test, y_test)["accuracy"], 4) == accuracy


def test_options_and_environment_data(mnist_path, capsys, monkeypatch):
    monkeypatch.setenv("CMLP_DATA", mnist_path)
    code = main(["train", "--hidden", "32", "--activation", "tanh", "--epochs", "1",
                 "--batch-size", "256", "--lr", "0.05", "--dtype", "float64", "--seed", "3",
                 "--no-standardize", "--threads", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Network([784, 32, 10], activation='tanh'" in out and "float64" in out
    assert float(out.strip().splitlines()[-1].split(": ")[1]) > 0.85


@pytest.mark.parametrize("args,message", [
    (["train", "--lr", "-1"], "--lr: must be > 0"),
    (["train", "--hidden", "12,x"], "--hidden takes comma-separated integers"),
    (["train", "--epochs", "-2"], "--epochs: must be >= 1"),
    (["train", "--epochs", "0"], "--epochs: must be >= 1"),         # would train nothing
    (["train", "--hidden", "128,,64"], "--hidden takes comma-separated integers"),
    (["train", "--epoch", "3"], "unrecognized arguments: --epoch 3 (see 'cmlp train --help')"),
    (["train", "--lr", "x"], "(see 'cmlp train --help')"),
    (["train", "--dtype", "float16"], "invalid choice"),
    (["train", "--dropout", "1"], "--dropout: must be in [0, 1)"),
    (["train", "--threads", "0"], "--threads: must be > 0"),
    (["plot", "/no/such/model.npz"], "no model file"),
    (["train", "--bogus"], "unrecognized arguments"),
    (["fly"], "invalid choice"),
    ([], "required"),
    (["train", "--data", "/no/such/dir"], "does not exist"),
])
def test_errors_are_one_line_with_exit_code_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_bad_data_directory_is_one_line(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03junk")
    result = run("train", "--data", str(tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "train-labels" in result.stderr


def test_console_script_is_installed():
    script = shutil.which("cmlp")
    if script is None:
        pytest.skip("cmlp console script not on PATH (package not pip-installed)")
    result = subprocess.run([script, "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--batch-size" in result.stdout


def test_killed_run_resumes_bit_identical(mnist_path, tmp_path):
    """A run killed mid-way and resumed with --resume ends with exactly the
    parameters of the run that was never interrupted."""
    import signal
    import time
    options = ["--data", mnist_path, "--hidden", "32", "--epochs", "6", "--optimizer", "adam",
               "--schedule", "cosine", "--weight-decay", "1e-4", "--dropout", "0.2"]
    whole = tmp_path / "whole.npz"
    assert run("train", *options, "--save", str(whole)).returncode == 0

    ckpt = tmp_path / "run.npz"
    proc = popen_cli("train", *options, "--checkpoint", str(ckpt),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = int(np.load(ckpt)["checkpoint_epoch"])
    assert 1 <= done < 6, "the run was not killed mid-way"

    resumed = tmp_path / "resumed.npz"
    result = run("train", "--resume", str(ckpt), "--save", str(resumed))
    assert result.returncode == 0, result.stderr
    assert f"resuming {ckpt} after epoch {done}" in result.stdout
    assert len([l for l in result.stdout.splitlines() if l.startswith("epoch ")]) == 6 - done
    np.testing.assert_array_equal(Network.load(resumed).parameters,
                                  Network.load(whole).parameters)
    assert Network.load(resumed).dropout == [0.2]


def test_resume_needs_a_cli_checkpoint(tmp_path):
    model = tmp_path / "model.npz"
    Network([784, 10], seed=0).save(model)
    result = run("train", "--resume", str(model))
    assert result.returncode == 2 and "not a checkpoint" in result.stderr


def test_preset_best_reaches_target_accuracy(mnist_path):
    """--preset best: >= 0.985 on MNIST (its wall time is measured in the README,
    not here: timing belongs in bench/)."""
    result = run("train", "--data", mnist_path, "--preset", "best")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "Network([784, 512, 256, 10]" in lines[0]
    assert len([l for l in lines if l.startswith("epoch ")]) == 15
    match = re.fullmatch(r"test accuracy: (0\.\d{4})", lines[-1])
    assert match and float(match.group(1)) >= 0.985, lines[-1]


def test_preset_options_can_be_overridden():
    from cmlp.cli import parse_args
    args = parse_args(["train", "--preset", "best", "--epochs", "3", "--lr", "0.01"])
    assert (args.epochs, args.lr, args.hidden, args.optimizer) == (3, 0.01, [512, 256], "adam")
    assert parse_args(["train"]).hidden == [128, 64]


def test_early_stopping_holds_out_training_data(mnist_path):
    result = run("train", "--data", mnist_path, "--hidden", "32", "--epochs", "40",
                 "--lr", "0.3", "--early-stopping", "--patience", "2")
    assert result.returncode == 0, result.stderr
    epochs = [l for l in result.stdout.splitlines() if l.startswith("epoch ")]
    assert 3 <= len(epochs) < 40 and all(" val acc " in l for l in epochs)
    assert re.search(r"kept the weights of epoch \d+ \(best val loss\)", result.stdout)
    assert re.fullmatch(r"test accuracy: 0\.\d{4}", result.stdout.strip().splitlines()[-1])


def test_dropout_plot_progress_and_cmlp_plot(mnist_path, tmp_path):
    model, png = tmp_path / "m.npz", tmp_path / "train.png"
    result = run("train", "--data", mnist_path, "--hidden", "64", "--activation", "gelu",
                 "--epochs", "2", "--dropout", "0.2", "--progress", "--save", str(model),
                 "--plot", str(png))
    assert result.returncode == 0, result.stderr
    assert "dropout=0.2" in result.stdout and f"plotted {png}" in result.stdout
    assert "epoch 1/2" in result.stderr            # the progress bar
    assert float(result.stdout.strip().splitlines()[-1].split(": ")[1]) > 0.9
    assert png.read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "again.png"
    result = run("plot", str(model), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"plotted 2 epochs of {model} to {out}" in result.stdout
    assert out.read_bytes()[:4] == b"\x89PNG"
    Network([784, 10]).save(tmp_path / "bare.npz")
    result = run("plot", str(tmp_path / "bare.npz"))
    assert result.returncode == 2 and "no training history" in result.stderr


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"cmlp {__version__}"


def test_resume_refuses_conflicting_options_and_extends_epochs(mnist_path, tmp_path):
    ckpt = tmp_path / "run.npz"
    options = ["--data", mnist_path, "--hidden", "16", "--epochs", "1", "--batch-size", "512"]
    assert run("train", *options, "--checkpoint", str(ckpt)).returncode == 0
    result = run("train", "--resume", str(ckpt), "--epochs", "2", "--lr", "0.5", "--hidden", "64")
    assert result.returncode == 2 and result.stdout == ""
    assert "--hidden, --lr differ from the run in" in result.stderr
    # Options equal to the run's are fine; --epochs extends it.
    result = run("train", "--resume", str(ckpt), "--epochs", "2", "--hidden", "16")
    assert result.returncode == 0, result.stderr
    assert f"resuming {ckpt} after epoch 1" in result.stdout
    epochs = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 1 and epochs[0].startswith("epoch 2/2")
    result = run("train", "--resume", str(ckpt), "--epochs", "1")
    assert result.returncode == 2 and "fewer than the 2 epochs" in result.stderr


def test_the_test_set_is_recorded_as_test_not_validation(mnist_path, tmp_path):
    model = tmp_path / "m.npz"
    assert run("train", "--data", mnist_path, "--hidden", "16", "--epochs", "1",
               "--save", str(model)).returncode == 0
    history = load_history(model)
    assert "test_accuracy" in history.keys() and "val_accuracy" not in history.keys()


def test_help_and_missing_extras_speak_in_cli_terms(mnist_path):
    """Issue 20, item 6: the help names every optimizer and the defaults; a
    missing extra is named by the option that needs it."""
    result = subprocess.run([sys.executable, "-m", "cmlp", "train", "--help"], env=ENV,
                            cwd=TESTS_DIR, capture_output=True, text=True, timeout=60)
    help_text = " ".join(result.stdout.split())
    assert "Adam" in help_text and "(default 128" in help_text and "(default 5)" in help_text
    assert "(default float32)" in help_text and "(default relu)" in help_text
    code = ("import sys; sys.modules['tqdm'] = None; sys.modules['tqdm.auto'] = None\n"
            "from cmlp import cli\n"
            f"sys.exit(cli.main(['train', '--data', {mnist_path!r}, '--epochs', '1', "
            "'--progress']))")
    result = subprocess.run([sys.executable, "-c", code], env=ENV, cwd=TESTS_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "cmlp: error: --progress shows a progress bar and needs tqdm" in result.stderr
    assert "progress=True" not in result.stderr
