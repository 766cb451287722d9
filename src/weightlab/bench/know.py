"""The KNOW transfer benchmark (the paper's Table 1, sized for two CPU cores).

A suite fixes a source model and data set D⁰, the forgetting protocol, a downstream task, the
transfer schedule, the predictors and the seeds. ``run_suite`` does, resumably, in ``out_dir``:

1. ``base.safetensors``: Θ before forgetting (the shared pretrained weights, or pretrained here; with
   the suite's ``pretrain`` protocol, ``base/`` from :func:`weightlab.know.pretrain.pretrain`);
2. ``trajectory/``: progressive forgetting (:func:`run_forgetting`);
3. ``predictions/<method>_x<n>.safetensors``: every predictor at every step (timed);
4. ``incremental.safetensors``: the incremental-pretraining baseline (with the suite's ``pretrain``
   protocol ``incremental/``: the base's epochs, steps and schedule on the nested subsets, smallest first);
5. with ``truth``: ``truth/`` (trained from scratch on twice D⁰) and ``truth_ft.safetensors`` (Θ⁰
   fine-tuned on it), the real ×2 weights, and the weight-space comparison of every ×2 prediction;
   with ``controls``: ``controls/shrink_x<n>.safetensors`` (Θ⁰ rescaled, the same function);
6. ``results.json``: one transfer run per (row, seed), appended atomically after each run;
7. ``results.md`` (Table 1 layout: mean ± std, the gain over naive transfer and whether it is beyond
   the noise, the chosen learning rates; the time cost of Table 7; the weight-space table) and
   ``trajectory_pca.png`` (trajectory and predictions on the first two principal components, Fig. 3);
   with ``known_variants`` (KNOWN sets of other history lengths S) also the paper's Table 6 layout and
   ``s_ablation.png`` (each S's paired gains over naive transfer).

Steps 1-5 run once per trajectory seed (``traj_<seed>/``) when the suite has ``trajectory_seeds``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from weightlab.bench.suites import ALL_PREDICTORS, KNOW_SUITES, KnowSuite, get_know_suite
from weightlab.data.tasks import SplitSizes, build_task
from weightlab.engine import evaluate_accuracy, fit_classifier
from weightlab.errors import WeightlabError
from weightlab.io import check_resume, check_writable, load_weights, read_json, save_tensors, write_json, write_text
from weightlab.know.controls import rescale_control, shrink_factor, weight_space_comparison
from weightlab.know.forgetting import fine_tune_stage, forgetting_check, incremental_pretraining, run_forgetting
from weightlab.know.predictors import display_name, get_predictor
from weightlab.know.pretrain import WEIGHTS as PRETRAINED
from weightlab.know.pretrain import converged, pretrain
from weightlab.know.trajectory import MANIFEST, scale_label
from weightlab.know.transfer import TransferConfig, run_transfers
from weightlab.machine import machine
from weightlab.models import create_model, load_state_dict_strict

SUITES = KNOW_SUITES
get_suite = get_know_suite


def _suite_record(suite: KnowSuite) -> dict:
    """The suite as plain JSON values (tuples become lists), as it is stored in results.json."""
    import json

    d = asdict(suite)
    d.pop("description")
    # recorded only when set (results made before these fields resume)
    for key, default in (("known_weights", None), ("known_variants", ()), ("half_source", False)):
        if d[key] == default:
            d.pop(key)
    if suite.pretrain is not None:
        d["pretrain"] = suite.pretrain.to_dict()
    return json.loads(json.dumps(d))


def _sizes(train, test) -> SplitSizes:
    return SplitSizes(train=train, val=0, test=test)


def _trajectories(suite: KnowSuite, out: Path) -> list[tuple[int | None, Path]]:
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


def _base_model(
    suite: KnowSuite, root: Path, source, d0, progress: bool, device: str | None, seed: int, precision: str = "fp32"
):
    """Θ⁰: the shared pretrained weights, or pretrained here on ``d0`` (the converged protocol when the
    suite has ``pretrain``, into ``root/base/``), initialised with ``seed``."""
    model = _new_model(suite, source.num_classes, seed)
    if suite.pretrain is not None and not suite.pretrained:
        pretrain(
            model,
            d0,
            root / "base",
            replace(suite.pretrain, seed=seed),
            val=source.val if suite.source_val else None,
            data_info={**source.summary(), "train": len(d0)},
            progress=progress,
            device=device,
            precision=precision,
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
        out.append((name, display_name(name), name, options))
    out += [(name, display, "known", {"weights": folder}) for name, display, folder in suite.known_variants]
    return out


def incremental_file(suite: KnowSuite, root: Path) -> Path:
    """The incremental-pretraining baseline's weights (the faithful one: ``incremental/`` like a base)."""
    if suite.pretrain is not None and not suite.pretrained:
        return root / "incremental" / PRETRAINED
    return root / "incremental.safetensors"


def base_file(suite: KnowSuite, root: Path) -> Path:
    return (
        root / "base" / PRETRAINED if suite.pretrain is not None and not suite.pretrained else root / "base.safetensors"
    )


def _source(suite: KnowSuite, data_root: Path | None):
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
    source = _source(suite, data_root)
    trajs = _trajectories(suite, out)
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
            pretrain(
                fresh,
                d0,
                root / "incremental",
                pcfg,
                val=source.val if suite.source_val else None,
                data_info={**source.summary(), "train": len(d0)},
                progress=progress,
                device=device,
                precision=precision,
            )
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

        def scratch():
            m = _new_model(suite, model.weightlab_cfg.num_classes, seed)
            pretrain(
                m,
                source.train,
                root / "truth",
                replace(suite.pretrain, seed=seed),
                val=source.val if suite.source_val else None,
                data_info=source.summary(),
                progress=progress,
                device=device,
                precision=precision,
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
    if (root / "truth" / PRETRAINED).is_file():
        truths["trained on ×2 from scratch"] = load_weights(root / "truth" / PRETRAINED)
        candidates_scratch = {**candidates, "Θ⁰ fine-tuned on ×2": truths["fine-tuned on ×2"]}
    for tname, truth in truths.items():
        cands = candidates_scratch if tname.endswith("scratch") else candidates
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


CONTROL_ROWS = ("naive", "incremental", "truth", "truth_ft", "shrink")
# the order transfer runs are done in: controls and the KNOWNs first, every trajectory of a row together,
# so a suite stopped early has its key rows complete over the trajectories (the table's order is separate)
SCHEDULE = CONTROL_ROWS + ("known_authors", "known", "task_vector", "tsv", "linear_fit", "magmax", "consensus_ta")


def _schedule_key(row: tuple[str, str, int, Path]) -> tuple:
    name = _row_name(row[0])
    base = name.rsplit("_x", 1)[0] if row[2] else name
    return (SCHEDULE.index(base) if base in SCHEDULE else len(SCHEDULE), row[2], row[0])


ROW_LABELS = {
    "truth": "Real ×2 data, trained from scratch",
    "truth_ft": "Real ×2 data, Θ⁰ fine-tuned on it",
    "shrink": "Shrink control (Θ⁰ rescaled by KNOWN's factor)",
}


def rows(suite: KnowSuite, out: Path) -> list[tuple[str, str, int, Path]]:
    """(row id, label, step, weights file) for every transfer row of the table, of every trajectory
    (ids ``t<seed>/<row>`` when the suite has trajectory seeds)."""
    r = []
    for seed, root in _trajectories(suite, out):
        prefix = "" if seed is None else f"t{seed}/"
        r.append((prefix + "naive", "Naive transfer", 0, root / "trajectory" / "stage_00.safetensors"))
        if suite.incremental:
            r.append((prefix + "incremental", "Incremental pretraining", 0, incremental_file(suite, root)))
        for k in suite.steps:
            lab = scale_label(suite.forget.ratio, k)
            extra = []
            if suite.truth and k == 1:
                extra += [("truth", root / "truth" / PRETRAINED), ("truth_ft", root / "truth_ft.safetensors")]
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


def run_suite(
    name: str | KnowSuite,
    out_dir: str | Path,
    *,
    progress: bool = True,
    seeds: tuple[int, ...] | None = None,
    transfer_cfg: TransferConfig | None = None,
    data_root: Path | None = None,
    device: str | None = None,
    precision: str = "fp32",
    backend=None,
) -> dict:
    """Run (or resume) a KNOW suite into ``out_dir``: prepare (base, trajectory, predictions), then every
    transfer row with every seed, each run appended to results.json as it finishes (the runs spread over
    ``backend``, a :class:`weightlab.parallel.Backend`; default serial). Training runs on ``device``
    (default CPU) in ``precision``."""
    suite = name if isinstance(name, KnowSuite) else get_suite(name)
    name = suite.name
    if seeds:
        suite = replace(suite, seeds=tuple(seeds))
    if transfer_cfg is not None:
        suite = replace(suite, transfer=transfer_cfg)
    if suite.known_weights is not None and not Path(suite.known_weights).is_dir():
        raise WeightlabError(f"known_weights {suite.known_weights}: not a folder of KNOWN weights")
    for _, display, folder in suite.known_variants:
        if not Path(folder).is_dir():
            raise WeightlabError(
                f"{display}: its KNOWN weights {folder} are not a folder (run the suite from the repository root)"
            )
    out = check_writable(out_dir)
    results_path = out / "results.json"
    record = _suite_record(suite)
    if results_path.is_file():
        results = read_json(results_path)
        if results.get("suite") != record:
            raise WeightlabError(f"{results_path}: made with another suite configuration; use a new output folder")
    else:
        results = {"suite": record, "description": suite.description, "machine": machine(), "runs": []}
    target = build_task(
        suite.target, data_root, sizes=_sizes(suite.target_train, suite.target_test), stream=suite.stream
    )
    # the target data the transfer runs read (D⁰'s is checked by the trajectory): other data is refused
    inputs = {"target_sha256": target.fingerprint()}
    check_resume(results_path, results, {"inputs": inputs}, "resume with the same data, or use a new output folder")
    results["inputs"] = inputs
    results["target"] = target.summary()  # its split sizes (a test image is 100 / test points)
    results["prepare"] = prepare(suite, out, progress, data_root, device, precision)
    results["prepare_seconds"] = round(sum(results["prepare"]["seconds"].values()), 1)
    write_json(results_path, results)
    model_cfg = _infos(results["prepare"])[0][1]["model"]
    done = {(r["row"], r["seed"]) for r in results["runs"]}
    table_rows = rows(suite, out)
    order = {(row[0], seed): n for n, (row, seed) in enumerate((r, s) for r in table_rows for s in suite.seeds)}
    for record in run_transfers(
        sorted(table_rows, key=_schedule_key),
        model_cfg,
        target.train,
        target.test,
        suite.transfer,
        suite.seeds,
        done=done,
        progress=progress,
        device=device,
        precision=precision,
        backend=backend,
    ):
        if "/" in record["row"]:
            record["trajectory"] = int(record["row"].split("/", 1)[0][1:])
        results["runs"].append(record)
        # in the table's order (rows, then seeds), whatever order the workers finish in
        results["runs"].sort(key=lambda r: order.get((r["row"], r["seed"]), len(order)))
        write_json(results_path, results)
    results["target"] = target.summary()
    write_json(results_path, results)
    write_report(results, out)
    return results


def _infos(prep: dict) -> list[tuple[int | None, dict]]:
    """(trajectory seed, prepare record) of every trajectory in ``results["prepare"]``."""
    if "trajectories" in prep:
        return [(int(k), v) for k, v in prep["trajectories"].items()]
    return [(None, prep)] if prep else []


def _row_name(row_id: str) -> str:
    return row_id.split("/", 1)[-1]


def _std(values: list[float]) -> float:
    return float(torch.tensor(values, dtype=torch.float64).std()) if len(values) > 1 else 0.0


def _paired(diffs: list[float]) -> dict | None:
    """Mean ± std of the paired differences with naive transfer (same trajectory and transfer seed) and
    a two-sided paired t-test at 5 %; None with fewer than two pairs."""
    if len(diffs) < 2:
        return None
    from scipy import stats

    mean, std = sum(diffs) / len(diffs), _std(diffs)
    if std == 0.0:
        p = 0.0 if mean != 0.0 else 1.0
    else:
        t = mean / (std / len(diffs) ** 0.5)
        p = float(2 * stats.t.sf(abs(t), len(diffs) - 1))
    return {"mean": mean, "std": std, "n": len(diffs), "p": p, "significant": p < 0.05}


def summarize(results: dict) -> list[dict]:
    """One entry per table row over every trajectory and transfer seed: mean ± std of the test accuracy,
    the std of the per-trajectory means, the gain over naive transfer, the paired differences with naive
    (same trajectory, same seed: mean ± std, n, p) and whether the gain is beyond the noise (the paired
    t-test at 5 %; without pairs, more than the larger of the two rows' stds), and the learning rates the
    validation chose."""
    by_row: dict[str, list[dict]] = {}
    for r in results["runs"]:
        by_row.setdefault(_row_name(r["row"]), []).append(r)
    table = []
    naive = by_row.get("naive")
    naive_mean = sum(r["accuracy"] for r in naive) / len(naive) if naive else None
    naive_std = _std([r["accuracy"] for r in naive]) if naive else 0.0
    naive_by_pair = {(r.get("trajectory"), r["seed"]): r["accuracy"] for r in naive or []}
    for row, runs in by_row.items():
        accs = [r["accuracy"] for r in runs]
        mean, std = sum(accs) / len(accs), _std(accs)
        per_traj: dict = {}
        for r in runs:
            per_traj.setdefault(r.get("trajectory"), []).append(r["accuracy"])
        lrs: dict[str, int] = {}
        for r in runs:
            if "lr_selection" in r:
                key = f"{r['lr_selection']['lr']:g}"
                lrs[key] = lrs.get(key, 0) + 1
        gain = None if naive_mean is None else mean - naive_mean
        diffs = [
            r["accuracy"] - naive_by_pair[(r.get("trajectory"), r["seed"])]
            for r in runs
            if (r.get("trajectory"), r["seed"]) in naive_by_pair
        ]
        paired = _paired(diffs) if row != "naive" else None
        if paired is not None:
            beyond = paired["significant"]
        else:
            beyond = None if gain is None or row == "naive" else abs(gain) > max(std, naive_std)
        table.append(
            {
                "row": row,
                "label": runs[0]["label"],
                "step": runs[0]["step"],
                "seeds": len(runs),
                "trajectories": len(per_traj),
                "mean": mean,
                "std": std,
                "trajectory_std": _std([sum(v) / len(v) for v in per_traj.values()]),
                "gain": gain,
                "paired": paired,
                "beyond_noise": beyond,
                "lr": lrs,
            }
        )
    return table


def _forgetting_line(check: dict | None) -> str:
    """The trajectory's forgetting, stated beside every table built on it."""
    if not check or check.get("forgets") is None:
        return "**forgetting: unknown** (the trajectory's stages were not evaluated on the D⁰ test split)."
    acc = " → ".join(f"{a:.2f}" for a in check["accuracy"])
    if check["forgets"]:
        return f"**forgetting: yes**: D⁰ test accuracy per stage {acc}."
    return (
        f"**forgetting: no**: D⁰ test accuracy per stage {acc} does not fall, so this trajectory does not "
        "test KNOW's hypothesis (retrodiction here rewinds training, not forgetting)."
    )


def _row_order(row: str, step: int) -> tuple:
    base = row.rsplit("_x", 1)[0] if step else row
    order = CONTROL_ROWS + ALL_PREDICTORS
    return (step, order.index(base) if base in order else len(order), row)


def write_report(results: dict, out: Path) -> None:
    table = summarize(results)
    suite = results["suite"]
    infos = _infos(results.get("prepare", {}))
    f = suite["forget"]
    multi = len(infos) > 1
    lines = [
        f"# KNOW transfer: {suite['name']}",
        "",
        results.get("description", ""),
        "",
        f"Source {suite['source']} ({suite['model']}), downstream {suite['target']}; "
        f"forgetting r={f['ratio']}, S={f['stages']}, {f['epochs']} epoch(s)/stage, {f['optimizer']} lr {f['lr']}"
        + (f", augmentation {f['augment']}" if f.get("augment") else "")
        + f"; transfer {suite['transfer']['warmup_epochs']} warm-up + {suite['transfer']['epochs']} epochs"
        + (
            f", learning rate chosen per run from {list(suite['transfer']['lr_grid'])} on a "
            f"{suite['transfer']['val_fraction']:.0%} validation split of the downstream training data "
            "(the test split is read once, at that rate)"
            if suite["transfer"].get("lr_grid")
            else f", lr {suite['transfer']['lr']} (not tuned)"
        )
        + ". Test accuracy (%) at the end of transfer, mean ± std over "
        + (f"{len(infos)} trajectories × {len(suite['seeds'])} transfer seeds" if multi else "seeds")
        + ".",
        "",
    ]
    for seed, info in infos:
        prefix = f"Trajectory {seed}: " if multi else ""
        lines.append(prefix + _forgetting_line(forgetting_check(info.get("stages", []))))
    lines += [
        "",
        "| pred. | method | runs | accuracy | "
        + ("between-trajectory std | " if multi else "")
        + "gain vs naive | beyond noise | chosen lr |",
        "|---|---|---|---|" + ("---|" if multi else "") + "---|---|---|",
    ]
    for row in sorted(table, key=lambda r: _row_order(r["row"], r["step"])):
        pred = "x1" if row["step"] == 0 else scale_label(f["ratio"], row["step"])
        gain = "" if row["row"] == "naive" or row["gain"] is None else f"{row['gain']:+.2f}"
        if row.get("paired"):
            gain = f"{row['paired']['mean']:+.2f} ± {row['paired']['std']:.2f} (p {row['paired']['p']:.2g})"
        noise = {None: "", True: "yes", False: "no"}[row["beyond_noise"]]
        lr = ", ".join(f"{k}×{v}" for k, v in sorted(row["lr"].items(), key=lambda kv: float(kv[0])))
        lines.append(
            f"| {pred} | {row['label']} | {row['seeds']} | {row['mean']:.2f} ± {row['std']:.2f} | "
            + (f"{row['trajectory_std']:.2f} | " if multi else "")
            + f"{gain} | {noise} | {lr} |"
        )
    lines += _s_table_lines(table, suite, f["ratio"], infos)
    run_s = sum(r.get("seconds", 0.0) for r in results["runs"])
    lines += [
        "",
        "Gain vs naive: the mean ± std of the paired differences with naive transfer (same trajectory, same "
        "transfer seed), with the p-value of a two-sided paired t-test; 'beyond noise' is p < 0.05 (rows "
        "without pairs: the gain exceeds the larger of the two rows' stds). With "
        f"{sum(1 for r in table if r.get('paired'))} rows tested, about "
        f"{0.05 * sum(1 for r in table if r.get('paired')):.1f} 'yes' are expected by chance alone.",
        "",
        f"Wall time on {results['machine'].get('cpu')} ({results['machine'].get('cores')} cores): "
        f"preparation (pretraining, forgetting, predictions, baselines) "
        f"{results.get('prepare_seconds', 0):.0f} s, {len(results['runs'])} transfer runs {run_s:.0f} s.",
    ]
    lines += _time_cost_lines(infos)
    for seed, info in infos:
        lines += _trajectory_lines(seed, info, multi)
    lines += _weight_space_lines(infos)
    if infos:
        preds = infos[0][1].get("predictions", {})
        if preds:
            lines += ["", "Parameters each predictor changes (by kind; everything else is copied from Θ⁰):", ""]
            for n, p in preds.items():
                display = p.get("display") or display_name(n)
                if isinstance(p.get("skipped"), str):
                    lines.append(f"- {display}: not run ({p['skipped']})")
                else:
                    extra = "; ".join(f"step {k} not defined: {why}" for k, why in p.get("skipped", {}).items())
                    lines.append(f"- {display}: {p.get('touched')}" + (f" ({extra})" if extra else ""))
    write_text(out / "results.md", "\n".join(lines) + "\n")
    variants = suite.get("known_variants") or []
    try:
        from weightlab.bench.know_plots import plot_trajectory_pca

        root = out if not multi else out / f"traj_{infos[0][0]}"
        labels = {name: label for name, label, _ in variants}
        plot_trajectory_pca(root / "trajectory", root / "predictions", out / "trajectory_pca.png", labels)
    except WeightlabError:
        pass
    if variants:
        _plot_s_ablation(results, variants, f["ratio"], out / "s_ablation.png")


def _s_table_lines(table: list[dict], suite: dict, ratio: float, infos) -> list[str]:
    """The paper's Table 6 layout for a suite with KNOWN variants: one line per history length S (S=2 is
    Task Vector, as in the paper), one column per prediction step, the paired gain over naive below."""
    variants = suite.get("known_variants") or []
    if not variants:
        return []
    by_row = {r["row"]: r for r in table}
    steps = sorted({r["step"] for r in table if r["step"]})
    lines = [
        "",
        "Table 6 layout: test accuracy by history length S (mean ± std; in brackets the paired gain over naive "
        "transfer, * when p < 0.05):",
        "",
        "| S | predictor | " + " | ".join(scale_label(ratio, k) for k in steps) + " |",
        "|---|---|" + "---|" * len(steps),
    ]
    preds = infos[0][1].get("predictions", {}) if infos else {}
    seq_len = lambda name: (preds.get(name, {}).get("options") or {}).get("seq_len", "?")  # noqa: E731
    candidates = [("2", "Task Vector", "task_vector")] + [(seq_len(name), label, name) for name, label, _ in variants]
    for s_len, label, name in candidates:
        cells = []
        for k in steps:
            r = by_row.get(f"{name}_{scale_label(ratio, k)}")
            if r is None:
                cells.append("")
                continue
            cell = f"{r['mean']:.2f} ± {r['std']:.2f}"
            if r.get("paired"):
                cell += f" ({r['paired']['mean']:+.2f}{'*' if r['paired']['significant'] else ''})"
            cells.append(cell)
        if any(cells):
            lines.append(f"| {s_len} | {label} | " + " | ".join(cells) + " |")
    return lines


def _plot_s_ablation(results: dict, variants, ratio: float, path: Path) -> None:
    """The Table 6 rows as paired differences with naive transfer, one panel per step."""
    from weightlab.bench.know_plots import plot_paired_gains

    naive = {(r.get("trajectory"), r["seed"]): r["accuracy"] for r in results["runs"] if _row_name(r["row"]) == "naive"}
    rows = []
    for name, label in [("task_vector", "S=2 (Task Vector)")] + [(n, lab) for n, lab, _ in variants]:
        diffs: dict[str, list[float]] = {}
        for r in results["runs"]:
            row = _row_name(r["row"])
            base, _, step = row.rpartition("_")
            if base == name and (r.get("trajectory"), r["seed"]) in naive:
                diffs.setdefault(step, []).append(r["accuracy"] - naive[(r.get("trajectory"), r["seed"])])
        if diffs:
            rows.append((label, diffs))
    if rows:
        plot_paired_gains(rows, path, "History length S (Table 6): paired gain over naive transfer, mean ± std")


def _trajectory_lines(seed, info: dict, multi: bool) -> list[str]:
    title = f"Trajectory {seed}" if multi else "Forgetting trajectory"
    lines = ["", f"{title} (accuracy on the source test split):", ""]
    pre = info.get("pretraining")
    if pre:
        acc = [a for a in pre["val_accuracy"] if a is not None]
        lines += [
            f"Θ⁰ pretrained to {info.get('base_accuracy', float('nan')):.2f} on D⁰ = {info.get('d0_size')} samples "
            f"(validation curve, last 5 epochs: {', '.join(f'{a:.1f}' for a in acc[-5:])}; "
            f"{'flattened' if pre.get('converged') else 'not flattened'}).",
            "",
        ]
    lines += ["| stage | samples | accuracy |", "|---|---|---|"]
    lines += [
        f"| {s['stage']} | {s['subset_size']} | {s.get('eval_accuracy', float('nan')):.2f} |"
        for s in info.get("stages", [])
    ]
    if info.get("incremental_accuracy") is not None:
        lines += ["", f"Incremental pretraining on the source test split: {info['incremental_accuracy']:.2f}."]
    truth = info.get("truth")
    if truth:
        parts = [f"Θ⁰ fine-tuned on all {truth['d_size']} samples: {truth.get('truth_ft_accuracy', float('nan')):.2f}"]
        if truth.get("truth_accuracy") is not None:
            parts.append(f"trained on them from scratch: {truth['truth_accuracy']:.2f}")
        lines += ["", "Real ×2 weights on the source test split: " + "; ".join(parts) + "."]
    controls = info.get("controls")
    if controls:
        lines += [
            "",
            "Shrink control factors (least-squares c with prediction ≈ c·Θ⁰ over the BatchNorm-fed weights): "
            + ", ".join(f"{k} {v['factor']:.3f} ({display_name(v['reference'])})" for k, v in controls.items())
            + ".",
        ]
    return lines


def _time_cost_lines(infos) -> list[str]:
    """The paper's Table 7: what KNOW costs against training on twice the data."""
    secs = [info.get("seconds", {}) for _, info in infos]
    if not any("truth_pretraining" in s for s in secs):
        return []
    mean = lambda key: sum(s.get(key, 0.0) for s in secs) / len(secs)  # noqa: E731
    predict = sum(sum(v for k, v in s.items() if k.startswith("predict_")) for s in secs) / len(secs)
    return [
        "",
        "Time cost per trajectory (the paper's Table 7; mean wall seconds on this machine):",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| pretraining Θ⁰ on D⁰ | {mean('base'):.0f} |",
        f"| progressive forgetting | {mean('forgetting'):.0f} |",
        f"| every prediction (all predictors, all steps) | {predict:.1f} |",
        f"| training on ×2 data from scratch (the alternative) | {mean('truth_pretraining'):.0f} |",
    ]


def _weight_space_lines(infos) -> list[str]:
    """The Fig. 3 claim measured: each ×2 candidate against the real ×2 weights, mean ± std over trajectories."""
    per: dict[tuple[str, str], list[dict]] = {}
    for _, info in infos:
        for tname, comp in (info.get("truth") or {}).get("weight_space", {}).items():
            for cand, m in comp.items():
                per.setdefault((tname, cand), []).append(m)
    if not per:
        return []
    lines = [
        "",
        "Weight space against the real ×2 weights Θ⁻¹ (conv and linear weights, head excluded; mean ± std over "
        "trajectories). cosine: per output channel, cos(Θ̂ − Θ⁰, Θ⁻¹ − Θ⁰), averaged; distance: ‖Θ̂ − Θ⁻¹‖ / "
        "‖Θ⁰ − Θ⁻¹‖ (< 1: closer to the truth than Θ⁰); step: ‖Θ̂ − Θ⁰‖ / ‖Θ⁻¹ − Θ⁰‖.",
        "",
        "| Θ⁻¹ | candidate | cosine | distance | step |",
        "|---|---|---|---|---|",
    ]

    def cell(ms: list[dict], key: str) -> str:
        return f"{sum(m[key] for m in ms) / len(ms):.3f} ± {_std([m[key] for m in ms]):.3f}"

    for (tname, cand), ms in per.items():
        lines.append(
            f"| {tname} | {cand} | {cell(ms, 'cosine')} | {cell(ms, 'relative_distance')} | {cell(ms, 'step')} |"
        )
    return lines
