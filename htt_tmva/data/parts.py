"""The dataset step in parts (for batch jobs): one part per process and fold, then a merge.

``write_part`` writes the events of one process in one fold, exactly as the direct step
fills them into its class tree (same branches, types and compression, same training weight,
input order), into ``<folder>/fold<i>_<process>.part.root``: the class tree and a ``TNamed``
``htt_tmva_part`` (JSON) with the digest of the resolved config, the process, class, fold,
its entries and sum of weights, and the process's events read and selected. A part is
written under a temporary name, verified and renamed: a part file that exists is complete.

``merge_parts`` checks every expected part (present, made from this config, complete, and
the folds of each process adding up to its selected events) and only then assembles the
fold files as the direct step writes them: per fold, one tree per class holding its
processes' parts in config order (baskets copied, not recompressed), the fold record, the
resolved config next to each file, with the direct step's verification and atomic commit.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from urllib.parse import quote

from htt_tmva._files import atomic_outputs, ensure_writable_folder
from htt_tmva._progress import progress_bar
from htt_tmva._root import open_root_file
from htt_tmva.config.stages import DatasetConfig, ProcessConfig
from htt_tmva.data import _copy, segments
from htt_tmva.data.dataset import (
    config_digest,
    expected_fold_record,
    make_plans,
    output_lock,
    write_fold_files,
    write_fold_record,
    written_fold_record,
)
from htt_tmva.errors import (
    ConfigError,
    DatasetPartError,
    HttTmvaError,
    OutputError,
    choices_text,
    did_you_mean,
)

log = logging.getLogger(__name__)

PART_RECORD = "htt_tmva_part"


def part_path(folder, process: str, fold: int) -> Path:
    """The part file of ``process`` in ``fold`` (the name quoted to a safe file name)."""
    return Path(folder) / f"fold{fold}_{quote(process, safe='+')}.part.root"


def _process(config: DatasetConfig, name: str) -> ProcessConfig:
    if name not in config.processes:
        known = list(config.processes)
        raise ConfigError(
            f"process '{name}' is not in {config.source}{did_you_mean(name, known)}; "
            f"processes: {choices_text(known)}"
        )
    return config.processes[name]


def _check_fold(config: DatasetConfig, fold: int) -> None:
    if not 0 <= fold < config.folds:
        raise ConfigError(
            f"fold {fold} does not exist: {config.source} has folds 0 to {config.folds - 1}"
        )


def _members(config: DatasetConfig, cls: str) -> list[str]:
    return [n for n, p in config.processes.items() if p.class_name == cls]


def _output_compression(config: DatasetConfig) -> int:
    """The direct step writes with the compression of the first process's first file."""
    first = next(iter(config.processes.values()))
    tfile = open_root_file(first.files[0])
    try:
        return int(tfile.GetCompressionSettings())
    finally:
        tfile.Close()


# --- writing a part ----------------------------------------------------------------------------


def write_part(config: DatasetConfig, process: str, fold: int, folder, progress=None) -> Path:
    """Write the part of ``process`` in ``fold`` into ``folder``; return its path.

    The events are read as in the direct step (the same segments, the class tree made from
    the class's first process, its branches shared by every process of the class); only the
    processes of the class are inspected. The part records the identity of every input
    file read (ROOT's UUID, size, modification time), which the merge compares.
    """
    own = _process(config, process)
    _check_fold(config, fold)
    (plan,) = make_plans(config, [process])
    compression = _output_compression(config)
    ensure_writable_folder(Path(folder))
    final = part_path(folder, process, fold)
    with contextlib.ExitStack() as stack:
        if progress is None:
            progress = stack.enter_context(progress_bar(f"dataset {process} fold {fold}"))
        with atomic_outputs([final]) as (temp,), segments.ScratchFolder(Path(folder)) as scratch:
            record = _fill_part(config, plan, fold, temp, scratch, compression, progress)
            problem = _part_problem(temp, record)
            if problem:
                raise OutputError(f"verification of the part '{temp}' failed: {problem}")
    log.info(
        "process %s (class %s), fold %d: %d events of %d selected, sum of weights %.6g -> %s",
        process,
        own.class_name,
        fold,
        record["entries"],
        record["selected"],
        record["sum_of_weights"],
        final,
    )
    if record["entries"] == 0:
        log.warning("process %s has no events in fold %d", process, fold)
    return final


def _fill_part(config, plan, fold, path, scratch, compression, progress) -> dict:
    """Read the files of one process into segments of ``fold``, then write them as the
    class tree of the part file ``path``; return its record."""
    ROOT = _copy.declare_helper()
    files = segments.fill_segments(config, [plan], {fold}, scratch, 1, compression, progress)
    segments.check_plan(config, plan)
    cls = plan.process.class_name
    record = {
        "config_digest": config_digest(config),
        "process": plan.process.name,
        "class": cls,
        "fold": fold,
        "folds": config.folds,
        "entries": int(plan.counts.get(fold, 0)),
        "sum_of_weights": float(plan.sums.get(fold, 0.0)),
        "selected": int(plan.selected),
        "total": int(plan.total),
        "compression": compression,
        "inputs": {k: v for f in plan.layout.files for k, v in f.identities.items()},
    }
    tfile = segments._open_output(ROOT, path, compression)
    try:
        segments.concatenate(ROOT, tfile, cls, segments.class_sources(config, [plan], cls, fold,
                                                                      files))  # fmt: skip
        tfile.cd()
        ROOT.TNamed(PART_RECORD, json.dumps(record, separators=(",", ":"))).Write()
    finally:
        tfile.Close()
    return record


# --- checking parts ----------------------------------------------------------------------------


def _part_problem(path: Path, record: dict) -> str:
    """'' if the part file holds ``record`` and its class tree with that many entries."""
    try:
        tfile = open_root_file(path)
    except HttTmvaError as exc:
        return str(exc)
    try:
        named = tfile.Get(PART_RECORD)
        if not named:
            return f"part '{path}' has no '{PART_RECORD}' record (not written by a part job)"
        try:
            found = json.loads(str(named.GetTitle()))
        except ValueError:
            return f"part '{path}' has an unreadable '{PART_RECORD}' record"
        if found.get("config_digest") != record["config_digest"]:
            return (
                f"part '{path}' is stale: made from another dataset config (digest "
                f"{str(found.get('config_digest'))[:12]}, the config now gives "
                f"{record['config_digest'][:12]}); write it again"
            )
        for key in ("process", "fold", "folds", "class"):
            if found.get(key) != record[key]:
                return f"part '{path}' holds {key} {found.get(key)!r}, expected {record[key]!r}"
        if "entries" in record and found != record:
            return f"part '{path}' has the record {found}, expected {record}"
        tree = tfile.Get(record["class"])
        if not tree or not tree.InheritsFrom("TTree"):
            return f"part '{path}' has no tree '{record['class']}'"
        if tree.GetEntries() != found.get("entries"):
            return (
                f"part '{path}' is incomplete: tree '{record['class']}' has "
                f"{tree.GetEntries()} entries, its record says {found.get('entries')}"
            )
        record.update(found)
        return ""
    finally:
        tfile.Close()


def check_parts(config: DatasetConfig, folder) -> tuple[dict, dict]:
    """Every expected part of ``folder``: (records, problems), keyed by (process, fold).

    A part is valid when it exists, opens, was made from this config (digest), holds its
    process, class and fold with the entries its record says; and the folds of a process
    agree on the events read and selected and add up to the selected events."""
    digest = config_digest(config)
    records: dict[tuple[str, int], dict] = {}
    problems: dict[tuple[str, int], str] = {}
    for name, process in config.processes.items():
        for fold in range(config.folds):
            path = part_path(folder, name, fold)
            if not path.exists():
                problems[(name, fold)] = f"process '{name}', fold {fold}: '{path}' is missing"
                continue
            record = {
                "config_digest": digest,
                "process": name,
                "class": process.class_name,
                "fold": fold,
                "folds": config.folds,
            }
            problem = _part_problem(path, record)
            if problem:
                problems[(name, fold)] = problem
            else:
                records[(name, fold)] = record
        found = [records[(name, f)] for f in range(config.folds) if (name, f) in records]
        if len(found) == config.folds:
            problem = _adds_up(name, found)
            if problem:
                problems.update({(name, f): problem for f in range(config.folds)})
    problems.update(_other_input_versions(folder, records))
    return records, problems


def _other_input_versions(folder, records: dict) -> dict:
    """Parts that read an input file in another version (UUID, size or modification time)
    than the first part that read it."""
    seen: dict[str, tuple[str, tuple]] = {}
    problems = {}
    for key, record in records.items():
        for path, identity in (record.get("inputs") or {}).items():
            first = seen.setdefault(path, (identity, key))
            if first[0] != identity:
                problems[key] = (
                    f"part '{part_path(folder, *key)}' read '{path}' in another version than "
                    f"part '{part_path(folder, *first[1])}' ({identity} vs {first[0]}): the "
                    "input changed between the jobs; write the parts again"
                )
    return problems


def _adds_up(process: str, records: list[dict]) -> str:
    read = {(r["total"], r["selected"]) for r in records}
    if len(read) > 1:
        return (
            f"the parts of process '{process}' saw different inputs (events read, selected "
            f"per fold: {[(r['total'], r['selected']) for r in records]}): were the inputs "
            "changed between the jobs? write them again"
        )
    entries = sum(r["entries"] for r in records)
    if entries != records[0]["selected"]:
        return (
            f"the parts of process '{process}' hold {entries} events in all, but "
            f"{records[0]['selected']} were selected"
        )
    return ""


def _raise_part_problems(config, folder, problems: dict) -> None:
    lines = [f"{text}" for text in dict.fromkeys(problems.values())]
    missing = [key for key, text in problems.items() if text.endswith("is missing")]
    hint = ""
    if missing:
        name, fold = missing[0]
        hint = (
            f"\nwrite a missing part with: htt-tmva dataset {config.source} --process {name} "
            f"--fold {fold} --partial-output {folder}"
        )
    shown = "\n  ".join(lines[:10]) + (
        f"\n  ... and {len(lines) - 10} more" if len(lines) > 10 else ""
    )
    raise DatasetPartError(
        f"cannot merge the parts in '{folder}' into the fold files of {config.source}: "
        f"{len(problems)} of {len(config.processes) * config.folds} parts are missing or not "
        f"valid:\n  {shown}{hint}"
    )


# --- the merge ---------------------------------------------------------------------------------


def merge_parts(config: DatasetConfig, folder) -> list[Path]:
    """Assemble the fold files of ``config`` from the parts in ``folder``; return their paths.

    Nothing is written unless every part is there and valid (and all read the same version
    of each input); the fold files then replace the old ones as in the direct step
    (verified, fsynced, renamed, resolved configs last), under the output folder's lock."""
    records, problems = check_parts(config, folder)
    if problems:
        _raise_part_problems(config, folder, problems)
    with output_lock(config.output_path, f"htt-tmva dataset --merge {config.source}"):
        compression = next(iter(records.values()))["compression"]

        def fill(temps: list[Path]) -> dict:
            return {
                fold: _merge_fold(config, folder, fold, temp, compression, records)
                for fold, temp in enumerate(temps)
            }

        return write_fold_files(config, fill)


def _merge_fold(config, folder, fold: int, path: Path, compression: int, records) -> dict:
    """Write one fold file from its parts; return the expected entries per class."""
    ROOT = _copy.declare_helper()
    out = segments._open_output(ROOT, path, compression)
    expected: dict[str, int] = {}
    try:
        for cls in config.classes:
            members = _members(config, cls)
            sources = [(part_path(folder, name, fold), cls) for name in members]
            segments.concatenate(ROOT, out, cls, sources)
            expected[cls] = sum(records[(name, fold)]["entries"] for name in members)
        write_fold_record(ROOT, out, config, fold)
    finally:
        out.Close()
    return expected


def merged_problem(config: DatasetConfig, folder) -> str:
    """'' if the fold files of ``config`` are those the parts in ``folder`` merge into: every
    part valid, every fold file with its fold record, each class tree with the parts'
    entries, and the resolved config of this config next to it."""
    import yaml

    records, problems = check_parts(config, folder)
    if problems:
        return f"{len(problems)} parts are missing or not valid"
    wanted = yaml.safe_load(yaml.safe_dump(config.resolved()))
    for fold in range(config.folds):
        path = config.fold_file(fold)
        try:
            tfile = open_root_file(path)
        except HttTmvaError as exc:
            return str(exc)
        try:
            record = written_fold_record(tfile)
            if record != expected_fold_record(config, fold):
                return f"'{path}' has the fold record {record}, expected fold {fold}"
            for cls in config.classes:
                entries = sum(records[(n, fold)]["entries"] for n in _members(config, cls))
                tree = tfile.Get(cls)
                if not tree or tree.GetEntries() != entries:
                    return f"'{path}' lacks tree '{cls}' with the {entries} entries of its parts"
        finally:
            tfile.Close()
        resolved = path.with_suffix(".config.yaml")
        try:
            if yaml.safe_load(resolved.read_text()) != wanted:
                return f"'{resolved}' is the resolved config of another dataset config"
        except (OSError, yaml.YAMLError):
            return f"'{resolved}' is missing or not readable"
    return ""
