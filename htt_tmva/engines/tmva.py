"""The TMVA engine: detection of TMVA in this ROOT build.

The pip ROOT wheel has no TMVA; conda-forge's ``root`` and LCG views have it (with
PyMVA). Where TMVA is missing this engine stops with a message naming the alternatives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from htt_tmva.engines.base import Engine
from htt_tmva.errors import EngineError

ALTERNATIVES = (
    "the engine 'tmva' needs ROOT with TMVA, which this ROOT does not have (the pip wheel "
    "`ROOT` ships without TMVA). Use conda-forge's `root` (see environment.yml) or an LCG view, "
    "or choose --engine keras (plain Keras) or --engine bdt (gradient-boosted trees, TMVA's "
    "BDTG options)"
)


class TmvaEngine(Engine):
    name = "tmva"

    def check_available(self) -> None:
        from htt_tmva._root import has_tmva

        if not has_tmva():
            raise EngineError(ALTERNATIVES)
        raise EngineError(
            "TMVA is present, but the TMVA engine (Factory/DataLoader with PyKeras "
            "and BDTG) is not part of this version yet; use --engine keras or bdt"
        )

    def model_path(self, output_path: Path, fold: int, model_name: str) -> Path:
        return Path(output_path) / f"fold{fold}_tmva_weights.xml"

    def train(self, train, validation, config, fold):  # pragma: no cover - see check_available
        self.check_available()

    def load(
        self, model_path: Path, manifest, preprocessing: Optional[Path] = None
    ):  # pragma: no cover
        self.check_available()
