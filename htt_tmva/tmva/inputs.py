"""The input variables of TMVA weight files, evaluated on ROOT ntuples.

TMVA evaluates each variable's ``Expression`` with ROOT's expression syntax (TTreeFormula: the
branches read as double) and stores the result as a float. Here each expression is parsed by
the grammar of :mod:`htt_tmva.expressions` (a weight file cannot run code) and becomes a small
JIT-compiled C++ function of its branches as doubles, used in an RDataFrame ``Define`` and cast
to float; integer and double branches are accepted. Spectators are never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from htt_tmva.data.columns import define_inputs

__all__ = ["define_inputs", "input_expressions", "read_inputs"]


def input_expressions(models: Sequence) -> list[str]:
    """The distinct variable expressions of one or more models, in first-seen order."""
    seen: list[str] = []
    for model in models:
        for expression in model.expressions:
            if expression not in seen:
                seen.append(expression)
    return seen


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
