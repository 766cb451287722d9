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
    mtime = shard_path(tmp_path, 0).stat().st_mtime_ns
    again = collect(tmp_path, specs + sample_specs(1, seed=9, start_id=2, archs=["smallcnn-narrow"]),
                    backend="serial", progress=False)  # resumes: only the new run is collected
    assert again["last_collection"]["runs"] == 1 and len(again["runs"]) == 3
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
    assert sorted((r["spec"]["run_id"], r["rows"]["Conv"]) for r in parallel["runs"]) == \
        sorted((r["spec"]["run_id"], r["rows"]["Conv"]) for r in serial["runs"])


def test_cli_meta_collect_then_train_writes_loadable_hypermodels(tmp_path, capsys):
    from weightlab.cli import main
    from weightlab.know.predictors import KNOWN

    data, out = tmp_path / "meta", tmp_path / "known"
    assert main(["know", "meta", "collect", "--runs", "3", "--archs", "smallcnn-narrow", "--train-size", "100",
                 "--backend", "serial", "--out", str(data), "--no-progress"]) == 0
    assert "3 runs" in capsys.readouterr().out
    assert main(["know", "meta", "train", "--data", str(data), "--epochs", "2", "--batch-size", "512",
                 "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "training.json").read_text())
    assert len(report["val_runs"]) == 1 and not set(report["val_runs"]) & set(report["train_runs"])
    for kind in ("Conv", "FC", "Bias"):
        v = report["models"][kind]["val_l1"]
        assert v["ours"] > 0 and v["zero"] > 0 and v["task_vector"] > 0
    assert (out / "loss.png").stat().st_size > 1000
    KNOWN(weights=out)  # the trained files load as a KNOW predictor
    assert main(["know", "meta", "train", "--data", str(tmp_path), "--out", str(out)]) == 2
    assert "not a meta-dataset folder" in capsys.readouterr().err
