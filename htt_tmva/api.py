"""The Python API, for the PyROOT prompt and notebooks: each function is a thin layer over
what the ``htt-tmva`` command runs, taking the same config files.

The whole toy workflow, in a fresh folder (small and fast: a BDT of 20 trees)::

    >>> import tempfile, yaml
    >>> from pathlib import Path
    >>> import htt_tmva
    >>> folder = Path(tempfile.mkdtemp())
    >>> files = htt_tmva.create_toy_dataset(folder, events=2000)
    >>> configs = htt_tmva.write_example_configs(folder, engine="bdt", trees=20)
    >>> folds = htt_tmva.create_training_dataset(configs["dataset"])
    >>> [p.name for p in folds]
    ['fold0_training_dataset.root', 'fold1_training_dataset.root']
    >>> models = htt_tmva.train(configs["training"])
    >>> [m.manifest.fold for m in models]
    [0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

PathLike = Union[str, Path]
CLASSES = ("signal", "background_1", "background_2")


def create_toy_dataset(output_dir: PathLike, events: int = 10000, seed: int = 1234) -> list[Path]:
    """Write the toy ntuples (signal, two backgrounds, data) into ``output_dir``.

    >>> for path in sorted(p.name for p in files):
    ...     print(path)
    example_background_1.root
    example_background_2.root
    example_data.root
    example_signal.root
    """
    from htt_tmva.data.toy import write_toy_dataset

    return write_toy_dataset(output_dir, events=events, seed=seed)


def write_example_configs(folder: PathLike, engine: str = "keras", trees: int = 300) -> dict:
    """Write dataset, training, testing and application configs for the toy in ``folder``
    (absolute paths); return their paths by step.

    >>> sorted(configs)
    ['application', 'dataset', 'testing', 'training']
    """
    import yaml

    folder = Path(folder).absolute()
    dataset = {
        "base_path": str(folder),
        "output_path": str(folder),
        "output_filename": "training_dataset.root",
        "tree_path": "ntuple",
        "event_branch": "event",
        "training_weight_branch": "training_weight",
        "processes": {
            c: {"files": [f"example_{c}.root"], "cut_string": "(x > -3.0)",
                "weight_string": "(weights)", "class": c}
            for c in CLASSES
        },
    }  # fmt: skip
    training = {
        "datasets": [str(folder / f"fold{i}_training_dataset.root") for i in range(2)],
        "output_path": str(folder / "models"),
        "classes": list(CLASSES),
        "class_weights": {"signal": 10.0, "background_1": 1.67, "background_2": 3.33},
        "event_weights": "training_weight",
        "variables": ["x", "y"],
        "engine": engine,
        "model": {"name": "example", "batch_size": 100, "epochs": 10, "seed": 1234},
        "bdt": {"NTrees": trees},
    }
    documents = {"dataset": dataset, "training": training}
    if engine == "keras":
        models = [f"fold{i}_keras_model_example.keras" for i in range(2)]
    else:
        models = [f"fold{i}_{engine}_model.json" for i in range(2)]
    documents["testing"] = {
        "model": models,
        "weight_branch": "training_weight",
        "output_prefix": f"{engine}_",
    }
    documents["application"] = {"classifiers": models[::-1], "branch_prefix": f"{engine}_"}
    paths = {}
    for step, document in documents.items():
        paths[step] = folder / f"example_{step}.yaml"
        paths[step].write_text(yaml.safe_dump(document, sort_keys=False))
    return paths


def create_training_dataset(dataset_config: PathLike) -> list[Path]:
    """Build the k-fold training datasets of a dataset config (``htt-tmva dataset``)."""
    from htt_tmva.config import load_dataset_config
    from htt_tmva.data.dataset import create_training_dataset as create

    return create(load_dataset_config(dataset_config))


def train(
    training_config: PathLike,
    folds: Optional[Sequence[int]] = None,
    engine: Optional[str] = None,
    overwrite: bool = False,
) -> list:
    """Train the models of ``folds`` (default: all) with ``engine`` (default: the config's);
    return them (``htt-tmva train``)."""
    from htt_tmva.config import load_training_config
    from htt_tmva.training import train_folds

    config = load_training_config(training_config)
    chosen = range(config.folds) if folds is None else folds
    return train_folds(config, chosen, engine=engine, overwrite=overwrite)


def load_model(
    path: PathLike, engine: Optional[str] = None, preprocessing: Optional[PathLike] = None
):
    """A saved model of any engine; ``model.predict(x)`` gives the class probabilities.

    >>> import numpy as np
    >>> model = htt_tmva.load_model(folder / "models" / "fold0_bdt_model.json")
    >>> model.predict(np.array([[0.0, 0.0], [1.0, 1.0]])).shape
    (2, 3)
    """
    from htt_tmva.engines.base import load_model as load

    return load(Path(path), engine, Path(preprocessing) if preprocessing else None)


def confusion(
    training_config: PathLike, testing_config: PathLike, fold: int, engine: Optional[str] = None
) -> dict:
    """Confusion matrices, ROC curves and score plots of the model of ``fold`` on the fold it
    never saw (``htt-tmva confusion``); returns the JSON summary.

    >>> summary = htt_tmva.confusion(configs["training"], configs["testing"], 0)
    >>> summary["classes"]
    ['signal', 'background_1', 'background_2']
    """
    from htt_tmva.evaluation.testing import run_testing

    return run_testing(training_config, testing_config, fold, engine=engine)


def apply(
    dataset_config: PathLike,
    training_config: PathLike,
    application_config: PathLike,
    inputs: Union[PathLike, Sequence[PathLike]],
    tree: str,
    **options,
) -> list[Path]:
    """Append fold-crossed scores to ``tree`` of ``inputs`` (``htt-tmva apply``); options as
    the command's: ``friend``, ``output``, ``overwrite``, ``nonfinite_default``, ...

    >>> written = htt_tmva.apply(configs["dataset"], configs["training"],
    ...     configs["application"], folder / "example_data.root", "ntuple",
    ...     output=str(folder / "scored.root"))
    >>> [p.name for p in written]
    ['scored.root']
    """
    from htt_tmva.application.apply import run_application

    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    return run_application(
        dataset_config,
        training_config,
        application_config,
        [str(i) for i in inputs],
        tree,
        **options,
    )


def export(
    training_config: PathLike,
    fold: Optional[int] = None,
    engine: Optional[str] = None,
    format: str = "cpp",
    overwrite: bool = False,
) -> list[Path]:
    """Export the model of ``fold`` (default: all folds, as one fold-aware C++ header) as C++,
    JSON, ONNX (``format="onnx"``: one ``<model>.onnx`` per fold) or (a bdt model, one file per
    fold) a TMVA BDTG weight file, next to the models (``htt-tmva export``); ``overwrite``:
    replace an existing TMVA weight file.

    >>> [p.name for p in htt_tmva.export(configs["training"])]
    ['htt_tmva_bdt_folds.hxx']
    """
    from htt_tmva.export.run import export_models

    return export_models(training_config, fold, engine, format, overwrite=overwrite)
