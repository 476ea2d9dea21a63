"""Models as self-contained C++17 headers (standard library only).

A model header defines, in its namespace, ``n_variables``, ``n_classes``, ``variables``,
``classes`` and a thread-safe ``predict(const std::array<double, n_variables>&)`` that
returns the class probabilities (``std::array<float, n_classes>``) exactly as the Python
model computes them (float32 arithmetic where the Python path uses it), and
``predict_batch(inputs, n, out)`` for n events at once (rows of inputs and of
probabilities): the same bits, computed with vector-friendly code (dense layers as
register-tiled products over 16 outputs; trees up to depth 4 as complete trees over blocks
of events, without branches). Compile without fused multiply-adds (``-ffp-contract=off``)
to keep the two bit for bit equal.

A fold-aware header holds the models of all folds and adds ``predict(event, inputs)``,
``predict_event(event, v1, v2, ...)`` and ``predict_batch_in_folds(folds, inputs, n, out)``:
the model that never saw the event's fold scores it (the rule of
:mod:`htt_tmva.data.folds`: fold ``event % k`` is scored by the model trained on fold
``(event % k - 1) mod k``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Optional

from htt_tmva.cpp_text import (
    PREDICT,
    cpp_comment,
    node_forest,
    node_walk,
)
from htt_tmva.cpp_text import cpp_doubles as _doubles
from htt_tmva.cpp_text import cpp_floats as _floats
from htt_tmva.cpp_text import cpp_strings as _strings
from htt_tmva.cpp_text import tree_depth as _tree_depth
from htt_tmva.data.folds import model_for_fold
from htt_tmva.errors import ExportError, ExpressionError
from htt_tmva.export.spec import ACTIVATIONS
from htt_tmva.expressions import translate, value_cpp
from htt_tmva.tmva.cpp import TMVA_HELPERS, is_tmva_spec, tmva_model

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

HELPERS = r"""
#ifndef HTT_TMVA_EXPORT_HELPERS
#define HTT_TMVA_EXPORT_HELPERS
namespace htt_tmva_export {
// y = x W + b; W row-major [n_in][n_out]; float arithmetic starting from the bias, in input
// order: exactly what dense_batch computes for each event.
inline void dense(const float* x, std::size_t n_in, const float* w, const float* b,
                  std::size_t n_out, float* y) {
  for (std::size_t j = 0; j < n_out; ++j) {
    float sum = b[j];
    for (std::size_t i = 0; i < n_in; ++i) sum += x[i] * w[i * n_out + j];
    y[j] = sum;
  }
}
inline void affine(float* x, std::size_t n, const float* scale, const float* shift) {
  for (std::size_t i = 0; i < n; ++i) x[i] = x[i] * scale[i] + shift[i];
}
enum class Activation { linear, relu, softmax, sigmoid, tanh, elu };
inline void activate(float* x, std::size_t n, Activation a) {
  switch (a) {
    case Activation::linear: return;
    case Activation::relu:
      for (std::size_t i = 0; i < n; ++i) x[i] = x[i] > 0.f ? x[i] : 0.f;
      return;
    case Activation::sigmoid:
      for (std::size_t i = 0; i < n; ++i) x[i] = 1.f / (1.f + std::exp(-x[i]));
      return;
    case Activation::tanh:
      for (std::size_t i = 0; i < n; ++i) x[i] = std::tanh(x[i]);
      return;
    case Activation::elu:
      for (std::size_t i = 0; i < n; ++i) x[i] = x[i] > 0.f ? x[i] : std::expm1(x[i]);
      return;
    case Activation::softmax: {
      float top = x[0];
      for (std::size_t i = 1; i < n; ++i) top = std::max(top, x[i]);
      float sum = 0.f;
      for (std::size_t i = 0; i < n; ++i) { x[i] = std::exp(x[i] - top); sum += x[i]; }
      for (std::size_t i = 0; i < n; ++i) x[i] /= sum;
      return;
    }
  }
}
// numpy.interp(x, xp, fp) for increasing xp, as numpy computes it.
inline double interp(double x, const double* xp, const double* fp, std::size_t n) {
  if (x < xp[0]) return fp[0];
  if (x >= xp[n - 1]) return fp[n - 1];
  const std::size_t j = static_cast<std::size_t>(std::upper_bound(xp, xp + n, x) - xp) - 1;
  if (x == xp[j]) return fp[j];
  const double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
  double y = slope * (x - xp[j]) + fp[j];
  if (std::isnan(y)) {
    y = slope * (x - xp[j + 1]) + fp[j + 1];
    if (std::isnan(y) && fp[j] == fp[j + 1]) y = fp[j];
  }
  return y;
}
// Batched dense layer for many events: y[n][m] = x[n][k] w[k][m] + b, with w and b padded
// to m (a multiple of 16) columns by pack_dense; float accumulation with the bias first.
// A register tile of R events x 16 outputs (GCC/Clang vector extensions when available).
// Inputs are rows of `stride` floats, of which the first k are used (the padding of the
// previous layer's outputs never enters: it may hold NaN * 0).
struct PackedDense {
  std::size_t k = 0, stride = 0, m = 0;
  std::vector<float> w, b;
};
inline PackedDense pack_dense(const float* w, std::size_t n_in, std::size_t n_out,
                              std::size_t stride, const float* b) {
  PackedDense p;
  p.k = n_in;
  p.stride = stride;
  p.m = (n_out + 15) / 16 * 16;
  p.w.assign(n_in * p.m, 0.f);
  p.b.assign(p.m, 0.f);
  for (std::size_t i = 0; i < n_in; ++i)
    for (std::size_t j = 0; j < n_out; ++j) p.w[i * p.m + j] = w[i * n_out + j];
  std::copy(b, b + n_out, p.b.begin());
  return p;
}
#if defined(__GNUC__) || defined(__clang__)
typedef float htt_v8f __attribute__((vector_size(32)));
#if defined(__AVX512F__)
inline constexpr std::size_t dense_rows = 8;  // 32 vector registers
#else
inline constexpr std::size_t dense_rows = 4;
#endif
// n must be a multiple of dense_rows (callers pad their batches)
inline void dense_batch(const float* x, std::size_t n, const PackedDense& p, float* y) {
  constexpr std::size_t R = dense_rows;
  const std::size_t k = p.k, m = p.m, s = p.stride;
  for (std::size_t e = 0; e < n; e += R) {
    for (std::size_t j = 0; j < m; j += 16) {
      htt_v8f a[R][2], b[2], w[2];  // (memcpy: unaligned loads and stores)
      std::memcpy(b, p.b.data() + j, sizeof b);
      for (std::size_t r = 0; r < R; ++r) { a[r][0] = b[0]; a[r][1] = b[1]; }
      const float* wp = p.w.data() + j;
      for (std::size_t i = 0; i < k; ++i, wp += m) {
        std::memcpy(w, wp, sizeof w);
        for (std::size_t r = 0; r < R; ++r) {
          const htt_v8f v = x[(e + r) * s + i] - htt_v8f{};
          a[r][0] += v * w[0];
          a[r][1] += v * w[1];
        }
      }
      for (std::size_t r = 0; r < R; ++r) std::memcpy(y + (e + r) * m + j, a[r], sizeof a[r]);
    }
  }
}
#else
inline constexpr std::size_t dense_rows = 4;
inline void dense_batch(const float* x, std::size_t n, const PackedDense& p, float* y) {
  for (std::size_t e = 0; e < n; ++e)
    for (std::size_t j = 0; j < p.m; ++j) {
      float sum = p.b[j];
      for (std::size_t i = 0; i < p.k; ++i) sum += x[e * p.stride + i] * p.w[i * p.m + j];
      y[e * p.m + j] = sum;
    }
}
#endif
// The fold of an event number, exact for signed, unsigned and (integer-valued) float types.
template <typename E>
inline unsigned fold_of(E event, unsigned k) {
  if constexpr (std::is_floating_point_v<E>) {
    return fold_of(static_cast<long long>(event), k);
  } else if constexpr (std::is_unsigned_v<E>) {
    return static_cast<unsigned>(static_cast<unsigned long long>(event) % k);
  } else {
    const long long kk = k, e = static_cast<long long>(event);
    return static_cast<unsigned>(((e % kk) + kk) % kk);
  }
}
}  // namespace htt_tmva_export
#endif
"""

INCLUDES = [
    "#include <algorithm>",
    "#include <array>",
    "#include <cmath>",
    "#include <cstddef>",
    "#include <cstring>",
    "#include <type_traits>",
    "#include <vector>",
]


def check_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ExportError(f"'{name}' is not a valid C++ namespace name (letters, digits, '_')")
    return name


def _flat(matrix) -> list[float]:
    return [v for row in matrix for v in row]


def _names(spec: dict[str, Any]) -> list[str]:
    """Sizes and names of the inputs and outputs, recorded in the header."""
    return [
        f"inline constexpr std::size_t n_variables = {len(spec['variables'])};",
        f"inline constexpr std::size_t n_classes = {len(spec['classes'])};",
        "inline constexpr const char* variables[n_variables] = {"
        + _strings(spec["variables"])
        + "};",
        "inline constexpr const char* classes[n_classes] = {" + _strings(spec["classes"]) + "};",
    ]


def model_body(spec: dict[str, Any]) -> str:
    """The declarations and ``predict`` of one model (to be put inside a namespace)."""
    nv, nc = len(spec["variables"]), len(spec["classes"])
    lines = _names(spec)
    if is_tmva_spec(spec):  # a TMVA weight file: transformations, then double precision
        lines += tmva_model(spec, nv, nc)
    elif spec["kind"] == "network":
        lines += _network(spec, nv, nc)
    elif spec["kind"] == "trees":
        lines += _trees(spec, nv, nc)
    else:
        raise ExportError(f"unknown model kind '{spec['kind']}'")
    if not any(line.startswith(BATCH[-1]) for line in lines):
        lines += _batch_by_event()
    return "\n".join(lines)


def _batch_by_event() -> list[str]:
    """``predict_batch`` as a loop over ``predict``, for kinds without a batched version."""
    return [
        *BATCH,
        "  for (std::size_t i = 0; i < n; ++i) {",
        "    std::array<double, n_variables> row;",
        "    std::copy(input + i * n_variables, input + (i + 1) * n_variables, row.begin());",
        "    const auto p = predict(row);",
        "    std::copy(p.begin(), p.end(), out + i * n_classes);",
        "  }",
        "}",
    ]


def _network(spec, nv: int, nc: int) -> list[str]:
    pre = spec["preprocessing"]
    data, body = [], []
    if pre["kind"] == "affine":
        data.append(f"inline constexpr double offset[{nv}] = {{{_doubles(pre['offset'])}}};")
        data.append(f"inline constexpr double scale[{nv}] = {{{_doubles(pre['scale'])}}};")
        transform = "static_cast<float>((IN[i] - detail::offset[i]) / detail::scale[i])"
    elif pre["kind"] == "quantile":
        n = len(pre["levels"])
        data.append(f"inline constexpr double levels[{n}] = {{{_doubles(pre['levels'])}}};")
        data.append(
            f"inline constexpr double quantiles[{nv}][{n}] = {{"
            + ", ".join("{" + _doubles(q) + "}" for q in pre["quantiles"])
            + "};"
        )
        transform = (
            "static_cast<float>("
            f"htt_tmva_export::interp(IN[i], detail::quantiles[i], detail::levels, {n}))"
        )
    else:
        raise ExportError(f"preprocessing kind '{pre['kind']}' cannot be exported")
    body.append(
        f"  for (std::size_t i = 0; i < {nv}; ++i) a0[i] = {transform.replace('IN', 'input')};"
    )
    preprocess = [
        "      const double* row = input + (start + r) * n_variables;",
        f"      for (std::size_t i = 0; i < {nv}; ++i) "
        f"a0[r * n_variables + i] = {transform.replace('IN', 'row')};",
    ]
    width, current = nv, "a0"
    # the batched version: buffers of `rows` events, each row `stride` floats (padded)
    packs, buffers, batch = [], [f"a0(chunk * {nv})"], []
    stride = nv
    for k, op in enumerate(spec["ops"], start=1):
        if op["op"] == "dense":
            n_in, n_out = len(op["weights"]), len(op["bias"])
            if n_in != width:
                raise ExportError(f"layer {k} expects {n_in} inputs, the previous gives {width}")
            weights = _floats(_flat(op["weights"]))
            data.append(f"inline constexpr float w{k}[{n_in * n_out}] = {{{weights}}};")
            data.append(f"inline constexpr float b{k}[{n_out}] = {{{_floats(op['bias'])}}};")
            body.append(f"  float a{k}[{n_out}];")
            body.append(
                f"  htt_tmva_export::dense({current}, {n_in}, detail::w{k}, detail::b{k}, "
                f"{n_out}, a{k});"
            )
            body.append(_activate(f"a{k}", n_out, op["activation"]))
            packs.append(
                f"  static const htt_tmva_export::PackedDense p{k} = "
                f"htt_tmva_export::pack_dense(detail::w{k}, {n_in}, {n_out}, {stride}, "
                f"detail::b{k});"
            )
            stride = -(-n_out // 16) * 16
            buffers.append(f"a{k}(chunk * {stride})")
            batch.append(
                f"    htt_tmva_export::dense_batch({current}.data(), padded, p{k}, a{k}.data());"
            )
            batch.append(_activate_rows(f"a{k}", stride, n_out, op["activation"]))
            width, current = n_out, f"a{k}"
        elif op["op"] == "affine":
            data.append(f"inline constexpr float s{k}[{width}] = {{{_floats(op['scale'])}}};")
            data.append(f"inline constexpr float t{k}[{width}] = {{{_floats(op['shift'])}}};")
            body.append(
                f"  htt_tmva_export::affine({current}, {width}, detail::s{k}, detail::t{k});"
            )
            batch.append(
                f"    for (std::size_t r = 0; r < rows; ++r) htt_tmva_export::affine("
                f"{current}.data() + r * {stride}, {width}, detail::s{k}, detail::t{k});"
            )
        elif op["op"] == "activation":
            body.append(_activate(current, width, op["activation"]))
            batch.append(_activate_rows(current, stride, width, op["activation"]))
        else:
            raise ExportError(f"unknown network op '{op['op']}'")
    if width != nc:
        raise ExportError(f"the network gives {width} outputs for {nc} classes")
    return [
        "namespace detail {",
        *data,
        "}  // namespace detail",
        *PREDICT,
        f"  float a0[{nv}];",
        *body,
        "  std::array<float, n_classes> out;",
        f"  std::copy({current}, {current} + n_classes, out.begin());",
        "  return out;",
        "}",
        *BATCH,
        *packs,
        "  constexpr std::size_t chunk = 256;  // a multiple of dense_rows; fits the caches",
        "  std::vector<float> " + ", ".join(buffers) + ";",
        "  for (std::size_t start = 0; start < n; start += chunk) {",
        "    const std::size_t rows = std::min(chunk, n - start);",
        "    const std::size_t padded = (rows + htt_tmva_export::dense_rows - 1) / "
        "htt_tmva_export::dense_rows * htt_tmva_export::dense_rows;",
        "    std::fill(a0.begin() + rows * n_variables, a0.begin() + padded * n_variables, 0.f);",
        "    for (std::size_t r = 0; r < rows; ++r) {",
        *preprocess,
        "    }",
        *batch,
        "    for (std::size_t r = 0; r < rows; ++r)",
        f"      std::copy({current}.data() + r * {stride}, {current}.data() + r * {stride} + "
        "n_classes, out + (start + r) * n_classes);",
        "  }",
        "}",
    ]


BATCH = [
    "/// Class probabilities of n events: inputs row-major [n][n_variables], out [n][n_classes].",
    "/// Thread-safe; the same arithmetic as predict, event by event.",
    "inline void predict_batch(const double* input, std::size_t n, float* out) {",
]


def _activation(name: str) -> str:
    """``name`` if it is one of the header's activations (a model file names it)."""
    if name not in ACTIVATIONS:
        raise ExportError(
            f"activation {str(name)[:60]!r} cannot be exported; valid: {', '.join(ACTIVATIONS)}"
        )
    return name


def _activate_rows(array: str, stride: int, n: int, activation: str) -> str:
    if _activation(activation) == "linear":
        return ""
    return (
        f"    for (std::size_t r = 0; r < rows; ++r) htt_tmva_export::activate({array}.data() + "
        f"r * {stride}, {n}, htt_tmva_export::Activation::{activation});"
    )


def _activate(array: str, n: int, activation: str) -> str:
    return (
        f"  htt_tmva_export::activate({array}, {n}, "
        f"htt_tmva_export::Activation::{_activation(activation)});"
    )


def _ints(values) -> str:
    return ", ".join(str(int(v)) for v in values)


def _trees(spec, nv: int, nc: int) -> list[str]:
    """XGBoost's trees on their nodes, walked a fixed number of levels without branches (all
    trees take max-depth steps), then the softmax."""
    depth = max((_tree_depth(t) for t in spec["trees"]), default=0)
    nt = len(spec["trees"])
    classes = [tree["class"] for tree in spec["trees"]]
    return [
        "namespace detail {",
        f"inline constexpr std::size_t n_trees = {nt};",
        f"inline constexpr int depth = {depth};",
        f"inline constexpr float base_margin[{nc}] = {{{_floats(spec['base_margin'])}}};",
        f"inline constexpr int tree_class[{max(nt, 1)}] = {{{_ints(classes) or '0'}}};",
        *node_forest(spec["trees"]),
        "}  // namespace detail",
        *PREDICT,
        "  // XGBoost compares float32 inputs: x < threshold goes left, NaN goes the default way.",
        "  float x[n_variables];",
        "  for (std::size_t i = 0; i < n_variables; ++i) x[i] = static_cast<float>(input[i]);",
        "  std::array<float, n_classes> out;",
        "  for (std::size_t c = 0; c < n_classes; ++c) out[c] = detail::base_margin[c];",
        *node_walk("x", "out"),
        "  htt_tmva_export::activate(out.data(), n_classes, htt_tmva_export::Activation::softmax);",
        "  return out;",
        "}",
        *_trees_batch(spec, depth),
    ]


#: the deepest trees that the batched code walks with contiguous loads and selects
FAST_DEPTH = 4


def _complete_tree(tree: dict, depth: int) -> tuple[list, list, list]:
    """A tree as a complete one of ``depth`` (heap order, node k has children 2k+1, 2k+2):
    the features and cuts of its inner nodes and its leaf values. A leaf above ``depth``
    becomes an inner node whose two sides hold its value (feature 0, cut 0: either way)."""
    inner = 2**depth - 1
    feature, cut, leaf = [0] * inner, [0.0] * inner, [0.0] * (inner + 1)

    def fill(position: int, node: int, level: int) -> None:
        is_leaf = tree["left"][node] < 0
        if level == depth:
            leaf[position - inner] = tree["threshold"][node]
            return
        if is_leaf:
            fill(2 * position + 1, node, level + 1)
            fill(2 * position + 2, node, level + 1)
            return
        feature[position], cut[position] = tree["feature"][node], tree["threshold"][node]
        fill(2 * position + 1, tree["left"][node], level + 1)
        fill(2 * position + 2, tree["right"][node], level + 1)

    fill(0, 0, 0)
    return feature, cut, leaf


def _select(values: list[str], bits: list[str]) -> str:
    """C++ choosing ``values[index]`` where ``bits`` are the index's bits, highest first."""
    if len(values) == 1:
        return values[0]
    half = len(values) // 2
    return f"({bits[0]} ? {_select(values[half:], bits[1:])} : {_select(values[:half], bits[1:])})"


def _trees_batch(spec, depth: int) -> list[str]:
    """``predict_batch`` for trees: blocks of events, one tree at a time over the block. Trees
    up to FAST_DEPTH are walked as complete trees with every node's cut evaluated on the whole
    block (contiguous loads, selects: vector code); the leaves are added in tree order, so
    the sums are those of ``predict``. A block with a NaN input (default directions) and
    deeper trees take ``predict`` event by event."""
    per_event = [
        "    for (std::size_t i = 0; i < m; ++i) {",
        "      std::array<double, n_variables> row;",
        "      std::copy(input + (start + i) * n_variables, "
        "input + (start + i + 1) * n_variables, row.begin());",
        "      const auto p = predict(row);",
        "      std::copy(p.begin(), p.end(), out + (start + i) * n_classes);",
        "    }",
    ]
    head = [
        *BATCH,
        "  constexpr std::size_t B = 128;",
        "  for (std::size_t start = 0; start < n; start += B) {",
        "    const std::size_t m = std::min(B, n - start);",
    ]
    if not 1 <= depth <= FAST_DEPTH or not spec["trees"]:
        return [*head, *per_event, "  }", "}"]
    inner = 2**depth - 1
    feature, cut, leaf = [], [], []
    for tree in spec["trees"]:
        f, c, v = _complete_tree(tree, depth)
        feature += f
        cut += c
        leaf += v
    # every node's test on the block (contiguous loads), then the path through them as
    # integer arithmetic: no branches, so that the loop becomes vector code
    walk = [f"        const int t{k} = r{k}[i] >= c{k};" for k in range(inner)]
    walk.append("        int path = t0;")
    for d in range(1, depth):
        first = 2**d - 1
        terms = " | ".join(f"((path == {p}) & t{first + p})" for p in range(2**d))
        walk.append(f"        path = 2 * path + ({terms});")
    walk.append("        a[i] += leaf[path];")
    return [
        "namespace detail {",
        f"inline constexpr int complete_feature[{len(feature)}] = "
        f"{{{', '.join(map(str, feature))}}};",
        f"inline constexpr float complete_cut[{len(cut)}] = {{{_floats(cut)}}};",
        f"inline constexpr float complete_leaf[{len(leaf)}] = {{{_floats(leaf)}}};",
        "}  // namespace detail",
        *head,
        "    float x[n_variables][B];",
        "    bool nan = false;",
        "    for (std::size_t i = 0; i < B; ++i)",
        "      for (std::size_t v = 0; v < n_variables; ++v) {",
        "        x[v][i] = i < m ? static_cast<float>(input[(start + i) * n_variables + v]) : 0.f;",
        "        nan |= x[v][i] != x[v][i];",
        "      }",
        "    if (nan) {  // NaN goes each node's default way: event by event",
        *per_event,
        "      continue;",
        "    }",
        "    float sums[n_classes][B];",
        "    for (std::size_t c = 0; c < n_classes; ++c)",
        "      for (std::size_t i = 0; i < B; ++i) sums[c][i] = detail::base_margin[c];",
        "    for (std::size_t t = 0; t < detail::n_trees; ++t) {",
        f"      const int* f = detail::complete_feature + t * {inner};",
        f"      const float* cut = detail::complete_cut + t * {inner};",
        f"      const float* leaf = detail::complete_leaf + t * {inner + 1};",
        *[
            f"      const float* r{k} = x[f[{k}]]; const float c{k} = cut[{k}];"
            for k in range(inner)
        ],
        "      float* a = sums[detail::tree_class[t]];",
        "      for (std::size_t i = 0; i < B; ++i) {  // x < cut goes left (XGBoost)",
        *walk,
        "      }",
        "    }",
        "    for (std::size_t i = 0; i < m; ++i) {",
        "      float* o = out + (start + i) * n_classes;",
        "      for (std::size_t c = 0; c < n_classes; ++c) o[c] = sums[c][i];",
        "      htt_tmva_export::activate(o, n_classes, htt_tmva_export::Activation::softmax);",
        "    }",
        "  }",
        "}",
    ]


NAMESPACE_MARKER = "// htt-tmva namespace: "


def _header(title: str, namespace: str, specs: Sequence[dict[str, Any]] = ()) -> list[str]:
    return [
        f"// {cpp_comment(title)}",
        f"{NAMESPACE_MARKER}{namespace}",
        "// Written by htt-tmva export: self-contained C++17, standard library only.",
        "#pragma once",
        *INCLUDES,
        "#include <limits>",
        HELPERS,
        *([TMVA_HELPERS] if any(is_tmva_spec(s) for s in specs) else []),
        *_expression_notes(specs[0] if specs else {}),
    ]


def _expression_notes(spec: dict[str, Any]) -> list[str]:
    """A TMVA file's variables are expressions: the header takes their values, in order."""
    expressions = spec.get("tmva", {}).get("expressions", [])
    if all(e.strip().isidentifier() for e in expressions):
        return []
    return [
        "// The inputs are the values of these TMVA variable expressions, in this order",
        "// (evaluate them as TMVA does: in double, stored as float):",
        *[f"//   {i}: {cpp_comment(e)}" for i, e in enumerate(expressions)],
    ]


def model_header(spec: dict[str, Any], namespace: str, title: str = "") -> str:
    """A header with one model in ``namespace``."""
    check_identifier(namespace)
    lines = _header(title or f"model {namespace}", namespace, [spec])
    lines += [
        f"namespace {namespace} {{",
        "inline constexpr bool fold_aware = false;",
        'inline constexpr const char* event_branch = "";',
        model_body(spec),
        f"}}  // namespace {namespace}",
        "",
    ]
    return "\n".join(lines)


def fold_header(
    specs: Sequence[dict[str, Any]],
    namespace: str,
    event_branch: str = "event",
    title: str = "",
    scorer_of_fold: Optional[Sequence[int]] = None,
) -> str:
    """A header with the models of all folds and the event-number dispatch.

    By default ``specs[i]`` is the model trained on fold i, and fold f is scored by the
    model trained on fold ``(f - 1) mod k`` (never the one that saw it); the application
    passes its models in event-fold order with ``scorer_of_fold = [0, 1, ...]``, after
    checking their manifests.
    """
    check_identifier(namespace)
    k = len(specs)
    if k < 2:
        raise ExportError("a fold-aware header needs the models of at least two folds")
    if scorer_of_fold is None:
        scorer_of_fold = [model_for_fold(f, k) for f in range(k)]
        labels = [f"trained on fold {i}" for i in range(k)]
    else:
        labels = [f"scores fold {scorer_of_fold.index(i)}" for i in range(k)]
    first = specs[0]
    for i, spec in enumerate(specs[1:], start=1):
        for key in ("variables", "classes"):
            if spec[key] != first[key]:
                raise ExportError(
                    f"the model of fold {i} has {key} {spec[key]}, fold 0 has {first[key]}"
                )
    lines = _header(title or f"fold-aware model {namespace}", namespace, specs)
    lines += [
        f"namespace {namespace} {{",
        "inline constexpr bool fold_aware = true;",
        f"inline constexpr const char* event_branch = {_strings([event_branch])};",
    ]
    for i, spec in enumerate(specs):
        lines += [f"namespace fold{i} {{  // {labels[i]}", model_body(spec), "}"]
    cases = "\n".join(
        f"    case {f}: return fold{scorer_of_fold[f]}::predict(input);" for f in range(k)
    )
    lines += [
        f"inline constexpr unsigned n_folds = {k};",
        *_names(first),
        "/// Class probabilities of an event of fold `fold` (event % n_folds), from the model",
        "/// that did not train on that fold.",
        "inline std::array<float, n_classes> predict_in_fold(unsigned fold, "
        "const std::array<double, n_variables>& input) {",
        "  switch (fold) {",
        cases,
        "  }",
        "  return {};",
        "}",
        "/// Class probabilities of n events (inputs row-major [n][n_variables], out",
        "/// [n][n_classes]); event i belongs to event fold fold[i] (event % n_folds).",
        "inline void predict_batch_in_folds(const unsigned* fold, const double* input, "
        "std::size_t n, float* out) {",
        "  std::vector<std::size_t> rows;",
        "  std::vector<double> x;",
        "  std::vector<float> y;",
        "  for (unsigned f = 0; f < n_folds; ++f) {",
        "    rows.clear();",
        "    for (std::size_t i = 0; i < n; ++i)",
        "      if (fold[i] == f) rows.push_back(i);",
        "    if (rows.empty()) continue;",
        "    x.resize(rows.size() * n_variables);",
        "    y.resize(rows.size() * n_classes);",
        "    for (std::size_t j = 0; j < rows.size(); ++j)",
        "      std::copy(input + rows[j] * n_variables, input + (rows[j] + 1) * n_variables, "
        "x.begin() + j * n_variables);",
        "    switch (f) {",
        "\n".join(
            f"      case {f}: fold{scorer_of_fold[f]}::predict_batch(x.data(), rows.size(), "
            "y.data()); break;"
            for f in range(k)
        ),
        "    }",
        "    for (std::size_t j = 0; j < rows.size(); ++j)",
        "      std::copy(y.begin() + j * n_classes, y.begin() + (j + 1) * n_classes, "
        "out + rows[j] * n_classes);",
        "  }",
        "}",
        "/// Class probabilities of an event, from the model that did not train on its fold.",
        "template <typename E>",
        "inline std::array<float, n_classes> predict(E event, "
        "const std::array<double, n_variables>& input) {",
        "  return predict_in_fold(htt_tmva_export::fold_of(event, n_folds), input);",
        "}",
        "/// The same with the variables as separate arguments (any arithmetic types).",
        "template <typename E, typename... V>",
        "inline std::array<float, n_classes> predict_event(E event, V... values) {",
        '  static_assert(sizeof...(V) == n_variables, "give one value per variable");',
        "  return predict(event, std::array<double, n_variables>{static_cast<double>(values)...});",
        "}",
        f"}}  // namespace {namespace}",
        "",
    ]
    return "\n".join(lines)


def application_header(
    specs: Sequence[dict[str, Any]],
    namespace: str,
    branches: Sequence[str],
    classes: Sequence[str],
    scorer_of_fold: Optional[Sequence[int]] = None,
) -> str:
    """The fold-aware header of the application, whose inputs are ``branches`` (in order)
    and whose outputs are ``classes``.

    Where the models' variables are expressions of those branches, an outer namespace
    evaluates them as the Python path does (:func:`htt_tmva.expressions.value_cpp`)
    and calls the models' fold-aware header (inner namespace ``<namespace>_on_expressions``).
    Models whose outputs are not ``classes`` (e.g. a two-class TMVA job's one response) are
    refused.
    """
    for i, spec in enumerate(specs):
        if list(spec["classes"]) != list(classes):
            raise ExportError(
                f"the model scoring fold {i} gives the outputs {spec['classes']}, the "
                f"application needs one probability per class {list(classes)}"
            )
    variables = list(specs[0]["variables"])
    if variables == list(branches):
        return fold_header(specs, namespace, scorer_of_fold=scorer_of_fold)
    inner = f"{namespace}_on_expressions"
    text = fold_header(specs, inner, scorer_of_fold=scorer_of_fold)
    try:  # through the grammar: a model file's expression never becomes code unchecked
        for b in branches:
            translate(b, "input branch")
        cpp = [value_cpp(e, "model variable") for e in variables]
    except ExpressionError as error:
        raise ExportError(str(error)) from None
    reads = [f"  const double {b} = htt_tmva_in_[{i}];" for i, b in enumerate(branches)]
    values = ",\n".join(f"      {c}" for c in cpp)
    return "\n".join(
        [
            text,
            f"namespace {check_identifier(namespace)} {{",
            "inline constexpr bool fold_aware = true;",
            f"inline constexpr const char* event_branch = {inner}::event_branch;",
            f"inline constexpr unsigned n_folds = {inner}::n_folds;",
            f"inline constexpr std::size_t n_variables = {len(branches)};",
            f"inline constexpr std::size_t n_classes = {inner}::n_classes;",
            f"inline constexpr const char* variables[n_variables] = {{{_strings(branches)}}};",
            f"inline constexpr const auto& classes = {inner}::classes;",
            "/// Class probabilities from the branches that the variables' expressions read.",
            "inline std::array<float, n_classes> predict_in_fold(unsigned htt_tmva_fold_, "
            "const std::array<double, n_variables>& htt_tmva_in_) {",
            *reads,
            f"  const std::array<double, {inner}::n_variables> htt_tmva_values_{{",
            values,
            "  };",
            f"  return {inner}::predict_in_fold(htt_tmva_fold_, htt_tmva_values_);",
            "}",
            "/// The same for n events (inputs [n][n_variables], out [n][n_classes]).",
            "inline void predict_batch_in_folds(const unsigned* htt_tmva_folds_, "
            "const double* htt_tmva_inputs_, std::size_t htt_tmva_n_, float* htt_tmva_out_) {",
            f"  std::vector<double> htt_tmva_all_(htt_tmva_n_ * {inner}::n_variables);",
            "  for (std::size_t htt_tmva_i_ = 0; htt_tmva_i_ < htt_tmva_n_; ++htt_tmva_i_) {",
            "    const double* htt_tmva_in_ = htt_tmva_inputs_ + htt_tmva_i_ * n_variables;",
            *[f"  {line}" for line in reads],
            f"    double* htt_tmva_v_ = htt_tmva_all_.data() + htt_tmva_i_ * {inner}::n_variables;",
            *[f"    htt_tmva_v_[{j}] = {c};" for j, c in enumerate(cpp)],
            "  }",
            f"  {inner}::predict_batch_in_folds(htt_tmva_folds_, htt_tmva_all_.data(), "
            "htt_tmva_n_, htt_tmva_out_);",
            "}",
            "template <typename E>",
            "inline std::array<float, n_classes> predict(E event, "
            "const std::array<double, n_variables>& input) {",
            "  return predict_in_fold(htt_tmva_export::fold_of(event, n_folds), input);",
            "}",
            f"}}  // namespace {namespace}",
            "",
        ]
    )
