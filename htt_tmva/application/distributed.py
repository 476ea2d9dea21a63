"""The application on a Dask cluster: the same pipeline as a local run, one task per input.

Each task prepares one input's new file on a worker (every selected tree copied and scored,
the other objects copied, verified), exactly as :func:`htt_tmva.application.apply.prepare_file`
does locally; the models travel as the fold-aware C++ header (each worker compiles it once,
into its own cache, or JIT-compiles it without a compiler), so no TensorFlow or XGBoost runs
there. Locking and the commit (all inputs renamed into place together) stay here.

Workers must see the input and output paths (a local cluster, or a shared filesystem) and
have htt_tmva and ROOT installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from typing import Optional

from htt_tmva.errors import ConfigError

log = logging.getLogger(__name__)


def parse_executor(executor: str) -> Optional[str]:
    """``local`` -> None; ``dask`` -> '' (a local cluster); ``dask=ADDRESS`` -> ADDRESS."""
    if executor == "local":
        return None
    if executor == "dask":
        return ""
    if executor.startswith("dask="):
        return executor[len("dask=") :]
    raise ConfigError(f"unknown executor '{executor}'; valid: 'local', 'dask', 'dask=ADDRESS'")


@contextlib.contextmanager
def dask_client(address: str, workers: int) -> Iterator[object]:
    """A client of the scheduler at ``address``, or of a local cluster of ``workers``."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--executor dask needs Dask: pip install 'dask[distributed]'") from None
    if not log.isEnabledFor(logging.INFO):  # -q: Dask's INFO lines too (set up at its import)
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if address:
        client = Client(address)
        log.info("Dask scheduler %s: %d workers", address, len(client.scheduler_info()["workers"]))
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    log.info("local Dask cluster of %d workers", workers)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def prepare_on_worker(prepare_file, infos, plan, scoring) -> None:
    """One task: the models loaded from their C++ header, then the input's new file
    prepared and verified (not committed) by ``prepare_file`` (the local run's step)."""
    from htt_tmva.application.pipeline import declare
    from htt_tmva.export.compile import load_compiled

    compiled = scoring.compiled
    symbol = load_compiled(compiled.header, compiled.namespace)
    declare()
    scoring = dataclasses.replace(scoring, compiled=dataclasses.replace(compiled, symbol=symbol))
    prepare_file(infos, plan, scoring)


def prepare_on_cluster(client, prepare_file, infos: Sequence, plans: Sequence, scoring) -> None:
    """Prepare every input's new file on the cluster with ``prepare_file``, one task per
    input; the first failure is raised here (as the local run raises it)."""
    light = dataclasses.replace(scoring, models=None)  # the compiled header is enough
    futures = [
        client.submit(prepare_on_worker, prepare_file, group, plan, light, pure=False)
        for group, plan in zip(infos, plans)
    ]
    log.info("%d input(s) on the Dask cluster", len(futures))
    try:
        client.gather(futures)
    finally:
        client.cancel(futures)
