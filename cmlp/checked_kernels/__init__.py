"""The C kernels of cmlp._kernels and cmlp._optim, checked, for Python.

Each function here has a NumPy twin of the same name and signature in
cmlp.reference; tests/test_kernels.py compares every pair. These wrappers
validate and allocate (the Python boundary), then run the C kernel without
the GIL. Inputs must be float32 or float64 arrays of one dtype; the result
keeps that dtype. Loss sums come back as Python floats.

One module a kind of kernel: ``_linear`` (dense, panel and sparse linear
layers), ``_elementwise`` (activations, dropout), ``_losses`` (output layers
and losses), ``_optimizers``. Each public wrapper calls an underscore one
that takes typed buffers, checks in O(1) that they fit, and runs the kernel;
both are importable from here (tests call the underscore ones directly).

Other Cython code should cimport the kernels themselves from cmlp._kernels.
"""
from cmlp.checked_kernels._elementwise import (
    _activation_backward,
    _activation_forward,
    _dropout_backward,
    _dropout_forward,
    dropout_backward,
    dropout_forward,
    dropout_seed,
    gelu_backward,
    gelu_forward,
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from cmlp.checked_kernels._linear import (
    _bias_gradient,
    _csr_linear_backward,
    _csr_linear_forward,
    _linear_backward,
    _linear_backward_input,
    _linear_backward_sgd,
    _linear_backward_sgd_next_forward,
    _linear_forward,
    _linear_forward_columns,
    _panel_linear,
    _weight_gradient_rows,
    bias_gradient,
    csr_linear_backward,
    csr_linear_forward,
    has_panel_linear,
    linear_backward,
    linear_backward_input,
    linear_backward_sgd,
    linear_backward_sgd_next_forward,
    linear_forward,
    linear_forward_columns,
    panel_linear,
    weight_gradient_rows,
)
from cmlp.checked_kernels._losses import (
    _exp_forward,
    _mse_backward,
    _mse_loss,
    _poisson_backward,
    _poisson_loss,
    _sigmoid_bce_backward,
    _sigmoid_bce_loss,
    _softmax_forward,
    _softmax_xent_backward,
    _softmax_xent_loss,
    exp_forward,
    mse_backward,
    mse_loss,
    poisson_backward,
    poisson_loss,
    sigmoid_bce_backward,
    sigmoid_bce_loss,
    softmax_forward,
    softmax_xent_backward,
    softmax_xent_loss,
)
from cmlp.checked_kernels._optimizers import (
    _adam_step_update,
    _adam_update,
    _l2_grad,
    _momentum_step_update,
    _momentum_update,
    _sgd_update,
    adam_step_update,
    adam_update,
    l2_grad,
    momentum_step_update,
    momentum_update,
    sgd_update,
)

__all__ = [
    "linear_forward", "panel_linear", "linear_forward_columns", "linear_backward",
    "linear_backward_input", "weight_gradient_rows", "bias_gradient", "linear_backward_sgd",
    "linear_backward_sgd_next_forward", "csr_linear_forward", "csr_linear_backward",
    "relu_forward", "relu_backward", "tanh_forward", "tanh_backward",
    "sigmoid_forward", "sigmoid_backward", "leaky_relu_forward", "leaky_relu_backward",
    "gelu_forward", "gelu_backward", "dropout_seed", "dropout_forward", "dropout_backward",
    "softmax_forward", "softmax_xent_loss", "softmax_xent_backward",
    "mse_loss", "mse_backward", "exp_forward", "poisson_loss", "poisson_backward",
    "sigmoid_bce_loss", "sigmoid_bce_backward", "sgd_update",
    "l2_grad", "momentum_update", "adam_update", "adam_step_update",
    "momentum_step_update",
]
