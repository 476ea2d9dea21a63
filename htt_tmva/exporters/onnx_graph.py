"""The neutral model description (:mod:`htt_tmva.exporters.spec`) as an ONNX graph.

Built node by node with ``onnx.helper`` (no converter): one float32 input ``variables``
``[N, n_variables]`` (the raw variables in the config's order; the preprocessing is the first
nodes) and one float32 output ``[N, n_classes]``. The arithmetic follows the Python path:

* networks of htt-tmva: preprocessing in double (the quantile map as a binary search and a
  linear interpolation, as ``np.interp``), then the layers in float32;
* XGBoost trees: ``ai.onnx.ml`` ``TreeEnsembleRegressor`` (one target per class, float32
  ``x < threshold`` splits, missing values the default way) plus the base margins, then
  ``Softmax``;
* TMVA weight files (``"precision": "float64"``): inputs and each transformation's output as
  float32 (Normalize in float; Decorrelation, PCA and Gauss/Uniform in double, the inverse
  error function refined by Newton steps on a quadrature ``erf``), then the method in double.

Only the ops and activations listed here are written; anything else is refused by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from htt_tmva.errors import ExportError

OPSET = 17  # ai.onnx: every op used here exists there (ROOT's SOFIE and CMSSW read it)
ML_OPSET = 3  # ai.onnx.ml: TreeEnsembleRegressor with double thresholds
INPUT = "variables"

#: activations the writer knows, each an exact ONNX expression of what the Python path does
ACTIVATIONS = (
    "linear",
    "relu",
    "tmva_relu",
    "sigmoid",
    "tanh",
    "tmva_fast_tanh",
    "radial",
    "gauss",
    "abs",
    "softsign",
    "elu",
    "selu",
    "softplus",
    "exponential",
    "swish",
    "silu",
    "leaky_relu",
    "softmax",
)
_TMVA_OUTPUTS = ("tmva_adaboost", "tmva_grad", "tmva_multiclass")
_F32, _F64 = np.float32, np.float64


class _Graph:
    """Nodes and constants under unique names."""

    def __init__(self):
        from onnx import TensorProto, helper, numpy_helper

        self.helper, self.numpy_helper, self.tensor_proto = helper, numpy_helper, TensorProto
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, values, dtype, stem: str = "c") -> str:
        name = self._name(stem)
        self.initializers.append(
            self.numpy_helper.from_array(np.asarray(values, dtype=dtype), name)
        )
        return name

    def op(self, kind: str, *inputs: str, domain: str = "", output: str = "", **attrs) -> str:
        out = output or self._name(kind.lower())
        self.nodes.append(
            self.helper.make_node(kind, list(inputs), [out], domain=domain or None, **attrs)
        )
        return out

    def cast(self, x: str, dtype) -> str:
        to = self.tensor_proto.DOUBLE if dtype is _F64 else self.tensor_proto.FLOAT
        return self.op("Cast", x, to=to)


# ---------------------------------------------------------------------------------- networks


def _activation(g: _Graph, x: str, name: str, dtype, alpha=None) -> str:
    """``name`` applied to ``x`` (of ``dtype``); refused unless in :data:`ACTIVATIONS`."""
    if name not in ACTIVATIONS:
        raise ExportError(
            f"activation '{name}' cannot be written as ONNX; supported: {', '.join(ACTIVATIONS)}"
        )

    def c(v):
        return g.const(v, dtype)

    if name == "linear":
        return x
    if name == "relu":
        return g.op("Relu", x)
    if name == "tmva_relu":  # v > 0 ? v : 0 (NaN -> 0)
        return g.op("Where", g.op("Greater", x, c(0.0)), x, c(0.0))
    if name == "sigmoid":
        return g.op("Sigmoid", x)
    if name == "tanh":
        return g.op("Tanh", x)
    if name == "tmva_fast_tanh":
        return _fast_tanh(g, x)
    if name in ("radial", "gauss"):  # exp(-v^2 / 2), exp(-v^2)
        factor = -0.5 if name == "radial" else -1.0
        return g.op("Exp", g.op("Mul", g.op("Mul", x, x), c(factor)))
    if name == "abs":
        return g.op("Abs", x)
    if name == "exponential":
        return g.op("Exp", x)
    if name in ("swish", "silu"):
        return g.op("Mul", x, g.op("Sigmoid", x))
    if name == "softmax":
        return g.op("Softmax", x, axis=-1)
    alpha = float({"elu": 1.0, "leaky_relu": 0.3}.get(name, 0.0) if alpha is None else alpha)
    if dtype is _F32:  # the ONNX ops (onnxruntime has them for float only)
        native = {"softsign": "Softsign", "elu": "Elu", "selu": "Selu", "softplus": "Softplus"}
        if name == "leaky_relu":
            return g.op("LeakyRelu", x, alpha=alpha)
        return g.op(native[name], x, **({"alpha": alpha} if name == "elu" else {}))
    return _elementary(g, x, name, alpha)


def _elementary(g: _Graph, x: str, name: str, alpha: float) -> str:
    """Activations of doubles from elementary ops, as :mod:`htt_tmva.exporters.cpp_tmva`."""

    def c(v):
        return g.const(v, _F64)

    positive = g.op("Greater", x, c(0.0))
    if name == "softsign":  # v / (1 + |v|)
        return g.op("Div", x, g.op("Add", c(1.0), g.op("Abs", x)))
    if name == "leaky_relu":
        return g.op("Where", positive, x, g.op("Mul", x, c(alpha)))
    if name == "softplus":  # max(v, 0) + log(1 + exp(-|v|))
        tail = g.op("Log", g.op("Add", c(1.0), g.op("Exp", g.op("Neg", g.op("Abs", x)))))
        return g.op("Add", g.op("Where", positive, x, c(0.0)), tail)
    if name == "selu":
        alpha, scale = 1.6732632423543772, 1.0507009873554805
    negative = g.op("Mul", g.op("Sub", g.op("Exp", x), c(1.0)), c(alpha))
    result = g.op("Where", positive, x, negative)
    return g.op("Mul", result, c(scale)) if name == "selu" else result


def _fast_tanh(g: _Graph, x: str) -> str:
    """TMVA's TActivationTanh::fast_tanh on a double ``x``: a [7/6] rational approximation in
    float (as :mod:`htt_tmva.exporters.cpp_tmva`), +-1 beyond 4.97."""

    def f(v):
        return g.const(v, _F32)

    arg2 = g.cast(g.op("Mul", x, x), _F32)
    poly = g.op("Add", f(17325.0), g.op("Mul", arg2, g.op("Add", f(378.0), arg2)))
    poly = g.op("Add", f(135135.0), g.op("Mul", arg2, poly))
    a = g.cast(g.op("Mul", x, g.cast(poly, _F64)), _F32)
    b = g.op("Add", f(3150.0), g.op("Mul", arg2, f(28.0)))
    b = g.op("Add", f(135135.0), g.op("Mul", arg2, g.op("Add", f(62370.0), g.op("Mul", arg2, b))))
    ratio = g.cast(g.op("Div", a, b), _F64)
    one = g.const(1.0, _F64)
    high = g.op("Greater", x, g.const(4.97, _F64))
    low = g.op("Less", x, g.const(-4.97, _F64))
    return g.op("Where", high, one, g.op("Where", low, g.op("Neg", one), ratio))


def _network_ops(g: _Graph, x: str, width: int, ops: list, dtype) -> tuple[str, int]:
    """The ``ops`` of a network on ``x`` (``[N, width]`` of ``dtype``)."""
    for k, op in enumerate(ops, start=1):
        kind = op["op"]
        if kind == "dense":
            weights = np.asarray(op["weights"], dtype=dtype)
            if weights.ndim != 2 or weights.shape[0] != width:
                raise ExportError(f"layer {k} expects {weights.shape[0]} inputs, not {width}")
            bias = np.asarray(op["bias"], dtype=dtype)
            x = g.op("Gemm", x, g.const(weights, dtype, "w"), g.const(bias, dtype, "b"))
            width = weights.shape[1]
            x = _activation(g, x, op["activation"], dtype, op.get("alpha"))
        elif kind == "activation":
            x = _activation(g, x, op["activation"], dtype, op.get("alpha"))
        elif kind == "affine":
            values = [op.get("offset", [0.0] * width), op["scale"], op["shift"]]
            if any(len(v) != width for v in values):
                raise ExportError(f"op {k} (affine) does not have {width} values")
            if "offset" in op:
                x = g.op("Sub", x, g.const(values[0], dtype))
            x = g.op("Add", g.op("Mul", x, g.const(values[1], dtype)), g.const(values[2], dtype))
        elif kind == "round_float32":
            x = g.cast(g.cast(x, _F32), dtype)
        elif kind == "tmva_softmax":
            x = _tmva_softmax(g, x)
        elif kind == "take":
            units = [int(u) for u in op["units"]]
            if any(not 0 <= u < width for u in units):
                raise ExportError(f"op {k} takes units {units} of {width}")
            x = g.op("Gather", x, g.const(units, np.int64), axis=1)
            width = len(units)
        else:
            raise ExportError(f"network op '{kind}' cannot be written as ONNX")
    return x, width


def _tmva_softmax(g: _Graph, o: str) -> str:
    """TMVA's ``p_i = 1 / (1 + sum_{j != i} exp(o_j - o_i))``: the sum over all j of
    ``exp(o_j - o_i)`` includes the 1."""
    rows = g.op("Unsqueeze", o, g.const([1], np.int64))  # [N, 1, n]: o_j
    columns = g.op("Unsqueeze", o, g.const([2], np.int64))  # [N, n, 1]: o_i
    exps = g.op("Exp", g.op("Sub", rows, columns))
    return g.op("Reciprocal", g.op("ReduceSum", exps, g.const([2], np.int64), keepdims=0))


# ----------------------------------------------------------------------------- preprocessing


def _preprocessing(g: _Graph, x: str, pre: dict[str, Any], nv: int) -> str:
    """The htt-tmva preprocessing of the raw float32 ``x``, in double, as float32."""
    xd = g.cast(x, _F64)
    if pre["kind"] == "affine":
        offset, scale = (np.asarray(pre[k], _F64) for k in ("offset", "scale"))
        if offset.size != nv or scale.size != nv:
            raise ExportError(f"preprocessing of {offset.size} variables for {nv}")
        return g.cast(
            g.op("Div", g.op("Sub", xd, g.const(offset, _F64)), g.const(scale, _F64)), _F32
        )
    if pre["kind"] == "quantile":
        return g.cast(_quantile(g, xd, pre, nv), _F32)
    raise ExportError(f"preprocessing kind '{pre['kind']}' cannot be written as ONNX")


def _quantile(g: _Graph, x: str, pre: dict[str, Any], nv: int) -> str:
    """``np.interp(x_j, quantiles_j, levels)`` per variable: a binary search for the segment
    ``q[k] <= x < q[k+1]`` (unrolled, O(log n) nodes and memory per event), then the linear
    interpolation; below the first and from the last quantile on, the end levels."""
    levels = np.asarray(pre["levels"], _F64)
    table = np.asarray(pre["quantiles"], _F64)
    n = levels.size
    if table.shape != (nv, n) or n < 2:
        raise ExportError(f"quantile table of shape {table.shape} for {nv} variables x {n}")
    k = _count_at_most(g, x, table[:, 1 : n - 1])  # inner quantiles <= x: the segment
    k = g.op("Min", k, g.const(n - 2, np.int64))
    full = g.const(table.ravel(), _F64)
    starts = g.const(np.arange(nv) * n, np.int64)
    lo_index = g.op("Add", k, starts)
    lo = g.op("Gather", full, lo_index)
    hi = g.op("Gather", full, g.op("Add", lo_index, g.const(1, np.int64)))
    level_lo = g.op("Gather", g.const(levels, _F64), k)
    level_hi = g.op("Gather", g.const(levels, _F64), g.op("Add", k, g.const(1, np.int64)))
    slope = g.op("Div", g.op("Sub", level_hi, level_lo), g.op("Sub", hi, lo))
    value = g.op("Add", g.op("Mul", slope, g.op("Sub", x, lo)), level_lo)
    first, last = g.const(table[:, 0], _F64), g.const(table[:, -1], _F64)
    value = g.op("Where", g.op("GreaterOrEqual", x, last), g.const(levels[-1], _F64), value)
    return g.op("Where", g.op("Less", x, first), g.const(levels[0], _F64), value)


def _count_at_most(g: _Graph, x: str, rows: np.ndarray) -> str:
    """Per column j of ``x`` (``[N, m]``, double) how many values of the sorted ``rows[j]``
    are <= x (``np.searchsorted(rows[j], x, "right")``; NaN: 0; +inf may count beyond the
    row's length, up to the next power of two): a binary search unrolled into
    ``log2(length)`` steps, O(1) memory per event."""
    m, length = rows.shape
    size = 1 << int(np.ceil(np.log2(length + 1)))
    padded = np.full((m, size), np.inf)
    padded[:, :length] = rows
    flat = g.const(padded.ravel(), _F64)
    starts = g.const(np.arange(m) * size, np.int64)
    zero = g.helper.make_tensor("zero", g.tensor_proto.INT64, [1], [0])
    k = g.op("ConstantOfShape", g.op("Shape", x), value=zero)
    step = size // 2
    while step >= 1:
        candidate = g.op("Add", k, g.const(step, np.int64))
        probe = g.op("Add", g.op("Add", candidate, g.const(-1, np.int64)), starts)
        k = g.op("Where", g.op("LessOrEqual", g.op("Gather", flat, probe), x), candidate, k)
        step //= 2
    return k


def _columns(g: _Graph, t: str, y: str, columns: list[int], nv: int) -> str:
    """``t`` with its ``columns`` replaced by those of ``y`` (in order)."""
    both = g.op("Concat", t, y, axis=1)
    index = list(range(nv))
    for j, c in enumerate(columns):
        index[c] = nv + j
    return g.op("Gather", both, g.const(index, np.int64), axis=1)


def _tmva_transformations(g: _Graph, t: str, transformations: list, nv: int) -> str:
    """TMVA's transformations on the float32 ``t`` in chain order, each result float32."""
    for k, op in enumerate(transformations):
        columns = [int(c) for c in op["columns"]]
        if any(not 0 <= c < nv for c in columns):
            raise ExportError(f"transformation {k} acts on columns {columns} of {nv} variables")
        picked = g.op("Gather", t, g.const(columns, np.int64), axis=1)
        if op["op"] == "normalize":  # (v - low) * scale * 2 - 1, in float
            y = g.op("Sub", picked, g.const(op["low"], _F32))
            y = g.op("Mul", g.op("Mul", y, g.const(op["scale"], _F32)), g.const(2.0, _F32))
            y = g.op("Sub", y, g.const(1.0, _F32))
        elif op["op"] == "linear":  # (x - offset) M in double
            matrix = np.asarray(op["matrix"], _F64)
            y = g.op("Sub", g.cast(picked, _F64), g.const(op["offset"], _F64))
            y = g.cast(g.op("MatMul", y, g.const(matrix, _F64)), _F32)
        elif op["op"] == "gauss":
            if len(op["pdfs"]) != len(columns):
                raise ExportError(f"Gauss transformation {k}: {len(op['pdfs'])} PDFs")
            parts = [
                _gauss(g, g.op("Gather", picked, g.const([j], np.int64), axis=1), pdf, op)
                for j, pdf in enumerate(op["pdfs"])
            ]
            y = g.cast(parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=1), _F32)
        else:
            raise ExportError(f"TMVA transformation '{op['op']}' cannot be written as ONNX")
        t = _columns(g, t, y, columns, nv)
    return t


def _clamp(g: _Graph, x: str, low: float, high: float) -> str:
    """``np.clip`` (NaN stays NaN)."""
    x = g.op("Where", g.op("Less", x, g.const(low, _F64)), g.const(low, _F64), x)
    return g.op("Where", g.op("Greater", x, g.const(high, _F64)), g.const(high, _F64), x)


def _gauss(g: _Graph, column: str, pdf: dict[str, Any], op: dict[str, Any]) -> str:
    """TMVA's Gauss (or Uniform) transformation of one float32 column ``[N, 1]``, in double:
    the cumulative PDF (as :class:`htt_tmva.tmva.transforms.Gauss`), clamped, then
    ``sqrt(2) erfinv(2c - 1)``."""
    x = g.cast(column, _F64)
    eps = g.const(1.0e-12, _F64)
    if pdf["kind"] == "histogram":
        edges, contents = np.asarray(pdf["edges"], _F64), np.asarray(pdf["contents"], _F64)
        n = contents.size
        found = _count_at_most(g, x, edges.reshape(1, -1))
        found = g.op("Where", g.op("IsNaN", x), g.const(n + 1, np.int64), found)  # numpy's NaN
        found = g.op("Max", g.op("Min", found, g.const(n, np.int64)), g.const(1, np.int64))
        value = g.op("Gather", g.const(contents, _F64), g.op("Sub", found, g.const(1, np.int64)))
    elif pdf["kind"] == "fine":
        fine = np.asarray(pdf["values"], _F64)
        n, x_min, x_max = fine.size, float(pdf["x_min"]), float(pdf["x_max"])
        width = (x_max - x_min) / n

        def c(v):
            return g.const(v, _F64)

        raw = g.op(
            "Floor",
            g.op("Div", g.op("Mul", c(float(n)), g.op("Sub", x, c(x_min))), c(x_max - x_min)),
        )
        bin_ = g.op(
            "Where", g.op("GreaterOrEqual", x, c(x_max)), c(n + 1.0), g.op("Add", raw, c(1.0))
        )
        bin_ = g.op("Where", g.op("Less", x, c(x_min)), c(0.0), bin_)
        bin_ = _clamp(g, g.op("Where", g.op("IsNaN", bin_), c(1.0), bin_), 1.0, float(n))

        def centre_of(b):
            return g.op(
                "Add",
                g.op("Add", c(x_min), g.op("Mul", g.op("Sub", b, c(1.0)), c(width))),
                c(0.5 * width),
            )

        centre = centre_of(bin_)
        up = g.op("And", g.op("Greater", x, centre), g.op("Not", g.op("Equal", bin_, c(float(n)))))
        up = g.op("Or", up, g.op("Equal", bin_, c(1.0)))
        nxt = g.op("Where", up, g.op("Add", bin_, c(1.0)), g.op("Sub", bin_, c(1.0)))
        table = g.const(fine, _F64)

        def at(b):
            return g.op(
                "Gather", table, g.op("Cast", g.op("Sub", b, c(1.0)), to=g.tensor_proto.INT64)
            )

        y0, y1 = at(bin_), at(nxt)
        slope = g.op("Div", g.op("Sub", y0, y1), g.op("Sub", centre, centre_of(nxt)))
        value = g.op("Add", y0, g.op("Mul", g.op("Sub", x, centre), slope))
    else:
        raise ExportError(f"Gauss PDF kind '{pdf['kind']}' cannot be written as ONNX")
    value = g.op("Where", g.op("Less", value, eps), eps, value)
    cumulant = _clamp(g, value, 0.0 + 10e-10, 1.0 - 10e-10)
    if op.get("flat"):
        return cumulant
    arg = g.op("Sub", g.op("Mul", cumulant, g.const(2.0, _F64)), g.const(1.0, _F64))
    arg = _clamp(g, arg, -0.99999999, 0.99999999)
    return g.op("Mul", _erfinv(g, arg), g.const(1.414213562, _F64))


_ERFINV_CENTRAL = (
    2.81022636e-08,
    3.43273939e-07,
    -3.5233877e-06,
    -4.39150654e-06,
    0.00021858087,
    -0.00125372503,
    -0.00417768164,
    0.246640727,
    1.50140941,
)
_ERFINV_TAIL = (
    -0.000200214257,
    0.000100950558,
    0.00134934322,
    -0.00367342844,
    0.00573950773,
    -0.0076224613,
    0.00943887047,
    1.00167406,
    2.83297682,
)


def _erfinv(g: _Graph, y: str) -> str:
    """The inverse error function of ``y`` (``[N, 1]``, double), as the C++ export computes
    it: Giles' approximation refined by two Newton steps on :func:`_erf`."""

    def horner(coefficients, w):
        p = g.const(coefficients[0], _F64)
        for a in coefficients[1:]:
            p = g.op("Add", g.op("Mul", p, w), g.const(a, _F64))
        return p

    one = g.const(1.0, _F64)
    w = g.op("Neg", g.op("Log", g.op("Mul", g.op("Sub", one, y), g.op("Add", one, y))))
    central = horner(_ERFINV_CENTRAL, g.op("Sub", w, g.const(2.5, _F64)))
    tail_w = g.op("Sub", g.op("Sqrt", g.op("Max", w, g.const(5.0, _F64))), g.const(3.0, _F64))
    p = g.op("Where", g.op("Less", w, g.const(5.0, _F64)), central, horner(_ERFINV_TAIL, tail_w))
    x = g.op("Mul", p, y)
    for _ in range(2):  # Newton: d erf / dx = 2 / sqrt(pi) exp(-x^2)
        slope = g.op(
            "Mul", g.op("Exp", g.op("Neg", g.op("Mul", x, x))), g.const(1.1283791670955126, _F64)
        )
        x = g.op("Sub", x, g.op("Div", g.op("Sub", _erf(g, x), y), slope))
    return x


def _erf(g: _Graph, x: str, nodes: int = 24) -> str:
    """erf of ``x`` (``[N, 1]``, double) as ``2/sqrt(pi)`` times the integral of
    ``exp(-t^2)`` from 0 to x by Gauss-Legendre quadrature (onnxruntime's ``Erf`` is float
    only): within 2e-15 of the true value for ``|x| <= 4.2``, the range the clipped
    arguments reach."""
    t, w = np.polynomial.legendre.leggauss(nodes)
    points = g.op("Mul", x, g.const(0.5 * (1.0 + t), _F64))  # [N, nodes]
    values = g.op("Exp", g.op("Neg", g.op("Mul", points, points)))
    integral = g.op("MatMul", values, g.const((w / np.sqrt(np.pi)).reshape(-1, 1), _F64))
    return g.op("Mul", integral, x)


# --------------------------------------------------------------------------------------- trees


def _forest(g: _Graph, x: str, spec: dict[str, Any], nc: int, dtype) -> str:
    """The per-class sums of the trees plus the base margins (``[N, nc]`` of ``dtype``):
    ``x < threshold`` goes left (the true branch), NaN the ``default_left`` way."""
    attrs: dict[str, list] = {
        k: []
        for k in (
            "nodes_treeids",
            "nodes_nodeids",
            "nodes_featureids",
            "nodes_modes",
            "nodes_truenodeids",
            "nodes_falsenodeids",
            "nodes_missing_value_tracks_true",
            "target_treeids",
            "target_nodeids",
            "target_ids",
        )
    }
    values, weights = [], []
    for t, tree in enumerate(spec["trees"]):
        klass = int(tree["class"])
        if not 0 <= klass < nc:
            raise ExportError(f"tree {t} belongs to class {klass} of {nc}")
        for node, (left, right) in enumerate(zip(tree["left"], tree["right"])):
            leaf = int(left) < 0
            attrs["nodes_treeids"].append(t)
            attrs["nodes_nodeids"].append(node)
            attrs["nodes_featureids"].append(0 if leaf else int(tree["feature"][node]))
            attrs["nodes_modes"].append("LEAF" if leaf else "BRANCH_LT")
            attrs["nodes_truenodeids"].append(0 if leaf else int(left))
            attrs["nodes_falsenodeids"].append(0 if leaf else int(right))
            attrs["nodes_missing_value_tracks_true"].append(
                0 if leaf else int(tree["default_left"][node])
            )
            values.append(0.0 if leaf else tree["threshold"][node])
            if leaf:
                attrs["target_treeids"].append(t)
                attrs["target_nodeids"].append(node)
                attrs["target_ids"].append(klass)
                weights.append(tree["threshold"][node])
    base = np.asarray(spec.get("base_margin") or [0.0] * nc, dtype)
    if base.size != nc:
        raise ExportError(f"{base.size} base margins for {nc} classes")
    tensors = {
        "nodes_values_as_tensor": np.asarray(values, dtype),
        "target_weights_as_tensor": np.asarray(weights, dtype),
        "base_values_as_tensor": base,
    }
    if dtype is _F32:  # the float attributes (older readers know only these)
        tensors = {
            "nodes_values": [float(v) for v in tensors["nodes_values_as_tensor"]],
            "target_weights": [float(v) for v in tensors["target_weights_as_tensor"]],
            "base_values": [float(v) for v in base],
        }
    else:
        tensors = {k: g.numpy_helper.from_array(v) for k, v in tensors.items()}
    sums = g.op(
        "TreeEnsembleRegressor",
        x,
        domain="ai.onnx.ml",
        n_targets=nc,
        aggregate_function="SUM",
        post_transform="NONE",
        **attrs,
        **tensors,
    )
    return sums if dtype is _F32 else g.cast(sums, dtype)  # its output is float32


def _tmva_trees_output(g: _Graph, s: str, spec: dict[str, Any]) -> str:
    output = spec.get("output")
    if output == "tmva_adaboost":
        return g.op("Div", s, g.const(float(spec["norm"]), _F64))
    if output == "tmva_grad":  # 2 / (1 + exp(-2 s)) - 1
        e = g.op("Exp", g.op("Mul", s, g.const(-2.0, _F64)))
        ratio = g.op("Div", g.const(2.0, _F64), g.op("Add", g.const(1.0, _F64), e))
        return g.op("Sub", ratio, g.const(1.0, _F64))
    if output == "tmva_multiclass":
        return _tmva_softmax(g, s)
    raise ExportError(f"TMVA trees output '{output}' cannot be written as ONNX")


# --------------------------------------------------------------------------------------- model


def onnx_graph(spec: dict[str, Any], output: str, graph_name: str):
    """The ``GraphProto`` of ``spec``: input ``variables``, output ``output``."""
    nv, nc = len(spec["variables"]), len(spec["classes"])
    g = _Graph()
    tmva = spec.get("precision") == "float64"
    if tmva:
        pre = spec.get("preprocessing") or {"kind": "tmva", "transformations": []}
        if pre.get("kind") != "tmva":
            raise ExportError(f"preprocessing kind '{pre.get('kind')}' in a TMVA spec")
        t = _tmva_transformations(g, INPUT, pre["transformations"], nv)
        if spec["kind"] == "network":
            result, width = _network_ops(g, g.cast(t, _F64), nv, spec["ops"], _F64)
        elif spec["kind"] == "trees":
            sums = _forest(g, g.cast(t, _F64), spec, _n_out(spec), _F64)
            result = _tmva_trees_output(g, sums, spec)
            width = _n_out(spec)
        else:
            raise ExportError(f"model kind '{spec['kind']}' cannot be written as ONNX")
        result = g.cast(result, _F32)
    elif spec["kind"] == "network":
        z = _preprocessing(g, INPUT, spec["preprocessing"], nv)
        result, width = _network_ops(g, z, nv, spec["ops"], _F32)
    elif spec["kind"] == "trees":
        if spec.get("output", "softmax") != "softmax":
            raise ExportError(f"trees output '{spec.get('output')}' cannot be written as ONNX")
        result = g.op("Softmax", _forest(g, INPUT, spec, nc, _F32), axis=-1)
        width = nc
    else:
        raise ExportError(f"model kind '{spec['kind']}' cannot be written as ONNX")
    if width != nc:
        raise ExportError(f"the model gives {width} outputs for {nc} classes")
    g.op("Identity", result, output=output)
    h, proto = g.helper, g.tensor_proto
    return h.make_graph(
        g.nodes,
        graph_name,
        [h.make_tensor_value_info(INPUT, proto.FLOAT, ["N", nv])],
        [h.make_tensor_value_info(output, proto.FLOAT, ["N", nc])],
        initializer=g.initializers,
    )


def _n_out(spec: dict[str, Any]) -> int:
    """Outputs of TMVA trees: one per class of a multiclass job, else one."""
    return len(spec["classes"]) if spec.get("output") == "tmva_multiclass" else 1
