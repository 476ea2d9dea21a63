"""Training with TMVA itself: check what the plan needs, run it, write a manifest per method.

Everything TMVA needs is checked before any work (TMVA, PyMVA and Keras 2 for PyKeras, the
outputs, the DNN's batch size against the events of the fold). TMVA writes its weight files
relative to the working directory, so the plan runs in ``output_path``; the Factory's output
file is written under a temporary name and renamed when training, testing and evaluation have
finished. A weight file without its manifest is never taken for a model: manifests are
written last, with the digests of the weight file, TMVA's ``.class.C`` and PyKeras's trained
model. With PyKeras booked, every fold trains in a process of its own: PyKeras switches
TensorFlow's eager execution off for the whole process (ROOT >= 6.30), which the next fold's
Keras model would then be built and trained in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from htt_tmva.engines.manifest import manifest_for, manifest_path, record_files
from htt_tmva.errors import EngineError, OutputError
from htt_tmva.tmva.plan import BookingPlan, booking_plan

log = logging.getLogger(__name__)

ALTERNATIVES = (
    "Use ROOT with TMVA: conda-forge's `root` (conda env create -f environment.yml) or an "
    "LCG view (source /cvmfs/sft.cern.ch/lcg/views/<view>/<platform>/setup.sh); or train "
    "without TMVA: --engine keras (the same model zoo in plain Keras) or --engine bdt "
    "(TMVA's BDTG options on XGBoost)"
)


def installed_versions() -> dict[str, tuple[int, ...]]:
    """Major and minor version of the packages PyKeras depends on that are installed, read
    from the package metadata (without importing TensorFlow)."""
    from importlib import metadata

    versions = {}
    for name in ("keras", "tensorflow", "tensorflow-cpu", "tf-keras"):
        try:
            text = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        versions[name] = tuple(int(p) for p in text.split(".")[:2] if p.isdigit())
    return versions


def _text(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def keras2_problem(
    versions: Optional[Mapping[str, tuple[int, ...]]] = None,
    environ: Optional[Mapping[str, str]] = None,
    tf_keras: bool = True,
) -> Optional[str]:
    """Why PyKeras cannot work with the Keras/TensorFlow installed here, or None.

    TMVA's PyKeras supports Keras 2 only and runs it on TensorFlow, through ``tf.keras`` by
    default since ROOT 6.28 (``tf_keras``: PyKeras's option tfkeras). TensorFlow >= 2.16
    ships Keras 3, which broke PyKeras (ROOT 6.40 deprecates it), unless the legacy Keras 2
    package ``tf_keras`` is installed and ``TF_USE_LEGACY_KERAS=1`` makes ``tf.keras`` use it.
    ``versions`` and ``environ`` default to this environment's.
    """
    versions = installed_versions() if versions is None else versions
    environ = os.environ if environ is None else environ
    tensorflow = versions.get("tensorflow") or versions.get("tensorflow-cpu")
    keras = versions.get("keras")
    if tensorflow is None:
        return (
            "TensorFlow is not installed, and TMVA's PyKeras runs Keras 2 on TensorFlow "
            "(through tf.keras by default since ROOT 6.28): install tensorflow<=2.15"
        )
    legacy = environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true", "yes")
    legacy_keras = versions.get("tf-keras")
    if tf_keras and legacy and legacy_keras is not None and legacy_keras < (3,):
        return None  # tf.keras is tf_keras's Keras 2, whatever else is installed
    if not tf_keras and keras is None:
        return "PyKeras with tfkeras=false imports the package keras, which is not installed"
    found = []
    if keras is not None and keras >= (3,):
        found.append(f"Keras {_text(keras)}")
    if tensorflow >= (2, 16):
        found.append(f"TensorFlow {_text(tensorflow)} (whose tf.keras is Keras 3)")
    if found:
        return (
            "TMVA's PyKeras works only with Keras 2 (TensorFlow <= 2.15, or tf_keras with "
            "TF_USE_LEGACY_KERAS=1); this environment has "
            + " and ".join(found)
            + ", which broke it (ROOT 6.40 deprecates PyKeras)"
        )
    return None


def _uses_tf_keras(plans: list[BookingPlan]) -> bool:
    return all(
        m.values.get("tfkeras", True) for p in plans for m in p.methods if m.method == "PyKeras"
    )


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
            keras = keras2_problem(tf_keras=_uses_tf_keras(plans))
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
        files += [m.weight_file, manifest_path(m.weight_file), m.class_file]
        if m.trained_model is not None:
            files.append(m.trained_model)
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
    (its ``htt_tmva_fold`` record, else its event numbers); the DNN's batches must fit the
    events it trains and validates on. Returns that record."""
    import numpy as np

    from htt_tmva.data.arrays import load_training_data
    from htt_tmva.tmva.checks import check_dnn_batches

    data = load_training_data(config, plan.fold)
    per_class = np.bincount(data.y, minlength=len(plan.classes))
    # DataSetFactory::MixEvents: Int_t(TrainTestSplit_<class> * events) per class
    n_training = sum(int(config.train_test_split * int(n)) for n in per_class)
    for m in plan.methods:
        if m.method == "DNN":
            check_dnn_batches(m.values, n_training, f"fold {plan.fold}", config.source)
    return data.origin


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
    try:  # ROOT's pythonization raises OSError where TFile::Open returns nullptr
        output = ROOT.TFile.Open(str(output_name), "RECREATE")
    except OSError:
        output = None
    if not output or output.IsZombie():
        raise OutputError(
            f"fold {plan.fold}: cannot create TMVA's output file '{output_name}' in "
            f"'{plan.output_path}' (not writable, or the disk is full)"
        )
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
            kind = getattr(ROOT.TMVA.Types, m.type)
            booked = factory.BookMethod(loader, kind, m.title, m.options)
            if not booked:  # e.g. a method title booked twice: TMVA returns nullptr
                raise EngineError(
                    f"fold {plan.fold}: TMVA refused to book {m.method} '{m.title}' with "
                    f"'{m.options}' (see TMVA's messages above)"
                )
        sys.stdout.flush()
        factory.TrainAllMethods()
        factory.TestAllMethods()
        factory.EvaluateAllMethods()
        for m in plan.methods:
            result.roc_integrals[m.title] = {
                c.name: float(factory.GetROCIntegral(loader, m.title, i))
                for i, c in enumerate(plan.classes)
            }
    except EngineError:
        raise
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
        record_files(manifest, written_files(m))
        path = manifest_path(m.weight_file)
        manifest.write(path)
        result.weight_files[m.title] = m.weight_file
        result.manifests[m.title] = path
        log.info("wrote %s and %s", m.weight_file, path.name)
    log.info("wrote %s (TestTree/TrainTree; open with TMVA::TMVAMultiClassGui)", plan.output_file)


def written_files(m) -> dict[str, tuple[Path, Path]]:
    """What TMVA wrote for a booked method, by role, for the manifest's digests: the weight
    file, PyKeras's trained model (which the weight file names) and, where TMVA wrote it,
    the standalone ``.class.C``."""
    files = {"model": (m.weight_file, m.weight_file)}
    if m.trained_model is not None:
        if not m.trained_model.is_file():
            raise EngineError(f"TMVA's PyKeras wrote no trained model {m.trained_model}")
        files["keras_model"] = (m.trained_model, m.trained_model)
    if m.class_file.is_file():
        files["class_file"] = (m.class_file, m.class_file)
    return files


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
            problem = keras2_problem(tf_keras=_uses_tf_keras(plans))
            if problem:
                print(f"# note: PyKeras cannot run in this environment: {problem}")
        if needs_own_processes(plans):
            print("# note: with PyKeras booked, each fold trains in a process of its own")
        return plans
    check_requirements(plans)
    origins = {}
    for plan in plans:
        check_outputs(plan, overwrite)
        origins[plan.fold] = check_inputs(plan, config)
    Path(config.output_path).mkdir(parents=True, exist_ok=True)
    own_process = needs_own_processes(plans)
    results = []
    for plan in plans:
        log.info(
            "fold %d: training %s with TMVA on %s; the models will score fold %d%s",
            plan.fold,
            ", ".join(m.title for m in plan.methods),
            plan.dataset,
            plan.scores_fold,
            " (in a process of its own)" if own_process else "",
        )
        args = (config, plan.fold, origins[plan.fold])
        results.append(run_in_own_process(train_fold, *args) if own_process else train_fold(*args))
    return results


def needs_own_processes(plans: list[BookingPlan]) -> bool:
    """PyKeras switches TensorFlow's eager execution off for the whole process when it first
    evaluates (ROOT >= 6.30): with more than one fold, each trains in a process of its own."""
    return len(plans) > 1 and any(p.needs_pymva for p in plans)


def train_fold(config, fold: int, fold_origin: Optional[dict]) -> TmvaTraining:
    """Run the plan of ``fold`` and keep the resolved config next to its output."""
    plan = booking_plan(config, fold)
    result = run_plan(plan, config, fold_origin)
    config.write_resolved(plan.output_file.with_name(f"fold{fold}_training.config.yaml"))
    return result


def _child_logging(levels: tuple[int, int]) -> None:
    logging.basicConfig(
        level=levels[0], format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("htt_tmva").setLevel(levels[1])


def run_in_own_process(function, *args):
    """``function(*args)`` in a fresh Python process (spawned, not forked: nothing of this
    process's ROOT or TensorFlow state is inherited), with this process's log levels; its
    result or its exception comes back here."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    levels = (logging.getLogger().level, logging.getLogger("htt_tmva").getEffectiveLevel())
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, context, _child_logging, (levels,)) as pool:
        try:
            return pool.submit(function, *args).result()
        except BrokenProcessPool:
            raise EngineError(
                f"the process running {getattr(function, '__name__', function)} died "
                "(crashed or was killed; see the messages above)"
            ) from None
