"""The input variables of TMVA weight files, evaluated on ROOT ntuples.

TMVA evaluates each variable's ``Expression`` with ROOT's expression syntax (TTreeFormula) and
stores the result as a float. Here each expression becomes an RDataFrame ``Define`` (C++, which
accepts TTreeFormula's arithmetic, comparisons, ``?:`` and the TMath/std functions), cast to
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

    Returns ``(node, names)``: the new node and the column name of each expression, in order.
    A plain branch name that the tree lacks raises MissingBranchError with a did-you-mean;
    an expression that does not compile raises ExpressionError (unknown identifiers in it
    raise MissingBranchError too).
    """
    from htt_tmva._root import compile_expression
    from htt_tmva.errors import branch_missing

    columns = list(columns)
    names = []
    for index, expression in enumerate(expressions):
        text = expression.strip()
        if _IDENTIFIER.match(text) and text not in columns:
            raise branch_missing(text, tree, file, columns)
        name = f"{prefix}{index}"
        node = compile_expression(
            node,
            "Define",
            name,
            f"static_cast<float>({text})",
            what=f"TMVA variable expression '{expression}'",
            columns=columns,
            tree=tree,
            file=file,
        )
        names.append(name)
    return node, names


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
