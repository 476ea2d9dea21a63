"""k-fold training datasets: each input file read once, one tree per class and fold.

The input files are read by :mod:`htt_tmva.data.segments`: each file (with its friends)
once, for every process that selects from it, in parallel; per process and fold its
selected events (cut applied, training weight computed as ``Float_t``, as the classic
scripts wrote it, fold ``event % k``) go to a segment in a scratch file. Each class tree of
each fold file is then the concatenation of its segments (processes in config order, each
process's files in order, entries in input order), baskets copied without recompression:
the output is the same, entry for entry, whatever the number of workers. Trees keep every
branch type (leaf lists, arrays, objects) and the inputs' compression settings.

Each fold file carries a ``TNamed`` ``htt_tmva_fold`` whose title is the JSON
``{"fold": i, "folds": k, "event_branch": "<branch>", "config_digest": "<sha256>"}``: the
digest of the resolved dataset config lets training refuse a set of fold files written by
different configs. Outputs are written to hidden temporary files, verified (entry counts,
metadata) and fsynced; only then are the old fold files and configs removed and the new
files renamed into place, the resolved configs last. A crash during that last step leaves
an incomplete set (files missing), never a mix of old and new files that looks complete.
A lock file in the output folder keeps two runs from writing the same fold files at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Optional

from htt_tmva._files import ensure_writable_folder, fsync_file, fsync_folder, temporary_name
from htt_tmva._progress import progress_bar
from htt_tmva._root import get_tree, open_root_file
from htt_tmva.config.stages import DatasetConfig
from htt_tmva.data import _copy, inputs, segments
from htt_tmva.errors import OutputError

log = logging.getLogger(__name__)

FOLD_METADATA = "htt_tmva_fold"
LOCK_NAME = ".htt_tmva_dataset.lock"


def config_digest(config: DatasetConfig) -> str:
    """sha256 of what the resolved config says the fold files hold (every key, input paths
    absolute, but not where the files are written): the fold files and parts of one dataset
    share it."""
    content = dict(config.resolved()["resolved"])
    for key in ("output_path", "output_filename"):
        content.pop(key, None)
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def expected_fold_record(config: DatasetConfig, fold: int) -> dict:
    """The ``htt_tmva_fold`` record that the fold file ``fold`` of ``config`` carries."""
    return {
        "fold": fold,
        "folds": config.folds,
        "event_branch": config.event_branch,
        "config_digest": config_digest(config),
    }


def write_fold_record(ROOT, tfile, config: DatasetConfig, fold: int) -> None:
    """Write into the open fold file the ``htt_tmva_fold`` TNamed (title: compact JSON)."""
    tfile.cd()
    text = json.dumps(expected_fold_record(config, fold), separators=(",", ":"))
    ROOT.TNamed(FOLD_METADATA, text).Write()


def written_fold_record(tfile) -> Optional[dict]:
    """The ``htt_tmva_fold`` record as written in an open fold file (None if it has none),
    unchecked: for comparing with :func:`expected_fold_record` (readers of fold files use
    :func:`htt_tmva.data.fold_identity.read_fold_record`, which validates it)."""
    named = tfile.Get(FOLD_METADATA)
    return json.loads(str(named.GetTitle())) if named else None


# --- the lock ----------------------------------------------------------------------------------


@contextlib.contextmanager
def output_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold the lock of an output folder (``flock`` on a hidden file, removed afterwards);
    refuse clearly if another run holds it. The lock dies with its process."""
    ensure_writable_folder(folder)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise OutputError(f"cannot lock '{path}': {exc.strerror}") from None
            holder = ""
            with contextlib.suppress(OSError):
                holder = path.read_text().strip()
            raise OutputError(
                f"another run is writing into '{folder}' ({holder or 'lock held'}; lock file "
                f"'{path}'): wait for it to finish, or use another output_path"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file in between: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{what}, pid {os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


# --- the direct step ---------------------------------------------------------------------------


def make_plans(config: DatasetConfig, names: Optional[list[str]] = None) -> list[segments.Plan]:
    """Inspect the input files (each once) of the processes ``names`` (default: all) and of
    the other processes of their classes; return their plans, cut and weight compiled."""
    names = list(config.processes) if names is None else names
    classes = list(dict.fromkeys(config.processes[n].class_name for n in names))
    members = [n for n, p in config.processes.items() if p.class_name in classes]
    files = inputs.inspect_files(config, [config.processes[m] for m in members])
    layouts = {m: inputs.process_layout(config.processes[m], files) for m in members}
    keep = inputs.class_branches(config, layouts, classes)
    index = {n: i for i, n in enumerate(config.processes)}
    plans = [
        segments.Plan(config.processes[n], layouts[n], keep[n], index=index[n]) for n in members
    ]
    wanted = [p for p in plans if p.process.name in names]
    segments.compile_expressions(config, wanted)
    return wanted


def _fill_fold_files(config, plans, temps, workers, progress) -> dict:
    """Read the inputs into segments, then write each fold file from them; return per fold
    the expected entries per class."""
    ROOT = _copy.declare_helper()
    compression = segments.output_compression(plans)
    units = len({path for plan in plans for path in plan.process.files})
    with segments.ScratchFolder(config.output_path) as folder:
        scratch = segments.fill_segments(
            config,
            plans,
            set(range(config.folds)),
            folder,
            segments.worker_count(workers, units),
            compression,
            progress,
        )
        for plan in plans:
            segments.check_plan(config, plan)
        for plan in plans:
            segments.log_plan(config, plan, range(config.folds))
        expected = {
            fold: {
                cls: sum(p.counts.get(fold, 0) for p in plans if p.process.class_name == cls)
                for cls in config.classes
            }  # fmt: skip
            for fold in range(config.folds)
        }
        for fold, temp in enumerate(temps):
            out = segments._open_output(ROOT, temp, compression)
            try:
                for cls in config.classes:
                    sources = segments.class_sources(config, plans, cls, fold, scratch)
                    segments.concatenate(ROOT, out, cls, sources)
                write_fold_record(ROOT, out, config, fold)
            finally:
                out.Close()
    return expected


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
        record = written_fold_record(tfile)
        if record != expected_fold_record(config, fold):
            raise OutputError(f"verification of '{path}' failed: fold record {record}")
    finally:
        tfile.Close()


def _commit(config: DatasetConfig, temps: list[Path], finals: list[Path]) -> None:
    """Replace the fold set: old files and configs out first, new files in, configs last."""
    configs = [final.with_suffix(".config.yaml") for final in finals]
    for temp in temps:
        fsync_file(temp)
    for old in [*configs, *finals]:
        if old.exists():
            old.unlink()
    for temp, final in zip(temps, finals):
        os.replace(temp, final)
    for path, final in zip(configs, finals):
        config.write_resolved(path)
        log.info("wrote %s", final)
    fsync_folder(finals[0].parent)


def create_training_dataset(
    config: DatasetConfig, workers: Optional[int] = None, progress=None
) -> list[Path]:
    """Build the k fold files of a dataset config; return their paths.

    ``workers`` (default: the cores available, at most 4) read input files in parallel; the output
    does not depend on it. ``progress(done, total)`` is called with the events read so far
    (default: a progress bar on a terminal).
    """
    plans = make_plans(config)
    with output_lock(config.output_path, f"htt-tmva dataset {config.source}"):

        def fill(temps: list[Path]) -> dict:
            with contextlib.ExitStack() as stack:
                bar = progress or stack.enter_context(progress_bar("dataset"))
                return _fill_fold_files(config, plans, temps, workers, bar)

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
