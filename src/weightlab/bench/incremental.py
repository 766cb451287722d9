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
from weightlab.io import check_writable, file_sha256, read_json, refuse_changed, write_json, write_text
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
    record["base_hash"] = tm.base_hash  # the base it started from: every seed of a row must share it
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
    tasks = _tasks(suite, data_root)
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
    record["model_family"] = base.weightlab_cfg.family
    return record


def method_label(method: str) -> str:
    """The name a run of ``method`` is recorded under (per-task method or continual-learning baseline)."""
    return parse_baseline(method).name if is_baseline(method) else parse_method(method).name


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
)
_FIXED_DEFAULTS = dict(lr_grid=[], coef_lr_grid=[], lr_step=33)  # results written before these existed


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
    from weightlab.machine import machine

    if suite.needs_weights and not suite.weights:
        raise WeightlabError(
            f"suite '{suite.name}' needs the pretrained weights as a file (--weights FILE: .safetensors or a "
            f"weights-only .pt of {suite.model}); nothing is downloaded"
        )
    out = check_writable(out)
    path = out / "results.json"
    full = suite
    suite = replace(suite, methods=methods or suite.methods, seeds=tuple(seeds or suite.seeds))
    payload = read_json(path) if path.is_file() else dict(suite=full.to_dict(), runs=[])
    changed = _changed(payload["suite"], suite.to_dict())
    if changed:
        raise WeightlabError(
            f"{path} holds runs of a different suite configuration ({', '.join(changed)} "
            "differ): resume only the same suite, or use another output folder"
        )
    payload.update(machine=machine(), suite=full.to_dict())
    if command:
        payload["command"] = command
    tasks = _tasks(suite, data_root)
    # the data and weights the runs read: a resume or merge with other ones is refused
    inputs = dict(
        tasks_sha256=[t.fingerprint() for t in tasks],
        weights_sha256=file_sha256(suite.weights) if suite.weights and Path(suite.weights).is_file() else None,
    )
    if "inputs" in payload:
        refuse_changed(path, payload["inputs"], inputs, "resume with the same data and weights, or use another --out")
    payload["inputs"] = inputs
    payload["tasks"] = [t.summary() for t in tasks]
    cfg = suite.adapt_config(device, precision)
    payload["adapt_config"] = cfg.to_dict()
    jobs = [(p.label, p.method, p.recast) for p in suite.points] or [(None, m, {}) for m in suite.methods]
    _refuse_redefined(path, payload, suite, jobs)
    order = {((j[0] or method_label(j[1])), s): n for n, (j, s) in enumerate((j, s) for j in jobs for s in suite.seeds)}
    backend = (backend or Backend()).resolved()
    payload.setdefault("backends", []).append(dict(backend.to_dict(), device=cfg.device, precision=cfg.precision))
    common = (data_root, device, precision, progress and backend.kind == "serial")

    def run(items: list[tuple], desc: str, sink) -> None:
        """Run (job, seed, lr, coef_lr) items over the backend; ``sink`` files each record (then saved)."""
        bar = tqdm(total=len(items), desc=desc, disable=not progress or not items)
        work = [(suite, label, method, ov, seed, *common, lr, clr) for (label, method, ov), seed, lr, clr in items]
        for _, record in run_jobs(suite_run, work, backend):
            if payload.get("model_family") is None:
                payload["model_family"] = record.pop("model_family")
            record.pop("model_family", None)
            sink(record)
            write_json(path, payload)
            bar.update()
        bar.close()

    rates: dict[str, tuple[float | None, float | None]] = {}
    if suite.lr_grid:
        # always on the suite's own first seed, also when --seeds runs a subset
        rates = _select_rates(suite, jobs, payload, run, seed=full.seeds[0])
    done = {_run_key(r) for r in payload["runs"]}
    for (label, method, _), seed in [(j, s) for j in jobs for s in suite.seeds]:
        name = label or method_label(method)
        picked = _selection_record(payload, name, *rates.get(name, (None, None)), full.seeds[0])
        if (name, seed) not in done and picked is not None and picked["seed"] == seed:
            payload["runs"].append(dict(picked))  # the first seed's run at the chosen rates is its result
            done.add((name, seed))
    todo = [
        (j, s, *rates.get(j[0] or method_label(j[1]), (None, None)))
        for j in jobs
        for s in suite.seeds
        if ((j[0] or method_label(j[1])), s) not in done
    ]

    def add_run(record: dict) -> None:
        payload["runs"].append(record)
        # the runs in the suite's order, whatever order the workers finish in (runs from elsewhere last)
        payload["runs"].sort(key=lambda r: order.get(_run_key(r), len(order)))

    payload["runs"].sort(key=lambda r: order.get(_run_key(r), len(order)))
    run(todo, suite.name, add_run)
    return write_report(payload, out)


def selection_score(record: dict) -> float:
    """What a learning rate is chosen by: the mean over tasks of each task's best *validation* accuracy
    (the epoch the learner keeps). The test split never enters."""
    vals = record.get("val_accuracy") or []
    return sum(vals) / len(vals) if vals else float("-inf")


def _tunable(method: str) -> bool:
    """Rows whose rate is chosen on validation: every per-task method (the continual-learning baselines
    keep their own recipes)."""
    return not is_baseline(method)


def _has_coefficients(method: str) -> bool:
    return not is_baseline(method) and parse_method(method).recast


def _selection_record(
    payload: dict, name: str, lr: float | None, coef_lr: float | None, seed: int | None = None
) -> dict | None:
    if lr is None:
        return None
    for r in payload.get("selection", []):
        if (r.get("label") or r["method"]) == name and r["lr"] == lr and r.get("coef_lr") == coef_lr:
            if seed is None or r["seed"] == seed:
                return r
    return None


def choose(records: list[dict]) -> dict:
    """The record with the best :func:`selection_score`; ties go to the first (grid order)."""
    best = None
    for r in records:
        if best is None or selection_score(r) > selection_score(best):
            best = r
    return best


#: how many times the fair protocol extends a row's grid past an edge that scored best (one grid step each)
MAX_GRID_EXTENSIONS = 2


def _extend(rates: list[float], best: float) -> float | None:
    """The next rate past the edge of ``rates`` that ``best`` sits on (the grid's own step), or None when
    ``best`` is inside."""
    rs = sorted(rates)
    if len(rs) < 2 or rs[0] < best < rs[-1]:
        return None
    nxt = rs[-1] * rs[-1] / rs[-2] if best == rs[-1] else rs[0] * rs[0] / rs[1]
    return float(f"{nxt:.3g}")


def _select_rates(
    suite: Suite, jobs: list[tuple], payload: dict, run, seed: int
) -> dict[str, tuple[float, float | None]]:
    """The fair protocol's selection on the first seed: each tunable row's lr from ``suite.lr_grid``, then
    (rows with RECAST coefficients) the coefficients' lr from ``suite.coef_lr_grid`` at that lr. A row whose
    best rate is at an edge of its grid gets the next rate past that edge (the grid's step), up to
    :data:`MAX_GRID_EXTENSIONS` times, so that a chosen rate is inside the grid it was chosen from. Every
    selection run is kept under ``payload["selection"]`` (resumable); the chosen rates and each row's grid
    go to ``payload["chosen"]``. Ties go to the smaller rate. Runs on ``seed``."""
    sel = payload.setdefault("selection", [])
    name = lambda j: j[0] or method_label(j[1])  # noqa: E731
    tunable = [j for j in jobs if _tunable(j[1])]

    def rec(n: str, lr: float, clr: float | None) -> dict | None:
        return _selection_record(payload, n, lr, clr, seed)

    def search(rows, grid_of, key, desc) -> dict[str, float | None]:
        """For each row, run its grid (``key(row, value)`` -> (lr, coef_lr)) and extend it past a best edge."""
        grids = {name(j): list(grid_of(j)) for j in rows}
        extended = dict.fromkeys(grids, 0)
        while True:
            run(
                [(j, seed, *key(j, v)) for j in rows for v in grids[name(j)] if rec(name(j), *key(j, v)) is None],
                desc,
                sel.append,
            )
            best = {}
            grow = False
            for j in rows:
                values = sorted(grids[name(j)], key=lambda v: key(j, v)[1] or key(j, v)[0])
                pick = choose([rec(name(j), *key(j, v)) for v in values])
                best[name(j)] = next(v for v in values if rec(name(j), *key(j, v)) is pick)
                rates = [key(j, v)[1] or key(j, v)[0] for v in values]
                nxt = _extend(rates, key(j, best[name(j)])[1] or key(j, best[name(j)])[0])
                if nxt is not None and extended[name(j)] < MAX_GRID_EXTENSIONS:
                    grids[name(j)].append(nxt)
                    extended[name(j)] += 1
                    grow = True
            if not grow:
                return {n: (best[n], grids[n]) for n in grids}

    lr_pick = search(tunable, lambda j: suite.lr_grid, lambda j, v: (v, None), f"{suite.name}: lr selection")
    chosen = {n: (v, None) for n, (v, _) in lr_pick.items()}
    grids = {n: dict(lr_grid=g) for n, (_, g) in lr_pick.items()}
    coef_rows = [j for j in tunable if suite.coef_lr_grid and _has_coefficients(j[1])]
    if coef_rows:
        # the coefficient candidates: "the same as lr" (None) and the coefficient grid, at the row's chosen lr
        coef_pick = search(
            coef_rows,
            lambda j: [None] + [c for c in suite.coef_lr_grid if c != chosen[name(j)][0]],
            lambda j, c: (chosen[name(j)][0], c),
            f"{suite.name}: coefficient lr selection",
        )
        for n, (c, g) in coef_pick.items():
            chosen[n] = (chosen[n][0], c)
            grids[n]["coef_lr_grid"] = [x for x in g if x is not None]
    payload["chosen"] = {
        n: dict(lr=lr, coef_lr=clr, val_score=selection_score(rec(n, lr, clr)), **grids[n])
        for n, (lr, clr) in chosen.items()
    }
    return chosen


def write_report(payload: dict, out: str | Path) -> dict:
    """Summarise the runs of ``payload`` and (re)write results.json, results.md, paper_table.md (the
    layout of the paper's Table 1 or 2) and the plots."""
    from weightlab.bench.incremental_plots import plot_suite
    from weightlab.bench.tables import paper_table

    out = Path(out)
    payload["summary"] = summarize(payload["runs"])
    payload["contrasts"] = contrasts(payload["runs"], payload["suite"].get("contrasts") or [])
    write_json(out / "results.json", payload)
    write_text(out / "results.md", to_markdown(payload))
    budget = payload["suite"].get("budget")
    if not (bool(payload["suite"].get("points")) if budget is None else budget):  # budget: its own figure
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
                lr=rs[0].get("lr"),
                coef_lr=rs[0].get("coef_lr"),
                # convergence: the share of (task, seed) whose kept validation epoch is not the last one
                best_before_last=_best_before_last(rs),
            )
        )
    return rows


def _best_before_last(runs: list[dict]) -> float | None:
    pairs = [(b, len(c)) for r in runs for b, c in zip(r.get("best_epochs") or [], r.get("val_curves") or []) if c]
    return sum(b < n - 1 for b, n in pairs) / len(pairs) if pairs else None


def contrasts(runs: list[dict], pairs: list) -> list[dict]:
    """Per (row, reference[, the paper's figure]): the per-seed difference of average accuracy (the same
    seed, so the same head initialisations and data order), mean +- std over the seeds both have; 'beyond
    2 std' when its mean exceeds twice its std (None with one seed: there is no spread)."""
    by = {}
    for r in runs:
        by.setdefault(r.get("label") or r["method"], {})[r["seed"]] = r["average_accuracy"]
    out = []
    for pair in pairs:
        row, ref, paper = (*pair, None)[:3]
        a, b = by.get(row, {}), by.get(ref, {})
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        diff = [a[s] - b[s] for s in seeds]
        mean, std = metrics.mean_std(diff)
        out.append(
            dict(
                row=row,
                reference=ref,
                seeds=seeds,
                mean=mean,
                std=std,
                beyond_2std=abs(mean) > 2 * std if len(seeds) > 1 else None,  # one seed: no spread to compare
                paper=paper,
            )
        )
    return out


def _selection_markdown(payload: dict) -> list[str]:
    """The fair protocol's record: every selection run's validation score, the chosen rates, and the
    paired contrasts."""
    suite = payload["suite"]
    lines = [
        "",
        f"## Learning rates, chosen on validation (seed {suite['seeds'][0]})",
        "",
        f"Grid {list(suite['lr_grid'])} for every per-task row (head included, one rate), then for rows with "
        f"RECAST coefficients the coefficients' rate from {list(suite.get('coef_lr_grid') or [])} at the chosen "
        "rate. Score: the mean over tasks of the best validation accuracy; the test split is not read. StepLR "
        f"(x0.1) every {suite.get('lr_step') or max(1, round(suite['epochs'] / 3))} epochs. The chosen rates are "
        "fixed for every seed.",
        "",
        "| row | lr | coef lr | val score | chosen |",
        "|---|---|---|---|---|",
    ]
    chosen = payload.get("chosen", {})
    for r in payload.get("selection", []):
        name = r.get("label") or r["method"]
        c = chosen.get(name, {})
        mark = "**yes**" if c.get("lr") == r["lr"] and c.get("coef_lr") == r.get("coef_lr") else ""
        clr = "= lr" if r.get("coef_lr") is None else f"{r['coef_lr']:g}"
        lines.append(f"| {name} | {r['lr']:g} | {clr} | {selection_score(r):.2f} | {mark} |")
    if payload.get("contrasts"):
        lines += [
            "",
            "## Paired differences (average accuracy, same seed)",
            "",
            "| row - reference | seeds | mean ± std | beyond 2 std | the paper's (its Table 4 averages) |",
            "|---|---|---|---|---|",
        ]
        for c in payload["contrasts"]:
            paper = "-" if c.get("paper") is None else f"{c['paper']:+.1f}"
            lines.append(
                f"| {c['row']} - {c['reference']} | {len(c['seeds'])} | {c['mean']:+.2f} ± {c['std']:.2f} | "
                f"{ {True: 'yes', False: 'no', None: 'n/a (1 seed)'}[c['beyond_2std']] } | {paper} |"
            )
    return lines


def to_markdown(payload: dict) -> str:
    suite = payload["suite"]
    fair = bool(suite.get("lr_grid"))
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
        + " | avg acc | BWT | max forgetting | zero forgetting | storage KiB | wall s / run |"
        + (" lr (coef lr) | best epoch < last |" if fair else ""),
        "|---|---|---|---|" + "---|" * len(tasks) + "---|---|---|---|---|---|" + ("---|---|" if fair else ""),
    ]
    for r in payload["summary"]:
        cells = " | ".join(f"{m:.1f} ± {s:.1f}" for m, s in zip(r["per_task"], r["per_task_std"]))
        extra = ""
        if fair:
            rate = "own recipe" if is_baseline(r["method"]) else f"{r['lr']:g}"
            rate += f" ({r['coef_lr']:g})" if r.get("coef_lr") is not None else ""
            share = r.get("best_before_last")
            extra = f" {rate} | {'-' if share is None else f'{100 * share:.0f}%'} |"
        lines.append(
            f"| {r['name']} | {len(r['seeds'])} | {r['trainable_per_task']:,} (+{r['head_per_task']:,}) | "
            f"{r['bytes_per_task'] / 1024:.1f} | {cells} | **{r['average_accuracy']:.2f} ± "
            f"{r['average_accuracy_std']:.2f}** | {r['backward_transfer']:.2f} | {r['forgetting']:.2f} | "
            f"{'yes' if r['zero_forgetting'] else 'NO'} | {r['storage_bytes'] / 1024:.0f} | {r['wall_s']:.0f} |" + extra
        )
    if fair:
        lines += _selection_markdown(payload)
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
