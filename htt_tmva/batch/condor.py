"""HTCondor job folders: a submit description, a wrapper script and an item list per step.

The folder holds, for a step (``train``, ``apply``):

* ``<step>.sh``: the wrapper, ``htt-tmva <fixed arguments> "$@" <fixed arguments>`` run in
  the folder the submission was made from (relative paths in configs keep their meaning),
  after the environment hook (``--setup FILE`` is sourced first: an LCG view's
  ``setup.sh`` or a virtual environment's ``bin/activate``);
* ``<step>.items``: one line per job with its values (fold and engine; input files);
* ``<step>.sub``: the submit description, one cluster queued item-style from the items;
* ``jobs.json``: the job set (commands and expected outputs), read by ``--resubmit``;
* ``logs/``: HTCondor's log, and each job's output and error.

Jobs read and write the files where they are: the submitting machine's paths must be
visible on the execute nodes (a shared filesystem, as at most HEP sites).
"""

from __future__ import annotations

import json
import logging
import shlex
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from htt_tmva.batch.jobs import Job, JobSet
from htt_tmva.errors import BatchError

log = logging.getLogger(__name__)

JOBS_FILE = "jobs.json"


@dataclass
class Resources:
    """What each job asks the pool for."""

    cpus: int = 1
    memory: str = "2 GB"
    python: Optional[str] = None  # interpreter on the execute node (default: this one)
    setup: Optional[str] = None  # a file the wrapper sources first

    @property
    def interpreter(self) -> str:
        if self.python:
            return self.python
        return "python3" if self.setup else sys.executable


def wrapper_text(jobs: JobSet, resources: Resources) -> str:
    """The job's shell script: environment hook, working folder, the htt-tmva command."""
    lines = [
        "#!/bin/bash",
        f"# htt-tmva batch job ({jobs.step}), written by 'htt-tmva submit'.",
        "# It runs the same command a user would run locally; the job's values come as",
        "# arguments from the submit description.",
        "set -eo pipefail",
    ]
    if resources.setup:
        lines.append(f"source {shlex.quote(resources.setup)}")
    lines.append(f"cd {shlex.quote(jobs.workdir)}")
    command = [resources.interpreter, "-m", "htt_tmva"]
    head = " ".join(shlex.quote(a) for a in [*command, *jobs.prefix])
    tail = " ".join(shlex.quote(a) for a in jobs.suffix)
    lines.append(f'exec {head} "$@" {tail}'.rstrip())
    return "\n".join(lines) + "\n"


def submit_text(jobs: JobSet, folder: Path, resources: Resources, items: Path) -> str:
    """The submit description: one cluster, one job per line of ``items``."""
    logs = folder / "logs"
    return "\n".join(
        [
            f"# htt-tmva {jobs.step}: {len(jobs.jobs)} jobs, one per line of {items.name}",
            "universe = vanilla",
            f"executable = {folder / f'{jobs.step}.sh'}",
            f"arguments = {jobs.arguments}",
            f"initialdir = {jobs.workdir}",
            f"log = {logs / f'{jobs.step}.log'}",
            f"output = {logs / f'{jobs.step}.$(ClusterId).$(ProcId).out'}",
            f"error = {logs / f'{jobs.step}.$(ClusterId).$(ProcId).err'}",
            f"request_cpus = {resources.cpus}",
            f"request_memory = {resources.memory}",
            "should_transfer_files = NO",
            "getenv = False",
            f"queue {', '.join(jobs.columns)} from {items}",
            "",
        ]
    )


def write_items(jobs: list[Job], path: Path) -> Path:
    path.write_text("".join(" ".join(job.values) + "\n" for job in jobs))
    return path


def write_job_folder(jobs: JobSet, folder: Path, resources: Resources) -> Path:
    """Write wrapper, items, submit description and ``jobs.json``; return the description."""
    folder = Path(folder).absolute()
    if (folder / JOBS_FILE).exists():
        raise BatchError(
            f"job folder '{folder}' holds a submission already; give a new folder, or "
            f"'htt-tmva submit --resubmit {folder}' for its failed jobs"
        )
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    wrapper = folder / f"{jobs.step}.sh"
    wrapper.write_text(wrapper_text(jobs, resources))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    items = write_items(jobs.jobs, folder / f"{jobs.step}.items")
    description = folder / f"{jobs.step}.sub"
    description.write_text(submit_text(jobs, folder, resources, items))
    record = {"jobs": jobs.to_dict(), "resources": resources.__dict__, "submissions": []}
    (folder / JOBS_FILE).write_text(json.dumps(record, indent=1))
    return description


def read_job_folder(folder: Path) -> tuple[JobSet, Resources, dict]:
    path = Path(folder) / JOBS_FILE
    try:
        record = json.loads(path.read_text())
        return JobSet.from_dict(dict(record["jobs"])), Resources(**record["resources"]), record
    except FileNotFoundError:
        raise BatchError(
            f"'{folder}' is not a job folder of htt-tmva submit: no {JOBS_FILE}"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BatchError(f"job folder file '{path}' is not valid: {exc}") from None


def submit_description(description: Path) -> int:
    """Submit through HTCondor's Python bindings; return the cluster id."""
    try:
        import htcondor2
    except ImportError:
        raise BatchError(
            "HTCondor's Python bindings are not installed (pip install htcondor); "
            f"or submit by hand: condor_submit {description}"
        ) from None
    text = Path(description).read_text()
    try:
        schedd = htcondor2.Schedd()
        result = schedd.submit(htcondor2.Submit(text))
    except Exception as exc:  # the bindings raise their own HTCondorException
        reason = str(exc).rstrip(". ")
        raise BatchError(
            f"could not submit {description}: {reason}; the job folder is written: submit it "
            f"from a machine with a schedd (condor_submit {description}, or later "
            f"htt-tmva submit --resubmit {description.parent})"
        ) from None
    return int(result.cluster())


def record_submission(folder: Path, description: Path, cluster: int) -> None:
    path = Path(folder) / JOBS_FILE
    record = json.loads(path.read_text())
    record["submissions"].append({"description": str(description), "cluster": cluster})
    path.write_text(json.dumps(record, indent=1))


def report(description: Path, jobs: int, cluster: Optional[int]) -> None:
    """Tell the user what was written or submitted, and how to follow the jobs."""
    if cluster is None:
        log.info("wrote %d jobs; submit them with: condor_submit %s", jobs, description)
        return
    log.info("submitted %d jobs as cluster %d (%s)", jobs, cluster, description)
    log.info("watch them with: condor_q %d   (logs in %s)", cluster, description.parent / "logs")


def resubmission(folder: Path, failed: list[Job], jobs: JobSet, resources: Resources) -> Path:
    """Items and description for ``failed`` jobs only, numbered after earlier resubmissions."""
    folder = Path(folder).absolute()
    number = 1
    while (folder / f"{jobs.step}.resubmit{number}.sub").exists():
        number += 1
    items = write_items(failed, folder / f"{jobs.step}.resubmit{number}.items")
    description = folder / f"{jobs.step}.resubmit{number}.sub"
    description.write_text(submit_text(jobs, folder, resources, items))
    return description
