"""Parse the parts of a TMVA weight file that every method shares.

A weight file (``*.weights.xml``) is ``<MethodSetup Method="TYPE::NAME">`` with the sections
GeneralInfo, Options, Variables, Spectators, Classes, Transformations, MVAPdfs and Weights.
This module reads them into plain Python objects; the method modules read ``Weights``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from htt_tmva.errors import TmvaWeightsError


@dataclass(frozen=True)
class Variable:
    """One input variable (or spectator) as TMVA declared it."""

    expression: str
    internal: str
    label: str
    type: str


@dataclass
class Header:
    """Everything of a weight file except the method's own weights."""

    path: Path
    method_type: str
    method_name: str
    analysis_type: str
    tmva_version: tuple
    root_version: tuple
    options: dict
    variables: list
    spectators: list
    classes: list
    transformations: ET.Element | None
    weights: ET.Element
    root_element: ET.Element = field(repr=False)

    def option(self, name: str, default: str | None = None) -> str | None:
        """An option's value as written, case-insensitive on the name."""
        return self.options.get(name.lower(), default)

    def fail(self, message: str) -> TmvaWeightsError:
        """A TmvaWeightsError that names this weight file."""
        return TmvaWeightsError(f"TMVA weight file '{self.path}': {message}")


def _version(text: str) -> tuple:
    """'4.2.1 [262657]' -> (4, 2, 1); '6.24/06 [399366]' -> (6, 24, 6)."""
    numbers = re.findall(r"\d+", text.split("[")[0])
    return tuple(int(n) for n in numbers[:3]) if numbers else (0, 0, 0)


def numbers(text: str | None) -> np.ndarray:
    """The whitespace-separated numbers of an element's text, as float64."""
    if not text or not text.strip():
        return np.zeros(0)
    return np.array(text.split(), dtype=np.float64)


def attr(element: ET.Element, name: str, header: Header, cast=str):
    """A required attribute, or a TmvaWeightsError naming the element and the file."""
    value = element.get(name)
    if value is None:
        raise header.fail(f"<{element.tag}> has no attribute '{name}'")
    try:
        return cast(value)
    except ValueError as exc:
        raise header.fail(f"<{element.tag} {name}='{value}'> is not a {cast.__name__}") from exc


def _variables(section: ET.Element | None, tag: str) -> list:
    if section is None:
        return []
    result = []
    for el in section.findall(tag):
        expression = el.get("Expression") or el.get("Label") or ""
        internal = el.get("Internal") or el.get("Label") or expression
        result.append(
            Variable(
                expression=expression,
                internal=internal,
                label=el.get("Label") or internal,
                type=el.get("Type", "F"),
            )
        )
    return result


def read_header(path: str | Path) -> Header:
    """Parse a weight file; raise TmvaWeightsError for anything that is not one."""
    path = Path(path)
    if not path.is_file():
        raise TmvaWeightsError(f"TMVA weight file '{path}' does not exist")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise TmvaWeightsError(f"TMVA weight file '{path}' is not well-formed XML: {exc}") from exc
    if root.tag != "MethodSetup" or "Method" not in root.attrib:
        raise TmvaWeightsError(
            f"'{path}' is not a TMVA weight file: expected a <MethodSetup Method=...> root "
            f"element, found <{root.tag}>"
        )
    method = root.get("Method", "")
    method_type, _, method_name = method.partition("::")
    info = {el.get("name", ""): el.get("value", "") for el in root.findall("GeneralInfo/Info")}
    options = {
        (el.get("name") or "").lower(): (el.text or "").strip()
        for el in root.findall("Options/Option")
    }
    weights = root.find("Weights")
    header = Header(
        path=path,
        method_type=method_type,
        method_name=method_name or method_type,
        analysis_type=info.get("AnalysisType", "Classification"),
        tmva_version=_version(info.get("TMVA Release", "0")),
        root_version=_version(info.get("ROOT Release", "0")),
        options=options,
        variables=_variables(root.find("Variables"), "Variable"),
        spectators=_variables(root.find("Spectators"), "Spectator"),
        classes=[el.get("Name", "") for el in root.findall("Classes/Class")],
        transformations=root.find("Transformations"),
        weights=weights if weights is not None else ET.Element("Weights"),
        root_element=root,
    )
    if weights is None and method_type != "PyKeras":
        raise header.fail("no <Weights> section")
    if not header.variables:
        raise header.fail("no <Variables> section (or no <Variable> in it)")
    if not header.classes:  # TMVA < 4 files have no Classes block: two-class
        header.classes = ["Signal", "Background"]
    return header
