"""Figures for a benchmark suite: average accuracy per method, accuracy against trainable numbers
per task (the parameter-budget curve of the RECAST paper's Fig. 3), and forgetting curves (the
accuracy of each earlier task after each new task)."""

from __future__ import annotations

from pathlib import Path

from weightlab.io import atomic_path


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _family(name: str) -> str:
    n = name.lower()
    if n.startswith("recast+") or "recast+" in n:
        return "RECAST + " + n.split("+", 1)[1].split(":")[0].split(" ")[0]
    if n.startswith("recast"):
        return "RECAST"
    return n.split(":")[0].split(" ")[0]


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

    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows) + 2), 4.5))
    xs = range(len(rows))
    ax.bar(
        xs,
        [r["average_accuracy"] for r in rows],
        yerr=[r["average_accuracy_std"] for r in rows],
        color=["tab:orange" if r["name"].startswith("recast") else "tab:blue" for r in rows],
        capsize=3,
    )
    lo = min(r["average_accuracy"] - r["average_accuracy_std"] for r in rows)
    ax.set_ylim(max(0, lo - 5), 100)
    ax.set_xticks(list(xs), [r["name"] for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set(ylabel="average test accuracy (%)", title=title)
    fig.tight_layout()
    _save(fig, out / "average_accuracy.png")
    written.append(out / "average_accuracy.png")

    fig, ax = plt.subplots(figsize=(7, 4.8))
    families: dict[str, list[dict]] = {}
    for r in rows:
        families.setdefault(_family(r["name"]), []).append(r)
    for fam, rs in sorted(families.items()):
        rs = sorted(rs, key=lambda r: r["trainable_per_task"])
        x = [max(r["trainable_per_task"], 1) for r in rs]
        ax.errorbar(
            x,
            [r["average_accuracy"] for r in rs],
            yerr=[r["average_accuracy_std"] for r in rs],
            marker="o",
            capsize=3,
            label=fam,
            linestyle="-" if len(rs) > 1 else "none",
        )
    ax.set_xscale("log")
    ax.set(
        xlabel="trainable numbers per task, besides the head (log; head only plotted at 1)",
        ylabel="average test accuracy (%)",
        title=f"parameter budget: {title}",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, out / "budget.png")
    written.append(out / "budget.png")
    if any(r.get("accuracy_matrix") for r in payload.get("runs", [])) and not payload["suite"].get("points"):
        written.append(plot_forgetting(payload, out / "forgetting_curves.png"))
    if any(r.get("val_curves") for r in payload.get("runs", [])):
        written.append(plot_val_curves(payload, out / "val_curves.png"))
    return written


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
    _save(fig, path)
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
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows + 0.9), squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab20")
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
                color=cmap(k % 20),
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
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=7, frameon=False)
    fig.suptitle(f"forgetting curves: {payload['suite']['name']} (dotted: no change after learning)", fontsize=10)
    fig.tight_layout(rect=(0, 0.1 if len(labels) > 6 else 0.06, 1, 1))
    _save(fig, path)
    return path
