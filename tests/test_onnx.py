"""ONNX export (issue 11): the exported graph, run by ONNX Runtime, agrees
with predict_proba/forward for every activation x output x dtype, on the
MNIST test set and on random inputs: to 1e-5 in float32, 1e-12 in float64."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cmlp import Network

from helpers import run_cli

ACTIVATIONS = ["relu", "leaky_relu", "gelu", "tanh", "sigmoid", "identity"]
OUTPUTS = ["softmax", "sigmoid", "identity", "exp"]
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


def session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def mnist_test(mnist):
    return mnist[2]


def scale_of(outputs):
    # Identity outputs are raw numbers of any size: compare relative to it.
    return max(1.0, float(np.abs(outputs).max()))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_onnx_runtime_agrees_with_forward(tmp_path, mnist_test, activation, output, dtype):
    net = Network([784, 64, 32, 10], activation, output, dtype, seed=3)
    # Weights that are not just the initialisation: one epoch on some rows.
    rng = np.random.default_rng(0)
    X_train = rng.random((512, 784))
    y = rng.integers(0, 10, 512) if output == "softmax" else rng.random((512, 10))
    net.fit(X_train, y, epochs=1, batch_size=64, lr=1e-3, verbose=0)
    path = tmp_path / "net.onnx"
    net.to_onnx(path)
    runner = session(path)
    assert [i.name for i in runner.get_inputs()] == ["X"]
    name = "outputs" if output in ("identity", "exp") else "probabilities"
    assert [o.name for o in runner.get_outputs()] == [name]
    random_rows = (rng.standard_normal((500, 784)) * 3).astype(dtype)
    for X in (mnist_test.astype(dtype), random_rows):
        expected = net.forward(X)
        got = runner.run(None, {"X": X})[0]
        assert got.dtype == net.dtype and got.shape == expected.shape
        error = float(np.abs(got - expected).max()) / scale_of(expected)
        print(f"{activation}/{output}/{dtype} rows={len(X)}: max error {error:.1e}")
        assert error <= TOLERANCE[dtype], error
    if output != "identity":
        np.testing.assert_array_equal(runner.run(None, {"X": random_rows[:1]})[0].shape, (1, 10))


def test_gelu_float64_erf_holds_across_the_range(tmp_path):
    # ONNX Runtime has no float64 Erf: the graph spells Cody's rational
    # approximations. Check every branch (|x| <= 0.47, <= 4, > 4, huge).
    net = Network([1, 1, 1], "gelu", "identity", "float64", seed=0)
    net.set_weights([np.ones((1, 1)), np.ones((1, 1))], [np.zeros(1), np.zeros(1)])
    net.to_onnx(tmp_path / "gelu.onnx")
    z = np.concatenate([np.linspace(-40, 40, 20001), [-1e300, -1e10, 0.46875, 4.0, 1e10]])
    X = z.reshape(-1, 1)
    got = session(tmp_path / "gelu.onnx").run(None, {"X": X})[0]
    np.testing.assert_allclose(got, net.forward(X), rtol=1e-13, atol=1e-14)


def test_cli_export_and_a_clear_error_without_a_model(tmp_path):
    net = Network([6, 5, 3], seed=0)
    net.save(tmp_path / "m.npz")
    result = run_cli("export", str(tmp_path / "m.npz"))
    assert result.returncode == 0, result.stderr
    assert f"to {tmp_path / 'm.onnx'}" in result.stdout
    onnx.checker.check_model(onnx.load(tmp_path / "m.onnx"))
    X = np.random.default_rng(0).random((4, 6)).astype(np.float32)
    np.testing.assert_allclose(session(tmp_path / "m.onnx").run(None, {"X": X})[0],
                               net.predict_proba(X), rtol=1e-6, atol=1e-7)
    result = run_cli("export", str(tmp_path / "m.npz"), "-o", str(tmp_path / "x.onnx"))
    assert result.returncode == 0 and (tmp_path / "x.onnx").exists()
    result = run_cli("export", str(tmp_path / "missing.npz"))
    assert result.returncode == 2 and "no model file" in result.stderr


def test_without_onnx_the_error_names_the_extra(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ImportError, match=r'pip install "cmlp\[onnx\]"'):
        Network([3, 2]).to_onnx("never.onnx")
