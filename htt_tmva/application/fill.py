"""The one pipeline of the application: each selected tree of a file is copied into the new
file without recompressing it (``TTree::CloneTree(-1, "fast")`` copies its baskets raw; a
friend copies only the event branch), and the score branches are added to the copy and
filled entry by entry, in C++ (:class:`pipeline.Filler`), from a scoring back-end: the
compiled models (:func:`compiled.score_compiled`) or Python (:func:`scores.run_pass1`).
Both back-ends read only the branches the models need and the event number; the filler
checks every entry's event number in the copied tree against the one that was scored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from htt_tmva._root import get_tree, open_root_file, root
from htt_tmva.application.inputs import InputInfo
from htt_tmva.application.scores import ChunkReader, Pass1Result, reader_columns, run_pass1
from htt_tmva.application.writer import OutputPlan, output_columns
from htt_tmva.errors import InputFileError, OutputError

log = logging.getLogger(__name__)


def write_trees(infos: Sequence[InputInfo], plan: OutputPlan, scoring) -> list[Pass1Result]:
    """Copy and score every tree of one input into ``plan.temp`` (created here)."""
    ROOT = root()
    compression = infos[0].compression
    target = ROOT.TFile(str(plan.temp), "RECREATE", "", compression)
    if not target or target.IsZombie():
        raise OutputError(f"cannot create '{plan.temp}'")
    try:
        results = []
        for info in infos:
            results.append(write_tree(info, plan, scoring, target))
            plan.started = True
    finally:
        target.Close()
    return results


def _directory(target, tree_path: str):
    """The folder of ``tree_path`` in ``target`` (made when missing)."""
    directory = target
    for part in tree_path.split("/")[:-1]:
        directory = directory.GetDirectory(part) or directory.mkdir(part)
    return directory


def write_tree(info: InputInfo, plan: OutputPlan, scoring, target) -> Pass1Result:
    """Copy one tree raw into ``target`` and fill its score branches from the back-end."""
    from htt_tmva.application.compiled import event_kind, score_compiled
    from htt_tmva.application.pipeline import declare

    ROOT, lib = root(), declare()
    names, event_branch = list(scoring.names), scoring.event_branch
    source_file = open_root_file(info.writing_source)
    try:
        tree = get_tree(source_file, info.tree_path)
        if not plan.full_copy and info.source is None:  # a new friend tree: the event only
            tree.SetBranchStatus("*", 0)
            tree.SetBranchStatus(event_branch, 1)
        for name in info.existing:  # replaced: not copied, written anew
            tree.SetBranchStatus(name, 0)
        directory = _directory(target, info.tree_path)
        directory.cd()
        clone = tree.CloneTree(-1, "fast")
        if not clone:
            raise OutputError(f"copying tree '{info.tree_path}' of '{info.writing_source}' failed")
        try:
            filler = lib.Filler(clone, tree, names, event_branch, event_kind(info))
        except Exception as exc:  # a C++ exception through cppyy
            raise InputFileError(f"{info.path}:{info.tree_path}: {_why(exc)}") from None
        if scoring.compiled is not None:
            result = score_compiled(
                scoring.compiled, info, filler, event_branch, scoring.nonfinite_default
            )
        else:
            result = _score_python(info, scoring, filler)
        columns = output_columns(info, names, event_branch, plan.full_copy)
        if [str(b.GetName()) for b in clone.GetListOfBranches()] != columns:
            lib.Reorder(clone, columns)  # replaced branches keep their place
        directory.cd()
        if clone.Write("", ROOT.TObject.kOverwrite) <= 0:
            raise OutputError(f"writing tree '{info.tree_path}' into '{plan.temp}' failed")
    finally:
        source_file.Close()
    return result


def _why(exc: Exception) -> str:
    return str(exc).strip().splitlines()[-1].strip().removeprefix("runtime_error:").strip()


class _ChunkFiller:
    """The Python back-end's hand-over: each chunk's scores to the C++ filler."""

    def __init__(self, filler, info: InputInfo):
        self.filler, self.info = filler, info

    def write(self, events: np.ndarray, scores: np.ndarray) -> None:
        events = np.ascontiguousarray(events).view(np.int64)
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        try:
            self.filler.FillChunk(len(events), events, scores)
        except Exception as exc:  # a C++ exception through cppyy
            raise InputFileError(
                f"scoring tree '{self.info.tree_path}' of '{self.info.path}' failed: "
                f"{_why(exc)}; nothing was written"
            ) from None


def _score_python(info: InputInfo, scoring, filler) -> Pass1Result:
    models, event_branch = scoring.models, scoring.event_branch
    columns = reader_columns(models.variables, event_branch, info.event_limit > 0)
    reader = ChunkReader(info.path, info.tree_path, columns, event_branch, info.event_unsigned)
    result = run_pass1(
        reader,
        info.entries,
        models,
        event_branch,
        _ChunkFiller(filler, info),
        scoring.chunk_size,
        scoring.nonfinite_default,
        event_limit=info.event_limit,
    )
    log.info(
        "%s: read %.1f s, inference %.1f s",
        info.path.name,
        result.seconds_read,
        result.seconds_predict,
    )
    return result
