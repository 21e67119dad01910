"""Sparse (CSR/CSC) input: the C first layer against its scipy.sparse twins,
and networks and estimators fit on sparse X against the same dense X."""
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import assert_close

from cmlp import Network, reference
from cmlp import checked_kernels as kernels
from cmlp._sparse import CsrMatrix

DTYPES = [np.float64, np.float32]


def sparse_data(n=300, d=120, density=0.03, seed=0, dtype=np.float64, fmt="csr"):
    X = sp.random(n, d, density=density, format=fmt, random_state=seed, dtype=np.float64)
    X.data *= 4
    return X.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_csr_linear_kernels_match_scipy(dtype, fmt):
    rng = np.random.default_rng(1)
    X = sparse_data(57, 40, 0.1, dtype=dtype, fmt=fmt)
    X = sp.vstack([X, sp.csr_matrix((1, 40), dtype=dtype)], format=fmt)   # an empty row
    W = rng.standard_normal((40, 9)).astype(dtype)
    b = rng.standard_normal(9).astype(dtype)
    z = kernels.csr_linear_forward(X, W, b)
    assert z.dtype == dtype
    assert_close(z, reference.csr_linear_forward(X, W, b), dtype)
    assert_close(z, X.toarray() @ W + b, dtype)
    np.testing.assert_array_equal(z[-1], b)
    dz = rng.standard_normal(z.shape).astype(dtype)
    dW, db = kernels.csr_linear_backward(dz, X)
    ref_dW, ref_db = reference.csr_linear_backward(dz, X)
    assert_close(dW, ref_dW, dtype)
    assert_close(db, ref_db, dtype)
    untouched = np.flatnonzero(X.tocsc().getnnz(axis=0) == 0)
    assert untouched.size and (dW[untouched] == 0).all()


def test_duplicate_entries_add_up():
    # A non-canonical CSR matrix (a column stored twice in a row) means the sum.
    X = sp.csr_matrix((np.array([1.0, 2.0]), np.array([3, 3]), np.array([0, 2])), shape=(1, 5))
    W = np.arange(10.0).reshape(5, 2)
    np.testing.assert_array_equal(kernels.csr_linear_forward(X, W, np.zeros(2)), [[18.0, 21.0]])


def test_csr_matrix_refuses_a_broken_structure():
    data = np.ones(2)
    with pytest.raises(ValueError, match="not a valid CSR"):
        CsrMatrix(data, np.array([0, 7], np.int32), np.array([0, 2], np.int64), 5)  # column 7
    with pytest.raises(ValueError, match="not a valid CSR"):
        CsrMatrix(data, np.array([0, 1], np.int32), np.array([0, 3], np.int64), 5)  # past nnz
    with pytest.raises(ValueError, match="not a valid CSR"):
        CsrMatrix(data, np.array([0, 1], np.int32), np.array([0, 2, 1], np.int64), 5)
    with pytest.raises(ValueError):
        CsrMatrix(data, np.array([0], np.int32), np.array([0, 2], np.int64), 5)  # short


def test_csr_matrix_rows_views_and_copies():
    X = sparse_data(40, 30, 0.2)
    C = Network([30, 4, 2], dtype="float64", seed=0)._check_X(X)
    assert isinstance(C, CsrMatrix) and C.shape == (40, 30) and C.nnz == X.nnz
    np.testing.assert_array_equal(C[5:17].to_scipy().toarray(), X[5:17].toarray())
    assert C[5:17].data is C.data                          # a view
    rows = np.array([9, 2, 2, 30])
    np.testing.assert_array_equal(C[rows].to_scipy().toarray(), X[rows].toarray())
    with pytest.raises(IndexError):
        C[np.array([40])]
    with pytest.raises(TypeError):
        C[::2]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_network_fit_on_sparse_equals_dense(dtype, optimizer):
    X = sparse_data()
    y = (np.asarray(X[:, :10].sum(axis=1)).ravel() > 0.6).astype(int) + \
        (np.asarray(X[:, 10:20].sum(axis=1)).ravel() > 0.6)
    kw = dict(epochs=4, batch_size=16, lr=0.05, optimizer=optimizer, verbose=0,
              validation_split=0.2, weight_decay=1e-3 if optimizer == "adam" else 0.0)
    if optimizer == "momentum":
        kw.update(optimizer="sgd", momentum=0.9)
    on_sparse, on_dense = (Network([120, 32, 3], dtype=dtype, seed=0, dropout=0.1)
                           for _ in range(2))
    h_sparse = on_sparse.fit(X, y, **kw)
    h_dense = on_dense.fit(X.toarray(), y, **kw)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(h_sparse.loss, h_dense.loss, **tol)
    for a, b in zip(on_sparse.weights + on_sparse.biases, on_dense.weights + on_dense.biases):
        np.testing.assert_allclose(a, b, **tol)
    for X_in in (X, X.tocsc(), sp.csr_array(X)):
        np.testing.assert_allclose(on_sparse.predict_proba(X_in),
                                   on_dense.predict_proba(X.toarray()), **tol)
    got, want = on_sparse.evaluate(X, y), on_dense.evaluate(X.toarray(), y)
    assert got["accuracy"] == want["accuracy"]
    np.testing.assert_allclose(got["loss"], want["loss"], **tol)
    _, dW_sparse, _ = on_sparse.gradients(X, y)
    _, dW_dense, _ = on_sparse.gradients(X.toarray(), y)
    np.testing.assert_allclose(dW_sparse[0], dW_dense[0], **tol)


def test_network_partial_fit_and_regression_on_sparse():
    X = sparse_data(200, 50, 0.1, seed=3)
    Y = np.stack([np.asarray(X.sum(axis=1)).ravel(), np.asarray(X[:, :5].sum(axis=1)).ravel()], 1)
    a, b = Network([50, 8, 2], "tanh", "identity", "float64", seed=1), \
        Network([50, 8, 2], "tanh", "identity", "float64", seed=1)
    for _ in range(3):
        a.partial_fit(X, Y, lr=0.01)
        b.partial_fit(X.toarray(), Y, lr=0.01)
    np.testing.assert_allclose(a.parameters, b.parameters, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.predict(X), b.predict(X.toarray()), rtol=1e-12)


def test_sparse_input_errors():
    net = Network([30, 4, 2], seed=0)
    X = sparse_data(10, 30, 0.3)
    bad = X.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.predict(bad)
    with pytest.raises(ValueError, match="29 features"):
        net.predict(sparse_data(10, 29, 0.3))
    with pytest.raises(ValueError, match="empty"):
        net.predict(sp.csr_matrix((0, 30)))
    with pytest.raises(TypeError, match="dense"):
        Network([30, 4, 1], output="identity", seed=0).fit(X, sp.csr_matrix(np.ones((10, 1))),
                                                            epochs=1, verbose=0)
    big = sp.csr_matrix(X, dtype=np.float64) * 1e300
    with pytest.raises(ValueError, match="out of range"):
        net.predict(big)                           # float32 network: 1e300 overflows
