"""Network layout: names and codes, flat-buffer offsets, weight initialisation.

Shared by cmlp.network (the C engine) and cmlp.reference (the NumPy twin), so
that both start from the same weights for the same seed.
"""
import numbers

import numpy as np

from cmlp._kernels import ACTIVATION_CODES, OUTPUT_CODES

# Name -> code of the C enums in _kernels.pxd.
ACTIVATIONS = {name: int(code) for name, code in ACTIVATION_CODES.items()}
OUTPUTS = {name: int(code) for name, code in OUTPUT_CODES.items()}
# Outputs that regress (float targets, no accuracy); the others classify.
REGRESSION_OUTPUTS = ("identity", "exp")
# Activations initialised with He (the ReLU family); the others get Glorot.
HE_INIT = ("relu", "leaky_relu", "gelu")
DTYPES = {"float32": np.float32, "float64": np.float64}

# scipy.linalg.cython_blas takes 32-bit Fortran integers for sizes.
BLAS_INT_MAX = 2**31 - 1


def check_architecture(sizes, activation, output, dtype):
    """Validate the constructor arguments of a network.

    Returns (sizes tuple, per-layer activation names, output, numpy dtype),
    where the activation list has one name per hidden layer.
    """
    # A list, tuple or 1-D array of integers: no strings, dicts or sets, and
    # no silent rounding of 784.9 or reading True as 1.
    if not isinstance(sizes, (list, tuple, np.ndarray)) or np.ndim(sizes) != 1 or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, (bool, np.bool_))
            for s in sizes):
        raise TypeError(f"sizes must be a list of integers, got {sizes!r}")
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes needs an input and an output width, got {sizes}")
    if min(sizes) < 1:
        raise ValueError(f"every layer size must be >= 1, got {sizes}")
    if max(sizes) > BLAS_INT_MAX:
        raise ValueError(f"layer sizes must be < 2**31 (32-bit BLAS), got {max(sizes)}")

    n_hidden = len(sizes) - 2
    if isinstance(activation, str):
        given, names = [activation], [activation] * n_hidden
    elif isinstance(activation, (list, tuple)) and all(isinstance(a, str) for a in activation):
        given = names = list(activation)
    else:
        raise TypeError(f"activation must be a name or a list of names, got {activation!r}")
    if len(names) != n_hidden:
        raise ValueError(f"{n_hidden} hidden layers need {n_hidden} activations, got {len(names)}")
    for name in given:
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; choose from {sorted(OUTPUTS)}")
    if output == "softmax" and sizes[-1] < 2:
        raise ValueError("a softmax output needs at least 2 classes")
    key = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if key not in DTYPES:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return sizes, names, output, np.dtype(DTYPES[key])


def check_dropout(dropout, n_hidden):
    """Per-hidden-layer dropout rates in [0, 1), from one rate or a list."""
    if isinstance(dropout, (list, tuple, np.ndarray)):
        rates = list(dropout)
        if len(rates) != n_hidden:
            raise ValueError(f"{n_hidden} hidden layers need {n_hidden} dropout rates, "
                             f"got {len(rates)}")
    else:
        rates = [dropout] * n_hidden
    out = []
    for rate in rates:
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)):
            raise TypeError(f"dropout rates must be numbers, got {rate!r}")
        if not 0 <= rate < 1:
            raise ValueError(f"dropout rates must lie in [0, 1), got {rate}")
        out.append(float(rate))
    return out


def offsets(sizes):
    """(w_offsets, b_offsets, n_params): per layer, W then b, back to back."""
    w_off, b_off, pos = [], [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w_off.append(pos)
        pos += n_in * n_out
        b_off.append(pos)
        pos += n_out
    return w_off, b_off, pos


def split_flat(flat, sizes):
    """(weights, biases): per layer, W (n_in, n_out) and b (n_out,) as views
    into the flat buffer laid out by `offsets` (parameters, gradients or
    optimizer state alike)."""
    w_off, b_off, _ = offsets(sizes)
    pairs = list(zip(sizes[:-1], sizes[1:]))
    weights = tuple(flat[w:w + i * o].reshape(i, o) for w, (i, o) in zip(w_off, pairs))
    biases = tuple(flat[b:b + o] for b, (_, o) in zip(b_off, pairs))
    return weights, biases


# Cache-line alignment of parameter-sized buffers: a 64-byte vector load
# that straddles two lines costs two (measured: one 784-128-64-10 float32
# row, 4.75 us from an aligned buffer, 5.85 us from NumPy's usual 16-byte
# one).
ALIGNMENT = 64


def aligned_zeros(n, dtype):
    """A zeroed 1-D array of n `dtype` values starting on a 64-byte boundary."""
    dtype = np.dtype(dtype)
    raw = np.zeros(n * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + n * dtype.itemsize].view(dtype)


def init_params(sizes, activations, seed, dtype):
    """A flat parameter vector, initialised from `seed`.

    He normal, N(0, 2 / n_in), for layers followed by relu, leaky_relu or
    gelu; Glorot uniform,
    U(+-sqrt(6 / (n_in + n_out))), for tanh, sigmoid, identity and the output
    layer. Biases start at zero. Draws are made in float64 and then cast, so
    the float32 and float64 networks of one seed start from the same weights.
    """
    rng = np.random.default_rng(init_seed(seed))
    w_off, b_off, n_params = offsets(sizes)
    flat = np.zeros(n_params, dtype=np.float64)
    following = list(activations) + ["output"]
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if following[l] in HE_INIT:
            W = rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_in, n_out))
        else:
            limit = np.sqrt(6.0 / (n_in + n_out))
            W = rng.uniform(-limit, limit, size=(n_in, n_out))
        flat[w_off[l]:w_off[l] + n_in * n_out] = W.ravel()
    params = aligned_zeros(n_params, dtype)
    params[:] = flat
    return params


def check_seed(seed):
    """None or an integer >= 0 (not a bool): what seeds every stream."""
    if seed is not None and (isinstance(seed, (bool, np.bool_))
                             or not isinstance(seed, numbers.Integral) or seed < 0):
        raise TypeError(f"seed must be None or an integer >= 0, got {seed!r}")
    return None if seed is None else int(seed)


def _seed_sequences(seed):
    # Child i of a SeedSequence does not depend on how many are spawned, so
    # adding a stream never changes the existing ones.
    return np.random.SeedSequence(seed).spawn(4)


def init_seed(seed):
    """The seed stream for the initial weights of a network seeded `seed`."""
    return _seed_sequences(seed)[0]


def shuffle_seed(seed):
    """The seed stream for the mini-batch order of a network seeded `seed`."""
    return _seed_sequences(seed)[1]


def split_seed(seed):
    """The seed stream for fit()'s validation_split of a network seeded `seed`."""
    return _seed_sequences(seed)[2]


def dropout_key(seed):
    """The 64-bit key of the dropout masks of a network seeded `seed`."""
    return int(_seed_sequences(seed)[3].generate_state(1, np.uint64)[0])
