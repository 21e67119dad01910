"""Every C kernel (cmlp.checked_kernels) against its NumPy twin (cmlp.reference)."""
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_close

from cmlp import _blas, reference
from cmlp import checked_kernels as kernels

from helpers import ENV, TESTS_DIR

DTYPES = [np.float64, np.float32]
# m = 1 (and mostly-zero rows up to 8) take the row kernel; dense rows up to
# 8 one gemm; 9..32 rows gemm in blocks of 8; more rows one gemm.
SHAPES = [(1, 1, 1), (1, 7, 3), (5, 1, 4), (8, 13, 6), (9, 13, 6), (20, 13, 6), (33, 17, 9),
          (128, 64, 10)]


def rand(rng, *shape, dtype=np.float64, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def test_every_kernel_has_a_reference_twin():
    for name in kernels.__all__:
        assert callable(getattr(reference, name)), name


# Rows in blocks of 8 and a remainder; columns in panels of 32, the last
# masked (16 and 32 wide, 1 to 31 over).
PANEL_SHAPES = [(1, 1, 1), (7, 5, 16), (8, 13, 32), (9, 784, 33), (17, 3, 10), (40, 64, 100),
                (300, 784, 128), (64, 128, 64)]


@pytest.mark.skipif(not kernels.has_panel_linear(), reason="needs AVX-512F")
@pytest.mark.parametrize("m,n_in,n_out", PANEL_SHAPES)
def test_panel_linear(m, n_in, n_out):
    rng = np.random.default_rng(m * 1000 + n_in + n_out)
    a, W, b = (rand(rng, m, n_in, dtype=np.float32), rand(rng, n_in, n_out, dtype=np.float32),
               rand(rng, n_out, dtype=np.float32))
    z = kernels.panel_linear(a, W, b)
    assert z.dtype == np.float32 and z.shape == (m, n_out)
    assert_close(z, reference.panel_linear(a, W, b), np.float32)
    # Each row's bits are its own: the same row alone gives the same values.
    np.testing.assert_array_equal(kernels.panel_linear(a[-1:], W, b), z[-1:])
    # ReLU on the way out is relu_forward's, bit for bit (NaN stays NaN).
    a[0, 0] = np.nan
    z = kernels.panel_linear(a, W, b)
    np.testing.assert_array_equal(kernels.panel_linear(a, W, b, relu=True),
                                  kernels.relu_forward(z))
    if m > 1:
        assert_close(kernels.panel_linear(a[1:], W, b, relu=True),
                     reference.panel_linear(a[1:], W, b, relu=True), np.float32)


def test_panel_linear_runs_where_the_cpu_has_avx512():
    # The skip above must not hide a machine that has the instructions.
    with open("/proc/cpuinfo") as cpuinfo:
        flags = cpuinfo.read()
    assert kernels.has_panel_linear() == (" avx512f " in flags.replace("\n", " "))


@pytest.mark.skipif(not kernels.has_panel_linear(), reason="needs AVX-512F")
@pytest.mark.parametrize("threads", [1, 2])
def test_batched_float32_inference_is_the_panel_product(threads):
    """predict_proba of 64 rows or more is, bit for bit, the chain of
    panel_linear, ReLU and softmax_forward; below 64 rows, and with the
    panels turned off, BLAS (equal to rounding)."""
    from cmlp import Network, _entry
    net = Network([784, 128, 64, 10], dtype="float32", seed=0)
    X = np.random.default_rng(0).standard_normal((300, 784)).astype(np.float32)
    a = X
    for layer, (W, b) in enumerate(zip(net.weights, net.biases)):
        a = kernels.panel_linear(a, W, b)
        if layer < 2:
            a = kernels.relu_forward(a)
    chain = kernels.softmax_forward(a)
    np.testing.assert_array_equal(net.predict_proba(X, threads=threads), chain)
    before = _entry.use_panels(False)
    try:
        blas = net.predict_proba(X, threads=threads)
    finally:
        _entry.use_panels(before)
    assert before
    np.testing.assert_allclose(blas, chain, rtol=1e-5, atol=1e-7)
    few = net.predict_proba(X[:63], threads=threads)
    np.testing.assert_allclose(few, chain[:63], rtol=1e-5, atol=1e-7)
    # A NaN or an infinity in X is still told from an overflow (ValueError).
    X[150, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite|NaN|infinit"):
        net.predict_proba(X, threads=threads)


@pytest.mark.skipif(not kernels.has_panel_linear(), reason="needs AVX-512F")
def test_networks_past_the_packing_cap_stay_with_blas():
    # 18 million parameters: each worker would copy 72 MB of packed W.
    from cmlp import Network, _entry
    net = Network([20000, 900, 10], dtype="float32", seed=0)
    X = np.random.default_rng(0).standard_normal((70, 20000)).astype(np.float32)
    P = net.predict_proba(X, threads=1)
    before = _entry.use_panels(False)
    try:
        np.testing.assert_array_equal(net.predict_proba(X, threads=1), P)
    finally:
        _entry.use_panels(before)


def test_panel_linear_checks_its_input():
    a, W, b = np.ones((2, 3)), np.ones((3, 4)), np.ones(4)
    with pytest.raises(TypeError, match="float32 only"):
        kernels.panel_linear(a, W, b)
    with pytest.raises(ValueError, match="do not fit"):
        kernels.panel_linear(a.astype(np.float32), W[:2].astype(np.float32),
                             b.astype(np.float32))


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
@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "leaky_relu", "gelu"])
def test_activation_pair(dtype, name):
    rng = np.random.default_rng(1)
    z = rand(rng, 37, 11, dtype=dtype, scale=3.0)
    z[0, :3] = 0   # the ReLU family's kink: the same convention at exactly 0 in both
    z[1, :2] = [-40, 40]
    a = getattr(kernels, name + "_forward")(z)
    assert_close(a, getattr(reference, name + "_forward")(z), dtype)
    da = rand(rng, 37, 11, dtype=dtype)
    given = z if name == "gelu" else a     # gelu's derivative needs z itself
    dz = getattr(kernels, name + "_backward")(given, da)
    assert_close(dz, getattr(reference, name + "_backward")(given, da), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_new_activations_values(dtype):
    z = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]], dtype=dtype)
    np.testing.assert_allclose(kernels.leaky_relu_forward(z), [[-0.02, -0.005, 0, 0.5, 3.0]],
                               rtol=1e-6)
    # GELU: z * Phi(z), e.g. gelu(1) = 0.8413447460685429, gelu(-3) = -0.0040496...
    g = kernels.gelu_forward(np.array([[1.0, -3.0, -10.0]], dtype=dtype))
    np.testing.assert_allclose(g, [[0.8413447460685429, -0.0040496977282757, -7.619853e-23]],
                               rtol=1e-5)
    # Derivatives against central differences of the forward kernels (float64).
    z = np.linspace(-4, 4, 41).reshape(1, -1) + 0.013
    for name in ("leaky_relu", "gelu"):
        fwd, bwd = getattr(kernels, name + "_forward"), getattr(kernels, name + "_backward")
        numeric = (fwd(z + 1e-6) - fwd(z - 1e-6)) / 2e-6
        given = z if name == "gelu" else fwd(z)
        np.testing.assert_allclose(bwd(given, np.ones_like(z)), numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
def test_dropout_matches_reference_exactly(dtype, rate):
    rng = np.random.default_rng(2)
    a = rand(rng, 67, 33, dtype=dtype)
    seed = kernels.dropout_seed(0xDEADBEEFCAFEF00D, 12345, 2)
    assert seed == reference.dropout_seed(0xDEADBEEFCAFEF00D, 12345, 2)
    out, mask = kernels.dropout_forward(a, rate, seed)
    ref_out, ref_mask = reference.dropout_forward(a, rate, seed)
    np.testing.assert_array_equal(mask, ref_mask)       # the same masks, bit for bit
    np.testing.assert_array_equal(out, ref_out)
    assert out.dtype == mask.dtype == dtype
    dout = rand(rng, 67, 33, dtype=dtype)
    np.testing.assert_array_equal(kernels.dropout_backward(mask, dout),
                                  reference.dropout_backward(mask, dout))


def test_dropout_statistics_and_streams():
    a = np.ones((400, 250))
    out, mask = kernels.dropout_forward(a, 0.3, kernels.dropout_seed(1, 0, 0))
    kept = (mask != 0).mean()
    assert abs(kept - 0.7) < 0.005                     # 100k draws: sd 0.0014
    assert abs(out.mean() - 1.0) < 0.01                # inverted: the mean is kept
    np.testing.assert_array_equal(out[mask != 0], 1 / 0.7)
    assert (out[mask == 0] == 0).all()
    # Different steps, layers and keys give different (uncorrelated) masks.
    others = [kernels.dropout_forward(a, 0.3, kernels.dropout_seed(*k))[1] != 0
              for k in ((1, 1, 0), (1, 0, 1), (2, 0, 0))]
    for other in others:
        agree = ((mask != 0) == other).mean()
        assert abs(agree - (0.7**2 + 0.3**2)) < 0.01
    # Rate 0 keeps everything unchanged.
    out0, mask0 = kernels.dropout_forward(a, 0.0, 7)
    np.testing.assert_array_equal(out0, a)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        kernels.dropout_forward(a, 1.0, 7)


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
@pytest.mark.parametrize("loss", ["softmax_xent", "mse", "sigmoid_bce", "poisson"])
def test_weighted_losses(dtype, loss):
    rng = np.random.default_rng(8)
    m, k = 19, 5
    z = rand(rng, m, k, dtype=dtype, scale=3.0)
    if loss == "softmax_xent":
        y = rng.integers(0, k, m)
    elif loss == "mse":
        y = rand(rng, m, k, dtype=dtype)
    elif loss == "poisson":
        y = rng.poisson(2.0, (m, k)).astype(dtype)
    else:
        y = (rng.random((m, k)) < 0.4).astype(dtype)
    w = rng.random(m).astype(dtype) * 3
    w[2] = 0
    for weights in (None, w):
        got = getattr(kernels, loss + "_backward")(z, y, weights)
        want = getattr(reference, loss + "_backward")(z, y, weights)
        assert_close(got[0], want[0], dtype)
        assert_close(got[1], want[1], dtype)
        assert got[2:] == want[2:]                    # hit counts
        lone = getattr(kernels, loss + "_loss")(z, y, weights)
        lone = lone if isinstance(lone, tuple) else (lone,)
        assert lone[0] == got[1]
    # Unit weights are the unweighted mean; integer weights repeat rows.
    ones = getattr(kernels, loss + "_backward")(z, y, np.ones(m, dtype=dtype))
    plain = getattr(kernels, loss + "_backward")(z, y)
    assert_close(ones[0], plain[0], dtype)
    counts = np.array([1, 2, 0, 3] + [1] * (m - 4))
    rows = np.repeat(np.arange(m), counts)
    weighted = getattr(kernels, loss + "_backward")(z, y, counts.astype(dtype))
    repeated = getattr(kernels, loss + "_backward")(z[rows], y[rows])
    summed = np.zeros_like(z)
    np.add.at(summed, rows, repeated[0])
    assert_close(weighted[0], summed, dtype)
    assert_close(weighted[1], repeated[1], dtype)
    # A batch whose weights are all 0 learns nothing (and does not divide by 0).
    zero = getattr(kernels, loss + "_backward")(z, y, np.zeros(m, dtype=dtype))
    assert (zero[0] == 0).all()
    with pytest.raises(ValueError, match="sample_weight"):
        getattr(kernels, loss + "_backward")(z, y, -w)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_bce_is_stable_for_huge_logits(dtype):
    z = np.array([[1e4, -1e4, 0.0], [-80.0, 80.0, 3.0]], dtype=dtype)
    y = np.array([[1, 0, 1], [1, 0, 0]], dtype=dtype)
    dz, loss, hits = kernels.sigmoid_bce_backward(z, y)
    assert np.isfinite(dz).all()
    want = np.log(2) + (80 + 80 + np.log1p(np.exp(-80.0)) * 2) + (3 + np.log1p(np.exp(-3.0)))
    assert np.isclose(loss, want, rtol=1e-6)
    assert hits == 0                                   # row 0: z=0 says "no" to a 1
    _, hits = kernels.sigmoid_bce_loss(z[:1, :2], y[:1, :2])
    assert hits == 1


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


def _rows_in_c_order(x, W, b):
    # The one-row forward kernel's arithmetic, operation by operation: nonzero
    # inputs four at a time, z += ((c0*r0 + c1*r1) + c2*r2) + c3*r3, then the
    # leftovers one by one. NumPy rounds each elementwise op as C does.
    z = b.copy()
    nonzero = np.flatnonzero(x)
    full = len(nonzero) - len(nonzero) % 4
    for g in range(0, full, 4):
        i0, i1, i2, i3 = nonzero[g:g + 4]
        z = z + (((x[i0] * W[i0] + x[i1] * W[i1]) + x[i2] * W[i2]) + x[i3] * W[i3])
    for i in nonzero[full:]:
        z = z + x[i] * W[i]
    return z


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("density", [0.15, 1.0])
def test_one_row_kernels_round_like_plain_c(dtype, density):
    # _row_kernels.h is compiled per ISA (AVX-512 / AVX2 / baseline) and the
    # CPU picks the clone. The build forbids fused multiply-adds, so whichever
    # clone runs here must give exactly the bits of the plain C arithmetic:
    # results do not depend on the CPU.
    rng = np.random.default_rng(11)
    x, W, b = rand(rng, 1, 301, dtype=dtype), rand(rng, 301, 67, dtype=dtype), rand(rng, 67, dtype=dtype)
    x[rng.random(x.shape) > density] = 0
    np.testing.assert_array_equal(kernels.linear_forward(x, W, b)[0], _rows_in_c_order(x[0], W, b))
    dz = rand(rng, 1, 67, dtype=dtype)
    lr = dtype(0.1)
    _, W_new, b_new = kernels.linear_backward_sgd(dz, x, W, b, lr)
    step = (lr * x[0])[:, None]
    want_W = np.where(x[0][:, None] != 0, W - step * dz[0], W)
    np.testing.assert_array_equal(W_new, want_W)
    np.testing.assert_array_equal(b_new, b - lr * dz[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("density", [0.15, 1.0])
def test_linear_backward_sgd_next_forward(dtype, density):
    # Against the NumPy twin, and bit for bit against the two kernels it fuses
    # (the SGD step, then linear_forward on the next row): training with it
    # or without it must give the same network.
    rng = np.random.default_rng(5)
    dz, a, W, b, x_next = (rand(rng, 1, 37, dtype=dtype), rand(rng, 1, 301, dtype=dtype),
                           rand(rng, 301, 37, dtype=dtype), rand(rng, 37, dtype=dtype),
                           rand(rng, 1, 301, dtype=dtype))
    a[rng.random(a.shape) > density] = 0
    x_next[rng.random(x_next.shape) > density] = 0
    got = kernels.linear_backward_sgd_next_forward(dz, a, W, b, 0.1, x_next)
    for g, w in zip(got, reference.linear_backward_sgd_next_forward(dz, a, W, b, 0.1, x_next)):
        assert g.dtype == dtype
        assert_close(g, w, dtype)
    _, W_new, b_new = kernels.linear_backward_sgd(dz, a, W, b, 0.1)
    for g, w in zip(got, (W_new, b_new, kernels.linear_forward(x_next, W_new, b_new))):
        np.testing.assert_array_equal(g, w)


FEW_ROWS_CHILD = """
import numpy as np
from cmlp import _blas, reference
from cmlp import checked_kernels as kernels
print(_blas.has_small_gemm())
worst = 0.0
for dtype in (np.float64, np.float32):
    rng = np.random.default_rng(2)
    W, b = rng.standard_normal((300, 70)).astype(dtype), rng.standard_normal(70).astype(dtype)
    for m in (2, 5, 8, 9, 20, 32, 33):
        for density in (0.1, 1.0):
            a = rng.standard_normal((m, 300)).astype(dtype)
            a[rng.random(a.shape) > density] = 0
            got, want = kernels.linear_forward(a, W, b), reference.linear_forward(a, W, b)
            tol = 1e-12 if dtype == np.float64 else 1e-5
            error = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
            assert error < tol, (dtype, m, density, error)
            worst = max(worst, error) if dtype == np.float64 else worst
print(worst)
"""


@pytest.mark.parametrize("core", ["", "Haswell"])
def test_few_rows_paths_with_and_without_openblas_small_gemm(core):
    # linear_forward sends 2-32 dense rows to gemm only where OpenBLAS has its
    # AVX-512 small-matrix kernels, and else keeps the row kernel up to 8
    # rows. OPENBLAS_CORETYPE=Haswell makes OpenBLAS use its AVX2 kernels
    # (no small-matrix path): both branches must match the NumPy twin.
    env = {**ENV, "OPENBLAS_CORETYPE": core} if core else ENV
    result = subprocess.run([sys.executable, "-c", FEW_ROWS_CHILD], env=env, cwd=TESTS_DIR,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    found = result.stdout.split()[0]
    assert found == ("False" if core else str(_blas.has_small_gemm()))
