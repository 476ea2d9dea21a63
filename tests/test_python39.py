"""The package stays valid Python 3.9 (older LCG views): every module compiles there."""

from __future__ import annotations

import glob
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "htt_tmva"
CHECK = (
    "import pathlib, sys\n"
    "for p in pathlib.Path(sys.argv[1]).rglob('*.py'): compile(p.read_text(), str(p), 'exec')"
)


def find_python39() -> str | None:
    candidates = sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.9*/bin/python3.9")))
    candidates += ["/usr/bin/python3.9", "/usr/local/bin/python3.9"]
    return next((c for c in candidates if Path(c).is_file()), None)


def test_package_compiles_with_python39():
    python39 = find_python39()
    if python39 is None:
        pytest.skip("no Python 3.9 interpreter on this machine")
    result = subprocess.run([python39, "-c", CHECK, str(PACKAGE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
