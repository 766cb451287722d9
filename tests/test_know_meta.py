"""KNOWN meta-training groundwork: rows from trajectories, the training loop, the baselines."""

import json

import pytest
import torch

from weightlab.errors import WeightlabError
from weightlab.know import Trajectory
from weightlab.know.meta import MetaTrainConfig, baseline_l1, train_known, trajectory_rows
from weightlab.know.meta.train import l1_error

KINDS = {"c.weight": "conv", "f.weight": "fc", "f.bias": "bias", "n.weight": "norm"}


def _traj(stages=7):
    torch.manual_seed(0)
    shapes = {"c.weight": (2, 1, 3, 3), "f.weight": (3, 4), "f.bias": (3,), "n.weight": (2,)}
    base = {k: torch.randn(s) for k, s in shapes.items()}
    return Trajectory([{k: v + 0.1 * s for k, v in base.items()} for s in range(stages)], dict(KINDS))


def test_rows_have_five_inputs_oldest_first_and_the_next_larger_data_target():
    traj = _traj(7)  # 7 stages: targets t = 0 and t = 1
    rows = trajectory_rows(traj)
    assert set(rows) == {"Conv", "FC", "Bias"}
    seq, target = rows["FC"]
    assert seq.shape == (2 * 12, 5) and target.shape == (24,)
    w = traj.stages
    assert torch.equal(seq[0], torch.tensor([w[s]["f.weight"][0, 0] for s in (5, 4, 3, 2, 1)]))
    assert torch.equal(target[0], w[0]["f.weight"][0, 0])
    assert torch.equal(seq[12], torch.tensor([w[s]["f.weight"][0, 0] for s in (6, 5, 4, 3, 2)]))
    assert torch.equal(target[12], w[1]["f.weight"][0, 0])
    assert rows["Conv"][0].shape == (2 * 18, 5) and rows["Bias"][0].shape == (2 * 3, 5)
    with pytest.raises(WeightlabError, match="at least 6 stages"):
        trajectory_rows(_traj(5))


def test_training_lowers_the_l1_and_beats_no_change_on_a_learnable_rule():
    g = torch.Generator().manual_seed(0)
    seq = torch.randn(4096, 5, generator=g).cumsum(1) * 0.05
    target = seq[:, -1] + 0.5 * (seq[:, -1] - seq[:, -2])  # "continue the last step by half"
    train, val = (seq[:3072], target[:3072]), (seq[3072:], target[3072:])
    untrained = l1_error(train_known(train, val, MetaTrainConfig(epochs=0), progress=False)[0], *val)
    net, hist = train_known(train, val, MetaTrainConfig(epochs=15, batch_size=256, lr=3e-3), progress=False)
    assert hist["best_val_l1"] < untrained
    assert hist["train_l1"][-1] < hist["train_l1"][0]
    assert hist["best_val_l1"] < baseline_l1(*val, "zero")


def test_baselines_on_known_values():
    seq = torch.tensor([[0.0, 0.0, 0.0, 1.0, 2.0]])
    assert baseline_l1(seq, torch.tensor([2.0]), "zero") == 0.0
    assert baseline_l1(seq, torch.tensor([2.2]), "task_vector") == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(WeightlabError, match="unknown baseline"):
        baseline_l1(seq, torch.tensor([2.0]), "magic")


def _specs(n=2):
    from weightlab.know.meta.collect import Ranges, sample_specs

    return sample_specs(n, seed=3, archs=["smallcnn-narrow"], ranges=Ranges(train_size=120, pretrain_epochs=1))


def test_collection_writes_shards_rows_and_a_resumable_manifest(tmp_path):
    from weightlab.know.meta.collect import collect, load_rows, sample_specs, shard_path

    specs = _specs(2)
    m = collect(tmp_path, specs, backend="serial", progress=False)
    assert [r["spec"]["run_id"] for r in m["runs"]] == [0, 1]
    for r in m["runs"]:
        # narrow CNN (4/8/16/16 channels, 1 input channel, hidden 32, 10 classes); conv biases are off (BN)
        assert r["rows"] == {"Conv": 9 * (4 + 4 * 8 + 8 * 16 + 16 * 16), "FC": 16 * 32 + 32 * 10, "Bias": 32 + 10}
        assert shard_path(tmp_path, r["spec"]["run_id"]).stat().st_size == r["bytes"]
    seq, target = load_rows(tmp_path, "FC")
    assert seq.shape == (2 * 832, 5) and target.shape == (2 * 832,)
    capped, _ = load_rows(tmp_path, "FC", per_run=100, seed=1)
    assert capped.shape == (200, 5)
    assert torch.equal(capped[:100], load_rows(tmp_path, "FC", [0], per_run=100, seed=1)[0])  # seeded per run
    assert set(map(tuple, capped[:100].tolist())) <= set(map(tuple, seq[:832].tolist()))
    mtime = shard_path(tmp_path, 0).stat().st_mtime_ns
    again = collect(
        tmp_path,
        specs + sample_specs(1, seed=9, start_id=2, archs=["smallcnn-narrow"]),
        backend="serial",
        progress=False,
    )  # resumes: only the new run is collected
    assert again["last_collection"]["runs"] == 1 and len(again["runs"]) == 3
    assert [c["runs"] for c in again["collections"]] == [2, 1]
    assert shard_path(tmp_path, 0).stat().st_mtime_ns == mtime
    with pytest.raises(WeightlabError, match="unknown backend"):
        collect(tmp_path, specs, backend="slurm")
    with pytest.raises(WeightlabError, match="unknown architecture"):
        sample_specs(1, archs=["vgg"])


def test_collection_on_a_local_ray_runtime(tmp_path):
    pytest.importorskip("ray")
    from weightlab.know.meta.collect import collect

    serial = collect(tmp_path / "a", _specs(2), backend="serial", progress=False)
    parallel = collect(tmp_path / "b", _specs(2), backend="ray", workers=2, progress=False)
    assert sorted((r["spec"]["run_id"], r["rows"]["Conv"]) for r in parallel["runs"]) == sorted(
        (r["spec"]["run_id"], r["rows"]["Conv"]) for r in serial["runs"]
    )


def test_cli_meta_collect_then_train_writes_loadable_hypermodels(tmp_path, capsys):
    from weightlab.cli import main
    from weightlab.know.predictors import KNOWN

    data, out = tmp_path / "meta", tmp_path / "known"
    assert (
        main(
            [
                "know",
                "meta",
                "collect",
                "--runs",
                "4",
                "--archs",
                "smallcnn-narrow,mlp",
                "--train-size",
                "100",
                "--backend",
                "serial",
                "--out",
                str(data),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "4 runs" in capsys.readouterr().out
    manifest = json.loads((data / "manifest.json").read_text())
    archs = {r["spec"]["run_id"]: r["spec"]["arch"] for r in manifest["runs"]}
    assert sorted(archs.values()) == ["mlp", "mlp", "smallcnn-narrow", "smallcnn-narrow"]  # seed 0 draws both
    assert manifest["collections"][0]["command"].startswith("weightlab know meta collect --runs 4")
    assert (
        main(
            [
                "know",
                "meta",
                "train",
                "--data",
                str(data),
                "--epochs",
                "2",
                "--batch-size",
                "512",
                "--test-archs",
                "mlp",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "held-out architectures and data sets" in capsys.readouterr().out
    report = json.loads((out / "training.json").read_text())
    split = report["split"]
    assert [archs[i] for i in split["test"]] == ["mlp", "mlp"] and len(split["val"]) == 1 and len(split["train"]) == 1
    for kind in ("Conv", "FC", "Bias"):
        v = report["models"][kind]["val_l1"]
        assert v["ours"] > 0 and v["zero"] > 0 and v["task_vector"] > 0
    assert "test_l1" not in report["models"]["Conv"]  # an MLP has no conv rows
    assert set(report["models"]["FC"]["test_l1_by_arch"]) == {"mlp"}
    assert (out / "loss.png").stat().st_size > 1000
    card = (out / "MODEL_CARD.md").read_text()
    assert "Held-out architectures and data sets" in card and "weightlab know meta collect --runs 4" in card
    from weightlab.know.meta.pipeline import check_mini

    for kind, (recorded, now) in check_mini(out, out / "mini_test.safetensors", report).items():
        assert now == pytest.approx(recorded, rel=1e-6), kind
    assert KNOWN(weights=out).seq_len == 5  # the trained files load as a KNOW predictor
    # the Table 6 ablation: the same rows, the hypermodels read the last three stages
    short = tmp_path / "known_s3"
    args = ["know", "meta", "train", "--data", str(data), "--epochs", "1", "--batch-size", "512"]
    assert main(args + ["--seq-len", "3", "--out", str(short), "--no-progress"]) == 0
    capsys.readouterr()
    assert KNOWN(weights=short).seq_len == 3
    short_report = json.loads((short / "training.json").read_text())
    assert short_report["config"]["seq_len"] == 3
    assert "history of S=3 stages" in (short / "MODEL_CARD.md").read_text()
    for kind, (recorded, now) in check_mini(short, short / "mini_test.safetensors", short_report).items():
        assert now == pytest.approx(recorded, rel=1e-6), kind
    assert main(args + ["--seq-len", "6", "--out", str(short)]) == 2
    assert "argument --seq-len: must be an integer in [2, 5], got '6'" in capsys.readouterr().err
    assert main(["know", "meta", "train", "--data", str(tmp_path), "--out", str(out)]) == 2
    assert "not a meta-dataset folder" in capsys.readouterr().err


def _runs(*pairs):
    return [{"spec": {"run_id": i, "arch": a, "dataset": d}} for i, (a, d) in enumerate(pairs)]


def test_split_holds_out_architectures_and_data_sets_as_whole_runs():
    from weightlab.know.meta.pipeline import split_runs

    runs = _runs(
        ("cnn", "digits"),
        ("cnn", "mnist"),
        ("mlp", "digits"),
        ("cnn", "fmnist"),
        ("mixer", "digits"),
        ("mixer", "fmnist"),
        ("mlp", "mnist"),
        ("cnn", "digits"),
    )
    s = split_runs(runs, 0.25, 0, test_archs=["mixer"], test_datasets=["fmnist"])
    assert s["test"] == [5]  # held-out architecture on a held-out data set
    assert s["excluded"] == [3, 4]  # shares only one of them: neither trained nor tested on
    assert sorted(s["train"] + s["val"]) == [0, 1, 2, 6, 7] and len(s["val"]) == 1
    assert split_runs(runs, 0.25, 0, test_datasets=["fmnist"])["test"] == [3, 5]
    assert split_runs(runs, 0.25, 0)["test"] == [] and split_runs(runs, 0.25, 0) == split_runs(runs, 0.25, 0)
    with pytest.raises(WeightlabError, match="held-out vgg not in the meta-dataset"):
        split_runs(runs, 0.25, 0, test_archs=["vgg"])
    with pytest.raises(WeightlabError, match="at least 2 training-distribution runs"):
        split_runs(runs[:1], 0.25, 0)


def test_shipped_known_loads_and_reproduces_its_recorded_validation_figure():
    """The package's own KNOWN: the default of the predictor, and its L1 on the fixed mini set of
    held-out rows (tests/data) is the one recorded when it was trained, and beats "no change"."""
    from pathlib import Path

    from weightlab.io import load_weights
    from weightlab.know.meta.pipeline import check_mini
    from weightlab.know.predictors import KNOWN
    from weightlab.know.predictors.known import SHIPPED_DIR

    report = json.loads((SHIPPED_DIR / "training.json").read_text())
    mini_file = Path(__file__).parent / "data" / "known_mini.safetensors"
    mini = load_weights(mini_file)
    for kind, (recorded, now) in check_mini(SHIPPED_DIR, mini_file, report).items():
        assert now == pytest.approx(recorded, rel=1e-5), kind
        assert now < baseline_l1(mini[f"{kind}_seq"], mini[f"{kind}_target"], "zero"), kind
    assert KNOWN().weights_source == str(SHIPPED_DIR)
    assert (SHIPPED_DIR / "MODEL_CARD.md").read_text().startswith("# weightlab KNOWN: model card")


def _faithful_specs(n, archs=("smallcnn-narrow",)):
    from dataclasses import replace

    from weightlab.know.meta.collect import PROTOCOLS, sample_specs

    ranges = replace(PROTOCOLS["faithful"], train_size=160, pretrain_epochs=2, eval_size=60, forget_epochs=(1,))
    return sample_specs(n, seed=5, archs=list(archs), ranges=ranges)


def test_faithful_collection_records_seven_stages_their_d0_accuracy_and_the_forgetting_flag(tmp_path):
    from weightlab.know.meta.collect import collect
    from weightlab.know.meta.pipeline import _collection_summary, model_card

    specs = _faithful_specs(2)
    assert all(s.protocol == "faithful" and s.stages == 7 for s in specs)
    m = collect(tmp_path, specs[:1], backend="serial", progress=False)
    (run,) = m["runs"]
    # 7 stages give two targets per weight (stages 0 and 1, each from the five stages behind it)
    assert run["rows"]["FC"] == 2 * (16 * 32 + 32 * 10)
    assert len(run["eval_accuracy"]) == 7 and run["forgetting"]["accuracy"] == pytest.approx(
        run["eval_accuracy"], abs=0.01
    )
    assert run["forgetting"]["forgets"] == (run["forgetting"]["accuracy"][-1] < run["forgetting"]["accuracy"][0])
    assert len(run["pretrain"]["test_accuracy"]) == 2 and "converged" in run["pretrain"]
    summary = _collection_summary(m)
    assert summary["forgetting"]["measured"] == 1 and summary["ranges"]["protocols"] == ["faithful"]
    card = model_card(
        {
            "collection": summary,
            "config": {"input_convention": "normalized", "lr": 1e-3, "batch_size": 8, "epochs": 1, "patience": 1},
            "split": {"train": [0], "val": [], "test": [], "excluded": []},
            "max_rows_per_run": 1,
            "max_rows": 1,
            "models": {},
        }
    )
    assert "the faithful protocol" in card and "7 stages of progressive forgetting" in card
    assert f"{summary['forgetting']['forgets']} of 1 runs forget" in card


def test_collection_time_budget_stops_starting_runs_and_a_rerun_finishes_them(tmp_path):
    from weightlab.know.meta.collect import collect

    specs = _specs(3)
    first = collect(tmp_path, specs, backend="serial", progress=False, time_budget=0)
    assert len(first["runs"]) == 1 and first["last_collection"]["stopped_early"]
    assert first["last_collection"]["runs"] == 1
    second = collect(tmp_path, specs, backend="serial", progress=False)
    assert len(second["runs"]) == 3 and second["last_collection"]["runs"] == 2
    assert not second["last_collection"]["stopped_early"]
