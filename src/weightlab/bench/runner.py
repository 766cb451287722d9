"""What running a suite of either kind shares: its ``results.json`` (opened new or resumed with its
configuration and inputs checked, the machine recorded, every finished run filed in the suite's order and
saved at once, atomically) and the fan-out of its runs over a :class:`~weightlab.parallel.Backend` with a
progress bar. The RECAST runner (:mod:`weightlab.bench.incremental`) and the KNOW one
(:mod:`weightlab.bench.know`) decide *what* runs; this decides how it is kept."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from weightlab.errors import WeightlabError
from weightlab.io import check_resume, check_writable, read_json, write_json
from weightlab.machine import machine
from weightlab.parallel import Backend, run_jobs


class Results:
    """A suite's ``<out>/results.json``: ``payload`` is its content; :meth:`save` writes it atomically.

    ``fresh`` is the payload of a new suite; ``differs(kept)`` says how a kept payload's configuration
    differs from the suite being run (empty: the same suite), and a difference refuses the resume in one
    line. The machine is recorded on creation, or on every resume with ``machine_each_resume``."""

    def __init__(
        self,
        out: str | Path,
        fresh: dict,
        differs: Callable[[dict], str],
        *,
        machine_each_resume: bool = False,
    ) -> None:
        self.out = check_writable(out)
        self.path = self.out / "results.json"
        self.resumed = self.path.is_file()
        if self.resumed:
            self.payload = read_json(self.path)
            why = differs(self.payload)
            if why:
                raise WeightlabError(f"{self.path}: {why}")
        else:
            self.payload = dict(fresh)
        if machine_each_resume or not self.resumed:
            self.payload["machine"] = machine()

    def check_inputs(self, inputs: dict, remedy: str) -> None:
        """Refuse to resume with other data or weights than the kept runs read (the hashes in ``inputs``);
        then record them."""
        check_resume(self.path, self.payload, {"inputs": inputs}, remedy)
        self.payload["inputs"] = inputs

    def file(self, record: dict, order: Callable[[dict], Any], key: str = "runs") -> None:
        """Append ``record`` to ``payload[key]`` and keep that list in the suite's order (``order(record)``,
        whatever order workers finish in); :meth:`save` writes it."""
        self.payload[key].append(record)
        self.payload[key].sort(key=order)

    def save(self) -> None:
        write_json(self.path, self.payload)


def fan_out(
    job: Callable, work: list[tuple], backend: Backend, desc: str, progress: bool = True
) -> Iterator[tuple[Any, Any]]:
    """``job(*args)`` for every ``args`` of ``work`` over ``backend``, as ``(args, result)`` in the order they
    finish, with one progress bar."""
    bar = tqdm(total=len(work), desc=desc, disable=not progress or not work)
    try:
        for item in run_jobs(job, work, backend):
            yield item
            bar.update()
    finally:
        bar.close()


def in_order(keys: Iterable) -> Callable[[Any], int]:
    """A sort key putting items whose key is in ``keys`` in that order, any other after them."""
    index = {k: n for n, k in enumerate(keys)}
    return lambda k: index.get(k, len(index))


__all__ = ["Results", "fan_out", "in_order"]
