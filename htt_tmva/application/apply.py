"""The application step: fold-crossed scores appended to ntuples, fast and safe.

For each input, two passes run at the same time on two cores:

* pass 1 (Python, main thread) reads only the variables and the event branch in chunks,
  scores each event with the model of its fold and streams the scores to a temporary
  binary file next to the output;
* pass 2 (C++ thread) is one single-threaded RDataFrame over the input tree that Defines
  the score branches from that stream and Snapshots them with all original branches
  (or, for ``--friend``, with the event number only), keeping the entry order.

The new file is completed (other objects and the tree's metadata copied) and verified.
A run is all-or-nothing: nothing is written before all inputs, models and output places
are checked and locked; every input's new file is prepared and verified before any of
them is renamed over its input (or to ``--output`` / ``--friend``), so a failure on any
input leaves every input untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from htt_tmva.application.compiled import CompiledScorer, compiled_scorer, run_one_pass
from htt_tmva.application.inputs import InputInfo, expand_inputs, inspect_input
from htt_tmva.application.models import FoldModels, load_fold_models
from htt_tmva.application.scores import (
    JOB_TOKEN_VARIABLE,
    ChunkReader,
    Pass1Result,
    reader_columns,
    record_path,
    run_pass1,
    score_names,
)
from htt_tmva.application.stream import LoopRunner, StreamReader, StreamWriter, record_dtype
from htt_tmva.application.trees import trees_per_file
from htt_tmva.application.writer import (
    OutputPlan,
    book_pass2,
    check_distinct,
    check_space,
    commit_all,
    complete_copy,
    locked,
    output_columns,
    plan_output,
    plan_sources,
    remove_stale,
    scratch,
    verify,
)
from htt_tmva.config.stages import (
    load_application_config,
    load_dataset_config,
    load_training_config,
)
from htt_tmva.errors import ConfigError, OutputError
from htt_tmva.expressions import input_branches

log = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_branch_names(names: Sequence[str], source: Path) -> None:
    """New branch names must be distinct C++ identifiers (RDataFrame columns)."""
    bad = [n for n in names if not _IDENTIFIER.match(n)]
    if bad:
        raise ConfigError(
            f"{source}: branch names {bad} (branch_prefix + class) are not valid "
            "identifiers; use letters, digits and '_' only"
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(
            f"{source}: branch names {twice} occur twice (a class named like "
            "max_score or max_index?)"
        )


def run_application(
    dataset_config_path: str | Path,
    training_config_path: str | Path,
    application_config_path: str | Path,
    inputs: Sequence[str],
    tree: str | Sequence[str],
    friend: Optional[str] = None,
    output: Optional[str] = None,
    overwrite: bool = False,
    engine: Optional[str] = None,
    nonfinite_default: Optional[float] = None,
    chunk_size: int = 500_000,
    compile_models: bool = True,
    scoring_threads: Optional[int] = None,
    executor: str = "local",
    workers: int = 2,
    reader: Optional[str] = None,
    friend_dir: Optional[str] = None,
) -> list[Path]:
    """Append fold-crossed scores to ``tree`` of every input; return the files written.

    ``tree``: a tree path or a list of them, each may be a pattern (``'mt_*Up/ntuple'``,
    matched per file and path segment); all trees of a file are written in one new file,
    committed once. ``friend_dir``: friend files ``DIR/<nick>/<nick>.root`` (the classic
    layout; default: the application config's ``output_directory`` when no output mode is
    given). An existing output or friend file is extended, never emptied.

    Models that export to C++ score for the writing event loop, compiled (one pass, the
    default); with ``compile_models=False``, and for models that do not export, the Python
    path runs (two passes, batched inference). ``scoring_threads``: see
    :func:`htt_tmva.application.compiled.scoring_threads`.
    ``executor='dask'`` (a local cluster of ``workers``) or ``'dask=ADDRESS'`` runs the
    compiled models on a Dask cluster (DistRDF); the outputs are the same.
    """
    from htt_tmva.application.distributed import parse_executor

    address = parse_executor(executor)
    if chunk_size <= 0:
        raise ConfigError(f"--chunk-size must be positive, got {chunk_size}")
    if scoring_threads is not None and scoring_threads < 0:
        raise ConfigError(f"--scoring-threads must be 0 or more, got {scoring_threads}")
    if sum(x is not None for x in (friend, output, friend_dir)) > 1:
        raise ConfigError("give only one of --friend, --friend-dir and --output")
    dataset = load_dataset_config(dataset_config_path)
    training = load_training_config(training_config_path)
    application = load_application_config(application_config_path, training)
    if friend is None and output is None and friend_dir is None and application.output_directory:
        friend_dir = str(application.output_directory)
        log.info("friend files to '%s' (output_directory of %s)", friend_dir, application.source)
    names = score_names(application.branch_prefix, training.classes)
    check_branch_names(names, application.source)
    files = expand_inputs(inputs)
    trees = [tree] if isinstance(tree, str) else list(tree)
    per_file = trees_per_file(files, trees)
    variables = input_branches(training.variables)
    # deeper trees first: a Snapshot into a file that holds a top-level tree of the same
    # name (ROOT 6.40 compares base names) is refused, the other way round it is not
    infos = [
        [
            inspect_input(f, t, variables, dataset.event_branch, names, overwrite)
            for t in sorted(ts, key=lambda t: -t.count("/"))
        ]
        for f, ts in zip(files, per_file)
    ]
    plans = [
        plan_output(group[0], len(infos), friend, output, overwrite, friend_dir) for group in infos
    ]
    check_distinct(plans)
    for group, plan in zip(infos, plans):
        plan_sources(group, plan, names, dataset.event_branch, overwrite)
    if address is not None and any(
        len(group) > 1 or group[0].source is not None for group in infos
    ):
        raise ConfigError(
            "--executor dask scores one tree per file into a new file or in place; several "
            "trees of a file, or adding to an existing --friend/--output file, run with the "
            "local executor"
        )
    if reader == "tmva" and address is not None:
        raise ConfigError(
            "--reader tmva evaluates with TMVA::Reader in this process; it does not run with "
            "--executor dask"
        )
    models = load_fold_models(
        application, training, dataset.folds, engine, reader, dataset.event_branch
    )
    # --reader tmva is a cross-check of TMVA::Reader itself: never replaced by compiled code
    use_compiled = (compile_models or address is not None) and reader != "tmva"
    compiled = compiled_scorer(models, scoring_threads) if use_compiled else None
    if address is not None and compiled is None:
        raise ConfigError(
            "--executor dask needs models that export to C++ (see the log for why these do not)"
        )
    scoring = Scoring(models, names, dataset.event_branch, chunk_size, nonfinite_default, compiled)
    with contextlib.ExitStack() as stack:
        if address is not None:
            from htt_tmva.application.distributed import dask_client

            scoring = dataclasses.replace(
                scoring, client=stack.enter_context(dask_client(address, workers)),
                partitions=2 * workers,
            )  # fmt: skip
        return _apply_all(infos, plans, scoring, dataset, training, application)


def _apply_all(infos, plans, scoring, dataset, training, application) -> list[Path]:
    """All-or-nothing: lock every output, prepare and verify every new file (all trees of
    an input in one), then commit them all; any failure before the commit leaves every
    input untouched."""
    with ExitStack() as stack:
        for plan in plans:
            stack.enter_context(locked(plan))
        for plan in plans:
            remove_stale(plan)
        record_bytes = record_dtype(len(scoring.names)).itemsize
        check_space(plans, [sum(i.entries for i in group) for group in infos], record_bytes)
        for plan in plans:
            stack.enter_context(scratch(plan))
        for index, (group, plan) in enumerate(zip(infos, plans)):
            if len(plans) > 1:
                log.info("input %d of %d", index + 1, len(plans))
            prepare_file(group, plan, scoring)
        written = commit_all(plans)
    log.info("committed %d output(s)", len(written))
    for group, plan, final in zip(infos, plans, written):
        write_provenance(
            record_path(final, application.branch_prefix), group, plan,
            (dataset, training, application),
        )  # fmt: skip
    return written


def write_provenance(record: Path, infos, plan, configs) -> Path:
    """Add this run (input, trees, mode, resolved configs) to the output's provenance
    file: earlier runs on the same output (other folders, other models) are kept."""
    import yaml

    from htt_tmva._files import atomic_outputs

    runs = []
    if record.is_file():
        try:
            old = yaml.safe_load(record.read_text())
        except yaml.YAMLError:
            old = None
        if isinstance(old, dict) and isinstance(old.get("runs"), list):
            runs = old["runs"]
        elif isinstance(old, dict):  # a record of one run, written before runs were kept
            runs = [old]
        else:
            log.warning("provenance file '%s' is unreadable: started anew", record)
    run = {
        "input": str(plan.source),
        "trees": [info.tree_path for info in infos],
        "mode": plan.mode,
        "output": str(plan.final),
        "configs": [c.resolved() for c in configs],
    }
    job = os.environ.get(JOB_TOKEN_VARIABLE)
    if job:  # the batch job that wrote it (htt-tmva submit --resubmit checks it)
        run["job"] = job
    runs.append(run)
    with atomic_outputs([record]) as (temp,):
        temp.write_text(yaml.safe_dump({"runs": runs}, sort_keys=False))
    return record


@dataclass(frozen=True)
class Scoring:
    """What every input is scored with: the model of each fold, the new branch names, the
    event branch, the events per chunk and the score given to non-finite inputs."""

    models: FoldModels
    names: Sequence[str]
    event_branch: str
    chunk_size: int
    nonfinite_default: Optional[float]
    compiled: Optional[CompiledScorer] = None
    client: Optional[object] = None  # a Dask client: score on the cluster
    partitions: int = 0


def _run_passes(
    info: InputInfo, plan: OutputPlan, scoring: Scoring
) -> tuple[Pass1Result, StreamReader]:
    """Run pass 2 in a C++ thread and pass 1 here; raise if either fails."""
    models, names, event_branch = scoring.models, scoring.names, scoring.event_branch
    read_columns = reader_columns(models.variables, event_branch, info.event_limit > 0)
    writer = StreamWriter(plan.stream, len(names))
    try:
        # pass 1's C++ calls compile before pass 2 starts, so that while pass 2 compiles its
        # graph in its thread, pass 1 already scores without needing the interpreter
        chunk_reader = ChunkReader(
            info.path, info.tree_path, read_columns, event_branch, info.event_unsigned
        )
        if info.entries:
            chunk_reader.read(0, 1)
        reader = StreamReader(plan.stream, len(names), info.entries)
        result, nodes = book_pass2(info, plan, names, event_branch)
        loop = LoopRunner()
        loop.finished()
        reader.activate()
        loop.start(result)
        try:
            passed = run_pass1(
                chunk_reader,
                info.entries,
                models,
                event_branch,
                writer,
                scoring.chunk_size,
                scoring.nonfinite_default,
                on_abort=reader.cpp.Abort,
                keep_going=lambda: not loop.finished(),
                event_limit=info.event_limit,
            )
            reader.cpp.WriterDone()
        except BaseException as exc:
            reader.cpp.Abort(f"pass 1 failed: {exc}")
            raise
        finally:
            error = loop.join(on_interrupt=reader.cpp.Abort)
            reader.deactivate()
    finally:
        writer.close()
    del result, nodes
    if error:
        raise OutputError(
            f"writing the new file for '{info.path}' failed: {error}; the input is untouched"
        )
    return passed, reader


def prepare_file(infos: Sequence[InputInfo], plan: OutputPlan, scoring: Scoring) -> None:
    """Score every tree of one input into one new file (``plan.temp``), copy the base
    file's other content and verify all of it; not committed."""
    start = time.perf_counter()
    passes = []
    for info in infos:
        passes.append(prepare_tree(info, plan, scoring))
        plan.started = True
    times = {"trees": time.perf_counter() - start}
    if plan.base is not None or any(info.has_tree_metadata for info in infos):
        complete_copy(infos, plan)
        times["copy"] = time.perf_counter() - start - sum(times.values())
    verify(
        infos,
        plan,
        [output_columns(i, scoring.names, scoring.event_branch, plan.full_copy) for i in infos],
        [passed.order_hash for passed in passes],
        scoring.event_branch,
        scoring.chunk_size,
    )
    times["verify"] = time.perf_counter() - start - sum(times.values())
    steps = ", ".join(f"{k} {v:.2f} s" for k, v in times.items())
    log.info("%s: %d tree(s), %s", plan.source.name, len(infos), steps)


def prepare_tree(info: InputInfo, plan: OutputPlan, scoring: Scoring) -> Pass1Result:
    """Score one tree and write it into ``plan.temp``."""
    names, event_branch = scoring.names, scoring.event_branch
    start = time.perf_counter()
    log.info(
        "%s: scoring %d entries of tree '%s' -> %s (%s)",
        info.path,
        info.entries,
        info.tree_path,
        plan.final,
        plan.mode,
    )
    if scoring.client is not None:
        from htt_tmva.application.distributed import run_distributed

        reader = None
        passed = run_distributed(
            scoring.client, scoring.compiled, info, plan, list(names), event_branch,
            scoring.nonfinite_default, scoring.partitions,
        )  # fmt: skip
    elif scoring.compiled is not None:
        reader = None
        passed = run_one_pass(
            scoring.compiled, info, plan, names, event_branch, scoring.nonfinite_default
        )
    else:
        passed, reader = _run_passes(info, plan, scoring)
        plan.stream.unlink()  # not needed any more; the new file waits for the others
    seconds = time.perf_counter() - start
    log.info(
        "%s:%s: %d events in %.1f s (%.0f events/s); per fold %s",
        info.path,
        info.tree_path,
        info.entries,
        seconds,
        info.entries / max(seconds, 1e-9),
        passed.per_fold,
    )
    if reader is not None:
        log.info(
            "%s: pass 1 read %.1f s, inference %.1f s; pass 2 waited %.1f s for scores",
            info.path.name,
            passed.seconds_read,
            passed.seconds_predict,
            reader.cpp.WaitedSeconds(),
        )
    return passed
