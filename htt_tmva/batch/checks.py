"""Did a batch job succeed? The checks ``htt-tmva submit --resubmit`` makes on its outputs."""

from __future__ import annotations

import logging
from pathlib import Path

from htt_tmva.batch.jobs import Job, JobSet
from htt_tmva.errors import HttTmvaError

log = logging.getLogger(__name__)


def training_output_problem(job: Job) -> str:
    """'' if the model and its manifest are there and readable, else what is wrong."""
    from htt_tmva.engines.manifest import read_manifest

    try:
        read_manifest(Path(job.outputs["model"]))
    except HttTmvaError as exc:
        return str(exc)
    except ValueError as exc:  # a truncated manifest
        return f"manifest of '{job.outputs['model']}' is not valid JSON: {exc}"
    return ""


def application_output_problem(job: Job) -> str:
    """'' if every output holds the tree with all score branches for every input entry."""
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
    return ""


def _entries(path: str, tree_path: str) -> int:
    from htt_tmva._root import get_tree, open_root_file

    tfile = open_root_file(path)
    try:
        return int(get_tree(tfile, tree_path).GetEntries())
    finally:
        tfile.Close()


CHECKS = {"train": training_output_problem, "apply": application_output_problem}


def failed_jobs(jobs: JobSet) -> list[Job]:
    """The jobs whose outputs are missing or not valid, each logged with the reason."""
    check = CHECKS[jobs.step]
    failed = []
    for job in jobs.jobs:
        problem = check(job)
        if problem:
            log.info("job %s: %s", " ".join(job.values), problem)
            failed.append(job)
    return failed
