"""Progress of long steps on a terminal, and a quiet TensorFlow start-up.

A progress bar (events done, rate, time left; drawn by ``rich``) is shown only when
standard error is a terminal and the ``htt_tmva`` logger shows INFO messages: batch jobs,
logs and ``-q`` stay quiet. TensorFlow's start-up lines (oneDNN, absl) are caught and
logged at DEBUG level on the ``htt_tmva.tensorflow`` logger, which ``-v`` shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Callable, Optional, TypeVar

log = logging.getLogger("htt_tmva")
TENSORFLOW_LOG = logging.getLogger("htt_tmva.tensorflow")

Update = Callable[[int, Optional[int]], None]
T = TypeVar("T")


def progress_wanted() -> bool:
    """True on a terminal unless the user asked for fewer messages (``-q``)."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and log.isEnabledFor(logging.INFO)


@contextlib.contextmanager
def progress_bar(description: str, unit: str = "events") -> Iterator[Update]:
    """Yield ``update(done, total)``; draws a bar on a terminal, does nothing otherwise."""
    if not progress_wanted():
        yield lambda done, total=None: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        TextColumn("left"),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=None, rate="")

        def update(done: int, total: Optional[int] = None) -> None:
            bar.update(task, completed=done, total=total)
            speed = bar.tasks[task].speed
            bar.update(task, rate=f"{speed:,.0f} {unit}/s" if speed else "")

        yield update


def tracked(
    items: Iterable[T], total: int, description: str, position: Callable[[T], int] = int
) -> Iterator[T]:
    """Yield ``items`` (chunks of ``total`` events) with a progress bar: ``position(item)``
    is the number of events done before the item. The bar ends with the loop (also when
    the loop breaks or raises)."""
    with progress_bar(description) as update:
        for item in items:
            update(position(item), total)
            yield item
        update(total, total)


@contextlib.contextmanager
def quiet_tensorflow_start() -> Iterator[None]:
    """Import TensorFlow (Keras) inside this block: its start-up noise goes to DEBUG logs.

    TF_CPP_MIN_LOG_LEVEL=2 (unless set by the user) silences its later INFO and WARNING
    lines; the lines it writes before its logging is set up (oneDNN, absl) are caught on
    file descriptor 2 while the block runs.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from htt_tmva._root import captured_stderr  # plain file-descriptor capture, no ROOT

    with captured_stderr() as caught:
        yield
    for line in caught[0].splitlines():
        if line.strip():
            TENSORFLOW_LOG.debug("%s", line)
