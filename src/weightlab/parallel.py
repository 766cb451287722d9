"""Fan independent jobs out over workers: a Ray runtime (local or a cluster), worker processes, or the
calling process. Used by every resumable suite (``recast bench``, ``know bench``, ``know meta collect``).

>>> for job, result in run_jobs(collect_run, jobs, Backend("ray", workers=2)):
...     store(result)          # each result as soon as it is finished (append it atomically, resume later)

``fn`` must be a module-level function (it is pickled to the workers) and deterministic given its job:
then every backend gives the same results, only in a different order. Each job runs with ``threads``
intra-op threads in every backend (default: one per worker, or torch's setting when serial), so a
parallel run computes exactly what a serial run with the same ``threads`` does.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from weightlab.errors import WeightlabError

BACKENDS = ("auto", "ray", "processes", "serial")


@dataclass(frozen=True)
class Backend:
    """Where jobs run. ``kind``: ``ray`` (``address``: a running cluster, else a local runtime with
    ``workers`` CPUs), ``processes`` (``workers`` spawned processes), ``serial`` or ``auto`` (Ray when it
    is installed, else processes). ``gpus_per_job``: Ray's fractional ``num_gpus`` per job (0.5: two jobs
    share a GPU). ``threads``: torch intra-op threads per job (None: 1 in workers, unchanged when serial)."""

    kind: str = "serial"
    workers: int = 2
    address: str | None = None
    gpus_per_job: float = 0.0
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise WeightlabError(f"unknown backend '{self.kind}' (use one of {', '.join(BACKENDS)})")
        if self.workers < 1:
            raise WeightlabError(f"workers must be >= 1, got {self.workers}")
        if self.gpus_per_job < 0:
            raise WeightlabError(f"GPUs per job must be >= 0, got {self.gpus_per_job}")
        if self.threads is not None and self.threads < 1:
            raise WeightlabError(f"threads per job must be >= 1, got {self.threads}")

    def resolved(self) -> Backend:
        """``auto`` made concrete."""
        if self.kind != "auto":
            return self
        kind = "ray" if importlib.util.find_spec("ray") is not None else "processes"
        return Backend(kind, self.workers, self.address, self.gpus_per_job, self.threads)

    def to_dict(self) -> dict:
        return asdict(self)


def _call(fn: Callable, job, threads: int | None):
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return fn(*job) if isinstance(job, tuple) else fn(job)


def run_jobs(fn: Callable, jobs: list, backend: Backend | None = None) -> Iterator[tuple[object, object]]:
    """Run ``fn(*job)`` (or ``fn(job)`` for a non-tuple job) for every job; yields ``(job, result)`` as
    each finishes. An error in a job stops the run with that error (finished results were yielded). A
    caller that stops iterating early (closing the generator) drops the jobs not yet started."""
    backend = (backend or Backend()).resolved()
    if not jobs:
        return
    if backend.kind == "serial":
        for job in jobs:
            yield job, _call(fn, job, backend.threads)
        return
    threads = backend.threads or 1
    if backend.kind == "processes":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: a fresh interpreter per worker (safe with CUDA and with torch's thread pools)
        pool = ProcessPoolExecutor(backend.workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = {pool.submit(_call, fn, job, threads): job for job in jobs}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        finally:  # also when the caller stops early: jobs not started are dropped, those running finish
            pool.shutdown(wait=True, cancel_futures=True)
        return
    try:
        import ray
    except ImportError:
        raise WeightlabError("backend 'ray' needs Ray (pip install ray); or use the 'processes' backend") from None
    started = not ray.is_initialized()
    if started:
        ray.init(
            address=backend.address,
            num_cpus=None if backend.address else backend.workers * threads,
            include_dashboard=False,
            log_to_driver=False,
        )
    module = fn.__module__
    if module != "__main__" and module.split(".")[0] != "weightlab":
        # a job defined in a user's module (a script, a test): sent by value, Ray's workers may not import it
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(importlib.import_module(module))
    try:
        remote = ray.remote(num_cpus=threads, num_gpus=backend.gpus_per_job)(_call)
        refs = {remote.remote(fn, job, threads): job for job in jobs}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayTaskError as e:  # the job's own error, without Ray's wrapping
                cause = e.as_instanceof_cause()
                if isinstance(cause, WeightlabError):
                    raise WeightlabError(str(e.cause) if e.cause is not None else str(cause)) from None
                last = [line for line in str(e).splitlines() if line.strip()][-1]
                raise WeightlabError(f"a run failed on a Ray worker: {last.strip()}") from None
            yield refs[ready[0]], result
    finally:
        if started:
            ray.shutdown()


__all__ = ["BACKENDS", "Backend", "run_jobs"]
