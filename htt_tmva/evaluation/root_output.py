"""Confusion matrices as labelled TH2D in a ROOT file, for ROOT users.

x axis: predicted class, y axis: true class, bin labels = class names; bin (j+1, i+1)
holds cell (true i, predicted j). Undefined (NaN) cells are left empty (content 0).
The standard matrix carries sqrt(sum of squared weights) as bin errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from htt_tmva._root import open_root_file, root
from htt_tmva.errors import OutputError


def _th2d(
    name: str,
    title: str,
    values: np.ndarray,
    classes: Sequence[str],
    sumw2: Optional[np.ndarray] = None,
):
    ROOT = root()
    n = len(classes)
    hist = ROOT.TH2D(name, f"{title};predicted class;true class", n, 0, n, n, 0, n)
    hist.SetDirectory(ROOT.nullptr)
    if sumw2 is not None:
        hist.Sumw2()
    for i, cls in enumerate(classes):
        hist.GetXaxis().SetBinLabel(i + 1, cls)
        hist.GetYaxis().SetBinLabel(i + 1, cls)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            hist.SetBinContent(j + 1, i + 1, float(v))
            if sumw2 is not None:
                hist.SetBinError(j + 1, i + 1, float(np.sqrt(max(sumw2[i, j], 0.0))))
    hist.SetEntries(float(np.isfinite(values).sum()))
    return hist


def write_matrices(
    path: Path,
    matrices: Mapping[str, tuple[str, np.ndarray]],
    classes: Sequence[str],
    sumw2: Optional[np.ndarray] = None,
) -> None:
    """Write each ``name -> (title, values)`` as TH2D ``name``; ``sumw2``: errors of 'standard'."""
    ROOT = root()
    tfile = ROOT.TFile.Open(str(path), "RECREATE")
    if not tfile or tfile.IsZombie():
        raise OutputError(f"cannot create ROOT file '{path}'")
    try:
        for name, (title, values) in matrices.items():
            hist = _th2d(name, title, values, classes, sumw2 if name == "standard" else None)
            tfile.WriteObject(hist, name)
    finally:
        tfile.Close()


def read_matrices(path: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """Read every TH2D of a file back: name -> (class labels, values[true, predicted])."""
    tfile = open_root_file(path)
    try:
        out = {}
        for key in tfile.GetListOfKeys():
            if key.GetClassName() != "TH2D":
                continue
            hist = key.ReadObj()
            n = hist.GetNbinsX()
            labels = [str(hist.GetXaxis().GetBinLabel(j + 1)) for j in range(n)]
            values = np.array(
                [[hist.GetBinContent(j + 1, i + 1) for j in range(n)] for i in range(n)]
            )
            out[str(key.GetName())] = (labels, values)
        return out
    finally:
        tfile.Close()
