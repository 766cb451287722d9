"""The trajectory and the predicted weights on the first two principal components (the KNOW
paper's Fig. 3): progressive forgetting runs one way, retrodiction the other."""

from __future__ import annotations

from pathlib import Path

import torch

from weightlab.bench.reports.incremental_plots import save_png
from weightlab.errors import WeightlabError
from weightlab.io import load_weights
from weightlab.know.kinds import DEFAULT_KINDS
from weightlab.know.predictors import display_name
from weightlab.know.trajectory import Trajectory


def _flat(state: dict, keys: list[str]) -> torch.Tensor:
    return torch.cat([state[k].reshape(-1).double() for k in keys])


_SUP = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _sup(n: int) -> str:
    """3 -> '³', -1 -> '⁻¹' (stage indices as the paper writes them)."""
    return str(n).translate(_SUP)


def plot_trajectory_pca(
    trajectory_dir: str | Path,
    predictions_dir: str | Path | None,
    out: str | Path,
    labels: dict[str, str] | None = None,
) -> Path:
    """Project Θ⁰…Θ^{S-1} and every ``<method>_x<n>.safetensors`` onto the trajectory's first two PCs
    (``labels``: legend names of rows that are not registered predictors, e.g. KNOWN variants)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traj = Trajectory.load(trajectory_dir)
    keys = traj.keys_of(DEFAULT_KINDS)
    stages = torch.stack([_flat(s, keys) for s in traj.stages])
    preds: dict[str, list[tuple[int, torch.Tensor]]] = {}
    if predictions_dir is not None and Path(predictions_dir).is_dir():
        for f in sorted(Path(predictions_dir).glob("*_x*.safetensors")):
            method, n = f.stem.rsplit("_x", 1)
            preds.setdefault(method, []).append((int(n), _flat(load_weights(f), keys)))
    if traj.num_stages < 3:
        raise WeightlabError("a PCA plot needs at least 3 stages")
    mean = stages.mean(0)
    # the top two principal directions, exactly and deterministically (pca_lowrank draws a random projection,
    # so the figure changed on every rerun): from the small stages x stages Gram matrix, in float64
    x = (stages - mean).double()
    evals, evecs = torch.linalg.eigh(x @ x.T)
    top = evals.argsort(descending=True)[:2]
    sv = evals[top].clamp_min(0).sqrt()
    v = (x.T @ evecs[:, top]) / sv.clamp_min(1e-30)
    v = (v * torch.sign(v.sum(0, keepdim=True) + 1e-300)).to(stages.dtype)  # a fixed sign per direction
    sv = sv.to(stages.dtype)
    share = (sv**2 / x.pow(2).sum().clamp_min(1e-30)).tolist()  # of the trajectory's variance
    proj = lambda x: ((x - mean) @ v).tolist()  # noqa: E731
    fig, ax = plt.subplots(figsize=(8.6, 5.6))
    pts = proj(stages)
    last = traj.num_stages - 1
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="black", label=f"forgetting: Θ⁰ → Θ{_sup(last)}")
    t = torch.tensor(pts)
    if preds:  # Θ⁰'s label away from where the predictions go, the others alternating sides of the path
        ahead = torch.tensor([proj(x) for items in preds.values() for _, x in items]).mean(0) - t[0]
    else:
        ahead = t[min(1, last)] - t[0]
    for s, p in enumerate(pts):
        if s == 0:
            off = (-14.0 if ahead[0] > 0 else 6.0, -12.0 if ahead[1] > 0 else 6.0)
        else:
            off = (6.0, 5.0) if s % 2 == 0 else (-15.0, -12.0)
        ax.annotate(f"Θ{_sup(s)}", p, textcoords="offset points", xytext=off, fontsize=8)
    span = float((t.max(0).values - t.min(0).values).max()) or 1.0
    inside = [t]
    markers = "os^Dvp"
    scales = sorted({n for items in preds.values() for n, _ in items})  # ×2, ×4, ×8: one marker each
    for k, (method, items) in enumerate(sorted(preds.items())):
        items.sort()
        pp = torch.tensor([proj(x) for _, x in items])
        far = bool(((pp - t[0]).abs().max() > 4 * span).item())  # e.g. ExpFit: keep the axes readable
        color = plt.get_cmap("tab10")(k % 10)
        ax.plot(
            [pts[0][0]] + pp[:, 0].tolist(),
            [pts[0][1]] + pp[:, 1].tolist(),
            "--",
            color=color,
            linewidth=1.1,
            label=(labels or {}).get(method, display_name(method)) + (" (partly off-scale)" if far else ""),
        )
        for step, (n, _) in enumerate(items):
            marker = markers[scales.index(n) % len(markers)]
            ax.plot(*pp[step].tolist(), marker, color=color, ms=6, mec="black", mew=0.4)
        inside.append(pp[((pp - t[0]).abs() <= 4 * span).all(1)])
    allpts = torch.cat(inside)
    lo, hi = allpts.min(0).values, allpts.max(0).values
    pad = 0.08 * (hi - lo).clamp_min(1e-12)
    lo, hi = lo - pad, hi + pad
    # one scale on both axes (distances read the same both ways), in a panel at least 0.3 as high as wide (no
    # wider margins than that: the axes box takes the data's shape)
    width, height = float(hi[0] - lo[0]), float(hi[1] - lo[1])
    mid = (lo + hi) / 2
    width, height = max(width, height / 0.9), max(height, 0.3 * width)
    ax.set_xlim(float(mid[0]) - width / 2, float(mid[0]) + width / 2)
    ax.set_ylim(float(mid[1]) - height / 2, float(mid[1]) + height / 2)
    ax.set_aspect("equal", adjustable="box")  # distances read the same along both components
    ax.set_xlabel(f"PC 1 ({100 * share[0]:.0f} % of the trajectory's variance)")
    ax.set_ylabel(f"PC 2 ({100 * share[1]:.0f} %)")
    ax.set_title("Progressive forgetting and KNOW predictions (PCA of the trajectory)", fontsize=10)
    ax.grid(alpha=0.3)
    # one legend, the lines then the markers (two legends beside a flat panel would overlap)
    handles, names = ax.get_legend_handles_labels()
    for i, n in enumerate(scales):
        handles.append(
            plt.Line2D([], [], marker=markers[i % len(markers)], color="grey", linestyle="none", mec="black")
        )
        names.append(f"predicted: ×{n} the data of Θ⁰")
    ax.legend(handles, names, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    save_png(fig, Path(out))
    return Path(out)


def plot_paired_gains(rows: list[tuple[str, dict[str, list[float]]]], out: str | Path, title: str) -> Path:
    """One panel per prediction step: each row's paired differences with naive transfer (same trajectory,
    same seed) as dots, their mean ± std as a bar; zero is naive. ``rows``: ``(label, {step: diffs})``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted({k for _, d in rows for k in d}, key=lambda k: int(k.lstrip("x")))
    if not rows or not steps:
        raise WeightlabError("no paired differences to plot")
    fig, axes = plt.subplots(1, len(steps), figsize=(3.2 * len(steps), 3.4), sharey=True, squeeze=False)
    for ax, step in zip(axes[0], steps):
        for i, (_, diffs) in enumerate(rows):
            d = diffs.get(step)
            if not d:
                continue
            t = torch.tensor(d, dtype=torch.float64)
            mean, std = float(t.mean()), float(t.std()) if len(d) > 1 else 0.0
            jitter = torch.linspace(-0.12, 0.12, len(d)).tolist()
            ax.plot([i + j for j in jitter], d, "o", color="grey", ms=3, alpha=0.6)
            ax.errorbar(i, mean, yerr=std, fmt="s", color=plt.get_cmap("tab10")(i % 10), capsize=4, ms=6)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(rows)), [label for label, _ in rows], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{step.replace('x', '×')} the data", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("test accuracy − naive transfer (points)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, Path(out))
    return Path(out)
