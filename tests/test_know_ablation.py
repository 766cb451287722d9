"""The paper's Table 6 (KNOWN with another history length S) and the faithful incremental-pretraining
baseline (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from weightlab.data import load_dataset
from weightlab.errors import WeightlabError
from weightlab.io import load_weights, read_json, save_tensors
from weightlab.know import KNOWNNet
from weightlab.know.forgetting import nested_subsets
from weightlab.know.hypermodel import count_parameters, seq_len_of
from weightlab.know.meta.train import MetaTrainConfig, last_stages, train_known
from weightlab.know.predictors import get_predictor
from weightlab.know.predictors.known import load_known_set
from weightlab.know.pretrain import PretrainConfig, pretrain
from weightlab.know.trajectory import Trajectory
from weightlab.models import create_model


@pytest.mark.parametrize("seq_len", [2, 3, 4])
def test_a_shorter_history_known_is_the_same_network_on_s_inputs(seq_len):
    torch.manual_seed(seq_len)
    net = KNOWNNet("normalized", seq_len).eval()
    # one input column fewer per step shrinks both streams' first layers by 64 weights each
    assert count_parameters(net) == 9425 - 2 * 64 * (5 - seq_len)
    assert seq_len_of(net.state_dict()) == seq_len
    seq = torch.randn(3000, seq_len) * 0.05
    with torch.no_grad():
        plain = net(seq)
    assert torch.allclose(net.fused()(seq, threads=2), plain, atol=1e-5, rtol=1e-4)
    with pytest.raises(WeightlabError, match=rf"KNOWN takes \(N, {seq_len}\) sequences, got shape \(4, 5\)"):
        net(torch.zeros(4, 5))
    with pytest.raises(WeightlabError, match="history length must be an integer >= 2, got 1"):
        KNOWNNet("raw", 1)


def _save_set(folder: Path, lengths: dict[str, int]) -> None:
    for kind, n in lengths.items():
        torch.manual_seed(n)
        net = KNOWNNet("normalized", n)
        save_tensors(
            folder / f"KNOWN_{kind}.safetensors",
            net.state_dict(),
            metadata={"format": "weightlab.know.KNOWNNet", "input_convention": "normalized", "seq_len": str(n)},
        )


def _trajectory(stages: int = 5) -> Trajectory:
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=3, input_size=(1, 8, 8))
    base = {k: v.clone() for k, v in model.state_dict().items()}
    seq = [base]
    for s in range(1, stages):
        seq.append({k: v + 0.01 * s * torch.randn_like(v) if v.is_floating_point() else v for k, v in base.items()})
    return Trajectory(seq)


def test_a_known_set_with_s3_reads_only_the_last_three_stages(tmp_path):
    _save_set(tmp_path / "s3", {"Conv": 3, "FC": 3, "Bias": 3})
    nets = load_known_set(tmp_path / "s3")
    assert {n.seq_len for n in nets.values()} == {3}
    known = get_predictor("known", weights=str(tmp_path / "s3"))
    assert known.seq_len == 3 and known.min_stages(1) == 3 and known.options()["seq_len"] == 3
    traj = _trajectory()
    pred = known.predict_steps(traj, [1, 2])
    # the two oldest stages do not enter an S=3 prediction
    changed = _trajectory()
    for s in (3, 4):
        changed.stages[s] = {k: v * 3 if v.is_floating_point() else v for k, v in changed.stages[s].items()}
    again = known.predict_steps(changed, [1, 2])
    assert all(torch.equal(pred[k][n], again[k][n]) for k in pred for n in pred[k])
    # a three-stage trajectory is enough for S=3, not for the shipped S=5
    short = Trajectory(traj.stages[:3])
    assert known.predict_steps(short, [1])[1].keys() == pred[1].keys()
    with pytest.raises(WeightlabError, match="5"):
        get_predictor("known").predict_steps(short, [1])
    _save_set(tmp_path / "odd", {"Conv": 3, "FC": 3, "Bias": 3})
    save_tensors(tmp_path / "odd" / "KNOWN_FC.safetensors", {"w": torch.zeros(2)})
    with pytest.raises(WeightlabError, match=r"KNOWN_FC.safetensors: not a KNOWN state dict"):
        load_known_set(tmp_path / "odd")
    _save_set(tmp_path / "mixed", {"Conv": 3, "FC": 4, "Bias": 3})
    with pytest.raises(WeightlabError, match="different history lengths"):
        load_known_set(tmp_path / "mixed")


def test_meta_training_with_a_shorter_history_reads_the_newest_stages():
    torch.manual_seed(0)
    seq = torch.randn(2048, 5) * 0.1
    target = seq[:, -1] + 0.3 * (seq[:, -1] - seq[:, -2])  # a rule of the last two stages only
    cut = last_stages((seq, target), 3)
    assert torch.equal(cut[0], seq[:, 2:]) and cut[1] is target
    cfg = MetaTrainConfig(epochs=3, batch_size=256, seq_len=3)
    net, hist = train_known(cut, last_stages((seq[:512], target[:512]), 3), cfg, progress=False)
    assert net.seq_len == 3 and hist["best_val_l1"] < hist["val_l1_start"]
    with pytest.raises(WeightlabError, match=r"\(N, 3\) sequences"):
        train_known((seq, target), (seq, target), cfg, progress=False)
    with pytest.raises(WeightlabError, match=r"history length must be in \[2, 5\].*got 6"):
        MetaTrainConfig(seq_len=6)


def test_curriculum_epochs_go_from_the_smallest_subset_to_all_of_d0():
    cfg = PretrainConfig(epochs=10, curriculum=5)
    assert [cfg.stage_of_epoch(e) for e in range(10)] == [4, 4, 3, 3, 2, 2, 1, 1, 0, 0]
    assert [PretrainConfig(epochs=7, curriculum=3).stage_of_epoch(e) for e in range(7)] == [2, 2, 2, 1, 1, 0, 0]
    assert "curriculum" not in PretrainConfig().to_dict()  # plain bases keep their manifest
    assert PretrainConfig(curriculum=5).to_dict()["curriculum"] == 5
    with pytest.raises(WeightlabError, match="0 to 3"):
        PretrainConfig(epochs=3, curriculum=5).validate()
    with pytest.raises(WeightlabError, match=r"ratio must be in \(0, 1\)"):
        PretrainConfig(curriculum=2, curriculum_ratio=1.5).validate()


def test_incremental_pretraining_has_the_base_steps_on_growing_nested_subsets(tmp_path):
    train = load_dataset("digits", "train").head(160, seed=0)
    cfg = PretrainConfig(epochs=4, batch_size=32, curriculum=4, curriculum_ratio=0.5, curriculum_seed=3)
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=10, input_size=(1, 8, 8))
    meta = pretrain(model, train, tmp_path / "inc", cfg, progress=False)
    subsets = nested_subsets(train.labels, 0.5, 4, seed=3)
    assert [h["subset"] for h in meta["history"]] == [
        {"stage": s, "samples": len(subsets[s])} for s in (3, 2, 1, 0)
    ]  # 20, 40, 80, then all 160 samples
    assert meta["finished"] and meta["history"][-1]["lr_end"] == pytest.approx(0.0, abs=1e-9)  # the base's schedule
    # the plain base (no curriculum) from the same init differs: the curriculum changed what was seen
    torch.manual_seed(0)
    plain = create_model("smallcnn", num_classes=10, input_size=(1, 8, 8))
    pretrain(plain, train, tmp_path / "plain", PretrainConfig(epochs=4, batch_size=32), progress=False)
    a, b = (load_weights(tmp_path / d / "base.safetensors") for d in ("inc", "plain"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert "curriculum" not in read_json(tmp_path / "plain" / "pretrain.json")["config"]
    with pytest.raises(WeightlabError, match="config.curriculum"):
        pretrain(model, train, tmp_path / "inc", PretrainConfig(epochs=4, batch_size=32, curriculum=2), progress=False)


def test_ablation_suite_rows_reuse_the_faithful_trajectories():
    from weightlab.bench.suites import get_know_suite
    from weightlab.know.protocol import predictor_rows
    from weightlab.know.protocol import suite_record as _suite_record

    faithful, ablation = get_know_suite("cifar5-smallcnn-faithful"), get_know_suite("cifar5-smallcnn-ablation")
    a, b = _suite_record(faithful), _suite_record(ablation)
    same = ("model", "source", "target", "source_train", "source_val", "eval_size", "pretrain", "forget")
    assert {k: a[k] for k in same} == {k: b[k] for k in same} and a["trajectory_seeds"] == b["trajectory_seeds"]
    assert b["half_source"] and not b["truth"]  # D⁰ is the same seeded half, without the ×2 weights
    rows = predictor_rows(ablation)
    assert [(r[0], r[2]) for r in rows] == [
        ("task_vector", "task_vector"),
        ("known_s3", "known"),
        ("known_s4", "known"),
        ("known_s5", "known"),
    ]
    assert "known_variants" not in a and "half_source" not in a  # old records resume unchanged


def test_a_suite_with_known_variants_and_the_faithful_incremental_baseline(tmp_path):
    from dataclasses import replace

    from weightlab.bench.know import run_suite
    from weightlab.bench.reports.know import summarize
    from weightlab.bench.suites import KnowSuite
    from weightlab.know.forgetting import ForgetConfig
    from weightlab.know.transfer import TransferConfig

    _save_set(tmp_path / "s3", {"Conv": 3, "FC": 3, "Bias": 3})
    suite = KnowSuite(
        "tiny-ablation",
        "test",
        model="smallcnn",
        source="digits:0-4",
        target="digits:5-9",
        model_kwargs={"input_size": (1, 8, 8)},
        source_train=200,
        source_val=40,
        target_train=100,
        target_test=None,
        eval_size=None,
        pretrain=PretrainConfig(epochs=4, batch_size=32),
        forget=ForgetConfig(stages=4, batch_size=32),
        transfer=TransferConfig(warmup_epochs=1, epochs=1, batch_size=32),
        predictors=("task_vector",),
        known_variants=(("known_s3", "KNOWN S=3", str(tmp_path / "s3")),),
        steps=(1, 2),
        seeds=(0,),
        trajectory_seeds=(0,),
        half_source=True,
        needs_shared=False,
    )
    res = run_suite(suite, tmp_path / "out", progress=False)
    info = res["prepare"]["trajectories"]["0"]
    assert info["d0_size"] == 100 and "truth" not in info  # half of the data, no ×2 weights trained
    assert info["predictions"]["known_s3"]["options"]["seq_len"] == 3
    inc = read_json(tmp_path / "out" / "traj_0" / "incremental" / "pretrain.json")
    assert [h["subset"]["stage"] for h in inc["history"]] == [3, 2, 1, 0]  # one epoch per subset, smallest first
    assert info["incremental_accuracy"] is not None
    rows = {r["row"]: r for r in summarize(res)}
    assert {"naive", "incremental", "task_vector_x2", "task_vector_x4", "known_s3_x2", "known_s3_x4"} == set(rows)
    assert rows["known_s3_x2"]["label"] == "KNOWN S=3"
    md = (tmp_path / "out" / "results.md").read_text()
    assert "Table 6 layout" in md and "| 3 | KNOWN S=3 |" in md and "| 2 | Task Vector |" in md
    assert (tmp_path / "out" / "s_ablation.png").stat().st_size > 1000
    with pytest.raises(WeightlabError, match="KNOWN S=4: its KNOWN weights .* are not a folder"):
        run_suite(
            replace(suite, known_variants=(("known_s4", "KNOWN S=4", str(tmp_path / "none")),)),
            tmp_path / "bad",
            progress=False,
        )
