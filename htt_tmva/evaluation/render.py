"""Drawing the figures of the testing step, in worker processes where cores are free.

Drawing is most of the step's time (text-heavy matrices, PNG and PDF each), and every
figure is independent: a figure is a :class:`Job` (a builder of
:mod:`htt_tmva.evaluation.plots`, its numbers, its output paths). The workers are forked
at the start of the step, before ROOT, TensorFlow or XGBoost are loaded and while the
process has one thread, so that they import matplotlib while the main process reads and
scores; a process that is not in that state (e.g. a notebook that has loaded ROOT) draws
the figures itself, one after the other. Errors in a worker come back as themselves.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

MAX_WORKERS = 4
#: modules that start threads or hold state that a fork must not copy
_UNSAFE_TO_FORK = ("ROOT", "cppyy", "tensorflow", "xgboost", "torch")


@dataclass
class Job:
    """One figure: ``plots.<builder>(*args, **kwargs)`` saved to ``paths`` (PNG, PDF)."""

    builder: str
    args: tuple
    paths: Sequence[Path]
    kwargs: dict[str, Any] = field(default_factory=dict)


def draw(job: Job) -> None:
    import matplotlib as mpl

    from htt_tmva.evaluation import plots

    with mpl.rc_context(plots.STYLE):
        fig = getattr(plots, job.builder)(*job.args, **job.kwargs)
        plots.save(fig, job.paths)


def _warm_up() -> None:
    """Import matplotlib, load its fonts and both writers (PNG, PDF) while the main process
    reads the data: a worker's first figure then costs what the others do."""
    import io

    import matplotlib as mpl

    from htt_tmva.evaluation import plots

    with mpl.rc_context(plots.STYLE):
        fig = plots.new_figure(1, 1)
        ax = fig.add_axes((0.2, 0.2, 0.6, 0.6))
        ax.set_title("0.5")
        ax.text(0.5, 0.5, "0.5")
        for fmt in ("png", "pdf"):
            fig.savefig(io.BytesIO(), format=fmt)


def worker_count(jobs: int) -> int:
    """Workers for ``jobs`` figures: the free cores (at most :data:`MAX_WORKERS`), 0 when
    forking is not safe here or only one core is there."""
    if sys.platform != "linux" or threading.active_count() > 1:
        return 0
    if any(name in sys.modules for name in _UNSAFE_TO_FORK):
        return 0
    cores = len(os.sched_getaffinity(0))
    return min(cores, MAX_WORKERS, jobs) if cores > 1 else 0


class Renderer:
    """Draws jobs in forked workers (started at construction) as soon as they are submitted,
    or, without workers, in turn when waited for."""

    def __init__(self, jobs: int, workers: Optional[int] = None):
        self.pool, self.pending, self.futures = None, [], []
        workers = worker_count(jobs) if workers is None else workers
        if workers:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("fork")
            self.pool = ProcessPoolExecutor(workers, mp_context=context)
            self.warm = [self.pool.submit(_warm_up) for _ in range(workers)]
            log.debug("drawing the figures in %d worker processes", workers)

    def submit(self, jobs: Sequence[Job]) -> None:
        """Start drawing ``jobs`` in the order given (the costliest first keeps the workers
        busy alike); without workers they are drawn at :meth:`wait`."""
        if self.pool is None:
            self.pending.extend(jobs)
        else:
            self.futures.extend(self.pool.submit(draw, job) for job in jobs)

    def wait(self) -> None:
        """Every submitted figure drawn (its error raised here)."""
        pending, futures, self.pending, self.futures = self.pending, self.futures, [], []
        for job in pending:
            draw(job)
        for future in futures:
            future.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
