"""What the input files of a dataset hold: branches and their types, entries, friends.

Every input file is opened once here (its friends too), whatever the number of processes
that read it. Types are compared for every branch, not only for numbers: a branch copied
into one class tree must have one type (``a[2]/F`` and ``a[2]/D``, ``vector<float>`` and
``vector<double>`` differ), else the copy would write garbage. Friend files (``friend_paths``:
one folder per friend source, the same file layout as ``base_path``) add their branches to
the main tree's; they must hold the same number of entries as their main file (and, when
they have the event branch, the same event numbers: checked while reading).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from htt_tmva._root import get_tree, open_root_file
from htt_tmva.config.stages import DatasetConfig, ProcessConfig
from htt_tmva.data import _copy
from htt_tmva.errors import InputFileError, InvalidEventNumberError, OutputError, branch_missing

log = logging.getLogger(__name__)


@dataclass
class FileLayout:
    """One input file (with its friends)."""

    path: object
    branches: list[str]  # main tree's top-level branches, then those copied from friends
    types: dict[str, str]  # every branch -> its type (leaf types and sizes, or its class)
    scalars: dict[str, str]  # single numbers of fundamental type -> ROOT type name
    entries: int
    compression: int
    friend_files: list = field(default_factory=list)
    friend_branches: dict[str, int] = field(default_factory=dict)  # branch -> friend index
    friend_events: list = field(default_factory=list)  # per friend: event type or None
    identities: dict[str, str] = field(default_factory=dict)  # file -> its version


def file_identity(tfile, path) -> str:
    """Which version of a file was read: ROOT's UUID (new at every write), size and, for
    local files, the modification time."""
    uuid = str(tfile.GetUUID().AsString())
    size = int(tfile.GetSize())
    try:
        mtime = f":{os.stat(path).st_mtime_ns}"
    except (OSError, TypeError, ValueError):
        mtime = ""
    return f"{uuid}:{size}{mtime}"


@dataclass
class Layout:
    """What the input files of one process hold."""

    branches: list[str]  # branches in every file of the process, in file order
    scalars: dict[str, str]
    types: dict[str, str]
    entries: int = 0
    compression: int = 101  # of the first file
    files: list = field(default_factory=list)  # the FileLayout of each file


def branch_type(branch) -> str:
    """The type of a top-level branch as text: its class, or its leaves' types and sizes."""
    kind = str(branch.IsA().GetName())
    if kind != "TBranch":
        class_name = str(branch.GetClassName()) if hasattr(branch, "GetClassName") else ""
        return f"{class_name or kind}"
    leaves = []
    for leaf in branch.GetListOfLeaves():
        count = leaf.GetLeafCount()
        size = f"[{count.GetName()}]" if count else f"[{leaf.GetLenStatic()}]"
        leaves.append(f"{leaf.GetName()}{size if size != '[1]' else ''}/{leaf.GetTypeName()}")
    return ":".join(leaves)


def tree_layout(tree) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Top-level branches of a tree, their types, and the single numbers among them."""
    branches, types, scalars = [], {}, {}
    for branch in tree.GetListOfBranches():
        name = str(branch.GetName())
        branches.append(name)
        types[name] = branch_type(branch)
        leaves = branch.GetListOfLeaves()
        if branch.IsA().GetName() != "TBranch" or leaves.GetEntries() != 1:
            continue
        leaf = leaves.At(0)
        if not leaf.GetLeafCount() and leaf.GetLenStatic() == 1 and name == str(leaf.GetName()):
            scalars[name] = str(leaf.GetTypeName())
    return branches, types, scalars


def _copyable_from_friend(branch) -> bool:
    """Friend branches are added to the class trees with ``TTree::Branch(name, address,
    leaflist)``: numbers and fixed-size arrays of numbers, one leaf."""
    leaves = branch.GetListOfLeaves()
    if branch.IsA().GetName() != "TBranch" or leaves.GetEntries() != 1:
        return False
    leaf = leaves.At(0)
    return not leaf.GetLeafCount() and str(leaf.GetName()) == str(branch.GetName())


def inspect_file(config: DatasetConfig, path, friend_files: list) -> FileLayout:
    """Open one input file and its friends; check the tree, the event and weight branches."""
    tfile = open_root_file(path)
    try:
        tree = get_tree(tfile, config.tree_path)
        branches, types, scalars = tree_layout(tree)
        entries, compression = int(tree.GetEntries()), int(tfile.GetCompressionSettings())
        identity = file_identity(tfile, path)
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
    layout = FileLayout(path, branches, types, scalars, entries, compression, list(friend_files))
    layout.identities[str(path)] = identity
    for index, friend in enumerate(friend_files):
        _add_friend(config, layout, index, friend)
    if config.training_weight_branch in layout.branches:
        raise OutputError(
            f"training_weight_branch '{config.training_weight_branch}' exists already in "
            f"tree '{config.tree_path}' of '{path}'; choose another name in {config.source}"
        )
    return layout


def _add_friend(config: DatasetConfig, layout: FileLayout, index: int, friend) -> None:
    tfile = open_root_file(friend)
    try:
        tree = get_tree(tfile, config.tree_path)
        layout.identities[str(friend)] = file_identity(tfile, friend)
        entries = int(tree.GetEntries())
        if entries != layout.entries:
            raise InputFileError(
                f"friend file '{friend}' does not match its main file '{layout.path}': tree "
                f"'{config.tree_path}' has {entries} entries there and {layout.entries} in the "
                "main file; friends must hold the same events in the same order"
            )
        names, types, scalars = tree_layout(tree)
        shadowed, skipped = [], []
        for branch in tree.GetListOfBranches():
            name = str(branch.GetName())
            if name in layout.types:
                if name != config.event_branch:
                    shadowed.append(name)
                continue
            if not _copyable_from_friend(branch):
                skipped.append(f"{name} ({types[name]})")
                continue
            layout.branches.append(name)
            layout.types[name] = types[name]
            if name in scalars:
                layout.scalars[name] = scalars[name]
            layout.friend_branches[name] = index
    finally:
        tfile.Close()
    event_type = scalars.get(config.event_branch)
    if config.event_branch in names and event_type not in _copy.EVENT_TYPES:
        raise InvalidEventNumberError(
            f"event_branch '{config.event_branch}' of friend file '{friend}' is not a single "
            "number; it is compared with the main file's event numbers"
        )
    layout.friend_events.append(event_type if config.event_branch in names else None)
    if event_type is None:
        log.warning(
            "friend file '%s' has no '%s' branch: its events are matched to '%s' by entry "
            "number only",
            friend,
            config.event_branch,
            layout.path,
        )
    if shadowed:
        log.warning(
            "friend file '%s': branches %s are also in the main file '%s'; the main file's "
            "are used",
            friend,
            ", ".join(shadowed),
            layout.path,
        )
    if skipped:
        log.warning(
            "friend file '%s': branches %s are not copied (friend branches are copied when "
            "they hold a number or a fixed-size array of numbers)",
            friend,
            ", ".join(skipped),
        )


def inspect_files(config: DatasetConfig, processes: list[ProcessConfig]) -> dict:
    """The FileLayout of every distinct input file of ``processes``, each opened once."""
    layouts: dict = {}
    for process in processes:
        for path, friends in zip(process.files, process.friend_files or [[]] * len(process.files)):
            if path not in layouts:
                layouts[path] = inspect_file(config, path, friends)
    return layouts


def process_layout(process: ProcessConfig, files: dict) -> Layout:
    """The branches shared by all files of a process (with a warning naming those that are
    not), their types checked to be the same in every file."""
    per_file = [files[path] for path in process.files]
    common = [b for b in per_file[0].branches if all(b in f.types for f in per_file)]
    every = list(dict.fromkeys(b for f in per_file for b in f.branches))
    for f in per_file:
        missing = [b for b in every if b not in f.types]
        if missing:
            log.warning(
                "process %s: branches %s are missing from '%s' and are dropped from the "
                "process's output (only branches in every file of a process are kept)",
                process.name,
                ", ".join(missing),
                f.path,
            )
    first = per_file[0]
    for f in per_file[1:]:
        for name in common:
            if f.types[name] != first.types[name]:
                raise InputFileError(
                    f"process '{process.name}': branch '{name}' is {first.types[name]} in "
                    f"'{first.path}' but {f.types[name]} in '{f.path}'; files chained into one "
                    "process need the same branch types (convert the files or drop the branch)"
                )
    return Layout(
        common,
        {b: t for b, t in first.scalars.items() if b in common},
        {b: first.types[b] for b in common},
        sum(f.entries for f in per_file),
        first.compression,
        per_file,
    )


def class_branches(
    config: DatasetConfig, layouts: dict[str, Layout], classes: list[str] | None = None
) -> dict[str, list[str]]:
    """Per process, the branches to keep: those shared by all processes of its class (of
    every class, or of ``classes`` only: ``layouts`` needs their processes only), each of
    one type in all of them."""
    keep = {}
    for cls in config.classes if classes is None else classes:
        members = [n for n, p in config.processes.items() if p.class_name == cls]
        first = layouts[members[0]]
        common = [b for b in first.branches if all(b in layouts[m].types for m in members)]
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
                a, b = first.types[name], layouts[m].types[name]
                if a != b:
                    raise InputFileError(
                        f"class '{cls}': branch '{name}' is {a} in process '{members[0]}' "
                        f"but {b} in process '{m}'; processes merged into one class tree "
                        "need the same branch types (convert the files or drop the branch)"
                    )
        keep.update({m: common for m in members})
    return keep
