"""TMVA's option strings from the options a user set in the ``tmva:`` section.

The options themselves (names, types, predefined values per method) are declared with the other
config sections in :mod:`htt_tmva.config.tmva`, and re-exported here.
"""

from __future__ import annotations

from typing import Any, Optional

from htt_tmva.config.schema import Field
from htt_tmva.config.tmva import (
    BASE_OPTIONS,
    BDT_OPTIONS,
    DATALOADER_OPTIONS,
    DEFAULT_METHODS,
    DL_OPTIONS,
    FACTORY_OPTIONS,
    METHOD_OPTIONS,
    METHODS,
    PYKERAS_OPTIONS,
    TMVA_SCHEMA,
    TRANSFORMATIONS,
    OneOf,
    transformation_parts,
)

__all__ = [
    "METHODS",
    "DEFAULT_METHODS",
    "OneOf",
    "TRANSFORMATIONS",
    "transformation_parts",
    "BASE_OPTIONS",
    "BDT_OPTIONS",
    "DL_OPTIONS",
    "PYKERAS_OPTIONS",
    "FACTORY_OPTIONS",
    "DATALOADER_OPTIONS",
    "METHOD_OPTIONS",
    "TMVA_SCHEMA",
    "format_value",
    "option_string",
    "set_options",
]


def set_options(section: Any, declared: Optional[dict[str, Field]] = None) -> dict[str, Any]:
    """The options a user set in a validated sub-section (those left out are None); with the
    ``declared`` options, predefined values in TMVA's own spelling."""
    options = {k: v for k, v in (section or {}).items() if v is not None}
    for name, value in options.items():
        check = declared[name].check if declared and name in declared else None
        if isinstance(check, OneOf):
            options[name] = check.canonical(value) or value
    return options


def format_value(value: Any) -> str:
    """Numbers exactly (``repr`` round-trips a float), everything else as text."""
    return repr(value) if isinstance(value, float) else str(value)


def option_string(options: dict[str, Any]) -> str:
    """TMVA's ``A=1:B:!C`` syntax; booleans as ``Name`` / ``!Name``."""
    parts = []
    for name, value in options.items():
        if isinstance(value, bool):
            parts.append(name if value else f"!{name}")
        else:
            parts.append(f"{name}={format_value(value)}")
    return ":".join(parts)
