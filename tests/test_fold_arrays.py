"""Reading the class trees of a fold file: branches of one number per event are read by the
compiled loop, without RDataFrame, to exactly the values that RDataFrame's AsNumpy gives, for
every branch type; a tree that needs more (expression variables) is read by RDataFrame."""

from __future__ import annotations

import numpy as np
import pytest

from htt_tmva._root import root
from htt_tmva.data import arrays

TYPES = {
    "f": np.float32,
    "d": np.float64,
    "i": np.int32,
    "u": np.uint32,
    "l": np.int64,
    "ul": np.uint64,
    "s": np.int16,
    "o": np.bool_,
}


def write_classes(path, classes, events=500):
    ROOT = root()
    rng = np.random.default_rng(2)
    for index, cls in enumerate(classes):
        raw = rng.normal(0, 1e3, events)
        columns = {
            name: (raw > 0 if kind is np.bool_ else raw).astype(kind)
            for name, kind in TYPES.items()
        }
        columns["ul"][:3] = [2**63 + 11, 2**53 + 1, 0]  # exact only as uint64
        columns["w"] = rng.exponential(1.0, events).astype(np.float32)
        options = ROOT.RDF.RSnapshotOptions()
        options.fMode = "UPDATE" if index else "RECREATE"
        ROOT.RDF.FromNumpy(columns).Snapshot(cls, str(path), list(columns), options)


def asnumpy(path, classes, columns):
    ROOT = root()
    out = []
    for cls in classes:
        data = ROOT.RDataFrame(cls, str(path)).AsNumpy(columns)
        out.append(np.column_stack([np.asarray(data[c], dtype=np.float64) for c in columns]))
    return np.concatenate(out)


def test_plain_branches_of_every_type_read_without_rdataframe_as_asnumpy(tmp_path, monkeypatch):
    path, classes, variables = tmp_path / "fold.root", ["a", "b"], list(TYPES)
    write_classes(path, classes)
    expected = asnumpy(path, classes, [*variables, "w"])
    ROOT = root()

    def refused(*args):
        raise AssertionError("RDataFrame is not needed for plain branches")

    monkeypatch.setattr(ROOT, "RDataFrame", refused)
    data = arrays.read_fold_file(path, classes, variables, "w")
    np.testing.assert_array_equal(data.x, expected[:, :-1])
    np.testing.assert_array_equal(data.w, expected[:, -1])
    np.testing.assert_array_equal(data.y, np.repeat([0, 1], 500))
    assert data.x.flags.c_contiguous


def test_expression_variables_are_read_by_rdataframe(tmp_path):
    path, classes = tmp_path / "fold.root", ["a", "b"]
    write_classes(path, classes)
    data = arrays.read_fold_file(path, classes, ["f", "f*d", "i"], "w")
    plain = asnumpy(path, classes, ["f", "d", "i"])
    np.testing.assert_array_equal(data.x[:, 0], plain[:, 0])
    np.testing.assert_array_equal(data.x[:, 2], plain[:, 2])
    product = (plain[:, 0].astype(np.float32) * plain[:, 1]).astype(np.float32)
    np.testing.assert_allclose(data.x[:, 1], product, rtol=1e-6)


@pytest.mark.parametrize("leaflist", [False, True])
def test_leaves_not_alone_in_their_branch_go_to_rdataframe(tmp_path, leaflist):
    """A leaf list branch (``b/F:c/F``) is not read by the compiled loop."""
    ROOT = root()
    path = tmp_path / "fold.root"
    tfile = ROOT.TFile.Open(str(path), "RECREATE")
    tree = ROOT.TTree("a", "a")
    buffer = np.zeros(2, dtype=np.float32)
    if leaflist:
        tree.Branch("b", buffer, "b/F:c/F")
    else:
        tree.Branch("b", buffer[0:1], "b/F")
        tree.Branch("c", buffer[1:2], "c/F")
    for i in range(10):
        buffer[:] = [i, 1.0]
        tree.Fill()
    tree.Write()
    assert (arrays._scalar_leaves(tree, ["b", "c"]) is None) == leaflist
    tfile.Close()
