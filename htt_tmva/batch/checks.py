"""Did a batch job succeed? The checks ``htt-tmva submit --resubmit`` makes on its outputs;
and what ``htt-tmva submit apply`` checks of its inputs before it writes the jobs."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from htt_tmva.errors import BatchError, ConfigError, HttTmvaError, MissingTreeError, OutputError

if TYPE_CHECKING:  # jobs.py calls this module's submit-time checks
    from htt_tmva.batch.jobs import Job, JobSet

log = logging.getLogger(__name__)


def training_output_problem(job: Job, token: str = "") -> str:
    """'' if the model and its manifest are there and readable, else what is wrong."""
    from htt_tmva.engines.manifest import read_manifest

    try:
        read_manifest(Path(job.outputs["model"]))
    except HttTmvaError as exc:
        return str(exc)
    except ValueError as exc:  # a truncated manifest
        return f"manifest of '{job.outputs['model']}' is not valid JSON: {exc}"
    return ""


def tree_selection(path: str, patterns: Sequence[str]) -> dict[str, list[str]]:
    """For each of ``patterns``, the trees of the file ``path`` it names, matched as
    ``htt-tmva apply`` matches them ([] for a plain tree path that is not there); an
    HttTmvaError if the file cannot be opened."""
    from htt_tmva._root import list_trees, open_root_file
    from htt_tmva.application.trees import is_pattern, select_trees

    tfile = open_root_file(path)
    try:
        present = list_trees(tfile)
        selected = select_trees(tfile, patterns)
    finally:
        tfile.Close()
    return {
        p: trees if is_pattern(p) else [t for t in trees if t.strip("/") in present]
        for p, trees in selected.items()
    }


def _listing(path: str, most: int = 12) -> str:
    """The trees of the file ``path``, the first ``most`` of them."""
    from htt_tmva._root import list_trees, open_root_file

    tfile = open_root_file(path)
    try:
        trees = list_trees(tfile)
    finally:
        tfile.Close()
    shown = ", ".join(f"'{t}'" for t in trees[:most]) or "(none)"
    return shown + (f" and {len(trees) - most} more" if len(trees) > most else "")


def trees_per_input(
    files: Sequence[str], patterns: Sequence[str]
) -> list[Optional[dict[str, list[str]]]]:
    """Per input, the tree paths and patterns that name a tree in it, with those trees.
    Checked here, for every input that can be opened: each has a tree, every plain tree
    path is there, every pattern matches in some input (as ``htt-tmva apply`` refuses
    otherwise). None for an input not opened here (remote, or unreadable: its job, given
    every tree path and pattern, will say why)."""
    from htt_tmva._root import is_remote
    from htt_tmva.application.trees import is_pattern

    twice = sorted({p for p in patterns if list(patterns).count(p) > 1})
    if twice:
        raise ConfigError(f"tree(s) given twice: {twice}")
    result: list[Optional[dict[str, list[str]]]] = []
    matched: set[str] = set()
    for path in files:
        selected = None
        if not is_remote(path):
            try:
                selected = tree_selection(path, patterns)
            except HttTmvaError as exc:
                log.warning("the trees of '%s' are not checked here: %s", path, exc)
        if selected is None:
            result.append(None)
            continue
        missing = [p for p in patterns if not is_pattern(p) and not selected[p]]
        used = {p: trees for p, trees in selected.items() if trees}
        if missing or not used:
            what = f"has no tree {missing}" if missing else f"has no tree matching {patterns}"
            raise MissingTreeError(f"input '{path}' {what}; trees there: {_listing(path)}")
        matched.update(used)
        result.append(used)
    unused = [p for p in patterns if p not in matched]
    if None not in result and unused:
        raise MissingTreeError(f"tree pattern(s) {unused} match no tree in any input file")
    return result


def check_not_scored(
    outputs: Sequence[str],
    selections: Sequence[Optional[dict[str, list[str]]]],
    branches: Sequence[str],
) -> None:
    """Refuse at submission what each job would refuse without ``--overwrite``: an output
    (the input in place, an existing friend file or copy) whose trees to be scored hold
    score branches already. Outputs that cannot be opened here are left to their jobs."""
    from htt_tmva._root import branch_names, get_tree, open_root_file

    for output, selected in zip(outputs, selections):
        if selected is None or not os.path.isfile(output):
            continue
        try:
            tfile = open_root_file(output)
        except HttTmvaError:
            continue
        try:
            for tree_path in dict.fromkeys(t for trees in selected.values() for t in trees):
                try:
                    there = set(branch_names(get_tree(tfile, tree_path)))
                except HttTmvaError:  # not in a friend file yet
                    continue
                found = [b for b in branches if b in there]
                if found:
                    raise OutputError(
                        f"tree '{tree_path}' of '{output}' has the score branches {found} "
                        "already; give --overwrite to replace them (nothing was submitted)"
                    )
        finally:
            tfile.Close()


def application_output_problem(job: Job, token: str = "") -> str:
    """'' if every output holds every tree its job was to score (its tree paths and
    patterns matched in the input), with all score branches and the input tree's entries,
    and the record beside it says that a job of this folder (``token``) wrote them all."""
    patterns = job.outputs.get("trees") or [job.outputs["tree"]]  # "tree": older folders
    records = job.outputs.get("records") or [None] * len(job.outputs["inputs"])
    for source, output, record in zip(job.outputs["inputs"], job.outputs["files"], records):
        try:
            selected = tree_selection(source, patterns)
        except HttTmvaError as exc:
            return f"the input cannot be read: {exc}"
        trees = list(dict.fromkeys(t for p in patterns for t in selected[p]))
        if not trees:
            return f"no tree of '{source}' matches {list(patterns)}"
        problem = _trees_problem(output, source, trees, job.outputs["branches"])
        if not problem and record is not None:
            problem = _record_problem(record, source, trees, token)
        if problem:
            return problem
    return ""


def _trees_problem(output: str, source: str, trees: Sequence[str], wanted: Sequence[str]) -> str:
    """'' if ``output`` holds each of ``trees`` with the branches ``wanted`` and (a friend
    or copy) the entries of the input's tree."""
    from htt_tmva._root import branch_names, get_tree, open_root_file

    try:
        tfile = open_root_file(output)
    except HttTmvaError as exc:
        return str(exc)
    entries = {}
    try:
        for tree_path in trees:
            tree = get_tree(tfile, tree_path)
            missing = [b for b in wanted if b not in branch_names(tree)]
            if missing:
                return f"tree '{tree_path}' of '{output}' lacks the score branches {missing}"
            entries[tree_path] = int(tree.GetEntries())
    except HttTmvaError as exc:
        return str(exc)
    finally:
        tfile.Close()
    if output != source:
        try:
            expected = _entries(source, trees)
        except HttTmvaError as exc:
            return f"the input cannot be read: {exc}"
        for tree_path in trees:
            if entries[tree_path] != expected[tree_path]:
                return (
                    f"tree '{tree_path}' of '{output}' has {entries[tree_path]} entries, the "
                    f"input '{source}' has {expected[tree_path]}"
                )
    return ""


def _record_problem(record: str, source: str, trees: Sequence[str], token: str) -> str:
    """'' if ``record`` says that a job of this folder (``token``) scored ``trees`` of
    ``source``: score branches alone may be older ones (an --overwrite job that never ran)."""
    import yaml

    try:
        document = yaml.safe_load(Path(record).read_text()) or {}
    except FileNotFoundError:
        return f"no record '{record}' of a finished job"
    except (OSError, yaml.YAMLError) as exc:
        return f"the record '{record}' cannot be read: {exc}"
    runs = document.get("runs", [document]) if isinstance(document, dict) else []
    runs = [run for run in runs if isinstance(run, dict) and run.get("job") == token]
    if not runs:
        return (
            f"the record '{record}' was not written by a job of this folder: the scores there "
            "are older than the submission"
        )
    inputs = {os.path.abspath(str(run.get("input"))) for run in runs}
    if os.path.abspath(source) not in inputs:
        return f"the record '{record}' is of the input(s) {sorted(inputs)}, not '{source}'"
    recorded = {tree for run in runs for tree in run.get("trees", [run.get("tree")])}
    missing = [t for t in trees if t not in recorded]
    if missing:
        return (
            f"the record '{record}' is of the tree(s) {sorted(map(str, recorded))}; a job of "
            f"this folder has not written {missing}"
        )
    return ""


def _entries(path: str, trees: Sequence[str]) -> dict[str, int]:
    from htt_tmva._root import get_tree, open_root_file

    tfile = open_root_file(path)
    try:
        return {t: int(get_tree(tfile, t).GetEntries()) for t in trees}
    finally:
        tfile.Close()


@contextlib.contextmanager
def _working_directory(folder: str) -> Iterator[None]:
    here = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)


def _dataset_config(jobs: JobSet):
    """The dataset config as the jobs load it (relative paths: from the jobs' folder)."""
    from htt_tmva.config import load_dataset_config

    source = jobs.prefix[1]
    with _working_directory(jobs.workdir):
        config = load_dataset_config(source)
    new = [p for p in config.processes if p not in {j.outputs["process"] for j in jobs.jobs}]
    if new:
        raise BatchError(
            f"{source} has processes {new} that the jobs of this folder do not write (the "
            "config changed since the submission); submit the dataset step anew"
        )
    return config


def dataset_part_problems(jobs: JobSet) -> list[str]:
    """Per part job, '' if its part is valid (as the merge checks it), else what is wrong."""
    from htt_tmva.data.parts import check_parts

    config = _dataset_config(jobs)
    _, problems = check_parts(config, jobs.final.outputs["parts"])
    return [problems.get((j.outputs["process"], j.outputs["fold"]), "") for j in jobs.jobs]


def final_problem(jobs: JobSet) -> str:
    """'' if the final job's outputs are valid (dataset: the fold files merged from the
    parts, with this config's resolved config), else what is wrong."""
    from htt_tmva.data.parts import merged_problem

    return merged_problem(_dataset_config(jobs), jobs.final.outputs["parts"])


CHECKS = {"train": training_output_problem, "apply": application_output_problem}


def failed_jobs(jobs: JobSet) -> list[Job]:
    """The jobs whose outputs are missing or not valid, each logged with the reason."""
    if jobs.step == "dataset":
        problems = dataset_part_problems(jobs)
    else:
        problems = [CHECKS[jobs.step](job, jobs.token) for job in jobs.jobs]
    failed = []
    for job, problem in zip(jobs.jobs, problems):
        if problem:
            log.info("job %s: %s", " ".join(job.values), problem)
            failed.append(job)
    return failed
