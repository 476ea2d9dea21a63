"""A small declared-schema validator for YAML configs.

A schema is a mapping ``key -> Field``. :func:`validate` checks a loaded YAML
document against it once, at the boundary, fills in defaults, and raises a
:class:`~htt_tmva.errors.ConfigError` naming the file, the key path and the valid
choices for anything unknown, misspelled, missing or of the wrong type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from htt_tmva.errors import ConfigError, choices_text, did_you_mean

_REQUIRED = object()


class Expression(str):
    """A ROOT expression (cut or weight); plain YAML numbers such as ``1`` are taken as text."""


_TYPE_NAMES = {
    Expression: "an expression (text or number)",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
}


@dataclass(frozen=True)
class Field:
    """One key of a schema.

    ``kind`` is the expected Python type; ``items`` the field of each list element;
    ``keys`` a fixed sub-schema; ``values`` the field of every value of a free-named
    mapping (e.g. processes by name); ``choices`` the allowed values; ``check`` an
    extra test returning an error text or None.
    """

    kind: type
    default: Any = _REQUIRED
    doc: str = ""
    items: Optional[Field] = None
    keys: Optional[dict[str, Field]] = None
    values: Optional[Field] = None
    choices: Optional[tuple] = None
    check: Optional[Callable[[Any], Optional[str]]] = None
    nullable: bool = False

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def validate(document: Any, schema: dict[str, Field], source: str) -> dict[str, Any]:
    """Validate ``document`` against ``schema``; return a new dict with defaults filled."""
    if not isinstance(document, dict):
        raise ConfigError(
            f"{source}: expected a mapping of keys at the top level, "
            f"got {type(document).__name__}; valid keys: {choices_text(schema)}"
        )
    return _validate_mapping(document, schema, source, "")


def _where(source: str, path: str) -> str:
    return f"{source}: key '{path}'" if path else source


def _validate_mapping(data: dict, schema: dict[str, Field], source: str, prefix: str) -> dict:
    out = {}
    for key in data:
        if key not in schema:
            path = f"{prefix}{key}"
            raise ConfigError(
                f"{_where(source, path)} is not a valid key{did_you_mean(key, schema)}; "
                f"valid keys{' under ' + repr(prefix[:-1]) if prefix else ''}: "
                f"{choices_text(schema)}"
            )
    for key, field in schema.items():
        path = f"{prefix}{key}"
        if key not in data:
            if field.required:
                raise ConfigError(
                    f"{_where(source, path)} is required but missing"
                    + (f" ({field.doc})" if field.doc else "")
                )
            out[key] = field.default
            continue
        out[key] = _validate_value(data[key], field, source, path)
    return out


def _validate_value(value: Any, field: Field, source: str, path: str) -> Any:
    if value is None:
        if field.nullable or field.default is None:
            return None
        raise ConfigError(f"{_where(source, path)} is empty; expected {_TYPE_NAMES[field.kind]}")
    value = _check_type(value, field.kind, source, path)
    if field.choices is not None and value not in field.choices:
        raise ConfigError(
            f"{_where(source, path)} has value {value!r}{did_you_mean(value, field.choices)}; "
            f"valid choices: {choices_text(field.choices)}"
        )
    if field.items is not None:
        value = [
            _validate_value(v, field.items, source, f"{path}[{i}]") for i, v in enumerate(value)
        ]
    if field.keys is not None:
        value = _validate_mapping(value, field.keys, source, f"{path}.")
    if field.values is not None:
        value = {
            str(k): _validate_value(v, field.values, source, f"{path}.{k}")
            for k, v in value.items()
        }
    if field.check is not None:
        problem = field.check(value)
        if problem:
            raise ConfigError(f"{_where(source, path)} {problem}")
    return value


def _check_type(value: Any, kind: type, source: str, path: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is Expression and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return Expression(value)
    bool_as_int = kind is int and isinstance(value, bool)
    if bool_as_int or not isinstance(value, kind):
        raise ConfigError(
            f"{_where(source, path)} has value {value!r} of type {type(value).__name__}; "
            f"expected {_TYPE_NAMES.get(kind, kind.__name__)}"
        )
    return value


def positive(value: Any) -> Optional[str]:
    return None if value > 0 else f"must be positive, got {value!r}"


def fraction(value: Any) -> Optional[str]:
    return None if 0.0 < value < 1.0 else f"must lie strictly between 0 and 1, got {value!r}"


def non_empty(value: Any) -> Optional[str]:
    return None if len(value) > 0 else "must not be empty"


def unique(value: Any) -> Optional[str]:
    seen = [v for i, v in enumerate(value) if v in value[:i]]
    return f"holds duplicates: {choices_text(seen)}" if seen else None


def expression(value: Any) -> Optional[str]:
    """None if ``value`` passes the expression grammar (:mod:`htt_tmva.expressions`)."""
    from htt_tmva.errors import ExpressionError
    from htt_tmva.expressions import translate

    try:
        translate(value, "the expression")
    except ExpressionError as error:
        return f"has {error}"
    return None


def branch_name(value: Any) -> Optional[str]:
    """None if ``value`` is a plain branch name (it is used in C++ as it is)."""
    from htt_tmva.expressions import is_plain

    if is_plain(value):
        return None
    return f"has value {value!r}, which is not a branch name (letters, digits and '_')"
