"""The node builder of the ONNX export and the helpers that networks and TMVA files share."""

from __future__ import annotations

import numpy as np

F32, F64 = np.float32, np.float64


class Graph:
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
        to = self.tensor_proto.DOUBLE if dtype is F64 else self.tensor_proto.FLOAT
        return self.op("Cast", x, to=to)


def count_at_most(g: Graph, x: str, rows: np.ndarray) -> str:
    """Per column j of ``x`` (``[N, m]``, double) how many values of the sorted ``rows[j]``
    are <= x (``np.searchsorted(rows[j], x, "right")``; NaN: 0; +inf may count beyond the
    row's length, up to the next power of two): a binary search unrolled into
    ``log2(length)`` steps, O(1) memory per event."""
    m, length = rows.shape
    size = 1 << int(np.ceil(np.log2(length + 1)))
    padded = np.full((m, size), np.inf)
    padded[:, :length] = rows
    flat = g.const(padded.ravel(), F64)
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


def clamp(g: Graph, x: str, low: float, high: float) -> str:
    """``np.clip`` (NaN stays NaN)."""
    x = g.op("Where", g.op("Less", x, g.const(low, F64)), g.const(low, F64), x)
    return g.op("Where", g.op("Greater", x, g.const(high, F64)), g.const(high, F64), x)
