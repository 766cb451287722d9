"""Every CLI command and public entry point keeps data on its model's device, checked on this CPU machine.

Each command runs at tiny size with ``--device auto`` inside :func:`standin_device`, where ``auto``
resolves to a second device that computes on the CPU but raises CUDA's error wherever a tensor on it meets
a CPU tensor (see ``tests/standin_device.py``). This is the class of bug that crashed ``recast mimic``
on an H200 (issue 34: the reconstruction report fed CPU batches to a CUDA model); d279cb9 fails here.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from standin_device import DEVICE, StandIn, standin_device
from weightlab.cli import main

TINY_ADAPT = ["--epochs", "1", "--train-size", "24", "--val-size", "12", "--test-size", "12", "--no-progress"]
FORGET = [
    "know", "forget", "--model", "smallcnn", "--no-pretrained", "--data", "digits:0-4", "--limit", "80",
    "--eval-limit", "30", "--stages", "5", "--batch-size", "32", "--no-progress",
]  # fmt: skip


def _run(monkeypatch, capsys, argv: list[str], device: bool = True) -> str:
    with standin_device(monkeypatch):
        rc = main([*argv, "--device", "auto"] if device else argv)
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


# -- the guard itself ----------------------------------------------------------------------------------


def test_the_standin_device_raises_cudas_errors_and_keeps_values(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x, y = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    ref = model(x)
    with standin_device(monkeypatch) as dev:
        from weightlab.engine import evaluate_accuracy, place, resolve_device

        assert resolve_device("auto") == resolve_device("cuda") == dev == DEVICE
        place(model, "auto")
        assert isinstance(model[0].weight, StandIn) and isinstance(model[0].weight, nn.Parameter)
        with pytest.raises(RuntimeError, match="same device"):
            model(x)  # the CPU batch meets the moved model: CUDA's error
        out = model(x.to(dev))
        assert out.device == dev and torch.equal(out.cpu(), ref)  # exact values
        with pytest.raises(TypeError, match="numpy"):
            out.detach().numpy()
        assert out.argmax(1).tolist() == ref.argmax(1).tolist()
        loss = nn.functional.cross_entropy(out, y.to(dev))
        loss.backward()
        assert model[0].weight.grad.device == dev and float(loss.detach()) > 0
        assert out.detach()[torch.tensor([0, 1])].shape == (2, 3)  # CPU indices are fine, as on CUDA
        cpu = torch.zeros(5, 3)
        cpu.copy_(out.detach())  # and so is a copy across devices
        assert torch.equal(cpu, ref.detach())
        with pytest.raises(RuntimeError, match="generator"):
            torch.randn(3, device=dev, generator=torch.Generator().manual_seed(0))
        assert evaluate_accuracy(model, [(x, y)]) >= 0  # the engine moves batches to the model
    assert isinstance(model[0].weight, StandIn)


# -- RECAST commands -----------------------------------------------------------------------------------


def test_recast_mimic_on_another_device(monkeypatch, capsys, tmp_path):
    for method in ("closed_form", "closed_form+recipe"):
        _run(
            monkeypatch,
            capsys,
            ["recast", "mimic", "--model", "resnet20", "--no-pretrained", "--method", method, "--iterations", "3",
             "--templates", "2", "--layers-per-group", "2", "--dataset", "digits", "--out", str(tmp_path / method),
             "--no-progress"],
        )  # fmt: skip
        report = json.loads((tmp_path / method / "report.json").read_text())
        assert report["output_fidelity"]["n"] > 0


def test_recast_adapt_and_evaluate_on_another_device(monkeypatch, capsys, tmp_path):
    for method in ("recast", "recast+lora", "piggyback"):
        out = tmp_path / method
        _run(
            monkeypatch,
            capsys,
            ["recast", "adapt", "--model", "resnet20", "--no-pretrained", "--tasks", "digits:0-2,digits:3-5",
             "--method", method, *TINY_ADAPT, "--out", str(out)],
        )  # fmt: skip
        _run(monkeypatch, capsys, ["recast", "evaluate", "--base", str(out / "base"), "--out", str(out / "eval")])


def test_recast_bench_smoke_on_another_device(monkeypatch, tmp_path):
    from weightlab.bench.incremental import _CACHE, get_suite, run_suite
    from weightlab.data.tasks import SplitSizes

    suite = replace(get_suite("smoke"), sizes=SplitSizes(24, 12, 12))
    _CACHE.clear()
    with standin_device(monkeypatch):
        payload = run_suite(suite, tmp_path, progress=False, device="auto")
    _CACHE.clear()
    assert {r["method"] for r in payload["runs"]} == set(suite.methods)


# -- KNOW commands -------------------------------------------------------------------------------------


def test_know_forget_predict_transfer_on_another_device(monkeypatch, capsys, tmp_path):
    traj, pred = tmp_path / "traj", tmp_path / "pred"
    _run(monkeypatch, capsys, [*FORGET, "--out", str(traj)])
    for method in ("known", "log_fit", "task_vector", "magmax", "tsv"):
        _run(
            monkeypatch,
            capsys,
            ["know", "predict", "--trajectory", str(traj), "--method", method, "--steps", "2", "--out", str(pred),
             "--no-progress"],
            device=method == "known",  # the other predictors have no device option
        )  # fmt: skip
    _run(
        monkeypatch,
        capsys,
        ["know", "transfer", "--trajectory", str(traj), "--predictions", str(pred / "known_x2.safetensors"),
         "--task", "digits:5-9", "--train-limit", "40", "--test-limit", "30", "--warmup-epochs", "1", "--epochs", "1",
         "--out", str(tmp_path / "transfer"), "--no-progress"],
    )  # fmt: skip


def test_know_pretrain_on_another_device(monkeypatch, capsys, tmp_path):
    _run(
        monkeypatch,
        capsys,
        ["know", "pretrain", "--model", "smallcnn", "--input-size", "1,8,8", "--data", "digits", "--limit", "60",
         "--epochs", "1", "--out", str(tmp_path), "--no-progress"],
    )  # fmt: skip


def test_know_meta_collect_and_train_on_another_device(monkeypatch, capsys, tmp_path):
    data = tmp_path / "meta"
    _run(
        monkeypatch,
        capsys,
        ["know", "meta", "collect", "--runs", "3", "--archs", "smallcnn-narrow", "--train-size", "48",
         "--pretrain-epochs", "1", "--backend", "serial", "--out", str(data), "--no-progress"],
    )  # fmt: skip
    _run(
        monkeypatch,
        capsys,
        ["know", "meta", "train", "--data", str(data), "--epochs", "1", "--batch-size", "512", "--val-fraction",
         "0.5", "--out", str(tmp_path / "known"), "--no-progress"],
    )  # fmt: skip


# -- every method and baseline, the KNOW suite, PEFT -------------------------------------------------


def _digits(train=24):
    from weightlab.data.tasks import SplitSizes, build_sequence

    return build_sequence("digits:0-2,digits:3-5", None, SplitSizes(train, 12, 12))


@pytest.mark.parametrize(
    "method",
    ["head", "full", "lora", "dora", "rosa", "clr", "recast+dora", "recast+rosa", "recast+piggyback", "recast+clr"],
)  # fmt: skip
def test_every_method_learns_on_another_device(monkeypatch, method):
    """(recast, recast+lora and piggyback run through the CLI above)"""
    from weightlab.data.arrays import ModelInput
    from weightlab.incremental import AdaptConfig, TaskModel, learn_sequence, parse_method
    from weightlab.models import create_model
    from weightlab.recast.pipeline import recast_base

    torch.manual_seed(0)
    plain = create_model("resnet20", num_classes=3)
    with standin_device(monkeypatch) as dev:
        spec = parse_method(method)
        base = recast_base(plain, {}, device=dev) if spec.recast else plain
        tm = TaskModel.from_base(base, spec)
        tasks = _digits()
        result = learn_sequence(tm, tasks, AdaptConfig(epochs=1, batch_size=16, device="auto"), progress=False)
        assert len(result.accuracy_matrix) == 2
        plain_task = tm.materialize(tasks[0].name)
        x = ModelInput.from_cfg(tm.model_cfg)(tasks[0].test.images[:4]).to(dev)
        assert plain_task(x).device == dev


@pytest.mark.parametrize(
    "method", ["derpp:per_class=2", "hat", "ewc", "lwf", "gdumb:mem_size=20", "er_ace:per_class=2"]
)
def test_every_cnn_baseline_learns_on_another_device(monkeypatch, method):
    from weightlab.incremental import AdaptConfig
    from weightlab.incremental.baselines import BASELINES, AvalancheBaseline, parse_baseline, run_baseline
    from weightlab.models import create_model

    if issubclass(BASELINES.get(parse_baseline(method).method), AvalancheBaseline):
        pytest.importorskip("avalanche")
    torch.manual_seed(0)
    base = create_model("smallcnn", num_classes=10, input_size=(1, 16, 16), widths=(4, 8, 8, 8), hidden=16)
    with standin_device(monkeypatch):
        r = run_baseline(base, method, _digits(), AdaptConfig(epochs=1, batch_size=16, device="auto"), seed=0,
                         progress=False)  # fmt: skip
    assert len(r["accuracy_matrix"]) == 2


@pytest.mark.parametrize("method", ["inflora:rank=2", "l2p:pool_size=4,top_k=2,length=2"])
def test_vit_baselines_learn_on_another_device(monkeypatch, method):
    from weightlab.incremental import AdaptConfig
    from weightlab.incremental.baselines import run_baseline
    from weightlab.models import create_model

    torch.manual_seed(0)
    vit = create_model(
        "timm:vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4, embed_dim=24, depth=2, num_heads=2,
        num_classes=10, in_chans=1,
    )  # fmt: skip
    with standin_device(monkeypatch):
        r = run_baseline(vit, method, _digits(), AdaptConfig(epochs=1, batch_size=16, device="auto"), seed=0,
                         progress=False)  # fmt: skip
    assert len(r["accuracy_matrix"]) == 2


def test_know_suite_with_controls_on_another_device(monkeypatch, tmp_path):
    from weightlab.bench.know import run_suite
    from weightlab.bench.suites import KnowSuite
    from weightlab.know.forgetting import ForgetConfig
    from weightlab.know.pretrain import PretrainConfig
    from weightlab.know.transfer import TransferConfig

    suite = KnowSuite(
        "tiny-faithful", "test", model="smallcnn", source="digits:0-4", target="digits:5-9",
        model_kwargs={"input_size": (1, 8, 8)}, source_train=120, source_val=30, target_train=40, target_test=None,
        eval_size=None, pretrain=PretrainConfig(epochs=5, batch_size=32), forget=ForgetConfig(stages=5, batch_size=32),
        transfer=TransferConfig(warmup_epochs=1, epochs=1, batch_size=32, lr_grid=(1e-3, 3e-3)),
        predictors=("task_vector", "known", "tsv"), steps=(1,), seeds=(0,), truth=True, controls=True,
        incremental=True, needs_shared=False,
    )  # fmt: skip
    with standin_device(monkeypatch):
        results = run_suite(suite, tmp_path, progress=False, device="auto")
    assert results["runs"]


def test_peft_recast_on_another_device(monkeypatch):
    from peft import get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    import weightlab.peft  # noqa: F401
    from weightlab.peft import RecastConfig

    torch.manual_seed(0)
    base = BertForSequenceClassification(
        BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=50)
    ).eval()
    ids = torch.randint(0, 50, (3, 7))
    ref = base(input_ids=ids).logits
    with standin_device(monkeypatch) as dev:
        model = get_peft_model(base.to(dev), RecastConfig(task_type="SEQ_CLS"))
        out = model(input_ids=ids.to(dev)).logits
        assert out.device == dev
        torch.testing.assert_close(out.cpu(), ref.detach(), rtol=1e-4, atol=1e-5)
        model.add_adapter("task2", RecastConfig(task_type="SEQ_CLS"))
        model.set_adapter("task2")
        model.train()
        loss = model(input_ids=ids.to(dev), labels=torch.tensor([0, 1, 0]).to(dev)).loss
        loss.backward()
        merged = model.merge_and_unload()
        assert merged(input_ids=ids.to(dev)).logits.device == dev


def _toy_stages() -> list[dict[str, torch.Tensor]]:
    """Five stages of a small CNN's state dict, Θ^s = Θ⁰ + s·small noise."""
    from weightlab.models import create_model

    torch.manual_seed(0)
    theta = create_model("smallcnn", num_classes=5, input_size=(1, 8, 8)).state_dict()
    return [{k: v + 1e-3 * s * torch.randn_like(v) if v.is_floating_point() else v for k, v in theta.items()}
            for s in range(5)]  # fmt: skip


def test_known_keeps_its_windows_on_the_device_and_returns_to_the_trajectory(monkeypatch):
    from weightlab.know import Trajectory
    from weightlab.know.predictors import KNOWN

    stages = _toy_stages()
    traj = Trajectory(stages)
    cpu = KNOWN().predict_steps(traj, [1, 2])
    with standin_device(monkeypatch) as dev:
        on_device = KNOWN(device="auto").predict_steps(traj, [1, 2])
        # the trajectory itself on the device (the GPU setting): gathered, predicted and returned there
        resident = Trajectory([{k: v.to(dev) for k, v in st.items()} for st in stages], traj.kinds)
        there = KNOWN(device="auto").predict_steps(resident, [2])[2]
        assert all(v.device == dev for v in there.values())
        there = {k: v.cpu() for k, v in there.items()}
    for k in (1, 2):
        for name, v in cpu[k].items():
            assert on_device[k][name].device.type == "cpu", name  # predictions come back where Θ⁰ is
            torch.testing.assert_close(on_device[k][name], v, rtol=0, atol=1e-6)
    for name, v in cpu[2].items():
        torch.testing.assert_close(there[name], v, rtol=0, atol=1e-6)


def test_the_engine_reads_the_loss_on_a_device_in_blocks_and_still_stops_on_nan(monkeypatch):
    from weightlab.engine import SYNC_EVERY, make_optimizer, tensor_batches, train_epoch
    from weightlab.errors import WeightlabError

    torch.manual_seed(0)
    x, y = torch.randn(256, 8), torch.randint(0, 2, (256,))
    ref_model = nn.Linear(8, 2)
    model = nn.Linear(8, 2)
    model.load_state_dict(ref_model.state_dict())
    ref = train_epoch(ref_model, tensor_batches(x, y, 16), make_optimizer("sgd", ref_model.parameters(), lr=0.1))
    with standin_device(monkeypatch) as dev:
        model.to(dev)
        loss = train_epoch(model, tensor_batches(x, y, 16), make_optimizer("sgd", model.parameters(), lr=0.1))
        assert loss == pytest.approx(ref, rel=1e-12)  # the same mean loss, summed on the device
        bad = torch.full((8 * SYNC_EVERY, 8), float("nan"))
        with pytest.raises(WeightlabError, match="the loss became nan"):
            train_epoch(model, tensor_batches(bad, torch.zeros(len(bad), dtype=torch.long), 8),
                        make_optimizer("sgd", model.parameters(), lr=0.1))  # fmt: skip


@pytest.mark.parametrize("method", ["linear_fit", "log_fit", "exp_fit", "task_vector", "magmax", "consensus_ta", "tsv"])
def test_every_predictor_works_on_a_trajectory_kept_on_a_device(monkeypatch, method):
    from weightlab.know import Trajectory, get_predictor

    stages = _toy_stages()
    steps = [3] if method == "consensus_ta" else [1, 2]  # consensus needs 3 task vectors
    cpu = get_predictor(method).predict_steps(Trajectory(stages), steps)
    with standin_device(monkeypatch) as dev:
        resident = Trajectory([{k: v.to(dev) for k, v in st.items()} for st in stages])
        there = get_predictor(method).predict_steps(resident, steps)
        assert all(v.device == dev for step in there.values() for v in step.values())
        there = {k: {n: v.cpu() for n, v in step.items()} for k, step in there.items()}
    for k in steps:
        for name, v in cpu[k].items():
            torch.testing.assert_close(there[k][name], v, rtol=1e-5, atol=1e-6)
