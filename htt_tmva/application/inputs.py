"""Input ntuples of the application: glob expansion and the checks done before any writing."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from htt_tmva._root import (
    REMOTE_WILDCARDS,
    RemoteUrl,
    get_tree,
    input_path,
    is_remote,
    open_root_file,
    remote_glob,
)
from htt_tmva.data.folds import FLOAT_EXACT_LIMIT
from htt_tmva.errors import InputFileError, OutputError, branch_missing

log = logging.getLogger(__name__)

_GLOB_CHARS = set("*?[")


def expand_inputs(patterns: Sequence[str]) -> list[Path | RemoteUrl]:
    """Files named by ``patterns`` (paths or globs, expanded here), in order, without repeats.

    root:// URLs stay URLs; a wildcard in their file name is expanded by listing the folder
    on the server."""
    files: list[Path | RemoteUrl] = []
    for pattern in patterns:
        if is_remote(pattern):
            if REMOTE_WILDCARDS & set(str(pattern).partition("?")[0]):
                matches = remote_glob(str(pattern))
                if not matches:
                    raise InputFileError(f"no input file matches '{pattern}'")
                files.extend(matches)
            else:
                files.append(RemoteUrl(str(pattern)))
            continue
        pattern = os.path.expanduser(str(pattern))
        if _GLOB_CHARS & set(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise InputFileError(f"no input file matches '{pattern}'")
            files.extend(Path(m) for m in matches)
        else:
            files.append(Path(pattern))
    seen: set[str] = set()
    unique = []
    for f in files:
        key = str(f) if isinstance(f, RemoteUrl) else os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def check_remote_outputs(
    files: Sequence[Path | RemoteUrl], friend: Optional[str], output: Optional[str]
) -> None:
    """Remote inputs are read, never rewritten: they need --output or --friend (a local
    file); outputs are local only. Refused before anything is written."""
    for given in (friend, output):
        if given is not None and is_remote(given):
            raise OutputError(
                f"'{given}' is a root:// URL: outputs are written locally only (the safe "
                "write renames a verified temporary file); write a local file and copy it "
                "with xrdcp"
            )
    remote = [str(f) for f in files if isinstance(f, RemoteUrl)]
    if remote and friend is None and output is None:
        raise OutputError(
            f"input '{remote[0]}' is remote (root://): it cannot be rewritten in place "
            "safely (no atomic replace over XRootD); give --output FILE or --friend OUTPUT "
            "to write the scores to a local file"
        )


def file_identity(path: Path) -> tuple:
    """What tells a file apart from a rewritten one: device, inode, size, mtime (ns)."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class InputInfo:
    """What the application needs to know about one input tree."""

    path: Path
    tree_path: str
    entries: int
    branches: list[str]
    tree_title: str
    compression: int
    existing: list[str] = field(default_factory=list)
    event_limit: int = 0  # > 0: the event branch is floating point, exact up to this value
    event_unsigned: bool = False  # the event branch is an unsigned 64-bit integer
    identity: Optional[tuple] = None  # file_identity() before it was read
    # what the writing loop copies (set when the output is planned, writer.plan_sources):
    source: Optional[Path] = None  # the file whose tree it reads, when not ``path`` (a friend)
    kept: Optional[list[str]] = None  # the branches it copies (None: all, or the event)
    kept_types: dict = field(default_factory=dict)  # their types, as verified afterwards
    has_tree_metadata: bool = False  # the copied tree's title, aliases... are restored

    @property
    def writing_source(self) -> Path:
        """The file whose tree the writing loop copies."""
        return self.source if self.source is not None else self.path

    @property
    def tree_name(self) -> str:
        return self.tree_path.rsplit("/", 1)[-1]


_INTEGER_TYPES = {
    "Char_t",
    "UChar_t",
    "Short_t",
    "UShort_t",
    "Int_t",
    "UInt_t",
    "Long_t",
    "ULong_t",
    "Long64_t",
    "ULong64_t",
    "Bool_t",
    "char",
    "unsigned char",
    "short",
    "unsigned short",
    "int",
    "unsigned int",
    "long",
    "unsigned long",
    "long long",
    "unsigned long long",
    "bool",
}
# read as int64 these wrap for values >= 2^63: the fold rule must see them as uint64
UNSIGNED_64_TYPES = {"ULong64_t", "ULong_t", "unsigned long", "unsigned long long"}
_FLOAT_LIMITS = {
    "Float_t": FLOAT_EXACT_LIMIT,
    "float": FLOAT_EXACT_LIMIT,
    "Float16_t": 2**11,
    "Double_t": 2**53,
    "double": 2**53,
    "Double32_t": FLOAT_EXACT_LIMIT,
}


def scalar_type(tree, name: str, tree_path: str, path: Path) -> str:
    """The type name of a scalar numeric branch; refuse arrays, objects and strings."""
    leaf = tree.GetLeaf(name)
    type_name = str(leaf.GetTypeName()) if leaf else ""
    if (
        not leaf
        or leaf.GetLeafCount()
        or leaf.GetLenStatic() != 1
        or type_name not in _INTEGER_TYPES | set(_FLOAT_LIMITS)
    ):
        raise InputFileError(
            f"branch '{name}' of tree '{tree_path}' in '{path}' is not a scalar "
            f"number ({type_name or 'no leaf'}); variables and the event branch "
            "must be numbers"
        )
    return type_name


def top_level_branches(tree) -> list[str]:
    """Names of the top-level branches, the columns a full Snapshot copies."""
    return [str(b.GetName()) for b in tree.GetListOfBranches()]


def inspect_input(
    path: Path,
    tree_path: str,
    variables: Sequence[str],
    event_branch: str,
    new_branches: Sequence[str],
    overwrite: bool,
) -> InputInfo:
    """Open ``path`` and check its tree, the needed branches and the new branch names.

    Missing, zombie or recovered files, a missing tree or branch, and existing branches
    of the new names (without ``overwrite``) are refused here, before anything is written.
    """
    path = input_path(path)
    # before reading it; remote inputs are never rewritten, so they need none
    identity = file_identity(path) if not is_remote(path) and path.is_file() else None
    tfile = open_root_file(path)
    try:
        tree = get_tree(tfile, tree_path)
        branches = top_level_branches(tree)
        leaves = [str(leaf.GetName()) for leaf in tree.GetListOfLeaves()]
        for name in dict.fromkeys([*variables, event_branch]):
            if name not in branches and name not in leaves:
                raise branch_missing(name, tree_path, str(path), branches)
            scalar_type(tree, name, tree_path, path)
        event_type = scalar_type(tree, event_branch, tree_path, path)
        existing = [b for b in new_branches if b in branches]
        if existing and not overwrite:
            raise OutputError(
                f"tree '{tree_path}' of '{path}' has branches {existing} already; refusing to "
                "replace them (give --overwrite to replace them, or choose another branch_prefix)"
            )
        return InputInfo(
            path=path,
            tree_path=tree_path,
            entries=int(tree.GetEntries()),
            branches=branches,
            tree_title=str(tree.GetTitle()),
            compression=int(tfile.GetCompressionSettings()),
            existing=existing,
            event_limit=_FLOAT_LIMITS.get(event_type, 0),
            event_unsigned=event_type in UNSIGNED_64_TYPES,
            identity=identity,
        )
    finally:
        tfile.Close()
