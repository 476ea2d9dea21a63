"""Which trees of which files the application scores, and whether a tree can be copied.

The command line names input files, then trees or tree patterns (``mt_nominal/ntuple
'mt_*Up/ntuple'``); each pattern is matched per file, one path segment at a time. A tree
that is copied with all its branches (in place, ``--output``, an existing friend tree) must
come out with the same branch types: what RDataFrame's Snapshot cannot write as it was read
is refused before any work, and the written types are compared afterwards.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path

from htt_tmva._root import is_remote, list_trees
from htt_tmva.errors import ConfigError, MissingTreeError, OutputError

_WILDCARDS = set("*?[")
# leaf classes that Snapshot writes back with the same type (scalars, fixed and variable arrays)
_PLAIN_LEAVES = {"TLeafF", "TLeafD", "TLeafI", "TLeafS", "TLeafB", "TLeafL", "TLeafO", "TLeafG"}
# std::vector<T> branches: RDataFrame reads them as RVec<T>; redefined back to std::vector<T>
_VECTOR = re.compile(
    r"^vector<(float|double|int|unsigned int|short|unsigned short|char|unsigned char|"
    r"bool|long|unsigned long|long long|unsigned long long|Long64_t|ULong64_t)>$"
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TREE_CLASSES = ("TTree",)


def _is_file_like(item: str) -> bool:
    if is_remote(item) or item.lower().endswith(".root"):
        return True
    path = os.path.expanduser(item)
    if os.path.isfile(path):
        return True
    return bool(_WILDCARDS & set(path)) and any(os.path.isfile(m) for m in glob.glob(path))


def split_inputs_and_trees(items: Sequence[str]) -> tuple[list[str], list[str]]:
    """``INPUT... TREE...``: the trailing items that name no file are the trees."""
    items = list(items)
    cut = len(items)
    while cut > 0 and not _is_file_like(items[cut - 1]):
        cut -= 1
    inputs, trees = items[:cut], items[cut:]
    if not trees:
        raise ConfigError(
            f"no tree given after the input files {inputs}: name the tree(s) last, e.g. "
            "'ntuple' or 'mt_nominal/ntuple' 'mt_*Up/ntuple'"
        )
    if not inputs:
        raise ConfigError(
            f"no input file given before the tree(s) {trees}: name ROOT files (or globs) first"
        )
    return inputs, trees


def is_pattern(tree: str) -> bool:
    return bool(_WILDCARDS & set(tree))


def _matches(path: str, pattern: str) -> bool:
    parts, wanted = path.split("/"), pattern.strip("/").split("/")
    return len(parts) == len(wanted) and all(
        fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted)
    )


def select_trees(tfile, patterns: Sequence[str]) -> dict[str, list[str]]:
    """For each of ``patterns``, the trees of an open file it names (a plain path is kept
    as given, and checked when the file is inspected)."""
    present = None
    selected: dict[str, list[str]] = {}
    for pattern in patterns:
        if not is_pattern(pattern):
            selected[pattern] = [pattern]
            continue
        if present is None:
            present = list_trees(tfile)
        selected[pattern] = [t for t in present if _matches(t, pattern)]
    return selected


def trees_per_file(files: Sequence, patterns: Sequence[str]) -> list[list[str]]:
    """The trees of each file, in pattern order, without repeats. A pattern must match in
    some file, and every file must get a tree."""
    from htt_tmva._root import open_root_file

    if len(set(patterns)) != len(patterns):
        twice = sorted({p for p in patterns if patterns.count(p) > 1})
        raise ConfigError(f"tree(s) given twice: {twice}")
    result, matched = [], {p: False for p in patterns}
    for path in files:
        tfile = open_root_file(path)
        try:
            selected = select_trees(tfile, patterns)
            present = list_trees(tfile) if any(not selected[p] for p in patterns) else []
        finally:
            tfile.Close()
        trees = list(dict.fromkeys(t for p in patterns for t in selected[p]))
        for p in patterns:
            matched[p] |= bool(selected[p])
        if not trees:
            raise MissingTreeError(
                f"no tree of '{path}' matches {list(patterns)}; trees there: "
                + (", ".join(f"'{t}'" for t in present) or "(none)")
            )
        result.append(trees)
    unused = [p for p, hit in matched.items() if not hit]
    if unused:
        raise MissingTreeError(f"tree pattern(s) {unused} match no tree in any input file")
    return result


def friend_nick(path) -> str:
    """The classic friend producer's name of an input: its folder's name (Artus writes
    ``<nick>/<nick>.root``); a file elsewhere is named by its stem."""
    path = Path(str(path))
    folder = path.parent.name
    return folder if folder and folder == path.stem else path.stem


def friend_dir_target(friend_dir: str, path) -> Path:
    """``DIR/<nick>/<nick>.root``, the classic friend layout."""
    nick = friend_nick(path)
    return Path(friend_dir).expanduser() / nick / f"{nick}.root"


def rntuples(directory, prefix: str = "") -> list[str]:
    """Paths of the RNTuples in a file or directory, recursively."""
    found = []
    for key in directory.GetListOfKeys():
        cls, name = str(key.GetClassName()), f"{prefix}{key.GetName()}"
        if "RNTuple" in cls:
            found.append(name)
        elif cls.startswith("TDirectory"):
            found += rntuples(key.ReadObj(), f"{name}/")
    return found


def check_no_rntuple(tfile, path, mode: str) -> None:
    """A file rewritten with its other content must not hold an RNTuple: it would not be
    copied whole. Refused before any work."""
    found = rntuples(tfile)
    if found:
        raise OutputError(
            f"'{path}' holds the RNTuple(s) {found}, which a rewrite of the file cannot copy "
            f"safely; nothing was written ({mode}): write the scores with --friend-dir DIR "
            "(or --friend FILE), which leaves the input as it is"
        )


def copy_problems(tree, kept: Sequence[str]) -> list[str]:
    """Why branches of ``tree`` would change type when copied; [] when none would."""
    problems = []
    cls = str(tree.ClassName())
    if cls not in _TREE_CLASSES:
        problems.append(f"the tree is a {cls} and would become a TTree")
    for name in kept:
        branch = tree.GetBranch(name)
        if not branch:
            continue
        leaves = list(branch.GetListOfLeaves())
        kind = str(branch.ClassName())
        if kind == "TBranchElement":
            if not _VECTOR.match(str(branch.GetClassName())):
                problems.append(f"'{name}' ({branch.GetClassName()})")
        elif kind != "TBranch" or len(leaves) != 1:
            if len(leaves) > 1:
                problems.append(f"'{name}' (leaf list {branch.GetTitle()})")
            else:
                problems.append(f"'{name}' ({kind})")
        elif str(leaves[0].ClassName()) not in _PLAIN_LEAVES:
            leaf = leaves[0]
            problems.append(f"'{name}' ({leaf.GetTypeName()}, {branch.GetTitle()})")
    return problems


def check_copyable(tree, kept: Sequence[str], tree_path: str, path, mode: str) -> None:
    """Refuse (before any work) a tree whose copy would change branch types."""
    problems = copy_problems(tree, kept)
    if problems:
        raise OutputError(
            f"tree '{tree_path}' of '{path}' cannot be rewritten {mode} without changing "
            f"its types: {', '.join(problems)}; nothing was written. Write the scores "
            "with --friend-dir DIR (or --friend FILE), which leaves the input as it is"
        )


def branch_types(tree, names: Sequence[str]) -> dict[str, tuple]:
    """What the verification compares per branch: branch and leaf classes, types, titles."""
    types = {}
    for name in names:
        branch = tree.GetBranch(name)
        if not branch:
            types[name] = None
            continue
        leaves = tuple(
            (str(leaf.ClassName()), str(leaf.GetTypeName()), str(leaf.GetTitle()))
            for leaf in branch.GetListOfLeaves()
        )
        types[name] = (str(branch.ClassName()), str(branch.GetClassName()), leaves)
    return types
