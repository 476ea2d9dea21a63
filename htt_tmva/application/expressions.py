"""Variables that are expressions (TMVA weight files: ``var1+var2``, ``(Ht>2500e3)?2500e3:Ht``).

The application reads plain branches in chunks; an expression is evaluated on those chunks
as TMVA does it (TTreeFormula: double arithmetic, the result stored as float), by a C++
function compiled once with ROOT for the set of expressions. The branches an expression
reads are its identifiers that are not functions (``f(``), namespaced names
(``TMath::Pi``), keywords or parts of numbers (``2500e3``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from htt_tmva.errors import ExpressionError

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOKEN = re.compile(
    r"(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[fFlLuU]*)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(?P<other>.)",
    re.DOTALL,
)
_KEYWORDS = {"true", "false", "and", "or", "not", "sizeof", "static_cast", "int", "float", "double"}


def is_plain(variable: str) -> bool:
    """A plain branch name (read as it is), not an expression."""
    return bool(_PLAIN.match(variable.strip()))


def branches_of(expression: str) -> list[str]:
    """The branch names an expression reads, in first-seen order."""
    found: list[str] = []
    tokens = list(_TOKEN.finditer(expression))
    for index, token in enumerate(tokens):
        name = token.group("name")
        if not name or "::" in name or name in _KEYWORDS:
            continue
        following = next((t.group(0) for t in tokens[index + 1 :] if not t.group(0).isspace()), "")
        if following == "(":
            continue  # a function call
        if name not in found:
            found.append(name)
    return found


def input_branches(variables: Sequence[str]) -> list[str]:
    """The branches to read for ``variables``: plain ones as they are, then those read by
    the expressions, without repeats, in first-seen order."""
    branches: list[str] = []
    for variable in variables:
        for name in [variable.strip()] if is_plain(variable) else branches_of(variable):
            if name not in branches:
                branches.append(name)
    return branches


class ExpressionEvaluator:
    """Evaluates ``expressions`` on rows of ``columns`` (float64) -> float32, in C++."""

    def __init__(self, expressions: Sequence[str], columns: Sequence[str]):
        self.expressions, self.columns = list(expressions), list(columns)
        key = hashlib.sha1(repr((self.expressions, self.columns)).encode()).hexdigest()[:16]
        self.name = f"htt_tmva_expressions_{key}"
        self._function = self._compile()

    def _source(self) -> str:
        n_cols, n_out = len(self.columns), len(self.expressions)
        reads = " ".join(f"const double {c} = row[{i}];" for i, c in enumerate(self.columns))
        writes = " ".join(
            f"out[i * {n_out} + {j}] = static_cast<float>(({e}));"
            for j, e in enumerate(self.expressions)
        )
        return (
            f"void {self.name}(const double* in, long long n, float* out) {{\n"
            f"  for (long long i = 0; i < n; ++i) {{\n"
            f"    const double* row = in + i * {n_cols};\n"
            f"    {reads}\n    {writes}\n  }}\n}}\n"
        )

    def _compile(self):
        from htt_tmva._root import captured_stderr, jit_errors, root

        ROOT = root()
        if not hasattr(ROOT, self.name):
            with captured_stderr() as out:
                ok = ROOT.gInterpreter.Declare(self._source())
            if not ok:
                messages = jit_errors(out[0]) or ["unknown error"]
                raise ExpressionError(
                    f"TMVA variable expressions {self.expressions} (on the branches "
                    f"{self.columns}, read as double) do not compile; ROOT says: "
                    + "; ".join(messages)
                )
        return getattr(ROOT, self.name)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty((len(x), len(self.expressions)), dtype=np.float32)
        if len(x):
            self._function(x, len(x), out)
        return out
