"""Input preprocessing fitted on the training split, saved as readable JSON.

Inference needs only numpy and the JSON file (means, scales, variable order); a classic
scikit-learn pickle can be written for old scripts and read back, with a warning.
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from htt_tmva.errors import ModelError, choices_text

log = logging.getLogger(__name__)

KINDS = ("standard", "identity", "minmax", "robust", "quantile")
_QUANTILES = 1000


@dataclass
class Preprocessing:
    """A fitted per-variable transformation ``(x - offset) / scale`` or a quantile map."""

    kind: str
    variables: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    sklearn: Any = None  # a transformer loaded from a classic pickle

    @classmethod
    def fit(cls, kind: str, x: np.ndarray, variables: list[str]) -> Preprocessing:
        if kind not in KINDS:
            raise ModelError(f"unknown preprocessing '{kind}'; valid: {choices_text(KINDS)}")
        x = np.asarray(x, dtype=np.float64)
        if kind == "identity":
            offset, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
        elif kind == "standard":
            offset, scale = x.mean(axis=0), x.std(axis=0)
        elif kind == "minmax":
            offset, scale = x.min(axis=0), x.max(axis=0) - x.min(axis=0)
        elif kind == "robust":
            q25, q50, q75 = np.percentile(x, [25, 50, 75], axis=0)
            offset, scale = q50, q75 - q25
        else:
            levels = np.linspace(0.0, 1.0, _QUANTILES)
            quantiles = np.quantile(x, levels, axis=0)
            return cls(
                kind,
                list(variables),
                {"levels": levels.tolist(), "quantiles": quantiles.T.tolist()},
            )
        scale = np.where(scale > 0, scale, 1.0)
        return cls(kind, list(variables), {"offset": offset.tolist(), "scale": scale.tolist()})

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Transform a batch; returns float32 for the networks."""
        if self.sklearn is not None:
            return np.asarray(self.sklearn.transform(x), dtype=np.float32)
        if self.kind == "quantile":
            levels = np.asarray(self.params["levels"])
            out = np.empty(np.shape(x), dtype=np.float32)
            for i, q in enumerate(self.params["quantiles"]):
                out[:, i] = np.interp(x[:, i], np.asarray(q), levels)
            return out
        offset = np.asarray(self.params["offset"], dtype=np.float64)
        scale = np.asarray(self.params["scale"], dtype=np.float64)
        return ((np.asarray(x, dtype=np.float64) - offset) / scale).astype(np.float32)

    def to_json(self, path: Path) -> Path:
        with open(path, "w") as f:
            json.dump({"kind": self.kind, "variables": self.variables, **self.params}, f, indent=1)
        return path

    @classmethod
    def from_json(cls, path: Path) -> Preprocessing:
        with open(path) as f:
            data = json.load(f)
        kind, variables = data.pop("kind"), data.pop("variables")
        return cls(kind, variables, data)

    def to_pickle(self, path: Path) -> Optional[Path]:
        """Write a classic scikit-learn StandardScaler pickle (standard scaling only)."""
        if self.kind != "standard":
            log.warning(
                "a classic pickle is written only for standard scaling, not '%s'", self.kind
            )
            return None
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler()
        scaler.mean_ = np.asarray(self.params["offset"])
        scaler.scale_ = np.asarray(self.params["scale"])
        scaler.var_ = scaler.scale_**2
        scaler.n_features_in_ = len(self.variables)
        scaler.n_samples_seen_ = 0
        with open(path, "wb") as f:
            pickle.dump(scaler, f)
        return path


def load_preprocessing(path: Path, variables: list[str]) -> Preprocessing:
    """Load preprocessing from JSON, or from a classic pickle (with a warning)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"preprocessing file '{path}' does not exist")
    if path.suffix in (".pickle", ".pkl", ".p"):
        log.warning(
            "loading the pickle '%s': pickles run code when loaded, load only your own; "
            "prefer the JSON preprocessing written next to the model",
            path,
        )
        with open(path, "rb") as f:
            transformer = pickle.load(f)  # noqa: S301 - classic configs, warned above
        n = getattr(transformer, "n_features_in_", len(variables))
        if n != len(variables):
            raise ModelError(
                f"preprocessing pickle '{path}' expects {n} variables, the config lists "
                f"{len(variables)}: {variables}"
            )
        return Preprocessing("sklearn-pickle", list(variables), sklearn=transformer)
    pre = Preprocessing.from_json(path)
    if pre.variables != list(variables):
        raise ModelError(
            f"preprocessing '{path}' was fitted on variables {pre.variables}, "
            f"the model uses {variables}; the order matters"
        )
    return pre
