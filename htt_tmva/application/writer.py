"""The safe output modes: every output is written to a temporary sibling,
verified, and only then renamed into place (``os.replace``), so a kill at any moment
leaves the input untouched (or, in place, either untouched or fully updated).

Each output is locked (``flock`` on a hidden ``.<name>.lock`` beside it) from before its
input is read until it is committed, and the commit refuses an input that changed since it
was inspected (device, inode, size, mtime), so two applications on the same file never lose
each other's branches. Scratch files carry the host name and process id, so that a later
run removes only those of dead processes on its own host (shared file systems).

Modes: ``inplace`` (classic: the input ends up with its original content plus the score
branches), ``output`` (the same content in a new file) and ``friend`` (only the event
number and the scores, as a friend tree with the same entry order).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import shutil
import socket
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from htt_tmva._files import ensure_writable_folder, fsync_file
from htt_tmva._root import file_size, get_tree, input_path, is_remote, open_root_file, root
from htt_tmva.application.inputs import (
    InputInfo,
    check_remote_outputs,
    file_identity,
    top_level_branches,
)
from htt_tmva.application.scores import ChunkReader, chunks, event_hash
from htt_tmva.errors import HttTmvaError, OutputError

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
    source_identity: Optional[tuple] = None  # the input as it was inspected
    base: Optional[Path] = None  # the file whose other content the new file keeps
    started: bool = False  # a tree was written into ``temp`` already

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
    friend_dir: Optional[str] = None,
) -> OutputPlan:
    """Decide and check the output of one input; refuse unwritable places. An existing
    ``--output``/``--friend`` file is extended: its trees and objects are kept (see
    :func:`plan_sources`)."""
    from htt_tmva.application.trees import friend_dir_target

    source = input_path(info.path)
    check_remote_outputs([source], friend or friend_dir, output)
    if friend is None and output is None and friend_dir is None:
        mode, final = "inplace", Path(os.path.realpath(source))
        if not os.access(final, os.W_OK):
            raise OutputError(
                f"input file '{source}' is not writable; cannot add branches in place "
                "(use --output FILE, --friend OUTPUT or --friend-dir DIR)"
            )
    else:
        mode = "output" if output is not None else "friend"
        if friend_dir is not None:
            final = friend_dir_target(friend_dir, source)
        else:
            final = _target(friend if friend is not None else output, source, n_inputs)
        same = not is_remote(source) and final.exists() and os.path.samefile(final, source)
        if same and mode == "friend":
            raise OutputError(
                f"friend output '{final}' is the input file itself; give another path"
            )
        if same:
            mode, final = "inplace", Path(os.path.realpath(source))
    ensure_writable_folder(final.parent)
    temp, stream = scratch_names(final)
    base = final if final.exists() else (source if mode != "friend" else None)
    return OutputPlan(
        mode=mode,
        source=source,
        final=final,
        temp=temp,
        stream=stream,
        source_identity=info.identity,
        base=base,
    )


def plan_sources(
    infos: Sequence[InputInfo],
    plan: OutputPlan,
    names: Sequence[str],
    event_branch: str,
    overwrite: bool,
) -> None:
    """Decide, for each tree of one input, what the writing loop copies, and refuse (before
    any work) what would lose or change content: an RNTuple in a file to be rewritten,
    branches whose type a copy changes, existing branches of the new names without
    ``overwrite``, a friend tree that does not line up with the input."""
    from htt_tmva.application.trees import (
        branch_types,
        check_copyable,
        check_no_rntuple,
    )

    base = None
    if plan.base is not None:
        try:
            base = open_root_file(plan.base)
        except HttTmvaError as exc:
            raise OutputError(
                f"output file '{plan.final}' exists and cannot be extended: {exc}; remove it "
                "or choose another output"
            ) from None
    source = open_root_file(plan.source) if plan.full_copy else None
    try:
        if base is not None:
            check_no_rntuple(base, plan.base, _MODE_WORDS[plan.mode])
        for info in infos:
            found = base.Get(info.tree_path) if base is not None else None
            in_base = bool(found) and isinstance(found, root().TTree)
            if in_base:
                tree, where = found, plan.base
            elif plan.full_copy:
                tree, where = get_tree(source, info.tree_path), plan.source
            else:
                info.kept = [event_branch]
                continue
            kept = top_level_branches(tree)
            if in_base and os.path.realpath(plan.base) != os.path.realpath(plan.source):
                _check_lines_up(tree, info, plan, event_branch, kept)
                info.source = plan.base
                info.existing = [n for n in names if n in kept]
                if info.existing and not overwrite:
                    raise OutputError(
                        f"tree '{info.tree_path}' of '{plan.base}' has branches "
                        f"{info.existing} already; refusing to replace them (give --overwrite "
                        "to replace them, or choose another branch_prefix)"
                    )
            check_copyable(tree, kept, info.tree_path, where, _MODE_WORDS[plan.mode])
            info.kept = kept
            info.kept_types = branch_types(tree, [k for k in kept if k not in names])
            info.has_tree_metadata = True
    finally:
        for tfile in (base, source):
            if tfile is not None:
                tfile.Close()


_MODE_WORDS = {"inplace": "in place", "output": "into the --output file", "friend": "as a friend"}


def _check_lines_up(tree, info: InputInfo, plan: OutputPlan, event_branch: str, kept) -> None:
    entries = int(tree.GetEntries())
    if entries != info.entries:
        raise OutputError(
            f"tree '{info.tree_path}' of the existing '{plan.final}' has {entries} entries, "
            f"the input '{info.path}' {info.entries}: it is not a copy or friend of this "
            "input; remove it or choose another output"
        )
    if event_branch not in kept:
        raise OutputError(
            f"tree '{info.tree_path}' of the existing '{plan.final}' has no event branch "
            f"'{event_branch}' to line its entries up with '{info.path}'; remove it or choose "
            "another output"
        )


def host_name() -> str:
    """This machine's name, as it goes into scratch and lock file names."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "localhost"


def scratch_names(final: Path, host: str = "", pid: int = 0) -> tuple[Path, Path]:
    """Hidden siblings of ``final`` (same folder, so the rename is atomic): the temporary
    output (suffix kept) and the score stream of earlier versions (removed when stale), both
    named after the host and process."""
    tag = f"{host or host_name()}.{pid or os.getpid()}"
    return (
        final.with_name(f".{final.stem}.tmp.{tag}{final.suffix}"),
        final.with_name(f".{final.name}.scores.{tag}"),
    )


def _scratch_patterns(final: Path) -> list[re.Pattern]:
    tail = r"\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>[0-9]+)"
    return [
        re.compile(rf"^\.{re.escape(final.stem)}\.tmp{tail}{re.escape(final.suffix)}$"),
        re.compile(rf"^\.{re.escape(final.name)}\.scores{tail}$"),
    ]


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


def check_space(plans: Sequence[OutputPlan], entries: Sequence[int], record_bytes: int) -> None:
    """Refuse early when an output file system cannot hold, at the same time, the new files
    of all inputs on it (all are committed together at the end); ``record_bytes``: the new
    branches' bytes per entry."""
    needed: dict[int, int] = {}
    folders: dict[int, Path] = {}
    for plan, n_entries in zip(plans, entries):
        device = os.stat(plan.final.parent).st_dev
        folders.setdefault(device, plan.final.parent)
        needed[device] = needed.get(device, 0) + n_entries * record_bytes
        if plan.full_copy:
            needed[device] += file_size(plan.source)
    for device, bytes_needed in needed.items():
        free = shutil.disk_usage(folders[device]).free
        if free < bytes_needed:
            raise OutputError(
                f"not enough free space in '{folders[device]}': about "
                f"{bytes_needed / 1e6:.0f} MB needed, {free / 1e6:.0f} MB free"
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
    """Remove the scratch files of earlier runs for the same output that were killed: those
    of this host whose process is gone. Files of other hosts (a shared file system) are
    left alone, since their process cannot be checked from here."""
    host, removed = host_name(), []
    for pattern in _scratch_patterns(plan.final):
        for candidate in plan.final.parent.iterdir():
            match = pattern.match(candidate.name)
            if not match or match.group("host") != host:
                continue
            pid = int(match.group("pid"))
            if pid != os.getpid() and not _alive(pid):
                with suppress(FileNotFoundError):
                    candidate.unlink()
                    removed.append(candidate)
                    log.info("removed %s, left behind by a killed run", candidate)
    return removed


_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


def lock_path(final: Path) -> Path:
    """The hidden lock file of an output."""
    return final.with_name(f".{final.name}.lock")


class OutputLock:
    """An exclusive, non-blocking ``flock`` on the lock file of an output, held until the
    output is committed. The lock file is removed (while still locked) on release; a lock
    taken on a file that its holder removed meanwhile is retaken on the new one."""

    def __init__(self, final: Path):
        self.final, self.path, self.fd = final, lock_path(final), None

    def acquire(self) -> OutputLock:
        for _ in range(20):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 256).decode(errors="replace").strip() or "unknown process"
                os.close(fd)
                raise OutputError(
                    f"'{self.final}' is being written by another htt-tmva apply right now "
                    f"(host and pid: {holder}; lock file '{self.path}'); nothing was written: "
                    "run the applications one after the other, or write --friend files"
                ) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno not in _NO_LOCKS:
                    raise OutputError(f"cannot lock '{self.path}': {exc.strerror}") from None
                with suppress(FileNotFoundError):
                    os.unlink(self.path)
                log.warning(
                    "the file system of '%s' does not support locks (%s): only the check "
                    "that the input is unchanged before the rename guards against a "
                    "concurrent application",
                    self.final,
                    exc.strerror,
                )
                return self
            if _same_file(fd, self.path):
                os.ftruncate(fd, 0)
                os.write(fd, f"{host_name()} {os.getpid()}\n".encode())
                self.fd = fd
                return self
            os.close(fd)  # its holder removed it after we opened it: lock the new one
        raise OutputError(f"cannot lock '{self.path}': it keeps being replaced")

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot create lock file '{self.path}': {exc.strerror}") from None

    def release(self) -> None:
        if self.fd is None:
            return
        with suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


@contextmanager
def locked(plan: OutputPlan) -> Iterator[OutputPlan]:
    """Hold the output's lock for the block; the input must still be as inspected."""
    lock = OutputLock(plan.final).acquire()
    try:
        check_unchanged(plan)
        yield plan
    finally:
        lock.release()


def check_unchanged(plan: OutputPlan) -> None:
    """Refuse to go on when the input is no longer the file that was inspected and read
    (another program rewrote or replaced it): committing would drop its changes."""
    if plan.source_identity is None:
        return
    try:
        now = file_identity(plan.source)
    except FileNotFoundError:
        now = None
    if now != plan.source_identity:
        raise OutputError(
            f"input '{plan.source}' changed since it was read (another program replaced or "
            "wrote it, e.g. a second htt-tmva apply); the new file was discarded and nothing "
            "was written: run the application again"
        )


@contextmanager
def scratch(plan: OutputPlan) -> Iterator[OutputPlan]:
    """Remove the temporary output (and a stream of earlier versions) when the block ends,
    however it ends."""
    try:
        yield plan
    finally:
        for path in (plan.temp, plan.stream):
            with suppress(FileNotFoundError):
                path.unlink()


def output_columns(
    info: InputInfo, names: Sequence[str], event_branch: str, full_copy: bool
) -> list[str]:
    """Branches of the output tree, in order: those copied (all, or the event number of a
    new friend tree) then the new ones; replaced branches keep their place."""
    kept = info.kept
    if kept is None:
        kept = info.branches if full_copy else [event_branch]
    return [*kept, *[n for n in names if n not in kept]]


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


def copy_directory(source, target, skip, prefix: str = "") -> int:
    """Copy every key of ``source`` into ``target`` (all cycles; trees: the last one), except
    the trees at the paths in ``skip`` (written already). Returns the objects copied."""
    copied = 0
    for name, keys in _key_groups(source).items():
        cls = str(keys[-1].GetClassName())
        path = f"{prefix}{name}"
        if path in skip:
            continue
        if cls.startswith("TDirectory"):
            sub = target.GetDirectory(name) or target.mkdir(name, keys[-1].GetTitle())
            copied += copy_directory(keys[-1].ReadObj(), sub, skip, f"{path}/")
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


def tree_metadata(tree) -> dict:
    """What a tree carries besides its branches and entries, and what the in-place rewrite
    keeps: title, aliases, friends (alias, tree, file), TTreeIndex, UserInfo, weight."""
    aliases, friends, index = tree.GetListOfAliases(), tree.GetListOfFriends(), None
    if tree.GetTreeIndex():
        found = tree.GetTreeIndex()
        index = (str(found.GetMajorName()), str(found.GetMinorName()), int(found.GetN()))
    return {
        "title": str(tree.GetTitle()),
        "aliases": sorted((str(a.GetName()), str(a.GetTitle())) for a in aliases or []),
        "friends": [
            (str(f.GetName()), str(f.GetTreeName()), str(f.GetTitle())) for f in friends or []
        ],
        "index": index,
        "user_info": [
            (str(o.ClassName()), str(o.GetName()), str(o.GetTitle())) for o in tree.GetUserInfo()
        ],
        "weight": float(tree.GetWeight()),
    }


def restore_tree_metadata(source_tree, tree) -> None:
    """Give ``tree`` (the Snapshot's copy) the metadata of ``source_tree`` and rewrite it."""
    ROOT = root()
    tree.SetTitle(source_tree.GetTitle())
    for alias in source_tree.GetListOfAliases() or []:
        tree.SetAlias(alias.GetName(), alias.GetTitle())
    for friend in source_tree.GetListOfFriends() or []:
        tree.AddFriend(f"{friend.GetName()}={friend.GetTreeName()}", friend.GetTitle())
    index = source_tree.GetTreeIndex()
    if index:
        if index.ClassName() != "TTreeIndex":  # pragma: no cover - TChainIndex: chains only
            raise OutputError(f"cannot rebuild a {index.ClassName()} of tree '{tree.GetName()}'")
        tree.BuildIndex(index.GetMajorName(), index.GetMinorName())
    for item in source_tree.GetUserInfo():
        clone = item.Clone()
        ROOT.SetOwnership(clone, False)  # the tree's UserInfo list owns it
        tree.GetUserInfo().Add(clone)
    tree.SetWeight(source_tree.GetWeight())
    tree.GetDirectory().cd()  # TTree::Write writes into the current directory
    tree.Write("", ROOT.TObject.kOverwrite)


def _source_tree_file(info: InputInfo, plan: OutputPlan):
    """The open file holding the tree that ``info``'s copy was made from."""
    return open_root_file(info.source if info.source is not None else plan.source)


def complete_copy(infos: Sequence[InputInfo], plan: OutputPlan) -> None:
    """Copy all other objects of the base file (the input, or the output file extended)
    into the new file and restore the copied trees' metadata (title, aliases, friends,
    index, UserInfo, weight)."""
    target = open_root_file(plan.temp, "UPDATE")
    try:
        if plan.base is not None:
            base = open_root_file(plan.base)
            try:
                written = {info.tree_path for info in infos}
                copied = copy_directory(base, target, written)
            finally:
                base.Close()
            log.debug("copied %d other object(s) of %s", copied, plan.base)
        for info in infos:
            if not info.has_tree_metadata:
                continue
            source = _source_tree_file(info, plan)
            try:
                source_tree = get_tree(source, info.tree_path)
                tree = get_tree(target, info.tree_path)
                if tree_metadata(tree) != tree_metadata(source_tree):
                    restore_tree_metadata(source_tree, tree)
            finally:
                source.Close()
    finally:
        target.Close()


def output_hash(path: Path, tree_path: str, event_branch: str, chunk_size: int) -> int:
    """The order hash of (entry, event) pairs of a written tree, read like pass 1 reads
    (in C++ when the one-pass pipeline is loaded: the same hash, faster)."""
    from htt_tmva.application import pipeline

    if pipeline.loaded():
        return pipeline.order_hash(str(path), tree_path, event_branch)
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


def key_classes(directory, prefix: str = "") -> dict[str, str]:
    """Path -> class name of all keys in a file or directory, recursively (last cycle)."""
    found = {}
    for key in directory.GetListOfKeys():
        path = f"{prefix}{key.GetName()}"
        found[path] = str(key.GetClassName())
        if found[path].startswith("TDirectory"):
            found |= key_classes(key.ReadObj(), f"{path}/")
    return found


def verify(
    infos: Sequence[InputInfo],
    plan: OutputPlan,
    columns: Sequence[Sequence[str]],
    order_hashes: Sequence[int],
    event_branch: str,
    chunk_size: int,
) -> None:
    """Check the temporary output: readable, not recovered; per tree the same entries,
    branches (names and types), tree class, metadata and event order as its source; every
    object of the base file there with its class."""
    from htt_tmva.application.trees import branch_types

    problems = []
    tfile = open_root_file(plan.temp)
    try:
        classes = key_classes(tfile)
        found = []
        for info in infos:
            tree = get_tree(tfile, info.tree_path)
            found.append(
                (
                    int(tree.GetEntries()),
                    top_level_branches(tree),
                    str(tree.ClassName()),
                    tree_metadata(tree),
                    branch_types(tree, list(info.kept_types)),
                )
            )
    finally:
        tfile.Close()
    if plan.base is not None:
        base = open_root_file(plan.base)
        try:
            before = key_classes(base)
        finally:
            base.Close()
        missing = sorted(k for k in before if k not in classes)
        if missing:
            problems.append(f"objects {missing} of '{plan.base}' are missing")
        changed = [
            f"{k} ({before[k]} -> {classes[k]})"
            for k in before
            if k in classes and before[k] != classes[k]
        ]
        if changed:
            problems.append(f"objects changed class: {changed}")
    for info, wanted, (entries, branches, cls, metadata, types) in zip(infos, columns, found):
        where = f"tree '{info.tree_path}': "
        if entries != info.entries:
            problems.append(f"{where}{entries} entries instead of {info.entries}")
        if branches != list(wanted):
            problems.append(f"{where}branches {branches} instead of {list(wanted)}")
        copied_whole = plan.full_copy or info.source is not None  # a new friend: the event
        if cls != "TTree" and (copied_whole or cls not in _TREE_CLASSES):
            problems.append(f"{where}a {cls}, not a TTree")
        differing = [k for k in info.kept_types if types[k] != info.kept_types[k]]
        if differing:
            problems.append(
                f"{where}branch types changed: "
                + ", ".join(f"{k} {types[k]} instead of {info.kept_types[k]}" for k in differing)
            )
        if info.has_tree_metadata:
            source = _source_tree_file(info, plan)
            try:
                want = tree_metadata(get_tree(source, info.tree_path))
            finally:
                source.Close()
            differing = [k for k in want if metadata[k] != want[k]]
            if differing:
                problems.append(
                    f"{where}tree metadata differs from the source's: "
                    + ", ".join(f"{k} {metadata[k]!r} instead of {want[k]!r}" for k in differing)
                )
    if not problems:
        for info, order_hash in zip(infos, order_hashes):
            if output_hash(plan.temp, info.tree_path, event_branch, chunk_size) != order_hash:
                problems.append(
                    f"tree '{info.tree_path}': the order of the '{event_branch}' column "
                    "differs from the input"
                )
    if problems:
        raise OutputError(
            f"verification of the new file for '{plan.source}' failed: "
            + "; ".join(problems)
            + "; the input is untouched"
        )


def fsync_directory(path: Path) -> None:
    """Flush a folder's entries (the rename), best effort: some file systems refuse it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # pragma: no cover - depends on the file system
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - depends on the file system
        log.debug("fsync of folder %s refused", path)
    finally:
        os.close(fd)


def prepare_commit(plan: OutputPlan) -> None:
    """Everything before the rename: the input is unchanged, the new file has the input's
    permissions (in place) and is on disk."""
    check_unchanged(plan)
    if plan.mode == "inplace":
        os.chmod(plan.temp, stat.S_IMODE(plan.final.stat().st_mode))
    fsync_file(plan.temp)


def commit_all(plans: Sequence[OutputPlan]) -> list[Path]:
    """Commit verified outputs together: every input is checked unchanged and every new
    file flushed first, then all are renamed into place, one ``os.replace`` each. Only a
    failing rename itself (a disk error) can leave some outputs committed and others not;
    the error then names them."""
    for plan in plans:
        prepare_commit(plan)
    done: list[Path] = []
    for plan in plans:
        try:
            os.replace(plan.temp, plan.final)
        except OSError as exc:
            raise OutputError(
                f"renaming '{plan.temp}' to '{plan.final}' failed ({exc.strerror}); "
                f"{len(done)} of {len(plans)} outputs were committed before: "
                f"{[str(d) for d in done]}; the others are untouched"
            ) from None
        done.append(plan.final)
    for folder in dict.fromkeys(plan.final.parent for plan in plans):
        fsync_directory(folder)
    return done
