"""Command-line arguments of ``htt-tmva submit`` (argparse only: nothing heavy here)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from htt_tmva.apply_options import scoring_arguments, scoring_options


def _common(parser: argparse.ArgumentParser, step: str) -> None:
    default = f"htt-tmva-jobs/{step}-{time.strftime('%Y%m%d-%H%M%S')}"
    parser.add_argument(
        "--job-dir", default=default, help=f"folder for the job files (default {default})"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="only write the job folder and say how to submit"
    )
    parser.add_argument(
        "--setup",
        metavar="FILE",
        default=None,
        help="shell file each job sources first (an LCG view's setup.sh, a venv's bin/activate)",
    )
    parser.add_argument(
        "--python",
        default=None,
        help="python on the execute nodes (default: this one; python3 with --setup)",
    )
    parser.add_argument("--request-cpus", type=int, default=1, metavar="N", help="default 1")
    parser.add_argument(
        "--request-memory", default="2 GB", metavar="MEMORY", help="e.g. '4 GB' (default 2 GB)"
    )


def add_submit_parser(sub) -> argparse.ArgumentParser:
    """``htt-tmva submit {dataset,train,apply} ...``; ``htt-tmva submit --resubmit FOLDER``."""
    parser = sub.add_parser(
        "submit",
        help="run a step as HTCondor jobs (or resubmit failed ones)",
        description="Write an HTCondor job folder for a step and submit it through the "
        "Python bindings; --resubmit JOB_FOLDER submits only the jobs whose outputs are "
        "missing or not valid.",
    )
    parser.add_argument("--resubmit", metavar="JOB_FOLDER", default=None)
    parser.add_argument(
        "--dry-run", action="store_true", help="with --resubmit: only write the files"
    )
    steps = parser.add_subparsers(dest="step", metavar="STEP")

    p = steps.add_parser(
        "dataset",
        help="one job per process and fold, then the merge (a DAG)",
        description="One job per process and fold: htt-tmva dataset CONFIG --process P --fold I "
        "--partial-output PARTS; then, once all have succeeded, htt-tmva dataset CONFIG --merge "
        "PARTS, as a DAG (condor_submit_dag).",
    )
    p.add_argument("dataset_config", metavar="DATASET_CONFIG")
    p.add_argument(
        "--partial-output",
        metavar="DIR",
        default=None,
        help="folder of the part files (default: JOB_DIR/parts)",
    )
    _common(p, "dataset")

    p = steps.add_parser(
        "train",
        help="one job per fold and engine",
        description="One job per fold (and per engine): htt-tmva train CONFIG FOLD --engine E.",
    )
    p.add_argument("training_config", metavar="TRAINING_CONFIG")
    p.add_argument("folds", metavar="FOLD", type=int, nargs="*", help="default: all folds")
    p.add_argument(
        "--engine",
        dest="engines",
        action="append",
        choices=("keras", "bdt", "tmva"),
        default=[],
        help="engine (repeat for several; default: the config's)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing model files")
    _common(p, "train")

    p = steps.add_parser(
        "apply",
        help="one job per input file or group of files",
        description="One job per group of --files-per-job inputs: htt-tmva apply ... FILES "
        "TREE...; tree patterns are matched per file by the job (a job gets the patterns that "
        "match in its files). The per-file options of 'htt-tmva apply' are passed to every job.",
        parents=[scoring_options()],
    )
    p.add_argument("dataset_config", metavar="DATASET_CONFIG")
    p.add_argument("training_config", metavar="TRAINING_CONFIG")
    p.add_argument("application_config", metavar="APPLICATION_CONFIG")
    p.add_argument(
        "input_and_trees",
        metavar="INPUT... TREE",
        nargs="+",
        help="ROOT file(s) or glob(s), then one or more tree paths or patterns, as for "
        "'htt-tmva apply' ('*/ntuple', mt_nominal/ntuple 'mt_*Up/ntuple')",
    )
    p.add_argument("--files-per-job", type=int, default=1, metavar="N", help="default 1")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--friend",
        metavar="FOLDER",
        default=None,
        help="friend files to FOLDER/<input name> (one input: also a FILE)",
    )
    mode.add_argument(
        "--friend-dir",
        metavar="DIR",
        default=None,
        help="friend files in the classic layout DIR/<nick>/<nick>.root",
    )
    mode.add_argument(
        "--output",
        metavar="FOLDER",
        default=None,
        help="full copies to FOLDER/<input name> (one input: also a FILE)",
    )
    _common(p, "apply")
    return parser


def run_submit(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from htt_tmva.batch.condor import Resources
    from htt_tmva.batch.submit import resubmit_failed, submit_jobs

    if args.resubmit is not None:
        if args.step is not None:
            parser.error("submit: give either --resubmit JOB_FOLDER or a STEP, not both")
        resubmit_failed(args.resubmit, args.dry_run)
        return
    if args.step is None:
        parser.error("submit: give a STEP (dataset, train, apply) or --resubmit JOB_FOLDER")
    resources = Resources(args.request_cpus, args.request_memory, args.python, args.setup)
    submit_jobs(_job_set(args), args.job_dir, resources, args.dry_run)


def _job_set(args: argparse.Namespace):
    from htt_tmva.batch.jobs import application_jobs, dataset_jobs, training_jobs

    if args.step == "dataset":
        parts = args.partial_output or str(Path(args.job_dir) / "parts")
        return dataset_jobs(args.dataset_config, parts)
    if args.step == "train":
        return training_jobs(args.training_config, args.folds, args.engines, args.overwrite)
    from htt_tmva.application.trees import split_inputs_and_trees

    inputs, trees = split_inputs_and_trees(args.input_and_trees)
    return application_jobs(
        args.dataset_config,
        args.training_config,
        args.application_config,
        inputs,
        trees,
        args.files_per_job,
        args.friend,
        args.output,
        scoring_arguments(args),
        friend_dir=args.friend_dir,
    )
