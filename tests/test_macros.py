"""The ROOT macros of macros/, run as users run them (`root -l -b -q ...`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from htt_tmva.engines.base import load_model
from htt_tmva.export.run import export_models

MACROS = Path(__file__).resolve().parents[1] / "macros"
ROOT_EXE = shutil.which("root", path=str(Path(sys.executable).parent)) or shutil.which("root")
uproot = pytest.importorskip("uproot")
pytestmark = pytest.mark.skipif(ROOT_EXE is None, reason="no `root` executable")


def root_macro(call: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ROOT_EXE, "-l", "-b", "-q", call], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def ntuple(path: Path, n: int = 2000) -> dict[str, np.ndarray]:
    from htt_tmva._root import root

    rng = np.random.default_rng(11)
    columns = {
        "x": rng.normal(size=n).astype(np.float32),
        "y": rng.normal(size=n).astype(np.float32),
        "event": rng.permutation(np.arange(10**6, 10**6 + n, dtype=np.uint64)),
        "run": rng.integers(1, 4, size=n).astype(np.int32),
    }
    root().RDF.FromNumpy(columns).Snapshot("ntuple", str(path), list(columns))
    return columns


@pytest.mark.parametrize("engine", ["keras", "bdt"])
def test_apply_model_macro_adds_fold_crossed_scores(trained_models, engine, tmp_path):
    info = trained_models[engine]
    (header,) = export_models(info["training_config"], None, engine, "cpp")
    columns = ntuple(tmp_path / "in.root")
    before = (tmp_path / "in.root").read_bytes()
    result = root_macro(
        f'{MACROS / "apply_model.C"}("{header}", "in.root", "ntuple", "out.root", "s_")', tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "in.root").read_bytes() == before
    with uproot.open(tmp_path / "out.root") as f:
        out = f["ntuple"].arrays(library="np")
    x = np.column_stack([columns["x"], columns["y"]]).astype(np.float64)
    models = [load_model(p) for p in info["models"]]
    even = (columns["event"] % 2 == 0)[:, None]
    expected = np.where(even, models[1].predict(x), models[0].predict(x))
    classes = models[0].manifest.classes
    scores = np.column_stack([out[f"s_{c}"] for c in classes])
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(out["s_max_index"], expected.argmax(axis=1).astype(np.float32))
    np.testing.assert_allclose(out["s_max_score"], expected.max(axis=1), rtol=1e-5)
    for name, values in columns.items():
        np.testing.assert_array_equal(out[name], values)


def test_apply_model_macro_names_a_missing_variable(trained_models, tmp_path):
    (header,) = export_models(trained_models["bdt"]["training_config"], None, "bdt", "cpp")
    from htt_tmva._root import root

    root().RDF.FromNumpy({"x": np.zeros(3), "event": np.arange(3)}).Snapshot(
        "ntuple", str(tmp_path / "in.root")
    )
    result = root_macro(
        f'{MACROS / "apply_model.C"}("{header}", "in.root", "ntuple", "out.root")', tmp_path
    )
    assert result.returncode == 1
    assert "variable 'y' of the model is not a branch of 'ntuple'" in result.stderr
    assert not (tmp_path / "out.root").exists()


def test_draw_confusion_macro(tmp_path):
    from htt_tmva.evaluation.root_output import write_matrices

    classes = ["signal", "background"]
    matrices = {
        "standard": ("standard", np.array([[3.0, 1.0], [0.5, 4.0]])),
        "efficiency": ("efficiency", np.array([[0.75, 0.25], [0.1, 0.9]])),
    }
    write_matrices(tmp_path / "confusion.root", matrices, classes)
    result = root_macro(
        f'{MACROS / "draw_confusion.C"}("confusion.root", "efficiency", "eff.png")', tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "eff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = root_macro(f'{MACROS / "draw_confusion.C"}("confusion.root", "purity")', tmp_path)
    assert result.returncode == 1
    assert "no matrix 'purity'" in result.stderr and "standard, efficiency" in result.stderr


@pytest.mark.parametrize("n", [3, 21])
def test_draw_confusion_macro_rows_as_the_png_and_scaled(tmp_path, n):
    from htt_tmva._root import open_root_file
    from htt_tmva.evaluation.root_output import write_matrices

    classes = [f"class_number_{i}" for i in range(n)]
    values = np.arange(n * n, dtype=float).reshape(n, n)  # [true, predicted]
    write_matrices(tmp_path / "confusion.root", {"standard": ("standard", values)}, classes)
    for output in ("m.png", "m.root"):
        call = f'{MACROS / "draw_confusion.C"}("confusion.root", "standard", "{output}")'
        result = root_macro(call, tmp_path)
        assert result.returncode == 0, result.stderr
    tfile = open_root_file(tmp_path / "m.root")
    canvas = tfile.Get("confusion")
    hist = canvas.GetPrimitive("confusion_drawn")
    # the first class in the top row (the last bin of the y axis), as in the PNG
    assert hist.GetYaxis().GetBinLabel(n) == classes[0]
    assert hist.GetYaxis().GetBinLabel(1) == classes[-1]
    assert hist.GetXaxis().GetBinLabel(1) == classes[0]
    assert hist.GetBinContent(2, n) == values[0, 1]
    assert hist.GetBinContent(1, 1) == values[n - 1, 0]
    width, height = canvas.GetWw(), canvas.GetWh()
    tfile.Close()
    # 21 classes: about 60 px per cell, larger than the fixed 800 x 700 of old
    assert (width > 1400 and height > 1400) if n == 21 else (width < 1300 and height < 1300)
