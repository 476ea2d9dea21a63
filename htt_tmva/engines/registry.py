"""Engines by name, and the engine that reads model files written by other programs.

Each engine is named by the module that holds it and imported on first use, so that the
interface (:mod:`htt_tmva.engines.base`) never imports an engine, and an engine's library
(TensorFlow, XGBoost, ROOT) loads only where that engine is used.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Optional

from htt_tmva.errors import EngineError, choices_text, did_you_mean

ENGINES = {
    "keras": "htt_tmva.engines.keras:KerasEngine",
    "bdt": "htt_tmva.engines.bdt:BdtEngine",
    "tmva": "htt_tmva.tmva.engine:TmvaEngine",
}

#: model files that other programs write (no htt-tmva manifest), by ending: the engine that
#: reads them (TMVA writes ``<job>_<method>.weights.xml``)
FOREIGN_FILES = {".xml": "tmva"}


def get_engine(name: str, check: bool = True) -> Any:
    """The engine (an :class:`htt_tmva.engines.base.Engine`) registered under ``name``,
    checked (unless ``check`` is false) to be usable here."""
    if name not in ENGINES:
        raise EngineError(
            f"unknown engine '{name}'{did_you_mean(name, ENGINES)}; "
            f"known engines: {choices_text(ENGINES)}"
        )
    module, cls = ENGINES[name].split(":")
    engine = getattr(importlib.import_module(module), cls)()
    if check:
        engine.check_available()
    return engine


def foreign_engine(model_path) -> Optional[Any]:
    """The engine that reads ``model_path`` if another program wrote it (a TMVA weight
    file), else None."""
    name = FOREIGN_FILES.get(Path(str(model_path)).suffix.lower())
    return None if name is None else get_engine(name, check=False)
