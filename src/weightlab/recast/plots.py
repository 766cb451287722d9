"""Figures for a reconstruction report (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from pathlib import Path

from weightlab.io import save_figure


def plot_reconstruction(report: dict, path: str | Path) -> None:
    """Four panels: weight cosine per module, feature cosine per module, template diversity and
    singular-value entropy per bank (App. A.3 / Fig. 7), coefficient similarity per bank (Fig. 8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    mods = report["modules"]
    # 1 - cosine on a log scale: an exact fit reads 1e-7 .. 1e-16, not float noise around 1.0 with offset labels
    gap = lambda c: max(1.0 - c, 1e-16)  # noqa: E731
    ax = axes[0, 0]
    ax.semilogy(range(len(mods)), [gap(m["weight_cosine"]) for m in mods], "o-", ms=3)
    ax.set(title="weight: 1 - cosine (generated vs original)", xlabel="templated module (model order)")
    ax.set_ylabel("1 - cosine (log)")
    feats = report.get("features") or []
    ax = axes[0, 1]
    if feats:
        ax.semilogy(range(len(feats)), [gap(f["feature_cosine"]) for f in feats], "o-", ms=3, color="tab:green")
        step = max(1, len(feats) // 8)
        ticks = [*range(0, len(feats) - 1, step), len(feats) - 1]
        ax.set_xticks(ticks, [*(str(t) for t in ticks[:-1]), "logits"])
    else:
        ax.text(
            0.5, 0.5, "no real inputs: pass a test set (--dataset)", ha="center", va="center", transform=ax.transAxes
        )
    ax.set(title="features on real inputs: 1 - cosine", xlabel="templated module (model order), then logits")
    ax.set_ylabel("1 - cosine (log)")
    banks = report["banks"]
    labels = [b["bank"] for b in banks]
    ax = axes[1, 0]
    ax.bar(range(len(banks)), [b["frobenius_diversity"] for b in banks], color="tab:blue", label="Frobenius diversity")
    ax.set_ylabel("Frobenius diversity")
    ax2 = ax.twinx()
    ax2.plot(range(len(banks)), [b["sv_entropy"] for b in banks], "o-", color="tab:red", label="SV entropy")
    ax2.set_ylabel("singular-value entropy")
    ax.set_xticks(range(len(banks)), labels, rotation=90, fontsize=7)
    ax.set_title("template diversity and entropy per bank")
    ax = axes[1, 1]
    sims = [b["coef_similarity"] for b in banks]
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.plot(range(len(banks)), sims, "o", color="tab:purple")  # points: a cosine of 0 stays visible
    for i, v in enumerate(sims):
        if v != v:  # NaN: one layer in the group, nothing to compare
            ax.text(i, 0.05, "n/a", ha="center", fontsize=7, color="0.4")
    ax.set_xticks(range(len(banks)), labels, rotation=90, fontsize=7)
    ax.set(title="intra-group coefficient cosine (mean off-diagonal)", ylim=(-1, 1))
    fig.suptitle(f"{report['model']} - {report['method']}")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
