"""The toy dataset: signal and two backgrounds from 2D normals, plus a data-like mixture."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from htt_tmva._files import atomic_outputs

log = logging.getLogger(__name__)

TREE = "ntuple"


@dataclass(frozen=True)
class ToyProcess:
    name: str
    mean: tuple[float, float]
    correlation: float
    norm: float

    @property
    def covariance(self) -> np.ndarray:
        return np.array([[1.0, self.correlation], [self.correlation, 1.0]])


PROCESSES = (
    ToyProcess("signal", (0.0, 0.0), 0.0, 0.1),
    ToyProcess("background_1", (0.5, 0.5), -0.7, 0.6),
    ToyProcess("background_2", (-0.5, -0.5), 0.7, 0.3),
)


def draw_process(
    process: ToyProcess, events: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Draw ``events`` events of one process: x, y, weight norm/N, unique event numbers."""
    xy = rng.multivariate_normal(process.mean, process.covariance, size=events)
    return {
        "x": xy[:, 0].astype(np.float32),
        "y": xy[:, 1].astype(np.float32),
        "weights": np.full(events, process.norm / events, dtype=np.float32),
        "event": np.arange(events, dtype=np.uint64),
    }


def draw_data(events: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw the data-like mixture: N x norm events of each process, weight 1, shuffled."""
    parts = [draw_process(p, round(events * p.norm), rng) for p in PROCESSES]
    columns = {k: np.concatenate([p[k] for p in parts]) for k in ("x", "y")}
    order = rng.permutation(len(columns["x"]))
    n = len(order)
    return {
        "x": columns["x"][order],
        "y": columns["y"][order],
        "weights": np.ones(n, dtype=np.float32),
        "event": np.arange(n, dtype=np.uint64),
    }


def write_tree(path: Path, columns: dict[str, np.ndarray], tree: str = TREE) -> None:
    """Write numpy columns as a TTree with RDataFrame (vectorised, no per-event loop)."""
    from htt_tmva._root import root

    ROOT = root()
    df = ROOT.RDF.FromNumpy({k: np.ascontiguousarray(v) for k, v in columns.items()})
    df.Snapshot(tree, str(path), list(columns))


def write_toy_dataset(output_dir: str | Path, events: int = 10000, seed: int = 1234) -> list[Path]:
    """Write the four toy files into ``output_dir``; return their paths."""
    if events <= 0:
        from htt_tmva.errors import HttTmvaError

        raise HttTmvaError(f"--events must be positive, got {events}")
    output_dir = Path(output_dir)
    rng = np.random.default_rng(seed)
    samples = {f"example_{p.name}.root": draw_process(p, events, rng) for p in PROCESSES}
    samples["example_data.root"] = draw_data(events, rng)
    finals = [output_dir / name for name in samples]
    with atomic_outputs(finals) as temps:
        for tmp, (name, columns) in zip(temps, samples.items()):
            write_tree(tmp, columns)
            log.info(
                "wrote %s: %d events, sum of weights %.4g",
                output_dir / name,
                len(columns["x"]),
                float(columns["weights"].sum()),
            )
    return finals
