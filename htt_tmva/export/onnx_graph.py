"""The neutral model description (:mod:`htt_tmva.export.spec`) as an ONNX graph.

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

Only the ops and activations listed here are written; anything else is refused by name. The
TMVA parts are in :mod:`htt_tmva.tmva.onnx_ops`, the node builder in ``onnx_nodes``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from htt_tmva.errors import ExportError
from htt_tmva.onnx_nodes import F32, F64, Graph, count_at_most
from htt_tmva.tmva.onnx_ops import tmva_softmax, tmva_transformations, tmva_trees_output

OPSET = 17  # ai.onnx (onnxruntime >= 1.13, as in CMSSW, reads it)
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


# ---------------------------------------------------------------------------------- networks


def _activation(g: Graph, x: str, name: str, dtype, alpha=None) -> str:
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
    if dtype is F32:  # the ONNX ops (onnxruntime has them for float only)
        native = {"softsign": "Softsign", "elu": "Elu", "selu": "Selu", "softplus": "Softplus"}
        if name == "leaky_relu":
            return g.op("LeakyRelu", x, alpha=alpha)
        return g.op(native[name], x, **({"alpha": alpha} if name == "elu" else {}))
    return _elementary(g, x, name, alpha)


def _elementary(g: Graph, x: str, name: str, alpha: float) -> str:
    """Activations of doubles from elementary ops, as :mod:`htt_tmva.tmva.cpp`."""

    def c(v):
        return g.const(v, F64)

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


def _fast_tanh(g: Graph, x: str) -> str:
    """TMVA's TActivationTanh::fast_tanh on a double ``x``: a [7/6] rational approximation in
    float (as :mod:`htt_tmva.tmva.cpp`), +-1 beyond 4.97."""

    def f(v):
        return g.const(v, F32)

    arg2 = g.cast(g.op("Mul", x, x), F32)
    poly = g.op("Add", f(17325.0), g.op("Mul", arg2, g.op("Add", f(378.0), arg2)))
    poly = g.op("Add", f(135135.0), g.op("Mul", arg2, poly))
    a = g.cast(g.op("Mul", x, g.cast(poly, F64)), F32)
    b = g.op("Add", f(3150.0), g.op("Mul", arg2, f(28.0)))
    b = g.op("Add", f(135135.0), g.op("Mul", arg2, g.op("Add", f(62370.0), g.op("Mul", arg2, b))))
    ratio = g.cast(g.op("Div", a, b), F64)
    one = g.const(1.0, F64)
    high = g.op("Greater", x, g.const(4.97, F64))
    low = g.op("Less", x, g.const(-4.97, F64))
    return g.op("Where", high, one, g.op("Where", low, g.op("Neg", one), ratio))


def _network_ops(g: Graph, x: str, width: int, ops: list, dtype) -> tuple[str, int]:
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
            x = g.cast(g.cast(x, F32), dtype)
        elif kind == "tmva_softmax":
            x = tmva_softmax(g, x)
        elif kind == "take":
            units = [int(u) for u in op["units"]]
            if any(not 0 <= u < width for u in units):
                raise ExportError(f"op {k} takes units {units} of {width}")
            x = g.op("Gather", x, g.const(units, np.int64), axis=1)
            width = len(units)
        else:
            raise ExportError(f"network op '{kind}' cannot be written as ONNX")
    return x, width


# ----------------------------------------------------------------------------- preprocessing


def _preprocessing(g: Graph, x: str, pre: dict[str, Any], nv: int) -> str:
    """The htt-tmva preprocessing of the raw float32 ``x``, in double, as float32."""
    xd = g.cast(x, F64)
    if pre["kind"] == "affine":
        offset, scale = (np.asarray(pre[k], F64) for k in ("offset", "scale"))
        if offset.size != nv or scale.size != nv:
            raise ExportError(f"preprocessing of {offset.size} variables for {nv}")
        return g.cast(g.op("Div", g.op("Sub", xd, g.const(offset, F64)), g.const(scale, F64)), F32)
    if pre["kind"] == "quantile":
        return g.cast(_quantile(g, xd, pre, nv), F32)
    raise ExportError(f"preprocessing kind '{pre['kind']}' cannot be written as ONNX")


def _quantile(g: Graph, x: str, pre: dict[str, Any], nv: int) -> str:
    """``np.interp(x_j, quantiles_j, levels)`` per variable: a binary search for the segment
    ``q[k] <= x < q[k+1]`` (unrolled, O(log n) nodes and memory per event), then the linear
    interpolation; below the first and from the last quantile on, the end levels."""
    levels = np.asarray(pre["levels"], F64)
    table = np.asarray(pre["quantiles"], F64)
    n = levels.size
    if table.shape != (nv, n) or n < 2:
        raise ExportError(f"quantile table of shape {table.shape} for {nv} variables x {n}")
    k = count_at_most(g, x, table[:, 1 : n - 1])  # inner quantiles <= x: the segment
    k = g.op("Min", k, g.const(n - 2, np.int64))
    full = g.const(table.ravel(), F64)
    starts = g.const(np.arange(nv) * n, np.int64)
    lo_index = g.op("Add", k, starts)
    lo = g.op("Gather", full, lo_index)
    hi = g.op("Gather", full, g.op("Add", lo_index, g.const(1, np.int64)))
    level_lo = g.op("Gather", g.const(levels, F64), k)
    level_hi = g.op("Gather", g.const(levels, F64), g.op("Add", k, g.const(1, np.int64)))
    slope = g.op("Div", g.op("Sub", level_hi, level_lo), g.op("Sub", hi, lo))
    value = g.op("Add", g.op("Mul", slope, g.op("Sub", x, lo)), level_lo)
    first, last = g.const(table[:, 0], F64), g.const(table[:, -1], F64)
    value = g.op("Where", g.op("GreaterOrEqual", x, last), g.const(levels[-1], F64), value)
    return g.op("Where", g.op("Less", x, first), g.const(levels[0], F64), value)


# --------------------------------------------------------------------------------------- trees


def _forest(g: Graph, x: str, spec: dict[str, Any], nc: int, dtype) -> str:
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
    if dtype is F32:  # the float attributes (older readers know only these)
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
    return sums if dtype is F32 else g.cast(sums, dtype)  # its output is float32


# --------------------------------------------------------------------------------------- model


def onnx_graph(spec: dict[str, Any], output: str, graph_name: str):
    """The ``GraphProto`` of ``spec``: input ``variables``, output ``output``."""
    nv, nc = len(spec["variables"]), len(spec["classes"])
    g = Graph()
    tmva = spec.get("precision") == "float64"
    if tmva:
        pre = spec.get("preprocessing") or {"kind": "tmva", "transformations": []}
        if pre.get("kind") != "tmva":
            raise ExportError(f"preprocessing kind '{pre.get('kind')}' in a TMVA spec")
        t = tmva_transformations(g, INPUT, pre["transformations"], nv)
        if spec["kind"] == "network":
            result, width = _network_ops(g, g.cast(t, F64), nv, spec["ops"], F64)
        elif spec["kind"] == "trees":
            sums = _forest(g, g.cast(t, F64), spec, _n_out(spec), F64)
            result = tmva_trees_output(g, sums, spec)
            width = _n_out(spec)
        else:
            raise ExportError(f"model kind '{spec['kind']}' cannot be written as ONNX")
        result = g.cast(result, F32)
    elif spec["kind"] == "network":
        z = _preprocessing(g, INPUT, spec["preprocessing"], nv)
        result, width = _network_ops(g, z, nv, spec["ops"], F32)
    elif spec["kind"] == "trees":
        if spec.get("output", "softmax") != "softmax":
            raise ExportError(f"trees output '{spec.get('output')}' cannot be written as ONNX")
        result = g.op("Softmax", _forest(g, INPUT, spec, nc, F32), axis=-1)
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
