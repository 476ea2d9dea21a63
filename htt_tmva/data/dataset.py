"""k-fold training datasets: one read pass per process, one tree per class and fold.

Every class tree of every fold file is filled by one worker with a compiled event loop
(:mod:`htt_tmva.data._copy`): for each process of the class, in config order, it reads the
chained input files once, applies the cut, computes the training weight (``Float_t``, as the
classic scripts wrote it) and fills the trees of its folds (``event % k == i``) in input
order. The output is therefore the same, entry for entry, whatever the number of workers.
Workers (threads; the loop releases the GIL) get whole classes when there are enough, else
folds. Trees are ``TTree::CloneTree`` copies of the inputs (every branch type, leaf lists
too) with the input's compression settings; trees written by other workers into scratch
files are copied into the fold files basket by basket, without recompression.

Each fold file carries a ``TNamed`` ``htt_tmva_fold`` whose title is the JSON
``{"fold": i, "folds": k, "event_branch": "<branch>"}``. Outputs are written to hidden
temporary files, verified (entry counts, metadata) and fsynced; only then are the old fold
files and configs removed and the new files renamed into place, the resolved configs last.
A crash during that last step leaves an incomplete set (files missing), never a mix of old
and new files that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from array import array
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from htt_tmva._files import ensure_writable_folder, temporary_name
from htt_tmva._progress import progress_bar
from htt_tmva._root import get_tree, open_root_file
from htt_tmva.config.stages import DatasetConfig, ProcessConfig
from htt_tmva.data import _copy
from htt_tmva.data.folds import FLOAT_EXACT_LIMIT
from htt_tmva.errors import (
    EmptySelectionError,
    ExpressionError,
    InputFileError,
    InvalidEventNumberError,
    NonFiniteError,
    OutputError,
    branch_missing,
)
from htt_tmva.expressions import translate

log = logging.getLogger(__name__)

FOLD_METADATA = "htt_tmva_fold"
_EXACT_LIMITS = {"Float_t": FLOAT_EXACT_LIMIT, "Double_t": 2**53}


@dataclass
class _Layout:
    """What the input files of one process hold."""

    branches: list[str]  # top-level branches in every file of the process, in file order
    scalars: dict[str, str]  # scalar branches of fundamental type -> ROOT type name
    entries: int = 0
    compression: int = 101  # of the first file


@dataclass
class _Plan:
    """One process: its branches to keep, its compiled expressions, its per-worker passes."""

    process: ProcessConfig
    layout: _Layout
    keep: list[str]
    expressions: _copy.Expressions
    passes: list = field(default_factory=list)
    keepalive: list = field(default_factory=list)


def fold_metadata(fold: int, folds: int, event_branch: str) -> str:
    """The title of the ``htt_tmva_fold`` TNamed of a fold file (compact JSON)."""
    return json.dumps(
        {"fold": fold, "folds": folds, "event_branch": event_branch}, separators=(",", ":")
    )


def read_fold_metadata(tfile) -> Optional[dict]:
    """The ``htt_tmva_fold`` record of an open fold file, or None if it has none."""
    named = tfile.Get(FOLD_METADATA)
    return json.loads(str(named.GetTitle())) if named else None


# --- inputs ------------------------------------------------------------------------------------


def _tree_layout(tree) -> tuple[list[str], dict[str, str]]:
    branches, scalars = [], {}
    for branch in tree.GetListOfBranches():
        name = str(branch.GetName())
        branches.append(name)
        leaves = branch.GetListOfLeaves()
        if branch.IsA().GetName() != "TBranch" or leaves.GetEntries() != 1:
            continue
        leaf = leaves.At(0)
        if not leaf.GetLeafCount() and leaf.GetLenStatic() == 1 and name == str(leaf.GetName()):
            scalars[name] = str(leaf.GetTypeName())
    return branches, scalars


def _inspect_process(config: DatasetConfig, process: ProcessConfig) -> _Layout:
    """Open every file of a process, check tree, event and weight branch; return the
    branches shared by all its files (with a warning naming those that are not)."""
    per_file: list[tuple[str, list[str], dict[str, str]]] = []
    entries, compression = 0, None
    for path in process.files:
        tfile = open_root_file(path)
        try:
            tree = get_tree(tfile, config.tree_path)
            branches, scalars = _tree_layout(tree)
            entries += tree.GetEntries()
            if compression is None:
                compression = tfile.GetCompressionSettings()
        finally:
            tfile.Close()
        if config.event_branch not in branches:
            raise branch_missing(config.event_branch, config.tree_path, str(path), branches)
        event_type = scalars.get(config.event_branch)
        if event_type not in _copy.EVENT_TYPES:
            raise InvalidEventNumberError(
                f"event_branch '{config.event_branch}' in tree '{config.tree_path}' of '{path}' "
                f"is not a single number of an integer or floating-point type "
                f"({event_type or 'array, object or leaf list'}); folds need one event number "
                "per entry"
            )
        if config.training_weight_branch in branches:
            raise OutputError(
                f"training_weight_branch '{config.training_weight_branch}' exists already in "
                f"tree '{config.tree_path}' of '{path}'; choose another name in {config.source}"
            )
        per_file.append((str(path), branches, scalars))
    common = [b for b in per_file[0][1] if all(b in names for _, names, _ in per_file)]
    for path, names, _ in per_file:
        missing = [b for b in {b: 0 for _, n, _ in per_file for b in n} if b not in names]
        if missing:
            log.warning(
                "process %s: branches %s are missing from '%s' and are dropped from the "
                "process's output (only branches in every file of a process are kept)",
                process.name,
                ", ".join(missing),
                path,
            )
    scalars = {b: t for b, t in per_file[0][2].items() if b in common}
    for path, _, types in per_file[1:]:
        for name, type_name in list(scalars.items()):
            if types.get(name) != type_name:
                raise InputFileError(
                    f"process '{process.name}': branch '{name}' is {type_name} in "
                    f"'{per_file[0][0]}' but {types.get(name)} in '{path}'; files chained "
                    "into one process need the same branch types"
                )
    return _Layout(common, scalars, entries, compression)


def _class_branches(
    config: DatasetConfig, layouts: dict[str, _Layout], classes: Optional[list[str]] = None
) -> dict[str, list[str]]:
    """Per process, the branches to keep: those shared by all processes of its class (of
    every class, or of ``classes`` only: ``layouts`` needs their processes only)."""
    keep = {}
    for cls in config.classes if classes is None else classes:
        members = [n for n, p in config.processes.items() if p.class_name == cls]
        first = layouts[members[0]].branches
        common = [b for b in first if all(b in layouts[m].branches for m in members)]
        dropped = sorted({b for m in members for b in layouts[m].branches} - set(common))
        if dropped:
            log.warning(
                "class %s: branches %s are not in every process of the class and are "
                "dropped from its tree",
                cls,
                ", ".join(dropped),
            )
        for m in members:
            for name in common:
                a, b = layouts[members[0]].scalars.get(name), layouts[m].scalars.get(name)
                if a != b:
                    raise InputFileError(
                        f"class '{cls}': branch '{name}' is {a or 'not a scalar'} in process "
                        f"'{members[0]}' but {b or 'not a scalar'} in process '{m}'; processes "
                        "merged into one class tree need the same branch types"
                    )
        keep.update({m: common for m in members})
    return keep


# --- expressions -------------------------------------------------------------------------------


def _compile_expressions(config: DatasetConfig, plans: list[_Plan]) -> None:
    """Compile the cut and weight of every process (translated by :mod:`htt_tmva.expressions`:
    TTreeFormula's double arithmetic), all in one declaration; on failure, compile them one
    by one to say which expression fails and why."""
    translated = {}
    for plan in plans:
        p = plan.process
        cut = translate(p.cut_string, f"cut_string of process '{p.name}'")
        weight = translate(p.weight_string, f"weight_string of process '{p.name}'")
        translated[p.name] = {"cut_string": cut.cpp, "weight_string": weight.cpp}
        inputs = _copy.used_columns(
            [*cut.branches, *weight.branches, config.event_branch], plan.layout.scalars
        )
        plan.expressions = _copy.Expressions(cut.cpp, weight.cpp, inputs)
    for plan in plans:
        plan.expressions.namespace = _copy.new_namespace()
    code = "".join(_copy.function_code(pl.expressions, pl.layout.scalars) for pl in plans)
    if not _copy.compile_functions(code):
        return
    for plan in plans:
        p, scalars = plan.process, plan.layout.scalars
        for kind, text in (("cut_string", p.cut_string), ("weight_string", p.weight_string)):
            cpp = translated[p.name][kind]
            alone = _copy.Expressions(
                cpp if kind == "cut_string" else "true",
                cpp if kind == "weight_string" else "1.",
                plan.expressions.inputs,
                _copy.new_namespace(),
            )
            messages = _copy.compile_functions(_copy.function_code(alone, scalars))
            if messages:
                _raise_expression_error(config, p, kind, text, messages, plan.layout)
    raise ExpressionError("the cut and weight expressions do not compile together")  # unlikely


def _raise_expression_error(config, process, kind, text, messages, layout) -> None:
    what = f"{kind} '{text}' of process '{process.name}'"
    unknown = [m.group(1) for m in map(_copy.UNDECLARED.search, messages) if m]
    if unknown:
        error = branch_missing(unknown[0], config.tree_path, str(process.files[0]), layout.branches)
        hint = f"if '{unknown[0]}' is meant as a function, ROOT does not know it"
        if unknown[0] in layout.branches:
            hint = f"'{unknown[0]}' is not a single number; expressions may use scalar branches"
        raise type(error)(f"{what}: {error} ({hint})") from None
    raise ExpressionError(f"{what} does not compile; ROOT says: " + "; ".join(messages)) from None


# --- the passes --------------------------------------------------------------------------------


def _input_chain(ROOT, config, plan: _Plan):
    """The chained inputs of a process with exactly the kept branches active.

    A class tree cloned from the chain gets the active branches; the loop copies the
    addresses of the active branches into the class trees at every input tree. Branches
    that only the cut or weight read stay inactive (the loop reads them on their own): had
    they been active, they would be cloned into the class tree of a class in which another
    process lacks them (stale values there). And they cannot be active but left out of
    the class tree either: ``TTree::CloneTree`` deletes the inactive branches from the clone
    but leaves their names in its by-name lookup, so ``CopyAddresses`` from an input where
    such a branch is active finds a deleted branch in the clone and sets an address through
    it, onto whichever branch reuses that memory (the event number, say: wrong folds).
    """
    chain = ROOT.TChain(config.tree_path)
    for path in plan.process.files:
        chain.Add(str(path))
    chain.SetBranchStatus("*", 0)
    for name in plan.keep:
        chain.SetBranchStatus(name, 1)
    return chain


def _prepare_pass(config, plan: _Plan, weight_buffer, done) -> object:
    """One worker's pass over one process (its outputs are added by the caller)."""
    ROOT = _copy.declare_helper()
    reads = list(dict.fromkeys([*plan.expressions.inputs, config.event_branch]))
    chain = _input_chain(ROOT, config, plan)
    buffers = {name: array("d", [0.0]) for name in reads}  # 8 bytes: room for any scalar
    work = ROOT.htt_tmva_dataset.Pass()
    work.chain = chain
    work.first_reads = ROOT.std.vector["std::string"](list(buffers))
    for name in reads:
        work.first_buffers.push_back(buffers[name])
    for name in plan.expressions.inputs:
        work.inputs.push_back(buffers[name])
    work.event = buffers[config.event_branch]
    event_type = plan.layout.scalars[config.event_branch]
    work.event_kind = _copy.EVENT_TYPES.index(event_type)
    work.exact_limit = float(_EXACT_LIMITS.get(event_type, 0))
    work.done = done
    work.weight_out = weight_buffer
    getattr(ROOT, f"htt_tmva_expr_{plan.expressions.namespace}").htt_tmva_bind(work)
    plan.keepalive.extend([chain, buffers])
    return work


def _class_tree(config, plan: _Plan, chain, tfile, weight_buffer):
    """An empty class tree: the kept branches of the process's input, plus the weight."""
    tfile.cd()
    chain.LoadTree(0)
    tree = chain.CloneTree(0)
    tree.SetDirectory(tfile)
    tree.SetName(plan.process.class_name)
    tree.SetTitle(plan.process.class_name)
    weight = config.training_weight_branch
    tree.Branch(weight, weight_buffer, f"{weight}/F")
    chain.GetTree().CopyAddresses(tree, True)  # the run connects it to each input in turn
    return tree


def _worker_count(config: DatasetConfig, workers: Optional[int]) -> int:
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not on Linux
            workers = os.cpu_count() or 1
    return max(1, min(workers, max(config.folds, len(config.classes))))


def _share_out(
    config: DatasetConfig, layouts: dict, workers: int
) -> tuple[list[dict[str, set]], bool]:
    """Per worker, the folds it writes of each class. With at least as many classes as
    workers, whole classes are shared out (balanced by entries; every event is read once);
    otherwise the folds are (every worker reads every event of every class). Returns the
    shares and whether whole classes were shared out."""
    classes = config.classes
    if workers > 1 and len(classes) >= workers:
        entries = {c: 0 for c in classes}
        for name, process in config.processes.items():
            entries[process.class_name] += layouts[name].entries
        shares: list[dict[str, set]] = [{} for _ in range(workers)]
        load = [0] * workers
        for cls in sorted(classes, key=lambda c: (-entries[c], classes.index(c))):
            worker = load.index(min(load))
            shares[worker][cls] = set(range(config.folds))
            load[worker] += entries[cls]
        return shares, True
    shares = [
        {cls: {f for f in range(config.folds) if f % workers == w} for cls in classes}
        for w in range(workers)
    ]
    return shares, False


def _open_output(ROOT, path: Path, compression: int):
    tfile = ROOT.TFile(str(path), "RECREATE", "", compression)
    if not tfile or tfile.IsZombie():
        raise OutputError(f"cannot write '{path}'")
    return tfile


def _run_passes(config, plans, temps, shares, by_class: bool, progress) -> dict:
    """Write every fold file; return per fold the expected entries per class.

    Worker 0 writes into the fold files; the others, when they write whole classes, into
    scratch files whose trees are then copied over basket by basket (no recompression)."""
    ROOT = _copy.declare_helper()
    workers, compression = len(shares), plans[0].layout.compression
    files = [_open_output(ROOT, t, compression) for t in temps]
    scratch: dict[int, list] = {}
    jobs: list[list] = [[] for _ in range(workers)]
    weight_buffers = [array("f", [0.0]) for _ in range(workers)]
    trees: dict[tuple[int, str], object] = {}
    counters: list = []
    try:
        for worker in range(1, workers if by_class else 0):
            if shares[worker]:
                scratch[worker] = [
                    _open_output(ROOT, t.with_suffix(f".w{worker}.root"), compression)
                    for t in temps
                ]
        for plan in plans:
            cls = plan.process.class_name
            for worker, share in enumerate(shares):
                folds = share.get(cls, set())
                if not folds:
                    continue
                counters.append(array("q", [0]))
                work = _prepare_pass(config, plan, weight_buffers[worker], counters[-1])
                targets = scratch.get(worker, files)
                for fold in range(config.folds):
                    if fold not in folds:
                        work.outputs.push_back(ROOT.nullptr)
                        continue
                    if (fold, cls) not in trees:
                        trees[(fold, cls)] = _class_tree(
                            config, plan, work.chain, targets[fold], weight_buffers[worker]
                        )
                    work.outputs.push_back(trees[(fold, cls)])
                plan.passes.append((work, folds))
                jobs[worker].append(work)
        _run_jobs(ROOT, jobs, plans, counters, progress)
        expected: dict[int, dict[str, int]] = {f: {} for f in range(config.folds)}
        for plan in plans:
            _check_pass(config, plan)
        for plan in plans:
            _log_pass(config, plan, expected)
        for worker, outputs in scratch.items():
            for fold, tfile in enumerate(outputs):
                tfile.cd()
                for cls in shares[worker]:
                    trees[(fold, cls)].Write("", ROOT.TObject.kOverwrite)
                tfile.Close()
                _copy_trees(ROOT, tfile.GetName(), files[fold], list(shares[worker]))
        for fold, tfile in enumerate(files):
            tfile.cd()
            for cls in config.classes:
                if (fold, cls) in trees and not any(cls in shares[w] for w in scratch):
                    trees[(fold, cls)].Write("", ROOT.TObject.kOverwrite)
            record = fold_metadata(fold, config.folds, config.event_branch)
            ROOT.TNamed(FOLD_METADATA, record).Write()
    finally:
        for tfile in files + [f for outputs in scratch.values() for f in outputs]:
            tfile.Close()
            name = Path(str(tfile.GetName()))
            if name not in temps and name.exists():
                name.unlink()
    return expected


def _run_jobs(ROOT, jobs, plans, counters, progress) -> None:
    """Run each worker's passes in its own thread (the loop releases the GIL)."""
    events = sum(p.layout.entries for p in plans)
    reads = sum(p.layout.entries * len(p.passes) for p in plans)

    def run_job(job):
        for work in job:
            ROOT.htt_tmva_dataset.run(work)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(run_job, job) for job in jobs if job]
        while wait(futures, timeout=0.1).not_done:  # returns as soon as all are done
            progress(sum(c[0] for c in counters) * events // max(reads, 1), events)
        for f in futures:
            f.result()
    progress(events, events)


def _copy_trees(ROOT, source: str, target, names: list[str]) -> None:
    """Copy trees into an open file basket by basket (same compression: no recompression)."""
    tfile = open_root_file(source)
    try:
        for name in names:
            tree = get_tree(tfile, name)
            target.cd()
            copy = tree.CloneTree(-1, "fast")
            copy.Write("", ROOT.TObject.kOverwrite)
    finally:
        tfile.Close()


def _check_pass(config: DatasetConfig, plan: _Plan) -> None:
    name, passes = plan.process.name, [work for work, _ in plan.passes]
    first = passes[0]
    if any(w.read_errors for w in passes):
        raise InputFileError(
            f"process '{name}': reading entries of tree '{config.tree_path}' failed "
            f"({first.read_errors} read errors) in {', '.join(map(str, plan.process.files))}"
        )
    if any(w.write_errors for w in passes):
        raise OutputError(f"process '{name}': writing the fold trees failed")
    if first.bad_event > 0:
        raise InvalidEventNumberError(
            f"process '{name}': {first.bad_event} events have a floating-point "
            f"'{config.event_branch}' that is not an integer or exceeds {first.exact_limit:.0f}, "
            "where the float no longer holds event numbers exactly, so folds cannot be assigned "
            "reliably; store the event number as an integer branch"
        )
    if first.selected == 0:  # every pass sees every event of its process
        raise EmptySelectionError(
            f"process '{name}': cut_string '{plan.process.cut_string}' selects no events "
            f"out of {first.total} in {len(plan.process.files)} file(s)"
        )
    nonfinite = sum(int(w.nonfinite) for w in passes)
    if nonfinite > 0:
        raise NonFiniteError(
            f"process '{name}': weight_string '{plan.process.weight_string}' gives "
            f"{nonfinite} non-finite (NaN or infinite) training weights in "
            f"'{config.training_weight_branch}' out of {first.selected} selected events"
        )


def _log_pass(config: DatasetConfig, plan: _Plan, expected: dict) -> None:
    p, first = plan.process, plan.passes[0][0]
    log.info(
        "process %s (class %s): %d events, %d after cut '%s'",
        p.name,
        p.class_name,
        first.total,
        first.selected,
        p.cut_string,
    )
    for fold in range(config.folds):
        work = next(w for w, folds in plan.passes if fold in folds)
        count = int(work.counts[fold])
        log.info("  fold %d: %d events, sum of weights %.6g", fold, count, work.sums[fold])
        if count == 0:
            log.warning("process %s has no events in fold %d", p.name, fold)
        expected[fold][p.class_name] = expected[fold].get(p.class_name, 0) + count


# --- outputs -----------------------------------------------------------------------------------


def _verify_fold_file(config: DatasetConfig, path: Path, fold: int, expected: dict) -> None:
    tfile = open_root_file(path)
    try:
        for cls, count in expected.items():
            entries = get_tree(tfile, cls).GetEntries()
            if entries != count:
                raise OutputError(
                    f"verification of '{path}' failed: tree '{cls}' has {entries} "
                    f"entries, expected {count}"
                )
        record = read_fold_metadata(tfile)
        if record != json.loads(fold_metadata(fold, config.folds, config.event_branch)):
            raise OutputError(f"verification of '{path}' failed: fold record {record}")
    finally:
        tfile.Close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(config: DatasetConfig, temps: list[Path], finals: list[Path]) -> None:
    """Replace the fold set: old files and configs out first, new files in, configs last."""
    configs = [final.with_suffix(".config.yaml") for final in finals]
    for temp in temps:
        _fsync(temp)
    for old in [*configs, *finals]:
        if old.exists():
            old.unlink()
    for temp, final in zip(temps, finals):
        os.replace(temp, final)
    for path, final in zip(configs, finals):
        config.write_resolved(path)
        log.info("wrote %s", final)
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a folder
        _fsync(finals[0].parent)


def create_training_dataset(
    config: DatasetConfig, workers: Optional[int] = None, progress=None
) -> list[Path]:
    """Build the k fold files of a dataset config; return their paths.

    ``workers`` (default: the cores available, at most k) share out the folds; the output
    does not depend on it. ``progress(done, total)`` is called with the events read so far
    (default: a progress bar on a terminal).
    """
    layouts = {name: _inspect_process(config, p) for name, p in config.processes.items()}
    keep = _class_branches(config, layouts)
    plans = [
        _Plan(p, layouts[name], keep[name], _copy.Expressions("", "", []))
        for name, p in config.processes.items()
    ]
    _compile_expressions(config, plans)

    def fill(temps: list[Path]) -> dict:
        with contextlib.ExitStack() as stack:
            bar = progress or stack.enter_context(progress_bar("dataset"))
            shares, by_class = _share_out(config, layouts, _worker_count(config, workers))
            return _run_passes(config, plans, temps, shares, by_class, bar)

    return write_fold_files(config, fill)


def write_fold_files(config: DatasetConfig, fill: Callable[[list[Path]], dict]) -> list[Path]:
    """The fold files of ``config``, all or nothing: ``fill(temps)`` writes them under
    temporary names and returns what each fold must hold; they are verified, committed
    (fsynced, renamed, the resolved config last) and their paths returned. On any failure
    the temporary files are removed and the old fold files stay."""
    ensure_writable_folder(config.output_path)
    finals = [config.fold_file(i) for i in range(config.folds)]
    temps = [temporary_name(final) for final in finals]
    try:
        expected = fill(temps)
        for fold, temp in enumerate(temps):
            _verify_fold_file(config, temp, fold, expected[fold])
        _commit(config, temps, finals)
    finally:
        for temp in temps:
            if temp.exists():
                temp.unlink()
    return finals
