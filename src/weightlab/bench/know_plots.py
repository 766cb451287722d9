"""The trajectory and the predicted weights on the first two principal components (the KNOW
paper's Fig. 3): progressive forgetting runs one way, retrodiction the other."""

from __future__ import annotations

from pathlib import Path

import torch

from weightlab.errors import WeightlabError
from weightlab.io import atomic_path, load_weights
from weightlab.know.kinds import DEFAULT_KINDS
from weightlab.know.predictors import DISPLAY
from weightlab.know.trajectory import Trajectory


def _flat(state: dict, keys: list[str]) -> torch.Tensor:
    return torch.cat([state[k].reshape(-1).double() for k in keys])


_SUP = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _sup(n: int) -> str:
    """3 -> '³', -1 -> '⁻¹' (stage indices as the paper writes them)."""
    return str(n).translate(_SUP)


def plot_trajectory_pca(trajectory_dir: str | Path, predictions_dir: str | Path | None, out: str | Path) -> Path:
    """Project Θ⁰…Θ^{S-1} and every ``<method>_x<n>.safetensors`` onto the trajectory's first two PCs."""
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
    _, sv, v = torch.pca_lowrank(stages - mean, q=2, center=False)
    share = (sv**2 / (stages - mean).pow(2).sum().clamp_min(1e-30)).tolist()  # of the trajectory's variance
    proj = lambda x: ((x - mean) @ v).tolist()  # noqa: E731
    fig, ax = plt.subplots(figsize=(8.6, 5.6))
    pts = proj(stages)
    last = traj.num_stages - 1
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="black", label=f"forgetting: Θ⁰ → Θ{_sup(last)}")
    for s, p in enumerate(pts):
        ax.annotate(f"Θ{_sup(s)}", p, textcoords="offset points", xytext=(4, 4), fontsize=8)
    t = torch.tensor(pts)
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
            label=DISPLAY.get(method, method) + (" (partly off-scale)" if far else ""),
        )
        for step, (n, _) in enumerate(items):
            marker = markers[scales.index(n) % len(markers)]
            ax.plot(*pp[step].tolist(), marker, color=color, ms=6, mec="black", mew=0.4)
        inside.append(pp[((pp - t[0]).abs() <= 4 * span).all(1)])
    allpts = torch.cat(inside)
    lo, hi = allpts.min(0).values, allpts.max(0).values
    pad = 0.08 * (hi - lo).clamp_min(1e-12)
    lo, hi = lo - pad, hi + pad
    # one scale on both axes (distances read the same both ways), in a panel at least 0.6 as high as wide
    width, height = float(hi[0] - lo[0]), float(hi[1] - lo[1])
    mid = (lo + hi) / 2
    width, height = max(width, height / 0.9), max(height, 0.6 * width)
    ax.set_xlim(float(mid[0]) - width / 2, float(mid[0]) + width / 2)
    ax.set_ylim(float(mid[1]) - height / 2, float(mid[1]) + height / 2)
    ax.set_aspect("equal", adjustable="box")  # distances read the same along both components
    ax.set_xlabel(f"PC 1 ({100 * share[0]:.0f} % of the trajectory's variance)")
    ax.set_ylabel(f"PC 2 ({100 * share[1]:.0f} %)")
    ax.set_title("Progressive forgetting and KNOW predictions (PCA of the trajectory)", fontsize=10)
    ax.grid(alpha=0.3)
    first = ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="lines")
    ax.add_artist(first)
    if scales:
        handles = [
            plt.Line2D([], [], marker=markers[i % len(markers)], color="grey", linestyle="none", mec="black")
            for i in range(len(scales))
        ]
        ax.legend(
            handles,
            [f"×{n} the data of Θ⁰" for n in scales],
            fontsize=7,
            loc="lower left",
            bbox_to_anchor=(1.01, 0.0),
            frameon=False,
            title="predicted",
        )
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
