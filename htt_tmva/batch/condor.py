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

A step with a final job (``dataset``: the merge of the parts) also gets
``<step>.merge.sub`` (one job, the wrapper with the final job's arguments) and
``<step>.dag``: node ``<step>`` (the cluster of ``<step>.sub``), node ``merge``, and
``PARENT <step> CHILD merge``; it is submitted as a DAG (``condor_submit_dag``).
``--resubmit`` writes ``<step>.resubmitN.dag`` with only the failed jobs and the merge.

Jobs read and write the files where they are: the submitting machine's paths must be
visible on the execute nodes (a shared filesystem, as at most HEP sites).
"""

from __future__ import annotations

import json
import logging
import shlex
import stat
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from htt_tmva.batch.jobs import Job, JobSet, check_job_text
from htt_tmva.errors import BatchError

log = logging.getLogger(__name__)

JOBS_FILE = "jobs.json"
FINAL = "merge"  # the DAG node of a job set's final job


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
    if jobs.token:  # written into the application records: --resubmit knows this job's outputs
        from htt_tmva.application.scores import JOB_TOKEN_VARIABLE

        lines.append(f"export {JOB_TOKEN_VARIABLE}={shlex.quote(jobs.token)}")
    command = [resources.interpreter, "-m", "htt_tmva"]
    head = " ".join(shlex.quote(a) for a in [*command, *jobs.prefix])
    tail = " ".join(shlex.quote(a) for a in jobs.suffix)
    lines.append(f'exec {head} "$@" {tail}'.rstrip())
    return "\n".join(lines) + "\n"


def submit_text(jobs: JobSet, folder: Path, resources: Resources, items: Path) -> str:
    """The submit description: one cluster, one job per line of ``items``."""
    return _description(
        jobs,
        folder,
        resources,
        f"# htt-tmva {jobs.step}: {len(jobs.jobs)} jobs, one per line of {items.name}",
        jobs.step,
        jobs.arguments,
        f"queue {', '.join(jobs.columns)} from {items}",
    )


def final_submit_text(jobs: JobSet, folder: Path, resources: Resources) -> str:
    """The submit description of the final job (the DAG's child of every job)."""
    return _description(
        jobs,
        folder,
        resources,
        f"# htt-tmva {jobs.step}: the {FINAL} job, run when every job has succeeded",
        f"{jobs.step}.{FINAL}",
        " ".join(jobs.final.values),
        "queue",
    )


def _description(jobs, folder, resources, comment, name, arguments, queue) -> str:
    logs = folder / "logs"
    return "\n".join(
        [
            comment,
            "universe = vanilla",
            f"executable = {folder / f'{jobs.step}.sh'}",
            f"arguments = {arguments}",
            f"initialdir = {jobs.workdir}",
            f"log = {logs / f'{jobs.step}.log'}",
            f"output = {logs / f'{name}.$(ClusterId).$(ProcId).out'}",
            f"error = {logs / f'{name}.$(ClusterId).$(ProcId).err'}",
            f"request_cpus = {resources.cpus}",
            f"request_memory = {resources.memory}",
            "should_transfer_files = NO",
            "getenv = False",
            queue,
            "",
        ]
    )


def dag_text(jobs: JobSet, description: Optional[Path], final: Path) -> str:
    """A DAG: the cluster of ``description`` (node ``<step>``), then the final job (node
    ``merge``) as its child; without ``description``, the final job alone."""
    lines = [f"# htt-tmva {jobs.step}: the jobs (one cluster), then the {FINAL} job"]
    if description is not None:
        lines.append(f"JOB {jobs.step} {description}")
    lines.append(f"JOB {FINAL} {final}")
    if description is not None:
        lines.append(f"PARENT {jobs.step} CHILD {FINAL}")
    return "\n".join(lines) + "\n"


def submit_command(description: Path) -> str:
    """How a user submits the file by hand."""
    tool = "condor_submit_dag" if Path(description).suffix == ".dag" else "condor_submit"
    return f"{tool} {description}"


def write_items(jobs: list[Job], path: Path) -> Path:
    path.write_text("".join(" ".join(job.values) + "\n" for job in jobs))
    return path


def write_job_folder(jobs: JobSet, folder: Path, resources: Resources) -> Path:
    """Write wrapper, items, submit description and ``jobs.json``; return the description."""
    folder = Path(folder).absolute()
    check_job_text(str(folder), "the job folder")
    check_job_text(jobs.workdir, "the working folder of the jobs", spaces=True)
    if (folder / JOBS_FILE).exists():
        raise BatchError(
            f"job folder '{folder}' holds a submission already; give a new folder, or "
            f"'htt-tmva submit --resubmit {folder}' for its failed jobs"
        )
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    if not jobs.token:
        jobs.token = uuid.uuid4().hex
    wrapper = folder / f"{jobs.step}.sh"
    wrapper.write_text(wrapper_text(jobs, resources))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    items = write_items(jobs.jobs, folder / f"{jobs.step}.items")
    description = folder / f"{jobs.step}.sub"
    description.write_text(submit_text(jobs, folder, resources, items))
    if jobs.final is not None:
        final = folder / f"{jobs.step}.{FINAL}.sub"
        final.write_text(final_submit_text(jobs, folder, resources))
        description = folder / f"{jobs.step}.dag"
        description.write_text(dag_text(jobs, folder / f"{jobs.step}.sub", final))
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
    """Submit a description (or a DAG: ``.dag``) through HTCondor's Python bindings; return
    the cluster id (of the DAGMan job for a DAG)."""
    try:
        import htcondor2
    except ImportError:
        raise BatchError(
            "HTCondor's Python bindings are not installed (pip install htcondor); "
            f"or submit by hand: {submit_command(description)}"
        ) from None
    dagman_submit = Path(f"{description}.condor.sub")  # written by from_dag
    written_before = dagman_submit.exists()
    try:
        if Path(description).suffix == ".dag":
            # as condor_submit_dag -force: a fresh DAG file each time, earlier tries' files go
            submit = htcondor2.Submit.from_dag(str(description), {"force": True})
        else:
            submit = htcondor2.Submit(Path(description).read_text())
        result = htcondor2.Schedd().submit(submit)
    except Exception as exc:  # the bindings raise their own HTCondorException
        if not written_before and dagman_submit.exists():
            dagman_submit.unlink()  # else condor_submit_dag by hand would ask for -force
        reason = str(exc).rstrip(". ")
        raise BatchError(
            f"could not submit {description}: {reason}; the job folder is written: submit it "
            f"from a machine with a schedd ({submit_command(description)}, or later "
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
    dag = Path(description).suffix == ".dag"
    what = f"{jobs} jobs" + (f" and the {FINAL} job (a DAG)" if dag else "")
    if cluster is None:
        log.info("wrote %s; submit them with: %s", what, submit_command(description))
        return
    logs = description.parent / "logs"
    if dag:
        log.info("submitted %s: DAGMan job %d (%s)", what, cluster, description)
        log.info(
            "watch them with: condor_q -dag -nobatch %d   (DAGMan's log: %s.dagman.out; "
            "job logs in %s)",
            cluster,
            description,
            logs,
        )
        return
    log.info("submitted %s as cluster %d (%s)", what, cluster, description)
    log.info("watch them with: condor_q %d   (logs in %s)", cluster, logs)


def resubmission(folder: Path, failed: list[Job], jobs: JobSet, resources: Resources) -> Path:
    """Items and description for ``failed`` jobs only, numbered after earlier resubmissions.

    For a job set with a final job: a new DAG ``<step>.resubmitN.dag`` of the failed jobs
    (if any) and the final job as their child."""
    folder = Path(folder).absolute()
    number = 1
    while any((folder / f"{jobs.step}.resubmit{number}{ext}").exists() for ext in (".sub", ".dag")):
        number += 1
    description = None
    if failed:
        items = write_items(failed, folder / f"{jobs.step}.resubmit{number}.items")
        description = folder / f"{jobs.step}.resubmit{number}.sub"
        description.write_text(submit_text(jobs, folder, resources, items))
    if jobs.final is None:
        return description
    dag = folder / f"{jobs.step}.resubmit{number}.dag"
    dag.write_text(dag_text(jobs, description, folder / f"{jobs.step}.{FINAL}.sub"))
    return dag
