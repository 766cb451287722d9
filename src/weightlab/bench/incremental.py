"""The task-incremental benchmark: every method on the same tasks, splits, seeds and budget.

A suite names a backbone, a task sequence, methods, seeds, split sizes and an epoch budget. Each
(method, seed) run learns the tasks in order and, after each, tests every task learnt so far, giving
the accuracy matrix R; from it: per-task accuracy, average accuracy, backward transfer and the
zero-forgetting check. Runs are appended to ``<out>/results.json`` as they finish (atomically), so an
interrupted suite resumes where it stopped. Budget suites (Fig. 3) vary RECAST's n/K/G/targets and
LoRA's rank/placement on one task and plot accuracy against trainable numbers per task.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from weightlab.bench.reports.incremental import write_report
from weightlab.bench.runner import Results, fan_out, in_order
from weightlab.bench.suites import SUITES, Point, Suite, get_suite
from weightlab.data.tasks import build_sequence
from weightlab.errors import WeightlabError
from weightlab.incremental.baselines import is_baseline, run_baseline
from weightlab.incremental.methods import parse_method
from weightlab.incremental.selection import method_label, select_rates, selection_record
from weightlab.incremental.sequence import run_sequence
from weightlab.io import file_sha256, read_json, refuse_changed
from weightlab.parallel import Backend
from weightlab.recast.pipeline import build_bases

_CACHE: dict = {}  # per process: the tasks and bases of the suite being run (a worker runs many jobs)


def _tasks(suite: Suite, data_root, data_seed: int = 0) -> list:
    """The suite's tasks (``{data}`` in its sequence is the data root) drawn with ``data_seed``, cached per
    process."""
    sequence = suite.sequence
    if "{data}" in sequence:
        from weightlab import paths

        root = data_root or paths.data_root()
        if root is None:
            raise WeightlabError(f"suite '{suite.name}' reads its data sets from a data root: pass --data-root DIR")
        sequence = sequence.replace("{data}", str(root))
    key = ("tasks", sequence, repr(suite.sizes), str(data_root), repr(suite.stream), data_seed, suite.val_from)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = build_sequence(
            sequence, data_root, suite.sizes, data_seed=data_seed, stream=suite.stream, val_from=suite.val_from
        )
    return _CACHE[key]


def suite_run(
    suite: Suite,
    label: str | None,
    method: str,
    overrides: dict,
    seed: int,
    data_root=None,
    device: str | None = None,
    precision: str = "fp32",
    progress: bool = False,
    lr: float | None = None,
    coef_lr: float | None = None,
) -> dict:
    """One (method, seed) run of a suite (at ``lr`` / ``coef_lr`` when given): its run record (with
    ``model_family``). The job every backend runs (see :mod:`weightlab.parallel`): it depends on its
    arguments only, so a run gives the same record in this process, in a worker process or on a Ray node,
    in any order: the global generators are seeded from (suite, row, seed) alone (the base from the suite)."""
    import torch

    from weightlab.engine import derived_seed, seed_everything

    with torch.random.fork_rng(devices=[]):
        seed_everything(derived_seed(suite.name, label or method, seed))
        return _suite_run(suite, label, method, overrides, seed, data_root, device, precision, progress, lr, coef_lr)


def _suite_run(suite, label, method, overrides, seed, data_root, device, precision, progress, lr, coef_lr) -> dict:
    tasks = _tasks(suite, data_root, seed if suite.data_seeds else 0)
    cfg = suite.adapt_config(device, precision, lr=lr, coef_lr=coef_lr)
    baseline = is_baseline(method)
    spec = None if baseline else parse_method(method)
    rover = suite.row_recast(overrides)
    recast = spec is not None and spec.recast
    key = (
        "base",
        suite.model,
        suite.weights,
        suite.pretrained,
        repr(sorted(suite.model_kwargs.items())),
        repr(sorted(rover.items())) if recast else "plain",
        str(device),
    )
    if key not in _CACHE:
        plain, rbase = build_bases(
            suite.model,
            suite.weights,
            rover,
            need_recast=recast,
            pretrained=suite.pretrained,
            model_kwargs=suite.model_kwargs,
            device=device,
        )
        _CACHE[key] = rbase if recast else plain
    base = _CACHE[key]
    if baseline:
        record = run_baseline(base, method, tasks, cfg, seed=seed, progress=progress)
    else:
        record, _ = run_sequence(base, method, tasks, cfg, seed=seed, bn=suite.bn, progress=progress)
    if label:
        record["label"] = label
        record["recast_overrides"] = rover if recast else None
    record["lr"], record["coef_lr"] = cfg.lr, cfg.coef_lr
    if suite.data_seeds:
        record["data_seed"] = seed
    record["model_family"] = base.weightlab_cfg.family
    return record


# what makes two results files runs of the same suite (the weights file is compared by its bytes,
# inputs.weights_sha256, not by its path: the same file moved elsewhere resumes)
_FIXED = (
    "name",
    "model",
    "sequence",
    "sizes",
    "epochs",
    "recast",
    "bn",
    "pretrained",
    "model_kwargs",
    "lr_grid",
    "coef_lr_grid",
    "lr_step",
    "data_seeds",
    "val_from",
    "grid_extensions",
    "head_search",
)
# results written before these existed
_FIXED_DEFAULTS = dict(
    lr_grid=[], coef_lr_grid=[], lr_step=33, data_seeds=False, val_from="train", grid_extensions=2, head_search=False
)


def _changed(a: dict, b: dict) -> list[str]:
    """The fixed suite settings in which two suite records differ."""
    norm = lambda d, k: list(v) if isinstance(v := d.get(k, _FIXED_DEFAULTS.get(k)), tuple) else v  # noqa: E731
    return [k for k in _FIXED if norm(a, k) != norm(b, k)]


def _row_definition(suite: Suite, method: str, overrides: dict) -> tuple:
    """What a row's records say it ran: the method (as a record names it) and its RECAST settings."""
    if is_baseline(method):
        return method, None
    spec = parse_method(method)
    return spec.name, (suite.row_recast(overrides) if spec.recast else None)


def _refuse_redefined(path: Path, payload: dict, suite: Suite, jobs: list[tuple]) -> None:
    """Refuse to resume when a row (a label) kept in ``path`` ran another method or other RECAST
    settings than the suite now defines for it: its old and new runs would be averaged as one row. A
    row with no runs yet may change."""
    rows = {label: _row_definition(suite, method, ov) for label, method, ov in jobs if label}
    for r in payload.get("runs", []) + payload.get("selection", []):
        name = r.get("label")  # an unlabelled row is named by its method: it cannot change under its name
        if name not in rows:
            continue
        kept = (r["method"], r.get("recast_overrides"))
        want = rows[name]
        if json.dumps(kept, sort_keys=True) != json.dumps(want, sort_keys=True):
            raise WeightlabError(
                f"{path}: row '{name}' was run as {kept[0]} with RECAST settings {kept[1]}, the suite now "
                f"defines it as {want[0]} with {want[1]}: resume only the same rows, or use another --out"
            )


def _run_key(r: dict) -> tuple:
    return (r.get("label") or r["method"], r["seed"])


def run_suite(
    suite: Suite,
    out: str | Path,
    *,
    data_root=None,
    progress: bool = True,
    methods: list[str] | None = None,
    seeds: tuple[int, ...] | None = None,
    command: str | None = None,
    device: str | None = None,
    precision: str = "fp32",
    backend: Backend | None = None,
) -> dict:
    """Run (or resume) a suite; writes results.json, results.md and plots into ``out``, with
    ``command`` (how it was started) recorded from the first write on. Runs train on ``device``
    (default CPU) in ``precision``, spread over ``backend`` (default: serial, in this process); each
    finished run is appended at once, so a stopped suite resumes with the runs it is missing."""
    if suite.needs_weights and not suite.weights:
        raise WeightlabError(
            f"suite '{suite.name}' needs the pretrained weights as a file (--weights FILE: .safetensors or a "
            f"weights-only .pt of {suite.model}); nothing is downloaded"
        )
    full = suite
    suite = replace(suite, methods=methods or suite.methods, seeds=tuple(seeds or suite.seeds))

    def differs(kept: dict) -> str:
        changed = _changed(kept["suite"], suite.to_dict())
        return (
            f"holds runs of a different suite configuration ({', '.join(changed)} differ): resume only the same "
            "suite, or use another output folder"
            if changed
            else ""
        )

    results = Results(out, dict(suite=full.to_dict(), runs=[]), differs, machine_each_resume=True)
    payload, path = results.payload, results.path
    payload["suite"] = full.to_dict()
    if command:
        payload["command"] = command
    tasks = _tasks(suite, data_root, full.seeds[0] if suite.data_seeds else 0)
    # the data and weights the runs read (per-seed splits: the first seed's; the others derive from the
    # seeds): a resume or merge with other ones is refused
    results.check_inputs(
        dict(
            tasks_sha256=[t.fingerprint() for t in tasks],
            weights_sha256=file_sha256(suite.weights) if suite.weights and Path(suite.weights).is_file() else None,
        ),
        "resume with the same data and weights, or use another --out",
    )
    payload["tasks"] = [t.summary() for t in tasks]
    cfg = suite.adapt_config(device, precision)
    payload["adapt_config"] = cfg.to_dict()
    jobs = [(p.label, p.method, p.recast) for p in suite.points] or [(None, m, {}) for m in suite.methods]
    _refuse_redefined(path, payload, suite, jobs)
    order = in_order(((j[0] or method_label(j[1])), s) for j in jobs for s in suite.seeds)
    by_order = lambda r: order(_run_key(r))  # noqa: E731  (runs from elsewhere last)
    backend = (backend or Backend()).resolved()
    payload.setdefault("backends", []).append(dict(backend.to_dict(), device=cfg.device, precision=cfg.precision))
    common = (data_root, device, precision, progress and backend.kind == "serial")
    ran = []  # the runs this call made: none, and a resumed suite's results.json is left as it was

    job_of = {(j[0] or method_label(j[1])): j for j in jobs}

    def config(job: tuple, seed: int, lr: float | None, clr: float | None) -> tuple:
        """All a run depends on besides the suite (a run is a function of it: see :func:`suite_run`)."""
        cfg = suite.adapt_config(device, precision, lr=lr, coef_lr=clr)
        return job[1], json.dumps(suite.row_recast(job[2]), sort_keys=True, default=str), seed, cfg.lr, cfg.coef_lr

    def as_row(record: dict, job: tuple) -> dict:
        """Another row's run of the same configuration, filed as ``job``'s (marked ``same_run_as``)."""
        src = record.get("same_run_as") or record.get("label") or record["method"]
        copy = dict(record, same_run_as=src)
        if job[0]:
            copy["label"] = job[0]
        return copy

    def run(items: list[tuple], desc: str, sink) -> None:
        """Run (job, seed, lr, coef_lr) items over the backend; ``sink`` files each record (then saved). Two
        rows whose rates came out the same (a row sharing another's head rate, which its head search also
        chose) are one configuration: it runs once and is filed for both (``same_run_as``)."""
        kept = {}
        for r in payload["runs"] + payload.get("selection", []):
            job = job_of.get(r.get("label") or r["method"])
            if job is not None:
                kept.setdefault(config(job, r["seed"], r["lr"], r.get("coef_lr")), r)
        waiting: dict[tuple, list[tuple]] = {}
        work = []
        for job, seed, lr, clr in items:
            key = config(job, seed, lr, clr)
            if key in kept:
                ran.append(as_row(kept[key], job))
                sink(ran[-1])
                results.save()
            elif key in waiting:
                waiting[key].append(job)
            else:
                waiting[key] = []
                work.append((suite, *job, seed, *common, lr, clr))
        for args, record in fan_out(suite_run, work, backend, desc, progress):
            ran.append(record)
            if payload.get("model_family") is None:
                payload["model_family"] = record.pop("model_family")
            record.pop("model_family", None)
            sink(record)
            for job in waiting[config(args[1:4], args[4], args[-2], args[-1])]:
                sink(as_row(record, job))
            results.save()

    rates: dict[str, tuple[float | None, float | None]] = {}
    if suite.lr_grid:
        # always on the suite's own first seed, also when --seeds runs a subset
        rates = select_rates(suite, jobs, payload, run, seed=full.seeds[0])
    done = {_run_key(r) for r in payload["runs"]}
    for (label, method, _), seed in [(j, s) for j in jobs for s in suite.seeds]:
        name = label or method_label(method)
        picked = selection_record(payload, name, *rates.get(name, (None, None)), full.seeds[0])
        if (name, seed) not in done and picked is not None and picked["seed"] == seed:
            payload["runs"].append(dict(picked))  # the first seed's run at the chosen rates is its result
            done.add((name, seed))
    todo = [
        (j, s, *rates.get(j[0] or method_label(j[1]), (None, None)))
        for j in jobs
        for s in suite.seeds
        if ((j[0] or method_label(j[1])), s) not in done
    ]

    payload["runs"].sort(key=by_order)
    run(todo, suite.name, lambda record: results.file(record, by_order))
    kept = read_json(path) if results.resumed and not ran else None
    if kept is not None and kept.get("runs") == payload["runs"]:
        # a complete suite rerun: nothing new, so nothing rewritten (not even the machine or the command);
        # the reports are remade from the kept results, byte for byte what they were
        payload = kept
    return write_report(payload, results.out)


def merge_results(out: str | Path, other: str | Path) -> int:
    """Add to ``out``'s results the runs of ``other`` (the same suite run elsewhere, e.g. by a second
    worker) that ``out`` does not have; rewrites the report. Returns the number of runs added."""
    path, opath = Path(out) / "results.json", Path(other) / "results.json"
    for p in (path, opath):
        if not p.is_file():
            raise WeightlabError(f"{p}: no results to merge")
    payload, extra = read_json(path), read_json(opath)
    changed = _changed(payload["suite"], extra["suite"])
    if changed:
        raise WeightlabError(f"{opath} holds a different suite configuration ({', '.join(changed)} differ)")
    if "inputs" in payload and "inputs" in extra:
        refuse_changed(opath, payload["inputs"], extra["inputs"], f"it read other data or weights than {path}")
    done = {_run_key(r) for r in payload["runs"]}
    new = [r for r in extra["runs"] if _run_key(r) not in done]
    payload["runs"] += new
    payload.setdefault("model_family", extra.get("model_family"))
    payload.setdefault("merged", []).append(
        dict(
            source=str(opath),
            command=extra.get("command"),
            machine=extra.get("machine"),
            runs=[list(_run_key(r)) for r in new],
        )
    )
    write_report(payload, out)
    return len(new)


def report_only(out: str | Path) -> dict:
    """Rebuild the Markdown table and plots from an existing (possibly partial) results.json."""
    path = Path(out) / "results.json"
    if not path.is_file():
        raise WeightlabError(f"{path}: no results to report (run the suite first)")
    payload = read_json(path)
    if not (
        isinstance(payload, dict)
        and isinstance(payload.get("suite"), dict)
        and isinstance(payload.get("runs"), list)
        and all(isinstance(r, dict) for r in payload["runs"])
    ):
        raise WeightlabError(f"{path}: not the results of a 'weightlab recast bench' suite (no suite and runs)")
    return write_report(payload, out)


__all__ = [
    "SUITES",
    "Suite",
    "Point",
    "get_suite",
    "run_suite",
    "suite_run",
    "write_report",
    "report_only",
    "merge_results",
]
