"""Figures for a reconstruction report (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from pathlib import Path

from weightlab.io import atomic_path


def plot_reconstruction(report: dict, path: str | Path) -> None:
    """Four panels: weight cosine per module, feature cosine per module, template diversity and
    singular-value entropy per bank (App. A.3 / Fig. 7), coefficient similarity per bank (Fig. 8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    mods = report["modules"]
    ax = axes[0, 0]
    ax.plot(range(len(mods)), [m["weight_cosine"] for m in mods], "o-", ms=3)
    ax.set(title="weight cosine (generated vs original)", xlabel="templated module", ylabel="cosine")
    feats = report.get("features") or []
    ax = axes[0, 1]
    if feats:
        ax.plot(range(len(feats)), [f["feature_cosine"] for f in feats], "o-", ms=3, color="tab:green")
        ax.set_xticks([len(feats) - 1], ["logits"])
    ax.set(title="layer-wise feature cosine on real inputs", xlabel="templated module -> logits", ylabel="cosine")
    banks = report["banks"]
    labels = [b["bank"] for b in banks]
    ax = axes[1, 0]
    ax.bar(range(len(banks)), [b["frobenius_diversity"] for b in banks], color="tab:blue", label="Frobenius diversity")
    ax.set_ylabel("Frobenius diversity")
    ax2 = ax.twinx()
    ax2.plot(range(len(banks)), [b["sv_entropy"] for b in banks], "o-", color="tab:red", label="SV entropy")
    ax2.set_ylabel("singular-value entropy")
    ax.set_xticks(range(len(banks)), labels, rotation=90, fontsize=6)
    ax.set_title("template diversity and entropy per bank")
    ax = axes[1, 1]
    ax.bar(range(len(banks)), [b["coef_similarity"] for b in banks], color="tab:purple")
    ax.set_xticks(range(len(banks)), labels, rotation=90, fontsize=6)
    ax.set(title="intra-group coefficient cosine (mean off-diagonal)", ylim=(-1, 1))
    fig.suptitle(f"{report['model']} - {report['method']}")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)
