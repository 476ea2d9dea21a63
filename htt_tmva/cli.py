"""The ``htt-tmva`` command: one subcommand per workflow step.

Only argparse runs at start-up; each step imports its (heavy) module when called,
so ``htt-tmva --help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Callable, Optional

from htt_tmva._version import __version__
from htt_tmva.apply_options import add_engine_option, add_reader_option, scoring_options
from htt_tmva.batch.arguments import add_submit_parser, run_submit
from htt_tmva.errors import HttTmvaError

log = logging.getLogger("htt_tmva")


def _toy(args: argparse.Namespace) -> None:
    from htt_tmva.data.toy import write_toy_dataset

    write_toy_dataset(args.output_dir, events=args.events, seed=args.seed)


def _dataset(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from htt_tmva.config import load_dataset_config

    part = (args.process, args.fold, args.partial_output)
    if args.merge is not None and any(v is not None for v in part):
        parser.error("--merge takes no --process, --fold or --partial-output")
    if any(v is not None for v in part) and any(v is None for v in part):
        parser.error("a part needs all three: --process NAME --fold I --partial-output DIR")
    config = load_dataset_config(args.dataset_config)
    if args.merge is not None:
        from htt_tmva.data.parts import merge_parts

        merge_parts(config, args.merge)
    elif args.partial_output is not None:
        from htt_tmva.data.parts import write_part

        write_part(config, args.process, args.fold, args.partial_output)
    else:
        from htt_tmva.data.dataset import create_training_dataset

        create_training_dataset(config)


def _train(args: argparse.Namespace) -> None:
    from htt_tmva.config import load_training_config
    from htt_tmva.training import train_folds

    config = load_training_config(args.training_config)
    folds = range(config.folds) if args.all_folds else [args.fold]
    train_folds(config, folds, engine=args.engine, overwrite=args.overwrite, dry_run=args.dry_run)


def _confusion(args: argparse.Namespace) -> None:
    from htt_tmva.evaluation.testing import run_testing

    run_testing(
        args.training_config,
        args.testing_config,
        args.fold,
        engine=args.engine,
        compare=args.compare,
        reader=args.reader,
    )


def _apply(args: argparse.Namespace) -> None:
    from htt_tmva.application.apply import ApplyOptions, run_application
    from htt_tmva.application.trees import split_inputs_and_trees

    inputs, trees = split_inputs_and_trees(args.input_and_trees)
    options = ApplyOptions(
        friend=args.friend,
        friend_dir=args.friend_dir,
        output=args.output,
        overwrite=args.overwrite,
        engine=args.engine,
        nonfinite_default=args.nonfinite_default,
        chunk_size=args.chunk_size,
        compile_models=args.compile,
        scoring_threads=args.scoring_threads,
        executor=args.executor,
        workers=args.workers,
        reader=args.reader,
    )
    run_application(
        args.dataset_config,
        args.training_config,
        args.application_config,
        inputs,
        trees,
        options,
    )


def _export(args: argparse.Namespace) -> None:
    from htt_tmva.export.run import export_models

    export_models(
        args.training_config, args.fold, args.engine, args.format, overwrite=args.overwrite
    )


def _cache(args: argparse.Namespace) -> None:
    from htt_tmva import _cache

    if args.action == "list":
        found = _cache.entries()
        for entry in reversed(found):  # most recently used first
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.used))
            print(f"{entry.size / 1e6:9.1f} MB  {used}  {entry.path.name}")
        total = sum(e.size for e in found) / 1e6
        print(f"{total:9.1f} MB in {len(found)} entries: {_cache.cache_folder()}")
        return
    limit = int(args.keep_mb * 1e6)
    removed = _cache.clean(limit)
    freed = sum(e.size for e in removed) / 1e6
    log.info("removed %d entries (%.1f MB) from %s", len(removed), freed, _cache.cache_folder())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="htt-tmva",
        description="Multiclass machine learning for H→ττ analyses on ROOT.",
    )
    parser.add_argument("--version", action="version", version=f"htt-tmva {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v", "--verbose", action="count", default=0, help="debug output (-vv: of libraries too)"
    )
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "toy",
        help="write the toy dataset (signal, two backgrounds, data)",
        description="Write example_{signal,background_1,background_2,data}.root "
        "with tree 'ntuple' (x, y, weights, event).",
    )
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="folder for the toy files")
    p.add_argument("--events", type=int, default=10000, help="events per process (default 10000)")
    p.add_argument("--seed", type=int, default=1234, help="random seed (default 1234)")
    p.set_defaults(func=_toy)

    p = sub.add_parser(
        "dataset",
        help="build k-fold training datasets from a dataset config",
        description="Write fold{i}_<output_filename> with one tree per class; "
        "events with event % k == i go to fold i.",
    )
    p.add_argument("dataset_config", metavar="DATASET_CONFIG")
    part = p.add_argument_group(
        "in parts (batch jobs; see 'htt-tmva submit dataset')",
        "write one process's events of one fold into DIR, then merge all parts into the fold "
        "files the direct command writes",
    )
    part.add_argument("--process", metavar="NAME", default=None, help="the part's process")
    part.add_argument("--fold", metavar="I", type=int, default=None, help="the part's fold")
    part.add_argument(
        "--partial-output", metavar="DIR", default=None, help="folder of the part files"
    )
    part.add_argument(
        "--merge", metavar="DIR", default=None, help="assemble the fold files from DIR's parts"
    )
    p.set_defaults(func=lambda args, parser=p: _dataset(args, parser))

    p = sub.add_parser(
        "train",
        help="train a model on one fold (or all folds)",
        description="Train the model of fold FOLD on datasets[FOLD].",
    )
    p.add_argument("training_config", metavar="TRAINING_CONFIG")
    p.add_argument("fold", metavar="FOLD", type=int, nargs="?", default=None)
    p.add_argument("--all-folds", action="store_true", help="train every fold in turn")
    p.add_argument("--overwrite", action="store_true", help="replace existing model files")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="--engine tmva: print the TMVA booking plan (exact option strings), train nothing",
    )
    add_engine_option(p)
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "confusion",
        help="confusion matrices, ROC curves and score plots",
        description="Evaluate the model of fold FOLD on the fold it never saw.",
    )
    p.add_argument("training_config", metavar="TRAINING_CONFIG")
    p.add_argument("testing_config", metavar="TESTING_CONFIG")
    p.add_argument("fold", metavar="FOLD", type=int)
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="TESTING_CONFIG",
        default=(),
        help="further testing configs (e.g. another engine) drawn in the same ROC figure",
    )
    add_engine_option(p)
    add_reader_option(p)
    p.set_defaults(func=_confusion)

    p = sub.add_parser(
        "apply",
        help="append fold-crossed scores to ntuples",
        description="Append <prefix><class>, <prefix>max_score and "
        "<prefix>max_index to each TREE of each INPUT; all trees of a file are written in "
        "one new file, verified and renamed once.",
        parents=[scoring_options()],
    )
    p.add_argument("dataset_config", metavar="DATASET_CONFIG")
    p.add_argument("training_config", metavar="TRAINING_CONFIG")
    p.add_argument("application_config", metavar="APPLICATION_CONFIG")
    p.add_argument(
        "input_and_trees",
        metavar="INPUT... TREE",
        nargs="+",
        help="ROOT file(s) or glob(s), then one or more tree paths or patterns (quoted: "
        "'*/ntuple', mt_nominal/ntuple 'mt_*Up/ntuple')",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--friend",
        metavar="OUTPUT",
        default=None,
        help="write only the scores (and event number) as friend trees to OUTPUT (an "
        "existing file keeps its other trees and branches)",
    )
    mode.add_argument(
        "--friend-dir",
        metavar="DIR",
        default=None,
        help="friend files in the classic layout DIR/<nick>/<nick>.root (nick: the input's "
        "folder for <nick>/<nick>.root inputs, else its stem)",
    )
    mode.add_argument(
        "--output",
        metavar="FILE",
        default=None,
        help="write a full copy with the new branches to FILE",
    )
    p.add_argument(
        "--executor",
        default="local",
        metavar="local|dask[=ADDRESS]",
        help="'dask': a local Dask cluster of --workers; 'dask=ADDRESS': that scheduler "
        "(one task per input file, compiled models)",
    )
    p.add_argument("--workers", type=int, default=2, help="workers of a local Dask cluster")
    p.set_defaults(func=_apply)

    p = sub.add_parser(
        "export",
        help="write models as C++ headers, JSON, ONNX or TMVA weight files",
        description="Export the model of FOLD (or, with --all-folds, one fold-aware C++ "
        "header of all folds, or one JSON or ONNX file per fold) next to the models.",
    )
    p.add_argument("training_config", metavar="TRAINING_CONFIG")
    p.add_argument("fold", metavar="FOLD", type=int, nargs="?", default=None)
    p.add_argument("--all-folds", action="store_true", help="every fold (C++: one header)")
    p.add_argument(
        "--format",
        choices=("cpp", "json", "onnx", "tmva"),
        default="cpp",
        help="cpp (default): C++17 header; json: JSON; onnx: <model>.onnx (per fold; needs "
        "the onnx package); tmva: a bdt model as a TMVA BDTG weight file <model>.weights.xml "
        "(per fold)",
    )
    p.add_argument("--overwrite", action="store_true", help="tmva: replace an existing file")
    add_engine_option(p)
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "cache",
        help="list or empty the cache of compiled models and kernels",
        description="The compiled libraries of 'apply' and the BDT kernel live in "
        "$HTT_TMVA_CACHE (else ~/.cache/htt_tmva); after each build the least recently used "
        "entries beyond $HTT_TMVA_CACHE_MAX_MB (default 2000) are removed.",
    )
    p.add_argument("action", choices=("list", "clean"), help="list: entries, sizes, last use")
    p.add_argument(
        "--keep-mb",
        type=float,
        default=0.0,
        metavar="MB",
        help="clean: keep the most recently used entries up to MB megabytes (default: none)",
    )
    p.set_defaults(func=_cache)

    p = add_submit_parser(sub)
    p.set_defaults(func=lambda args: run_submit(args, p))
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    """-q: warnings and errors; default: progress (INFO); -v: also htt_tmva's DEBUG
    messages; -vv: also the DEBUG messages of every library."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbose:  # also TensorFlow's start-up lines, caught at import (htt_tmva.tensorflow)
        log.setLevel(logging.DEBUG)


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    log.debug("htt-tmva %s, Python %s: %s", __version__, sys.version.split()[0], args)
    if args.command in ("train", "export") and args.fold is None and not args.all_folds:
        parser.error(f"{args.command}: give FOLD or --all-folds")
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except HttTmvaError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
