"""Figures for a benchmark suite: average accuracy per method, accuracy against trainable numbers
per task (the parameter-budget curve of the RECAST paper's Fig. 3), and forgetting curves (the
accuracy of each earlier task after each new task)."""

from __future__ import annotations

from pathlib import Path

from weightlab.io import save_figure


def save_png(fig, path: Path) -> None:
    """Write ``fig`` as a PNG atomically (110 dpi, tight bounding box) and close it."""
    save_figure(fig, path, dpi=110, bbox_inches="tight")


def _family(name: str) -> str:
    n = name.lower()
    if n.startswith("recast+") or "recast+" in n:
        return "RECAST + " + n.split("+", 1)[1].split(":")[0].split(" ")[0]
    if n.startswith("recast"):
        return "RECAST"
    return n.split(":")[0].split(" ")[0]


#: the bar colours of average_accuracy.png, explained in its legend
CATEGORIES = (
    ("RECAST (coefficients per task, ± an adapter)", "tab:orange"),
    ("per-task tensors without RECAST", "tab:blue"),
    ("continual-learning baseline (one shared network)", "tab:gray"),
)


def _category(row: dict) -> int:
    name = row["name"].lower()
    if name.startswith("recast") or "recast+" in name:
        return 0
    return 1 if row.get("zero_forgetting", True) else 2


def _color(k: int):
    """The k-th of 20 distinct colours: tab20's ten dark shades first, then its ten light ones (tab20 in
    order puts each dark shade next to its own light one: two neighbouring rows would look alike)."""
    import matplotlib.pyplot as plt

    return plt.get_cmap("tab20")((2 * k) % 20 + (k // 10) % 2)


def _spread(xs: list[float], decades: float = 0.05) -> list[float]:
    """Points at (nearly) the same budget, moved sideways by a few hundredths of a decade each, so that
    none hides another on the log axis; the order of the input is kept."""
    import math

    out, placed = [], []
    for x in xs:
        lx = math.log10(max(x, 1))
        near = sum(1 for p in placed if abs(p - lx) < 0.12)
        placed.append(lx)
        shift = ((near + 1) // 2) * decades * (1 if near % 2 else -1)
        out.append(10 ** (lx + shift) if shift else max(x, 1))
    return out


def plot_suite(payload: dict, out: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    rows = payload.get("summary") or []
    if not rows:
        return []
    title = f"{payload['suite']['name']} ({payload['suite']['model']})"
    written = []

    width = max(6, 0.6 * len(rows) + 2)
    fig, ax = plt.subplots(figsize=(width, 4.8))
    xs = range(len(rows))
    cats = [_category(r) for r in rows]
    ax.bar(
        xs,
        [r["average_accuracy"] for r in rows],
        yerr=[r["average_accuracy_std"] for r in rows],
        color=[CATEGORIES[c][1] for c in cats],
        capsize=3,
    )
    for x, r in zip(xs, rows):
        top = r["average_accuracy"] + r["average_accuracy_std"]
        ax.annotate(
            f"{r['average_accuracy']:.1f}", (x, top), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=7
        )
    lo = min(r["average_accuracy"] - r["average_accuracy_std"] for r in rows)
    ax.set_ylim(max(0, lo - 5), 103)
    ax.set_xticks(list(xs), [r["name"] for r in rows], rotation=60, ha="right", fontsize=8)
    seeds = sorted({len(r.get("seeds") or []) for r in rows})
    ax.set(ylabel="average test accuracy (%)", title=f"{title}: mean ± std over {'/'.join(map(str, seeds))} seeds")
    from matplotlib.patches import Patch

    ax.legend(
        [Patch(color=CATEGORIES[c][1]) for c in sorted(set(cats))],
        [CATEGORIES[c][0] for c in sorted(set(cats))],
        fontsize=7,
        loc="lower left",
        bbox_to_anchor=(0, 1.08),
        ncol=3 if width >= 11 else 1,
        frameon=False,
    )
    fig.tight_layout()
    save_png(fig, out / "average_accuracy.png")
    written.append(out / "average_accuracy.png")

    fig, ax = plt.subplots(figsize=(8.4, 4.8))
    families: dict[str, list[dict]] = {}
    for r in rows:
        families.setdefault(_family(r["name"]), []).append(r)
    ordered = sorted(families.items())
    # one x per point, spread where budgets coincide (the PEFT adapters, the full-network baselines)
    flat = [(fam, r) for fam, rs in ordered for r in sorted(rs, key=lambda r: r["trainable_per_task"])]
    spread = iter(_spread([r["trainable_per_task"] for _, r in flat]))
    markers = "osD^vP*Xh<>p"
    for k, (fam, rs) in enumerate(ordered):
        rs = sorted(rs, key=lambda r: r["trainable_per_task"])
        ax.errorbar(
            [next(spread) for _ in rs],
            [r["average_accuracy"] for r in rs],
            yerr=[r["average_accuracy_std"] for r in rs],
            marker=markers[k % len(markers)],
            color=_color(k),
            mec="black",
            mew=0.4,
            ms=6,
            capsize=3,
            alpha=0.9,
            label=fam,
            linestyle="-" if len(rs) > 1 else "none",
        )
    ax.set_xscale("log")
    ax.set(
        xlabel="trainable numbers per task besides the head (log; head only at 1; equal budgets spread sideways)",
        ylabel="average test accuracy (%)",
        title=f"parameter budget: {title}",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    save_png(fig, out / "budget.png")
    written.append(out / "budget.png")
    if any(r.get("accuracy_matrix") for r in payload.get("runs", [])) and not payload["suite"].get("points"):
        written.append(plot_forgetting(payload, out / "forgetting_curves.png"))
    if any(r.get("val_curves") for r in payload.get("runs", [])):
        written.append(plot_val_curves(payload, out / "val_curves.png"))
    if any(len(c.get("diffs") or []) > 1 for c in payload.get("contrasts") or []):
        written.append(plot_contrasts(payload, out / "contrasts.png"))
    return written


def plot_contrasts(payload: dict, path: Path) -> Path:
    """The paired contrasts (row - reference, the same seed): every seed's difference as a dot, the mean with
    its 95 % confidence interval (paired t), zero, and the paper's figure where the suite gives one."""
    import matplotlib.pyplot as plt
    from scipy import stats

    cs = [c for c in payload["contrasts"] if len(c.get("diffs") or []) > 1]
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.8 * len(cs)))
    for y, c in enumerate(cs):
        n = len(c["diffs"])
        half = stats.t.ppf(0.975, n - 1) * c["std"] / n**0.5
        jitter = [((k * 0.618) % 1 - 0.5) * 0.3 for k in range(n)]
        ax.scatter(c["diffs"], [y + j for j in jitter], s=12, color="tab:blue", alpha=0.6, zorder=2)
        ax.errorbar(c["mean"], y, xerr=half, fmt="o", color="black", capsize=4, zorder=3)
        if c.get("paper") is not None:
            ax.plot([c["paper"]] * 2, [y - 0.4, y + 0.4], color="tab:red", ls="--", zorder=1)
    ax.axvline(0, color="gray", lw=0.8)
    ax.set_yticks(range(len(cs)), [f"{c['row']} - {c['reference']} ({len(c['diffs'])} seeds)" for c in cs], fontsize=8)
    ax.set_ylim(-0.6, len(cs) - 0.4)
    ax.set(
        xlabel="difference in average test accuracy (points)\n"
        "dots: seeds; black: mean and 95 % CI (paired t); red: the paper",
        title=f"paired contrasts: {payload['suite']['name']}",
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
    return path


def plot_val_curves(payload: dict, path: Path) -> Path:
    """Convergence: per task, each row's validation accuracy against the epoch (mean over its seeds), at
    its chosen rates. A curve still rising at the last epoch has not converged."""
    import matplotlib.pyplot as plt

    curves: dict[str, list[list[list[float]]]] = {}  # row -> seed -> task -> epochs
    for r in payload.get("runs", []):
        if r.get("val_curves"):
            curves.setdefault(r.get("label") or r["method"], []).append(r["val_curves"])
    tasks = [t["name"] for t in payload.get("tasks", [])] or [
        f"task {i}" for i in range(max(len(c[0]) for c in curves.values()))
    ]
    cols = min(3, len(tasks))
    rows_n = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n), squeeze=False)
    for j, name in enumerate(tasks):
        ax = axes[j // cols][j % cols]
        for row, per_seed in curves.items():
            series = [c[j] for c in per_seed if j < len(c) and c[j]]
            if not series:
                continue
            n = min(len(s) for s in series)
            mean = [sum(s[e] for s in series) / len(series) for e in range(n)]
            ax.plot(range(1, n + 1), mean, label=row, linewidth=1.2)
        ax.set(title=name, xlabel="epoch", ylabel="val acc (%)")
        ax.grid(alpha=0.3)
    for j in range(len(tasks), rows_n * cols):
        axes[j // cols][j % cols].axis("off")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"validation curves: {payload['suite']['name']}")
    fig.tight_layout()
    save_png(fig, path)
    return path


def mean_accuracy_matrices(runs: list[dict]) -> dict[str, list[list[float]]]:
    """Per method (or label), the accuracy matrix averaged over its seeds."""
    groups: dict[str, list[list[list[float]]]] = {}
    for r in runs:
        groups.setdefault(r.get("label") or r["method"], []).append(r["accuracy_matrix"])
    return {
        name: [[sum(m[i][j] for m in ms) / len(ms) for j in range(len(ms[0][i]))] for i in range(len(ms[0]))]
        for name, ms in groups.items()
    }


def plot_forgetting(payload: dict, path: Path) -> Path:
    """One panel per task except the last: its test accuracy after each later task, one line per method
    (mean over seeds). Methods that keep every task's tensors apart draw flat lines; the others fall."""
    import matplotlib.pyplot as plt

    mats = mean_accuracy_matrices(payload["runs"])
    tasks = [t["name"] for t in payload.get("tasks", [])] or payload["runs"][0]["tasks"]
    n = max(len(tasks) - 1, 1)
    cols = min(n, 3)
    rows = -(-n // cols)
    width = max(4.2 * cols, 8.0)  # wide enough for the legend under one panel
    fig, axes = plt.subplots(rows, cols, figsize=(width, 3.3 * rows + 0.9), squeeze=False, sharey=True)
    for j in range(n):
        ax = axes[j // cols][j % cols]
        for k, (name, R) in enumerate(mats.items()):
            xs = list(range(j, len(R)))
            ys = [R[i][j] for i in xs]
            flat = all(y == ys[0] for y in ys)
            ax.plot(
                [x + 1 for x in xs],
                ys,
                marker="o",
                ms=3,
                color=_color(k),
                label=name,
                linestyle=":" if flat else "-",
                linewidth=1 if flat else 1.6,
            )
        ax.set_title(f"task {j + 1}: {tasks[j]}", fontsize=9)
        ax.set_xticks(range(1, len(tasks) + 1))
        ax.grid(alpha=0.3)
        if j % cols == 0:
            ax.set_ylabel("test accuracy (%)")
        if j // cols == rows - 1:
            ax.set_xlabel("tasks learnt")
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    ncol = max(1, min(len(labels), int(width / 1.6)))
    fig.suptitle(f"forgetting curves: {payload['suite']['name']} (dotted: no change after learning)", fontsize=10)
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, fontsize=7, frameon=False)
    save_png(fig, path)
    return path
