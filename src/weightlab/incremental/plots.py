"""Figures for a benchmark suite: average accuracy per method, and accuracy against trainable
numbers per task (the parameter-budget curve of the RECAST paper's Fig. 3)."""

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
    ax.bar(xs, [r["average_accuracy"] for r in rows], yerr=[r["average_accuracy_std"] for r in rows],
           color=["tab:orange" if r["name"].startswith("recast") else "tab:blue" for r in rows], capsize=3)
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
        ax.errorbar(x, [r["average_accuracy"] for r in rs], yerr=[r["average_accuracy_std"] for r in rs],
                    marker="o", capsize=3, label=fam, linestyle="-" if len(rs) > 1 else "none")
    ax.set_xscale("log")
    ax.set(xlabel="trainable numbers per task, besides the head (log; head only plotted at 1)",
           ylabel="average test accuracy (%)", title=f"parameter budget: {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, out / "budget.png")
    written.append(out / "budget.png")
    return written
