"""The application step: fold-crossed scores appended to ntuples, fast and safe.

For each input, one pipeline (:mod:`htt_tmva.application.fill`): every selected tree is
copied raw into a new file (or, for a friend, its event branch only) and the score branches
are added and filled in entry order from a scoring back-end (the models compiled to C++, or
Python for models that do not export); the new file is completed (other objects and the
trees' metadata copied) and verified. With ``--executor dask`` the same pipeline runs on a
Dask cluster, one task per input.
A run is all-or-nothing: nothing is written before all inputs, models and output places
are checked and locked; every input's new file is prepared and verified before any of
them is renamed over its input (or to ``--output`` / ``--friend``), so a failure on any
input leaves every input untouched.
"""

from __future__ import annotations

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

from htt_tmva.application.compiled import CompiledScorer, compiled_scorer
from htt_tmva.application.inputs import InputInfo, expand_inputs, inspect_input
from htt_tmva.application.models import FoldModels, load_fold_models
from htt_tmva.application.scores import JOB_TOKEN_VARIABLE, record_path, score_names
from htt_tmva.application.trees import trees_per_file
from htt_tmva.application.writer import (
    OutputPlan,
    check_distinct,
    check_space,
    check_unchanged,
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
from htt_tmva.errors import ConfigError
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


@dataclass(frozen=True)
class ApplyOptions:
    """How ``htt-tmva apply`` writes (its command-line options).

    ``friend``/``output``/``friend_dir``: the output mode (at most one; none: in place, or
    friend files under the application config's ``output_directory`` when it names one);
    ``friend_dir`` writes ``DIR/<nick>/<nick>.root`` (the classic layout). An existing output
    or friend file is extended, never emptied; ``overwrite`` replaces branches of the same
    names. ``compile_models``: score with the models compiled to C++ where they export
    (else, and with False, Python scores in chunks of ``chunk_size``); ``scoring_threads``:
    see :func:`htt_tmva.application.compiled.scoring_threads`. ``executor``: ``local``,
    ``dask`` (a local cluster of ``workers``) or ``dask=ADDRESS``: the same pipeline, one
    task per input on the cluster (compiled models only). ``reader='tmva'``: TMVA::Reader
    scores (a cross-check, never compiled)."""

    friend: Optional[str] = None
    output: Optional[str] = None
    friend_dir: Optional[str] = None
    overwrite: bool = False
    engine: Optional[str] = None
    nonfinite_default: Optional[float] = None
    chunk_size: int = 500_000
    compile_models: bool = True
    scoring_threads: Optional[int] = None
    executor: str = "local"
    workers: int = 2
    reader: Optional[str] = None

    def check(self) -> Optional[str]:
        """Refuse inconsistent options; the Dask address (None: local, '': a local cluster)."""
        from htt_tmva.application.distributed import parse_executor

        address = parse_executor(self.executor)
        if self.chunk_size <= 0:
            raise ConfigError(f"--chunk-size must be positive, got {self.chunk_size}")
        if self.scoring_threads is not None and self.scoring_threads < 0:
            raise ConfigError(f"--scoring-threads must be 0 or more, got {self.scoring_threads}")
        if sum(x is not None for x in (self.friend, self.output, self.friend_dir)) > 1:
            raise ConfigError("give only one of --friend, --friend-dir and --output")
        if self.reader == "tmva" and address is not None:
            raise ConfigError(
                "--reader tmva evaluates with TMVA::Reader in this process; it does not run "
                "with --executor dask"
            )
        if address is not None and self.workers < 1:
            raise ConfigError(f"--workers must be 1 or more, got {self.workers}")
        return address


def run_application(
    dataset_config_path: str | Path,
    training_config_path: str | Path,
    application_config_path: str | Path,
    inputs: Sequence[str],
    tree: str | Sequence[str],
    options: Optional[ApplyOptions] = None,
    **fields,
) -> list[Path]:
    """Append fold-crossed scores to ``tree`` of every input; return the files written.

    ``tree``: a tree path or a list of them, each may be a pattern (``'mt_*Up/ntuple'``,
    matched per file and path segment); all trees of a file are written in one new file,
    committed once. ``options``: an :class:`ApplyOptions`; ``fields`` set (or override) its
    fields by name (``output=...``, ``overwrite=True``, ...).
    """
    known = {f.name for f in dataclasses.fields(ApplyOptions)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise TypeError(f"run_application: unknown option(s) {unknown}; valid: {sorted(known)}")
    options = dataclasses.replace(options or ApplyOptions(), **fields)
    address = options.check()
    dataset = load_dataset_config(dataset_config_path)
    training = load_training_config(training_config_path)
    application = load_application_config(application_config_path, training)
    friend_dir = options.friend_dir
    if (
        options.friend is None
        and options.output is None
        and friend_dir is None
        and application.output_directory
    ):
        friend_dir = str(application.output_directory)
        log.info("friend files to '%s' (output_directory of %s)", friend_dir, application.source)
    names = score_names(application.branch_prefix, training.classes)
    check_branch_names(names, application.source)
    files = expand_inputs(inputs)
    trees = [tree] if isinstance(tree, str) else list(tree)
    per_file = trees_per_file(files, trees)
    variables = input_branches(training.variables)
    overwrite = options.overwrite
    infos = [
        [
            inspect_input(f, t, variables, dataset.event_branch, names, overwrite)
            for t in sorted(ts, key=lambda t: -t.count("/"))  # deeper first, as always
        ]
        for f, ts in zip(files, per_file)
    ]
    plans = [
        plan_output(group[0], len(infos), options.friend, options.output, overwrite, friend_dir)
        for group in infos
    ]
    check_distinct(plans)
    for group, plan in zip(infos, plans):
        plan_sources(group, plan, names, dataset.event_branch, overwrite)
    models = load_fold_models(
        application, training, dataset.folds, options.engine, options.reader,
        dataset.event_branch,
    )  # fmt: skip
    # --reader tmva is a cross-check of TMVA::Reader itself: never replaced by compiled code
    use_compiled = (options.compile_models or address is not None) and options.reader != "tmva"
    compiled = compiled_scorer(models, options.scoring_threads) if use_compiled else None
    if address is not None and compiled is None:
        raise ConfigError(
            "--executor dask needs models that export to C++ (see the log for why these do not)"
        )
    scoring = Scoring(
        models, names, dataset.event_branch, options.chunk_size, options.nonfinite_default,
        compiled,
    )  # fmt: skip
    configs = (dataset, training, application)
    return _apply_all(infos, plans, scoring, configs, address, options.workers)


def _apply_all(infos, plans, scoring, configs, address, workers) -> list[Path]:
    """All-or-nothing: lock every output, prepare and verify every new file (all trees of
    an input in one, here or on a Dask cluster), then commit them all; any failure before
    the commit leaves every input untouched."""
    with ExitStack() as stack:
        for plan in plans:
            stack.enter_context(locked(plan))
        for plan in plans:
            remove_stale(plan)
        entries = [sum(i.entries for i in group) for group in infos]
        check_space(plans, entries, 4 * len(scoring.names))
        for plan in plans:
            stack.enter_context(scratch(plan))
        if address is not None:
            from htt_tmva.application.distributed import dask_client, prepare_on_cluster

            client = stack.enter_context(dask_client(address, workers))
            prepare_on_cluster(client, prepare_file, infos, plans, scoring)
        else:
            for index, (group, plan) in enumerate(zip(infos, plans)):
                if len(plans) > 1:
                    log.info("input %d of %d", index + 1, len(plans))
                prepare_file(group, plan, scoring)
        written = commit_all(plans)
    log.info("committed %d output(s)", len(written))
    prefix = configs[2].branch_prefix
    for group, plan, final in zip(infos, plans, written):
        write_provenance(record_path(final, prefix), group, plan, configs)
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
    """What every input is scored with: the model of each fold (None on a Dask worker),
    the new branch names, the event branch, the events per chunk of the Python back-end,
    the score given to non-finite inputs and the compiled models (None: Python scores)."""

    models: Optional[FoldModels]
    names: Sequence[str]
    event_branch: str
    chunk_size: int
    nonfinite_default: Optional[float]
    compiled: Optional[CompiledScorer] = None


def prepare_file(infos: Sequence[InputInfo], plan: OutputPlan, scoring: Scoring) -> None:
    """Score every tree of one input into one new file (``plan.temp``), copy the base
    file's other content and verify all of it; not committed."""
    from htt_tmva.application.fill import write_trees

    start = time.perf_counter()
    for info in infos:
        log.info(
            "%s: scoring %d entries of tree '%s' -> %s (%s)",
            info.path, info.entries, info.tree_path, plan.final, plan.mode,
        )  # fmt: skip
    passes = write_trees(infos, plan, scoring)
    seconds = time.perf_counter() - start
    for info, passed in zip(infos, passes):
        log.info(
            "%s:%s: %d events; per fold %s", info.path, info.tree_path, info.entries,
            passed.per_fold,
        )  # fmt: skip
    times = {"trees": seconds}
    if plan.base is not None or any(info.has_tree_metadata for info in infos):
        complete_copy(infos, plan)
        times["copy"] = time.perf_counter() - start - sum(times.values())
    check_unchanged(plan)  # else the verification would report what another program changed
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
    log.info(
        "%s: %d tree(s), %d events, %s (%.0f events/s)", plan.source.name, len(infos),
        sum(i.entries for i in infos), steps,
        sum(i.entries for i in infos) / max(time.perf_counter() - start, 1e-9),
    )  # fmt: skip
