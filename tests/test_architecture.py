"""The package's shape: the import-linter contracts of pyproject.toml (layers, no import cycles,
engines found by name) hold, imports inside functions included. `make lint` runs them too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "importlinter", reason="import-linter is not installed (pip install import-linter)"
)

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root``, in a fresh interpreter (that package
    first on its path), without a cache."""
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(root / 'pyproject.toml')!r}, "
        "no_cache=True, no_logo=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_contracts_are_kept():
    result = lint_imports(ROOT)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    for contract in ("Layers", "No import cycles", "by name"):
        assert contract in report, report
    assert "BROKEN" not in report


def test_an_upward_import_or_a_cycle_breaks_the_contracts(tmp_path):
    """The contracts bind: the engines importing the export (a layer above them, and a cycle
    with it) are refused, naming the import."""
    shutil.copytree(
        ROOT / "htt_tmva", tmp_path / "htt_tmva", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    base = tmp_path / "htt_tmva" / "engines" / "base.py"
    base.write_text(
        base.read_text() + "\n\ndef _upward():\n    from htt_tmva.export import spec  # noqa\n"
    )
    result = lint_imports(tmp_path)
    report = result.stdout + result.stderr
    assert result.returncode == 1, report
    assert "htt_tmva.engines.base -> htt_tmva.export.spec" in report


def test_the_export_package_is_also_the_api_function(tmp_path):
    """Importing a module of htt_tmva/export/ binds ``htt_tmva.export`` to the package; it
    still is the API function ``htt_tmva.export(config, ...)``."""
    import htt_tmva
    import htt_tmva.export.spec  # noqa: F401
    from htt_tmva.errors import ConfigError

    assert callable(htt_tmva.export)
    with pytest.raises(ConfigError, match="unknown export format 'pmml'"):
        htt_tmva.export(tmp_path / "training.yaml", 0, None, "pmml")
