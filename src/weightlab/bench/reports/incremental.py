"""The task-incremental suites' report: summary rows (mean ± std over seeds), paired contrasts,
results.md, paper_table.md and the plots, from a suite's results payload."""

from __future__ import annotations

from pathlib import Path

from weightlab.incremental import metrics
from weightlab.incremental.selection import selection_score, tunable
from weightlab.io import write_json, write_text
from weightlab.models import get_family
from weightlab.stats import paired, verdict
from weightlab.tuning import at_edge


def write_report(payload: dict, out: str | Path) -> dict:
    """Summarise the runs of ``payload`` and (re)write results.json, results.md, paper_table.md (the
    layout of the paper's Table 1 or 2) and the plots."""
    from weightlab.bench.reports.incremental_plots import plot_suite
    from weightlab.bench.reports.tables import paper_table

    out = Path(out)
    payload["summary"] = summarize(payload["runs"])
    payload["contrasts"] = contrasts(payload["runs"], payload["suite"].get("contrasts") or [])
    write_json(out / "results.json", payload)
    write_text(out / "results.md", to_markdown(payload))
    budget = payload["suite"].get("budget")
    if not (bool(payload["suite"].get("points")) if budget is None else budget):  # budget: its own figure
        family = get_family(payload.get("model_family") or "generic")
        write_text(out / "paper_table.md", paper_table(payload, family.paper_table))
    plot_suite(payload, out)
    return payload


def summarize(runs: list[dict]) -> list[dict]:
    """Mean +- std over seeds per method (or budget label)."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r.get("label") or r["method"], []).append(r)
    rows = []
    for name, rs in groups.items():
        avg = metrics.mean_std([r["average_accuracy"] for r in rs])
        bwt = metrics.mean_std([r["backward_transfer"] for r in rs])
        forgetting = metrics.mean_std([metrics.max_forgetting(r["accuracy_matrix"]) for r in rs])
        per_task = [metrics.mean_std([r["final_accuracy"][j] for r in rs]) for j in range(len(rs[0]["tasks"]))]
        rows.append(
            dict(
                name=name,
                method=rs[0]["method"],
                seeds=[r["seed"] for r in rs],
                average_accuracy=avg[0],
                average_accuracy_std=avg[1],
                backward_transfer=bwt[0],
                backward_transfer_std=bwt[1],
                per_task=[p[0] for p in per_task],
                per_task_std=[p[1] for p in per_task],
                zero_forgetting=all(r["zero_forgetting"] for r in rs),
                trainable_per_task=rs[0]["trainable_per_task"],
                head_per_task=rs[0]["head_per_task"][0],
                bytes_per_task=sum(rs[0]["bytes_per_task"]) / len(rs[0]["bytes_per_task"]),
                backbone_bytes=rs[0]["backbone_bytes"],
                forgetting=forgetting[0],
                # everything kept after the sequence: the shared model, every task's own tensors, a replay
                # buffer, state shared by all tasks (InfLoRA's subspace bases, L2P's prompt pool)
                storage_bytes=rs[0]["backbone_bytes"]
                + sum(rs[0]["bytes_per_task"])
                + rs[0].get("buffer_bytes", 0)
                + rs[0].get("shared_state_bytes", 0),
                wall_s=metrics.mean_std([r["wall_s"] for r in rs])[0],
                lr=rs[0].get("lr"),
                coef_lr=rs[0].get("coef_lr"),
                # convergence: the share of (task, seed) whose kept validation epoch is not the last one
                best_before_last=_best_before_last(rs),
            )
        )
    return rows


def _best_before_last(runs: list[dict]) -> float | None:
    pairs = [(b, len(c)) for r in runs for b, c in zip(r.get("best_epochs") or [], r.get("val_curves") or []) if c]
    return sum(b < n - 1 for b, n in pairs) / len(pairs) if pairs else None


def contrasts(runs: list[dict], pairs: list) -> list[dict]:
    """Per (row, reference[, the paper's figure]): the per-seed difference of average accuracy (the same
    seed, so the same head initialisations and data order), mean +- std over the seeds both have; 'beyond
    2 std' when its mean exceeds twice its std (None with one seed: there is no spread), the paired t-test's
    p and its minimum detectable effect (:mod:`weightlab.stats`: α 0.05, power 0.8)."""
    by = {}
    for r in runs:
        by.setdefault(r.get("label") or r["method"], {})[r["seed"]] = r["average_accuracy"]
    out = []
    for pair in pairs:
        row, ref, paper = (*pair, None)[:3]
        a, b = by.get(row, {}), by.get(ref, {})
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        diff = [a[s] - b[s] for s in seeds]
        test = paired(diff) or {}  # None with one seed: no spread to test
        mean, std = (test["mean"], test["std"]) if test else metrics.mean_std(diff)
        out.append(
            dict(
                row=row,
                reference=ref,
                seeds=seeds,
                diffs=diff,
                mean=mean,
                std=std,
                beyond_2std=abs(mean) > 2 * std if len(seeds) > 1 else None,  # one seed: no spread to compare
                p=test.get("p"),
                mde=test.get("mde"),
                paper=paper,
            )
        )
    return out


def rates_at_edge(chosen: dict) -> list[str]:
    """Which of a row's chosen rates sit at an edge of the grid they were chosen from, extensions
    included (``lr``, ``coef lr``): such a rate is not known to be the best, and the table says so. The
    coefficient candidates are the coefficient grid and the row's own lr ("= lr")."""
    out = []
    # with the head search, lr was chosen last, from head_lr_grid, at the coefficients' rate
    lr_grid = chosen.get("head_lr_grid") or chosen.get("lr_grid")
    if lr_grid and at_edge(lr_grid, chosen["lr"]):
        out.append("lr")
    if chosen.get("coef_lr_grid"):
        rates = [*chosen["coef_lr_grid"], chosen["lr"]]
        if at_edge(rates, chosen.get("coef_lr") or chosen["lr"]):
            out.append("coef lr")
    return out


def _selection_markdown(payload: dict) -> list[str]:
    """The fair protocol's record: every selection run's validation score, the chosen rates, and the
    paired contrasts."""
    suite = payload["suite"]
    lines = [
        "",
        f"## Learning rates, chosen on validation (seed {suite['seeds'][0]})",
        "",
        f"Grid {list(suite['lr_grid'])} for every per-task row (head included, one rate), then for rows with "
        f"RECAST coefficients the coefficients' rate from {list(suite.get('coef_lr_grid') or [])} at the chosen "
        "rate"
        + (
            ", then the row's own rate (head, BatchNorm) again from the lr grid at the chosen coefficients' rate"
            if suite.get("head_search")
            else ""
        )
        + f"; a grid is extended past an edge that scored best up to {suite.get('grid_extensions', 2)} times. "
        + (
            "Validation images drawn from each task's test split (the test read on the rest: images the backbone "
            "never saw); "
            if suite.get("val_from") == "test"
            else "Validation images held out of each task's training split; "
        )
        + ("every seed draws its own data split. " if suite.get("data_seeds") else "one data split for every seed. ")
        + "Score: the mean over tasks of the best validation accuracy; the test split is not read. StepLR "
        f"(x0.1) every {suite.get('lr_step') or max(1, round(suite['epochs'] / 3))} epochs. The chosen rates are "
        "fixed for every seed.",
        "",
    ]
    shared = suite.get("shared_lr") or {}
    if shared:
        lines += [
            "Rows whose own rate (the head's) is another row's chosen rate, only their coefficients' rate searched: "
            + "; ".join(f"{row} takes {src}'s" for row, src in shared.items())
            + ".",
            "",
        ]
    same = {}
    for r in payload.get("selection", []) + payload["runs"]:
        if r.get("same_run_as"):
            same.setdefault((r.get("label") or r["method"], r["same_run_as"]), set()).add(r["seed"])
    if same:
        lines += [
            "Runs of one configuration (the rows' rates came out the same) are run once and filed for both rows "
            "(`same_run_as` in results.json): "
            + "; ".join(
                f"{row}'s are {src}'s (seeds {', '.join(map(str, sorted(ss)))})" for (row, src), ss in same.items()
            )
            + ".",
            "",
        ]
    lines += [
        "| row | lr | coef lr | val score | chosen |",
        "|---|---|---|---|---|",
    ]
    chosen = payload.get("chosen", {})
    for r in payload.get("selection", []):
        name = r.get("label") or r["method"]
        c = chosen.get(name, {})
        mark = "**yes**" if c.get("lr") == r["lr"] and c.get("coef_lr") == r.get("coef_lr") else ""
        clr = "= lr" if r.get("coef_lr") is None else f"{r['coef_lr']:g}"
        lines.append(f"| {name} | {r['lr']:g} | {clr} | {selection_score(r):.2f} | {mark} |")
    if payload.get("contrasts"):
        lines += [
            "",
            "## Paired differences (average accuracy, same seed)",
            "",
            "| row - reference | seeds | mean ± std | beyond 2 std | p (paired t) "
            "| detectable (MDE, α 0.05, power 0.8) | the paper's (its Table 4 averages) | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in payload["contrasts"]:
            paper = "-" if c.get("paper") is None else f"{c['paper']:+.1f}"
            test = None if c.get("p") is None else dict(mean=c["mean"], significant=c["p"] < 0.05, mde=c.get("mde"))
            lines.append(
                f"| {c['row']} - {c['reference']} | {len(c['seeds'])} | {c['mean']:+.2f} ± {c['std']:.2f} | "
                f"{ {True: 'yes', False: 'no', None: 'n/a (1 seed)'}[c['beyond_2std']] } | "
                f"{'-' if c.get('p') is None else format(c['p'], '.2g')} | "
                f"{'-' if c.get('mde') is None else format(c['mde'], '.2f')} | {paper} | "
                f"{verdict(test, c.get('paper'))} |"
            )
        lines += [
            "",
            "Verdict: 'reproduces' (p < 0.05, the paper's sign), 'opposite' (p < 0.05, the other sign), 'not "
            "reproduced' (not significant although an effect of the paper's size was detectable: MDE <= it), "
            "'undetectable at this power' (MDE above the paper's effect: more seeds needed to tell).",
        ]
    return lines


def to_markdown(payload: dict) -> str:
    suite = payload["suite"]
    fair = bool(suite.get("lr_grid"))
    tasks = [t["name"] for t in payload.get("tasks", [])]
    lines = [
        f"# {suite['name']}: {suite.get('description', '')}",
        "",
        f"Model `{suite['model']}`, sequence `{suite['sequence']}`, "
        f"{suite['epochs']} epochs per task, split sizes {suite['sizes']}, BatchNorm statistics: {suite['bn']}. "
        "Test accuracy (%) after the last task, mean ± std over seeds; epoch selected on validation.",
        "",
        "| method | seeds | trainable / task (+ head) | KiB / task | "
        + " | ".join(tasks)
        + " | avg acc | BWT | max forgetting | zero forgetting | storage KiB | wall s / run |"
        + (" lr (coef lr) | best epoch < last |" if fair else ""),
        "|---|---|---|---|" + "---|" * len(tasks) + "---|---|---|---|---|---|" + ("---|---|" if fair else ""),
    ]
    for r in payload["summary"]:
        cells = " | ".join(f"{m:.1f} ± {s:.1f}" for m, s in zip(r["per_task"], r["per_task_std"]))
        extra = ""
        if fair:
            rate = "own recipe" if not tunable(r["method"]) else f"{r['lr']:g}"
            rate += f" ({r['coef_lr']:g})" if r.get("coef_lr") is not None else ""
            edges = rates_at_edge(payload.get("chosen", {}).get(r["name"], {}))
            rate += f" **at the grid's edge: {', '.join(edges)}**" if edges else ""
            share = r.get("best_before_last")
            extra = f" {rate} | {'-' if share is None else f'{100 * share:.0f}%'} |"
        lines.append(
            f"| {r['name']} | {len(r['seeds'])} | {r['trainable_per_task']:,} (+{r['head_per_task']:,}) | "
            f"{r['bytes_per_task'] / 1024:.1f} | {cells} | **{r['average_accuracy']:.2f} ± "
            f"{r['average_accuracy_std']:.2f}** | {r['backward_transfer']:.2f} | {r['forgetting']:.2f} | "
            f"{'yes' if r['zero_forgetting'] else 'NO'} | {r['storage_bytes'] / 1024:.0f} | {r['wall_s']:.0f} |" + extra
        )
    if fair:
        lines += _selection_markdown(payload)
    if payload["summary"]:
        lines += [
            "",
            f"Shared backbone: {payload['summary'][0]['backbone_bytes'] / 1024:.0f} KiB. Storage: what is "
            "kept after the sequence (the shared model, every task's own tensors, a replay buffer as float32 "
            "model inputs, state shared by all tasks such as InfLoRA's subspace bases or L2P's prompt pool). "
            "Continual-learning baselines (EWC, LwF, GDumb, ER-ACE, DER++, HAT, InfLoRA, L2P) share one model "
            "across the sequence and keep their last epoch.",
        ]
    return "\n".join(lines) + "\n"
