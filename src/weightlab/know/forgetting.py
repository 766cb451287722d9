"""Progressive forgetting: fine-tune Θ⁰ on nested, ever smaller subsets of its training data and
record the trajectory ``[Θ⁰, Θ¹, …, Θ^{S-1}]``.

``D⁰`` is the whole training set; ``D^{s}`` keeps ``round(r·|D^{s-1}|)`` samples of ``D^{s-1}``
(random with the seed, or class-balanced). Θ^s is Θ^{s-1} fine-tuned on ``D^s`` for
``epochs`` epochs; the optimiser is created once and carries on across stages (the authors' script
does not re-initialise anything between stages). With ``full_data_pass`` (the authors' script:
50,000 → 3,125 in 5 passes) Θ⁰ itself is first fine-tuned one pass on all of D⁰, so every stage
of the trajectory comes from the same optimiser.

After each stage its weights and the optimiser state are written atomically to files of their own and
one manifest write commits them, so a killed run resumes at the next stage and reproduces the
uninterrupted run exactly. The manifest records the identity of every input (model, options, the data
set's description, sha256 of Θ⁰, of D⁰ and of the evaluation data); a rerun with anything else is refused.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from weightlab.data import ImageArrays
from weightlab.data.augment import check_augment
from weightlab.engine import (
    OPTIMIZERS,
    Precision,
    evaluate_accuracy,
    load_optimizer_tensors,
    make_optimizer,
    module_device,
    optimizer_tensors,
    place,
    train_epoch,
)
from weightlab.errors import WeightlabError
from weightlab.io import (
    check_resume,
    check_writable,
    file_sha256,
    load_weights,
    read_json,
    save_tensors,
    tensors_sha256,
    write_json,
)
from weightlab.know.kinds import param_kinds
from weightlab.know.trajectory import FORMAT, MANIFEST, Trajectory, stage_file
from weightlab.models import load_state_dict_strict
from weightlab.models import model_cfg as get_model_cfg

SUBSETS_FILE = "subsets.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"


@dataclass
class ForgetConfig:
    """Defaults are the authors' protocol: r = 0.5, 5 stages, 1 epoch per stage, Adam 1e-3, batch 128."""

    ratio: float = 0.5
    stages: int = 5
    epochs: int = 1
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size: int = 128
    seed: int = 0
    class_balanced: bool = False
    full_data_pass: bool = False
    augment: str | None = None  # the pretraining's train-time augmentation (crop / crop_flip) in every stage
    # the same-size restart control (issue 36): each stage trains on as many samples as the stage of
    # progressive forgetting, drawn afresh from all of D⁰ every epoch (same recipe, steps and optimiser; the
    # data never shrink), so what the control loses is what restarting the optimiser costs, not forgetting
    resample: bool = False

    def to_dict(self) -> dict:
        """As stored in manifests (``augment`` / ``resample`` only when set, so trajectories made before
        them resume)."""
        d = asdict(self)
        if d["augment"] is None:
            d.pop("augment")
        if not d["resample"]:
            d.pop("resample")
        return d

    def validate(self) -> None:
        if not 0.0 < self.ratio < 1.0:
            raise WeightlabError(f"forgetting ratio r must be in (0, 1), got {self.ratio}")
        if self.stages < 2:
            raise WeightlabError(f"progressive forgetting needs at least 2 stages, got {self.stages}")
        if self.optimizer not in OPTIMIZERS:
            raise WeightlabError(f"unknown optimizer '{self.optimizer}' (use one of {', '.join(OPTIMIZERS)})")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise WeightlabError("epochs and batch size must be >= 1 and lr > 0")
        check_augment(self.augment)


def nested_subsets(
    labels: torch.Tensor, ratio: float, stages: int, seed: int = 0, class_balanced: bool = False
) -> list[torch.Tensor]:
    """Sorted index tensors ``[D⁰, D¹, …, D^{S-1}]`` with ``D^{s} ⊂ D^{s-1}`` and
    ``|D^s| = round(r·|D^{s-1}|)``; class-balanced keeps the same fraction of every class."""
    g = torch.Generator().manual_seed(seed)
    n = labels.shape[0]
    current = torch.arange(n)
    subsets = [current]
    for s in range(1, stages):
        if class_balanced:
            keep = []
            cur_labels = labels[current]
            for c in torch.unique(cur_labels):
                members = current[cur_labels == c]
                k = max(1, round(ratio * len(members)))
                keep.append(members[torch.randperm(len(members), generator=g)[:k]])
            current = torch.cat(keep).sort().values
        else:
            k = max(1, round(ratio * len(current)))
            current = current[torch.randperm(len(current), generator=g)[:k]].sort().values
        if len(current) == 0:
            raise WeightlabError(f"stage {s} of progressive forgetting has no samples left")
        subsets.append(current)
    return subsets


def forgetting_check(
    stages: list[dict], tolerance: float = 0.0, control: list[dict] | None = None, n_eval: int | None = None
) -> dict:
    """Whether a trajectory forgets: its D⁰ test accuracy (``eval_accuracy`` per stage) at the last stage
    is below stage 0's by more than ``tolerance`` points. ``forgets`` is None when no stage was evaluated
    (or only one was). A trajectory that does not forget does not test KNOW's hypothesis: the tables say
    ``forgetting: no`` beside it.

    With ``control`` (the stages of the same-size restart control, :attr:`ForgetConfig.resample`) and
    ``n_eval`` (the evaluation images), forgetting is counted only where the last stage falls below the
    control's last stage by more than chance: a one-sided two-proportion z-test at 5 % on the ``n_eval``
    images (``control_p``); ``forgets`` is then that test's verdict, and ``drop`` stays the fall from stage 0."""
    acc = [s["eval_accuracy"] for s in stages if s.get("eval_accuracy") is not None]
    if len(acc) < 2:
        return {"forgets": None, "accuracy": acc}
    out = {
        "forgets": acc[-1] < acc[0] - tolerance,
        "accuracy": acc,
        "drop": acc[0] - acc[-1],
        "monotone": all(b <= a for a, b in zip(acc, acc[1:])),
        "tolerance": tolerance,
    }
    ctrl = [s["eval_accuracy"] for s in control or [] if s.get("eval_accuracy") is not None]
    if len(ctrl) == len(acc) and n_eval:
        from scipy import stats

        p1, p2 = ctrl[-1] / 100, acc[-1] / 100
        se = math.sqrt(max(p1 * (1 - p1) + p2 * (1 - p2), 1e-12) / n_eval)
        p = float(stats.norm.sf((p1 - p2) / se))
        out.update(
            control_accuracy=ctrl,
            beyond_control=ctrl[-1] - acc[-1],  # points the forgetting loses beyond restarting alone
            control_p=p,
            n_eval=n_eval,
            forgets=p < 0.05,
        )
    return out


def _make_optimizer(model: nn.Module, cfg: ForgetConfig) -> torch.optim.Optimizer:
    return make_optimizer(
        cfg.optimizer,
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
    )


def _train_pass(
    model: nn.Module,
    data: ImageArrays,
    model_cfg,
    opt,
    cfg: ForgetConfig,
    seed: int,
    desc: str,
    progress: bool,
    precision: Precision | None = None,
    pool: ImageArrays | None = None,
) -> float:
    """``cfg.epochs`` epochs on ``data``; with ``pool`` (the restart control) each epoch on a fresh random
    subset of ``pool`` as large as ``data`` instead."""
    n_batches = (len(data) + cfg.batch_size - 1) // cfg.batch_size

    def epoch_data(epoch: int) -> ImageArrays:
        d = data
        if pool is not None:
            g = torch.Generator().manual_seed(seed * 1000 + epoch + 7)
            d = pool.subset(torch.randperm(len(pool), generator=g)[: len(data)].sort().values)
        return d.with_options(augment=cfg.augment) if cfg.augment is not None else d

    losses = [
        train_epoch(
            model,
            epoch_data(epoch).batches(
                cfg.batch_size, model_cfg, shuffle=True, seed=seed * 1000 + epoch, device=module_device(model)
            ),
            opt,
            total=n_batches,
            precision=precision,
            desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}",
            progress=progress,
        )
        for epoch in range(cfg.epochs)
    ]
    model.eval()
    return sum(losses) / len(losses)


def _check_not_diverged(loss: float, classes: int, stage: int, cfg: ForgetConfig) -> None:
    """Refuse a stage whose mean training loss is non-finite or above 3x chance (3 ln C): the weights
    diverged, and a trajectory through them says nothing about forgetting. Nothing of the stage is written."""
    limit = 3.0 * math.log(max(classes, 2))
    if not math.isfinite(loss) or loss > limit:
        raise WeightlabError(
            f"stage {stage} diverged: its mean training loss {loss:.3g} is above {limit:.3g} (3 x chance, ln "
            f"{classes}); nothing of this stage was written (is the learning rate {cfg.lr} too high?)"
        )


def run_forgetting(
    model: nn.Module,
    train: ImageArrays,
    out_dir: str | Path,
    cfg: ForgetConfig | None = None,
    *,
    eval_data: ImageArrays | None = None,
    data_info: dict | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    device: str | None = None,
    precision: str = "fp32",
) -> Trajectory:
    """Record (or resume) a trajectory of progressive forgetting into ``out_dir``.

    ``model`` must carry ``weightlab_cfg`` (from :func:`weightlab.models.create_model`) and hold
    Θ⁰. ``eval_data`` (e.g. the test split) gives the accuracy of every stage in the manifest.
    ``stop_after`` stops once that many stages exist (used to test resuming). The model trains on
    ``device`` (default: where it is) in ``precision``; stages are stored on the CPU, so a trajectory
    started on one device resumes on another.
    """
    cfg = cfg or ForgetConfig()
    cfg.validate()
    prec = Precision(precision, place(model, device))
    model_cfg = get_model_cfg(model, "run_forgetting")
    out_dir = Path(out_dir)
    manifest_path = out_dir / MANIFEST
    subsets = nested_subsets(train.labels, cfg.ratio, cfg.stages, cfg.seed, cfg.class_balanced)
    config = cfg.to_dict()
    data = data_info or {"name": train.name, "size": len(train)}
    # everything the stages depend on: a rerun with anything else is refused, never mixed in
    inputs = dict(
        base_sha256=tensors_sha256(model.state_dict()),
        train_sha256=train.fingerprint(),
        eval_sha256=eval_data.fingerprint() if eval_data is not None else None,
    )
    if manifest_path.is_file():
        meta = read_json(manifest_path)
        if meta.get("format") != FORMAT:
            raise WeightlabError(f"{out_dir}: holds a trajectory of another format ({meta.get('format')!r})")
        current = dict(model=model_cfg.to_dict(), config=config, data=data, inputs=inputs)
        check_resume(out_dir, meta, current, "use a new output folder, or the same options and data to resume")
        done = int(meta.get("completed_stages", 0))
        if done:
            load_state_dict_strict(model, load_weights(out_dir / stage_file(done - 1)), source=str(out_dir))
    else:
        check_writable(out_dir)
        meta = dict(
            format=FORMAT,
            model=model_cfg.to_dict(),
            data=data,
            inputs=inputs,
            config=config,
            subset_sizes=[len(s) for s in subsets],
            kinds=param_kinds(model),
            completed_stages=0,
            stage_files=[],
            stages=[],
        )
        save_tensors(out_dir / SUBSETS_FILE, {f"D{s}": idx for s, idx in enumerate(subsets)})
        done = 0
    opt = _make_optimizer(model, cfg)
    if done:
        # the optimiser state the manifest commits with its last stage (older trajectories: one file)
        opt_file = out_dir / meta.get("optimizer_file", OPTIMIZER_FILE)
        if opt_file.is_file():
            load_optimizer_tensors(opt, load_weights(opt_file))
    _remove_uncommitted(out_dir, meta)
    torch.manual_seed(cfg.seed)
    last = min(cfg.stages, stop_after) if stop_after is not None else cfg.stages
    for s in tqdm(
        range(done, last), desc="progressive forgetting", disable=not progress, initial=done, total=cfg.stages
    ):
        record = {
            "stage": s,
            "file": stage_file(s),
            "subset_size": len(subsets[s]),
            "fraction": len(subsets[s]) / len(train),
        }
        if s > 0 or cfg.full_data_pass:
            torch.manual_seed(cfg.seed * 7919 + s)
            record["train_loss"] = _train_pass(
                model,
                train.subset(subsets[s]),
                model_cfg,
                opt,
                cfg,
                seed=cfg.seed * 101 + s,
                desc=f"stage {s}",
                progress=progress,
                precision=prec,
                pool=train if cfg.resample else None,
            )
            _check_not_diverged(record["train_loss"], len(train.classes), s, cfg)
        if eval_data is not None:
            record["eval_accuracy"] = evaluate_accuracy(model, eval_data.batches(256, model_cfg), precision=prec)
        # commit order: the stage's weights and its optimiser state go to files of their own, then one
        # manifest write commits both; a kill anywhere leaves the previous stage committed, never a mix
        save_tensors(out_dir / stage_file(s), {k: v.detach().clone() for k, v in model.state_dict().items()})
        save_tensors(out_dir / optimizer_file(s), optimizer_tensors(opt) or {"empty": torch.zeros(0)})
        meta["stages"] = [r for r in meta["stages"] if r["stage"] < s] + [record]
        meta["completed_stages"] = s + 1
        meta["stage_files"] = [stage_file(i) for i in range(s + 1)]
        # each stage's hash: a stage file replaced or edited later is refused when loaded
        meta["stage_sha256"] = [file_sha256(out_dir / stage_file(i)) for i in range(s + 1)]
        meta["optimizer_file"] = optimizer_file(s)
        meta["forgetting"] = forgetting_check(meta["stages"])
        write_json(manifest_path, meta)
        _remove_uncommitted(out_dir, meta)
    return Trajectory.load(out_dir)


def optimizer_file(stage: int) -> str:
    """The optimiser state after ``stage`` (only the committed stage's is kept)."""
    return f"optimizer_{stage:02d}.safetensors"


def _remove_uncommitted(out_dir: Path, meta: dict) -> None:
    """Drop optimiser states the manifest does not reference (superseded, or written by a killed run)."""
    keep = meta.get("optimizer_file")
    for f in out_dir.glob("optimizer*.safetensors"):
        if f.name != keep and not (keep is None and f.name == OPTIMIZER_FILE):
            f.unlink(missing_ok=True)


def fine_tune_stage(
    model: nn.Module,
    data: ImageArrays,
    cfg: ForgetConfig,
    *,
    seed: int = 0,
    progress: bool = True,
    device: str | None = None,
    precision: str = "fp32",
) -> dict[str, torch.Tensor]:
    """One stage of the forgetting recipe on ``data`` with a fresh optimiser (``cfg``'s optimiser, rate,
    epochs, batch size and augmentation), in place; returns the state dict. On a larger set than D⁰ it
    is the mirror of stage 1: Θ⁰ fine-tuned on the real ×1/r data, the weight retrodiction aims at."""
    cfg.validate()
    model_cfg = get_model_cfg(model, "fine_tune_stage")
    prec = Precision(precision, place(model, device))
    opt = _make_optimizer(model, cfg)
    torch.manual_seed(seed)
    _train_pass(model, data, model_cfg, opt, cfg, seed=seed, desc="fine-tune", progress=progress, precision=prec)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def incremental_pretraining(
    model: nn.Module,
    train: ImageArrays,
    cfg: ForgetConfig | None = None,
    *,
    progress: bool = True,
    device: str | None = None,
    precision: str = "fp32",
) -> dict[str, torch.Tensor]:
    """Table 1's incremental-pretraining baseline: train ``model`` (a fresh initialisation) on the
    nested subsets from the smallest up to all of D⁰ (``D^{S-1}, …, D¹, D⁰``, ``epochs`` each,
    one optimiser throughout) and return its state dict."""
    cfg = cfg or ForgetConfig()
    cfg.validate()
    model_cfg = get_model_cfg(model, "incremental_pretraining")
    prec = Precision(precision, place(model, device))
    subsets = nested_subsets(train.labels, cfg.ratio, cfg.stages, cfg.seed, cfg.class_balanced)
    opt = _make_optimizer(model, cfg)
    torch.manual_seed(cfg.seed)
    for s in tqdm(range(cfg.stages - 1, -1, -1), desc="incremental pretraining", disable=not progress):
        _train_pass(
            model,
            train.subset(subsets[s]),
            model_cfg,
            opt,
            cfg,
            seed=cfg.seed * 101 + s,
            desc=f"subset {s}",
            progress=progress,
            precision=prec,
        )
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
