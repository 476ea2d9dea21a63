"""Did a batch job succeed? The checks ``htt-tmva submit --resubmit`` makes on its outputs."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from htt_tmva.batch.jobs import Job, JobSet
from htt_tmva.errors import BatchError, HttTmvaError

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


def application_output_problem(job: Job, token: str = "") -> str:
    """'' if every output holds the tree with all score branches for every input entry and
    the record beside it says that a job of this folder (``token``) wrote it."""
    from htt_tmva._root import branch_names, get_tree, open_root_file

    tree_path, wanted = job.outputs["tree"], job.outputs["branches"]
    for source, output in zip(job.outputs["inputs"], job.outputs["files"]):
        try:
            tfile = open_root_file(output)
        except HttTmvaError as exc:
            return str(exc)
        try:
            tree = get_tree(tfile, tree_path)
            missing = [b for b in wanted if b not in branch_names(tree)]
            if missing:
                return f"'{output}' lacks the score branches {missing}"
            entries = tree.GetEntries()
        except HttTmvaError as exc:
            return str(exc)
        finally:
            tfile.Close()
        if output != source and entries != _entries(source, tree_path):
            return f"'{output}' has {entries} entries, its input '{source}' has more or fewer"
    for source, record in zip(job.outputs["inputs"], job.outputs.get("records", ())):
        problem = _record_problem(record, source, tree_path, token)
        if problem:
            return problem
    return ""


def _record_problem(record: str, source: str, tree_path: str, token: str) -> str:
    """'' if ``record`` says that a job of this folder (``token``) scored ``source``: score
    branches alone may be older ones (an --overwrite job that never ran)."""
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
    trees = {tree for run in runs for tree in run.get("trees", [run.get("tree")])}
    if tree_path not in trees:
        return (
            f"the record '{record}' is of the tree(s) {sorted(map(str, trees))}, not '{tree_path}'"
        )
    return ""


def _entries(path: str, tree_path: str) -> int:
    from htt_tmva._root import get_tree, open_root_file

    tfile = open_root_file(path)
    try:
        return int(get_tree(tfile, tree_path).GetEntries())
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
