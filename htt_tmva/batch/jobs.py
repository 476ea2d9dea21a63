"""What a batch submission runs: the jobs of a step, each the command a user would run.

A :class:`JobSet` is plain data (no HTCondor): the fixed ``htt-tmva`` arguments of the
step around the per-job arguments, one row of per-job values per job, and for each job
the outputs that tell whether it succeeded (checked by ``--resubmit``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from htt_tmva.errors import ConfigError

#: what a value of a submit description or DAG file cannot hold as it is: white space splits
#: arguments and DAG fields, '$' starts an HTCondor macro ($(...)), quotes change the
#: arguments' syntax
_UNSAFE = " \t'\"$"


def check_job_text(value: str, what: str, spaces: bool = False) -> str:
    """``value`` if HTCondor reads it as written in a submit description (and a DAG file),
    else a ConfigError naming ``what``; ``spaces``: white space is allowed (a whole value,
    not an argument or a DAG field)."""
    unsafe = _UNSAFE.replace(" \t", "") if spaces else _UNSAFE
    bad = sorted({c for c in value if c in unsafe or not c.isprintable()})
    if bad:
        raise ConfigError(
            f"{what} '{value}' holds {', '.join(repr(c) for c in bad)}, which HTCondor's "
            "submit and DAG files would read differently (white space splits arguments, "
            "'$(' starts a macro, quotes change the arguments' syntax); use a path without"
        )
    return value


@dataclass
class Job:
    """One job: its per-job values (the item) and the outputs it must leave behind."""

    values: list[str]
    outputs: dict = field(default_factory=dict)


@dataclass
class JobSet:
    """The jobs of one step: ``htt-tmva <prefix> <item arguments> <suffix>`` each."""

    step: str
    prefix: list[str]
    columns: list[str]
    arguments: str  # the per-job arguments, with $(column) macros
    suffix: list[str]
    jobs: list[Job]
    workdir: str = field(default_factory=os.getcwd)
    final: Optional[Job] = None  # run once every job succeeded (a DAG); values: its arguments
    token: str = ""  # the job folder's identity, given to each job (its outputs' records name it)

    def command(self, job: Job) -> list[str]:
        """The ``htt-tmva`` arguments of ``job``, as a user would type them."""
        values = dict(zip(self.columns, job.values))
        middle = self.arguments
        for column, value in values.items():
            middle = middle.replace(f"$({column})", value)
        return [*self.prefix, *middle.split(), *self.suffix]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> JobSet:
        jobs = [Job(**j) for j in data.pop("jobs")]
        final = data.pop("final", None)
        return cls(jobs=jobs, final=Job(**final) if final else None, **data)


def training_jobs(
    training_config: str,
    folds: Optional[Sequence[int]],
    engines: Sequence[Optional[str]],
    overwrite: bool = False,
) -> JobSet:
    """One job per fold and engine: ``htt-tmva train CONFIG FOLD --engine ENGINE``."""
    from htt_tmva.config import load_training_config
    from htt_tmva.engines.base import ENGINES

    config = load_training_config(training_config)
    chosen = list(range(config.folds)) if not folds else list(folds)
    bad = [f for f in chosen if not 0 <= f < config.folds]
    if bad:
        raise ConfigError(
            f"folds {bad} do not exist: {config.source} has folds 0 to {config.folds - 1}"
        )
    names = [e or config.engine for e in engines] or [config.engine]
    unknown = [e for e in names if e not in ENGINES]
    if unknown:
        raise ConfigError(f"unknown engines {unknown}; known engines: {sorted(ENGINES)}")
    jobs = []
    for engine in dict.fromkeys(names):
        for fold in chosen:
            model = _model_path(config, engine, fold)
            jobs.append(Job([str(fold), engine], {"model": str(model)}))
    return JobSet(
        step="train",
        prefix=["train", str(Path(training_config).absolute())],
        columns=["fold", "engine"],
        arguments="$(fold) --engine $(engine)",
        suffix=["--overwrite"] if overwrite else [],
        jobs=jobs,
    )


def _model_path(config, engine: str, fold: int) -> Path:
    """Where ``engine`` saves the model of ``fold`` (without importing the engine's library)."""
    import importlib

    from htt_tmva.engines.base import ENGINES

    module, cls = ENGINES[engine].split(":")
    return getattr(importlib.import_module(module), cls)().model_path(
        config.output_path, fold, config.model.name
    )


def application_jobs(
    dataset_config: str,
    training_config: str,
    application_config: str,
    inputs: Sequence[str],
    trees: str | Sequence[str],
    files_per_job: int = 1,
    friend: Optional[str] = None,
    output: Optional[str] = None,
    options: Sequence[str] = (),
    friend_dir: Optional[str] = None,
) -> JobSet:
    """One job per group of ``files_per_job`` inputs: ``htt-tmva apply ... FILES TREES``.

    ``trees``: tree paths and patterns, as ``apply`` takes them; each job is given those
    that name a tree in its files (the job matches the patterns per file), so that a group
    of files without shift folders is not refused for a pattern that matches elsewhere.
    With several jobs, ``--friend``/``--output`` must name a folder (one output per input,
    named as the input), as they do for a local run over several inputs; ``friend_dir``
    (or the application config's ``output_directory``, as ``apply`` reads it): friend files
    ``DIR/<nick>/<nick>.root``. ``options``: further ``apply`` arguments of every job.
    """
    from htt_tmva._root import is_remote
    from htt_tmva.application.inputs import check_remote_outputs, expand_inputs
    from htt_tmva.application.scores import record_path, score_names
    from htt_tmva.batch.checks import check_not_scored, trees_per_input
    from htt_tmva.config.stages import load_application_config, load_training_config

    training = load_training_config(training_config)
    application = load_application_config(application_config, training)
    branches = score_names(application.branch_prefix, training.classes)

    if files_per_job < 1:
        raise ConfigError(f"--files-per-job must be at least 1, got {files_per_job}")
    patterns = [trees] if isinstance(trees, str) else list(trees)
    for pattern in patterns:
        check_job_text(pattern, "the tree (or pattern)")
    expanded = expand_inputs(inputs)
    files = [
        check_job_text(str(f) if is_remote(str(f)) else str(Path(f).absolute()), "the input path")
        for f in expanded
    ]
    if friend is None and output is None and friend_dir is None and application.output_directory:
        friend_dir = str(application.output_directory)  # where each job's apply writes
    check_remote_outputs(expanded, friend if friend is not None else friend_dir, output)
    outputs, mode_args = _outputs(files, friend, output, friend_dir)
    per_file = trees_per_input(files, patterns)
    if "--overwrite" not in options:
        check_not_scored(outputs, per_file, branches)
    jobs = []
    for start in range(0, len(files), files_per_job):
        group = files[start : start + files_per_job]
        chosen = per_file[start : start + files_per_job]
        used = {p for s in chosen for p in (patterns if s is None else s)}
        group_trees = [p for p in patterns if p in used]
        written = outputs[start : start + files_per_job]
        jobs.append(
            Job(
                [" ".join([*group, *group_trees])],
                {
                    "inputs": group,
                    "files": written,
                    "trees": group_trees,
                    "branches": branches,
                    "records": [str(record_path(o, application.branch_prefix)) for o in written],
                },
            )
        )
    configs = [str(Path(c).absolute()) for c in (dataset_config, training_config)]
    return JobSet(
        step="apply",
        prefix=["apply", *configs, str(Path(application_config).absolute())],
        columns=["input_and_trees"],
        arguments="$(input_and_trees)",
        suffix=[*mode_args, *options],
        jobs=jobs,
    )


def _outputs(
    files: Sequence[str], friend: Optional[str], output: Optional[str], friend_dir: Optional[str]
) -> tuple[list[str], list[str]]:
    """The file each input's job writes (as ``apply`` names it: in place the file behind a
    link) and the output-mode arguments of every job; two inputs with one output refused."""
    from htt_tmva._root import is_remote
    from htt_tmva.application.trees import friend_dir_target

    target = friend if friend is not None else output
    in_folder = target is not None and (len(files) > 1 or Path(target).is_dir())
    if in_folder and not Path(target).is_dir():
        raise ConfigError(
            f"--{'friend' if friend is not None else 'output'} '{target}' must be an existing "
            "folder when several input files are submitted (one output per input)"
        )
    if friend_dir is not None:
        outputs = [str(friend_dir_target(friend_dir, f).absolute()) for f in files]
        mode_args = ["--friend-dir", str(Path(friend_dir).expanduser().absolute())]
    elif target is not None:
        place = Path(target).absolute()  # a folder, or the file of a single input
        outputs = [str(place / Path(f).name if in_folder else place) for f in files]
        mode_args = ["--friend" if friend is not None else "--output", str(place)]
    else:
        outputs = [f if is_remote(f) else os.path.realpath(f) for f in files]
        mode_args = []
    seen: dict[str, str] = {}
    for path, written in zip(files, outputs):
        key = os.path.realpath(written)
        if key in seen:
            raise ConfigError(
                f"inputs '{seen[key]}' and '{path}' would both be written to '{written}'; "
                "give them distinct output folders (or names)"
            )
        seen[key] = path
    return outputs, mode_args


def dataset_jobs(dataset_config: str, parts: str) -> JobSet:
    """One job per process and fold, ``htt-tmva dataset CONFIG --process P --fold I
    --partial-output PARTS``, then (final) ``htt-tmva dataset CONFIG --merge PARTS``."""
    from htt_tmva.config import load_dataset_config

    config = load_dataset_config(dataset_config)
    parts = check_job_text(str(Path(parts).absolute()), "the parts folder (--partial-output)")
    bad = [n for n in config.processes if not n or any(c in n for c in " \t\n\r,'\"$")]
    if bad:
        raise ConfigError(
            f"process names {bad} of {config.source} cannot be queued as job items (white "
            "space, commas, quotes or '$'); rename them"
        )
    source = str(Path(dataset_config).absolute())
    jobs = [
        Job([name, str(fold)], {"config": source, "process": name, "fold": fold, "parts": parts})
        for name in config.processes
        for fold in range(config.folds)
    ]
    return JobSet(
        step="dataset",
        prefix=["dataset", source],
        columns=["process", "fold"],
        arguments=f"--process $(process) --fold $(fold) --partial-output {parts}",
        suffix=[],
        jobs=jobs,
        final=Job(["--merge", parts], {"config": source, "parts": parts}),
    )
