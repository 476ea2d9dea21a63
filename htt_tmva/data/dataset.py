"""k-fold training datasets: one read pass per process, one tree per class and fold.

For every process, one RDataFrame over its chained files applies the cut, computes the
training weight and books one lazy Snapshot per fold (``event % k == i``); all processes
run together. The per-process fold files, in a scratch folder next to the output, are
then merged per fold with ROOT's TFileMerger (fast, no recompression), so processes of
the same class end up in one tree. Outputs are written atomically after their entry
counts are verified; the scratch folder never outlives the call.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from htt_tmva._files import atomic_outputs, ensure_writable_folder
from htt_tmva._root import branch_names, compile_expression, get_tree, open_root_file, root
from htt_tmva.config.stages import DatasetConfig, ProcessConfig
from htt_tmva.data.folds import FLOAT_EXACT_LIMIT, fold_expression
from htt_tmva.errors import (
    EmptySelectionError,
    InvalidEventNumberError,
    NonFiniteError,
    OutputError,
    branch_missing,
)

log = logging.getLogger(__name__)

_FOLD = "__htt_tmva_fold"
_EXACT_LIMITS = {
    "Float_t": FLOAT_EXACT_LIMIT,
    "float": FLOAT_EXACT_LIMIT,
    "Double_t": 2**53,
    "double": 2**53,
}


@dataclass
class _ProcessPass:
    """The lazy RDataFrame graph of one process and its booked results."""

    process: ProcessConfig
    columns: list[str]
    chain: object = None
    frame: object = None
    n_total: object = None
    n_selected: object = None
    n_nonfinite: object = None
    n_bad_event: object = None
    exact_limit: float = 0.0
    fold_counts: list = field(default_factory=list)
    fold_sums: list = field(default_factory=list)
    snapshots: list = field(default_factory=list)


def _input_columns(config: DatasetConfig, process: ProcessConfig) -> list[str]:
    """Open every file of a process, check tree and event branch; return the common branches."""
    common: list[str] | None = None
    for path in process.files:
        tfile = open_root_file(path)
        try:
            tree = get_tree(tfile, config.tree_path)
            names = branch_names(tree)
            if config.event_branch not in names:
                raise branch_missing(config.event_branch, config.tree_path, str(path), names)
            if config.training_weight_branch in names:
                raise OutputError(
                    f"training_weight_branch '{config.training_weight_branch}' exists already in "
                    f"tree '{config.tree_path}' of '{path}'; choose another name in {config.source}"
                )
            common = names if common is None else [n for n in common if n in names]
        finally:
            tfile.Close()
    return common or []


def _book_process(
    config: DatasetConfig, process: ProcessConfig, columns: list[str]
) -> _ProcessPass:
    ROOT = root()
    work = _ProcessPass(process=process, columns=columns)
    work.chain = ROOT.TChain(config.tree_path)
    for path in process.files:
        work.chain.Add(str(path))
    df = ROOT.RDataFrame(work.chain)
    where = {"columns": columns, "tree": config.tree_path, "file": str(process.files[0])}
    work.n_total = df.Count()
    # TTree::Draw semantics: any non-zero value passes, so "1" or "(a>0)*(b>0)" work too
    # (RDataFrame's Filter alone refuses expressions that are not of type bool).
    selected = compile_expression(
        df,
        "Filter",
        f"static_cast<bool>({process.cut_string})",
        what=f"cut_string '{process.cut_string}' of process '{process.name}'",
        **where,
    )
    weight = config.training_weight_branch
    selected = compile_expression(
        selected,
        "Define",
        weight,
        f"static_cast<double>({process.weight_string})",
        what=f"weight_string '{process.weight_string}' of process '{process.name}'",
        **where,
    )
    event = config.event_branch
    event_type = str(df.GetColumnType(event))
    if event_type in _EXACT_LIMITS:
        work.exact_limit = _EXACT_LIMITS[event_type]
        work.n_bad_event = selected.Filter(
            f"std::abs({event}) > {work.exact_limit} || {event} != std::floor({event})"
        ).Count()
    selected = selected.Define(_FOLD, fold_expression(event, config.folds, event_type))
    work.n_selected = selected.Count()
    work.n_nonfinite = selected.Filter(f"!std::isfinite({weight})").Count()
    work.frame = selected
    return work


def _book_snapshots(config: DatasetConfig, work: _ProcessPass, scratch: Path) -> None:
    ROOT = root()
    options = ROOT.RDF.RSnapshotOptions()
    options.fLazy = True
    out_columns = [*work.columns, config.training_weight_branch]
    for fold in range(config.folds):
        in_fold = work.frame.Filter(f"{_FOLD} == {fold}")
        work.fold_counts.append(in_fold.Count())
        work.fold_sums.append(in_fold.Sum(config.training_weight_branch))
        target = scratch / f"fold{fold}" / f"{work.process.name}.root"
        target.parent.mkdir(exist_ok=True)
        work.snapshots.append(
            in_fold.Snapshot(work.process.class_name, str(target), out_columns, options)
        )


def _check_results(config: DatasetConfig, work: _ProcessPass) -> None:
    name, weight = work.process.name, config.training_weight_branch
    if work.n_bad_event is not None and work.n_bad_event.GetValue() > 0:
        raise InvalidEventNumberError(
            f"process '{name}': {work.n_bad_event.GetValue()} events have a floating-point "
            f"'{config.event_branch}' that is not an integer or exceeds {work.exact_limit:.0f}, "
            "where the float no longer holds event numbers exactly, so folds cannot be assigned "
            "reliably; store the event number as an integer branch"
        )
    n_selected = work.n_selected.GetValue()
    if n_selected == 0:
        raise EmptySelectionError(
            f"process '{name}': cut_string '{work.process.cut_string}' selects no events "
            f"out of {work.n_total.GetValue()} in {len(work.process.files)} file(s)"
        )
    if work.n_nonfinite.GetValue() > 0:
        raise NonFiniteError(
            f"process '{name}': weight_string '{work.process.weight_string}' gives "
            f"{work.n_nonfinite.GetValue()} non-finite (NaN or infinite) training weights "
            f"in '{weight}' out of {n_selected} selected events"
        )


def _log_results(config: DatasetConfig, work: _ProcessPass) -> None:
    p = work.process
    log.info(
        "process %s (class %s): %d events, %d after cut '%s'",
        p.name,
        p.class_name,
        work.n_total.GetValue(),
        work.n_selected.GetValue(),
        p.cut_string,
    )
    for fold in range(config.folds):
        count = work.fold_counts[fold].GetValue()
        log.info(
            "  fold %d: %d events, sum of weights %.6g",
            fold,
            count,
            work.fold_sums[fold].GetValue(),
        )
        if count == 0:
            log.warning("process %s has no events in fold %d", p.name, fold)


def _common_columns(config: DatasetConfig) -> dict[str, list[str]]:
    """Per process, the input branches to keep: those shared by all processes of its class."""
    per_process = {name: _input_columns(config, p) for name, p in config.processes.items()}
    keep = {}
    for cls in config.classes:
        members = [n for n, p in config.processes.items() if p.class_name == cls]
        common = [c for c in per_process[members[0]] if all(c in per_process[m] for m in members)]
        dropped = sorted({c for m in members for c in per_process[m]} - set(common))
        if dropped:
            log.warning(
                "class %s: branches %s are not in every process of the class and are "
                "dropped from its tree",
                cls,
                ", ".join(dropped),
            )
        keep.update({m: common for m in members})
    return keep


def _merge_fold(scratch_fold: Path, target: Path, processes: list[str]) -> None:
    ROOT = root()
    merger = ROOT.TFileMerger(False, False)
    merger.SetPrintLevel(0)
    merger.SetFastMethod(True)
    # Fast merging copies the compressed baskets only if the output has the compression
    # settings of the inputs; otherwise every basket is decompressed and recompressed.
    probe = ROOT.TFile.Open(str(scratch_fold / f"{processes[0]}.root"))
    compression = probe.GetCompressionSettings()
    probe.Close()
    if not merger.OutputFile(str(target), "RECREATE", compression):
        raise OutputError(f"cannot write '{target}'")
    for name in processes:
        merger.AddFile(str(scratch_fold / f"{name}.root"), False)
    if not merger.Merge():
        raise OutputError(f"merging the process trees into '{target}' failed")


def _verify_fold_file(path: Path, expected: dict[str, int]) -> None:
    tfile = open_root_file(path)
    try:
        for cls, count in expected.items():
            entries = get_tree(tfile, cls).GetEntries()
            if entries != count:
                raise OutputError(
                    f"verification of '{path}' failed: tree '{cls}' has {entries} "
                    f"entries, expected {count}"
                )
    finally:
        tfile.Close()


def create_training_dataset(config: DatasetConfig) -> list[Path]:
    """Build the k fold files of a dataset config; return their paths."""
    ROOT = root()
    columns = _common_columns(config)
    passes = [_book_process(config, p, columns[name]) for name, p in config.processes.items()]
    ensure_writable_folder(config.output_path)
    finals = [config.fold_file(i) for i in range(config.folds)]
    with tempfile.TemporaryDirectory(dir=config.output_path, prefix=".htt_tmva_scratch_") as tmp:
        scratch = Path(tmp)
        for work in passes:
            _book_snapshots(config, work, scratch)
        ROOT.RDF.RunGraphs([s for w in passes for s in w.snapshots])
        for work in passes:
            _check_results(config, work)
            _log_results(config, work)
        with atomic_outputs(finals) as temps:
            for fold, target in enumerate(temps):
                _merge_fold(scratch / f"fold{fold}", target, [w.process.name for w in passes])
                expected: dict[str, int] = {}
                for w in passes:
                    cls = w.process.class_name
                    expected[cls] = expected.get(cls, 0) + w.fold_counts[fold].GetValue()
                _verify_fold_file(target, expected)
    for final in finals:
        config.write_resolved(final.with_suffix(".config.yaml"))
        log.info("wrote %s", final)
    return finals
