"""Training with TMVA itself: check what the plan needs, run it, write a manifest per method.

Everything TMVA needs is checked before any work (TMVA, PyMVA and Keras 2 for PyKeras, the
outputs). TMVA writes its weight files relative to the working directory, so the plan runs
in ``output_path``; the Factory's output file is written under a temporary name and renamed
when training, testing and evaluation have finished. A weight file without its manifest is
never taken for a model: manifests are written last.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from htt_tmva.engines.manifest import manifest_for, manifest_path
from htt_tmva.engines.tmva_plan import BookingPlan, booking_plan
from htt_tmva.errors import EngineError, OutputError

log = logging.getLogger(__name__)

ALTERNATIVES = (
    "Use ROOT with TMVA: conda-forge's `root` (conda env create -f environment.yml) or an "
    "LCG view (source /cvmfs/sft.cern.ch/lcg/views/<view>/<platform>/setup.sh); or train "
    "without TMVA: --engine keras (the same model zoo in plain Keras) or --engine bdt "
    "(TMVA's BDTG options on XGBoost)"
)


def keras2_problem() -> Optional[str]:
    """Why PyKeras cannot work with the Keras/TensorFlow installed here, or None.

    TMVA's PyKeras supports Keras 2 only (TensorFlow up to 2.15); Keras 3, which TensorFlow
    ships from 2.16 on, broke it, and ROOT 6.40 deprecates it. Read from the package
    metadata, without importing TensorFlow.
    """
    from importlib import metadata

    def version(name: str) -> Optional[tuple[int, ...]]:
        try:
            text = metadata.version(name)
        except metadata.PackageNotFoundError:
            return None
        return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())

    keras = version("keras")
    tensorflow = version("tensorflow") or version("tensorflow-cpu")
    if keras is None and tensorflow is None:
        return "neither Keras nor TensorFlow is installed"
    found = []
    if keras is not None and keras >= (3,):
        found.append(f"Keras {'.'.join(map(str, keras))}")
    if tensorflow is not None and tensorflow >= (2, 16):
        found.append(f"TensorFlow {'.'.join(map(str, tensorflow))} (which comes with Keras 3)")
    if found:
        return (
            "TMVA's PyKeras works only with Keras 2 (TensorFlow <= 2.15); this environment has "
            + " and ".join(found)
            + ", which broke it (ROOT 6.40 deprecates PyKeras)"
        )
    return None


def missing_requirements(plans: list[BookingPlan]) -> list[str]:
    """What this environment lacks to run the plans (empty: everything is there)."""
    from htt_tmva._root import has_pymva, has_tmva

    if not has_tmva():
        return ["this ROOT has no TMVA (the pip wheel `ROOT` ships without it)"]
    problems = []
    if any(p.needs_pymva for p in plans):
        if not has_pymva():
            problems.append(
                "the method PyKeras needs TMVA's PyMVA (TMVA::MethodPyKeras), which this ROOT "
                "does not have (built without PyMVA, or PyKeras removed)"
            )
        else:
            keras = keras2_problem()
            if keras:
                problems.append(keras)
    return problems


def check_requirements(plans: list[BookingPlan]) -> None:
    problems = missing_requirements(plans)
    if problems:
        raise EngineError(requirements_message(problems))


def requirements_message(problems: list[str]) -> str:
    """Why --engine tmva cannot train here, and what to do instead."""
    pykeras_only = all("PyKeras" in p or "Keras" in p for p in problems)
    hint = (
        "Book the methods that work here instead (training config: `tmva: {methods: [BDTG, "
        "DNN]}`; DNN is TMVA's own network with a layout equivalent to the model zoo's), or "
        "use --engine keras (plain Keras 3) or --engine bdt"
        if pykeras_only
        else ALTERNATIVES
    )
    return f"cannot train with --engine tmva: {'; '.join(problems)}. {hint}"


def planned_outputs(plan: BookingPlan) -> list[Path]:
    files = [plan.output_file]
    for m in plan.methods:
        files += [m.weight_file, manifest_path(m.weight_file)]
    return files


def check_outputs(plan: BookingPlan, overwrite: bool) -> None:
    existing = [f for f in planned_outputs(plan) if f.exists()]
    if existing and not overwrite:
        raise OutputError(
            f"fold {plan.fold}: {existing[0]} exists already"
            + (f" (and {len(existing) - 1} more outputs)" if len(existing) > 1 else "")
            + "; use --overwrite to replace them"
        )


def check_inputs(plan: BookingPlan, config) -> Optional[dict]:
    """The fold file is read as for every engine, before TMVA runs: every class tree and
    branch there, finite values, positive class weights, and the file holds fold ``plan.fold``
    (its ``htt_tmva_fold`` record, else its event numbers). Returns that record."""
    from htt_tmva.training import load_training_data

    return load_training_data(config, plan.fold).origin


@contextlib.contextmanager
def working_directory(path: Path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@dataclass
class TmvaTraining:
    """What one fold's run wrote: the TMVA output file and per method its weight file,
    manifest and per-class ROC integrals."""

    plan: BookingPlan
    weight_files: dict[str, Path] = field(default_factory=dict)
    manifests: dict[str, Path] = field(default_factory=dict)
    roc_integrals: dict[str, dict[str, float]] = field(default_factory=dict)


def save_untrained_keras_models(plan: BookingPlan, config) -> None:
    """PyKeras loads the untrained, compiled model from a file: build and save it (HDF5)."""
    from htt_tmva.engines.keras import import_keras
    from htt_tmva.engines.models import build_model

    for m in plan.methods:
        if m.keras_model is None:
            continue
        keras = import_keras()
        keras.utils.set_random_seed(config.model.seed)
        model = build_model(
            config.model.name,
            len(plan.variables),
            len(plan.classes),
            config.model.learning_rate,
            config.source.parent,
        )
        m.keras_model.parent.mkdir(parents=True, exist_ok=True)
        model.save(str(m.keras_model))
        log.info("fold %d: untrained Keras model saved to %s", plan.fold, m.keras_model)


def run_plan(plan: BookingPlan, config, fold_origin: Optional[dict] = None) -> TmvaTraining:
    """Train, test and evaluate the booked methods of one fold with TMVA."""
    from htt_tmva._root import get_tree, open_root_file, root

    ROOT = root()
    plan.weights_dir.mkdir(parents=True, exist_ok=True)
    for f in planned_outputs(plan):
        f.unlink(missing_ok=True)  # --overwrite: nothing stale may look like a result
    save_untrained_keras_models(plan, config)
    ROOT.TMVA.Tools.Instance()
    if plan.needs_pymva:
        ROOT.TMVA.PyMethodBase.PyInitialize()
    temporary = plan.output_file.with_name(f".{plan.output_file.name}.{os.getpid()}.tmp")
    result = TmvaTraining(plan)
    infile = open_root_file(plan.dataset)
    try:
        trees = [get_tree(infile, c.name) for c in plan.classes]
        with working_directory(plan.output_path):
            _train_test_evaluate(ROOT, plan, trees, temporary, result)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        infile.Close()
    os.replace(temporary, plan.output_file)
    _write_manifests(plan, config, result, fold_origin)
    return result


def _train_test_evaluate(ROOT, plan: BookingPlan, trees, output_name: Path, result) -> None:
    """The TMVA calls of the plan; objects released in the order of TMVA's tutorials
    (close the output file, then delete the Factory, then the DataLoader)."""
    output = ROOT.TFile.Open(str(output_name), "RECREATE")
    factory = loader = None
    try:
        factory = ROOT.TMVA.Factory(plan.factory_name, output, plan.factory_options)
        loader = ROOT.TMVA.DataLoader(plan.dataloader_name)
        for variable in plan.variables:
            loader.AddVariable(variable)  # type 'F'
        for tree, c in zip(trees, plan.classes):
            loader.AddTree(tree, c.name, c.weight)
            loader.SetWeightExpression(c.weight_expression, c.name)
        loader.PrepareTrainingAndTestTree(ROOT.TCut(""), plan.split_options)
        for m in plan.methods:
            factory.BookMethod(loader, getattr(ROOT.TMVA.Types, m.type), m.title, m.options)
        sys.stdout.flush()
        factory.TrainAllMethods()
        factory.TestAllMethods()
        factory.EvaluateAllMethods()
        for m in plan.methods:
            result.roc_integrals[m.title] = {
                c.name: float(factory.GetROCIntegral(loader, m.title, i))
                for i, c in enumerate(plan.classes)
            }
    except Exception as exc:  # cppyy turns TMVA's FATAL errors into exceptions
        raise EngineError(f"fold {plan.fold}: TMVA failed: {exc}") from None
    finally:
        output.Close()
        del factory
        del loader


def _write_manifests(
    plan: BookingPlan, config, result: TmvaTraining, fold_origin: Optional[dict]
) -> None:
    ROOT_version = _root_version()
    for m in plan.methods:
        if not m.weight_file.is_file():
            raise EngineError(f"fold {plan.fold}: TMVA wrote no weight file {m.weight_file}")
        rocs = result.roc_integrals.get(m.title, {})
        log.info(
            "fold %d %s: ROC integral (one class vs the rest, test sample): %s",
            plan.fold,
            m.title,
            ", ".join(f"{c} {v:.4f}" for c, v in rocs.items()),
        )
        manifest = manifest_for(
            config,
            "tmva",
            m.weight_file,
            plan.fold,
            method=m.method,
            method_type=m.type,
            title=m.title,
            options=m.options,
            factory=plan.factory_name,
            factory_options=plan.factory_options,
            dataloader=plan.dataloader_name,
            split_options=plan.split_options,
            class_weights={c.name: c.weight for c in plan.classes},
            weight_expression=config.event_weights,
            tmva_output=plan.output_file.name,
            roc_integrals=rocs,
            keras_model=str(m.keras_model) if m.keras_model else None,
            root_version=ROOT_version,
        )
        manifest.fold_file = fold_origin
        path = manifest_path(m.weight_file)
        manifest.write(path)
        result.weight_files[m.title] = m.weight_file
        result.manifests[m.title] = path
        log.info("wrote %s and %s", m.weight_file, path.name)
    log.info("wrote %s (TestTree/TrainTree; open with TMVA::TMVAMultiClassGui)", plan.output_file)


def _root_version() -> str:
    from htt_tmva._root import root

    return str(root().gROOT.GetVersion())


def train_tmva_folds(
    config, folds: Iterable[int], overwrite: bool = False, dry_run: bool = False
) -> list:
    """Build the plans of ``folds``; print them (``dry_run``) or check everything, then run."""
    plans = [booking_plan(config, fold) for fold in folds]
    if dry_run:
        for plan in plans:
            print(plan.describe())
        if any(p.needs_pymva for p in plans):
            problem = keras2_problem()
            if problem:
                print(f"# note: PyKeras cannot run in this environment: {problem}")
        return plans
    check_requirements(plans)
    origins = {}
    for plan in plans:
        check_outputs(plan, overwrite)
        origins[plan.fold] = check_inputs(plan, config)
    Path(config.output_path).mkdir(parents=True, exist_ok=True)
    results = []
    for plan in plans:
        log.info(
            "fold %d: training %s with TMVA on %s; the models will score fold %d",
            plan.fold,
            ", ".join(m.title for m in plan.methods),
            plan.dataset,
            plan.scores_fold,
        )
        results.append(run_plan(plan, config, origins[plan.fold]))
        config.write_resolved(plan.output_file.with_name(f"fold{plan.fold}_training.config.yaml"))
    return results
