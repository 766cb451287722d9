"""KNOWN meta-training groundwork: rows from trajectories, the training loop, the baselines."""

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
