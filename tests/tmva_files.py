"""Helpers of the TMVA weight-file tests: the real TMVA files, a copy of the trained BDTs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import training_document, write_yaml

# The real TMVA weight files of the project (../shared/data/tmva from the project's root);
# never copied into the repository. HTT_TMVA_TMVA_DATA points elsewhere (e.g. from a worktree),
# as for tests/test_tmva_reader.py.
REAL_FILES = Path(
    os.environ.get("HTT_TMVA_TMVA_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tmva"
)


def real_bdt_files() -> list[Path]:
    """The real TMVA BDT weight files, or a skip saying why there are none."""
    if not REAL_FILES.is_dir():
        pytest.skip(f"no real TMVA files here ({REAL_FILES} is absent; a clone has none)")
    files = sorted(REAL_FILES.rglob("*_BDT.weights.xml"))
    if not files:
        pytest.skip(f"no BDT weight files under {REAL_FILES}")
    return files


def copy_bdt_models(trained_models: dict, fold_dir: Path, folder: Path, **overrides) -> Path:
    """Copy the fixture's BDT models (with manifests) into ``folder``/models; return a
    training config whose output_path is that folder."""
    info = trained_models["bdt"]
    models = folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    for path in info["models"]:
        for name in (path.name, f"{path.stem}.manifest.json"):
            shutil.copy2(path.with_name(name), models / name)
    overrides.setdefault("engine", "bdt")
    return write_yaml(folder / "training.yaml", training_document(fold_dir, models, **overrides))
