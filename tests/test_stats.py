"""The statistics every table states (weightlab.stats): the paired t-test and its minimum detectable effect."""

import math

import numpy as np
import pytest

from weightlab.stats import mean_std, minimum_detectable_effect, paired


def test_the_mde_matches_the_normal_limit_scales_with_the_std_and_grows_with_few_pairs():
    assert minimum_detectable_effect(1.0, 10_000) * 100 == pytest.approx(2.8016, abs=2e-3)  # z_.975 + z_.8
    assert minimum_detectable_effect(1.0, 9) == pytest.approx(1.0664, abs=2e-3)  # G*Power's dz for n = 9
    assert minimum_detectable_effect(2.5, 9) == pytest.approx(2.5 * minimum_detectable_effect(1.0, 9))
    values = [minimum_detectable_effect(1.0, n) for n in (2, 3, 5, 9, 25, 100)]
    assert values == sorted(values, reverse=True)
    assert minimum_detectable_effect(1.0, 1) is None and minimum_detectable_effect(0.0, 5) == 0.0


def test_a_true_effect_of_one_mde_is_found_with_the_stated_power():
    """Simulated: paired differences ~ N(MDE, 1), n = 9; the t-test rejects in 80 % of 20,000 draws."""
    from scipy import stats

    n, sd = 9, 1.0
    mde = minimum_detectable_effect(sd, n)
    rng = np.random.default_rng(0)
    draws = rng.normal(mde, sd, size=(20_000, n))
    t = draws.mean(1) / (draws.std(1, ddof=1) / math.sqrt(n))
    rejected = np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1))
    assert rejected == pytest.approx(0.8, abs=0.012)


def test_paired_reports_mean_std_p_and_mde():
    diffs = [0.5, 1.5, 1.0, 2.0, 0.0]
    out = paired(diffs)
    assert (out["mean"], out["std"]) == pytest.approx(mean_std(diffs))
    assert out["n"] == 5 and 0 < out["p"] < 0.05 and out["significant"]
    assert out["mde"] == pytest.approx(minimum_detectable_effect(out["std"], 5))
    assert paired([1.0]) is None
    assert paired([0.0, 0.0])["p"] == 1.0 and paired([1.0, 1.0])["p"] == 0.0


def test_a_verdict_says_whether_the_paper_s_effect_was_detectable():
    from weightlab.stats import paired, verdict

    big = paired([1.0, 1.2, 0.9, 1.1, 1.0, 0.95])
    assert verdict(big, 1.1) == "reproduces" and verdict(big, -1.0) == "opposite"
    flat = paired([0.05, -0.05, 0.02, -0.02, 0.01, -0.01] * 3)  # tiny noise: an effect of 0.3 is detectable
    assert flat["mde"] < 0.3 and verdict(flat, 0.3) == "not reproduced"
    noisy = paired([3.0, -2.0, 1.0, -4.0])  # an MDE far above the paper's effect
    assert verdict(noisy, 0.5) == "undetectable at this power"
    assert verdict(None, 1.0) == "-" and verdict(big, None) == "-"


def test_know_table_gives_no_verdict_without_a_noise_estimate():
    from weightlab.bench.reports.know import _chance_line, summarize

    def run(row, seed, acc, step=0):
        return dict(row=row, label=row, step=step, seed=seed, accuracy=acc)

    one = {"runs": [run("naive", 42, 66.7), run("known_x2", 42, 66.9, 1), run("known_x8", 42, 65.1, 3)]}
    table = summarize(one)
    assert [r["beyond_noise"] for r in table] == [None, "one seed", "one seed"]  # +0.20 is two images, not "yes"
    assert "no noise estimate" in _chance_line(table) and "expected by chance" not in _chance_line(table)
    three = {
        "runs": [run("naive", s, a) for s, a in ((1, 60.0), (2, 61.0), (3, 62.0))]
        + [run("known_x2", s, a, 1) for s, a in ((1, 63.0), (2, 64.1), (3, 64.9))]
    }
    table = summarize(three)
    assert table[1]["beyond_noise"] is True and table[1]["paired"]["n"] == 3
    assert "1 rows tested" in _chance_line(table)
