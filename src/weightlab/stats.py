"""The statistics every table states: a paired contrast's mean ± std, its two-sided paired t-test and its
minimum detectable effect (the smallest true mean difference the test finds with the stated power).

A contrast is a list of paired differences (the same seed, data split and trajectory on both sides). The
minimum detectable effect (MDE) uses the noncentral t distribution of the paired t statistic with the
observed std: the δ at which ``P(|T| > t_crit | ncp = δ·√n / sd) = power``. A difference smaller than the
MDE that the test does not find is *undetectable at this power*, not "no effect".
"""

from __future__ import annotations

import math

ALPHA = 0.05
POWER = 0.8


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (n - 1; 0 with one value)."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(values) / n
    return m, (math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0)


def minimum_detectable_effect(std: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest mean paired difference a two-sided paired t-test at ``alpha`` detects with probability
    ``power``, for ``n`` pairs whose differences have std ``std``; None with fewer than two pairs."""
    if n < 2 or not math.isfinite(std):
        return None
    if std == 0.0:
        return 0.0
    from scipy import optimize, stats

    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)

    def short(delta: float) -> float:
        ncp = delta * math.sqrt(n) / std
        reach = stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp)
        return (1.0 if math.isnan(reach) else reach) - power  # NaN only far in the tail, where it is 1

    hi = std * (crit + stats.norm.ppf(power)) / math.sqrt(n)  # below the answer for few pairs: grow it
    while short(hi) < 0:
        hi *= 1.5
    return float(optimize.brentq(short, 0.0, hi, xtol=1e-12 * std))


def paired(diffs: list[float], alpha: float = ALPHA, power: float = POWER) -> dict | None:
    """Mean ± std of paired differences, the two-sided paired t-test's p, whether it is significant at
    ``alpha``, and the minimum detectable effect at ``power``; None with fewer than two pairs."""
    if len(diffs) < 2:
        return None
    from scipy import stats

    mean, std = mean_std(diffs)
    if std == 0.0:
        p = 0.0 if mean != 0.0 else 1.0
    else:
        t = mean / (std / len(diffs) ** 0.5)
        p = float(2 * stats.t.sf(abs(t), len(diffs) - 1))
    return {
        "mean": mean,
        "std": std,
        "n": len(diffs),
        "p": p,
        "significant": p < alpha,
        "mde": minimum_detectable_effect(std, len(diffs), alpha, power),
    }


def verdict(test: dict | None, paper: float | None) -> str:
    """What a paired contrast says about a published effect of size ``paper`` (points; the smallest the
    paper reports when it gives a range): ``reproduces`` (significant, same sign), ``opposite`` (significant,
    other sign), ``not reproduced`` (not significant although an effect of the paper's size was detectable:
    MDE <= |paper|), or ``undetectable at this power`` (MDE > |paper|)."""
    if test is None or paper is None:
        return "-"
    if test["significant"]:
        return "reproduces" if (test["mean"] > 0) == (paper > 0) else "opposite"
    mde = test.get("mde")
    if mde is not None and mde <= abs(paper):
        return "not reproduced"
    return "undetectable at this power"


__all__ = ["ALPHA", "POWER", "mean_std", "minimum_detectable_effect", "paired", "verdict"]
