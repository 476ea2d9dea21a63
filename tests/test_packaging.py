"""The pip extras: each optional part of the stack can be installed by name."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def extras() -> dict[str, list[str]]:
    with open(PYPROJECT, "rb") as f:
        return tomllib.load(f)["project"]["optional-dependencies"]


def test_batch_extra_installs_htcondor_and_dask_distributed():
    assert set(extras()["batch"]) == {"htcondor", "dask[distributed]"}


def test_all_extra_includes_every_other_runtime_extra():
    found = extras()
    everything = set(found["all"])
    for name in ("root", "keras", "bdt", "plot", "batch"):
        assert set(found[name]) <= everything, name
