"""Issue 10, item 9: the underscore wrappers of cmlp.checked_kernels and the
engine's def entry points (cmlp._engine, cmlp._entry, cmlp._stepper, and bench/'s GEMM
floor) are private, but tests and benchmarks call them and they are reachable from
Python: buffers that do not fit are a ValueError, never a segfault or a
loop that cannot be interrupted."""
import os
import sys

import numpy as np
import pytest

import cmlp.checked_kernels as ck
from cmlp import Network, _engine, _entry
from cmlp._sparse import CsrMatrix
from cmlp._stepper import BatchStepper

F = np.float32
BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def z(*shape, dtype=F):
    return np.zeros(shape, dtype=dtype)


NET = Network([4, 8, 3], seed=0)
P, L = NET._parameters, NET._layout
WORK = L.work_per_row
I = np.int32


def csr(rows=2, cols=4, dtype=F):
    """An all-zero CSR matrix of rows x cols (one stored 0 per row)."""
    return CsrMatrix(np.zeros(rows, dtype), np.zeros(rows, I), np.arange(rows + 1), cols)


def stepper(batch=4, rows=10):
    return BatchStepper(L, P.copy(), z(P.size), z(rows, 4), np.zeros(rows, I), z(0, 3), z(0), batch)


def adam_without_state():
    s = stepper()
    s.optimizer = 3
    s.run(np.arange(10, dtype=np.intp), 0.1)


def empty_step_with(optimizer=0, hook=True, per_sample=False):
    s = stepper()
    s.optimizer = optimizer
    s.gradient_hook = (lambda g, w: None) if hook else None
    s.decay_per_sample, s.weight_decay = per_sample, (0.1 if per_sample else 0.0)
    s.empty_step(0.1)


ENGINE_CALLS = {
    "forward, short parameters": lambda: _entry.forward[float](P[:5], L, z(2, 4), z(2, 3)),
    "forward, wrong input width": lambda: _entry.forward[float](P, L, z(2, 7), z(2, 3)),
    "forward, short out": lambda: _entry.forward[float](P, L, z(200, 4), z(2, 3)),
    "forward, no rows": lambda: _entry.forward[float](P, L, z(0, 4), z(0, 3)),
    "forward, sparse X of the other dtype": lambda: _entry.forward[float](
        P, L, csr(dtype=np.float64), z(2, 3)),
    "forward, sparse X of the wrong width": lambda: _entry.forward[float](
        P, L, csr(cols=7), z(2, 3)),
    "evaluate, sparse X with too few labels": lambda: _entry.evaluate(
        P, L, csr(5), np.array([0, 1], I), z(0, 3), z(0)),
    "loss_and_gradients, sparse X, short workspace": lambda: _entry.loss_and_gradients(
        P, z(P.size), L, csr(500), np.zeros(500, I), z(0, 3), z(0), z(1, WORK)),
    "BatchStepper, sparse X, rows outside the data": lambda: BatchStepper(
        L, P.copy(), z(P.size), csr(10), np.zeros(10, I), z(0, 3), z(0), 4).run(
        np.array([0, 10], np.intp), 0.1),
    "evaluate, label out of range": lambda: _entry.evaluate(
        P, L, z(2, 4), np.array([0, 9], I), z(0, 3), z(0)),
    "evaluate, too few labels": lambda: _entry.evaluate(
        P, L, z(5, 4), np.array([0, 1], I), z(0, 3), z(0)),
    "evaluate, wrong weights": lambda: _entry.evaluate(
        P, L, z(2, 4), np.zeros(2, I), z(0, 3), z(7)),
    "loss_and_gradients, short workspace (used to hang)": lambda: _entry.loss_and_gradients(
        P, z(P.size), L, z(500, 4), np.zeros(500, I), z(0, 3), z(0), z(1, WORK)),
    "loss_and_gradients, short gradient buffer": lambda: _entry.loss_and_gradients(
        P, z(3), L, z(5, 4), np.zeros(5, I), z(0, 3), z(0), z(5, WORK)),
    "forward_array, short parameters": lambda: _entry.forward_array(P[:5], L, z(2, 4)),
    "forward_array, int32 parameters": lambda: _entry.forward_array(
        P.astype(np.int32), L, z(2, 4).astype(np.int32)),
    "forward_array, strided parameters": lambda: _entry.forward_array(
        np.repeat(P, 2)[::2], L, z(2, 4)),
    "NetLayout with offsets that lie": lambda: _engine.NetLayout(
        np.array([4, 8, 3], np.intp), np.array([0, 40], np.intp), np.array([32, 43], np.intp),
        np.array([1, 0], I), np.zeros(2), 0, 59),
    "NetLayout with an unknown activation": lambda: _engine.NetLayout(
        np.array([4, 8, 3], np.intp), np.array([0, 40], np.intp), np.array([32, 64], np.intp),
        np.array([77, 0], I), np.zeros(2), 0, 67),
    "BatchStepper, batch 0": lambda: stepper(batch=0),
    "BatchStepper, rows outside the data": lambda: stepper().run(
        np.array([0, 99], np.intp), 0.1),
    "BatchStepper, Adam without its state": adam_without_state,
    "BatchStepper.empty_step without a hook": lambda: empty_step_with(hook=False),
    "BatchStepper.empty_step, Adam without its state": lambda: empty_step_with(optimizer=3),
    "BatchStepper.empty_step, per-sample decay": lambda: empty_step_with(per_sample=True),
}


@pytest.mark.parametrize("call", ENGINE_CALLS.values(), ids=ENGINE_CALLS.keys())
def test_engine_entry_points_refuse_buffers_that_do_not_fit(call):
    with pytest.raises(ValueError):
        call()


def floor():
    """bench/'s GEMM floor module (compiled on first use, see bench/_floor.py)."""
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    import _floor
    return _floor.load()


FLOOR_CALLS = {
    "gemm_floor_epoch, batch 0 (used to hang)": lambda: floor().gemm_floor_epoch(
        P.copy(), L, z(10, 4), 0),
    "gemm_floor_epoch, wrong width": lambda: floor().gemm_floor_epoch(
        P.copy(), L, z(10, 5), 2),
    "gemm_floor_forward, no layers": lambda: floor().gemm_floor_forward(
        P.copy(), L, z(10, 4), 0),
    "gemm_floor_forward, more layers than the net": lambda: floor().gemm_floor_forward(
        P.copy(), L, z(10, 4), 3),
    "gemm_floor_forward, wrong width": lambda: floor().gemm_floor_forward(
        P.copy(), L, z(10, 5), 1),
}


@pytest.mark.needs_compiler
@pytest.mark.parametrize("call", FLOOR_CALLS.values(), ids=FLOOR_CALLS.keys())
def test_gemm_floor_refuses_buffers_that_do_not_fit(call):
    with pytest.raises(ValueError):
        call()


KERNEL_CALLS = {
    "_linear_forward": lambda: ck._linear_forward(z(2, 3), z(5, 4), z(4, 3), z(3)),
    "_linear_forward, short bias": lambda: ck._linear_forward(z(5, 3), z(5, 4), z(4, 3), z(2)),
    "_panel_linear": lambda: ck._panel_linear(z(2, 3, dtype=np.float32), z(5, 4, dtype=np.float32),
                                              z(4, 3, dtype=np.float32), z(3, dtype=np.float32)),
    "_panel_linear, short bias": lambda: ck._panel_linear(
        z(5, 3, dtype=np.float32), z(5, 4, dtype=np.float32), z(4, 3, dtype=np.float32),
        z(2, dtype=np.float32)),
    "_linear_backward": lambda: ck._linear_backward(z(5, 4), z(4, 3), z(3), z(9, 3), z(5, 4),
                                                    z(4, 3)),
    "_linear_backward_sgd": lambda: ck._linear_backward_sgd(z(5, 4), z(4, 3), z(3), z(5, 3),
                                                            z(5, 9), 0.1),
    "_linear_backward_sgd_next_forward": lambda: ck._linear_backward_sgd_next_forward(
        z(1, 3), z(4, 3), z(3), z(1, 3), z(1, 9), 0.1, z(1, 4)),
    "_linear_backward_sgd_next_forward, two rows": lambda: ck._linear_backward_sgd_next_forward(
        z(1, 3), z(4, 3), z(3), z(2, 3), z(2, 4), 0.1, z(1, 4)),
    "_linear_forward_columns": lambda: ck._linear_forward_columns(z(5, 3), z(5, 4), z(4, 3),
                                                                  z(3), 1, 4),
    "_linear_forward_columns, empty range": lambda: ck._linear_forward_columns(
        z(5, 3), z(5, 4), z(4, 3), z(3), 2, 2),
    "_linear_forward_columns, inputs past W": lambda: ck._linear_forward_columns(
        z(5, 3), z(5, 4), z(4, 3), z(3), 0, 3, 2, 5),
    "_linear_backward_input": lambda: ck._linear_backward_input(z(5, 4), z(5, 3), z(4, 3), 2,
                                                                5),
    "_linear_backward_input, short da": lambda: ck._linear_backward_input(
        z(2, 4), z(5, 3), z(4, 3), 0, 4),
    "_weight_gradient_rows": lambda: ck._weight_gradient_rows(z(3, 3), z(5, 3), z(5, 4), 1.0,
                                                              0.0, 2, 0, 3),
    "_weight_gradient_rows, short a_prev": lambda: ck._weight_gradient_rows(
        z(3, 3), z(5, 3), z(4, 4), 1.0, 0.0, 0, 0, 3),
    "_weight_gradient_rows, columns past dz": lambda: ck._weight_gradient_rows(
        z(3, 3), z(5, 3), z(5, 3), 1.0, 0.0, 0, 1, 4),
    "_bias_gradient": lambda: ck._bias_gradient(z(4), z(5, 3), 1.0, 0.0, 0, 3),
    "_bias_gradient, empty columns": lambda: ck._bias_gradient(z(3), z(5, 3), 1.0, 0.0, 2, 2),
    "_activation_forward, unknown code": lambda: ck._activation_forward(99, z(3), z(3)),
    "_activation_forward, short output": lambda: ck._activation_forward(1, z(3), z(300)),
    "_activation_backward": lambda: ck._activation_backward(1, z(3), z(300), z(3)),
    "_dropout_forward, rate": lambda: ck._dropout_forward(z(3), z(3), z(3), 1.5, 1),
    "_dropout_forward, short mask": lambda: ck._dropout_forward(z(3), z(1), z(3), 0.5, 1),
    "_dropout_backward": lambda: ck._dropout_backward(z(3), z(1), z(3)),
    "_softmax_forward": lambda: ck._softmax_forward(z(1, 3), z(4, 3)),
    "_softmax_xent_loss, label out of range": lambda: ck._softmax_xent_loss(
        z(3, 2), np.array([0, 5, 1], I), z(0)),
    "_softmax_xent_backward, short labels": lambda: ck._softmax_xent_backward(
        z(3, 2), z(3, 2), np.array([0], I), z(0)),
    "_mse_loss": lambda: ck._mse_loss(z(3, 2), z(30, 2), z(0)),
    "_mse_backward": lambda: ck._mse_backward(z(3, 2), z(3, 2), z(3, 2), z(8)),
    "_csr_linear_forward": lambda: ck._csr_linear_forward(z(3, 3), csr(3, 4), z(5, 3), z(3)),
    "_csr_linear_forward, other dtype": lambda: ck._csr_linear_forward(
        z(2, 3), csr(2, 4, np.float64), z(4, 3), z(3)),
    "_csr_linear_backward": lambda: ck._csr_linear_backward(z(5, 3), z(3), z(2, 3), csr(2, 4)),
    "_exp_forward": lambda: ck._exp_forward(z(3), z(4)),
    "_poisson_loss": lambda: ck._poisson_loss(z(3, 2), z(3, 5), z(0)),
    "_poisson_backward": lambda: ck._poisson_backward(z(1, 2), z(3, 2), z(3, 2), z(0)),
    "_sigmoid_bce_loss": lambda: ck._sigmoid_bce_loss(z(3, 2), z(3, 5), z(0)),
    "_sigmoid_bce_backward": lambda: ck._sigmoid_bce_backward(z(1, 2), z(3, 2), z(3, 2), z(0)),
    "_sgd_update": lambda: ck._sgd_update(z(3), z(300), 0.1),
    "_l2_grad": lambda: ck._l2_grad(z(300), z(3), 0.1),
    "_momentum_update": lambda: ck._momentum_update(z(3), z(1), z(3), 0.1, 0.9, False),
    "_adam_update": lambda: ck._adam_update(z(3), z(3), z(3), z(2), 1.0, 0.9, 0.9, 1e-8, 1),
    "_adam_update, step 0": lambda: ck._adam_update(z(3), z(3), z(3), z(3), 1.0, 0.9, 0.9,
                                                    1e-8, 0),
    "_momentum_step_update": lambda: ck._momentum_step_update(z(3), z(1), z(3), 0.1, 0.9, True),
    "_adam_step_update": lambda: ck._adam_step_update(z(3), z(3), z(2), z(3), 1.0, 0.9, 0.9,
                                                      1e-8, 1),
    "_adam_step_update, step 0": lambda: ck._adam_step_update(z(3), z(3), z(3), z(3), 1.0, 0.9,
                                                              0.9, 1e-8, 0),
}


@pytest.mark.parametrize("call", KERNEL_CALLS.values(), ids=KERNEL_CALLS.keys())
def test_kernel_wrappers_refuse_buffers_that_do_not_fit(call):
    with pytest.raises(ValueError):
        call()


def test_every_underscore_wrapper_is_covered():
    wrappers = {name for name in dir(ck) if name.startswith("_") and not name.startswith("__")
                and callable(getattr(ck, name)) and name[1:] in ck.__all__}
    covered = {name.split(",")[0] for name in KERNEL_CALLS}
    assert wrappers <= covered, wrappers - covered


def test_fitting_buffers_still_work():
    a = np.random.default_rng(0).standard_normal((5, 4)).astype(F)
    W, b = np.ones((4, 3), F), np.arange(3, dtype=F)
    out = z(5, 3)
    ck._linear_forward(out, a, W, b)
    np.testing.assert_allclose(out, a @ W + b, rtol=1e-6)
    probabilities = z(5, 3)
    _entry.forward[float](P, L, a, probabilities)
    np.testing.assert_allclose(probabilities, NET.predict_proba(a))
