"""ONNX export: a cmlp network as a standard ONNX graph.

    net.to_onnx("model.onnx")                 # or: cmlp export model.npz -o model.onnx

Design
------
* One `Gemm` per layer (X @ W + b, W stored as cmlp keeps it, (n_in, n_out)),
  then the activation with standard operators (opset 13): Relu, Tanh,
  Sigmoid, nothing for identity, leaky ReLU as Max(z, 0.01 z), and exact
  GELU as z (1 + erf(z / sqrt 2)) / 2.
* float32 networks export float32 graphs and float64 ones float64, so ONNX
  Runtime reproduces predict_proba to float32/float64 rounding. ONNX
  Runtime has no float64 Erf (nor LeakyRelu), hence Max for leaky ReLU and,
  in float64, erf from W. J. Cody's rational approximations (the ones libm
  and SciPy use; error < 1e-15), spelled in Mul/Add/Div/Exp/Where.
* The output is what `forward` returns: Softmax over axis 1 for a softmax
  network (class probabilities, what `predict_proba` gives), Sigmoid for a
  sigmoid one, the raw outputs for identity. It is named "probabilities"
  (or "outputs" for identity); the input is "X", with a symbolic batch
  dimension.
* Needs the `onnx` package (``pip install "cmlp[onnx]"``) to write; the
  exported file runs anywhere ONNX runs, without Python.
"""
from __future__ import annotations

import os

import numpy as np

OPSET = 13
LEAKY_SLOPE = 0.01      # as cmlp._kernels: LEAKY_SLOPE_PER_MILLE / 1000

# W. J. Cody, "Rational Chebyshev approximations for the error function"
# (Math. Comp. 1969), as in his CALERF: erf on |x| <= 0.46875, erfc on
# (0.46875, 4] and on (4, inf).
_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
      3.20937758913846947e03, 1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
      2.84423683343917062e03)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
      2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
      2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
      1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
      3.43936767414372164e03, 1.23033935480374942e03)
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
      1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1,
      6.05183413124413191e-2, 2.33520497626869185e-3)
_ONE_OVER_SQRT_PI = 5.6418958354775628695e-1


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ImportError('ONNX export needs the onnx package: pip install "cmlp[onnx]"') \
            from None
    return onnx, helper, numpy_helper


class _Graph:
    """Nodes and initializers, with fresh names for intermediate values."""

    def __init__(self, dtype):
        self.onnx, self.helper, self.numpy_helper = _onnx()
        self.dtype = np.dtype(dtype)
        self.nodes, self.initializers, self._constants = [], [], {}

    def op(self, kind, *inputs, out=None, **attributes):
        out = out or f"t{len(self.nodes)}"
        self.nodes.append(self.helper.make_node(kind, list(inputs), [out], **attributes))
        return out

    def constant(self, value, name=None):
        """A tensor initializer in the graph dtype (scalars are shared)."""
        array = np.asarray(value, dtype=self.dtype)
        if name is None:
            if array.ndim == 0 and float(array) in self._constants:
                return self._constants[float(array)]
            name = f"c{len(self.initializers)}"
            if array.ndim == 0:
                self._constants[float(array)] = name
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def polynomial(self, x, coefficients, leading):
        """Cody's loop: (...((leading x + c0) x + c1) x ...) x, over the
        coefficients given."""
        acc = self.op("Mul", x, self.constant(leading)) if leading is not None else x
        for c in coefficients:
            acc = self.op("Mul", self.op("Add", acc, self.constant(c)), x)
        return acc

    def one_plus_erf(self, x):
        """1 + erf(x), without the cancellation of 1 + (-1 + tiny) for x << 0."""
        if self.dtype == np.float32:                 # ONNX Runtime has float Erf
            return self.op("Add", self.op("Erf", x), self.constant(1.0))
        y = self.op("Abs", x)
        ysq = self.op("Mul", y, y)
        # |x| <= 0.46875: erf(x) = x P(x^2) / Q(x^2)
        num = self.polynomial(ysq, _A[:3], _A[4])
        den = self.polynomial(ysq, _B[:3], None)
        small = self.op("Div", self.op("Mul", x, self.op("Add", num, self.constant(_A[3]))),
                        self.op("Add", den, self.constant(_B[3])))
        # 0.46875 < |x| <= 4: erfc(|x|) = exp(-x^2) R(|x|)
        num = self.polynomial(y, _C[:7], _C[8])
        den = self.polynomial(y, _D[:7], None)
        middle = self.op("Div", self.op("Add", num, self.constant(_C[7])),
                         self.op("Add", den, self.constant(_D[7])))
        # |x| > 4: erfc(|x|) = exp(-x^2) (1/sqrt(pi) - S(1/x^2) / x^2) / |x|
        inv = self.op("Div", self.constant(1.0), ysq)
        num = self.polynomial(inv, _P[:4], _P[5])
        den = self.polynomial(inv, _Q[:4], None)
        series = self.op("Div", self.op("Mul", inv, self.op("Add", num, self.constant(_P[4]))),
                         self.op("Add", den, self.constant(_Q[4])))
        large = self.op("Div", self.op("Sub", self.constant(_ONE_OVER_SQRT_PI), series), y)
        tail = self.op("Where", self.op("LessOrEqual", y, self.constant(4.0)), middle, large)
        # exp(-y^2) as exp(-s^2) exp(-(y - s)(y + s)), s = y rounded down to
        # 1/16: Cody's split, which keeps the exponent's rounding error small.
        s = self.op("Div", self.op("Floor", self.op("Mul", y, self.constant(16.0))),
                    self.constant(16.0))
        rest = self.op("Mul", self.op("Sub", y, s), self.op("Add", y, s))
        decay = self.op("Mul", self.op("Exp", self.op("Neg", self.op("Mul", s, s))),
                        self.op("Exp", self.op("Neg", rest)))
        erfc = self.op("Mul", decay, tail)
        # 1 + erf(x) = erfc(|x|) for x < 0, 2 - erfc(|x|) for x > 0.
        big = self.op("Where", self.op("Less", x, self.constant(0.0)), erfc,
                      self.op("Sub", self.constant(2.0), erfc))
        return self.op("Where", self.op("LessOrEqual", y, self.constant(0.46875)),
                       self.op("Add", small, self.constant(1.0)), big)

    def activation(self, name, z):
        if name == "identity":
            return z
        if name == "relu":
            return self.op("Relu", z)
        if name == "leaky_relu":          # = z for z > 0, 0.01 z otherwise
            return self.op("Max", z, self.op("Mul", z, self.constant(LEAKY_SLOPE)))
        if name == "tanh":
            return self.op("Tanh", z)
        if name == "sigmoid":
            return self.op("Sigmoid", z)
        if name == "gelu":                # z (1 + erf(z / sqrt 2)) / 2
            scaled = self.op("Div", z, self.constant(np.sqrt(2.0)))
            return self.op("Mul", self.op("Mul", z, self.one_plus_erf(scaled)),
                           self.constant(0.5))
        raise ValueError(f"no ONNX form for activation {name!r}")


def to_model(net):
    """The network as an onnx.ModelProto (checked with onnx.checker)."""
    g = _Graph(net.dtype)
    onnx, helper = g.onnx, g.helper
    tensor_type = onnx.TensorProto.FLOAT if net.dtype == np.float32 else onnx.TensorProto.DOUBLE
    current, last = "X", len(net.weights) - 1
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        z = g.op("Gemm", current, g.constant(W, f"W{l}"), g.constant(b, f"b{l}"), out=f"z{l}")
        current = g.activation(net.activations[l], z) if l < last else z
    output = "outputs" if net.output in ("identity", "exp") else "probabilities"
    final = {"softmax": ("Softmax", {"axis": 1}), "sigmoid": ("Sigmoid", {}),
             "identity": ("Identity", {}), "exp": ("Exp", {})}[net.output]
    g.op(final[0], current, out=output, **final[1])
    graph = helper.make_graph(
        g.nodes, "cmlp",
        [helper.make_tensor_value_info("X", tensor_type, ["batch", net.sizes[0]])],
        [helper.make_tensor_value_info(output, tensor_type, ["batch", net.sizes[-1]])],
        g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="cmlp", doc_string=repr(net))
    model.ir_version = 7              # read by every ONNX Runtime since 1.10
    onnx.checker.check_model(model)
    return model


def export(net, path) -> None:
    """Write the network's ONNX graph to `path` (see Network.to_onnx)."""
    model = to_model(net)
    with open(os.fspath(path), "wb") as fh:
        fh.write(model.SerializeToString())
