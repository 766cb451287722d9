"""Figures for a reconstruction report (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from pathlib import Path

from weightlab.io import save_figure

FLOAT_EXACT = 1e-6  # 1 - cosine below this is float32 rounding: the fit is exact


def _name_ticks(ax, names: list[str], most: int = 40) -> None:
    """Name the x ticks (modules or banks), every k-th where there are more than ``most``."""
    step = max(1, -(-len(names) // most))
    ticks = list(range(0, len(names), step))
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90, fontsize=6 if len(ticks) > 20 else 7)


def plot_reconstruction(report: dict, path: str | Path) -> None:
    """Four panels: weight cosine per module, feature cosine per module, template diversity and
    singular-value entropy per bank (App. A.3 / Fig. 7), coefficient similarity per bank (Fig. 8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    mods = report["modules"]
    # 1 - cosine on a log scale with a fixed range: float rounding (below FLOAT_EXACT) is a shaded band, so an
    # exact fit reads as exact instead of its rounding noise looking like structure
    gap = lambda c: max(1.0 - c, 1e-16)  # noqa: E731

    def gaps_panel(ax, names: list[str], values: list[float], color: str, what: str) -> None:
        ax.semilogy(range(len(values)), values, "o-", ms=3, color=color)
        ax.set_ylim(1e-16, 1.0)
        ax.axhspan(1e-16, FLOAT_EXACT, color="0.9", zorder=0)
        if max(values) <= FLOAT_EXACT:
            ax.text(
                0.5,
                0.55,
                f"exact to float precision:\n1 - cosine <= {FLOAT_EXACT:g} for every {what}",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        else:
            ax.text(0.01, 0.02, "float rounding", transform=ax.transAxes, fontsize=7, color="0.4")
        _name_ticks(ax, names)
        ax.set_ylabel("1 - cosine (log)")

    ax = axes[0, 0]
    gaps_panel(ax, [m["module"] for m in mods], [gap(m["weight_cosine"]) for m in mods], "tab:blue", "module")
    ax.set_title("weight: 1 - cosine (generated vs original), per templated module")
    feats = report.get("features") or []
    ax = axes[0, 1]
    if feats:
        names = [f["module"] for f in feats]
        gaps_panel(ax, names, [gap(f["feature_cosine"]) for f in feats], "tab:green", "module")
    else:
        ax.text(
            0.5, 0.5, "no real inputs: pass a test set (--dataset)", ha="center", va="center", transform=ax.transAxes
        )
    ax.set_title("features on real inputs: 1 - cosine, per templated module")
    banks = report["banks"]
    labels = [b["bank"] for b in banks]
    ax = axes[1, 0]
    ax.bar(range(len(banks)), [b["frobenius_diversity"] for b in banks], color="tab:blue", label="Frobenius diversity")
    ax.set_ylabel("Frobenius diversity (bars)")
    ax2 = ax.twinx()
    ax2.plot(range(len(banks)), [b["sv_entropy"] for b in banks], "o-", color="tab:red", label="singular-value entropy")
    ax2.set_ylabel("singular-value entropy (line)")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="upper left")
    _name_ticks(ax, labels)
    # diversity is a norm: it scales with the templates, whose scale each fit chooses (the weights do not
    # change with it: see recast.gauge); entropy is scale-free
    ax.set_title(
        "template diversity and entropy per bank\n(diversity scales with the fit's template norm)", fontsize=10
    )
    ax = axes[1, 1]
    sims = [b["coef_similarity"] for b in banks]
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.plot(range(len(banks)), sims, "o", color="tab:purple")  # points: a cosine of 0 stays visible
    for i, v in enumerate(sims):
        if v != v:  # NaN: one layer in the group, nothing to compare
            ax.text(i, 0.05, "n/a", ha="center", fontsize=7, color="0.4")
    _name_ticks(ax, labels)
    ax.set(title="intra-group coefficient cosine (mean off-diagonal), per bank", ylim=(-1, 1))
    fig.suptitle(f"{report['model']} - {report['method']}")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
