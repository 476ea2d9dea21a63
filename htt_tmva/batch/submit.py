"""The ``htt-tmva submit`` step: write a job folder, submit it, or resubmit its failed jobs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from htt_tmva.batch.checks import failed_jobs, final_problem
from htt_tmva.batch.condor import (
    FINAL,
    Resources,
    read_job_folder,
    record_submission,
    report,
    resubmission,
    submit_description,
    write_job_folder,
)
from htt_tmva.batch.jobs import JobSet

log = logging.getLogger(__name__)


def submit_jobs(jobs: JobSet, folder: Path, resources: Resources, dry_run: bool) -> Optional[int]:
    """Write the job folder of ``jobs``; submit it unless ``dry_run``; return the cluster id."""
    description = write_job_folder(jobs, folder, resources)
    cluster = None if dry_run else submit_description(description)
    if cluster is not None:
        record_submission(folder, description, cluster)
    report(description, len(jobs.jobs), cluster)
    return cluster


def resubmit_failed(folder: Path, dry_run: bool) -> Optional[int]:
    """Submit again only the jobs of ``folder`` whose outputs are missing or not valid."""
    jobs, resources, _ = read_job_folder(folder)
    failed = failed_jobs(jobs)
    final = jobs.final is not None and bool(failed or _final_problem(jobs))
    if not failed and not final:
        log.info(
            "all %d jobs of %s have valid outputs; nothing to resubmit", len(jobs.jobs), folder
        )
        return None
    log.info("%d of %d jobs have missing or invalid outputs", len(failed), len(jobs.jobs))
    description = resubmission(folder, failed, jobs, resources)
    cluster = None if dry_run else submit_description(description)
    if cluster is not None:
        record_submission(folder, description, cluster)
    report(description, len(failed), cluster)
    return cluster


def _final_problem(jobs: JobSet) -> str:
    problem = final_problem(jobs)
    if problem:
        log.info("the %s job: %s", FINAL, problem)
    return problem
