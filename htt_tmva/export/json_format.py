"""Models as JSON: the neutral description of :mod:`htt_tmva.export.spec` with a header.

Top-level keys: ``format`` ("htt-tmva-model"), ``version`` (1), ``engine``, ``fold`` (the
fold trained on), ``scores_fold`` (the fold it scores), ``variables``, ``classes``,
``kind`` ("network" or "trees") and the kind's content, as documented in ``spec`` (for TMVA
weight files also ``precision``, the ``tmva`` block and TMVA's transformations). A TMVA BDT
with an infinite boost weight writes ``Infinity``/``NaN``, which Python's ``json`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT, VERSION = "htt-tmva-model", 1


def model_document(spec: dict[str, Any], manifest) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "engine": manifest.engine,
        "fold": manifest.fold,
        "scores_fold": manifest.scores_fold,
        **spec,
    }


def write_json(document: dict[str, Any], path: Path) -> Path:
    Path(path).write_text(json.dumps(document, indent=1))
    return Path(path)
