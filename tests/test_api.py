"""The Python API: the docstring examples run, in order, sharing one toy workflow."""

from __future__ import annotations

import doctest

import pytest

import htt_tmva
from htt_tmva import api

EXAMPLES_IN_ORDER = [
    "htt_tmva.api",
    "htt_tmva.api.create_toy_dataset",
    "htt_tmva.api.write_example_configs",
    "htt_tmva.api.load_model",
    "htt_tmva.api.confusion",
    "htt_tmva.api.apply",
    "htt_tmva.api.export",
]


def test_docstring_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    tests = {t.name: t for t in doctest.DocTestFinder().find(api) if t.examples}
    assert sorted(tests) == sorted(EXAMPLES_IN_ORDER)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    shared: dict = {}
    for name in EXAMPLES_IN_ORDER:
        test = tests[name]
        test.globs = shared  # one workflow: later examples use earlier results
        result = runner.run(test, clear_globs=False)
        assert result.failed == 0, f"docstring example of {name} failed"


def test_api_names_are_lazy_and_complete():
    for name in htt_tmva._API:
        assert callable(getattr(htt_tmva, name))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        htt_tmva.nope  # noqa: B018
