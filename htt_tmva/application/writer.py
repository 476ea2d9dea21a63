"""Pass 2 and the safe output modes: every output is written to a temporary sibling,
verified, and only then renamed into place (``os.replace``), so a kill at any moment
leaves the input untouched (or, in place, either untouched or fully updated).

Modes: ``inplace`` (classic: the input ends up with its original content plus the score
branches), ``output`` (the same content in a new file) and ``friend`` (only the event
number and the scores, as a friend tree with the same entry order).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from htt_tmva._files import ensure_writable_folder, temporary_name
from htt_tmva._root import file_size, get_tree, input_path, is_remote, open_root_file, root
from htt_tmva.application.inputs import InputInfo, check_remote_outputs, top_level_branches
from htt_tmva.application.scores import ChunkReader, chunks
from htt_tmva.application.stream import SCORES_COLUMN, event_hash, scores_expression
from htt_tmva.errors import OutputError

log = logging.getLogger(__name__)

_TREE_CLASSES = ("TTree", "TNtuple", "TNtupleD")


@dataclass
class OutputPlan:
    """Where one input's result goes, and the scratch files on the way."""

    mode: str
    source: Path
    final: Path
    temp: Path
    stream: Path

    @property
    def full_copy(self) -> bool:
        return self.mode != "friend"


def _target(given: str, source: Path, n_inputs: int) -> Path:
    target = Path(given).expanduser()
    if n_inputs > 1 or target.is_dir() or str(given).endswith(os.sep):
        return target / source.name
    return target


def plan_output(
    info: InputInfo,
    n_inputs: int,
    friend: Optional[str] = None,
    output: Optional[str] = None,
    overwrite: bool = False,
) -> OutputPlan:
    """Decide and check the output of one input; refuse unwritable or occupied places."""
    source = input_path(info.path)
    check_remote_outputs([source], friend, output)
    if friend is None and output is None:
        mode, final = "inplace", Path(os.path.realpath(source))
        if not os.access(final, os.W_OK):
            raise OutputError(
                f"input file '{source}' is not writable; cannot add branches in place "
                "(use --output FILE or --friend OUTPUT)"
            )
    else:
        mode = "friend" if friend is not None else "output"
        final = _target(friend if friend is not None else output, source, n_inputs)
        same = not is_remote(source) and final.exists() and os.path.samefile(final, source)
        if same and mode == "friend":
            raise OutputError(
                f"--friend output '{final}' is the input file itself; give another path"
            )
        if same:
            mode, final = "inplace", Path(os.path.realpath(source))
        elif final.exists() and not overwrite:
            raise OutputError(
                f"output file '{final}' exists already; give --overwrite to replace it"
            )
    ensure_writable_folder(final.parent)
    stream = final.with_name(f".{final.name}.scores{os.getpid()}")
    return OutputPlan(
        mode=mode, source=source, final=final, temp=temporary_name(final), stream=stream
    )


def check_distinct(plans: Sequence[OutputPlan]) -> None:
    """Refuse two inputs that would write the same output file."""
    seen: dict[str, Path] = {}
    for plan in plans:
        key = os.path.realpath(plan.final)
        if key in seen:
            raise OutputError(
                f"inputs '{seen[key]}' and '{plan.source}' would both be written to "
                f"'{plan.final}'; give them distinct output folders"
            )
        seen[key] = plan.source


def check_space(plan: OutputPlan, n_entries: int, record_bytes: int) -> None:
    """Refuse early when the output folder cannot hold the copy and the score stream."""
    needed = n_entries * record_bytes
    if plan.full_copy:
        needed += file_size(plan.source)
    free = shutil.disk_usage(plan.final.parent).free
    if free < needed:
        raise OutputError(
            f"not enough free space in '{plan.final.parent}': about {needed / 1e6:.0f} MB "
            f"needed, {free / 1e6:.0f} MB free"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process
        return True
    return True


def remove_stale(plan: OutputPlan) -> list[Path]:
    """Remove the scratch files of earlier runs for the same output that were killed (their
    process is gone); a kill leaves the input intact, but these hidden files behind."""
    pid, removed = str(os.getpid()), []
    for own in (plan.temp, plan.stream):
        at = own.name.rfind(pid)
        pattern = re.compile(
            f"^{re.escape(own.name[:at])}([0-9]+){re.escape(own.name[at + len(pid) :])}$"
        )
        for candidate in plan.final.parent.iterdir():
            match = pattern.match(candidate.name)
            if match and match.group(1) != pid and not _alive(int(match.group(1))):
                with suppress(FileNotFoundError):
                    candidate.unlink()
                    removed.append(candidate)
                    log.info("removed %s, left behind by a killed run", candidate)
    return removed


@contextmanager
def scratch(plan: OutputPlan) -> Iterator[OutputPlan]:
    """Remove the temporary output and the score stream when the block ends, however it ends."""
    try:
        yield plan
    finally:
        for path in (plan.temp, plan.stream):
            with suppress(FileNotFoundError):
                path.unlink()


def snapshot_options(compression: int):
    """Lazy single-threaded Snapshot with the input file's compression."""
    ROOT = root()
    options = ROOT.RDF.RSnapshotOptions()
    options.fLazy = True
    options.fMode = "RECREATE"
    options.fCompressionAlgorithm = ROOT.RCompressionSetting.EAlgorithm.EValues(compression // 100)
    options.fCompressionLevel = compression % 100
    return options


def book_pass2(
    info: InputInfo, plan: OutputPlan, names: Sequence[str], event_branch: str
) -> tuple[object, list[object]]:
    """Book the lazy, single-threaded Snapshot that copies the tree (or only the event
    number, for a friend) and adds ``names`` from the score stream. Returns the result
    handle and the RDataFrame nodes to keep alive while it runs."""
    ROOT = root()
    if ROOT.IsImplicitMTEnabled():
        raise OutputError(
            "implicit multi-threading is on: a multi-threaded Snapshot would reorder "
            "entries; call ROOT.DisableImplicitMT() before applying"
        )
    frame = ROOT.RDataFrame(info.tree_path, str(info.path))
    node = frame.Define(SCORES_COLUMN, scores_expression(event_branch))
    nodes = [frame, node]
    for index, name in enumerate(names):
        expression = f"{SCORES_COLUMN}[{index}]"
        node = (
            node.Redefine(name, expression)
            if name in info.existing
            else node.Define(name, expression)
        )
        nodes.append(node)
    columns = output_columns(info, names, event_branch, plan.full_copy)
    result = node.Snapshot(
        info.tree_path, str(plan.temp), columns, snapshot_options(info.compression)
    )
    return result, nodes


def output_columns(
    info: InputInfo, names: Sequence[str], event_branch: str, full_copy: bool
) -> list[str]:
    """Branches of the output tree, in order: originals then new ones, or event then scores."""
    if not full_copy:
        return [event_branch, *names]
    return [*info.branches, *[n for n in names if n not in info.branches]]


def _key_groups(directory) -> dict[str, list]:
    groups: dict[str, list] = {}
    for key in directory.GetListOfKeys():
        groups.setdefault(str(key.GetName()), []).append(key)
    for keys in groups.values():
        keys.sort(key=lambda k: k.GetCycle())
    return groups


def _copy_tree(key, target) -> None:
    tree = key.ReadObj()
    target.cd()
    clone = tree.CloneTree(-1, "fast")
    clone.Write()
    clone.SetDirectory(0)


def _copy_object(key, target, name: str) -> None:
    ROOT = root()
    cls = ROOT.TClass.GetClass(key.GetClassName())
    if cls and cls.InheritsFrom("TObject"):
        target.WriteTObject(key.ReadObj(), name)
    elif cls:
        target.WriteObjectAny(key.ReadObjectAny(cls), cls, name)
    else:
        raise OutputError(f"cannot copy object '{name}' of unknown class '{key.GetClassName()}'")


def copy_directory(source, target, skip: Sequence[str]) -> int:
    """Copy every key of ``source`` into ``target`` (all cycles; trees: the last one), except
    the tree at path ``skip`` (split into parts). Returns the number of objects copied."""
    copied = 0
    for name, keys in _key_groups(source).items():
        cls = str(keys[-1].GetClassName())
        on_path = bool(skip) and name == skip[0]
        if on_path and len(skip) == 1:
            continue
        if cls.startswith("TDirectory"):
            sub = target.GetDirectory(name) or target.mkdir(name, keys[-1].GetTitle())
            copied += copy_directory(keys[-1].ReadObj(), sub, skip[1:] if on_path else ())
        elif cls in _TREE_CLASSES:
            _copy_tree(keys[-1], target)
            copied += 1
        else:
            for key in keys:
                _copy_object(key, target, name)
                copied += 1
    return copied


def key_paths(directory, prefix: str = "") -> set[str]:
    """Paths of all keys in a file or directory, recursively (cycles merged)."""
    paths = set()
    for key in directory.GetListOfKeys():
        path = f"{prefix}{key.GetName()}"
        paths.add(path)
        if str(key.GetClassName()).startswith("TDirectory"):
            paths |= key_paths(key.ReadObj(), f"{path}/")
    return paths


def complete_copy(info: InputInfo, plan: OutputPlan) -> None:
    """Copy all other objects of the input into the new file and restore the tree's title."""
    source = open_root_file(info.path)
    try:
        if (
            len(key_paths(source)) <= info.tree_path.count("/") + 1
            and info.tree_title == info.tree_name
        ):
            return
        target = open_root_file(plan.temp, "UPDATE")
        try:
            copied = copy_directory(source, target, info.tree_path.split("/"))
            tree = get_tree(target, info.tree_path)
            if str(tree.GetTitle()) != info.tree_title:
                tree.SetTitle(info.tree_title)
                tree.GetDirectory().cd()  # TTree::Write writes into the current directory
                tree.Write("", root().TObject.kOverwrite)
            log.debug("copied %d other object(s) of %s", copied, info.path)
        finally:
            target.Close()
    finally:
        source.Close()


def output_hash(path: Path, tree_path: str, event_branch: str, chunk_size: int) -> int:
    """The order hash of (entry, event) pairs of a written tree, read like pass 1 reads."""
    reader = ChunkReader(path, tree_path, [], event_branch)
    tfile = open_root_file(path)
    try:
        entries = int(get_tree(tfile, tree_path).GetEntries())
    finally:
        tfile.Close()
    total = 0
    for begin, end in chunks(entries, chunk_size):
        _, events = reader.read(begin, end)
        total = (total + event_hash(np.arange(begin, end), events)) % 2**64
    return total


def verify(
    info: InputInfo,
    plan: OutputPlan,
    columns: Sequence[str],
    order_hash: int,
    event_branch: str,
    chunk_size: int,
) -> None:
    """Check the temporary output: readable, not recovered, same entries, branches, other
    objects and event order as the input."""
    tfile = open_root_file(plan.temp)
    try:
        tree = get_tree(tfile, info.tree_path)
        entries = int(tree.GetEntries())
        branches = top_level_branches(tree)
        paths = key_paths(tfile)
    finally:
        tfile.Close()
    problems = []
    if entries != info.entries:
        problems.append(f"{entries} entries instead of {info.entries}")
    if branches != list(columns):
        problems.append(f"branches {branches} instead of {list(columns)}")
    if plan.full_copy:
        source = open_root_file(info.path)
        try:
            missing = sorted(key_paths(source) - paths)
        finally:
            source.Close()
        if missing:
            problems.append(f"objects {missing} of the input are missing")
    if (
        not problems
        and output_hash(plan.temp, info.tree_path, event_branch, chunk_size) != order_hash
    ):
        problems.append(f"the order of the '{event_branch}' column differs from the input")
    if problems:
        raise OutputError(
            f"verification of the new file for '{info.path}' failed: "
            + "; ".join(problems)
            + "; the input is untouched"
        )


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def commit(plan: OutputPlan) -> Path:
    """Make the verified temporary file the output, atomically (same folder, os.replace)."""
    if plan.mode == "inplace":
        os.chmod(plan.temp, stat.S_IMODE(plan.final.stat().st_mode))
    _fsync(plan.temp)
    os.replace(plan.temp, plan.final)
    _fsync(plan.final.parent, directory=True)
    return plan.final
