"""The faithful KNOW protocol (issue 16): a converged base, forgetting that forgets, the real ×2 weights,
the shrink control and several trajectory seeds in one suite."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from weightlab.data import load_dataset
from weightlab.errors import WeightlabError
from weightlab.io import load_weights, read_json
from weightlab.know.forgetting import ForgetConfig, run_forgetting
from weightlab.know.pretrain import PretrainConfig, converged, pretrain
from weightlab.models import create_model


def _digits_model(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("smallcnn", num_classes=10, input_size=(1, 8, 8))


def test_a_tiny_converged_base_forgets_under_the_protocol(tmp_path):
    train, test = load_dataset("digits", "train").head(800, seed=0), load_dataset("digits", "test")
    model = _digits_model()
    meta = pretrain(model, train, tmp_path / "base", PretrainConfig(epochs=30, batch_size=64), val=test, progress=False)
    assert meta["finished"] and meta["converged"] is True  # the validation curve has flattened
    assert meta["history"][-1]["lr_end"] == pytest.approx(0.0, abs=1e-9)  # cosine decay to zero
    assert meta["history"][-1]["val_accuracy"] > 95
    traj = run_forgetting(
        model,
        train,
        tmp_path / "traj",
        ForgetConfig(stages=4, epochs=3, lr=3e-3, batch_size=32),
        eval_data=test,
        progress=False,
    )
    check = traj.meta["forgetting"]
    assert check["forgets"] is True and check["drop"] > 2.0  # its D⁰ accuracy falls


def test_pretraining_resumes_exactly_and_refuses_another_config(tmp_path):
    train, val = load_dataset("digits", "train").head(200, seed=1), load_dataset("digits", "test").head(100)
    cfg = PretrainConfig(epochs=4, batch_size=32, augment="crop")
    whole = _digits_model()
    pretrain(whole, train, tmp_path / "whole", cfg, val=val, progress=False)
    part = _digits_model()
    meta = pretrain(part, train, tmp_path / "part", cfg, val=val, progress=False, stop_after=2)
    assert meta["epochs_done"] == 2 and not meta["finished"]
    resumed = _digits_model(seed=5)  # another init: the checkpoint decides
    meta = pretrain(resumed, train, tmp_path / "part", cfg, val=val, progress=False)
    assert meta["finished"]
    a, b = load_weights(tmp_path / "whole" / "base.safetensors"), load_weights(tmp_path / "part" / "base.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_json(tmp_path / "whole" / "pretrain.json")["history"] == meta["history"]
    with pytest.raises(WeightlabError, match=r"other inputs \(config.augment: \"crop\" -> null; config.batch_size"):
        pretrain(_digits_model(), train, tmp_path / "part", PretrainConfig(epochs=5), progress=False)
    with pytest.raises(WeightlabError, match="inputs.train_sha256"):
        pretrain(_digits_model(), train.head(150), tmp_path / "part", cfg, val=val, progress=False)
    with pytest.raises(WeightlabError, match="unknown augmentation"):
        PretrainConfig(augment="mixup").validate()
    assert converged([{"val_accuracy": a} for a in (50, 90, 90.5, 90.2)], window=3, tolerance=1.0) is True
    assert converged([{"val_accuracy": a} for a in (50, 80, 90)], window=3, tolerance=1.0) is False
    assert converged([{"val_accuracy": 90}], window=3, tolerance=1.0) is None


def test_batch_augmentation_is_seeded_shape_preserving_and_training_only():
    from weightlab.data.augment import augment_batch

    data = load_dataset("digits", "train").head(64)
    x = data.images[:16]
    a = augment_batch(x, "crop_flip", torch.Generator().manual_seed(0))
    b = augment_batch(x, "crop_flip", torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(a, b) and not torch.equal(a, x)
    # a crop of the zero-padded image: every output pixel is an input pixel or padding
    assert set(a.unique().tolist()) <= set(x.unique().tolist()) | {0}
    aug = data.with_options(augment="crop")
    plain = [xb for xb, _ in aug.batches(16)]  # not shuffled: evaluation batches stay as they are
    assert all(torch.equal(p, q) for p, (q, _) in zip(plain, data.batches(16)))
    s1 = [xb for xb, _ in aug.batches(16, shuffle=True, seed=3)]
    s2 = [xb for xb, _ in aug.batches(16, shuffle=True, seed=3)]
    s3 = [xb for xb, _ in data.batches(16, shuffle=True, seed=3)]
    assert all(torch.equal(p, q) for p, q in zip(s1, s2)) and not all(torch.equal(p, q) for p, q in zip(s1, s3))
    assert aug.subset([0, 1]).augment == "crop"


def test_weight_space_comparison():
    from weightlab.know.controls import weight_space_comparison

    theta0 = {"w": torch.zeros(4, 3)}
    truth = {"w": torch.ones(4, 3)}
    cands = {"half-way": {"w": torch.full((4, 3), 0.5)}, "away": {"w": -torch.ones(4, 3)}, "same": truth}
    out = weight_space_comparison(theta0, cands, truth, ["w"])
    assert out["half-way"]["cosine"] == pytest.approx(1.0) and out["half-way"]["relative_distance"] == pytest.approx(
        0.5
    )
    assert out["away"]["cosine"] == pytest.approx(-1.0) and out["away"]["relative_distance"] == pytest.approx(2.0)
    assert out["same"]["relative_distance"] == 0.0 and out["same"]["step"] == pytest.approx(1.0)
    with pytest.raises(WeightlabError, match="equals Θ⁰"):
        weight_space_comparison(theta0, cands, theta0, ["w"])


def _tiny(**overrides):
    """The faithful protocol on digits, seconds long (a KNOW suite with truth and controls)."""
    from weightlab.bench.suites import KnowSuite
    from weightlab.know.transfer import TransferConfig

    suite = KnowSuite(
        "tiny-faithful",
        "test",
        model="smallcnn",
        source="digits:0-4",
        target="digits:5-9",
        model_kwargs={"input_size": (1, 8, 8)},
        source_train=300,
        source_val=60,
        target_train=120,
        target_test=None,
        eval_size=None,
        pretrain=PretrainConfig(epochs=3, batch_size=32),
        forget=ForgetConfig(stages=5, batch_size=32),
        transfer=TransferConfig(warmup_epochs=1, epochs=1, batch_size=32, lr_grid=(1e-3, 3e-3)),
        predictors=("task_vector", "known", "linear_fit"),
        steps=(1, 2),
        seeds=(0,),
        trajectory_seeds=(0, 1),
        truth=True,
        controls=True,
        incremental=False,
        needs_shared=False,
    )
    return replace(suite, **overrides)


def test_a_faithful_suite_end_to_end(tmp_path):
    from weightlab.bench.know import run_suite
    from weightlab.bench.reports.know import summarize

    suite = _tiny()
    res = run_suite(suite, tmp_path, progress=False)
    trajs = res["prepare"]["trajectories"]
    assert set(trajs) == {"0", "1"}
    for info in trajs.values():
        assert info["d0_size"] == 150 and info["truth"]["d_size"] == 300  # D⁰ is half of the data
        assert {"fine-tuned on ×2", "trained on ×2 from scratch"} == set(info["truth"]["weight_space"])
        assert set(info["controls"]) == {"x2", "x4"}
    # different trajectory seeds: different bases
    a, b = (load_weights(tmp_path / f"traj_{s}" / "base" / "base.safetensors") for s in (0, 1))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    table = {r["row"]: r for r in summarize(res)}
    assert {"naive", "truth_x2", "truth_ft_x2", "shrink_x2", "shrink_x4", "known_x2", "task_vector_x4"} <= set(table)
    assert table["naive"]["seeds"] == 2 and table["naive"]["trajectories"] == 2
    md = (tmp_path / "results.md").read_text()
    assert "Real ×2 data, trained from scratch" in md and "Shrink control" in md and "Weight space" in md
    assert "Time cost per trajectory" in md and "Trajectory 1" in md
    n_runs = len(res["runs"])
    again = run_suite(suite, tmp_path, progress=False)  # resumes: nothing is redone
    assert len(again["runs"]) == n_runs
    # a candidate KNOWN (here a copy of the shipped weights) on the same suite: only its rows are redone,
    # and the same weights give the same predictions and the same transfer numbers
    import importlib.util
    import shutil
    import sys

    from weightlab.know.predictors.known import SHIPPED_DIR

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location("know_candidate", bench / "know_candidate.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(bench))
    weights = shutil.copytree(SHIPPED_DIR, tmp_path / "candidate")
    cand = mod.evaluate_candidate(suite, tmp_path, weights, tmp_path / "cand")
    assert cand["suite"]["known_weights"] == str(weights.resolve()) and "known_weights" not in res["suite"]
    new = {(r["row"], r["seed"]): r["accuracy"] for r in cand["runs"]}
    old = {(r["row"], r["seed"]): r["accuracy"] for r in res["runs"]}
    assert new == old
    for s in (0, 1):
        for step in ("x2", "x4"):
            a = load_weights(tmp_path / f"traj_{s}" / "predictions" / f"known_{step}.safetensors")
            b = load_weights(tmp_path / "cand" / f"traj_{s}" / "predictions" / f"known_{step}.safetensors")
            assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(WeightlabError, match="not a folder"):
        run_suite(replace(suite, known_weights=str(tmp_path / "missing")), tmp_path / "bad", progress=False)


def test_know_pretrain_command(tmp_path, capsys):
    from weightlab.cli import main

    out = tmp_path / "base"
    args = ["know", "pretrain", "--model", "smallcnn", "--input-size", "1,8,8", "--data", "digits", "--limit", "200"]
    args += [
        "--val",
        "100",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--out",
        str(out),
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    assert (out / "base.safetensors").is_file() and read_json(out / "pretrain.json")["finished"]
    assert "validation curve" in capsys.readouterr().out
    # the README's chain: forget from that base on the same D⁰ (same --limit, --val, --seed)
    traj = tmp_path / "traj"
    forget = [
        "know",
        "forget",
        "--model",
        "smallcnn",
        "--input-size",
        "1,8,8",
        "--weights",
        str(out / "base.safetensors"),
    ]
    forget += [
        "--data",
        "digits",
        "--limit",
        "200",
        "--val",
        "100",
        "--stages",
        "2",
        "--out",
        str(traj),
        "--no-progress",
    ]
    assert main([*forget, "--device", "cpu", "--augment", "crop"]) == 0
    assert read_json(traj / "manifest.json")["config"]["augment"] == "crop"
    assert main([*args, "--epochs", "3"]) == 2  # another configuration in the same folder
    assert "was made with other inputs (config.epochs: 2 -> 3)" in capsys.readouterr().err
    assert main([*args, "--augment", "mixup"]) == 2
    assert (
        main(["know", "pretrain", "--model", "smallcnn", "--input-size", "1,8", "--data", "digits", "--out", str(out)])
        == 2
    )
    assert "C,H,W" in capsys.readouterr().err
    # incremental pretraining: the same command with a curriculum of nested subsets, smallest first
    inc = tmp_path / "incremental"
    i = args.index("--out")
    assert main([*args[:i], "--out", str(inc), *args[i + 2 :], "--curriculum", "2"]) == 0
    assert [h["subset"]["stage"] for h in read_json(inc / "pretrain.json")["history"]] == [1, 0]
    assert main([*args, "--curriculum", "3"]) == 2  # more subsets than the 2 epochs
    assert "the curriculum needs 0 to 2 (epochs) nested subsets, got 3" in capsys.readouterr().err


def test_summary_pairs_each_row_with_naive_on_the_same_trajectory_and_seed():
    from weightlab.bench.reports.know import summarize

    base = {(t, s): 60.0 + 5 * t + s for t in (0, 1, 2) for s in (0, 1)}  # large between-trajectory spread
    noise = [0.1, -0.1, 0.05, -0.05, 0.0, 0.02]

    def runs(row, shift):
        return [
            {
                "row": f"t{t}/{row}",
                "label": row,
                "step": 0 if row == "naive" else 1,
                "seed": s,
                "trajectory": t,
                "accuracy": acc + shift(i),
            }
            for i, ((t, s), acc) in enumerate(base.items())
        ]

    res = {
        "runs": runs("naive", lambda i: 0.0)
        + runs("steady_x2", lambda i: 0.5 + noise[i])
        + runs("noisy_x2", lambda i: 0.5 if i % 2 else -0.4)
    }
    table = {r["row"]: r for r in summarize(res)}
    steady, noisy = table["steady_x2"], table["noisy_x2"]
    assert steady["std"] > 4 and steady["paired"]["n"] == 6  # unpaired, the spread hides the gain
    assert steady["paired"]["mean"] == pytest.approx(0.5 + sum(noise) / 6)
    assert steady["beyond_noise"] is True and steady["paired"]["p"] < 1e-4
    assert noisy["beyond_noise"] is False and noisy["paired"]["p"] > 0.5
    assert table["naive"]["paired"] is None and table["naive"]["beyond_noise"] is None
    from weightlab.stats import minimum_detectable_effect

    assert steady["paired"]["mde"] == pytest.approx(minimum_detectable_effect(steady["paired"]["std"], 6))


@pytest.mark.parametrize(
    ("extensions", "peak", "tried", "chosen", "edge"),
    [
        (0, 1.0, [1e-4, 3e-4, 1e-3], 1e-3, True),  # the grid as given: the top rate, flagged
        (4, 1.0, [1e-4, 3e-4, 1e-3, 0.00333, 0.0111, 0.037, 0.123], 0.123, True),  # still rising: flagged
        (4, 4e-3, [1e-4, 3e-4, 1e-3, 0.00333, 0.0111], 0.00333, False),  # interior after two extensions
        (4, 3e-4, [1e-4, 3e-4, 1e-3], 3e-4, False),  # interior as given: nothing added
        (4, 1e-6, [1e-4, 3e-4, 1e-3, 3.33e-05, 1.11e-05, 3.7e-06, 1.23e-06], 1.23e-06, True),  # downwards too
    ],
)
def test_the_transfer_rate_grid_extends_past_an_edge_until_interior(monkeypatch, extensions, peak, tried, chosen, edge):
    """KNOW's transfer rate (select_lr): a best rate at an edge of the grid is extended past that edge by the
    grid's step, ``lr_extensions`` times at most; a choice still at an edge is flagged in the record."""
    import importlib
    import math

    from weightlab.tuning import at_edge

    tr = importlib.import_module("weightlab.know.transfer")  # the module (the package exports a function so named)

    calls = []

    def fake_transfer(state, model_cfg, fit, val, cfg, **kw):  # validation accuracy peaks at ``peak``
        calls.append(cfg.lr)
        return {"accuracy": -abs(math.log(cfg.lr / peak))}

    monkeypatch.setattr(tr, "transfer", fake_transfer)
    monkeypatch.setattr(tr, "validation_split", lambda train, frac, seed: (train, train))
    cfg = tr.TransferConfig(lr_grid=(1e-4, 3e-4, 1e-3), lr_extensions=extensions)
    best, scores = tr.select_lr({}, {}, object(), cfg, num_classes=2)
    assert calls == tried and list(scores) == tried  # every rate run once, the grid's own in its order
    assert best == pytest.approx(chosen) and at_edge(list(scores), best) is edge


def test_the_report_counts_rates_chosen_at_the_grid_s_edge_also_in_records_made_before_the_flag():
    from weightlab.bench.reports.know import summarize

    def run(seed, lr, flag=None):
        sel = {"grid": [3e-4, 1e-3, 3e-3], "lr": lr, **({} if flag is None else {"at_edge": flag})}
        return {"row": "naive", "label": "naive", "step": 0, "seed": seed, "accuracy": 50.0, "lr_selection": sel}

    (row,) = summarize({"runs": [run(1, 3e-3), run(2, 1e-3), run(3, 3e-4), run(4, 3e-3, False)]})
    assert row["lr_at_edge"] == 2 and row["lr"] == {"0.003": 2, "0.001": 1, "0.0003": 1}


def test_the_v3_protocol_end_to_end(tmp_path):
    """Issue 36: validation held out of the target's training split, rates chosen once per trajectory on the
    first seed (and reused), the same-size restart control with the forgetting test, the step-matched ×2
    truth, and the base trained twice as long."""
    from weightlab.bench.know import run_suite
    from weightlab.bench.reports.know import summarize
    from weightlab.know.protocol import suite_record
    from weightlab.know.transfer import TransferConfig

    suite = _tiny(
        name="tiny-v3",
        target_train=100,
        target_val=60,
        pretrain=PretrainConfig(epochs=2, batch_size=32),
        forget=ForgetConfig(stages=3, batch_size=32),
        transfer=TransferConfig(warmup_epochs=1, epochs=1, batch_size=32, lr_grid=(1e-3, 3e-3, 1e-2), lr_extensions=2),
        predictors=("task_vector",),
        steps=(1,),
        seeds=(0, 1),
        truth_scratch="steps",
        controls=False,
        restart_control=True,
        long_base=1,
        select_once=True,
    )
    rec = suite_record(suite)
    assert rec["target_val"] == 60 and rec["truth_scratch"] == "steps" and rec["long_base"] == 1
    res = run_suite(suite, tmp_path, progress=False)
    assert res["target"]["val"] == 60 and res["target"]["train"] == 100
    trajs = res["prepare"]["trajectories"]
    for s, info in trajs.items():
        f = info["forgetting"]
        assert len(info["restart_control"]) == 3 and len(f["control_accuracy"]) == 3
        assert 0.0 <= f["control_p"] <= 1.0 and f["forgets"] == (f["control_p"] < 0.05)
        assert "trained on ×2 from scratch, the base's steps" in info["truth"]["weight_space"]
        assert ("long_base" in info) == (s == "0")
    # the step-matched truth: half the base's epochs on twice the data
    import json

    meta = json.loads((tmp_path / "traj_0" / "truth_steps" / "pretrain.json").read_text())
    assert meta["config"]["epochs"] == 1
    lb = json.loads((tmp_path / "traj_0" / "base_long" / "pretrain.json").read_text())
    assert lb["config"]["epochs"] == 4 and not (tmp_path / "traj_1" / "base_long").exists()
    # the control's stages train on as many samples as forgetting's, drawn from all of D⁰
    ctrl = json.loads((tmp_path / "traj_0" / "restart" / "manifest.json").read_text())
    assert ctrl["config"]["resample"] is True
    # one selection per (row, trajectory), on seed 0; seed 1 runs at that rate
    runs = {(r["row"], r["seed"]): r for r in res["runs"]}
    for (row, seed), r in runs.items():
        if seed == 0:
            assert "lr_selection" in r and "lr" not in r
        else:
            assert "lr_selection" not in r and r["lr"] == runs[(row, 0)]["lr_selection"]["lr"]
    table = {r["row"]: r for r in summarize(res)}
    assert {"naive", "truth_steps_x2", "truth_ft_x2", "task_vector_x2"} <= set(table)
    md = (tmp_path / "results.md").read_text()
    assert "held-out images of the downstream training split" in md and "once per trajectory" in md
    assert "Forgetting beyond the restart control over the 2 trajectories" in md
    assert "Convergence: the base's protocol with twice the epochs" in md and "converged" in md
    assert "from scratch with the base's steps" in md
    n = len(res["runs"])
    assert len(run_suite(suite, tmp_path, progress=False)["runs"]) == n  # resumes, nothing redone
