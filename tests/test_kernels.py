"""Every C kernel (cmlp.kernels) against its NumPy twin (cmlp.reference)."""
import numpy as np
import pytest

from cmlp import kernels, reference
from conftest import assert_close

DTYPES = [np.float64, np.float32]
# m = 1..8 take the row-by-row path, larger m the gemm path.
SHAPES = [(1, 1, 1), (1, 7, 3), (5, 1, 4), (8, 13, 6), (9, 13, 6), (33, 17, 9), (128, 64, 10)]


def rand(rng, *shape, dtype=np.float64, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def test_every_kernel_has_a_reference_twin():
    for name in kernels.__all__:
        assert callable(getattr(reference, name)), name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n_in,n_out", SHAPES)
def test_linear_forward(dtype, m, n_in, n_out):
    rng = np.random.default_rng(m * 100 + n_in)
    a, W, b = rand(rng, m, n_in, dtype=dtype), rand(rng, n_in, n_out, dtype=dtype), rand(rng, n_out, dtype=dtype)
    z = kernels.linear_forward(a, W, b)
    assert z.dtype == dtype
    assert_close(z, reference.linear_forward(a, W, b), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n_in,n_out", SHAPES)
def test_linear_backward(dtype, m, n_in, n_out):
    rng = np.random.default_rng(m * 100 + n_out)
    dz, a, W = rand(rng, m, n_out, dtype=dtype), rand(rng, m, n_in, dtype=dtype), rand(rng, n_in, n_out, dtype=dtype)
    got = kernels.linear_backward(dz, a, W)
    want = reference.linear_backward(dz, a, W)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        assert_close(g, w, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n_in,n_out", SHAPES)
@pytest.mark.parametrize("sparse", [False, True])
def test_linear_backward_sgd(dtype, m, n_in, n_out, sparse):
    rng = np.random.default_rng(m * 7 + n_in)
    dz, a, W, b = (rand(rng, m, n_out, dtype=dtype), rand(rng, m, n_in, dtype=dtype),
                   rand(rng, n_in, n_out, dtype=dtype), rand(rng, n_out, dtype=dtype))
    if sparse:       # zero inputs take the skip in the one-row kernel
        a[rng.random(a.shape) < 0.7] = 0
    got = kernels.linear_backward_sgd(dz, a, W, b, 0.1)
    want = reference.linear_backward_sgd(dz, a, W, b, 0.1)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        assert_close(g, w, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 3])
def test_linear_forward_with_sparse_input(dtype, m):
    rng = np.random.default_rng(m)
    a, W, b = rand(rng, m, 301, dtype=dtype), rand(rng, 301, 37, dtype=dtype), rand(rng, 37, dtype=dtype)
    a[rng.random(a.shape) < 0.8] = 0
    assert_close(kernels.linear_forward(a, W, b), reference.linear_forward(a, W, b), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid"])
def test_activation_pair(dtype, name):
    rng = np.random.default_rng(1)
    z = rand(rng, 37, 11, dtype=dtype, scale=3.0)
    z[0, :3] = 0   # relu's kink: derivative 0 at exactly 0 in both
    a = getattr(kernels, name + "_forward")(z)
    assert_close(a, getattr(reference, name + "_forward")(z), dtype)
    da = rand(rng, 37, 11, dtype=dtype)
    dz = getattr(kernels, name + "_backward")(a, da)
    assert_close(dz, getattr(reference, name + "_backward")(a, da), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_does_not_overflow(dtype):
    z = np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]], dtype=dtype)
    a = kernels.sigmoid_forward(z)
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a[0, [0, 2, 4]], np.array([0.0, 0.5, 1.0], dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k", [(1, 2), (9, 10), (64, 3)])
def test_softmax_and_cross_entropy(dtype, m, k):
    rng = np.random.default_rng(k)
    z = rand(rng, m, k, dtype=dtype, scale=4.0)
    labels = rng.integers(0, k, m)
    assert_close(kernels.softmax_forward(z), reference.softmax_forward(z), dtype)
    loss, hits = kernels.softmax_xent_loss(z, labels)
    ref_loss, ref_hits = reference.softmax_xent_loss(z, labels)
    assert_close(loss, ref_loss, dtype)
    assert hits == ref_hits
    dz, loss2, hits2 = kernels.softmax_xent_backward(z, labels)
    ref_dz, _, _ = reference.softmax_xent_backward(z, labels)
    assert_close(dz, ref_dz, dtype)
    assert loss2 == loss and hits2 == hits


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_is_stable_for_huge_logits(dtype):
    z = np.array([[1e4, 0.0, -1e4], [-3e4, -3e4, -3e4]], dtype=dtype)
    p = kernels.softmax_forward(z)
    np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    loss, _ = kernels.softmax_xent_loss(z, np.array([1, 0]))
    assert np.isclose(loss, 1e4 + np.log(3), rtol=1e-6)
    dz, _, _ = kernels.softmax_xent_backward(z, np.array([1, 0]))
    assert np.isfinite(dz).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse(dtype):
    rng = np.random.default_rng(5)
    yhat, y = rand(rng, 23, 4, dtype=dtype), rand(rng, 23, 4, dtype=dtype)
    assert_close(kernels.mse_loss(yhat, y), reference.mse_loss(yhat, y), dtype)
    dz, loss = kernels.mse_backward(yhat, y)
    ref_dz, ref_loss = reference.mse_backward(yhat, y)
    assert_close(dz, ref_dz, dtype)
    assert_close(loss, ref_loss, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update(dtype):
    rng = np.random.default_rng(6)
    p, g = rand(rng, 1001, dtype=dtype), rand(rng, 1001, dtype=dtype)
    new = kernels.sgd_update(p, g, 0.05)
    assert_close(new, reference.sgd_update(p, g, 0.05), dtype)
    assert not np.shares_memory(new, p)


def test_non_contiguous_inputs_are_handled():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((20, 6))[::2]          # strided rows
    W = np.asfortranarray(rng.standard_normal((6, 4)))
    b = rng.standard_normal(4)
    assert_close(kernels.linear_forward(a, W, b), reference.linear_forward(a, W, b), np.float64)


def test_kernel_boundary_checks():
    a = np.ones((3, 4))
    with pytest.raises(ValueError, match="do not fit"):
        kernels.linear_forward(a, np.ones((5, 2)), np.ones(2))
    with pytest.raises(TypeError, match="one dtype"):
        kernels.linear_forward(a, np.ones((4, 2), dtype=np.float32), np.ones(2))
    with pytest.raises(TypeError, match="float32 or float64"):
        kernels.relu_forward(np.ones((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        kernels.softmax_xent_loss(a, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match="non-empty"):
        kernels.softmax_forward(np.ones((0, 3)))
    with pytest.raises(ValueError, match="one shape"):
        kernels.mse_loss(np.ones((2, 2)), np.ones((2, 3)))
