"""The KNOW protocol (paper Sec. 4, the faithful protocol of issue 16): what a KNOW suite fixes, and for
each of its trajectories, resumably, in its folder:

1. ``base.safetensors``: Θ before forgetting (the shared pretrained weights, or pretrained here; with
   the suite's ``pretrain`` protocol, ``base/`` from :func:`weightlab.know.pretrain.pretrain`);
2. ``trajectory/``: progressive forgetting (:func:`~weightlab.know.forgetting.run_forgetting`);
3. ``predictions/<method>_x<n>.safetensors``: every predictor at every step (timed);
4. ``incremental.safetensors``: the incremental-pretraining baseline (with the suite's ``pretrain``
   protocol ``incremental/``: the base's epochs, steps and schedule on the nested subsets, smallest first);
5. with ``truth``: ``truth/`` (trained from scratch on twice D⁰) and ``truth_ft.safetensors`` (Θ⁰
   fine-tuned on it), the real ×2 weights, and the weight-space comparison of every ×2 prediction;
   with ``controls``: ``controls/shrink_x<n>.safetensors`` (Θ⁰ rescaled, the same function);

and the transfer rows (:func:`rows`) the suite runner (:mod:`weightlab.bench.know`) transfers and reports.
Steps 1-5 run once per trajectory seed (``traj_<seed>/``) when the suite has ``trajectory_seeds``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from weightlab.data.tasks import SplitSizes, build_task
from weightlab.engine import evaluate_accuracy, fit_classifier
from weightlab.engine.options import SEEDS
from weightlab.errors import WeightlabError
from weightlab.io import load_weights, read_json, save_tensors, write_json
from weightlab.know.controls import rescale_control, shrink_factor, weight_space_comparison
from weightlab.know.forgetting import (
    ForgetConfig,
    fine_tune_stage,
    forgetting_check,
    incremental_pretraining,
    run_forgetting,
)
from weightlab.know.predictors import display_name, get_predictor
from weightlab.know.pretrain import WEIGHTS as PRETRAINED
from weightlab.know.pretrain import PretrainConfig, converged, pretrain
from weightlab.know.trajectory import MANIFEST, scale_label
from weightlab.know.transfer import TransferConfig
from weightlab.models import create_model, load_state_dict_strict

# -- KNOW: transfer suites ------------------------------------------------------------------------
# every predictor row of the published KNOW suites, in their tables' order (named: a newly registered
# predictor joins a suite when it is written here)
ALL_PREDICTORS = (
    "linear_fit",
    "log_fit",
    "exp_fit",
    "task_vector",
    "consensus_ta",
    "magmax",
    "tsv",
    "known",
    "known_authors",
)


@dataclass
class KnowSuite:
    name: str
    description: str
    model: str
    source: str  # task spec of D⁰, e.g. "cifar10" or "digits:0-4"
    target: str  # downstream task spec
    pretrained: bool = False  # load the shared weights instead of pretraining here
    model_kwargs: dict = field(default_factory=dict)
    pretrain_epochs: int = 0
    pretrain_lr: float = 1e-3
    source_train: int | None = None  # samples of D⁰ (None: the whole train split)
    target_train: int | None = 1000
    target_test: int | None = 2000
    eval_size: int | None = 2000  # source test samples to track forgetting
    forget: ForgetConfig = field(default_factory=ForgetConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    predictors: tuple[str, ...] = ALL_PREDICTORS
    steps: tuple[int, ...] = (1, 2, 3)
    seeds: tuple[int, ...] = SEEDS
    incremental: bool = True
    needs_shared: bool = True
    stream: dict | None = None  # read source and target from disk (see weightlab.data.streaming)
    # the faithful protocol (issue 16): Θ⁰ pretrained to convergence with augmentation and cosine decay
    # (replaces pretrain_epochs / pretrain_lr), its validation curve on source_val held-out samples
    pretrain: PretrainConfig | None = None
    source_val: int | None = None
    # several trajectories, each with its own base initialisation, data order and forgetting subsets
    # (folders traj_<seed>/); None: one trajectory in the suite's folder
    trajectory_seeds: tuple[int, ...] | None = None
    # Θ⁰ trained on a seeded half of the source data, and the real ×2 weights beside the predictions:
    # trained from scratch on all of it (same protocol and initialisation), and Θ⁰ fine-tuned on all of it
    # with the stage recipe; the weight-space comparison of every ×2 prediction with them
    truth: bool = False
    # D⁰ is the seeded half of the source data that ``truth`` trains Θ⁰ on, without the ×2 weights (a suite
    # on the trajectories of a truth suite)
    half_source: bool = False
    # the shrink control: Θ⁰ rescaled (same function) by each step's KNOWN shrink factor
    controls: bool = False
    # a folder of KNOWN weights for the ``known`` row (None: the shipped ones), e.g. a candidate KNOWN
    known_weights: str | None = None
    # more KNOWN rows, each ``(row name, label, folder of KNOWN weights)``: e.g. hypermodels meta-trained with
    # other history lengths S (the paper's Table 6); folders relative to the working directory
    known_variants: tuple[tuple[str, str, str], ...] = ()
    # -- the v3 protocol (issue 36); each recorded only when set, so the suites measured before it resume --
    # downstream validation images held out of the target's training split (rates chosen on them; the whole
    # training split is then trained on); None: ``transfer.val_fraction`` of the training split
    target_val: int | None = None
    # each row's learning rate chosen once per trajectory, on the suite's first transfer seed, and used for
    # its other seeds (False: chosen again for every seed)
    select_once: bool = False
    # the same-size restart control beside every trajectory (``restart/``, :attr:`ForgetConfig.resample`);
    # forgetting is then counted only where it exceeds the control beyond chance
    restart_control: bool = False
    # the ×2 weights trained from scratch: with the base's epochs ("epochs": twice its steps) or its steps
    # ("steps": half its epochs on twice the data, the step-matched truth)
    truth_scratch: str = "epochs"
    # the first ``long_base`` trajectories also pretrain a base with twice the epochs (``base_long/``): whether
    # the base had converged is then measured, not assumed from a flat (cosine-decayed) validation curve
    long_base: int = 0

    def __post_init__(self) -> None:
        if self.truth_scratch not in ("epochs", "steps"):
            raise WeightlabError(f"truth_scratch must be 'epochs' or 'steps', got {self.truth_scratch!r}")


def suite_record(suite: KnowSuite) -> dict:
    """The suite as plain JSON values (tuples become lists), as it is stored in results.json."""
    import json

    d = asdict(suite)
    d.pop("description")
    # recorded only when set (results made before these fields resume)
    for key, default in (
        ("known_weights", None),
        ("known_variants", ()),
        ("half_source", False),
        ("target_val", None),
        ("select_once", False),
        ("restart_control", False),
        ("truth_scratch", "epochs"),
        ("long_base", 0),
    ):
        if d[key] == default:
            d.pop(key)
    if d["transfer"].get("lr_extensions") == 0:
        d["transfer"].pop("lr_extensions")
    if suite.pretrain is not None:
        d["pretrain"] = suite.pretrain.to_dict()
    return json.loads(json.dumps(d))


def split_sizes(train, test, val: int = 0) -> SplitSizes:
    return SplitSizes(train=train, val=val, test=test)


def trajectories(suite: KnowSuite, out: Path) -> list[tuple[int | None, Path]]:
    """(trajectory seed, folder) of every trajectory of the suite."""
    if suite.trajectory_seeds is None:
        return [(None, out)]
    return [(s, out / f"traj_{s}") for s in suite.trajectory_seeds]


def _new_model(suite: KnowSuite, num_classes: int, seed: int):
    torch.manual_seed(seed)  # the initialisation does not depend on earlier work
    return create_model(
        suite.model,
        pretrained=suite.pretrained,
        num_classes=None if suite.pretrained else num_classes,
        **suite.model_kwargs,
    )


def _pretrain_into(suite, model, data, folder: Path, pcfg, source, progress, device, precision, data_info=None):
    """One pretraining run of the suite's protocol (``pcfg``) on ``data`` into ``folder`` (resumable), validated
    on the source's validation split when the suite has one."""
    pretrain(
        model,
        data,
        folder,
        pcfg,
        val=source.val if suite.source_val else None,
        data_info=data_info if data_info is not None else {**source.summary(), "train": len(data)},
        progress=progress,
        device=device,
        precision=precision,
    )


def _base_model(
    suite: KnowSuite, root: Path, source, d0, progress: bool, device: str | None, seed: int, precision: str = "fp32"
):
    """Θ⁰: the shared pretrained weights, or pretrained here on ``d0`` (the converged protocol when the
    suite has ``pretrain``, into ``root/base/``), initialised with ``seed``."""
    model = _new_model(suite, source.num_classes, seed)
    if suite.pretrain is not None and not suite.pretrained:
        _pretrain_into(
            suite, model, d0, root / "base", replace(suite.pretrain, seed=seed), source, progress, device, precision
        )
        return model
    cfg = model.weightlab_cfg
    path = root / "base.safetensors"
    if path.is_file():
        load_state_dict_strict(model, load_weights(path), source=str(path))
    else:
        if not suite.pretrained:
            torch.manual_seed(seed)
            fit_classifier(
                model,
                d0,
                cfg,
                epochs=suite.pretrain_epochs,
                lr=suite.pretrain_lr,
                batch_size=64,
                seed=seed,
                progress=progress,
                device=device,
            )
        save_tensors(path, model.state_dict())
    return model


def predictor_rows(suite: KnowSuite) -> list[tuple[str, str, str, dict]]:
    """(row name, label, registered predictor, its options) of every predictor row of the suite: its
    ``predictors``, then its ``known_variants`` (KNOWN with other weights)."""
    out = []
    for name in suite.predictors:
        options = {"weights": suite.known_weights} if name == "known" and suite.known_weights else {}
        display = candidate_label(suite.known_weights) if options else display_name(name)
        out.append((name, display, name, options))
    out += [(name, display, "known", {"weights": folder}) for name, display, folder in suite.known_variants]
    return out


def candidate_label(known_weights: str) -> str:
    """The label of the ``known`` row run with other weights than the shipped ones (a candidate KNOWN):
    never the shipped hypermodel's "KNOWN (weightlab)"."""
    return f"KNOWN (candidate {Path(known_weights).name})"


def incremental_file(suite: KnowSuite, root: Path) -> Path:
    """The incremental-pretraining baseline's weights (the faithful one: ``incremental/`` like a base)."""
    if suite.pretrain is not None and not suite.pretrained:
        return root / "incremental" / PRETRAINED
    return root / "incremental.safetensors"


def base_file(suite: KnowSuite, root: Path) -> Path:
    return (
        root / "base" / PRETRAINED if suite.pretrain is not None and not suite.pretrained else root / "base.safetensors"
    )


def source_task(suite: KnowSuite, data_root: Path | None):
    return build_task(
        suite.source,
        data_root,
        sizes=SplitSizes(train=suite.source_train, val=suite.source_val or 0, test=suite.eval_size),
        stream=suite.stream,
    )


def prepare(
    suite: KnowSuite,
    out: Path,
    progress: bool = True,
    data_root: Path | None = None,
    device: str | None = None,
    precision: str = "fp32",
) -> dict:
    """Steps 1-4 for every trajectory of the suite (see :func:`prepare_trajectory`). One trajectory: its
    record; several: ``{"trajectories": {seed: record}, "seconds": {step: total}}``."""
    source = source_task(suite, data_root)
    trajs = trajectories(suite, out)
    infos = {seed: prepare_trajectory(suite, root, source, seed, progress, device, precision) for seed, root in trajs}
    if suite.trajectory_seeds is None:
        return infos[None]
    seconds: dict[str, float] = {}
    for info in infos.values():
        for k, v in info["seconds"].items():
            seconds[k] = round(seconds.get(k, 0.0) + v, 2)
    return {"trajectories": {str(k): v for k, v in infos.items()}, "seconds": seconds}


def prepare_trajectory(
    suite: KnowSuite,
    root: Path,
    source,
    seed: int | None = None,
    progress: bool = True,
    device: str | None = None,
    precision: str = "fp32",
) -> dict:
    """Base, trajectory, predictions, incremental baseline, the real ×2 weights and the controls of one
    trajectory in ``root`` (each skipped when present); the training steps run on ``device`` (default
    CPU) in ``precision``. ``seed`` (a trajectory seed) sets the base's initialisation and data order and
    the forgetting subsets; None is the single-trajectory suites' seed 0.

    ``prepare.json`` in ``root`` keeps what each step measured when it actually ran (wall seconds,
    accuracies), so a resumed suite still reports the cost of the work done before the interruption."""
    log_path = root / "prepare.json"
    log = read_json(log_path) if log_path.is_file() else {"seconds": {}}
    s0 = 0 if seed is None else seed

    def timed(step: str, fn, done: bool = False):
        if done or step in log["seconds"]:  # done before (an interruption): its cost is already recorded
            return fn()
        t = time.perf_counter()
        result = fn()
        log["seconds"][step] = round(time.perf_counter() - t, 2)
        write_json(log_path, log)
        return result

    # D⁰: the source data, or a seeded half of it when the real ×2 weights are trained beside
    half = suite.truth or suite.half_source
    d0 = source.train.head(len(source.train) // 2, seed=1000 + s0) if half else source.train
    model = timed(
        "base",
        lambda: _base_model(suite, root, source, d0, progress, device, s0, precision),
        done=base_file(suite, root).is_file(),
    )
    base_acc = evaluate_accuracy(model, source.test.batches(256, model.weightlab_cfg))
    forget_cfg = suite.forget if seed is None else replace(suite.forget, seed=seed)
    manifest = root / "trajectory" / MANIFEST
    traj = timed(
        "forgetting",
        lambda: run_forgetting(
            model,
            d0,
            root / "trajectory",
            forget_cfg,
            eval_data=source.test,
            data_info={**source.summary(), "train": len(d0)},
            progress=progress,
            device=device,
            precision=precision,
        ),
        done=manifest.is_file() and read_json(manifest).get("completed_stages", 0) == forget_cfg.stages,
    )
    info = {
        "trajectory_seed": seed,
        "base_accuracy": base_acc,
        "d0_size": len(d0),
        "model": traj.meta["model"],
        "stages": traj.meta["stages"],
        "forgetting": forgetting_check(traj.meta["stages"]),
        "predictions": {},
    }
    if suite.restart_control:
        control = timed(
            "restart_control",
            lambda: _restart_control(suite, root, source, d0, traj, forget_cfg, s0, progress, device, precision),
        )
        info["restart_control"] = control
        info["forgetting"] = forgetting_check(traj.meta["stages"], control=control, n_eval=len(source.test))
    if (
        suite.long_base
        and suite.pretrain is not None
        and (seed is None or seed in suite.trajectory_seeds[: suite.long_base])
    ):
        info["long_base"] = timed(
            "long_base", lambda: _long_base(suite, root, source, d0, s0, base_acc, progress, device, precision)
        )
    if suite.pretrain is not None and (root / "base" / "pretrain.json").is_file():
        pre = read_json(root / "base" / "pretrain.json")
        info["pretraining"] = {
            "converged": converged(pre["history"], suite.pretrain.flat_window, suite.pretrain.flat_tolerance),
            "val_accuracy": [h.get("val_accuracy") for h in pre["history"]],
        }
    pred_dir = root / "predictions"
    label = lambda k: scale_label(suite.forget.ratio, k)  # noqa: E731
    for name, display, method, options in predictor_rows(suite):
        try:
            predictor = get_predictor(method, **options)
        except WeightlabError as e:  # the authors' KNOWN without its weights (no shared folder)
            info["predictions"][name] = {"method": method, "display": display, "skipped": str(e)}
            continue
        steps = [k for k in suite.steps if predictor.unsupported(k) is None]
        if any(not (pred_dir / f"{name}_{label(k)}.safetensors").is_file() for k in steps):
            states = timed(f"predict_{name}", lambda p=predictor, st=steps: p.predict_steps(traj, st))
            for k, state in states.items():
                save_tensors(pred_dir / f"{name}_{label(k)}.safetensors", state)
        skipped = {k: predictor.unsupported(k) for k in suite.steps if predictor.unsupported(k)}
        info["predictions"][name] = {
            **predictor.describe(traj),
            "display": display,
            "steps": steps,
            "skipped": skipped,
            "seconds": log["seconds"].get(f"predict_{name}"),
        }
    if suite.incremental and suite.pretrain is not None and not suite.pretrained:
        # the faithful baseline: the base's protocol (epochs, steps, schedule, augmentation) on the nested
        # subsets of D⁰, smallest first, from a fresh initialisation
        def incremental_faithful():
            fresh = _new_model(suite, model.weightlab_cfg.num_classes, s0)
            pcfg = replace(
                suite.pretrain,
                seed=s0,
                curriculum=forget_cfg.stages,
                curriculum_ratio=forget_cfg.ratio,
                curriculum_seed=forget_cfg.seed,
            )
            _pretrain_into(suite, fresh, d0, root / "incremental", pcfg, source, progress, device, precision)
            log["incremental_accuracy"] = evaluate_accuracy(fresh, source.test.batches(256, fresh.weightlab_cfg))

        timed("incremental_pretraining", incremental_faithful, done=(root / "incremental" / PRETRAINED).is_file())
    elif suite.incremental and not (root / "incremental.safetensors").is_file():

        def incremental():
            torch.manual_seed(s0)  # a fresh initialisation, never the shared weights
            fresh = create_model(suite.model, num_classes=model.weightlab_cfg.num_classes, **suite.model_kwargs)
            state = incremental_pretraining(
                fresh, d0, forget_cfg, progress=progress, device=device, precision=precision
            )
            save_tensors(root / "incremental.safetensors", state)
            log["incremental_accuracy"] = evaluate_accuracy(fresh, source.test.batches(256, fresh.weightlab_cfg))

        timed("incremental_pretraining", incremental)
    info["incremental_accuracy"] = log.get("incremental_accuracy")
    theta0 = traj.stages[0]
    if suite.truth:
        info["truth"] = _truth(suite, root, source, traj, model, s0, timed, log, progress, device, precision)
    if suite.controls:
        info["controls"] = _shrink_controls(suite, root, model, theta0)
    info["seconds"] = dict(log["seconds"])
    return info


def _restart_control(suite, root, source, d0, traj, forget_cfg, seed, progress, device, precision) -> list[dict]:
    """The same-size restart control of one trajectory (``restart/``): from Θ⁰, the forgetting recipe with
    the same stage sizes, steps and optimiser, each epoch's samples drawn afresh from all of D⁰; its stages'
    records (D⁰ test accuracy per stage)."""
    m = _new_model(suite, traj.meta["model"]["num_classes"], seed)
    load_state_dict_strict(m, traj.stages[0], source="Θ⁰")
    ctrl = run_forgetting(
        m,
        d0,
        root / "restart",
        replace(forget_cfg, resample=True),
        eval_data=source.test,
        data_info={**source.summary(), "train": len(d0)},
        progress=progress,
        device=device,
        precision=precision,
    )
    return ctrl.meta["stages"]


def _long_base(suite, root, source, d0, seed, base_acc, progress, device, precision) -> dict:
    """The base's protocol with twice the epochs (``base_long/``): its D⁰ test accuracy beside the base's."""
    m = _new_model(suite, source.num_classes, seed)
    pcfg = replace(suite.pretrain, seed=seed, epochs=2 * suite.pretrain.epochs)
    _pretrain_into(suite, m, d0, root / "base_long", pcfg, source, progress, device, precision)
    acc = evaluate_accuracy(m, source.test.batches(256, m.weightlab_cfg))
    return {"epochs": pcfg.epochs, "accuracy": acc, "base_accuracy": base_acc, "gain": acc - base_acc}


def _truth(suite, root, source, traj, model, seed, timed, log, progress, device, precision) -> dict:
    """The real ×2 weights of one trajectory and how close every ×2 prediction comes to them."""
    theta0 = traj.stages[0]
    if not (root / "truth_ft.safetensors").is_file():

        def finetune():
            m = _new_model(suite, model.weightlab_cfg.num_classes, seed)
            load_state_dict_strict(m, theta0, source="Θ⁰")
            cfg = replace(suite.forget, seed=seed)
            state = fine_tune_stage(
                m, source.train, cfg, seed=seed, progress=progress, device=device, precision=precision
            )
            save_tensors(root / "truth_ft.safetensors", state)
            log["truth_ft_accuracy"] = evaluate_accuracy(m, source.test.batches(256, m.weightlab_cfg))

        timed("truth_finetune", finetune)
    if suite.pretrain is not None and not suite.pretrained:
        step_matched = suite.truth_scratch == "steps"

        def scratch():
            m = _new_model(suite, model.weightlab_cfg.num_classes, seed)
            pcfg = replace(suite.pretrain, seed=seed)
            if step_matched:  # half the epochs on twice the data: the base's optimiser steps
                pcfg = replace(pcfg, epochs=max(1, round(suite.pretrain.epochs / 2)))
            _pretrain_into(
                suite,
                m,
                source.train,
                root / truth_dir(suite),
                pcfg,
                source,
                progress,
                device,
                precision,
                source.summary(),
            )
            log["truth_accuracy"] = evaluate_accuracy(m, source.test.batches(256, m.weightlab_cfg))

        timed("truth_pretraining", scratch)
    out = {"d_size": len(source.train), "truth_ft_accuracy": log.get("truth_ft_accuracy"), "weight_space": {}}
    if "truth_accuracy" in log:
        out["truth_accuracy"] = log["truth_accuracy"]
    kinds = traj.kinds
    keys = [k for k in theta0 if kinds.get(k) in ("conv", "fc")]
    candidates = {"Θ¹ (stage 1, half the data)": traj.stages[1]}
    step1 = scale_label(suite.forget.ratio, 1)
    for name, display, _, _ in predictor_rows(suite):
        f = root / "predictions" / f"{name}_{step1}.safetensors"
        if f.is_file():
            candidates[f"{display} {step1}"] = load_weights(f)
    truths = {"fine-tuned on ×2": load_weights(root / "truth_ft.safetensors")}
    if (root / truth_dir(suite) / PRETRAINED).is_file():
        truths[TRUTH_NAMES[suite.truth_scratch]] = load_weights(root / truth_dir(suite) / PRETRAINED)
        candidates_scratch = {**candidates, "Θ⁰ fine-tuned on ×2": truths["fine-tuned on ×2"]}
    for tname, truth in truths.items():
        cands = candidates if tname == "fine-tuned on ×2" else candidates_scratch
        out["weight_space"][tname] = weight_space_comparison(theta0, cands, truth, keys)
    return out


def _shrink_controls(suite, root: Path, model, theta0) -> dict:
    """Θ⁰ rescaled (the same function) by the shrink factor of each step's KNOWN prediction (the
    authors' when present, else weightlab's): ``controls/shrink_x<n>.safetensors``."""
    _, keys = rescale_control(model, theta0, 1.0)
    out = {}
    for k in suite.steps:
        lab = scale_label(suite.forget.ratio, k)
        for ref in ("known_authors", "known"):
            f = root / "predictions" / f"{ref}_{lab}.safetensors"
            if f.is_file():
                break
        else:
            continue
        c = shrink_factor(theta0, load_weights(f), keys)
        path = root / "controls" / f"shrink_{lab}.safetensors"
        if not path.is_file():
            save_tensors(path, rescale_control(model, theta0, c)[0])
        out[lab] = {"factor": c, "reference": ref, "weights": len(keys)}
    return out


CONTROL_ROWS = ("naive", "incremental", "truth", "truth_steps", "truth_ft", "shrink")
TRUTH_NAMES = {"epochs": "trained on ×2 from scratch", "steps": "trained on ×2 from scratch, the base's steps"}


def truth_dir(suite: KnowSuite) -> str:
    """The folder of the ×2 weights trained from scratch (``truth/``; step-matched: ``truth_steps/``)."""
    return "truth" if suite.truth_scratch == "epochs" else "truth_steps"


ROW_LABELS = {
    "truth": "Real ×2 data, trained from scratch",
    "truth_steps": "Real ×2 data, from scratch with the base's steps",
    "truth_ft": "Real ×2 data, Θ⁰ fine-tuned on it",
    "shrink": "Shrink control (Θ⁰ rescaled by KNOWN's factor)",
}


def rows(suite: KnowSuite, out: Path) -> list[tuple[str, str, int, Path]]:
    """(row id, label, step, weights file) for every transfer row of the table, of every trajectory
    (ids ``t<seed>/<row>`` when the suite has trajectory seeds)."""
    r = []
    for seed, root in trajectories(suite, out):
        prefix = "" if seed is None else f"t{seed}/"
        r.append((prefix + "naive", "Naive transfer", 0, root / "trajectory" / "stage_00.safetensors"))
        if suite.incremental:
            r.append((prefix + "incremental", "Incremental pretraining", 0, incremental_file(suite, root)))
        for k in suite.steps:
            lab = scale_label(suite.forget.ratio, k)
            extra = []
            if suite.truth and k == 1:
                extra += [
                    (truth_dir(suite), root / truth_dir(suite) / PRETRAINED),
                    ("truth_ft", root / "truth_ft.safetensors"),
                ]
            if suite.controls:
                extra.append(("shrink", root / "controls" / f"shrink_{lab}.safetensors"))
            for row, f in extra:
                if f.is_file():
                    r.append((f"{prefix}{row}_{lab}", ROW_LABELS[row], k, f))
            for name, display, _, _ in predictor_rows(suite):
                f = root / "predictions" / f"{name}_{lab}.safetensors"
                if f.is_file():
                    r.append((prefix + f.stem, display, k, f))
    return r
