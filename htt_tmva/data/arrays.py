"""Reading the class trees of a fold file into arrays.

Branches of one number per event are read by a small C++ loop (declared once per process
through ROOT's interpreter: no RDataFrame, whose start and just-in-time compilation cost
seconds); a tree that needs more (TMVA-style expression variables, arrays, friends, the fold
check by event numbers) is read with one RDataFrame AsNumpy. Both give the same values.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from htt_tmva._root import branch_names, get_tree, input_path, open_root_file, root
from htt_tmva.data.fold_identity import (
    EVENT_FOLD_COLUMN,
    ExpectedFold,
    check_event_folds,
    check_metadata,
    check_same_dataset,
    origin,
    read_fold_record,
    warn_unverified,
)
from htt_tmva.data.folds import fold_expression
from htt_tmva.errors import EmptySelectionError, InputFileError, NonFiniteError, branch_missing

if TYPE_CHECKING:
    from htt_tmva.config.stages import TrainingConfig

log = logging.getLogger(__name__)


@dataclass
class FoldData:
    """Arrays of one fold: inputs, class index per event, event weight per event; ``origin``
    names the fold file and how its fold was verified (recorded in the manifest)."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    variables: list[str]
    classes: list[str]
    origin: Optional[dict[str, Any]] = None

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask_or_index: np.ndarray) -> FoldData:
        return FoldData(
            self.x[mask_or_index],
            self.y[mask_or_index],
            self.w[mask_or_index],
            self.variables,
            self.classes,
            self.origin,
        )


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_READER = r"""
#include <TBranch.h>
#include <TLeaf.h>
#include <TTree.h>
namespace htt_tmva_arrays {
// Every entry of `tree`: the values of `n` one-value leaves of the tree itself, as double
// (entries x n, row-major); returns the number of branch reads that failed.
Long64_t read_leaves(TTree *tree, TLeaf *const *leaves, int n, double *out)
{
   const Long64_t entries = tree->GetEntries();
   Long64_t failed = 0;
   for (Long64_t i = 0; i < entries; ++i) {
      for (int j = 0; j < n; ++j) {
         failed += leaves[j]->GetBranch()->GetEntry(i) < 0;
         out[i * n + j] = leaves[j]->GetValue(0);
      }
   }
   return failed;
}
}
"""
#: leaves whose GetValue returns the stored number exactly as AsNumpy's array converted to
#: float64 holds it (bool, integers, float, double)
_SCALAR_LEAVES = frozenset(
    ["TLeafO", "TLeafB", "TLeafS", "TLeafI", "TLeafL", "TLeafG", "TLeafF", "TLeafD"]
)


def read_fold_file(
    path: Path,
    classes: Sequence[str],
    variables: Sequence[str],
    weight_branch: str,
    class_weights: Optional[dict[str, float]] = None,
    scale: float = 1.0,
    expected: Optional[ExpectedFold] = None,
) -> FoldData:
    """Read ``variables`` and ``weight_branch`` of each class tree of a fold file.

    The class index of an event is the position of its tree in ``classes``. The event
    weight is ``weight_branch * class_weights[class] * scale``. Missing trees or
    branches, empty classes, non-finite values and a negative class total are refused.
    With ``expected``, a file that holds another fold is refused (by its ``htt_tmva_fold``
    record, else by its event numbers, read in the same pass); ``FoldData.origin`` then
    says how the fold was verified.
    """
    path = input_path(path)
    xs, ys, ws = [], [], []
    tfile = open_root_file(path)
    record, by_events, unverified = None, False, []
    try:
        if expected is not None:
            meta = read_fold_record(tfile, path)
            if meta is not None:
                record = check_metadata(meta, expected, path)
            by_events = meta is None
        for index, cls in enumerate(classes):
            tree = get_tree(tfile, cls)
            names = branch_names(tree)
            expressions = [v for v in variables if v not in names and not _PLAIN.match(v)]
            for column in [*variables, weight_branch]:
                if column not in names and column not in expressions:
                    raise branch_missing(column, cls, str(path), names)
            if tree.GetEntries() == 0:
                raise EmptySelectionError(f"class '{cls}' has no events in '{path}'")
            check_events = by_events and expected.event_branch in names
            if by_events and not check_events:
                unverified.append(cls)
            columns = list(dict.fromkeys([*variables, weight_branch]))
            leaves = None if expressions or check_events else _scalar_leaves(tree, columns)
            if leaves is not None:
                data = _read_leaves(tree, leaves, columns, cls, path)
            else:
                check = expected if check_events else None
                data = _read_frame(tree, variables, weight_branch, names, check, cls, path)
            x = np.column_stack([data[v] for v in variables])
            w = data[weight_branch]
            _check_finite(x, w, variables, weight_branch, cls, path)
            w = w * (class_weights or {}).get(cls, 1.0) * scale
            _check_weights(w, cls, path)
            xs.append(x)
            ys.append(np.full(len(w), index, dtype=np.int64))
            ws.append(w)
    finally:
        tfile.Close()
    if by_events:
        if unverified:
            warn_unverified(path, expected, unverified)
        checked = len(unverified) < len(classes)
        record = origin(
            path,
            expected,
            "event numbers" if checked else "not verified",
            expected.event_branch if checked else None,
            unverified,
        )
    if record is not None:
        log.debug("'%s' is %s (verified by %s)", path, expected.describe(), record["verified_by"])
    return FoldData(
        np.concatenate(xs),
        np.concatenate(ys),
        np.concatenate(ws),
        list(variables),
        list(classes),
        origin=record,
    )


def _scalar_leaves(tree, columns: Sequence[str]) -> Optional[list]:
    """The leaves of ``columns`` when each is the one leaf of a plain branch of ``tree``
    itself (not of a friend) of that name, holding one number per entry; else None."""
    ROOT = root()
    leaves = []
    for column in columns:
        leaf = tree.GetLeaf(column)
        if not leaf:
            return None
        branch = leaf.GetBranch()
        if (
            leaf.IsA().GetName() not in _SCALAR_LEAVES
            or leaf.GetLeafCount()
            or leaf.GetLenStatic() != 1
            or branch.IsA().GetName() != "TBranch"
            or branch.GetNleaves() != 1
            or str(branch.GetName()) != column
            or ROOT.addressof(branch.GetTree()) != ROOT.addressof(tree)
        ):
            return None
        leaves.append(leaf)
    return leaves


def _read_leaves(tree, leaves: list, columns: Sequence[str], cls: str, path) -> dict:
    """``columns`` (their ``leaves``) of every entry of ``tree`` as float64, by the C++ loop."""
    ROOT = root()
    declared = hasattr(ROOT, "htt_tmva_arrays")
    if not declared and not ROOT.gInterpreter.Declare(_READER):  # pragma: no cover - a bug
        raise RuntimeError("the column reader does not compile")
    out = np.empty((int(tree.GetEntries()), len(leaves)), dtype=np.float64)
    pointers = ROOT.std.vector["TLeaf*"](leaves)
    failed = ROOT.htt_tmva_arrays.read_leaves(tree, pointers.data(), len(leaves), out)
    if failed:
        raise InputFileError(
            f"tree '{cls}' of '{path}' cannot be read: {failed} branch reads failed "
            "(a damaged file?)"
        )
    return {column: out[:, j] for j, column in enumerate(columns)}


def _read_frame(tree, variables, weight_branch, names, expected, cls, path) -> dict:
    """The variables (TMVA-style expressions evaluated, as float) and the weight as float64,
    by one RDataFrame AsNumpy; with ``expected``, the events' folds are checked."""
    ROOT = root()
    frame, read = ROOT.RDataFrame(tree), {v: v for v in variables}
    expressions = [v for v in variables if v not in names and not _PLAIN.match(v)]
    if expressions:  # TMVA-style variables (``var1+var2``): evaluated, as float
        from htt_tmva.data.columns import define_inputs

        frame, defined = define_inputs(frame, expressions, tree=cls, file=str(path), columns=names)
        read.update(zip(expressions, defined))
    columns = [*dict.fromkeys(read.values()), weight_branch]
    if expected is not None:
        event_type = str(frame.GetColumnType(expected.event_branch))
        frame = frame.Define(
            EVENT_FOLD_COLUMN, fold_expression(expected.event_branch, expected.folds, event_type)
        )
        columns.append(EVENT_FOLD_COLUMN)
    data = frame.AsNumpy(columns)
    if expected is not None:
        check_event_folds(data[EVENT_FOLD_COLUMN], expected, cls, path)
    out = {v: np.asarray(data[read[v]], dtype=np.float64) for v in variables}
    out[weight_branch] = np.asarray(data[weight_branch], dtype=np.float64)
    return out


def _check_finite(x, w, variables, weight_branch, cls, path) -> None:
    bad = [(v, int((~np.isfinite(x[:, i])).sum())) for i, v in enumerate(variables)]
    bad.append((weight_branch, int((~np.isfinite(w)).sum())))
    bad = [(v, n) for v, n in bad if n]
    if bad:
        listed = ", ".join(f"'{v}' in {n} events" for v, n in bad)
        raise NonFiniteError(
            f"class '{cls}' of '{path}' has non-finite values (NaN or inf): {listed}"
        )


def _check_weights(w, cls, path) -> None:
    total = float(w.sum())
    negative = int((w < 0).sum())
    if total <= 0:
        raise EmptySelectionError(
            f"class '{cls}' of '{path}' has a total weight of {total:.6g} (not positive): "
            "it can be neither trained on nor tested; check the weights and class_weights"
        )
    log.info(
        "class %s: %d events, sum of weights %.6g%s",
        cls,
        len(w),
        total,
        f", {negative} with negative weight" if negative else "",
    )


def load_training_data(config: TrainingConfig, fold: int) -> FoldData:
    """The arrays of ``datasets[fold]`` with event, class and global weights applied; refused
    unless the file holds fold ``fold`` (its metadata, else its event numbers)."""
    expected = ExpectedFold(
        fold,
        config.folds,
        config.event_branch,
        role=f"entry {fold} of 'datasets' in {config.source}",
    )
    check_same_dataset(config.datasets, f"'datasets' in {config.source}")
    return read_fold_file(
        config.datasets[fold],
        config.classes,
        config.variables,
        config.event_weights,
        config.class_weights,
        config.global_weight_scale,
        expected,
    )
