"""The task-incremental benchmark: every method on the same tasks, splits, seeds and budget.

A suite names a backbone, a task sequence, methods, seeds, split sizes and an epoch budget. Each
(method, seed) run learns the tasks in order and, after each, tests every task learnt so far, giving
the accuracy matrix R; from it: per-task accuracy, average accuracy, backward transfer and the
zero-forgetting check. Runs are appended to ``<out>/results.json`` as they finish (atomically), so an
interrupted suite resumes where it stopped. Budget suites (Fig. 3) vary RECAST's n/K/G/targets and
LoRA's rank/placement on one task and plot accuracy against trainable numbers per task.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from weightlab.bench.suites import SUITES, Point, Suite, get_suite
from weightlab.data.tasks import build_sequence
from weightlab.errors import WeightlabError
from weightlab.incremental import metrics
from weightlab.incremental.baselines import is_baseline, parse_baseline, run_baseline
from weightlab.incremental.learner import AdaptConfig
from weightlab.incremental.methods import parse_method
from weightlab.incremental.model import TaskModel
from weightlab.incremental.sequence import learn_sequence
from weightlab.io import read_json, write_json, write_text
from weightlab.models import get_family
from weightlab.parallel import Backend, run_jobs
from weightlab.recast.pipeline import recast_base


def build_bases(
    model_name: str,
    weights: str | None,
    recast_overrides: dict,
    *,
    need_recast: bool,
    seed: int = 0,
    pretrained: bool = True,
    model_kwargs: dict | None = None,
    device: str | None = None,
):
    """(plain pretrained model, RECAST base reconstructed in closed form (on ``device``) or None); both
    on the CPU, where a task model copies them from. The model is created under ``seed``."""
    import torch

    from weightlab.models import create_model

    # seeded here: a model that is not pretrained (or keeps a fresh head) is the same in every process and
    # on every resume, whatever ran before
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        plain = create_model(
            model_name, pretrained=pretrained and weights is None, weights=weights, **(model_kwargs or {})
        )
    return plain, (recast_base(plain, recast_overrides, seed=seed, device=device) if need_recast else None)


def run_sequence(
    base, method: str, tasks, cfg: AdaptConfig, *, seed: int, bn: str = "task", progress: bool = True
) -> tuple[dict, TaskModel]:
    """Learn ``tasks`` in order with one method; returns the run record and the model."""
    spec = parse_method(method)
    start = time.perf_counter()
    tm = TaskModel.from_base(base, spec, bn=bn, seed=seed)
    record = learn_sequence(tm, tasks, cfg, seed=seed, progress=progress).record(spec.name, seed)
    record["wall_s"] = time.perf_counter() - start
    return record, tm


_CACHE: dict = {}  # per process: the tasks and bases of the suite being run (a worker runs many jobs)


def _tasks(suite: Suite, data_root) -> list:
    """The suite's tasks (``{data}`` in its sequence is the data root), cached per process."""
    sequence = suite.sequence
    if "{data}" in sequence:
        from weightlab import paths

        root = data_root or paths.data_root()
        if root is None:
            raise WeightlabError(f"suite '{suite.name}' reads its data sets from a data root: pass --data-root DIR")
        sequence = sequence.replace("{data}", str(root))
    key = ("tasks", sequence, repr(suite.sizes), str(data_root), repr(suite.stream))
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = build_sequence(sequence, data_root, suite.sizes, stream=suite.stream)
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
) -> dict:
    """One (method, seed) run of a suite: its run record (with ``model_family``). The job every backend
    runs (see :mod:`weightlab.parallel`): it depends on its arguments only, so a run gives the same
    record in this process, in a worker process or on a Ray node."""
    tasks = _tasks(suite, data_root)
    cfg = suite.adapt_config(device, precision)
    baseline = is_baseline(method)
    spec = None if baseline else parse_method(method)
    rover = {**suite.recast, **overrides}
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
    record["model_family"] = base.weightlab_cfg.family
    return record


def method_label(method: str) -> str:
    """The name a run of ``method`` is recorded under (per-task method or continual-learning baseline)."""
    return parse_baseline(method).name if is_baseline(method) else parse_method(method).name


# what makes two results files runs of the same suite
_FIXED = ("name", "model", "sequence", "sizes", "epochs", "weights", "recast", "bn", "pretrained", "model_kwargs")


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
    from weightlab.machine import machine

    if suite.needs_weights and not suite.weights:
        raise WeightlabError(
            f"suite '{suite.name}' needs the pretrained weights as a file (--weights FILE: .safetensors or a "
            f"weights-only .pt of {suite.model}); nothing is downloaded"
        )
    out = Path(out)
    path = out / "results.json"
    full = suite
    suite = replace(suite, methods=methods or suite.methods, seeds=tuple(seeds or suite.seeds))
    payload = read_json(path) if path.is_file() else dict(suite=full.to_dict(), runs=[])
    changed = [k for k in _FIXED if payload["suite"].get(k) != suite.to_dict()[k]]
    if changed:
        raise WeightlabError(
            f"{path} holds runs of a different suite configuration ({', '.join(changed)} "
            "differ): resume only the same suite, or use another output folder"
        )
    payload.update(machine=machine(), suite=full.to_dict())
    if command:
        payload["command"] = command
    done = {_run_key(r) for r in payload["runs"]}
    tasks = _tasks(suite, data_root)
    payload["tasks"] = [t.summary() for t in tasks]
    cfg = suite.adapt_config(device, precision)
    payload["adapt_config"] = cfg.to_dict()
    jobs = [(p.label, p.method, p.recast) for p in suite.points] or [(None, m, {}) for m in suite.methods]
    order = {((j[0] or method_label(j[1])), s): n for n, (j, s) in enumerate((j, s) for j in jobs for s in suite.seeds)}
    todo = [(j, s) for j in jobs for s in suite.seeds if ((j[0] or method_label(j[1])), s) not in done]
    backend = (backend or Backend()).resolved()
    payload.setdefault("backends", []).append(dict(backend.to_dict(), device=cfg.device, precision=cfg.precision))
    bar = tqdm(total=len(todo), desc=suite.name, disable=not progress)
    work = [
        (suite, label, method, overrides, seed, data_root, device, precision, progress and backend.kind == "serial")
        for (label, method, overrides), seed in todo
    ]
    for _, record in run_jobs(suite_run, work, backend):
        if payload.get("model_family") is None:
            payload["model_family"] = record.pop("model_family")
        record.pop("model_family", None)
        payload["runs"].append(record)
        # the runs in the suite's order, whatever order the workers finish in (runs from elsewhere last)
        payload["runs"].sort(key=lambda r: order.get(_run_key(r), len(order)))
        write_json(path, payload)
        bar.update()
    bar.close()
    return write_report(payload, out)


def write_report(payload: dict, out: str | Path) -> dict:
    """Summarise the runs of ``payload`` and (re)write results.json, results.md, paper_table.md (the
    layout of the paper's Table 1 or 2) and the plots."""
    from weightlab.bench.incremental_plots import plot_suite
    from weightlab.bench.tables import paper_table

    out = Path(out)
    payload["summary"] = summarize(payload["runs"])
    write_json(out / "results.json", payload)
    write_text(out / "results.md", to_markdown(payload))
    if not payload["suite"].get("points"):  # budget suites have their own figure instead
        family = get_family(payload.get("model_family") or "generic")
        write_text(out / "paper_table.md", paper_table(payload, family.paper_table))
    plot_suite(payload, out)
    return payload


def merge_results(out: str | Path, other: str | Path) -> int:
    """Add to ``out``'s results the runs of ``other`` (the same suite run elsewhere, e.g. by a second
    worker) that ``out`` does not have; rewrites the report. Returns the number of runs added."""
    path, opath = Path(out) / "results.json", Path(other) / "results.json"
    for p in (path, opath):
        if not p.is_file():
            raise WeightlabError(f"{p}: no results to merge")
    payload, extra = read_json(path), read_json(opath)
    changed = [k for k in _FIXED if payload["suite"].get(k) != extra["suite"].get(k)]
    if changed:
        raise WeightlabError(f"{opath} holds a different suite configuration ({', '.join(changed)} differ)")
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
    return write_report(read_json(path), out)


def summarize(runs: list[dict]) -> list[dict]:
    """Mean +- std over seeds per method (or budget label)."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r.get("label") or r["method"], []).append(r)
    rows = []
    for name, rs in groups.items():
        avg = metrics.mean_std([r["average_accuracy"] for r in rs])
        bwt = metrics.mean_std([r["backward_transfer"] for r in rs])
        forgetting = metrics.mean_std([metrics.max_forgetting(r["accuracy_matrix"]) for r in rs])
        per_task = [metrics.mean_std([r["final_accuracy"][j] for r in rs]) for j in range(len(rs[0]["tasks"]))]
        rows.append(
            dict(
                name=name,
                method=rs[0]["method"],
                seeds=[r["seed"] for r in rs],
                average_accuracy=avg[0],
                average_accuracy_std=avg[1],
                backward_transfer=bwt[0],
                backward_transfer_std=bwt[1],
                per_task=[p[0] for p in per_task],
                per_task_std=[p[1] for p in per_task],
                zero_forgetting=all(r["zero_forgetting"] for r in rs),
                trainable_per_task=rs[0]["trainable_per_task"],
                head_per_task=rs[0]["head_per_task"][0],
                bytes_per_task=sum(rs[0]["bytes_per_task"]) / len(rs[0]["bytes_per_task"]),
                backbone_bytes=rs[0]["backbone_bytes"],
                forgetting=forgetting[0],
                # everything kept after the sequence: the shared model, every task's own tensors, a replay
                # buffer, state shared by all tasks (InfLoRA's subspace bases, L2P's prompt pool)
                storage_bytes=rs[0]["backbone_bytes"]
                + sum(rs[0]["bytes_per_task"])
                + rs[0].get("buffer_bytes", 0)
                + rs[0].get("shared_state_bytes", 0),
                wall_s=metrics.mean_std([r["wall_s"] for r in rs])[0],
            )
        )
    return rows


def to_markdown(payload: dict) -> str:
    suite = payload["suite"]
    tasks = [t["name"] for t in payload.get("tasks", [])]
    lines = [
        f"# {suite['name']}: {suite.get('description', '')}",
        "",
        f"Model `{suite['model']}`, sequence `{suite['sequence']}`, "
        f"{suite['epochs']} epochs per task, split sizes {suite['sizes']}, BatchNorm statistics: {suite['bn']}. "
        "Test accuracy (%) after the last task, mean ± std over seeds; epoch selected on validation.",
        "",
        "| method | seeds | trainable / task (+ head) | KiB / task | "
        + " | ".join(tasks)
        + " | avg acc | BWT | max forgetting | zero forgetting | storage KiB | wall s / run |",
        "|---|---|---|---|" + "---|" * len(tasks) + "---|---|---|---|---|---|",
    ]
    for r in payload["summary"]:
        cells = " | ".join(f"{m:.1f} ± {s:.1f}" for m, s in zip(r["per_task"], r["per_task_std"]))
        lines.append(
            f"| {r['name']} | {len(r['seeds'])} | {r['trainable_per_task']:,} (+{r['head_per_task']:,}) | "
            f"{r['bytes_per_task'] / 1024:.1f} | {cells} | **{r['average_accuracy']:.2f} ± "
            f"{r['average_accuracy_std']:.2f}** | {r['backward_transfer']:.2f} | {r['forgetting']:.2f} | "
            f"{'yes' if r['zero_forgetting'] else 'NO'} | {r['storage_bytes'] / 1024:.0f} | {r['wall_s']:.0f} |"
        )
    if payload["summary"]:
        lines += [
            "",
            f"Shared backbone: {payload['summary'][0]['backbone_bytes'] / 1024:.0f} KiB. Storage: what is "
            "kept after the sequence (the shared model, every task's own tensors, a replay buffer as float32 "
            "model inputs, state shared by all tasks such as InfLoRA's subspace bases or L2P's prompt pool). "
            "Continual-learning baselines (EWC, LwF, GDumb, ER-ACE, DER++, HAT, InfLoRA, L2P) share one model "
            "across the sequence and keep their last epoch.",
        ]
    return "\n".join(lines) + "\n"


__all__ = [
    "SUITES",
    "Suite",
    "Point",
    "get_suite",
    "run_suite",
    "write_report",
    "report_only",
    "merge_results",
    "run_sequence",
    "build_bases",
    "summarize",
    "to_markdown",
]
