"""Which fold a fold file holds, checked before training or testing on it.

The order of ``datasets`` alone decides which model scores which events, so a swapped list
would score every event with the model that trained on it. Each fold file says which fold it
holds: files written by ``htt-tmva dataset`` carry a ``TNamed`` called ``htt_tmva_fold``
whose title is JSON ``{"fold": i, "folds": k, "event_branch": "<name>"}``. Older files
(the classic script, older htt-tmva) are checked through their event numbers instead:
every event of fold i has ``event % k == i`` (the rule of :mod:`htt_tmva.data.folds`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from htt_tmva.errors import FoldMismatchError

log = logging.getLogger(__name__)

FOLD_METADATA = "htt_tmva_fold"
EVENT_FOLD_COLUMN = "__htt_tmva_event_fold"


@dataclass
class ExpectedFold:
    """The fold a file must hold, and why (``role`` is said in errors)."""

    fold: int
    folds: int
    event_branch: str = "event"
    role: str = ""

    def describe(self) -> str:
        return f"fold {self.fold} of {self.folds}" + (f" ({self.role})" if self.role else "")


def read_fold_record(tfile, path: Path) -> Optional[dict[str, Any]]:
    """The ``htt_tmva_fold`` record of an open fold file, or None if it has none."""
    obj = tfile.Get(FOLD_METADATA)
    if not obj:
        return None
    title = str(obj.GetTitle())
    try:
        meta = json.loads(title)
    except ValueError:
        meta = None
    valid = (
        isinstance(meta, dict)
        and all(type(meta.get(key)) is int for key in ("fold", "folds"))
        and 0 <= meta["fold"] < meta["folds"]
    )
    if not valid:
        raise FoldMismatchError(
            f"'{path}': its '{FOLD_METADATA}' record is not valid: {title!r}; expected JSON "
            '{"fold": i, "folds": k, "event_branch": "<name>"} with 0 <= i < k'
        )
    return meta


def check_metadata(meta: dict[str, Any], expected: ExpectedFold, path: Path) -> dict[str, Any]:
    """Refuse a file whose metadata names another fold; return the record for the manifest."""
    if (meta["fold"], meta["folds"]) != (expected.fold, expected.folds):
        raise FoldMismatchError(
            f"'{path}' holds fold {meta['fold']} of {meta['folds']} (its '{FOLD_METADATA}' "
            f"record), but it is used as {expected.describe()}; list the fold files in fold "
            "order: entry i of 'datasets' must be fold i"
        )
    return origin(path, expected, "metadata", meta.get("event_branch"))


def check_event_folds(
    event_folds: np.ndarray, expected: ExpectedFold, tree: str, path: Path
) -> None:
    """Refuse a tree holding events whose fold (by event number) is not the expected one."""
    wrong = event_folds != expected.fold
    n_wrong = int(wrong.sum())
    if n_wrong:
        found = sorted(int(f) for f in np.unique(event_folds))
        raise FoldMismatchError(
            f"'{path}' is used as {expected.describe()}, but {n_wrong} of {len(event_folds)} "
            f"events of tree '{tree}' belong to another fold by their event number "
            f"('{expected.event_branch}' % {expected.folds} is {found}); list the fold files in "
            "fold order: entry i of 'datasets' must be fold i"
        )


def origin(
    path: Path,
    expected: ExpectedFold,
    verified_by: str,
    event_branch: Optional[str],
    unverified_trees: Optional[list[str]] = None,
) -> dict[str, Any]:
    """The manifest record of a fold file: which fold it is and how that was checked."""
    record = {
        "file": str(path),
        "fold": expected.fold,
        "folds": expected.folds,
        "verified_by": verified_by,
        "event_branch": event_branch,
    }
    if unverified_trees:
        record["unverified_trees"] = list(unverified_trees)
    return record


def warn_unverified(path: Path, expected: ExpectedFold, trees: list[str]) -> None:
    log.warning(
        "cannot verify that '%s' holds %s: it has no '%s' record (written by `htt-tmva dataset`) "
        "and tree(s) %s have no event-number branch '%s' (training config key 'event_branch')",
        path,
        expected.describe(),
        FOLD_METADATA,
        ", ".join(f"'{t}'" for t in trees),
        expected.event_branch,
    )


def check_same_dataset(paths: list, source: str = "") -> None:
    """Refuse fold files written from different dataset configs (their ``htt_tmva_fold``
    records name different config digests): e.g. two dataset runs into one folder, or a list
    of ``datasets`` that mixes two datasets. Files without a digest are not compared."""
    from htt_tmva._root import open_root_file

    digests: dict[str, list[str]] = {}
    for path in paths:
        tfile = open_root_file(path)
        try:
            meta = read_fold_record(tfile, path)
        finally:
            tfile.Close()
        digest = (meta or {}).get("config_digest")
        if digest:
            digests.setdefault(digest, []).append(str(path))
    if len(digests) > 1:
        groups = "; ".join(
            f"{', '.join(repr(p) for p in files)} (config {digest[:12]})"
            for digest, files in digests.items()
        )
        raise FoldMismatchError(
            f"the fold files{' of ' + source if source else ''} come from different dataset "
            f"configs: {groups}; build all folds with one `htt-tmva dataset` run"
        )
