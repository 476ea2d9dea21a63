"""The package stays valid Python 3.9 (older LCG views): under a Python 3.9 interpreter every
module compiles, and every module imports (which catches what compiling cannot: dataclass
options, ``X | Y`` evaluated at runtime, library calls new in 3.10).

The interpreter is ``$HTT_TMVA_PYTHON39`` if set, else ``python3.9`` on the PATH or in pyenv.
The import check needs numpy and PyYAML in that interpreter (ROOT, Keras and XGBoost are
imported lazily and are not needed); without them it is skipped, naming what is missing.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pytest

ROOT_DIR = Path(__file__).resolve().parents[1]
PACKAGE = ROOT_DIR / "htt_tmva"
COMPILE = (
    "import pathlib, sys\n"
    "for p in pathlib.Path(sys.argv[1]).rglob('*.py'): compile(p.read_text(), str(p), 'exec')"
)
IMPORT = """
import importlib, json, pathlib, sys, traceback
package = pathlib.Path(sys.argv[1])
result = {"version": list(sys.version_info[:2]), "imported": [], "missing": {}, "failed": {}}
for path in sorted(package.rglob("*.py")):
    if path.name == "__main__.py":  # runs the CLI
        continue
    parts = path.relative_to(package.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    try:
        importlib.import_module(name)
        result["imported"].append(name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] != "htt_tmva":
            result["missing"][name] = exc.name
        else:
            result["failed"][name] = traceback.format_exc()
    except Exception:
        result["failed"][name] = traceback.format_exc()
print(json.dumps(result))
"""


def _runs(python: str) -> bool:
    try:
        result = subprocess.run([python, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and (result.stdout + result.stderr).startswith("Python 3.9")


def find_python39() -> Optional[str]:
    candidates = [os.environ.get("HTT_TMVA_PYTHON39"), shutil.which("python3.9")]
    candidates += sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.9*/bin/python3.9")))
    candidates += ["/usr/bin/python3.9", "/usr/local/bin/python3.9"]
    return next((c for c in candidates if c and _runs(c)), None)


@pytest.fixture(scope="module")
def python39() -> str:
    python = find_python39()
    if python is None:
        pytest.skip("no Python 3.9 interpreter here (set HTT_TMVA_PYTHON39 or put one on PATH)")
    return python


def test_package_compiles_with_python39(python39):
    result = subprocess.run([python39, "-c", COMPILE, str(PACKAGE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_module_imports_with_python39(python39):
    env = {**os.environ, "PYTHONPATH": str(ROOT_DIR)}
    run = subprocess.run(
        [python39, "-c", IMPORT, str(PACKAGE)], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["version"] == [3, 9]
    assert not result["failed"], "\n".join(result["failed"].values())
    assert "htt_tmva.cli" in result["imported"]
    if result["missing"]:
        needed = sorted(set(result["missing"].values()))
        pytest.skip(
            f"{python39} lacks {', '.join(needed)}: {len(result['missing'])} modules not "
            "imported (install them there or set HTT_TMVA_PYTHON39)"
        )
    modules = [p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py"]
    assert len(result["imported"]) == len(modules)
