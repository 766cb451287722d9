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
    _, _, v = torch.pca_lowrank(stages - mean, q=2, center=False)
    proj = lambda x: ((x - mean) @ v).tolist()  # noqa: E731
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    pts = proj(stages)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="black", label="trajectory Θ⁰ → Θ^{S-1}")
    for s, p in enumerate(pts):
        ax.annotate(f"Θ{s}", p, textcoords="offset points", xytext=(4, 4), fontsize=8)
    t = torch.tensor(pts)
    span = float((t.max(0).values - t.min(0).values).max()) or 1.0
    inside = [t]
    for method, items in preds.items():
        items.sort()
        pp = torch.tensor([proj(x) for _, x in items])
        far = bool(((pp - t[0]).abs().max() > 4 * span).item())  # e.g. ExpFit: keep the axes readable
        ax.plot(
            [pts[0][0]] + pp[:, 0].tolist(),
            [pts[0][1]] + pp[:, 1].tolist(),
            "x--",
            label=DISPLAY.get(method, method) + (" (partly off-scale)" if far else ""),
        )
        inside.append(pp[((pp - t[0]).abs() <= 4 * span).all(1)])
    allpts = torch.cat(inside)
    lo, hi = allpts.min(0).values, allpts.max(0).values
    pad = 0.08 * (hi - lo).clamp_min(1e-12)
    ax.set_xlim(float(lo[0] - pad[0]), float(hi[0] + pad[0]))
    ax.set_ylim(float(lo[1] - pad[1]), float(hi[1] + pad[1]))
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("Progressive forgetting and KNOW predictions (PCA)")
    ax.legend(fontsize=7)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out
