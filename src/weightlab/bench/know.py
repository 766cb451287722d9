"""The KNOW transfer benchmark (the paper's Table 1, sized for two CPU cores).

A suite fixes a source model and data set D⁰, the forgetting protocol, a downstream task, the
transfer schedule, the predictors and the seeds. ``run_suite`` does, resumably, in ``out_dir``:

1. ``base.safetensors``: Θ before forgetting (the shared pretrained weights, or pretrained here);
2. ``trajectory/``: progressive forgetting (:func:`run_forgetting`);
3. ``predictions/<method>_x<n>.safetensors``: every predictor at every step (timed);
4. ``incremental.safetensors``: the incremental-pretraining baseline;
5. ``results.json``: one transfer run per (row, seed), appended atomically after each run;
6. ``results.md`` (Table 1 layout: mean ± std and the gain over naive transfer) and
   ``trajectory_pca.png`` (trajectory and predictions on the first two principal components, Fig. 3).
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
from weightlab.io import load_weights, read_json, save_tensors, write_json, write_text
from weightlab.know.forgetting import forgetting_check, incremental_pretraining, run_forgetting
from weightlab.know.predictors import DISPLAY, get_predictor
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
    return json.loads(json.dumps(d))


def _sizes(train, test) -> SplitSizes:
    return SplitSizes(train=train, val=0, test=test)


def _base_model(suite: KnowSuite, out: Path, source, progress: bool, device: str | None = None):
    torch.manual_seed(0)  # the initialisation of a model pretrained here does not depend on earlier work
    model = create_model(
        suite.model,
        pretrained=suite.pretrained,
        num_classes=None if suite.pretrained else source.num_classes,
        **suite.model_kwargs,
    )
    cfg = model.weightlab_cfg
    path = out / "base.safetensors"
    if path.is_file():
        load_state_dict_strict(model, load_weights(path), source=str(path))
    else:
        if not suite.pretrained:
            torch.manual_seed(0)
            fit_classifier(
                model,
                source.train,
                cfg,
                epochs=suite.pretrain_epochs,
                lr=suite.pretrain_lr,
                batch_size=64,
                seed=0,
                progress=progress,
                device=device,
            )
        save_tensors(path, model.state_dict())
    return model


def prepare(
    suite: KnowSuite,
    out: Path,
    progress: bool = True,
    data_root: Path | None = None,
    device: str | None = None,
    precision: str = "fp32",
) -> dict:
    """Steps 1-4: base, trajectory, predictions, incremental baseline (each skipped when present); the
    training steps run on ``device`` (default CPU) in ``precision``.

    ``prepare.json`` in ``out`` keeps what each step measured when it actually ran (wall seconds,
    accuracies), so a resumed suite still reports the cost of the work done before the interruption."""
    log_path = out / "prepare.json"
    log = read_json(log_path) if log_path.is_file() else {"seconds": {}}

    def timed(step: str, fn):
        t = time.perf_counter()
        result = fn()
        log["seconds"][step] = round(time.perf_counter() - t, 2)
        write_json(log_path, log)
        return result

    source = build_task(suite.source, data_root, sizes=_sizes(suite.source_train, suite.eval_size), stream=suite.stream)
    if (out / "base.safetensors").is_file():
        model = _base_model(suite, out, source, progress, device)
    else:
        model = timed("base", lambda: _base_model(suite, out, source, progress, device))
    base_acc = evaluate_accuracy(model, source.test.batches(256, model.weightlab_cfg))
    forget = lambda: run_forgetting(
        model,
        source.train,
        out / "trajectory",
        suite.forget,  # noqa: E731
        eval_data=source.test,
        data_info=source.summary(),
        progress=progress,
        device=device,
        precision=precision,
    )
    manifest = out / "trajectory" / MANIFEST
    done = read_json(manifest).get("completed_stages", 0) if manifest.is_file() else 0
    traj = forget() if done == suite.forget.stages else timed(f"forgetting_from_stage_{done}", forget)
    info = {
        "base_accuracy": base_acc,
        "model": traj.meta["model"],
        "stages": traj.meta["stages"],
        "forgetting": forgetting_check(traj.meta["stages"]),
        "predictions": {},
    }
    pred_dir = out / "predictions"
    for name in suite.predictors:
        try:
            predictor = get_predictor(name)
        except WeightlabError as e:  # the authors' KNOWN without its weights (no shared folder)
            info["predictions"][name] = {"method": name, "skipped": str(e)}
            continue
        steps = [k for k in suite.steps if predictor.unsupported(k) is None]
        label = lambda k: scale_label(suite.forget.ratio, k)  # noqa: E731
        if any(not (pred_dir / f"{name}_{label(k)}.safetensors").is_file() for k in steps):
            states = timed(f"predict_{name}", lambda p=predictor, st=steps: p.predict_steps(traj, st))
            for k, state in states.items():
                save_tensors(pred_dir / f"{name}_{label(k)}.safetensors", state)
        skipped = {k: predictor.unsupported(k) for k in suite.steps if predictor.unsupported(k)}
        info["predictions"][name] = {
            **predictor.describe(traj),
            "steps": steps,
            "skipped": skipped,
            "seconds": log["seconds"].get(f"predict_{name}"),
        }
    if suite.incremental and not (out / "incremental.safetensors").is_file():

        def incremental():
            torch.manual_seed(0)
            fresh = create_model(suite.model, num_classes=model.weightlab_cfg.num_classes, **suite.model_kwargs)
            state = incremental_pretraining(
                fresh, source.train, suite.forget, progress=progress, device=device, precision=precision
            )
            save_tensors(out / "incremental.safetensors", state)
            log["incremental_accuracy"] = evaluate_accuracy(fresh, source.test.batches(256, fresh.weightlab_cfg))

        timed("incremental_pretraining", incremental)
    info["incremental_accuracy"] = log.get("incremental_accuracy")
    info["seconds"] = dict(log["seconds"])
    return info


def rows(suite: KnowSuite, out: Path) -> list[tuple[str, str, int, Path]]:
    """(row id, label, step, weights file) for every transfer row of the table."""
    r = [("naive", "Naive transfer", 0, out / "trajectory" / "stage_00.safetensors")]
    if suite.incremental:
        r.append(("incremental", "Incremental pretraining", 0, out / "incremental.safetensors"))
    for k in suite.steps:
        for name in suite.predictors:
            f = out / "predictions" / f"{name}_{scale_label(suite.forget.ratio, k)}.safetensors"
            if f.is_file():
                r.append((f.stem, DISPLAY[name], k, f))
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
    out = Path(out_dir)
    results_path = out / "results.json"
    record = _suite_record(suite)
    if results_path.is_file():
        results = read_json(results_path)
        if results.get("suite") != record:
            raise WeightlabError(f"{results_path}: made with another suite configuration; use a new output folder")
    else:
        results = {"suite": record, "description": suite.description, "machine": machine(), "runs": []}
    results["prepare"] = prepare(suite, out, progress, data_root, device, precision)
    results["prepare_seconds"] = round(sum(results["prepare"]["seconds"].values()), 1)
    write_json(results_path, results)
    target = build_task(
        suite.target, data_root, sizes=_sizes(suite.target_train, suite.target_test), stream=suite.stream
    )
    model_cfg = results["prepare"]["model"]
    done = {(r["row"], r["seed"]) for r in results["runs"]}
    table_rows = rows(suite, out)
    order = {(row[0], seed): n for n, (row, seed) in enumerate((r, s) for r in table_rows for s in suite.seeds)}
    for record in run_transfers(
        table_rows,
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
        results["runs"].append(record)
        # in the table's order (rows, then seeds), whatever order the workers finish in
        results["runs"].sort(key=lambda r: order.get((r["row"], r["seed"]), len(order)))
        write_json(results_path, results)
    results["target"] = target.summary()
    write_json(results_path, results)
    write_report(results, out)
    return results


def summarize(results: dict) -> list[dict]:
    by_row: dict[str, list[dict]] = {}
    for r in results["runs"]:
        by_row.setdefault(r["row"], []).append(r)
    table = []
    naive = by_row.get("naive")
    naive_mean = sum(r["accuracy"] for r in naive) / len(naive) if naive else None
    for row, runs in by_row.items():
        accs = torch.tensor([r["accuracy"] for r in runs], dtype=torch.float64)
        mean = float(accs.mean())
        std = float(accs.std()) if len(accs) > 1 else 0.0
        table.append(
            {
                "row": row,
                "label": runs[0]["label"],
                "step": runs[0]["step"],
                "seeds": len(runs),
                "mean": mean,
                "std": std,
                "gain": None if naive_mean is None else mean - naive_mean,
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


def write_report(results: dict, out: Path) -> None:
    table = summarize(results)
    suite = results["suite"]
    lines = [
        f"# KNOW transfer: {suite['name']}",
        "",
        results.get("description", ""),
        "",
        f"Source {suite['source']} ({suite['model']}), downstream {suite['target']}; "
        f"forgetting r={suite['forget']['ratio']}, "
        f"S={suite['forget']['stages']}, {suite['forget']['epochs']} epoch(s)/stage, {suite['forget']['optimizer']} "
        f"lr {suite['forget']['lr']}; transfer {suite['transfer']['warmup_epochs']} warm-up + "
        f"{suite['transfer']['epochs']} epochs. Test accuracy (%) at the end of transfer, mean ± std over seeds.",
        "",
        _forgetting_line(forgetting_check(results.get("prepare", {}).get("stages", []))),
        "",
        "| pred. | method | seeds | accuracy | gain vs naive |",
        "|---|---|---|---|---|",
    ]
    for row in sorted(
        table,
        key=lambda r: (
            r["step"],
            ALL_PREDICTORS.index(r["row"].rsplit("_x", 1)[0]) if r["step"] else (0 if r["row"] == "naive" else 1),
        ),
    ):
        pred = "x1" if row["step"] == 0 else scale_label(suite["forget"]["ratio"], row["step"])
        gain = "" if row["row"] == "naive" or row["gain"] is None else f"{row['gain']:+.2f}"
        lines.append(f"| {pred} | {row['label']} | {row['seeds']} | {row['mean']:.2f} ± {row['std']:.2f} | {gain} |")
    run_s = sum(r.get("seconds", 0.0) for r in results["runs"])
    lines += [
        "",
        f"Wall time on {results['machine'].get('cpu')} ({results['machine'].get('cores')} cores): "
        f"preparation (pretraining, forgetting, predictions, incremental baseline) "
        f"{results.get('prepare_seconds', 0):.0f} s, {len(results['runs'])} transfer runs {run_s:.0f} s.",
    ]
    prep = results.get("prepare", {})
    if prep:
        lines += [
            "",
            "Forgetting trajectory (accuracy on the source test split):",
            "",
            "| stage | samples | accuracy |",
            "|---|---|---|",
        ]
        lines += [
            f"| {s['stage']} | {s['subset_size']} | {s.get('eval_accuracy', float('nan')):.2f} |"
            for s in prep.get("stages", [])
        ]
        preds = prep.get("predictions", {})
        if preds:
            lines += ["", "Parameters each predictor changes (by kind; everything else is copied from Θ⁰):", ""]
            for n, p in preds.items():
                if isinstance(p.get("skipped"), str):
                    lines.append(f"- {DISPLAY[n]}: not run ({p['skipped']})")
                else:
                    extra = "; ".join(f"step {k} not defined: {why}" for k, why in p.get("skipped", {}).items())
                    lines.append(f"- {DISPLAY[n]}: {p.get('touched')}" + (f" ({extra})" if extra else ""))
    write_text(out / "results.md", "\n".join(lines) + "\n")
    try:
        from weightlab.bench.know_plots import plot_trajectory_pca

        plot_trajectory_pca(out / "trajectory", out / "predictions", out / "trajectory_pca.png")
    except WeightlabError:
        pass
