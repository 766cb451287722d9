"""One reconstruction report: weights, features, accuracy, template analysis, parameter counts."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from weightlab.io import write_json, write_text
from weightlab.recast.metrics import FIDELITY_WARN, bank_analysis, feature_cosine, output_fidelity, weight_report
from weightlab.recast.mimicry import MimicryResult
from weightlab.recast.plots import plot_reconstruction
from weightlab.recast.tuner import count_parameters


def build_report(
    original: nn.Module,
    recast_model: nn.Module,
    result: MimicryResult,
    *,
    model_name: str,
    test_data=None,
    feature_batch: torch.Tensor | None = None,
    batch_size: int = 500,
    progress: bool = False,
) -> dict:
    modules = weight_report(original, recast_model)
    cos = [m["weight_cosine"] for m in modules]
    report = dict(
        model=model_name,
        method=result.method,
        weight_cosine_mean=sum(cos) / len(cos),
        weight_cosine_min=min(cos),
        relative_error_mean=sum(m["relative_error"] for m in modules) / len(modules),
        mimicry=result.to_dict(),
        counts=count_parameters(recast_model).to_dict(),
        recast_config=recast_model.recast_config.to_dict(),
    )
    cfg = getattr(original, "weightlab_cfg", None)
    if test_data is not None and cfg is not None:
        # one pass over the test set for both models: their top-1 and how closely the outputs agree
        fid = output_fidelity(
            original,
            recast_model,
            test_data.batches(batch_size, cfg),
            accuracy=True,
            progress=progress,
            total=-(-len(test_data) // batch_size),
            desc=f"evaluating both models on {len(test_data):,} {test_data.name} images",
        )
        report["test_set"] = dict(name=test_data.name, size=len(test_data))
        report["top1_original"] = fid.pop("top1_original")
        report["top1_reconstructed"] = fid.pop("top1_reconstructed")
        report["top1_delta"] = report["top1_reconstructed"] - report["top1_original"]
        report["output_fidelity"] = fid
    elif feature_batch is not None:
        report["output_fidelity"] = output_fidelity(original, recast_model, [feature_batch])
    report["warnings"] = fidelity_warnings(report)
    if feature_batch is not None:
        report["features"] = feature_cosine(original, recast_model, feature_batch)
        report["feature_cosine_mean"] = sum(f["feature_cosine"] for f in report["features"]) / len(report["features"])
    report["banks"] = bank_analysis(recast_model)
    report["modules"] = modules
    return report


def fidelity_warnings(report: dict) -> list[str]:
    """A warning when the outputs on real inputs do not follow the original's (see ``FIDELITY_WARN``)."""
    fid = report.get("output_fidelity")
    if fid is None:
        return []
    low = [
        f"{k.replace('_', ' ')} {fid[k]:.{1 if k == 'top1_agreement' else 4}f}"
        for k, limit in FIDELITY_WARN.items()
        if fid.get(k) is not None and fid[k] < limit
    ]
    if not low:
        return []
    return [
        f"the RECAST model's outputs do not follow the original's on {fid['n']} real inputs ({', '.join(low)}) "
        f"although the weight cosine reads {report['weight_cosine_mean']:.3f}: use more templates per bank, fewer "
        "layers per group, or check the plan"
    ]


def summary_rows(report: dict) -> list[tuple[str, str]]:
    c = report["counts"]
    rows = [
        ("model", report["model"]),
        ("method", report["method"]),
    ]
    fid = report.get("output_fidelity")
    if fid is not None:  # first: what the outputs do on real inputs
        agree = "-" if fid.get("top1_agreement") is None else f"{fid['top1_agreement']:.1f}%"
        rows.append(
            (
                f"output fidelity (n={fid['n']}): top-1 agreement / output cosine",
                f"{agree} / {fid['output_cosine']:.6f}",
            )
        )
    rows += [
        ("banks / templated modules", f"{c['banks']} / {c['modules']}"),
        ("coefficients per task", f"{c['coefficients_per_task']:,}"),
        ("template numbers", f"{c['template_numbers']:,}"),
        ("replaced weights", f"{c['replaced_weights']:,}"),
        (
            "numbers saved, S = replaced - templates - coefficients",
            f"{c['saving_S']:,}"
            + (" (no saving: templates >= layers per group keep every weight)" if c["saving_S"] < 0 else ""),
        ),
        ("weight cosine mean / min", f"{report['weight_cosine_mean']:.6f} / {report['weight_cosine_min']:.6f}"),
        ("relative error mean", f"{report['relative_error_mean']:.3e}"),
    ]
    if "feature_cosine_mean" in report:
        rows.append(("feature cosine mean", f"{report['feature_cosine_mean']:.6f}"))
    if "top1_original" in report:
        rows.append(
            (
                f"top-1 original / reconstructed ({report['test_set']['name']}, n={report['test_set']['size']})",
                f"{report['top1_original']:.2f} / {report['top1_reconstructed']:.2f} ({report['top1_delta']:+.2f})",
            )
        )
    m = report["mimicry"]
    rows.append(("mimicry time", f"{m['seconds']:.2f} s ({m['engine']}, {m['iterations']} iterations)"))
    return rows


def to_markdown(report: dict) -> str:
    lines = [f"# RECAST reconstruction: {report['model']} ({report['method']})", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary_rows(report)]
    lines += [
        "",
        "## Banks",
        "",
        "| bank | layers | n | Frobenius diversity | SV entropy | coef. cosine |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {b['bank']} | {b['layers']} | {b['n']} | {b['frobenius_diversity']:.4f} | {b['sv_entropy']:.3f} | "
        f"{b['coef_similarity']:.3f} |"
        for b in report["banks"]
    ]
    feats = {f["module"]: f["feature_cosine"] for f in report.get("features", [])}
    lines += [
        "",
        "## Modules",
        "",
        "| module | shape | weight cosine | relative error | feature cosine |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {m['module']} | {'x'.join(map(str, m['shape']))} | {m['weight_cosine']:.6f} | "
        f"{m['relative_error']:.2e} | {feats.get(m['module'], float('nan')):.6f} |"
        for m in report["modules"]
    ]
    return "\n".join(lines) + "\n"


def format_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def write_report(report: dict, out_dir: str | Path, stem: str = "report") -> None:
    out_dir = Path(out_dir)
    write_json(out_dir / f"{stem}.json", report)
    write_text(out_dir / f"{stem}.md", to_markdown(report))
    plot_reconstruction(report, out_dir / f"{stem}.png")
