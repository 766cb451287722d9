"""A suite's results in the layout of the RECAST paper's Tables 1 (CNN) and 2 (ViT): one row per
method in the paper's order and groups (backbone, regularisation, rehearsal, RECAST, masking,
prompts, adapters, RECAST combinations), with what each learns and keeps per task, measured.

Rows the paper has and the suite did not run are listed as such under the table; methods the
paper does not have (full fine-tuning, LoRA on a CNN ...) come last.
"""

from __future__ import annotations

# (run name, the paper's row label, group) in the paper's order
TABLE1 = [
    ("head", "head only (pretrained backbone)", "backbone"),
    ("ewc", "EWC", "regularisation"),
    ("lwf", "LwF", "regularisation"),
    ("gdumb", "GDumb", "rehearsal"),
    ("er_ace", "ER-ACE", "rehearsal"),
    ("derpp", "DER++", "rehearsal"),
    ("recast", "RECAST", "RECAST"),
    ("hat", "HAT", "masking"),
    ("piggyback", "Piggyback", "masking"),
    ("clr", "CLR", "adapter"),
    ("recast+piggyback", "RECAST + Piggyback", "RECAST combination"),
    ("recast+clr", "RECAST + CLR", "RECAST combination"),
]
TABLE2 = [
    ("head", "head only (pretrained backbone)", "backbone"),
    ("rosa", "RoSA", "adapter"),
    ("recast+rosa", "RECAST + RoSA", "RECAST combination"),
    ("recast", "RECAST", "RECAST"),
    ("l2p", "L2P", "prompt"),
    ("inflora", "InfLoRA", "regularisation + adapter"),
    ("adaptformer", "AdaptFormer", "adapter"),
    ("lora", "LoRA (MeLo: attention)", "adapter"),
    ("dora", "DoRA", "adapter"),
    ("recast+adaptformer", "RECAST + AdaptFormer", "RECAST combination"),
    ("recast+lora", "RECAST + LoRA (MeLo)", "RECAST combination"),
    ("recast+dora", "RECAST + DoRA", "RECAST combination"),
]


def paper_rows(table: int) -> list[tuple[str, str, str]]:
    """The rows of the paper's Table ``table`` (1: CNNs, 2: ViTs; a family's ``paper_table``)."""
    return TABLE2 if table == 2 else TABLE1


def _kib(n: float) -> str:
    return f"{n / 1024:,.0f}" if n >= 10 * 1024 else f"{n / 1024:,.1f}"


def paper_table(payload: dict, number: int) -> str:
    """Markdown: the suite's summary rows in the order and grouping of the paper's Table ``number``."""
    rows = {r["name"]: r for r in payload.get("summary", [])}
    spec = paper_rows(number)
    listed = {name for name, _, _ in spec}
    suite = payload["suite"]
    lines = [
        f"# {suite['name']} in the layout of the RECAST paper's Table {number}",
        "",
        f"`{suite['model']}` on the `{suite['sequence']}` sequence ({len(payload.get('tasks', []))} tasks, "
        f"{suite['epochs']} epochs each). Average test accuracy after the last task, mean ± std over the "
        "seeds run. *Learnt / task*: numbers trained for each new task besides its head (the whole "
        "backbone for methods that train it). *Own KiB / task*: what each task adds (head, its own "
        "tensors; EWC: Fisher and anchor). *Kept KiB*: everything stored after the sequence (shared "
        "model, every task's tensors, replay buffer as float32 inputs, shared state). *Wall s / run*: the "
        "whole sequence on this suite's machine, mean over seeds.",
        "",
        "| method | group | learnt / task | own KiB / task | kept KiB | avg acc (%) | BWT | max forgetting "
        "| seeds | wall s / run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    missing = []
    for name, label, group in spec + [(n, n, "not in the paper's table") for n in rows if n not in listed]:
        r = rows.get(name)
        if r is None:
            missing.append(label)
            continue
        lines.append(
            f"| {label} | {group} | {r['trainable_per_task']:,} | {_kib(r['bytes_per_task'])} | "
            f"{_kib(r['storage_bytes'])} | **{r['average_accuracy']:.2f} ± {r['average_accuracy_std']:.2f}** | "
            f"{r['backward_transfer']:.2f} | {r['forgetting']:.2f} | {len(r['seeds'])} | {r['wall_s']:.0f} |"
        )
    if missing:
        lines += ["", "Not run in this suite: " + ", ".join(missing) + "."]
    return "\n".join(lines) + "\n"


__all__ = ["TABLE1", "TABLE2", "paper_rows", "paper_table"]
