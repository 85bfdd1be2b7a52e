"""Joining a Ray cluster (or starting a local Ray instance) and the options of a run."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from sporeprint.errors import SporeprintError

log = logging.getLogger(__name__)

# Cores a local Ray instance gets when no cluster address is given: small, because the
# local instance shares the machine with the DuckDB store and the driver.
LOCAL_CPUS = 2


@dataclass
class RayOptions:
    """How a Ray run is spread out.

    ``address``: a cluster (``ray://head:10001``, ``auto``, ``head:6379``); None uses
    ``RAY_ADDRESS`` when set, else starts a local instance with ``local_cpus`` cores.
    ``batch_size``: rows per model call in an actor. ``concurrency``: model actors
    (default: one per GPU of the cluster, else 1). ``work_dir``: where the Parquet
    shards go; on a multi-node cluster it must be storage every node mounts at the same
    path.
    """

    address: str | None = None
    batch_size: int = 64
    concurrency: int | None = None
    local_cpus: int = LOCAL_CPUS
    work_dir: str | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise SporeprintError(f"--ray-batch-size {self.batch_size} must be >= 1")
        if self.concurrency is not None and self.concurrency < 1:
            raise SporeprintError(f"--ray-concurrency {self.concurrency} must be >= 1 (or leave "
                                  "it out: one actor per GPU)")


def require_ray():
    """The ``ray`` module, or a SporeprintError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise SporeprintError("--engine ray needs Ray Data, which is not installed; install "
                              "it with `pip install -e .[ray]` (or `pip install 'ray[data]'`), "
                              "or use --engine local") from exc
    return ray


def connect(options: RayOptions):
    """Join the cluster of ``options.address`` (or ``RAY_ADDRESS``); else start a local
    instance. Returns the ``ray`` module. Reuses a connection already made."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"include_dashboard": False, "log_to_driver": False,
             "configure_logging": False}
    try:
        if address:
            ray.init(address=address, **quiet)
            log.info("joined Ray cluster at %s", address)
        else:
            ray.init(num_cpus=options.local_cpus, **quiet)
            log.info("started a local Ray instance with %d CPUs", options.local_cpus)
    except ConnectionError as exc:
        raise SporeprintError(f"cannot reach a Ray cluster at {address!r}: {exc}; start one "
                              "with `ray start --head` or leave --address out to run a local "
                              "Ray instance") from exc
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    return ray


def cluster_gpus(ray) -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def model_actors(ray, options: RayOptions) -> tuple[int, float]:
    """``(concurrency, num_gpus per actor)``: one actor per GPU by default, else one CPU
    actor (the decode tasks use the other cores)."""
    gpus = cluster_gpus(ray)
    if gpus:
        return (options.concurrency or gpus), 1.0
    return (options.concurrency or 1), 0.0
