"""The reading of the dataset step: each input file once, for every process that selects from it.

An input file (with its friends) is a *unit*: one compiled pass (:mod:`htt_tmva.data._copy`)
reads it and fills, for each process listing the file and each fold, a *segment*: a tree
with the branches of the process's class tree, in a scratch file of its own. Units run in
parallel (threads; the loop releases the GIL), at most ``workers`` at a time, so memory
depends on the workers, not on the number of classes or processes. A class tree is then
the concatenation of its segments, baskets copied without recompression, in a fixed order
(processes in config order, each process's files in its order, entries in input order):
the output is the same, entry for entry, for any number of workers.

Every segment of a class has the structure of one *template*: the tree of the class's first
process's first file with the class's branches active, cloned (``TTree::CloneTree(0)``)
and connected to the unit's input with ``TTree::CopyAddresses`` while only those branches
are active; branches copied from friends are added with ``TTree::Branch``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from array import array
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from htt_tmva._root import get_tree, is_remote, open_root_file
from htt_tmva.config.stages import DatasetConfig, ProcessConfig
from htt_tmva.data import _copy
from htt_tmva.data.folds import FLOAT_EXACT_LIMIT
from htt_tmva.data.inputs import FileLayout, Layout
from htt_tmva.errors import (
    DatasetPartError,
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

_EXACT_LIMITS = {"Float_t": FLOAT_EXACT_LIMIT, "Double_t": 2**53}
#: memory for the baskets of the segments of one unit, whatever their number
UNIT_BASKET_BYTES = 4_000_000
#: memory estimates of a unit being read (ROOT 6.40, measured): per branch read, its basket
#: unzipped and compressed; per branch of a segment, ROOT's objects; its baskets held twice
INPUT_BRANCH_BYTES = 64_000
SEGMENT_BRANCH_BYTES = 3_000
#: estimated memory of the units read at once, per worker: two units with many segments
#: (a signal file read by 16 processes) are not read together, one of them and a lighter
#: unit are
READ_BYTES_PER_WORKER = 19_000_000
#: read-ahead cache of a remote (root://) input (ROOT's default is the input's cluster size,
#: tens of MB); local inputs are read without one (the page cache serves them as fast, and
#: each cache costs its size in memory per file read at once)
INPUT_CACHE_BYTES = 4_000_000


@dataclass
class Plan:
    """One process: its branches to keep, its compiled cut and weight, its counts."""

    process: ProcessConfig
    layout: Layout
    keep: list[str]
    expressions: Optional[_copy.Expressions] = None  # set by compile_expressions
    index: int = 0  # position in the config: names its segments
    total: int = 0
    selected: int = 0
    nonfinite: int = 0
    bad_event: int = 0
    write_errors: int = 0
    counts: dict[int, int] = field(default_factory=dict)
    sums: dict[int, float] = field(default_factory=dict)


def segment_name(plan: Plan, fold: int) -> str:
    return f"p{plan.index}_f{fold}"


# --- cuts and weights --------------------------------------------------------------------------


def selection_expressions(process: ProcessConfig) -> tuple[str, str]:
    """The C++ cut and weight of a process: the one place where a process's ``cut_string``
    and ``weight_string`` become the code that selects and weights its events (translated by
    :mod:`htt_tmva.expressions`: TTreeFormula's double arithmetic and grouping)."""
    cut = translate(process.cut_string, f"cut_string of process '{process.name}'")
    weight = translate(process.weight_string, f"weight_string of process '{process.name}'")
    return cut.cpp, weight.cpp


def compile_expressions(config: DatasetConfig, plans: list[Plan]) -> None:
    """Compile the cut and weight of every process, all in one declaration, each distinct
    function once (processes with the same weight share it); on failure, compile them one
    by one to say which expression fails and why."""
    functions: dict[str, _copy.Function] = {}
    for plan in plans:
        made = []
        for kind, cpp in zip(("cut", "weight"), selection_expressions(plan.process)):
            function = _copy.make_function(kind, cpp, plan.layout.scalars)
            if function.body not in functions:
                function.namespace = _copy.new_namespace()
                functions[function.body] = function
            made.append(functions[function.body])
        plan.expressions = _copy.Expressions(*made)
    if not _copy.compile_functions("".join(map(_copy.function_code, functions.values()))):
        return
    for plan in plans:
        for function in (plan.expressions.cut, plan.expressions.weight):
            alone = replace(function, namespace=_copy.new_namespace())
            messages = _copy.compile_functions(_copy.function_code(alone))
            if messages:
                kind = f"{function.kind}_string"
                text = getattr(plan.process, kind)  # the user's expression, not its C++
                _raise_expression_error(config, plan.process, kind, text, messages, plan.layout)
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


# --- templates and units -----------------------------------------------------------------------


class _Templates:
    """Per class, the input tree whose clones are its segments (kept open during the run)."""

    def __init__(self, ROOT, config: DatasetConfig, plans: list[Plan]):
        self.config, self.files, self.trees, self.main = config, [], {}, {}
        for plan in plans:
            cls = plan.process.class_name
            if cls in self.trees:
                continue
            first: FileLayout = plan.layout.files[0]
            tfile = open_root_file(first.path)
            self.files.append(tfile)
            tree = get_tree(tfile, config.tree_path)
            # never read, only cloned: without this, every CloneTree gives it a read cache
            # of the input's cluster size (30 MB allocated per class)
            tree.SetCacheSize(0)
            main = [b for b in plan.keep if b not in first.friend_branches]
            _copy.set_active(ROOT, tree, main)
            self.trees[cls], self.main[cls] = tree, main

    def close(self) -> None:
        for tfile in self.files:
            tfile.Close()


@dataclass
class _Unit:
    """One input file and the processes (plans) that read it."""

    path: object
    layout: FileLayout
    plans: list[Plan]
    work: object = None
    selections: list = field(default_factory=list)  # per plan, its C++ Selection
    keepalive: list = field(default_factory=list)
    tfile: object = None
    scratch: object = None
    done: object = None


def _units(plans: list[Plan]) -> list[_Unit]:
    units: dict = {}
    for plan in plans:
        for layout in plan.layout.files:
            unit = units.setdefault(layout.path, _Unit(layout.path, layout, []))
            if plan not in unit.plans:
                unit.plans.append(plan)
    return list(units.values())


def unit_memory(unit: _Unit, folds: int) -> int:
    """Estimated bytes a unit holds while it is read: its input baskets and its segments."""
    read = len({b for plan in unit.plans for b in plan.keep})
    width = max(len(plan.keep) for plan in unit.plans) + 1  # with the training weight
    segments = len(unit.plans) * folds
    baskets = min(UNIT_BASKET_BYTES, segments * width * 32000)
    return read * INPUT_BRANCH_BYTES + 2 * baskets + segments * width * SEGMENT_BRANCH_BYTES


def next_unit(pending: list[int], running: list[int], costs: list[int], workers: int):
    """The first pending unit that can be read now: at most ``workers`` at once, and their
    estimated memory within READ_BYTES_PER_WORKER per worker (one unit always runs)."""
    if len(running) >= workers:
        return None
    budget = workers * READ_BYTES_PER_WORKER - sum(costs[i] for i in running)
    for number in pending:
        if not running or costs[number] <= budget:
            return number
    return None


def input_cache_bytes(path) -> int:
    """The read cache of an input file: INPUT_CACHE_BYTES for a remote file, none for a local
    one."""
    return INPUT_CACHE_BYTES if is_remote(path) else 0


def scratch_path(folder: Path, number: int) -> Path:
    return folder / f"unit{number}.root"


def _open_output(ROOT, path: Path, compression: int):
    tfile = ROOT.TFile(str(path), "RECREATE", "", compression)
    if not tfile or tfile.IsZombie():
        raise OutputError(f"cannot write '{path}'")
    return tfile


def _prepare(ROOT, config, unit: _Unit, number, folds, templates, scratch, compression):
    """Open a unit's input and friends, connect the buffers, create its segment trees."""
    unit.tfile = open_root_file(unit.path)
    tree = get_tree(unit.tfile, config.tree_path)
    tree.SetCacheSize(input_cache_bytes(unit.path))
    for index, friend in enumerate(unit.layout.friend_files):
        element = tree.AddFriend(f"htt_tmva_friend{index}={config.tree_path}", str(friend))
        if not element or not element.GetTree():
            raise InputFileError(f"friend file '{friend}' cannot be attached to '{unit.path}'")
    union = list(dict.fromkeys(b for plan in unit.plans for b in plan.keep))
    _copy.set_active(ROOT, tree, union)
    helper = ROOT.htt_tmva_dataset
    work = helper.Unit()
    work.tree, work.folds = tree, config.folds
    # the cuts' inputs are read for every event, the weights' only for selected ones
    first = [config.event_branch]
    for plan in unit.plans:
        first += plan.expressions.cut.inputs
    first = list(dict.fromkeys(first))
    later = [n for p in unit.plans for n in p.expressions.weight.inputs if n not in first]
    buffers = {name: array("d", [0.0]) for name in [*first, *later]}
    for name in first:
        helper.add_input(work, 0, tree.GetBranch(name), buffers[name], 0)
    for name in dict.fromkeys(later):
        helper.add_input(work, 1, tree.GetBranch(name), buffers[name], 0)
    work.event = buffers[config.event_branch]
    event_type = unit.layout.scalars[config.event_branch]
    work.event_kind = _copy.EVENT_TYPES.index(event_type)
    work.exact_limit = float(_EXACT_LIMITS.get(event_type, 0))
    friend_trees = [f.GetTree() for f in tree.GetListOfFriends()]
    for ftree, kind in zip(friend_trees, unit.layout.friend_events):
        if kind is None:
            continue
        buffer = array("d", [0.0])
        branch = ftree.GetBranch(config.event_branch)
        helper.add_input(work, 2, branch, buffer, _copy.EVENT_TYPES.index(kind))
        unit.keepalive.append(buffer)
    unit.scratch = _open_output(ROOT, scratch_path(scratch, number), compression)
    selections = {}
    for plan in unit.plans:
        weight_buffer = array("f", [0.0])
        selection = helper.add_selection(work, weight_buffer)
        unit.keepalive.append(weight_buffer)
        for weight, function in enumerate((plan.expressions.cut, plan.expressions.weight)):
            for name in function.inputs:
                helper.add_expression_input(selection, weight, buffers[name])
            getattr(ROOT, f"htt_tmva_expr_{function.namespace}").htt_tmva_bind(selection)
        selections[plan.process.name] = (selection, weight_buffer, {})
    basket = _basket_size(len(unit.plans) * len(folds), max(len(p.keep) for p in unit.plans) + 1)
    for cls in dict.fromkeys(plan.process.class_name for plan in unit.plans):
        _copy.set_active(ROOT, tree, templates.main[cls])  # what the template has
        for plan in (p for p in unit.plans if p.process.class_name == cls):
            selection, weight_buffer, segments = selections[plan.process.name]
            for fold in sorted(folds):
                segments[fold] = _segment(config, plan, fold, tree, templates, unit.scratch,
                                          weight_buffer, buffers, basket)  # fmt: skip
    for plan in unit.plans:
        selection, _, segments = selections[plan.process.name]
        for fold, segment in segments.items():
            helper.set_output(selection, fold, segment)
    _copy.set_active(ROOT, tree, union)
    unit.done = array("q", [0])
    work.done = unit.done
    unit.work = work
    unit.selections = [selections[plan.process.name][0] for plan in unit.plans]
    unit.keepalive.extend([tree, buffers, selections])


def _basket_size(segments: int, branches: int) -> int:
    """Basket size of the segments of a unit: their baskets together fit UNIT_BASKET_BYTES
    (32000, ROOT's default, at most; 1000 at least)."""
    return max(1000, min(32000, UNIT_BASKET_BYTES // max(1, segments * branches)))


def _segment(config, plan, fold, tree, templates, scratch, weight_buffer, buffers, basket):
    """An empty segment: a clone of the class template, connected to ``tree``'s buffers
    (whose active branches are those of the template). Its baskets are written when full
    (no auto-flush: ROOT would then grow them to hold a whole cluster of every segment)."""
    cls = plan.process.class_name
    scratch.cd()
    segment = templates.trees[cls].CloneTree(0)
    segment.SetDirectory(scratch)
    segment.SetName(segment_name(plan, fold))
    segment.SetTitle(cls)
    tree.CopyAddresses(segment)
    for name in plan.keep:
        if name in templates.main[cls]:
            continue
        branch = tree.GetBranch(name)
        leaf = branch.GetListOfLeaves().At(0)
        address = buffers[name] if name in buffers else leaf.GetValuePointer()
        segment.Branch(name, address, str(branch.GetTitle()))
    weight = config.training_weight_branch
    segment.Branch(weight, weight_buffer, f"{weight}/F")
    segment.SetAutoFlush(0)
    segment.SetAutoSave(0)
    segment.SetBasketSize("*", basket)
    return segment


def _finish(ROOT, config, unit: _Unit) -> None:
    """Check a unit's counts, write its segments and close its files."""
    work = unit.work
    if work.read_errors:
        raise InputFileError(
            f"reading entries of tree '{config.tree_path}' of '{unit.path}' failed "
            f"({work.read_errors} read errors)"
        )
    if work.misaligned:
        index = int(work.misaligned_friend)
        friend = unit.layout.friend_files[index] if unit.layout.friend_files else "?"
        raise InputFileError(
            f"friend file '{friend}' does not match its main file '{unit.path}': "
            f"'{config.event_branch}' differs in {work.misaligned} of {work.total} entries "
            f"(first at entry {work.first_misaligned}); friends must hold the same events in "
            "the same order"
        )
    helper = ROOT.htt_tmva_dataset
    for plan, selection in zip(unit.plans, unit.selections):
        plan.total += int(work.total)
        plan.selected += int(selection.selected)
        plan.nonfinite += int(selection.nonfinite)
        plan.bad_event += int(selection.bad_event)
        plan.write_errors += int(selection.write_errors)
        for fold in range(config.folds):
            plan.counts[fold] = plan.counts.get(fold, 0) + int(helper.count(selection, fold))
            plan.sums[fold] = plan.sums.get(fold, 0.0) + float(helper.sum(selection, fold))
    unit.scratch.cd()
    unit.scratch.Write("", ROOT.TObject.kOverwrite)
    unit.scratch.Close()
    unit.tfile.Close()
    unit.work, unit.selections, unit.keepalive = None, [], []


def fill_segments(
    config: DatasetConfig,
    plans: list[Plan],
    folds: set[int],
    scratch: Path,
    workers: int,
    compression: int,
    progress,
) -> dict:
    """Read every input file of ``plans`` once and write their segments of ``folds`` into
    ``scratch``; return, per input file, its scratch file."""
    ROOT = _copy.declare_helper()
    units = _units(plans)
    order = sorted(range(len(units)), key=lambda i: -units[i].layout.entries)
    events = sum(u.layout.entries for u in units)
    templates = _Templates(ROOT, config, plans)
    costs = [unit_memory(unit, len(folds)) for unit in units]
    pending, running, finished = order, {}, 0
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            while pending or running:
                while (number := next_unit(pending, list(running.values()), costs,
                                           workers)) is not None:  # fmt: skip
                    pending.remove(number)
                    unit = units[number]
                    _prepare(ROOT, config, unit, number, folds, templates, scratch,
                             compression)  # fmt: skip
                    running[pool.submit(ROOT.htt_tmva_dataset.run, unit.work)] = number
                done, _ = wait(list(running), timeout=0.1, return_when=FIRST_COMPLETED)
                for future in done:
                    unit = units[running.pop(future)]
                    future.result()
                    _finish(ROOT, config, unit)
                    finished += unit.layout.entries
                progress(finished + sum(int(units[i].done[0]) for i in running.values()), events)
    finally:
        for unit in units:
            for tfile in (unit.scratch, unit.tfile):
                if tfile is not None and tfile.IsOpen():
                    tfile.Close()
        templates.close()
    progress(events, events)
    return {unit.path: scratch_path(scratch, number) for number, unit in enumerate(units)}


def check_plan(config: DatasetConfig, plan: Plan) -> None:
    """Refuse a process whose reading went wrong or whose cut or weights are unusable."""
    name, p = plan.process.name, plan.process
    if plan.write_errors:
        raise OutputError(f"process '{name}': writing the fold trees failed")
    if plan.bad_event > 0:
        raise InvalidEventNumberError(
            f"process '{name}': {plan.bad_event} events have a floating-point "
            f"'{config.event_branch}' that is not an integer or exceeds "
            f"{_EXACT_LIMITS[plan.layout.scalars[config.event_branch]]:.0f}, where the float "
            "no longer holds event numbers exactly, so folds cannot be assigned reliably; "
            "store the event number as an integer branch"
        )
    if plan.selected == 0:
        raise EmptySelectionError(
            f"process '{name}': cut_string '{p.cut_string}' selects no events "
            f"out of {plan.total} in {len(p.files)} file(s)"
        )
    if plan.nonfinite > 0:
        raise NonFiniteError(
            f"process '{name}': weight_string '{p.weight_string}' gives "
            f"{plan.nonfinite} non-finite (NaN or infinite) training weights in "
            f"'{config.training_weight_branch}' out of {plan.selected} selected events"
        )


def log_plan(config: DatasetConfig, plan: Plan, folds) -> None:
    p = plan.process
    log.info(
        "process %s (class %s): %d events, %d after cut '%s'",
        p.name,
        p.class_name,
        plan.total,
        plan.selected,
        p.cut_string,
    )
    for fold in folds:
        count = plan.counts.get(fold, 0)
        log.info("  fold %d: %d events, sum of weights %.6g", fold, count, plan.sums.get(fold, 0))
        if count == 0:
            log.warning("process %s has no events in fold %d", p.name, fold)


# --- class trees -------------------------------------------------------------------------------


def tree_structure(tree) -> list[tuple[str, str, str]]:
    return [
        (str(b.GetName()), str(b.GetTitle()), str(b.ClassName())) for b in tree.GetListOfBranches()
    ]


def concatenate(ROOT, out, name: str, sources: list[tuple[Path, str]]) -> int:
    """Write into the open file ``out`` the tree ``name``: the trees ``sources`` (file, tree)
    one after the other, baskets copied (not recompressed); return its entries."""
    merged, structure, first = None, None, None
    for source, tree_name in sources:
        tfile = open_root_file(source)
        try:
            tree = get_tree(tfile, tree_name)
            if structure is None:
                structure, first = tree_structure(tree), source
            elif tree_structure(tree) != structure:
                raise DatasetPartError(
                    f"'{source}' holds tree '{tree_name}' with other branches than '{first}' "
                    f"of the same class '{name}'; write them again"
                )
            out.cd()
            if merged is None:
                merged = tree.CloneTree(-1, "fast")
            elif merged.CopyEntries(tree, -1, "fast") < 0:
                raise OutputError(f"copying the tree '{tree_name}' of '{source}' failed")
        finally:
            tfile.Close()
    out.cd()
    merged.SetName(name)
    merged.SetTitle(name)
    merged.SetDirectory(out)
    merged.Write("", ROOT.TObject.kOverwrite)
    entries = int(merged.GetEntries())
    out.Remove(merged)  # written: free its memory now, not when ``out`` closes
    merged.SetDirectory(ROOT.nullptr)
    ROOT.SetOwnership(merged, True)
    del merged
    return entries


def class_sources(config, plans: list[Plan], cls: str, fold: int, scratch: dict) -> list:
    """The segments of a class tree, in order: processes in config order, files in order."""
    return [
        (scratch[path], segment_name(plan, fold))
        for plan in plans
        if plan.process.class_name == cls
        for path in plan.process.files
    ]


class ScratchFolder:
    """A hidden folder for the segments next to the outputs, removed afterwards."""

    def __init__(self, folder: Path):
        self.path = Path(tempfile.mkdtemp(prefix=".htt_tmva_scratch_", dir=folder))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def output_compression(plans: list[Plan]) -> int:
    """Outputs are written with the compression of the first process's first file."""
    return plans[0].layout.compression


#: default number of files read at once (each costs memory; reading is mostly I/O-bound)
DEFAULT_WORKERS = 4


def worker_count(workers: Optional[int], units: int) -> int:
    """Files read at once: ``workers``, or the cores available (at most DEFAULT_WORKERS)."""
    if workers is None:
        import os

        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not on Linux
            cores = os.cpu_count() or 1
        workers = min(cores, DEFAULT_WORKERS)
    return max(1, min(workers, units))
