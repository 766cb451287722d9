"""KNOW controls (issue 16): the function-preserving rescale (shrink control) and the forgetting flag."""

from __future__ import annotations

import pytest
import torch

from weightlab.errors import WeightlabError
from weightlab.know.controls import bn_pairs, rescale_control, shrink_factor
from weightlab.know.forgetting import forgetting_check
from weightlab.models import create_model


def _with_running_stats(model):
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *model.weightlab_cfg.input_size) * 2 + 0.5)
    return model.eval()


@pytest.mark.parametrize("name,kwargs", [("resnet20", {}), ("smallcnn", dict(num_classes=10, input_size=(1, 8, 8)))])
@pytest.mark.parametrize("factor", [0.5, 0.82, 3.0])
def test_rescale_control_leaves_a_batchnorm_network_unchanged(name, kwargs, factor):
    torch.manual_seed(0)
    model = _with_running_stats(create_model(name, **kwargs))
    x = torch.randn(32, *model.weightlab_cfg.input_size)
    state, keys = rescale_control(model, model.state_dict(), factor)
    other = create_model(name, **kwargs).eval()
    other.load_state_dict(state)
    with torch.no_grad():
        loose = (model(x) - other(x)).abs().max()
        for net in (model, other):  # BatchNorm's eps is the only difference: without it, the same function
            for m in net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eps = 1e-12
        before, after = model(x), other(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert loose < 1e-2 * before.abs().max()  # and with the default eps, close
    assert keys and all(torch.allclose(state[k], factor * model.state_dict()[k]) for k in keys)
    assert shrink_factor(model.state_dict(), state, keys) == pytest.approx(factor, rel=1e-6)
    with torch.no_grad():  # in training mode too (batch statistics scale the same way)
        torch.testing.assert_close(other.train()(x), model.train()(x), rtol=1e-3, atol=1e-3)


def test_bn_pairs_come_from_the_graph():
    pairs = bn_pairs(create_model("resnet20"))
    assert ("conv1", "bn1") in pairs and ("layer1.0.conv2", "layer1.0.bn2") in pairs
    assert len(pairs) == 19  # the stem and two per block of 9 blocks (option-A shortcuts have no conv)
    mlp = create_model("mlp", num_classes=10, input_size=(1, 8, 8))
    assert bn_pairs(mlp) == []
    with pytest.raises(WeightlabError, match="no layer feeding a BatchNorm"):
        rescale_control(mlp, mlp.state_dict(), 0.8)
    with pytest.raises(WeightlabError, match="must be > 0"):
        rescale_control(create_model("resnet20"), create_model("resnet20").state_dict(), 0.0)


def test_forgetting_check():
    stages = lambda *acc: [{"stage": i, "eval_accuracy": a} for i, a in enumerate(acc)]  # noqa: E731
    falls = forgetting_check(stages(90.0, 85.0, 70.0))
    assert falls["forgets"] is True and falls["monotone"] and falls["drop"] == pytest.approx(20.0)
    rises = forgetting_check(stages(85.8, 86.0, 86.8))  # the shared ResNet-20's trajectory before issue 16
    assert rises["forgets"] is False and rises["monotone"] is False
    assert forgetting_check(stages(90.0, 89.5), tolerance=1.0)["forgets"] is False
    assert forgetting_check([{"stage": 0}])["forgets"] is None


def test_trajectory_manifest_and_report_state_the_forgetting(tmp_path):
    from weightlab.bench.reports.know_sections import forgetting_line as _forgetting_line
    from weightlab.data import load_dataset
    from weightlab.know.forgetting import ForgetConfig, run_forgetting

    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=10, input_size=(1, 8, 8))
    train, test = load_dataset("digits", "train", limit=200), load_dataset("digits", "test")
    traj = run_forgetting(model, train, tmp_path, ForgetConfig(stages=3), eval_data=test, progress=False)
    check = traj.meta["forgetting"]
    acc = [s["eval_accuracy"] for s in traj.meta["stages"]]
    assert check["accuracy"] == acc and check["forgets"] == (acc[-1] < acc[0])
    line = _forgetting_line(check)
    assert ("forgetting: yes" in line) == check["forgets"] and ("forgetting: no" in line) != check["forgets"]
    assert "forgetting: unknown" in _forgetting_line(None)


class _Spy:
    """A data split that counts how often it is read."""

    def __init__(self, data):
        self.data, self.reads = data, 0
        self.classes = data.classes

    def __len__(self):
        return len(self.data)

    def batches(self, *a, **kw):
        self.reads += 1
        return self.data.batches(*a, **kw)


def test_transfer_lr_is_chosen_on_validation_and_the_test_split_is_read_once():
    from weightlab.data import load_dataset
    from weightlab.know.transfer import TransferConfig, transfer, validation_split

    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=10, input_size=(1, 8, 8))
    train = load_dataset("digits", "train", limit=200)
    test = _Spy(load_dataset("digits", "test", limit=100))
    cfg = TransferConfig(warmup_epochs=1, epochs=2, lr_grid=(1e-4, 3e-3), batch_size=32)
    res = transfer(model.state_dict(), model.weightlab_cfg, train, test, cfg, progress=False)
    sel = res["lr_selection"]
    assert test.reads == 1  # the final evaluation only: selection and warm-up never read it
    assert res["warmup_accuracy"] is None
    assert sel["lr"] == max(cfg.lr_grid, key=lambda lr: sel["val_accuracy"][str(lr)])
    assert res["config"]["lr"] == sel["lr"]
    fit, val = validation_split(train, 0.2, 0)
    assert len(fit) + len(val) == len(train) and len(val) == 40
    with pytest.raises(WeightlabError, match="positive rates"):
        TransferConfig(lr_grid=(1e-3, 0.0))
