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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from weightlab.errors import WeightlabError
from weightlab.incremental import metrics
from weightlab.incremental.baselines import is_baseline, parse_baseline, run_baseline
from weightlab.incremental.learner import AdaptConfig, accuracy, learn_task
from weightlab.incremental.methods import parse_method
from weightlab.incremental.model import TaskModel
from weightlab.incremental.sequences import SplitSizes, build_sequence
from weightlab.io import read_json, write_json, write_text

SEEDS = (42, 1998, 3142592)  # the authors' seeds
CNN_METHODS = ["head", "recast", "full", "lora", "recast+lora", "dora", "recast+dora", "rosa", "recast+rosa",
               "piggyback", "recast+piggyback", "clr", "recast+clr"]
VIT_METHODS = ["head", "recast", "full", "lora", "recast+lora", "dora", "recast+dora", "rosa", "recast+rosa",
               "adaptformer", "recast+adaptformer", "piggyback", "recast+piggyback"]


@dataclass
class Point:
    """One configuration of a budget suite: a method on a RECAST base built with ``recast`` overrides."""

    label: str
    method: str
    recast: dict = field(default_factory=dict)


@dataclass
class Suite:
    name: str
    model: str
    sequence: str
    methods: list[str] = field(default_factory=list)
    seeds: tuple[int, ...] = SEEDS
    sizes: SplitSizes = field(default_factory=SplitSizes)
    epochs: int = 4
    weights: str | None = None           # local weights instead of the registry's pretrained ones
    recast: dict = field(default_factory=lambda: dict(templates="auto", layers_per_group=2))
    points: list[Point] = field(default_factory=list)  # budget suites
    bn: str = "task"
    pretrained: bool = True              # False: random init (smoke tests without the shared models)
    model_kwargs: dict = field(default_factory=dict)  # e.g. a timm ViT's img_size / patch_size / depth
    description: str = ""

    def adapt_config(self) -> AdaptConfig:
        """The authors' recipe truncated to ``epochs``: its first 33 epochs run at the full rate, so
        a budget of a few epochs never reaches the first decay."""
        return AdaptConfig(epochs=self.epochs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sizes"] = asdict(self.sizes)
        return d


VIT_CIFAR = dict(img_size=32, patch_size=4, embed_dim=96, depth=6, num_heads=3, num_classes=10)

_BUDGET_CNN = [
    Point("RECAST n=1 K=1", "recast", dict(templates=1, coef_sets=1)),
    Point("RECAST n=2 K=1", "recast", dict(templates=2, coef_sets=1)),
    Point("RECAST n=2 K=2", "recast", dict(templates=2, coef_sets=2)),
    Point("RECAST n=2 K=4", "recast", dict(templates=2, coef_sets=4)),
    Point("RECAST n=1 K=2 G=per layer", "recast", dict(templates=1, coef_sets=2, layers_per_group=1)),
    Point("RECAST n=4 K=2", "recast", dict(templates=4, coef_sets=2)),
    Point("RECAST conv1 only n=2 K=2", "recast", dict(templates=2, coef_sets=2,
                                                       target_modules=["layer*.*.conv1"])),
    Point("LoRA r=1 last stage conv2", "lora:r=1,targets=layer3\\.\\d+\\.conv2", {}),
    Point("LoRA r=1", "lora:r=1", {}),
    Point("LoRA r=2", "lora:r=2", {}),
    Point("LoRA r=4", "lora:r=4", {}),
    Point("LoRA r=8", "lora:r=8", {}),
    Point("RECAST+LoRA r=1 last stage conv2", "recast+lora:r=1,targets=layer3\\.\\d+\\.conv2", {}),
    Point("RECAST+LoRA r=1", "recast+lora:r=1", {}),
    Point("RECAST+LoRA r=4", "recast+lora:r=4", {}),
    Point("head only", "head", {}),
]

SUITES: dict[str, Suite] = {s.name: s for s in [
    Suite("resnet20-multi", "resnet20", "multi", CNN_METHODS, sizes=SplitSizes(800, 300, 1000), epochs=6,
          description="pretrained CIFAR ResNet-20 on 6 tasks: MNIST, Fashion-MNIST, CIFAR-10, 2 class groups each"),
    Suite("resnet20-split-fmnist", "resnet20", "split-fmnist", CNN_METHODS, sizes=SplitSizes(800, 300, 1000),
          epochs=4, description="pretrained CIFAR ResNet-20 on Fashion-MNIST split into 5 two-class tasks"),
    Suite("convmixer-multi", "convmixer", "multi", ["head", "recast", "full", "lora", "recast+lora", "clr",
                                                     "recast+clr"], sizes=SplitSizes(800, 300, 1000), epochs=4,
          description="pretrained ConvMixer-256/8 on the 6-task multi sequence"),
    Suite("vit-multi", "timm:vit_tiny_patch16_224", "multi", VIT_METHODS, sizes=SplitSizes(800, 300, 1000), epochs=6,
          model_kwargs=VIT_CIFAR, recast=dict(templates="auto", layers_per_group=2),
          description="a small timm ViT (32x32, patch 4, dim 96, depth 6) pretrained here on CIFAR-10 "
                      "(benchmarks/pretrain_vit_cifar10.py, pass its weights), multi sequence"),
    Suite("resnet20-budget", "resnet20", "fashion_mnist", points=_BUDGET_CNN, sizes=SplitSizes(1000, 300, 1000),
          epochs=4, description="Fig. 3: accuracy against trainable numbers per task on Fashion-MNIST (10 classes)"),
    Suite("smoke", "resnet20", "digits", ["head", "recast", "lora", "recast+lora"], seeds=(0,),
          sizes=SplitSizes(200, 100, 100), epochs=1, pretrained=False, description="seconds-long check of the whole pipeline"),
]}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise WeightlabError(f"unknown suite '{name}' (use one of {', '.join(SUITES)})")
    return SUITES[name]


def build_bases(model_name: str, weights: str | None, recast_overrides: dict, *, need_recast: bool,
                seed: int = 0, pretrained: bool = True, model_kwargs: dict | None = None):
    """(plain pretrained model, RECAST base reconstructed in closed form or None)."""
    from weightlab.models import create_model

    plain = create_model(model_name, pretrained=pretrained and weights is None, weights=weights,
                         **(model_kwargs or {}))
    return plain, (recast_base(plain, recast_overrides, seed=seed) if need_recast else None)


def recast_base(plain, recast_overrides: dict, *, seed: int = 0):
    """The family's RECAST preset (with overrides) applied to ``plain``, reconstructed in closed form."""
    from weightlab import recast

    family = plain.weightlab_cfg["family"]
    cfg = recast.preset(recast.preset_for_family(family), **recast_overrides)
    rmodel = recast.apply_recast(plain, cfg, seed=seed)
    recast.reconstruct(plain, rmodel, method="closed_form", progress=False)
    rmodel.weightlab_cfg = plain.weightlab_cfg
    return rmodel


def run_sequence(base, method: str, tasks, cfg: AdaptConfig, *, seed: int, bn: str = "task",
                 progress: bool = True) -> tuple[dict, TaskModel]:
    """Learn ``tasks`` in order with one method; returns the run record and the model."""
    spec = parse_method(method)
    start = time.perf_counter()
    tm = TaskModel.from_base(base, spec, bn=bn, seed=seed)
    R: list[list[float]] = []
    results = []
    for i, task in enumerate(tasks):
        res = learn_task(tm, task, cfg, seed=seed + i, progress=progress)
        results.append(res)
        R.append([accuracy(tm, t.name, t.test, cfg.eval_batch_size) for t in tasks[: i + 1]])
    counts = [tm.counts(t.name) for t in tasks]
    record = dict(
        method=spec.name, seed=seed, tasks=[t.name for t in tasks], accuracy_matrix=R,
        final_accuracy=R[-1], average_accuracy=metrics.average_accuracy(R),
        backward_transfer=metrics.backward_transfer(R), zero_forgetting=metrics.zero_forgetting(R),
        trainable_per_task=counts[0]["trainable_per_task"],
        head_per_task=[c["head_per_task"] for c in counts],
        bytes_per_task=[c["bytes_per_task"] for c in counts], backbone_bytes=counts[0]["backbone_bytes"],
        best_epochs=[r.best_epoch for r in results], val_accuracy=[r.val_accuracy for r in results],
        task_wall_s=[r.wall_s for r in results], wall_s=time.perf_counter() - start)
    return record, tm


def method_label(method: str) -> str:
    """The name a run of ``method`` is recorded under (per-task method or continual-learning baseline)."""
    return parse_baseline(method).name if is_baseline(method) else parse_method(method).name


# what makes two results files runs of the same suite
_FIXED = ("name", "model", "sequence", "sizes", "epochs", "weights", "recast", "bn", "pretrained", "model_kwargs")


def _run_key(r: dict) -> tuple:
    return (r.get("label") or r["method"], r["seed"])


def run_suite(suite: Suite, out: str | Path, *, data_root=None, progress: bool = True,
              methods: list[str] | None = None, seeds: tuple[int, ...] | None = None,
              command: str | None = None) -> dict:
    """Run (or resume) a suite; writes results.json, results.md and plots into ``out``, with
    ``command`` (how it was started) recorded from the first write on."""
    from weightlab.machine import machine

    out = Path(out)
    path = out / "results.json"
    full = suite
    suite = replace(suite, methods=methods or suite.methods, seeds=tuple(seeds or suite.seeds))
    payload = read_json(path) if path.is_file() else dict(suite=full.to_dict(), runs=[])
    changed = [k for k in _FIXED if payload["suite"].get(k) != suite.to_dict()[k]]
    if changed:
        raise WeightlabError(f"{path} holds runs of a different suite configuration ({', '.join(changed)} "
                             "differ): resume only the same suite, or pass another --out")
    payload.update(machine=machine(), suite=full.to_dict())
    if command:
        payload["command"] = command
    done = {_run_key(r) for r in payload["runs"]}
    tasks = build_sequence(suite.sequence, data_root, suite.sizes)
    payload["tasks"] = [t.summary() for t in tasks]
    cfg = suite.adapt_config()
    payload["adapt_config"] = cfg.to_dict()
    jobs = [(p.label, p.method, p.recast) for p in suite.points] or [(None, m, {}) for m in suite.methods]
    todo = [(j, s) for j in jobs for s in suite.seeds if ((j[0] or method_label(j[1])), s) not in done]
    bases: dict[str, tuple] = {}
    for (label, method, overrides), seed in tqdm(todo, desc=suite.name, disable=not progress):
        baseline = is_baseline(method)
        spec = None if baseline else parse_method(method)
        rover = {**suite.recast, **overrides}
        key = repr(sorted(rover.items())) if spec is not None and spec.recast else "plain"
        if key not in bases:
            plain, rbase = build_bases(suite.model, suite.weights, rover, need_recast=key != "plain",
                                       pretrained=suite.pretrained, model_kwargs=suite.model_kwargs)
            bases[key] = plain if key == "plain" else rbase
            payload["model_family"] = plain.weightlab_cfg.get("family", "generic")
        if baseline:
            record = run_baseline(bases[key], method, tasks, cfg, seed=seed, progress=progress)
        else:
            record, _ = run_sequence(bases[key], method, tasks, cfg, seed=seed, bn=suite.bn, progress=progress)
        if label:
            record["label"] = label
            record["recast_overrides"] = rover if key != "plain" else None
        payload["runs"].append(record)
        write_json(path, payload)
    return write_report(payload, out)


def write_report(payload: dict, out: str | Path) -> dict:
    """Summarise the runs of ``payload`` and (re)write results.json, results.md, paper_table.md (the
    layout of the paper's Table 1 or 2) and the plots."""
    from weightlab.incremental.plots import plot_suite
    from weightlab.incremental.tables import paper_table

    out = Path(out)
    payload["summary"] = summarize(payload["runs"])
    write_json(out / "results.json", payload)
    write_text(out / "results.md", to_markdown(payload))
    if not payload["suite"].get("points"):  # budget suites have their own figure instead
        family = payload.get("model_family") or ("vit" if "vit" in payload["suite"]["model"] else "cnn")
        write_text(out / "paper_table.md", paper_table(payload, family))
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
    payload.setdefault("merged", []).append(dict(source=str(opath), command=extra.get("command"), machine=extra.get("machine"),
                                                 runs=[list(_run_key(r)) for r in new]))
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
        rows.append(dict(
            name=name, method=rs[0]["method"], seeds=[r["seed"] for r in rs], average_accuracy=avg[0],
            average_accuracy_std=avg[1], backward_transfer=bwt[0], backward_transfer_std=bwt[1],
            per_task=[p[0] for p in per_task], per_task_std=[p[1] for p in per_task],
            zero_forgetting=all(r["zero_forgetting"] for r in rs),
            trainable_per_task=rs[0]["trainable_per_task"], head_per_task=rs[0]["head_per_task"][0],
            bytes_per_task=sum(rs[0]["bytes_per_task"]) / len(rs[0]["bytes_per_task"]),
            backbone_bytes=rs[0]["backbone_bytes"], forgetting=forgetting[0],
            # everything kept after the sequence: the shared model, every task's own tensors, a replay
            # buffer, state shared by all tasks (InfLoRA's subspace bases, L2P's prompt pool)
            storage_bytes=rs[0]["backbone_bytes"] + sum(rs[0]["bytes_per_task"]) + rs[0].get("buffer_bytes", 0)
            + rs[0].get("shared_state_bytes", 0),
            wall_s=metrics.mean_std([r["wall_s"] for r in rs])[0]))
    return rows


def to_markdown(payload: dict) -> str:
    suite = payload["suite"]
    tasks = [t["name"] for t in payload.get("tasks", [])]
    lines = [f"# {suite['name']}: {suite.get('description', '')}", "",
             f"Model `{suite['model']}`, sequence `{suite['sequence']}`, "
             f"{suite['epochs']} epochs per task, split sizes {suite['sizes']}, BatchNorm statistics: {suite['bn']}. "
             "Test accuracy (%) after the last task, mean ± std over seeds; epoch selected on validation.", "",
             "| method | seeds | trainable / task (+ head) | KiB / task | " + " | ".join(tasks) +
             " | avg acc | BWT | max forgetting | zero forgetting | storage KiB | wall s / run |",
             "|---|---|---|---|" + "---|" * len(tasks) + "---|---|---|---|---|---|"]
    for r in payload["summary"]:
        cells = " | ".join(f"{m:.1f} ± {s:.1f}" for m, s in zip(r["per_task"], r["per_task_std"]))
        lines.append(f"| {r['name']} | {len(r['seeds'])} | {r['trainable_per_task']:,} (+{r['head_per_task']:,}) | "
                     f"{r['bytes_per_task'] / 1024:.1f} | {cells} | **{r['average_accuracy']:.2f} ± "
                     f"{r['average_accuracy_std']:.2f}** | {r['backward_transfer']:.2f} | {r['forgetting']:.2f} | "
                     f"{'yes' if r['zero_forgetting'] else 'NO'} | {r['storage_bytes'] / 1024:.0f} | {r['wall_s']:.0f} |")
    if payload["summary"]:
        lines += ["", f"Shared backbone: {payload['summary'][0]['backbone_bytes'] / 1024:.0f} KiB. Storage: what is "
                  "kept after the sequence (the shared model, every task's own tensors, a replay buffer as float32 "
                  "model inputs, state shared by all tasks such as InfLoRA's subspace bases or L2P's prompt pool). "
                  "Continual-learning baselines (EWC, LwF, GDumb, ER-ACE, DER++, HAT, InfLoRA, L2P) share one model "
                  "across the sequence and keep their last epoch."]
    return "\n".join(lines) + "\n"


__all__ = ["SUITES", "Suite", "Point", "get_suite", "run_suite", "write_report", "report_only", "merge_results", "run_sequence", "build_bases", "summarize",
           "to_markdown"]
