"""The KNOW suites' report: the paper's Table 1 layout (mean ± std, the gain over naive transfer and
whether it is beyond the noise, the chosen learning rates), the time cost of Table 7, the weight-space
table, the Table 6 layout for KNOWN variants, and the plots, from a suite's results."""

from __future__ import annotations

from pathlib import Path

import torch

from weightlab.errors import WeightlabError
from weightlab.io import write_text
from weightlab.know.forgetting import forgetting_check
from weightlab.know.predictors import display_name
from weightlab.know.protocol import ALL_PREDICTORS, CONTROL_ROWS, candidate_label
from weightlab.know.trajectory import scale_label
from weightlab.stats import ALPHA, POWER, paired, verdict
from weightlab.tuning import at_edge

#: KNOWN's gain over naive transfer in the KNOW paper's Table 1 (ResNet-18, CIFAR-100 -> CIFAR-10), smallest
#: and largest over its five columns and the x2 / x4 / x8 rows: x2 +0.39..+0.62, x4 +0.47..+0.98, x8 +0.56..+1.15
PAPER_KNOWN_GAIN = (0.39, 1.15)


def trajectory_infos(prep: dict) -> list[tuple[int | None, dict]]:
    """(trajectory seed, prepare record) of every trajectory in ``results["prepare"]``."""
    if "trajectories" in prep:
        return [(int(k), v) for k, v in prep["trajectories"].items()]
    return [(None, prep)] if prep else []


def row_name(row_id: str) -> str:
    return row_id.split("/", 1)[-1]


def _std(values: list[float]) -> float:
    return float(torch.tensor(values, dtype=torch.float64).std()) if len(values) > 1 else 0.0


def summarize(results: dict) -> list[dict]:
    """One entry per table row over every trajectory and transfer seed: mean ± std of the test accuracy,
    the std of the per-trajectory means, the gain over naive transfer, the paired differences with naive
    (same trajectory, same seed: mean ± std, n, p) and whether the gain is beyond the noise (the paired
    t-test at 5 %; without pairs, more than the larger of the two rows' stds), and the learning rates the
    validation chose."""
    by_row: dict[str, list[dict]] = {}
    for r in results["runs"]:
        by_row.setdefault(row_name(r["row"]), []).append(r)
    table = []
    naive = by_row.get("naive")
    naive_mean = sum(r["accuracy"] for r in naive) / len(naive) if naive else None
    naive_std = _std([r["accuracy"] for r in naive]) if naive else 0.0
    naive_by_pair = {(r.get("trajectory"), r["seed"]): r["accuracy"] for r in naive or []}
    for row, runs in by_row.items():
        accs = [r["accuracy"] for r in runs]
        mean, std = sum(accs) / len(accs), _std(accs)
        per_traj: dict = {}
        for r in runs:
            per_traj.setdefault(r.get("trajectory"), []).append(r["accuracy"])
        lrs: dict[str, int] = {}
        edges = 0  # choices at an edge of the (extended) grid: not known to be the best rate
        for r in runs:
            if "lr_selection" in r:
                sel = r["lr_selection"]
                key = f"{sel['lr']:g}"
                lrs[key] = lrs.get(key, 0) + 1
                edges += bool(sel.get("at_edge", at_edge(sel["grid"], sel["lr"])))
        gain = None if naive_mean is None else mean - naive_mean
        diffs = [
            r["accuracy"] - naive_by_pair[(r.get("trajectory"), r["seed"])]
            for r in runs
            if (r.get("trajectory"), r["seed"]) in naive_by_pair
        ]
        # with naive transfer, the same trajectory and seed: mean ± std, the t-test, its MDE (weightlab.stats)
        pairs = paired(diffs) if row != "naive" else None
        # the stricter unit: one mean difference per trajectory (seeds of one trajectory are not independent)
        per_traj_diff: dict = {}
        for r in runs:
            key = (r.get("trajectory"), r["seed"])
            if key in naive_by_pair and r.get("trajectory") is not None:
                per_traj_diff.setdefault(r["trajectory"], []).append(r["accuracy"] - naive_by_pair[key])
        traj_test = (
            paired([sum(v) / len(v) for v in per_traj_diff.values()])
            if row != "naive" and len(per_traj_diff) > 2
            else None
        )
        if pairs is not None:
            beyond = pairs["significant"]
        else:
            beyond = None if gain is None or row == "naive" else abs(gain) > max(std, naive_std)
        label = runs[0]["label"]
        if results.get("suite", {}).get("known_weights") and row.rsplit("_x", 1)[0] == "known":
            label = candidate_label(results["suite"]["known_weights"])  # results labelled before the fix
        table.append(
            {
                "row": row,
                "label": label,
                "step": runs[0]["step"],
                "seeds": len(runs),
                "trajectories": len(per_traj),
                "mean": mean,
                "std": std,
                "trajectory_std": _std([sum(v) / len(v) for v in per_traj.values()]),
                "gain": gain,
                "paired": pairs,
                "paired_trajectories": traj_test,
                "beyond_noise": beyond,
                "lr": lrs,
                "lr_at_edge": edges,
            }
        )
    return table


def _traj_cell(test: dict | None) -> str:
    return "" if test is None else f"{test['mean']:+.2f} (p {test['p']:.2g}, MDE {test['mde']:.2f}, n {test['n']})"


def _forgetting_line(check: dict | None) -> str:
    """The trajectory's forgetting, stated beside every table built on it."""
    if not check or check.get("forgets") is None:
        return "**forgetting: unknown** (the trajectory's stages were not evaluated on the D⁰ test split)."
    acc = " → ".join(f"{a:.2f}" for a in check["accuracy"])
    if "control_p" in check:
        ctrl = " → ".join(f"{a:.2f}" for a in check["control_accuracy"])
        verdict = "yes" if check["forgets"] else "not beyond the restart control"
        return (
            f"**forgetting: {verdict}**: D⁰ test accuracy per stage {acc}; the same-size restart control {ctrl}; "
            f"the last stage is {check['beyond_control']:+.2f} points below the control's (one-sided p "
            f"{check['control_p']:.2g} on {check['n_eval']} images)."
        )
    if check["forgets"]:
        return f"**forgetting: yes**: D⁰ test accuracy per stage {acc}."
    return (
        f"**forgetting: no**: D⁰ test accuracy per stage {acc} does not fall, so this trajectory does not "
        "test KNOW's hypothesis (retrodiction here rewinds training, not forgetting)."
    )


def _row_order(row: str, step: int) -> tuple:
    base = row.rsplit("_x", 1)[0] if step else row
    order = CONTROL_ROWS + ALL_PREDICTORS
    return (step, order.index(base) if base in order else len(order), row)


def write_report(results: dict, out: Path) -> None:
    table = summarize(results)
    suite = results["suite"]
    infos = trajectory_infos(results.get("prepare", {}))
    f = suite["forget"]
    multi = len(infos) > 1
    lines = [
        f"# KNOW transfer: {suite['name']}",
        "",
        results.get("description", ""),
        "",
        f"Source {suite['source']} ({suite['model']}), downstream {suite['target']}; "
        f"forgetting r={f['ratio']}, S={f['stages']}, {f['epochs']} epoch(s)/stage, {f['optimizer']} lr {f['lr']}"
        + (f", augmentation {f['augment']}" if f.get("augment") else "")
        + f"; transfer {suite['transfer']['warmup_epochs']} warm-up + {suite['transfer']['epochs']} epochs"
        + (
            ", learning rate chosen "
            + ("once per trajectory (on the first transfer seed)" if suite.get("select_once") else "per run")
            + f" from {list(suite['transfer']['lr_grid'])}"
            + (
                f" (extended past an edge up to {suite['transfer']['lr_extensions']} times)"
                if suite["transfer"].get("lr_extensions")
                else ""
            )
            + (
                f" on {suite['target_val']} held-out images of the downstream training split"
                if suite.get("target_val")
                else f" on a {suite['transfer']['val_fraction']:.0%} validation split of the downstream training data"
            )
            + " (the test split is read once, at that rate)"
            if suite["transfer"].get("lr_grid")
            else f", lr {suite['transfer']['lr']} (not tuned)"
        )
        + ". Test accuracy (%) at the end of transfer, mean ± std over "
        + (f"{len(infos)} trajectories × {len(suite['seeds'])} transfer seeds" if multi else "seeds")
        + ".",
        "",
    ]
    for seed, info in infos:
        prefix = f"Trajectory {seed}: " if multi else ""
        check = info.get("forgetting") if "control_p" in (info.get("forgetting") or {}) else None
        lines.append(prefix + _forgetting_line(check or forgetting_check(info.get("stages", []))))
    lines += _protocol_lines(infos, suite)
    lines += [
        "",
        "| pred. | method | runs | accuracy | "
        + ("between-trajectory std | " if multi else "")
        + f"gain vs naive | detectable (MDE, α {ALPHA:g}, power {POWER:g}) | beyond noise | "
        + ("trajectories as units: p (MDE) | " if multi else "")
        + "chosen lr | "
        f"vs the paper (KNOWN +{PAPER_KNOWN_GAIN[0]:g} to +{PAPER_KNOWN_GAIN[1]:g}) |",
        "|---|---|---|---|" + ("---|---|" if multi else "") + "---|---|---|---|---|",
    ]
    for row in sorted(table, key=lambda r: _row_order(r["row"], r["step"])):
        pred = "x1" if row["step"] == 0 else scale_label(f["ratio"], row["step"])
        gain = "" if row["row"] == "naive" or row["gain"] is None else f"{row['gain']:+.2f}"
        if row.get("paired"):
            gain = f"{row['paired']['mean']:+.2f} ± {row['paired']['std']:.2f} (p {row['paired']['p']:.2g})"
        noise = {None: "", True: "yes", False: "no"}[row["beyond_noise"]]
        mde = (row.get("paired") or {}).get("mde")
        mde = "" if mde is None else f"{mde:.2f}"
        lr = ", ".join(f"{k}×{v}" for k, v in sorted(row["lr"].items(), key=lambda kv: float(kv[0])))
        if row.get("lr_at_edge"):
            lr += f" (**{row['lr_at_edge']} at the grid's edge**)"
        is_known = row["row"].rsplit("_x", 1)[0].startswith("known")
        paper = verdict(row.get("paired"), PAPER_KNOWN_GAIN[0]) if is_known and row["step"] else ""
        lines.append(
            f"| {pred} | {row['label']} | {row['seeds']} | {row['mean']:.2f} ± {row['std']:.2f} | "
            + (f"{row['trajectory_std']:.2f} | " if multi else "")
            + f"{gain} | {mde} | {noise} | "
            + (f"{_traj_cell(row.get('paired_trajectories'))} | " if multi else "")
            + f"{lr} | {paper} |"
        )
    lines += _s_table_lines(table, suite, f["ratio"], infos)
    run_s = sum(r.get("seconds", 0.0) for r in results["runs"])
    lines += [
        "",
        f"vs the paper: KNOWN's rows against the paper's smallest KNOWN gain over naive transfer "
        f"(+{PAPER_KNOWN_GAIN[0]:g}; its Table 1 spans +{PAPER_KNOWN_GAIN[0]:g} to +{PAPER_KNOWN_GAIN[1]:g}): "
        "'reproduces' (a significant gain), 'opposite' (a significant loss), 'not reproduced' (no significant "
        "gain although one of that size was detectable), 'undetectable at this power' (MDE above it).",
        "",
        "Gain vs naive: the mean ± std of the paired differences with naive transfer (same trajectory, same "
        "transfer seed), with the p-value of a two-sided paired t-test; 'beyond noise' is p < 0.05 (rows "
        "without pairs: the gain exceeds the larger of the two rows' stds). With "
        f"{sum(1 for r in table if r.get('paired'))} rows tested, about "
        f"{0.05 * sum(1 for r in table if r.get('paired')):.1f} 'yes' are expected by chance alone.",
        "",
        f"Wall time on {results['machine'].get('cpu')} ({results['machine'].get('cores')} cores): "
        f"preparation (pretraining, forgetting, predictions, baselines) "
        f"{results.get('prepare_seconds', 0):.0f} s, {len(results['runs'])} transfer runs {run_s:.0f} s.",
    ]
    lines += _time_cost_lines(infos)
    for seed, info in infos:
        lines += _trajectory_lines(seed, info, multi)
    lines += _weight_space_lines(infos)
    if infos:
        preds = infos[0][1].get("predictions", {})
        if preds:
            lines += ["", "Parameters each predictor changes (by kind; everything else is copied from Θ⁰):", ""]
            for n, p in preds.items():
                display = p.get("display") or display_name(n)
                if isinstance(p.get("skipped"), str):
                    lines.append(f"- {display}: not run ({p['skipped']})")
                else:
                    extra = "; ".join(f"step {k} not defined: {why}" for k, why in p.get("skipped", {}).items())
                    lines.append(f"- {display}: {p.get('touched')}" + (f" ({extra})" if extra else ""))
    write_text(out / "results.md", "\n".join(lines) + "\n")
    variants = suite.get("known_variants") or []
    try:
        from weightlab.bench.reports.know_plots import plot_trajectory_pca

        root = out if not multi else out / f"traj_{infos[0][0]}"
        labels = {name: label for name, label, _ in variants}
        plot_trajectory_pca(root / "trajectory", root / "predictions", out / "trajectory_pca.png", labels)
    except WeightlabError:
        pass
    if variants:
        _plot_s_ablation(results, variants, f["ratio"], out / "s_ablation.png")


def _s_table_lines(table: list[dict], suite: dict, ratio: float, infos) -> list[str]:
    """The paper's Table 6 layout for a suite with KNOWN variants: one line per history length S (S=2 is
    Task Vector, as in the paper), one column per prediction step, the paired gain over naive below."""
    variants = suite.get("known_variants") or []
    if not variants:
        return []
    by_row = {r["row"]: r for r in table}
    steps = sorted({r["step"] for r in table if r["step"]})
    lines = [
        "",
        "Table 6 layout: test accuracy by history length S (mean ± std; in brackets the paired gain over naive "
        "transfer, * when p < 0.05):",
        "",
        "| S | predictor | " + " | ".join(scale_label(ratio, k) for k in steps) + " |",
        "|---|---|" + "---|" * len(steps),
    ]
    preds = infos[0][1].get("predictions", {}) if infos else {}
    seq_len = lambda name: (preds.get(name, {}).get("options") or {}).get("seq_len", "?")  # noqa: E731
    candidates = [("2", "Task Vector", "task_vector")] + [(seq_len(name), label, name) for name, label, _ in variants]
    for s_len, label, name in candidates:
        cells = []
        for k in steps:
            r = by_row.get(f"{name}_{scale_label(ratio, k)}")
            if r is None:
                cells.append("")
                continue
            cell = f"{r['mean']:.2f} ± {r['std']:.2f}"
            if r.get("paired"):
                cell += f" ({r['paired']['mean']:+.2f}{'*' if r['paired']['significant'] else ''})"
            cells.append(cell)
        if any(cells):
            lines.append(f"| {s_len} | {label} | " + " | ".join(cells) + " |")
    return lines


def _plot_s_ablation(results: dict, variants, ratio: float, path: Path) -> None:
    """The Table 6 rows as paired differences with naive transfer, one panel per step."""
    from weightlab.bench.reports.know_plots import plot_paired_gains

    naive = {(r.get("trajectory"), r["seed"]): r["accuracy"] for r in results["runs"] if row_name(r["row"]) == "naive"}
    rows = []
    for name, label in [("task_vector", "S=2 (Task Vector)")] + [(n, lab) for n, lab, _ in variants]:
        diffs: dict[str, list[float]] = {}
        for r in results["runs"]:
            row = row_name(r["row"])
            base, _, step = row.rpartition("_")
            if base == name and (r.get("trajectory"), r["seed"]) in naive:
                diffs.setdefault(step, []).append(r["accuracy"] - naive[(r.get("trajectory"), r["seed"])])
        if diffs:
            rows.append((label, diffs))
    if rows:
        plot_paired_gains(rows, path, "History length S (Table 6): paired gain over naive transfer, mean ± std")


def _protocol_lines(infos, suite: dict) -> list[str]:
    """Across trajectories: the forgetting beyond the restart control (paired over trajectories, with its
    MDE) and the base trained twice as long (convergence measured)."""
    lines = []
    beyond = [i["forgetting"]["beyond_control"] for _, i in infos if "beyond_control" in (i.get("forgetting") or {})]
    test = paired(beyond)
    if test is not None:
        lines += [
            "",
            f"Forgetting beyond the restart control over the {test['n']} trajectories (control − forgetting at the "
            f"last stage): {test['mean']:+.2f} ± {test['std']:.2f} points, p {test['p']:.2g} (paired t-test; "
            f"detectable at α {ALPHA:g}, power {POWER:g}: {test['mde']:.2f} points)"
            + (" — **significant**." if test["significant"] else " — not significant at this power."),
        ]
    longs = [(s, i["long_base"]) for s, i in infos if i.get("long_base")]
    if longs:
        parts = ", ".join(
            f"trajectory {s}: {lb['base_accuracy']:.2f} → {lb['accuracy']:.2f} ({lb['gain']:+.2f})" for s, lb in longs
        )
        se = 100 * (2 * 0.7 * 0.3 / max(suite.get("eval_size") or 2000, 1)) ** 0.5  # of a difference of two
        gains = [lb["gain"] for _, lb in longs]
        if all(g > 2 * se for g in gains):
            state = "**the base had not converged**: twice the epochs gains more than twice that noise on every one"
        elif all(abs(g) <= 2 * se for g in gains):
            state = "the base had converged: twice the epochs gains nothing beyond that noise"
        else:
            state = "mixed: some bases gain beyond that noise, some do not"
        lines += [
            "",
            f"Convergence: the base's protocol with twice the epochs ({longs[0][1]['epochs']}), D⁰ test accuracy "
            f"(base → 2× longer): {parts}. The standard error of such a difference is about {se:.1f} points; "
            f"{state}.",
        ]
    return lines


def _trajectory_lines(seed, info: dict, multi: bool) -> list[str]:
    title = f"Trajectory {seed}" if multi else "Forgetting trajectory"
    lines = ["", f"{title} (accuracy on the source test split):", ""]
    pre = info.get("pretraining")
    if pre:
        acc = [a for a in pre["val_accuracy"] if a is not None]
        lines += [
            f"Θ⁰ pretrained to {info.get('base_accuracy', float('nan')):.2f} on D⁰ = {info.get('d0_size')} samples "
            f"(validation curve, last 5 epochs: {', '.join(f'{a:.1f}' for a in acc[-5:])}; "
            f"{'flattened' if pre.get('converged') else 'not flattened'}).",
            "",
        ]
    lines += ["| stage | samples | accuracy |", "|---|---|---|"]
    lines += [
        f"| {s['stage']} | {s['subset_size']} | {s.get('eval_accuracy', float('nan')):.2f} |"
        for s in info.get("stages", [])
    ]
    if info.get("incremental_accuracy") is not None:
        lines += ["", f"Incremental pretraining on the source test split: {info['incremental_accuracy']:.2f}."]
    truth = info.get("truth")
    if truth:
        parts = [f"Θ⁰ fine-tuned on all {truth['d_size']} samples: {truth.get('truth_ft_accuracy', float('nan')):.2f}"]
        if truth.get("truth_accuracy") is not None:
            parts.append(f"trained on them from scratch: {truth['truth_accuracy']:.2f}")
    ctrl = info.get("restart_control")
    if ctrl:
        lines += [
            "",
            "Same-size restart control (the stage recipe on samples drawn from all of D⁰) per stage: "
            + ", ".join(f"{c.get('eval_accuracy', float('nan')):.2f}" for c in ctrl)
            + ".",
        ]
    if truth:
        lines += ["", "Real ×2 weights on the source test split: " + "; ".join(parts) + "."]
    controls = info.get("controls")
    if controls:
        lines += [
            "",
            "Shrink control factors (least-squares c with prediction ≈ c·Θ⁰ over the BatchNorm-fed weights): "
            + ", ".join(f"{k} {v['factor']:.3f} ({display_name(v['reference'])})" for k, v in controls.items())
            + ".",
        ]
    return lines


def _time_cost_lines(infos) -> list[str]:
    """The paper's Table 7: what KNOW costs against training on twice the data."""
    secs = [info.get("seconds", {}) for _, info in infos]
    if not any("truth_pretraining" in s for s in secs):
        return []
    mean = lambda key: sum(s.get(key, 0.0) for s in secs) / len(secs)  # noqa: E731
    predict = sum(sum(v for k, v in s.items() if k.startswith("predict_")) for s in secs) / len(secs)
    return [
        "",
        "Time cost per trajectory (the paper's Table 7; mean wall seconds on this machine):",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| pretraining Θ⁰ on D⁰ | {mean('base'):.0f} |",
        f"| progressive forgetting | {mean('forgetting'):.0f} |",
        f"| every prediction (all predictors, all steps) | {predict:.1f} |",
        f"| training on ×2 data from scratch (the alternative) | {mean('truth_pretraining'):.0f} |",
    ]


def _weight_space_lines(infos) -> list[str]:
    """The Fig. 3 claim measured: each ×2 candidate against the real ×2 weights, mean ± std over trajectories."""
    per: dict[tuple[str, str], list[dict]] = {}
    for _, info in infos:
        for tname, comp in (info.get("truth") or {}).get("weight_space", {}).items():
            for cand, m in comp.items():
                per.setdefault((tname, cand), []).append(m)
    if not per:
        return []
    lines = [
        "",
        "Weight space against the real ×2 weights Θ⁻¹ (conv and linear weights, head excluded; mean ± std over "
        "trajectories). cosine: per output channel, cos(Θ̂ − Θ⁰, Θ⁻¹ − Θ⁰), averaged; distance: ‖Θ̂ − Θ⁻¹‖ / "
        "‖Θ⁰ − Θ⁻¹‖ (< 1: closer to the truth than Θ⁰); step: ‖Θ̂ − Θ⁰‖ / ‖Θ⁻¹ − Θ⁰‖.",
        "",
        "| Θ⁻¹ | candidate | cosine | distance | step |",
        "|---|---|---|---|---|",
    ]

    def cell(ms: list[dict], key: str) -> str:
        return f"{sum(m[key] for m in ms) / len(ms):.3f} ± {_std([m[key] for m in ms]):.3f}"

    for (tname, cand), ms in per.items():
        lines.append(
            f"| {tname} | {cand} | {cell(ms, 'cosine')} | {cell(ms, 'relative_distance')} | {cell(ms, 'step')} |"
        )
    return lines
