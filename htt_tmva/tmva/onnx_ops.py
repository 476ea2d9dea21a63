"""TMVA weight files in the ONNX export: the transformations (on float32 values, each result
float32, as :mod:`htt_tmva.tmva` computes them) and the outputs of TMVA's forests."""

from __future__ import annotations

from typing import Any

import numpy as np

from htt_tmva.errors import ExportError
from htt_tmva.onnx_nodes import F32, F64, Graph, clamp, count_at_most
from htt_tmva.tmva.transforms import ERFINV_CENTRAL, ERFINV_TAIL


def _columns(g: Graph, t: str, y: str, columns: list[int], nv: int) -> str:
    """``t`` with its ``columns`` replaced by those of ``y`` (in order)."""
    both = g.op("Concat", t, y, axis=1)
    index = list(range(nv))
    for j, c in enumerate(columns):
        index[c] = nv + j
    return g.op("Gather", both, g.const(index, np.int64), axis=1)


def tmva_transformations(g: Graph, t: str, transformations: list, nv: int) -> str:
    """TMVA's transformations on the float32 ``t`` in chain order, each result float32."""
    for k, op in enumerate(transformations):
        columns = [int(c) for c in op["columns"]]
        if any(not 0 <= c < nv for c in columns):
            raise ExportError(f"transformation {k} acts on columns {columns} of {nv} variables")
        picked = g.op("Gather", t, g.const(columns, np.int64), axis=1)
        if op["op"] == "normalize":  # (v - low) * scale * 2 - 1, in float
            y = g.op("Sub", picked, g.const(op["low"], F32))
            y = g.op("Mul", g.op("Mul", y, g.const(op["scale"], F32)), g.const(2.0, F32))
            y = g.op("Sub", y, g.const(1.0, F32))
        elif op["op"] == "linear":  # (x - offset) M in double
            matrix = np.asarray(op["matrix"], F64)
            y = g.op("Sub", g.cast(picked, F64), g.const(op["offset"], F64))
            y = g.cast(g.op("MatMul", y, g.const(matrix, F64)), F32)
        elif op["op"] == "gauss":
            if len(op["pdfs"]) != len(columns):
                raise ExportError(f"Gauss transformation {k}: {len(op['pdfs'])} PDFs")
            parts = [
                _gauss(g, g.op("Gather", picked, g.const([j], np.int64), axis=1), pdf, op)
                for j, pdf in enumerate(op["pdfs"])
            ]
            y = g.cast(parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=1), F32)
        else:
            raise ExportError(f"TMVA transformation '{op['op']}' cannot be written as ONNX")
        t = _columns(g, t, y, columns, nv)
    return t


def _gauss(g: Graph, column: str, pdf: dict[str, Any], op: dict[str, Any]) -> str:
    """TMVA's Gauss (or Uniform) transformation of one float32 column ``[N, 1]``, in double:
    the cumulative PDF (as :class:`htt_tmva.tmva.transforms.Gauss`), clamped, then
    ``sqrt(2) erfinv(2c - 1)``."""
    x = g.cast(column, F64)
    eps = g.const(1.0e-12, F64)
    if pdf["kind"] == "histogram":
        edges, contents = np.asarray(pdf["edges"], F64), np.asarray(pdf["contents"], F64)
        n = contents.size
        found = count_at_most(g, x, edges.reshape(1, -1))
        found = g.op("Where", g.op("IsNaN", x), g.const(n + 1, np.int64), found)  # numpy's NaN
        found = g.op("Max", g.op("Min", found, g.const(n, np.int64)), g.const(1, np.int64))
        value = g.op("Gather", g.const(contents, F64), g.op("Sub", found, g.const(1, np.int64)))
    elif pdf["kind"] == "fine":
        fine = np.asarray(pdf["values"], F64)
        n, x_min, x_max = fine.size, float(pdf["x_min"]), float(pdf["x_max"])
        width = (x_max - x_min) / n

        def c(v):
            return g.const(v, F64)

        raw = g.op(
            "Floor",
            g.op("Div", g.op("Mul", c(float(n)), g.op("Sub", x, c(x_min))), c(x_max - x_min)),
        )
        bin_ = g.op(
            "Where", g.op("GreaterOrEqual", x, c(x_max)), c(n + 1.0), g.op("Add", raw, c(1.0))
        )
        bin_ = g.op("Where", g.op("Less", x, c(x_min)), c(0.0), bin_)
        bin_ = clamp(g, g.op("Where", g.op("IsNaN", bin_), c(1.0), bin_), 1.0, float(n))

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
        table = g.const(fine, F64)

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
    cumulant = clamp(g, value, 0.0 + 10e-10, 1.0 - 10e-10)
    if op.get("flat"):
        return cumulant
    arg = g.op("Sub", g.op("Mul", cumulant, g.const(2.0, F64)), g.const(1.0, F64))
    arg = clamp(g, arg, -0.99999999, 0.99999999)
    return g.op("Mul", _erfinv(g, arg), g.const(1.414213562, F64))


def _erfinv(g: Graph, y: str) -> str:
    """The inverse error function of ``y`` (``[N, 1]``, double), as the C++ export computes
    it: Giles' approximation refined by two Newton steps on :func:`_erf`."""

    def horner(coefficients, w):
        p = g.const(coefficients[0], F64)
        for a in coefficients[1:]:
            p = g.op("Add", g.op("Mul", p, w), g.const(a, F64))
        return p

    one = g.const(1.0, F64)
    w = g.op("Neg", g.op("Log", g.op("Mul", g.op("Sub", one, y), g.op("Add", one, y))))
    central = horner(ERFINV_CENTRAL, g.op("Sub", w, g.const(2.5, F64)))
    tail_w = g.op("Sub", g.op("Sqrt", g.op("Max", w, g.const(5.0, F64))), g.const(3.0, F64))
    p = g.op("Where", g.op("Less", w, g.const(5.0, F64)), central, horner(ERFINV_TAIL, tail_w))
    x = g.op("Mul", p, y)
    for _ in range(2):  # Newton: d erf / dx = 2 / sqrt(pi) exp(-x^2)
        slope = g.op(
            "Mul", g.op("Exp", g.op("Neg", g.op("Mul", x, x))), g.const(1.1283791670955126, F64)
        )
        x = g.op("Sub", x, g.op("Div", g.op("Sub", _erf(g, x), y), slope))
    return x


def _erf(g: Graph, x: str, nodes: int = 24) -> str:
    """erf of ``x`` (``[N, 1]``, double) as ``2/sqrt(pi)`` times the integral of
    ``exp(-t^2)`` from 0 to x by Gauss-Legendre quadrature (onnxruntime's ``Erf`` is float
    only): within 2e-15 of the true value for ``|x| <= 4.2``, the range the clipped
    arguments reach."""
    t, w = np.polynomial.legendre.leggauss(nodes)
    points = g.op("Mul", x, g.const(0.5 * (1.0 + t), F64))  # [N, nodes]
    values = g.op("Exp", g.op("Neg", g.op("Mul", points, points)))
    integral = g.op("MatMul", values, g.const((w / np.sqrt(np.pi)).reshape(-1, 1), F64))
    return g.op("Mul", integral, x)


def tmva_softmax(g: Graph, o: str) -> str:
    """TMVA's ``p_i = 1 / (1 + sum_{j != i} exp(o_j - o_i))``: the sum over all j of
    ``exp(o_j - o_i)`` includes the 1."""
    rows = g.op("Unsqueeze", o, g.const([1], np.int64))  # [N, 1, n]: o_j
    columns = g.op("Unsqueeze", o, g.const([2], np.int64))  # [N, n, 1]: o_i
    exps = g.op("Exp", g.op("Sub", rows, columns))
    return g.op("Reciprocal", g.op("ReduceSum", exps, g.const([2], np.int64), keepdims=0))


def tmva_trees_output(g: Graph, s: str, spec: dict[str, Any]) -> str:
    output = spec.get("output")
    if output == "tmva_adaboost":
        return g.op("Div", s, g.const(float(spec["norm"]), F64))
    if output == "tmva_grad":  # 2 / (1 + exp(-2 s)) - 1
        e = g.op("Exp", g.op("Mul", s, g.const(-2.0, F64)))
        ratio = g.op("Div", g.const(2.0, F64), g.op("Add", g.const(1.0, F64), e))
        return g.op("Sub", ratio, g.const(1.0, F64))
    if output == "tmva_multiclass":
        return tmva_softmax(g, s)
    raise ExportError(f"TMVA trees output '{output}' cannot be written as ONNX")
