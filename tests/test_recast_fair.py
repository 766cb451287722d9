"""Issue 17: the gauge of a RECAST fit, the three bases, K under Adam / SGD, and the fair protocol's
learning-rate selection (validation only, first seed, reused)."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from weightlab import recast
from weightlab.bench import incremental as inc
from weightlab.bench.suites import Point, Suite
from weightlab.data.tasks import SplitSizes
from weightlab.errors import WeightlabError
from weightlab.incremental.selection import extend_grid, selection_score
from weightlab.models import create_model
from weightlab.recast.gauge import match_template_scale, regauge, template_scale
from weightlab.recast.pipeline import recast_base
from weightlab.recast.tuner import banks, recast_layers


def _weights(model):
    return {k: layer.weight.detach().clone() for k, layer in recast_layers(model).items()}


@pytest.fixture(scope="module")
def plain():
    torch.manual_seed(0)
    return create_model("resnet20", pretrained=False)


def test_regauge_leaves_every_generated_weight_and_the_outputs_unchanged(plain):
    model = recast_base(plain, dict(templates="auto", layers_per_group=2))
    before, x = _weights(model), torch.randn(4, 3, 32, 32)
    model.eval()
    out_before = model(x)
    g = torch.Generator().manual_seed(1)
    maps = {}
    for name, bank in banks(model).items():
        n = bank.n
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        maps[name] = q @ torch.diag(torch.linspace(0.5, 4.0, n, dtype=torch.float64))  # rotate and stretch
    regauge(model, maps)
    after = _weights(model)
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(x), out_before, rtol=1e-4, atol=1e-5)
    # the templates did change: this is a different gauge of the same weights
    assert any(not torch.allclose(torch.as_tensor(m), torch.eye(m.shape[0], dtype=m.dtype)) for m in maps.values())


def test_regauge_errors(plain):
    model = recast_base(plain, dict(templates="auto", layers_per_group=2))
    name, bank = next(iter(banks(model).items()))
    with pytest.raises(WeightlabError, match="no template bank"):
        regauge(model, {"nope": 2.0})
    with pytest.raises(WeightlabError, match="singular"):
        regauge(model, {name: torch.zeros(bank.n, bank.n)})
    with pytest.raises(WeightlabError, match="must be"):
        regauge(model, {name: torch.eye(bank.n + 1)})
    with pytest.raises(WeightlabError, match="unknown RECAST base"):
        recast_base(plain, dict(base="svd"))


def test_the_three_bases_generate_the_pretrained_weights_and_differ_in_template_scale(plain):
    over = dict(templates="auto", layers_per_group=2)
    cf, rec, rg = (recast_base(plain, dict(over, base=b)) for b in ("closed_form", "recipe", "regauged"))
    originals = dict(plain.named_modules())
    for model in (cf, rg):  # n = layers per group: the closed form is exact
        for k, w in _weights(model).items():
            torch.testing.assert_close(w, originals[k].weight.detach(), rtol=1e-4, atol=1e-5)
    for k, w in _weights(rg).items():  # re-gauging keeps the closed form's weights
        torch.testing.assert_close(w, _weights(cf)[k], rtol=1e-5, atol=1e-6)
    s_cf, s_rec, s_rg = template_scale(cf), template_scale(rec), template_scale(rg)
    for name in s_cf:
        assert s_rg[name] == pytest.approx(s_rec[name], rel=1e-4)  # the recipe's scale
    assert any(abs(s_rec[n] / s_cf[n] - 1) > 0.1 for n in s_cf)  # which is not the closed form's
    # matching a model to itself changes nothing
    again = copy.deepcopy(cf)
    factors = match_template_scale(again, cf)
    assert all(f == pytest.approx(1.0) for f in factors.values())


def _k_model(k: int, init: torch.Tensor, template: torch.Tensor) -> nn.Module:
    lin = nn.Linear(template.shape[2], template.shape[1], bias=False)
    model = nn.Sequential(copy.deepcopy(lin), nn.ReLU(), copy.deepcopy(lin))
    rm = recast.apply_recast(model, recast.RecastConfig(target_modules=["0", "2"], templates=2, coef_sets=k))
    with torch.no_grad():
        next(iter(banks(rm).values())).templates.copy_(template)
        for layer in recast_layers(rm).values():
            layer.coefficients.copy_(init.expand(k, -1))  # every set the same mixing vector (the closed form)
    return rm


@pytest.mark.parametrize("opt", ["adam", "adamw", "sgd"])
def test_coefficient_sets_k_are_inert_under_adam_and_a_learning_rate_factor_under_sgd(opt):
    """Eq. 1-2 use only the mean of the K sets, each set's gradient is the mean's gradient / K: Adam
    normalises the 1/K away (K changes nothing); SGD moves the mean by lr / K."""
    g = torch.Generator().manual_seed(0)
    template, init = torch.randn(2, 6, 6, generator=g), torch.randn(2, generator=g)
    x, y = torch.randn(32, 6, generator=g), torch.randn(32, 6, generator=g)
    runs = {}
    for k in (1, 4):
        rm = _k_model(k, init, template)
        coefs = [p for n, p in rm.named_parameters() if n.endswith("coefficients")]
        lr = 1e-2 if opt != "sgd" else 1e-2 * (1 if k == 1 else 4)  # SGD: K=4 at 4x the rate of K=1
        if opt == "sgd":
            o = torch.optim.SGD(coefs, lr=lr)
        elif opt == "adamw":
            o = torch.optim.AdamW(coefs, lr=lr, weight_decay=1e-2)
        else:
            o = torch.optim.Adam(coefs, lr=lr)
        for _ in range(20):
            o.zero_grad()
            F.mse_loss(rm(x), y).backward()
            o.step()
        runs[k] = _weights(rm)
    for name in runs[1]:
        torch.testing.assert_close(runs[4][name], runs[1][name], rtol=1e-5, atol=1e-6)


# -- the fair protocol ------------------------------------------------------------------------------
def _fair_suite(**kw) -> Suite:
    return Suite(
        "fair-test",
        "resnet20",
        "digits:0-4",
        points=[Point("head", "head"), Point("recast", "recast", dict(base="closed_form"))],
        seeds=(3, 4),
        sizes=SplitSizes(40, 30, 30),
        epochs=2,
        pretrained=False,
        lr_step=None,
        lr_grid=(1e-4, 1e-1),
        coef_lr_grid=(3e-1,),
        contrasts=[("recast", "head")],
        budget=False,
        **kw,
    )


def test_fair_protocol_selects_on_validation_on_the_first_seed_and_reuses_that_run(tmp_path):
    suite = _fair_suite()
    res = inc.run_suite(suite, tmp_path, progress=False)
    sel, chosen = res["selection"], res["chosen"]
    # each row's lr grid (the suite's, extended past a best edge), then the RECAST row's coefficient grid at
    # its chosen rate ("= lr" is the lr search's own run)
    assert all(r["seed"] == 3 for r in sel)
    assert len(sel) == sum(len(c["lr_grid"]) for c in chosen.values()) + len(chosen["recast"]["coef_lr_grid"])
    for name in ("head", "recast"):
        assert set(chosen[name]["lr_grid"]) >= {1e-4, 1e-1}
        recs = [r for r in sel if r["label"] == name and r["coef_lr"] is None]
        assert {r["lr"] for r in recs} == set(chosen[name]["lr_grid"])
        best = max(recs, key=selection_score)
        assert selection_score(best) == chosen[name]["val_score"] or chosen[name]["coef_lr"] is not None
        assert chosen[name]["lr"] == max(sorted(recs, key=lambda r: r["lr"]), key=selection_score)["lr"]
    rec_lr = chosen["recast"]["lr"]
    cands = sorted(
        (r for r in sel if r["label"] == "recast" and r["lr"] == rec_lr), key=lambda r: r["coef_lr"] or r["lr"]
    )
    assert chosen["recast"]["coef_lr"] == max(cands, key=selection_score)["coef_lr"]
    assert chosen["head"]["coef_lr"] is None
    runs = {(r["label"], r["seed"]): r for r in res["runs"]}
    assert set(runs) == {("head", 3), ("head", 4), ("recast", 3), ("recast", 4)}
    for name in ("head", "recast"):
        c = res["chosen"][name]
        assert runs[(name, 4)]["lr"] == c["lr"] and runs[(name, 4)]["coef_lr"] == c["coef_lr"]
        picked = [r for r in sel if r["label"] == name and r["lr"] == c["lr"] and r["coef_lr"] == c["coef_lr"]]
        assert runs[(name, 3)]["accuracy_matrix"] == picked[0]["accuracy_matrix"]  # the selection run, reused
        assert all(len(curve) == 2 for curve in runs[(name, 4)]["val_curves"])
    contrast = res["contrasts"][0]
    assert contrast["row"] == "recast" and contrast["seeds"] == [3, 4]
    from weightlab.stats import minimum_detectable_effect

    assert contrast["mde"] == pytest.approx(minimum_detectable_effect(contrast["std"], 2)) and 0 <= contrast["p"] <= 1
    md = (tmp_path / "results.md").read_text()
    assert "chosen on validation" in md and "recast - head" in md and "detectable (MDE" in md
    assert (tmp_path / "val_curves.png").is_file() and (tmp_path / "contrasts.png").is_file()
    by = {(r["label"], r["seed"]): r["average_accuracy"] for r in res["runs"]}
    assert contrast["diffs"] == [by[("recast", s)] - by[("head", s)] for s in (3, 4)]
    # resuming redoes nothing
    again = inc.run_suite(suite, tmp_path, progress=False)
    assert len(again["selection"]) == len(sel) and len(again["runs"]) == 4
    # a subset of seeds still selects on the suite's first seed: nothing new to run here
    subset = inc.run_suite(suite, tmp_path, seeds=(4,), progress=False)
    assert len(subset["selection"]) == len(sel) and len(subset["runs"]) == 4
    # a different grid is a different suite
    with pytest.raises(WeightlabError, match="lr_grid"):
        inc.run_suite(replace(suite, lr_grid=(1e-3,)), tmp_path, progress=False)
    # a row kept under one definition is not resumed under another (old and new runs would make one row);
    # a row with no runs yet may change
    moved = [Point("head", "head"), Point("recast", "recast", dict(base="recipe"))]
    with pytest.raises(WeightlabError, match="row 'recast' was run as recast"):
        inc.run_suite(replace(suite, points=moved), tmp_path, progress=False)
    new_row = replace(suite, points=[*suite.points, Point("new", "recast", dict(base="recipe"))])
    jobs = [(p.label, p.method, p.recast) for p in new_row.points]
    inc._refuse_redefined(tmp_path / "results.json", again, new_row, jobs)


def test_the_v3_protocol_per_seed_splits_validation_from_test_and_the_head_searched_again(tmp_path):
    """Issue 36: every seed draws its own data split; validation comes from the test split (disjoint from
    the test images read); rows with coefficients choose their own (head) rate again at the chosen
    coefficients' rate; the grid extension limit is the suite's."""
    from weightlab.data.tasks import build_task

    t = build_task("digits:0-4", sizes=SplitSizes(40, 30, 30), data_seed=5, val_from="test")
    full = build_task("digits:0-4", sizes=SplitSizes(None, 0, None))
    assert len(t.val) == 30 and len(t.test) == 30
    key = lambda a: {tuple(x.flatten().tolist()) for x in a.images}  # noqa: E731
    assert not key(t.val) & key(t.test) and key(t.val) <= key(full.test) and not key(t.val) & key(full.train)
    other = build_task("digits:0-4", sizes=SplitSizes(40, 30, 30), data_seed=6, val_from="test")
    assert key(other.train) != key(t.train) and key(other.val) != key(t.val)
    with pytest.raises(WeightlabError, match="val_from"):
        build_task("digits:0-4", val_from="elsewhere")

    suite = _fair_suite(data_seeds=True, val_from="test", grid_extensions=1, head_search=True)
    res = inc.run_suite(suite, tmp_path, progress=False)
    runs = {(r["label"], r["seed"]): r for r in res["runs"]}
    assert runs[("head", 3)]["data_seed"] == 3 and runs[("head", 4)]["data_seed"] == 4
    c = res["chosen"]["recast"]
    # the head pass: the lr grid again, the coefficients fixed at their chosen rate
    assert "head_lr_grid" in c and c["coef_lr"] is not None
    head_pass = [r for r in res["selection"] if r["label"] == "recast" and r["coef_lr"] == c["coef_lr"]]
    assert {r["lr"] for r in head_pass} >= set(c["head_lr_grid"]) and c["lr"] in c["head_lr_grid"]
    assert all(len(c2["lr_grid"]) <= 3 for c2 in res["chosen"].values())  # 2 rates + at most 1 extension
    assert "head" not in [k for k, v in res["chosen"].items() if "head_lr_grid" in v]
    md = (tmp_path / "results.md").read_text()
    assert "every seed draws its own data split" in md and "from each task's test split" in md
    assert len(inc.run_suite(suite, tmp_path, progress=False)["runs"]) == 4  # resumes
    with pytest.raises(WeightlabError, match="data_seeds"):
        inc.run_suite(replace(suite, data_seeds=False), tmp_path, progress=False)


def test_a_row_can_take_its_head_rate_from_another_row_and_search_only_its_coefficients(tmp_path):
    """Issue 36: 'recast (head at head-only's rate)' beside the RECAST row that searches its head rate."""
    shared = "recast (head at head-only's rate)"
    suite = replace(
        _fair_suite(head_search=True, shared_lr={shared: "head"}),
        points=[
            Point("head", "head"),
            Point("recast", "recast", dict(base="closed_form")),
            Point(shared, "recast", dict(base="closed_form")),
        ],
        seeds=(3,),
    )
    res = inc.run_suite(suite, tmp_path, progress=False)
    c = res["chosen"]
    assert c[shared]["lr"] == c["head"]["lr"] and c[shared]["lr_from"] == "head" and "head_lr_grid" not in c[shared]
    sel = [r for r in res["selection"] if r["label"] == shared]
    assert {r["lr"] for r in sel} == {c["head"]["lr"]}  # only the coefficients' rate was searched
    assert "head_lr_grid" in c["recast"]
    assert "takes head's" in (tmp_path / "results.md").read_text()


def test_rows_whose_rates_come_out_the_same_run_once_and_file_that_run_for_both(tmp_path, monkeypatch):
    """Issue 36: a row sharing head-only's rate whose coefficients' rate also matches the RECAST row's is the
    same configuration: one run (a run depends only on its arguments), filed for both rows as same_run_as."""
    shared = "recast (head at head-only's rate)"
    suite = replace(
        replace(_fair_suite(shared_lr={shared: "head"}), lr_grid=(1e-1,)),
        points=[
            Point("head", "head"),
            Point("recast", "recast", dict(base="closed_form")),
            Point(shared, "recast", dict(base="closed_form")),
        ],
    )
    calls = []
    real = inc.suite_run

    def counted(s, label, *a):
        calls.append(label)
        return real(s, label, *a)

    monkeypatch.setattr(inc, "suite_run", counted)
    res = inc.run_suite(suite, tmp_path, progress=False)
    own = [r for r in res["selection"] if r["label"] == "recast"]
    assert shared not in calls and calls.count("recast") == len(own) + 1  # its selection, then seed 4
    c = res["chosen"]
    assert (c[shared]["lr"], c[shared]["coef_lr"]) == (c["recast"]["lr"], c["recast"]["coef_lr"])
    runs = {(r["label"], r["seed"]): r for r in res["runs"]}
    for seed in (3, 4):
        a, b = runs[("recast", seed)], runs[(shared, seed)]
        assert b["same_run_as"] == "recast" and "same_run_as" not in a
        assert {k: v for k, v in b.items() if k not in ("label", "same_run_as")} == {
            k: v for k, v in a.items() if k != "label"
        }
    assert all(r["same_run_as"] == "recast" for r in res["selection"] if r["label"] == shared)
    assert f"{shared}'s are recast's (seeds 3, 4)" in (tmp_path / "results.md").read_text()
    calls.clear()
    inc.run_suite(suite, tmp_path, progress=False)  # resumes: nothing to run
    assert calls == []
    # the row added to a suite whose RECAST row has run already: its runs are the kept ones
    inc.run_suite(replace(suite, points=suite.points[:2]), tmp_path / "later", progress=False)
    calls.clear()
    res = inc.run_suite(suite, tmp_path / "later", progress=False)
    assert calls == [] and {r["seed"] for r in res["runs"] if r.get("same_run_as") == "recast"} == {3, 4}


def test_a_grid_is_extended_past_the_edge_a_row_scores_best_at():
    assert extend_grid([1e-3, 3e-3, 1e-2, 3e-2], 3e-2) == 0.09
    assert extend_grid([1e-3, 3e-3, 1e-2, 3e-2], 1e-3) == 0.000333
    assert extend_grid([1e-3, 3e-3, 1e-2, 3e-2], 3e-3) is None
    assert extend_grid([1e-3], 1e-3) is None


def test_rate_selection_never_reads_the_test_split(tmp_path, monkeypatch):
    """Scrambling every test label changes the test numbers but not one selection score or choice."""
    suite = replace(_fair_suite(), seeds=(3,))
    first = inc.run_suite(suite, tmp_path / "a", progress=False)
    real = inc._tasks

    def scrambled(s, root, data_seed=0):
        tasks = real(s, root, data_seed)
        return [replace(t, test=replace(t.test, labels=(t.test.labels + 1) % t.num_classes)) for t in tasks]

    inc._CACHE.clear()
    monkeypatch.setattr(inc, "_tasks", scrambled)
    second = inc.run_suite(suite, tmp_path / "b", progress=False)
    inc._CACHE.clear()
    assert first["chosen"] == second["chosen"]
    assert [selection_score(r) for r in first["selection"]] == [selection_score(r) for r in second["selection"]]
    assert [r["accuracy_matrix"] for r in first["selection"]] != [r["accuracy_matrix"] for r in second["selection"]]


def test_under_adam_a_scalar_regauge_is_a_coefficient_learning_rate_factor():
    """Templates x c, coefficients / c: Adam's normalised step on the coefficients moves the weights c
    times further, exactly as the original gauge at c times the coefficient rate."""
    g = torch.Generator().manual_seed(0)
    template, init = torch.randn(2, 6, 6, generator=g), torch.randn(2, generator=g)
    x, y = torch.randn(32, 6, generator=g), torch.randn(32, 6, generator=g)
    c, lr = 3.0, 1e-2
    runs = []
    for gauge, rate in ((1.0, c * lr), (c, lr)):
        rm = _k_model(2, init, template)
        regauge(rm, {name: gauge for name in banks(rm)})
        coefs = [p for n, p in rm.named_parameters() if n.endswith("coefficients")]
        o = torch.optim.Adam(coefs, lr=rate, eps=1e-12)
        for _ in range(20):
            o.zero_grad()
            F.mse_loss(rm(x), y).backward()
            o.step()
        runs.append(_weights(rm))
    for name in runs[0]:
        torch.testing.assert_close(runs[1][name], runs[0][name], rtol=1e-4, atol=1e-5)


def test_fair_suites_have_a_full_size_definition_and_others_refuse_it(capsys):
    from weightlab.bench.suites import get_suite
    from weightlab.cli import main

    full = get_suite("resnet20-fair").at_scale("full")
    assert full.sizes == SplitSizes(None, None, None) and full.epochs == 100
    assert full.adapt_config().step_size() == 33 and full.lr_grid == get_suite("resnet20-fair").lr_grid
    assert get_suite("resnet20-fair").at_scale("cpu") is get_suite("resnet20-fair")
    with pytest.raises(WeightlabError, match="no full-size definition"):
        get_suite("smoke").at_scale("full")
    assert main(["recast", "bench", "--suite", "smoke", "--scale", "full", "--out", "/nonexistent/x"]) != 0
    assert "no full-size definition" in capsys.readouterr().err


def test_the_paper_table_says_which_base_and_variant_each_recast_row_is():
    from weightlab.bench.reports.tables import provenance
    from weightlab.bench.suites import get_suite

    assert "as the paper" in provenance("recast (recipe base)", dict(base="recipe"))
    assert "adapts the paper's fit" in provenance("recast", {})  # the default base is the closed form
    assert "re-gauged" in provenance("recast (re-gauged base)", dict(base="regauged"))
    vit = {p.label: p.recast for p in get_suite("vit-fair").points}
    assert "RECAST-Att (the paper's Table 2 row)" in provenance("recast", vit["recast"])
    assert "RECAST-MLP" in provenance("recast-mlp", vit["recast-mlp"])
    assert "Fig. 6a" in provenance("recast sharing=balanced", vit["recast sharing=balanced"])
    # the ViT's RECAST + LoRA row is the authors' combination: RECAST-MLP under LoRA on the attention
    assert "RECAST + MeLo" in provenance("recast+lora", vit["recast+lora"])
    assert provenance("hat").startswith("reproduces HAT")


def test_a_rate_chosen_at_its_grid_s_edge_is_flagged_in_the_table():
    from weightlab.bench.reports.incremental import rates_at_edge

    grid = [0.001, 0.003, 0.01, 0.03, 0.09, 0.27]
    assert rates_at_edge(dict(lr=0.27, coef_lr=None, lr_grid=grid)) == ["lr"]  # resnet20-fair's head-only
    assert rates_at_edge(dict(lr=0.09, coef_lr=0.3, lr_grid=grid, coef_lr_grid=[0.003, 0.03, 0.3, 1.0])) == []
    assert rates_at_edge(dict(lr=0.09, coef_lr=1.0, lr_grid=grid, coef_lr_grid=[0.003, 0.03, 0.3, 1.0])) == ["coef lr"]
    assert rates_at_edge(dict(lr=0.01, coef_lr=None, lr_grid=grid, coef_lr_grid=[0.003, 0.03])) == []  # "= lr"
    assert rates_at_edge({}) == []
