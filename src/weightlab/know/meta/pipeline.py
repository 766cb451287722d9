"""Meta-train the three KNOWN hypermodels on a collected meta-dataset, with whole runs held out.

Runs are split three ways, always by whole run (never rows of a training run):

* **test**: runs of held-out architectures *and* data sets (``test_archs`` / ``test_datasets``);
  no run of either is trained on. This is the figure that says whether the model generalises.
* **val**: a random ``val_fraction`` of the remaining runs, for early stopping.
* **train**: the rest.

Writes to ``out_dir``: ``KNOWN_{Conv,FC,Bias}.safetensors`` (loadable by ``KNOWN(weights=DIR)``),
``training.json`` (split, history, L1 of ours / the zero predictor / Task Vector / the authors'
weights on val and test, per held-out architecture too), ``mini_test.safetensors`` (a fixed
sample of held-out rows with its recorded L1, to check a copy of the weights), ``loss.png`` and
``MODEL_CARD.md``.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path

import torch

from weightlab.errors import WeightlabError
from weightlab.io import load_weights, read_json, save_figure, save_tensors, write_json, write_text
from weightlab.know.hypermodel import SEQ_LEN, KNOWNNet, count_parameters
from weightlab.know.meta.collect import MANIFEST, load_rows
from weightlab.know.meta.train import MetaTrainConfig, baseline_l1, l1_error, last_stages, train_known

HYPERMODELS = ("Conv", "FC", "Bias")
MINI_ROWS = 2048  # rows per hypermodel in mini_test.safetensors
AUTHORS = {"raw": "authors", "normalized": "authors_normalized"}  # report keys of the authors' weights


def split_runs(
    runs: list[dict], val_fraction: float, seed: int, test_archs=(), test_datasets=()
) -> dict[str, list[int]]:
    """``{"train", "val", "test", "excluded"}`` run ids. A test run has a held-out architecture and a
    held-out data set (either list may be empty: then only the other one counts); a run sharing just
    one of them is excluded from everything, so nothing about a test architecture or data set is trained on."""
    test_archs, test_datasets = set(test_archs), set(test_datasets)
    known = {r["spec"]["arch"] for r in runs}, {r["spec"]["dataset"] for r in runs}
    missing = sorted((test_archs - known[0]) | (test_datasets - known[1]))
    if missing:
        raise WeightlabError(
            f"held-out {', '.join(missing)} not in the meta-dataset (it has architectures "
            f"{', '.join(sorted(known[0]))}; data sets {', '.join(sorted(known[1]))})"
        )
    split: dict[str, list[int]] = {"train": [], "val": [], "test": [], "excluded": []}
    pool = []
    for r in runs:
        arch_out, data_out = r["spec"]["arch"] in test_archs, r["spec"]["dataset"] in test_datasets
        if (test_archs or test_datasets) and (arch_out or not test_archs) and (data_out or not test_datasets):
            split["test"].append(r["spec"]["run_id"])
        elif arch_out or data_out:
            split["excluded"].append(r["spec"]["run_id"])
        else:
            pool.append(r["spec"]["run_id"])
    if len(pool) < 2:
        raise WeightlabError(
            f"meta-training needs at least 2 training-distribution runs (one held out for "
            f"validation), found {len(pool)}"
        )
    pool.sort()
    random.Random(seed).shuffle(pool)
    n_val = min(len(pool) - 1, max(1, round(val_fraction * len(pool))))
    split["val"], split["train"] = sorted(pool[:n_val]), sorted(pool[n_val:])
    split["test"].sort()
    split["excluded"].sort()
    return split


def _subsample(rows: tuple[torch.Tensor, torch.Tensor], limit: int | None, seed: int):
    seq, target = rows
    if limit is None or seq.shape[0] <= limit:
        return rows
    idx = torch.randperm(seq.shape[0], generator=torch.Generator().manual_seed(seed))[:limit]
    return seq[idx], target[idx]


def evaluate(nets: dict[str, KNOWNNet], rows: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """L1 of the predicted weight for each named hypermodel and the two reference predictors."""
    out = {name: l1_error(net, *rows) for name, net in nets.items()}
    return out | {"zero": baseline_l1(*rows, "zero"), "task_vector": baseline_l1(*rows, "task_vector")}


FEW_RUNS = 50  # training runs below which a trained KNOWN is a demonstration, not a predictor


def meta_train(
    data_dir: str | Path,
    out_dir: str | Path,
    cfg: MetaTrainConfig | None = None,
    *,
    val_fraction: float = 0.2,
    test_archs=(),
    test_datasets=(),
    max_rows: int | None = 2_000_000,
    max_rows_per_run: int | None = 20_000,
    kinds=HYPERMODELS,
    command: str | None = None,
    progress: bool = True,
    device: str | None = None,
) -> dict:
    """Train KNOWN_{Conv,FC,Bias} (on ``device``) on the rows of a collected meta-dataset, whole runs held
    out for validation and test; writes the weights, a report and a model card into ``out_dir``."""
    cfg = cfg or MetaTrainConfig()
    data_dir, out = Path(data_dir), Path(out_dir)
    if not (data_dir / MANIFEST).is_file():
        raise WeightlabError(
            f"{data_dir}: not a meta-dataset folder (no {MANIFEST}); make one with 'weightlab know meta collect'"
        )
    manifest = read_json(data_dir / MANIFEST)
    split = split_runs(manifest["runs"], val_fraction, cfg.seed, test_archs, test_datasets)
    if len(split["train"]) < FEW_RUNS:
        import warnings

        from weightlab.errors import WeightlabWarning

        warnings.warn(
            f"KNOWN trains on {len(split['train'])} runs here ({len(split['val'])} held out for validation, "
            f"{len(split['test'])} for test); the shipped KNOWN used 384: from fewer than {FEW_RUNS} its "
            "predictions and errors say little (collect more with 'weightlab know meta collect')",
            WeightlabWarning,
            stacklevel=2,
        )
    arch_of = {r["spec"]["run_id"]: r["spec"]["arch"] for r in manifest["runs"]}
    rows_of = {r["spec"]["run_id"]: r["rows"] for r in manifest["runs"]}
    report = {
        "data": str(data_dir),
        "config": asdict(cfg),
        "split": split,
        "val_fraction": val_fraction,
        "test_archs": sorted(test_archs),
        "test_datasets": sorted(test_datasets),
        "max_rows": max_rows,
        "max_rows_per_run": max_rows_per_run,
        "command": command,
        "collection": _collection_summary(manifest),
        "models": {},
    }
    authors = {}  # the authors' weights under both input conventions, when the shared folder has them
    try:
        from weightlab.know.predictors.known import load_known_set

        if cfg.seq_len == SEQ_LEN:  # the authors' read five stages: no reference for another S
            authors = {conv: load_known_set("authors", conv) for conv in ("raw", "normalized")}
    except WeightlabError:
        pass

    def rows(ids, seed, limit=max_rows):
        loaded = load_rows(data_dir, kind, ids, per_run=max_rows_per_run, seed=seed)
        return last_stages(_subsample(loaded, limit, seed), cfg.seq_len)

    mini = {}
    for kind in kinds:
        train, val = rows(split["train"], cfg.seed), rows(split["val"], cfg.seed + 1)
        net, history = train_known(
            train, val, cfg, progress=progress, desc=f"meta-training KNOWN_{kind}", device=device
        )
        save_tensors(
            out / f"KNOWN_{kind}.safetensors",
            net.state_dict(),
            metadata={
                "format": "weightlab.know.KNOWNNet",
                "input_convention": cfg.input_convention,
                "seq_len": str(cfg.seq_len),
            },
        )
        nets = {"ours": net} | {AUTHORS[conv]: per_kind[kind] for conv, per_kind in authors.items()}
        row = {
            "train_rows": int(train[0].shape[0]),
            "val_rows": int(val[0].shape[0]),
            "history": history,
            "val_l1": evaluate(nets, val),
        }
        test_ids = [i for i in split["test"] if rows_of[i].get(kind, 0) > 0]
        if test_ids:
            test = rows(test_ids, cfg.seed + 2)
            row["test_rows"], row["test_l1"] = int(test[0].shape[0]), evaluate(nets, test)
            row["test_l1_by_arch"] = {
                a: evaluate(nets, rows([i for i in test_ids if arch_of[i] == a], cfg.seed + 3))
                for a in sorted({arch_of[i] for i in test_ids})
            }
        mini_rows = _subsample(rows(test_ids or split["val"], cfg.seed + 4), MINI_ROWS, cfg.seed + 4)
        mini[f"{kind}_seq"], mini[f"{kind}_target"] = mini_rows
        row["mini_l1"] = l1_error(net, *mini_rows)
        report["models"][kind] = row
        write_json(out / "training.json", report)
    save_tensors(out / "mini_test.safetensors", mini)
    _plot(report, out / "loss.png")
    write_text(out / "MODEL_CARD.md", model_card(report))
    return report


def check_mini(weights_dir: str | Path, mini_file: str | Path, report: dict) -> dict[str, tuple[float, float]]:
    """``{kind: (recorded mini-set L1, L1 now)}`` for a folder of trained hypermodels."""
    from weightlab.know.predictors.known import load_known_set

    nets, mini = load_known_set(weights_dir), load_weights(mini_file)
    return {
        k: (row["mini_l1"], l1_error(nets[k], mini[f"{k}_seq"], mini[f"{k}_target"]))
        for k, row in report["models"].items()
    }


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 2) if xs else None


def _collection_summary(manifest: dict) -> dict:
    runs = manifest["runs"]
    by: dict[str, int] = {}
    for r in runs:
        key = f"{r['spec']['arch']} / {r['spec']['dataset']}"
        by[key] = by.get(key, 0) + 1
    specs = [r["spec"] for r in runs]
    return {
        "runs": len(runs),
        "rows": sum(sum(r["rows"].values()) for r in runs),
        "bytes": sum(r["bytes"] for r in runs),
        "runs_by_arch_dataset": dict(sorted(by.items())),
        "ranges": {
            "ratio": [min(s["ratio"] for s in specs), max(s["ratio"] for s in specs)],
            "lr": [min(s["lr"] for s in specs), max(s["lr"] for s in specs)],
            "batch_sizes": sorted({s["batch_size"] for s in specs}),
            "optimizers": sorted({s["optimizer"] for s in specs}),
            "train_size": sorted({s["train_size"] for s in specs}),
            "pretrain_epochs": sorted({s["pretrain_epochs"] for s in specs}),
            "stages": sorted({s["stages"] for s in specs}),
            "protocols": sorted({s.get("protocol", "v1") for s in specs}),
            "forget_epochs": sorted({s.get("forget_epochs", 1) for s in specs}),
        },
        # faithful runs measure D⁰ test accuracy per stage: how many forget, and how many bases converged
        "forgetting": {
            "measured": sum(r.get("forgetting", {}).get("forgets") is not None for r in runs),
            "forgets": sum(bool(r.get("forgetting", {}).get("forgets")) for r in runs),
            "mean_drop": _mean([r["forgetting"]["drop"] for r in runs if "drop" in r.get("forgetting", {})]),
            "bases_converged": sum(bool(r.get("pretrain", {}).get("converged")) for r in runs),
        },
        "commands": [c["command"] for c in manifest.get("collections", []) if c.get("command")],
    }


def l1_table(report: dict, key: str, by_arch: bool = False) -> list[str]:
    """Markdown table of the ``val_l1`` / ``test_l1`` figures (``by_arch``: one row per held-out architecture)."""
    cols = ["ours", "authors", "authors_normalized", "zero", "task_vector"]
    names = {
        "ours": "weightlab KNOWN",
        "authors": "authors' KNOWN (raw)",
        "authors_normalized": "authors' KNOWN (normalized)",
        "zero": "zero (no change)",
        "task_vector": "Task Vector (λ=0.2)",
    }
    lines = ["| model | rows | " + " | ".join(names[c] for c in cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for kind, row in report["models"].items():
        entries = (
            [(f"{kind}, {a}", "", v) for a, v in row.get("test_l1_by_arch", {}).items()]
            if by_arch
            else [(kind, f"{row[key.replace('_l1', '_rows')]:,}", row[key])]
            if key in row
            else []
        )
        lines += [
            f"| {label} | {n} | " + " | ".join(f"{v[c]:.3e}" if c in v else "n/a" for c in cols) + " |"
            for label, n, v in entries
        ]
    return lines


def _join(values) -> str:
    return ", ".join(str(v) for v in values)


def _protocol_text(r: dict) -> str:
    if r.get("protocols") == ["faithful"]:
        from weightlab.know.meta.collect import AUGMENT, PRETRAIN

        return (
            f"Per run (the faithful protocol): the base trained on {_join(r['train_size'])} "
            f"samples ({_join(r['pretrain_epochs'])} epochs, {PRETRAIN['optimizer']} {PRETRAIN['lr']} with "
            f"{PRETRAIN['schedule']} decay to zero, batch {PRETRAIN['batch_size']}, augmentation "
            + ", ".join(f"{k}: {v}" for k, v in AUGMENT.items())
            + f"), then {_join(r['stages'])} stages of progressive forgetting ({_join(r['forget_epochs'])} "
            "epoch(s) each, the same augmentation)"
        )
    return (
        f"Per run: pretraining {_join(r['pretrain_epochs'])} epoch(s) on {_join(r['train_size'])} samples "
        f"(Adam 1e-3), then {_join(r['stages'])} stages of progressive forgetting"
    )


def model_card(report: dict) -> str:
    c, cfg, split = report["collection"], report["config"], report["split"]
    r = c["ranges"]
    n = cfg.get("seq_len", SEQ_LEN)
    size = count_parameters(KNOWNNet(cfg["input_convention"], n))
    words = {2: "two", 3: "three", 4: "four", 5: "five"}
    sup = "⁰¹²³⁴"
    lines = [
        "# weightlab KNOWN: model card",
        "",
        f"Three KNOWN hypermodels (Conv, FC, Bias; {size:,} weights each, the architecture of the KNOW paper"
        + (")" if n == SEQ_LEN else f" with a history of S={n} stages instead of 5, the paper's Table 6 ablation)")
        + f" meta-trained by weightlab on its own progressive-forgetting trajectories. Input: the last {words[n]} "
        f"weights of a parameter, oldest forgetting first `[θ{sup[n - 1]}, …, θ⁰]`; output: the residual added to θ⁰ "
        f"to predict the weight trained on more data (input convention `{cfg['input_convention']}`).",
        "",
        "## Data",
        "",
        f"{c['runs']} progressive-forgetting runs, {c['rows']:,} rows, {c['bytes'] / 1e9:.2f} GB. "
        + _protocol_text(r)
        + " with the run's own "
        f"settings, drawn per run: sampling rate r in [{r['ratio'][0]}, {r['ratio'][1]}] (uniform), "
        f"learning rate in [{r['lr'][0]:.2g}, {r['lr'][1]:.2g}] (log-uniform), batch size "
        f"{_join(r['batch_sizes'])}, optimiser {_join(r['optimizers'])}. Rows: each scalar weight's five "
        "stages before a target stage, and the target (Conv: >2-D weights; FC: 2-D weights; Bias: vectors)"
        + ("." if n == SEQ_LEN else f"; the hypermodels read the last {words[n]} of the five."),
        "",
    ]
    f = c.get("forgetting", {})
    if f.get("measured"):
        lines += [
            f"Forgetting (D⁰ test accuracy, stage 0 against the last stage): {f['forgets']} of {f['measured']} "
            f"runs forget (mean drop {f['mean_drop']} points); {f['bases_converged']} bases had a flat "
            "validation curve at the end of pretraining. Runs that do not forget are kept (their rows still "
            "record how weights move on less data) and counted here.",
        ]
    lines += [
        "",
        "| architecture / data set | runs |",
        "|---|---|",
    ]
    lines += [f"| {k} | {n} |" for k, n in c["runs_by_arch_dataset"].items()]
    lines += [
        "",
        "## Training",
        "",
        f"L1 on the predicted weight, Adam lr {cfg['lr']}, batch {cfg['batch_size']}, at most "
        f"{cfg['epochs']} epochs, early stopping after {cfg['patience']} without a better validation L1; "
        f"at most {report['max_rows_per_run']} rows per run and {report['max_rows']} per split. "
        f"Runs: {len(split['train'])} train, {len(split['val'])} validation (random whole runs of the "
        f"training distribution), {len(split['test'])} test"
        + (
            f" (architectures {', '.join(report['test_archs']) or 'any'} on data sets "
            f"{', '.join(report['test_datasets']) or 'any'}; no run of either was trained on, "
            f"{len(split['excluded'])} runs sharing only one were left out)"
            if split["test"]
            else ""
        )
        + ".",
        "",
        "## Error (mean |predicted − true weight|)",
        "",
        "Held-out runs of the training distribution:",
        "",
    ]
    lines += l1_table(report, "val_l1")
    if split["test"]:
        lines += ["", "Held-out architectures and data sets:", ""] + l1_table(report, "test_l1")
        lines += ["", "The same, per held-out architecture:", ""] + l1_table(report, "test_l1", by_arch=True)
    lines += [
        "",
        "Check of a copy: `mini_test.safetensors` holds a fixed sample of held-out rows; the L1 of these "
        "weights on it is " + ", ".join(f"{k} {row['mini_l1']:.6e}" for k, row in report["models"].items()) + ".",
        "",
        "## Reproduce",
        "",
        "```",
    ]
    lines += c["commands"] or ["weightlab know meta collect …  (the collection commands were not recorded)"]
    lines += [report.get("command") or "weightlab know meta train …  (the command was not recorded)", "```", ""]
    return "\n".join(lines)


def _plot(report: dict, path: Path) -> None:
    """Per hypermodel one colour: train L1 solid, held-out-runs L1 dashed (from epoch 0, before any
    training), a star where the kept weights were (the best held-out epoch: early stopping)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    for k, (kind, row) in enumerate(report["models"].items()):
        h, color = row["history"], f"C{k}"
        ax.plot(range(1, len(h["train_l1"]) + 1), h["train_l1"], "-", color=color, label=f"KNOWN_{kind} train")
        val = ([h["val_l1_start"]] if "val_l1_start" in h else []) + list(h["val_l1"])
        first = 0 if "val_l1_start" in h else 1
        ax.plot(range(first, first + len(val)), val, "--", color=color, label=f"KNOWN_{kind} held-out runs")
        best = min(range(len(val)), key=val.__getitem__)
        ax.plot([first + best], [val[best]], "*", color=color, ms=11, mec="black", mew=0.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0: before training)")
    ax.set_ylabel("mean |predicted − true| weight (L1)")
    ax.set_yscale("log")
    ax.set_title("KNOWN meta-training (★ kept: best held-out epoch)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    save_figure(fig, path, dpi=110, bbox_inches="tight")
