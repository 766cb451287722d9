"""Meta-train the three KNOWN hypermodels on a collected meta-dataset, with whole runs held out.

Writes ``KNOWN_{Conv,FC,Bias}.safetensors`` (loadable by ``KNOWN(weights=DIR)`` /
``weightlab know predict --known-weights DIR``), ``training.json`` (split, history, validation L1
of ours, the zero predictor, Task Vector and the authors' weights when available) and ``loss.png``.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path

import torch

from weightlab.errors import WeightlabError
from weightlab.io import atomic_path, read_json, save_tensors, write_json
from weightlab.know.meta.collect import MANIFEST, load_rows
from weightlab.know.meta.train import MetaTrainConfig, baseline_l1, l1_error, train_known

HYPERMODELS = ("Conv", "FC", "Bias")


def split_runs(run_ids: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Whole runs for validation (never rows of a training run); at least one run on each side."""
    if len(run_ids) < 2:
        raise WeightlabError(f"meta-training needs at least 2 collected runs (one held out), found {len(run_ids)}")
    ids = sorted(run_ids)
    random.Random(seed).shuffle(ids)
    n_val = min(len(ids) - 1, max(1, round(val_fraction * len(ids))))
    return sorted(ids[n_val:]), sorted(ids[:n_val])


def _subsample(rows: tuple[torch.Tensor, torch.Tensor], limit: int | None, seed: int):
    seq, target = rows
    if limit is None or seq.shape[0] <= limit:
        return rows
    idx = torch.randperm(seq.shape[0], generator=torch.Generator().manual_seed(seed))[:limit]
    return seq[idx], target[idx]


def meta_train(data_dir: str | Path, out_dir: str | Path, cfg: MetaTrainConfig | None = None, *,
               val_fraction: float = 0.2, max_rows: int | None = 2_000_000, kinds=HYPERMODELS,
               progress: bool = True) -> dict:
    cfg = cfg or MetaTrainConfig()
    data_dir, out = Path(data_dir), Path(out_dir)
    if not (data_dir / MANIFEST).is_file():
        raise WeightlabError(f"{data_dir}: not a meta-dataset folder (no {MANIFEST}); make one with "
                             "'weightlab know meta collect'")
    manifest = read_json(data_dir / MANIFEST)
    train_ids, val_ids = split_runs([r["spec"]["run_id"] for r in manifest["runs"]], val_fraction, cfg.seed)
    report = {"data": str(data_dir), "config": asdict(cfg), "train_runs": train_ids, "val_runs": val_ids,
              "max_rows": max_rows, "models": {}}
    official = None
    try:
        from weightlab.know.predictors.known import load_known_set

        official = load_known_set(None, cfg.input_convention)
    except WeightlabError:
        pass
    for kind in kinds:
        train = _subsample(load_rows(data_dir, kind, train_ids), max_rows, cfg.seed)
        val = _subsample(load_rows(data_dir, kind, val_ids), max_rows, cfg.seed + 1)
        net, history = train_known(train, val, cfg, progress=progress)
        save_tensors(out / f"KNOWN_{kind}.safetensors", net.state_dict(),
                     metadata={"format": "weightlab.know.KNOWNNet", "input_convention": cfg.input_convention})
        row = {"train_rows": int(train[0].shape[0]), "val_rows": int(val[0].shape[0]), "history": history,
               "val_l1": {"ours": history["best_val_l1"], "zero": baseline_l1(*val, "zero"),
                          "task_vector": baseline_l1(*val, "task_vector")}}
        if official is not None:
            row["val_l1"]["authors"] = l1_error(official[kind], *val)
        report["models"][kind] = row
        write_json(out / "training.json", report)
    _plot(report, out / "loss.png")
    return report


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for kind, row in report["models"].items():
        h = row["history"]
        ax.plot(range(1, len(h["train_l1"]) + 1), h["train_l1"], "-", label=f"{kind} train")
        ax.plot(range(1, len(h["val_l1"]) + 1), h["val_l1"], "--", label=f"{kind} held-out runs")
    ax.set_xlabel("epoch")
    ax.set_ylabel("L1 of the predicted weight")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
