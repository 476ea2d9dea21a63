"""Exceptions of htt_tmva: one base class, one subclass per kind of failure.

The CLI prints the message of any :class:`HttTmvaError` without a traceback and
exits with status 1; any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def choices_text(choices: Iterable[str]) -> str:
    """Format valid choices for a message, closest-first ordering is left to the caller."""
    items = [str(c) for c in choices]
    return ", ".join(f"'{c}'" for c in items) if items else "(none)"


class HttTmvaError(Exception):
    """Base class of every error that htt_tmva reports to the user."""


class ConfigError(HttTmvaError):
    """A configuration file is missing, not valid YAML, or does not match its schema."""


class InputFileError(HttTmvaError):
    """An input ROOT file is missing, unreadable, a zombie or recovered."""


class MissingTreeError(InputFileError):
    """A tree is not in a file."""


class MissingBranchError(InputFileError):
    """A branch or column named in a config or expression is not in a tree."""


class ExpressionError(HttTmvaError):
    """A cut or weight expression does not compile."""


class EmptySelectionError(HttTmvaError):
    """A selection or class holds no events."""


class NonFiniteError(HttTmvaError):
    """Inputs or weights hold NaN or infinite values."""


class InvalidEventNumberError(HttTmvaError):
    """Event numbers cannot be assigned to folds exactly."""


class EngineError(HttTmvaError):
    """An engine name is unknown or its library is not installed."""


class ModelError(HttTmvaError):
    """A model, its manifest or its preprocessing is missing or does not match the config."""


class FoldLeakError(ModelError):
    """A model would be evaluated or applied on events it was trained on."""


class FoldMismatchError(HttTmvaError):
    """A fold file holds another fold than its place in 'datasets' says."""


class OutputError(HttTmvaError):
    """An output exists already, or cannot be written or verified."""


class BatchError(HttTmvaError):
    """A batch job folder cannot be written, read or submitted."""


class DatasetPartError(HttTmvaError):
    """A part of a split dataset step is missing, stale (another config) or incomplete."""


class ExportError(ModelError):
    """A model holds something that cannot be exported (a layer, a preprocessing kind)."""


def branch_missing(
    branch: str, tree: str, file: str, available: Iterable[str]
) -> MissingBranchError:
    """Build the error for a missing branch, listing the branches that exist, closest first."""
    available = list(available)
    close = difflib.get_close_matches(branch, available, n=len(available), cutoff=0.0)
    return MissingBranchError(
        f"branch '{branch}' not found in tree '{tree}' of file '{file}'"
        f"{did_you_mean(branch, available)}; branches there: {choices_text(close[:20])}"
        + (" ..." if len(close) > 20 else "")
    )


class TmvaWeightsError(ModelError):
    """A TMVA weight file is missing or malformed, or uses an unsupported method or transform."""


class TmvaModelFileError(TmvaWeightsError):
    """The model file that a TMVA weight file names (e.g. PyKeras' .h5) is missing or unreadable."""


class CacheError(HttTmvaError):
    """The cache of compiled libraries cannot be trusted (another owner, writable by others)
    or cannot be written."""
