"""The input variables of TMVA weight files, evaluated on ROOT ntuples.

TMVA evaluates each variable's ``Expression`` with ROOT's expression syntax (TTreeFormula: the
branches read as double) and stores the result as a float. Here each expression becomes a small
JIT-compiled C++ function of its branches as doubles (C++ accepts TTreeFormula's arithmetic,
comparisons, ``?:`` and the TMath/std functions), used in an RDataFrame ``Define`` and cast to
float; integer and double branches are accepted. Spectators are never read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def input_expressions(models: Sequence) -> list[str]:
    """The distinct variable expressions of one or more models, in first-seen order."""
    seen: list[str] = []
    for model in models:
        for expression in model.expressions:
            if expression not in seen:
                seen.append(expression)
    return seen


def define_inputs(
    node,
    expressions: Sequence[str],
    *,
    tree: str,
    file: str,
    columns: Sequence[str],
    prefix: str = "__tmva_input_",
):
    """Define one float column per expression on an RDataFrame node.

    As TTreeFormula does, the branches an expression uses are read as double (so ``n/2`` of
    an integer ``n`` is 2.5) and the result is stored as float. Returns ``(node, names)``:
    the new node and the column name of each expression, in order. A plain branch name that
    the tree lacks raises MissingBranchError with a did-you-mean; an expression that does not
    compile raises ExpressionError (unknown identifiers in it raise MissingBranchError too).
    """
    from htt_tmva._root import compile_expression
    from htt_tmva.errors import branch_missing

    columns = list(columns)
    names = []
    for index, expression in enumerate(expressions):
        text = expression.strip()
        if _IDENTIFIER.match(text) and text not in columns:
            raise branch_missing(text, tree, file, columns)
        used = _branches_used(text, columns)
        function = _declare_expression(
            text, used, expression, tree=tree, file=file, columns=columns
        )
        name = f"{prefix}{index}"
        node = compile_expression(
            node,
            "Define",
            name,
            f"{function}({', '.join(used)})",
            what=f"TMVA variable expression '{expression}'",
            columns=columns,
            tree=tree,
            file=file,
        )
        names.append(name)
    return node, names


_TOKEN = re.compile(r"(?<![\w.:])[A-Za-z_][A-Za-z0-9_]*(?![\w(])")


def _branches_used(text: str, columns: Sequence[str]) -> list[str]:
    """The branches an expression names (identifiers that are columns, not called, not
    members), in first-seen order."""
    wanted = set(columns)
    return list(dict.fromkeys(t for t in _TOKEN.findall(text) if t in wanted))


def _declare_expression(text, used, expression, *, tree, file, columns) -> str:
    """JIT-declare ``float f(double b1, ...) { return (float)(text); }`` once; its name."""
    import hashlib

    from htt_tmva._root import captured_stderr, jit_errors, root
    from htt_tmva.errors import ExpressionError

    digest = hashlib.sha1(f"{text}|{','.join(used)}".encode()).hexdigest()[:16]
    name = f"htt_tmva_expression_{digest}"
    ROOT = root()
    if hasattr(ROOT, name):
        return name
    parameters = ", ".join(f"double {b}" for b in used)
    source = f"float {name}({parameters}) {{ return static_cast<float>({text}); }}"
    with captured_stderr() as out:
        ok = ROOT.gInterpreter.Declare(source)
    if ok:
        return name
    messages = jit_errors(out[0]) or ["(no message)"]
    unknown = [m.group(1) for m in map(_UNDECLARED.search, messages) if m]
    if unknown:
        from htt_tmva.errors import branch_missing

        error = branch_missing(unknown[0], tree, file, columns)
        raise type(error)(f"TMVA variable expression '{expression}': {error}") from None
    raise ExpressionError(
        f"TMVA variable expression '{expression}' does not compile; ROOT says: "
        + "; ".join(messages)
    )


_UNDECLARED = re.compile(r"use of undeclared identifier '([A-Za-z_][A-Za-z0-9_]*)'")


def read_inputs(path: str | Path, tree_path: str, model) -> np.ndarray:
    """Evaluate a model's variable expressions on every entry of a tree: float32 (n, n_var)."""
    from htt_tmva._root import branch_names, get_tree, open_root_file, root

    ROOT = root()
    tfile = open_root_file(path)
    try:
        tree = get_tree(tfile, tree_path)
        columns = branch_names(tree)
        frame = ROOT.RDataFrame(tree)
        node, names = define_inputs(
            frame, model.expressions, tree=tree_path, file=str(path), columns=columns
        )
        data = node.AsNumpy(names)
        if not names:
            return np.zeros((int(tree.GetEntries()), 0), dtype=np.float32)
        return np.column_stack([np.asarray(data[n], dtype=np.float32) for n in names])
    finally:
        tfile.Close()
