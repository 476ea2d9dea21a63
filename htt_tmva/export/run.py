"""The export step: models of a training as C++ headers, JSON or ONNX, written next to them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from htt_tmva.errors import ConfigError

log = logging.getLogger(__name__)

FORMATS = ("cpp", "json", "onnx")


def _models(config, folds, engine: str):
    from htt_tmva.engines.base import get_engine, load_model

    chosen = get_engine(engine)
    paths = [chosen.model_path(config.output_path, f, config.model.name) for f in folds]
    return paths, [load_model(p, engine) for p in paths]


def _model_groups(config, folds, engine: str) -> list:
    """(method, paths, models) to export: the one model per fold of keras and bdt; for tmva,
    one group per method the config books (``tmva.methods``), its weight file per fold."""
    if engine != "tmva":
        return [("", *_models(config, folds, engine))]
    from htt_tmva.engines.base import load_model
    from htt_tmva.tmva.plan import book_method

    groups = []
    for method in config.tmva["methods"]:
        paths = [book_method(config, method, f, f"fold{f}_training").weight_file for f in folds]
        groups.append((method, paths, [load_model(p, engine) for p in paths]))
    return groups


def export_models(
    training_config: str | Path,
    fold: Optional[int],
    engine: Optional[str] = None,
    fmt: str = "cpp",
    event_branch: Optional[str] = None,
    overwrite: bool = False,
) -> list[Path]:
    """Export the model of ``fold`` (or, with ``fold=None``, all folds: a fold-aware header
    for ``cpp``, one file per fold for ``json``, ``onnx`` and ``tmva``); return the files
    written. With the ``tmva`` engine every method the config books is exported from its TMVA
    weight files. ``tmva`` (a bdt model as a TMVA BDTG weight file) replaces a file only with
    ``overwrite``."""
    from htt_tmva.config import load_training_config

    if fmt == "tmva":
        from htt_tmva.tmva.convert import export_tmva_folds

        return export_tmva_folds(training_config, fold, engine, overwrite)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'; valid: {', '.join(FORMATS)}, tmva")
    config = load_training_config(training_config)
    engine = engine or config.engine
    event_branch = event_branch or getattr(config, "event_branch", None) or "event"
    if fold is not None and not 0 <= fold < config.folds:
        raise ConfigError(f"fold {fold} does not exist: {config.source} has {config.folds} folds")
    folds = list(range(config.folds)) if fold is None else [fold]
    from htt_tmva.export.spec import model_spec

    groups = _model_groups(config, folds, engine)
    # every spec first: a model that cannot be exported stops the export before any write
    specs = [[model_spec(m) for m in models] for _, _, models in groups]
    finals: list[Path] = []
    if fmt == "onnx":  # each spec as a checked ONNX model, before any write, too
        from htt_tmva.export.onnx_format import onnx_models

        specs = [onnx_models(config, s, p, m) for (_, p, m), s in zip(groups, specs)]
    for (method, paths, models), group_specs in zip(groups, specs):
        name = method or (config.model.name if engine == "keras" else "")
        finals += _write(config, fold, engine, fmt, event_branch, name, paths, models, group_specs)
    for path in finals:
        log.info("wrote %s", path)
    return finals


def _write(config, fold, engine, fmt, event_branch, name, paths, models, specs) -> list[Path]:
    """Write the export of one model (per fold) of the training; return the files."""
    from htt_tmva._files import atomic_outputs
    from htt_tmva.export.cpp import fold_header, model_header
    from htt_tmva.export.json_format import model_document, write_json

    namespace = namespace_for(engine, name)
    what = f"{engine} {name}".strip() if engine == "tmva" else engine
    if fmt == "onnx":
        from htt_tmva.export.onnx_format import write_onnx_files

        return write_onnx_files(paths, specs)
    if fmt == "json":
        finals = [p.with_name(f"{p.name.split('.')[0]}.export.json") for p in paths]
        with atomic_outputs(finals) as temps:
            for temp, spec, model in zip(temps, specs, models):
                write_json(model_document(spec, model.manifest), temp)
    elif fold is None:
        finals = [Path(config.output_path) / f"{namespace}_folds.hxx"]
        title = f"{what} models of {config.source}, all {config.folds} folds"
        with atomic_outputs(finals) as (temp,):
            temp.write_text(fold_header(specs, namespace, event_branch, title))
    else:
        finals = [paths[0].with_name(f"{paths[0].name.split('.')[0]}.hxx")]
        title = f"{what} model of fold {fold} of {config.source}"
        with atomic_outputs(finals) as (temp,):
            temp.write_text(model_header(specs[0], f"{namespace}_fold{fold}", title))
    return finals


def run_export(
    training_config_path: str | Path,
    fold: int,
    engine: Optional[str] = None,
    fmt: str = "tmva",
    overwrite: bool = False,
) -> Path:
    """Write the model of ``fold`` in format ``fmt`` (default: a bdt model as a TMVA BDTG
    weight file, :mod:`htt_tmva.tmva.convert`); return the file written."""
    if fmt not in ("tmva", *FORMATS):
        raise ConfigError(f"unknown --format '{fmt}'; choose one of tmva, {', '.join(FORMATS)}")
    if fmt != "tmva":
        return export_models(training_config_path, fold, engine, fmt)[0]
    from htt_tmva.tmva.convert import export_tmva_fold

    return export_tmva_fold(training_config_path, fold, engine, overwrite)


def namespace_for(engine: str, model_name: str = "") -> str:
    """A C++ namespace for a model: ``htt_tmva_<engine>[_<model name>]``."""
    name = "".join(c if c.isalnum() else "_" for c in model_name.rsplit(":", 1)[-1])
    return f"htt_tmva_{engine}" + (f"_{name}" if name else "")
