"""C++ for the specs of TMVA weight files (:mod:`htt_tmva.tmva.spec`).

The same function shape as every exported model (``predict(const std::array<double,
n_variables>&) -> std::array<float, n_classes>``), computed as :mod:`htt_tmva.tmva` computes
it: inputs rounded to float, the transformations on float values (Normalize in float
arithmetic, the linear and Gauss ones in double, each result stored as float), then the
method in double and the result stored as float. Thread-safe: constants and locals only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from htt_tmva.cpp_text import (
    PREDICT,
    cpp_comment,
    cpp_doubles,
    cpp_special,
    node_forest,
    node_walk,
    tree_depth,
)
from htt_tmva.cpp_text import cpp_strings as _strings
from htt_tmva.errors import ExportError

TMVA_HELPERS = r"""
#ifndef HTT_TMVA_EXPORT_TMVA_HELPERS
#define HTT_TMVA_EXPORT_TMVA_HELPERS
namespace htt_tmva_export_tmva {
// y = x W + b in double; W row-major [n_in][n_out].
inline void dense(const double* x, std::size_t n_in, const double* w, const double* b,
                  std::size_t n_out, double* y) {
  for (std::size_t j = 0; j < n_out; ++j) {
    double sum = 0.0;
    for (std::size_t i = 0; i < n_in; ++i) sum += x[i] * w[i * n_out + j];
    y[j] = sum + b[j];
  }
}
inline void softmax(double* x, std::size_t n) {
  double top = x[0];
  for (std::size_t i = 1; i < n; ++i) top = x[i] > top ? x[i] : top;
  double sum = 0.0;
  for (std::size_t i = 0; i < n; ++i) { x[i] = std::exp(x[i] - top); sum += x[i]; }
  for (std::size_t i = 0; i < n; ++i) x[i] /= sum;
}
// TMVA's multiclass normalisation: p_i = 1 / (1 + sum_{j != i} exp(o_j - o_i)).
inline void tmva_softmax(const double* o, double* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    double norm = 0.0;
    for (std::size_t j = 0; j < n; ++j)
      if (j != i) norm += std::exp(o[j] - o[i]);
    p[i] = 1.0 / (1.0 + norm);
  }
}
// TActivationTanh::fast_tanh: a [7/6] rational approximation in float, +-1 beyond 4.97.
inline double fast_tanh(double arg) {
  if (arg > 4.97) return 1.0;
  if (arg < -4.97) return -1.0;
  const float arg2 = static_cast<float>(arg * arg);
  const float a =
      static_cast<float>(arg * (135135.0f + arg2 * (17325.0f + arg2 * (378.0f + arg2))));
  const float b = 135135.0f + arg2 * (62370.0f + arg2 * (3150.0f + arg2 * 28.0f));
  return static_cast<double>(a / b);
}
// The inverse error function: Giles' approximation refined by two Newton steps on std::erf.
inline double erfinv(double y) {
  if (!(y > -1.0 && y < 1.0)) {
    if (y == 1.0) return std::numeric_limits<double>::infinity();
    if (y == -1.0) return -std::numeric_limits<double>::infinity();
    return std::numeric_limits<double>::quiet_NaN();
  }
  double w = -std::log((1.0 - y) * (1.0 + y)), p;
  if (w < 5.0) {
    w -= 2.5;
    p = 2.81022636e-08;
    p = 3.43273939e-07 + p * w; p = -3.5233877e-06 + p * w; p = -4.39150654e-06 + p * w;
    p = 0.00021858087 + p * w; p = -0.00125372503 + p * w; p = -0.00417768164 + p * w;
    p = 0.246640727 + p * w; p = 1.50140941 + p * w;
  } else {
    w = std::sqrt(w) - 3.0;
    p = -0.000200214257;
    p = 0.000100950558 + p * w; p = 0.00134934322 + p * w; p = -0.00367342844 + p * w;
    p = 0.00573950773 + p * w; p = -0.0076224613 + p * w; p = 0.00943887047 + p * w;
    p = 1.00167406 + p * w; p = 2.83297682 + p * w;
  }
  double x = p * y;
  for (int i = 0; i < 2; ++i) x -= (std::erf(x) - y) / (1.1283791670955126 * std::exp(-x * x));
  return x;
}
// The cumulative PDF of a Gauss transformation (TMVA::PDF::GetVal): linear interpolation
// between the centres of its fine (spline-sampled) histogram of n bins, at least 1e-12.
inline double cumulative_fine(double x, double x_min, double x_max, const float* fine, long n) {
  const double width = (x_max - x_min) / n;
  double b = x < x_min ? 0.0
             : (x >= x_max ? n + 1.0 : 1.0 + std::floor(n * (x - x_min) / (x_max - x_min)));
  if (b != b) b = 1.0;
  b = b < 1.0 ? 1.0 : (b > n ? static_cast<double>(n) : b);
  const long bin = static_cast<long>(b);
  const double centre = x_min + (bin - 1) * width + 0.5 * width;
  const bool up = (x > centre && bin != n) || bin == 1;
  const long next = up ? bin + 1 : bin - 1;
  const double next_centre = x_min + (next - 1) * width + 0.5 * width;
  const double y0 = fine[bin - 1], y1 = fine[next - 1];
  const double value = y0 + (x - centre) * (y0 - y1) / (centre - next_centre);
  return value < 1.0e-12 ? 1.0e-12 : value;
}
// The same for a PDF read as its histogram (InterpolMethod 0): the bin content.
inline double cumulative_histogram(double x, const double* edges, const double* contents, long n) {
  long bin = static_cast<long>(std::upper_bound(edges, edges + n + 1, x) - edges);
  bin = bin < 1 ? 1 : (bin > n ? n : bin);
  const double value = contents[bin - 1];
  return value < 1.0e-12 ? 1.0e-12 : value;
}
// VariableGaussTransform: the cumulant clamped to [1e-9, 1-1e-9], then (Gauss)
// sqrt(2) erfinv(2c - 1) with the argument clipped to +-0.99999999, or (Uniform) itself.
inline double gauss_output(double c, bool flat) {
  c = c < 0.0 + 10e-10 ? 0.0 + 10e-10 : (c > 1.0 - 10e-10 ? 1.0 - 10e-10 : c);
  if (flat) return c;
  double arg = 2.0 * c - 1.0;
  arg = arg < -0.99999999 ? -0.99999999 : (arg > 0.99999999 ? 0.99999999 : arg);
  return 1.414213562 * erfinv(arg);
}
}  // namespace htt_tmva_export_tmva
#endif
"""

_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805

# activation -> C++ expression of the double ``v`` (as the Python reader computes it)
_ACTIVATIONS = {
    "linear": None,
    "relu": "v < 0.0 ? 0.0 : v",
    "tmva_relu": "v > 0.0 ? v : 0.0",
    "sigmoid": "1.0 / (1.0 + std::exp(-v))",
    "tanh": "std::tanh(v)",
    "tmva_fast_tanh": "htt_tmva_export_tmva::fast_tanh(v)",
    "radial": "std::exp(-v * v / 2.0)",
    "gauss": "std::exp(-v * v)",
    "abs": "std::abs(v)",
    "softsign": "v / (1.0 + std::abs(v))",
    "elu": "v > 0.0 ? v : {alpha} * (std::exp(v) - 1.0)",
    "selu": f"{_SELU_SCALE!r} * (v > 0.0 ? v : {_SELU_ALPHA!r} * (std::exp(v) - 1.0))",
    "softplus": "(v > 0.0 ? v : 0.0) + std::log1p(std::exp(-std::abs(v)))",
    "exponential": "std::exp(v)",
    "swish": "v * (1.0 / (1.0 + std::exp(-v)))",
    "silu": "v * (1.0 / (1.0 + std::exp(-v)))",
    "hard_sigmoid": "std::min(std::max(0.2 * v + 0.5, 0.0), 1.0)",
    "leaky_relu": "v > 0.0 ? v : {alpha} * v",
    "softmax": None,  # over the layer, below
}
ACTIVATIONS = tuple(_ACTIVATIONS)
OUTPUTS = ("tmva_adaboost", "tmva_grad", "tmva_multiclass")


def is_tmva_spec(spec: dict[str, Any]) -> bool:
    """A spec computed in double after TMVA's transformations (a TMVA weight file)."""
    return spec.get("precision") == "float64"


def _doubles(values) -> str:
    return cpp_doubles(values)


def _floats32(values) -> str:
    """float32 values as their shortest exact literals."""
    out = []
    for v in np.asarray(values, dtype=np.float32):
        if np.isfinite(v):
            text = str(v)
            out.append(text + ("f" if ("." in text or "e" in text) else ".f"))
        else:
            out.append(cpp_special(v))
    return ", ".join(out)


def _ints(values) -> str:
    return ", ".join(str(int(v)) for v in values) or "0"


def tmva_model(spec: dict[str, Any], nv: int, nc: int) -> list[str]:
    """Declarations and ``predict`` of a TMVA spec (inside the model's namespace)."""
    data: list[str] = []
    body = [
        "  // TMVA's events hold Float_t: inputs and every transformation's output are floats",
        "  float t[n_variables];",
        "  for (std::size_t i = 0; i < n_variables; ++i) t[i] = static_cast<float>(input[i]);",
    ]
    pre = spec.get("preprocessing") or {"kind": "tmva", "transformations": []}
    if pre.get("kind") != "tmva":
        raise ExportError(f"preprocessing kind '{pre.get('kind')}' in a TMVA (float64) spec")
    for k, op in enumerate(pre["transformations"]):
        _transformation(op, k, nv, data, body)
    if spec["kind"] == "network":
        result = _network(spec, nv, data, body)
    elif spec["kind"] == "trees":
        result = _trees(spec, nv, nc, data, body)
    else:
        raise ExportError(f"unknown model kind '{spec['kind']}'")
    width = int(result.split("[")[1].rstrip("]")) if "[" in result else nc
    if width != nc:
        raise ExportError(f"the model gives {width} outputs for {nc} classes")
    name = result.split("[")[0]
    info = spec.get("tmva", {})
    meta = []
    if info:
        job = list(info.get("classes", [])) or [""]
        internal = list(info.get("internal_names", [])) or [""]
        two_class = str(info.get("analysis", "")).lower() != "multiclass"
        meta = [
            "// a TMVA weight file: the inputs are the values of the variables' expressions",
            f"inline constexpr const char* tmva_method = {_strings([info.get('method', '')])};",
            "/// true: one output, TMVA's EvaluateMVA response (not a probability)",
            f"inline constexpr bool tmva_two_class = {'true' if two_class else 'false'};",
            f"inline constexpr const char* tmva_classes[{len(job)}] = {{{_strings(job)}}};",
            f"inline constexpr const char* tmva_internal_names[{len(internal)}] = "
            f"{{{_strings(internal)}}};",
        ]
    return [
        *meta,
        "namespace detail {",
        *data,
        "}  // namespace detail",
        *PREDICT,
        *body,
        "  std::array<float, n_classes> out;",
        f"  for (std::size_t c = 0; c < n_classes; ++c) out[c] = static_cast<float>({name}[c]);",
        "  return out;",
        "}",
    ]


def _transformation(op: dict[str, Any], k: int, nv: int, data: list, body: list) -> None:
    columns = [int(c) for c in op["columns"]]
    m = len(columns)
    if any(not 0 <= c < nv for c in columns):
        raise ExportError(f"transformation {k} acts on columns {columns} of {nv} variables")
    p = f"x{k}_"
    data.append(f"inline constexpr int {p}col[{max(m, 1)}] = {{{_ints(columns)}}};")
    if op["op"] == "normalize":
        data.append(f"inline constexpr float {p}low[{m}] = {{{_floats32(op['low'])}}};")
        data.append(f"inline constexpr float {p}scale[{m}] = {{{_floats32(op['scale'])}}};")
        body += [
            f"  // Normalize (class block {op.get('class', '?')}): 2 (x - min) / (max - min) - 1",
            f"  for (std::size_t j = 0; j < {m}; ++j) {{",
            f"    float& v = t[detail::{p}col[j]];",
            f"    v = (v - detail::{p}low[j]) * detail::{p}scale[j] * 2.f - 1.f;",
            "  }",
        ]
    elif op["op"] == "linear":
        matrix = np.asarray(op["matrix"], dtype=np.float64)
        if matrix.shape != (m, m):
            raise ExportError(f"linear transformation {k}: matrix {matrix.shape} for {m} columns")
        data.append(f"inline constexpr double {p}offset[{m}] = {{{_doubles(op['offset'])}}};")
        data.append(f"inline constexpr double {p}matrix[{m * m}] = {{{_doubles(matrix.ravel())}}};")
        body += [
            f"  {{  // {cpp_comment(op.get('name', 'linear'))} (class block "
            f"{cpp_comment(op.get('class', '?'))}): "
            "y = (x - offset) M",
            f"    double y[{m}];",
            f"    for (std::size_t i = 0; i < {m}; ++i) {{",
            "      double sum = 0.0;",
            f"      for (std::size_t j = 0; j < {m}; ++j)",
            f"        sum += (static_cast<double>(t[detail::{p}col[j]]) - detail::{p}offset[j]) *",
            f"               detail::{p}matrix[j * {m} + i];",
            "      y[i] = sum;",
            "    }",
            f"    for (std::size_t i = 0; i < {m}; ++i) t[detail::{p}col[i]] = "
            "static_cast<float>(y[i]);",
            "  }",
        ]
    elif op["op"] == "gauss":
        if len(op["pdfs"]) != m:
            raise ExportError(f"Gauss transformation {k}: {len(op['pdfs'])} PDFs, {m} columns")
        flat = "true" if op.get("flat") else "false"
        body.append(f"  // {'Uniform' if op.get('flat') else 'Gauss'} (cumulative PDFs)")
        for j, (column, pdf) in enumerate(zip(columns, op["pdfs"])):
            if pdf["kind"] == "fine":
                n = len(pdf["values"])
                data.append(
                    f"inline constexpr float {p}pdf{j}[{n}] = {{{_floats32(pdf['values'])}}};"
                )
                value = (
                    f"htt_tmva_export_tmva::cumulative_fine(static_cast<double>(t[{column}]), "
                    f"{_doubles([pdf['x_min']])}, {_doubles([pdf['x_max']])}, detail::{p}pdf{j}, "
                    f"{n})"
                )
            elif pdf["kind"] == "histogram":
                n = len(pdf["contents"])
                data.append(
                    f"inline constexpr double {p}edges{j}[{n + 1}] = {{{_doubles(pdf['edges'])}}};"
                )
                contents = _doubles(pdf["contents"])
                data.append(f"inline constexpr double {p}contents{j}[{n}] = {{{contents}}};")
                value = (
                    "htt_tmva_export_tmva::cumulative_histogram(static_cast<double>("
                    f"t[{column}]), detail::{p}edges{j}, detail::{p}contents{j}, {n})"
                )
            else:
                raise ExportError(f"Gauss PDF kind '{pdf['kind']}' cannot be exported")
            body.append(
                f"  t[{column}] = static_cast<float>(htt_tmva_export_tmva::gauss_output({value}, "
                f"{flat}));"
            )
    else:
        raise ExportError(f"unknown TMVA transformation op '{op['op']}'")


def _activation_lines(array: str, n: int, activation: str, alpha=None) -> list[str]:
    if activation not in _ACTIVATIONS:
        raise ExportError(
            f"activation '{activation}' cannot be exported; supported: {', '.join(ACTIVATIONS)}"
        )
    if activation == "softmax":
        return [f"  htt_tmva_export_tmva::softmax({array}, {n});"]
    expression = _ACTIVATIONS[activation]
    if expression is None:
        return []
    expression = expression.replace("{alpha}", repr(float(1.0 if alpha is None else alpha)))
    return [
        f"  for (std::size_t i = 0; i < {n}; ++i) {{",
        f"    const double v = {array}[i];",
        f"    {array}[i] = {expression};",
        "  }",
    ]


def _network(spec: dict[str, Any], nv: int, data: list, body: list) -> str:
    body += [f"  double a0[{nv}];", f"  for (std::size_t i = 0; i < {nv}; ++i) a0[i] = t[i];"]
    width, current = nv, "a0"
    for k, op in enumerate(spec["ops"], start=1):
        kind = op["op"]
        if kind == "dense":
            n_in, n_out = len(op["weights"]), len(op["bias"])
            if n_in != width:
                raise ExportError(f"layer {k} expects {n_in} inputs, the previous gives {width}")
            weights = _doubles(np.ravel(op["weights"]))
            data.append(f"inline constexpr double w{k}[{n_in * n_out}] = {{{weights}}};")
            data.append(f"inline constexpr double b{k}[{n_out}] = {{{_doubles(op['bias'])}}};")
            body.append(f"  double a{k}[{n_out}];")
            body.append(
                f"  htt_tmva_export_tmva::dense({current}, {n_in}, detail::w{k}, detail::b{k}, "
                f"{n_out}, a{k});"
            )
            width, current = n_out, f"a{k}"
            body += _activation_lines(current, width, op["activation"], op.get("alpha"))
        elif kind == "activation":
            body += _activation_lines(current, width, op["activation"], op.get("alpha"))
        elif kind == "affine":
            offset = op.get("offset", [0.0] * width)
            for name, values in (("of", offset), ("sc", op["scale"]), ("sh", op["shift"])):
                if len(values) != width:
                    raise ExportError(f"op {k} (affine) has {len(values)} values for {width}")
                data.append(f"inline constexpr double {name}{k}[{width}] = {{{_doubles(values)}}};")
            body.append(
                f"  for (std::size_t i = 0; i < {width}; ++i) {current}[i] = ({current}[i] - "
                f"detail::of{k}[i]) * detail::sc{k}[i] + detail::sh{k}[i];"
            )
        elif kind == "round_float32":
            body.append(
                f"  for (std::size_t i = 0; i < {width}; ++i) "
                f"{current}[i] = static_cast<double>(static_cast<float>({current}[i]));"
            )
        elif kind == "tmva_softmax":
            body.append(f"  double a{k}[{width}];")
            body.append(f"  htt_tmva_export_tmva::tmva_softmax({current}, a{k}, {width});")
            current = f"a{k}"
        elif kind == "take":
            units = [int(u) for u in op["units"]]
            if any(not 0 <= u < width for u in units):
                raise ExportError(f"op {k} takes units {units} of {width}")
            body.append(f"  double a{k}[{len(units)}];")
            body += [f"  a{k}[{i}] = {current}[{u}];" for i, u in enumerate(units)]
            width, current = len(units), f"a{k}"
        else:
            raise ExportError(f"unknown network op '{kind}'")
    return f"{current}[{width}]"


def _cuts(values) -> str:
    """float32 cuts; NaN (a padded leaf above the bottom: every event goes left) as nan_."""
    values = np.asarray(values, dtype=np.float32)
    parts = _floats32(values).split(", ")
    return ", ".join("nan_" if v != v else part for v, part in zip(values, parts))


def _padded_walk(trees: list, depth: int, data: list, body: list) -> None:
    """Complete trees of ``depth`` in heap order (children of slot k at 2k+1 and 2k+2): an
    event goes right when ``x >= cut`` (false for NaN: left, as TMVA); a leaf above the
    bottom becomes slots with cut NaN (everything left) and its value fills the leaves below."""
    n_inner, n_leaf = (1 << depth) - 1, 1 << depth
    feat = np.zeros((len(trees), n_inner), dtype=np.int64)
    cut = np.full((len(trees), n_inner), np.nan, dtype=np.float32)
    leaf = np.zeros((len(trees), n_leaf), dtype=np.float64)
    for t, tree in enumerate(trees):
        stack = [(0, 0, 0)]  # node, slot, level
        while stack:
            node, slot, level = stack.pop()
            if tree["left"][node] < 0:
                first = slot
                for _ in range(depth - level):
                    first = 2 * first + 1
                width = 1 << (depth - level)
                leaf[t, first - n_inner : first - n_inner + width] = tree["threshold"][node]
                continue
            feat[t, slot] = tree["feature"][node]
            cut[t, slot] = tree["threshold"][node]
            stack.append((tree["left"][node], 2 * slot + 1, level + 1))
            stack.append((tree["right"][node], 2 * slot + 2, level + 1))
    data += [
        "inline constexpr float nan_ = std::numeric_limits<float>::quiet_NaN();",
        f"inline constexpr int n_inner = {n_inner}, n_leaf = {n_leaf};",
        f"inline constexpr int feature[{feat.size}] = {{{_ints(feat.ravel())}}};",
        f"inline constexpr float cut[{cut.size}] = {{{_cuts(cut.ravel())}}};",
        f"inline constexpr double leaf[{leaf.size}] = {{{_doubles(leaf.ravel())}}};",
    ]
    body += [
        "  // complete trees, no branches: right when x >= cut (NaN: left, as TMVA)",
        "  for (std::size_t tree = 0; tree < detail::n_trees; ++tree) {",
        "    const int* f = detail::feature + tree * detail::n_inner;",
        "    const float* c = detail::cut + tree * detail::n_inner;",
        "    int k = 0;",
        "    for (int level = 0; level < detail::depth; ++level)",
        "      k = 2 * k + 1 + (t[f[k]] >= c[k]);",
        "    sums[detail::tree_class[tree]] += detail::leaf[tree * detail::n_leaf + "
        "(k - detail::n_inner)];",
        "  }",
    ]


def _node_walk(trees: list, data: list, body: list) -> None:
    """Trees on their node arrays (a leaf points to itself), walked ``depth`` levels; leaf
    values in double (NaN goes left: TMVA's cuts have default_left)."""
    data += node_forest(trees, "double")
    body += node_walk("t", "sums")


def _trees(spec: dict[str, Any], nv: int, nc: int, data: list, body: list) -> str:
    """TMVA forests with double leaf values summed in tree order, then TMVA's output step.

    Trees are walked as complete (padded) trees in heap order without branches when padding
    costs little (as the Python reader's kernel does), else on their node arrays as the
    XGBoost trees of cpp.py."""
    output = spec.get("output")
    if output not in OUTPUTS:
        raise ExportError(f"trees output '{output}' in a TMVA spec; valid: {', '.join(OUTPUTS)}")
    n_out = len(spec["base_margin"])
    trees = spec["trees"]
    classes = [int(t["class"]) for t in trees]
    if any(not 0 <= c < n_out for c in classes):
        raise ExportError(f"a tree belongs to a class outside the {n_out} outputs")
    for tree in trees:
        for feature, left in zip(tree["feature"], tree["left"]):
            if left >= 0 and not 0 <= int(feature) < nv:
                raise ExportError(f"a node cuts on variable {feature} of {nv}")
    depth = max(max((tree_depth(t) for t in trees), default=0), 1)
    n_nodes = sum(len(t["left"]) for t in trees)
    nan_left = all(all(t["default_left"]) for t in trees)
    data += [
        f"inline constexpr std::size_t n_trees = {len(trees)};",
        f"inline constexpr int depth = {depth};",
        f"inline constexpr int tree_class[{max(len(trees), 1)}] = {{{_ints(classes)}}};",
    ]
    body.append(f"  double sums[{n_out}] = {{}};")
    if nan_left and len(trees) << depth <= max(4 * n_nodes, 1 << 12):
        _padded_walk(trees, depth, data, body)
    else:
        _node_walk(trees, data, body)
    if output == "tmva_multiclass":
        body += [
            f"  double p[{n_out}];",
            f"  htt_tmva_export_tmva::tmva_softmax(sums, p, {n_out});",
        ]
        return f"p[{n_out}]"
    if n_out != 1:
        raise ExportError(f"a two-class TMVA forest with {n_out} outputs")
    if output == "tmva_grad":
        body.append("  const double r[1] = {2.0 / (1.0 + std::exp(-2.0 * sums[0])) - 1.0};")
    else:
        norm = float(spec["norm"])
        if norm > np.finfo(np.float64).eps or norm != norm:
            body.append(f"  const double r[1] = {{sums[0] / {_doubles([norm])}}};  // AdaBoost")
        else:  # TMVA gives 0 when the boost weights sum to nothing
            body += ["  (void)sums;", "  const double r[1] = {0.0};  // boost weights sum to 0"]
    return "r[1]"
