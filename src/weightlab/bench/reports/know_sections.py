"""The KNOW report's sections about the trajectories themselves: the forgetting verdict (with the restart control),
the protocol checks over trajectories (forgetting beyond the control, convergence), each trajectory's stages, the
time cost of the paper's Table 7 and the weight-space table (:mod:`weightlab.bench.reports.know` assembles them)."""

from __future__ import annotations

from weightlab.know.predictors import display_name
from weightlab.stats import ALPHA, POWER, mean_std, paired


def forgetting_line(check: dict | None) -> str:
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


def protocol_lines(infos, suite: dict) -> list[str]:
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


def trajectory_lines(seed, info: dict, multi: bool) -> list[str]:
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


def time_cost_lines(infos) -> list[str]:
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


def weight_space_lines(infos) -> list[str]:
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
        return f"{sum(m[key] for m in ms) / len(ms):.3f} ± {mean_std([m[key] for m in ms])[1]:.3f}"

    for (tname, cand), ms in per.items():
        lines.append(
            f"| {tname} | {cand} | {cell(ms, 'cosine')} | {cell(ms, 'relative_distance')} | {cell(ms, 'step')} |"
        )
    return lines
