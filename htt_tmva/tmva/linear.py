"""MethodFisher and MethodLD: a constant plus a linear combination of the variables."""

from __future__ import annotations

import numpy as np

from htt_tmva.tmva._xml import Header, attr


class LinearMethod:
    """Fisher (``<Coefficient Index Value>``, index 0 the offset) and LD
    (``<Coefficient IndexOut IndexCoeff Value>``, output 0, coefficient 0 the offset)."""

    def __init__(self, header: Header):
        coefficients = {}
        for item in header.weights.findall("Coefficient"):
            if int(item.get("IndexOut", "0")) != 0:
                continue
            index = int(item.get("IndexCoeff", item.get("Index", len(coefficients))))
            coefficients[index] = attr(item, "Value", header, float)
        n_var = len(header.variables)
        if sorted(coefficients) != list(range(n_var + 1)):
            raise header.fail(
                f"{header.method_type} needs {n_var + 1} coefficients (offset and "
                f"one per variable), the file has {len(coefficients)}"
            )
        self.offset = coefficients[0]
        self.weights = np.array([coefficients[i + 1] for i in range(n_var)])
        if header.analysis_type.lower() == "multiclass":
            raise header.fail(f"multiclass {header.method_type} is not supported")
        self.multiclass = False

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return self.offset + np.asarray(x, dtype=np.float64) @ self.weights
