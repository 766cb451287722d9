"""Task-incremental learning: gradients, task switching, artifacts, PEFT over RECAST, zero forgetting."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from weightlab import recast
from weightlab.cli import main
from weightlab.data.tasks import SplitSizes, build_sequence, parse_task_spec
from weightlab.errors import WeightlabError
from weightlab.incremental import (
    AdaptConfig,
    TaskModel,
    learn_task,
    load_base,
    load_task,
    metrics,
    parse_method,
    save_base,
    save_task,
)
from weightlab.incremental.sequence import run_sequence
from weightlab.models import create_model
from weightlab.recast.pipeline import build_bases

CFG = AdaptConfig(epochs=1, lr=5e-2)


@pytest.fixture(scope="module")
def bases():
    plain, rbase = build_bases(
        "resnet20", None, dict(templates="auto", layers_per_group=2), need_recast=True, seed=0, pretrained=False
    )
    return plain, rbase


@pytest.fixture(scope="module")
def tasks():
    return build_sequence("digits", sizes=SplitSizes(96, 32, 48))


def _batch(tm, tasks):
    from weightlab.data.arrays import ModelInput

    return ModelInput.from_cfg(tm.model_cfg)(tasks[0].test.images[:16])


def _learn(base, method, tasks, seed=0):
    tm = TaskModel.from_base(base, parse_method(method), seed=seed)
    for i, t in enumerate(tasks):
        learn_task(tm, t, CFG, seed=seed + i, progress=False)
    return tm


def test_parse_method_names_and_errors():
    assert parse_method("recast+lora:r=2").name == "recast+lora:rank=2"
    assert parse_method("head").name == "head" and parse_method("recast").recast
    for bad in ("nope", "recast+full", "lora:rank", "head:r=1", "lora:bogus=1", "lora+clr"):
        with pytest.raises(WeightlabError):
            parse_method(bad)


def test_task_specs_and_splits():
    assert parse_task_spec("cifar10:0-2,5") == ("cifar10", [0, 1, 2, 5])
    with pytest.raises(WeightlabError):
        parse_task_spec("mnist:a-b")
    t = build_sequence("digits:3,7", sizes=SplitSizes(50, 20, None))[0]
    assert t.classes == ["3", "7"] and set(t.train.labels.tolist()) == {0, 1}
    assert len(t.train) == 50 and len(t.val) == 20
    train_rows = {tuple(x.flatten().tolist()) for x in t.train.images}
    assert not any(tuple(x.flatten().tolist()) in train_rows for x in t.val.images)  # disjoint
    with pytest.raises(WeightlabError, match="outside"):
        build_sequence("digits:9-10")


def test_only_coefficients_and_head_get_gradients(bases, tasks):
    tm = TaskModel.from_base(bases[1], parse_method("recast"))
    tm.new_task("t", ["a", "b", "c"])
    tm.train()
    F.cross_entropy(tm(_batch(tm, tasks)), torch.zeros(16, dtype=torch.long)).backward()
    with_grad = {n for n, p in tm.named_parameters() if p.grad is not None}
    assert with_grad, "nothing received a gradient"
    assert all(n.endswith(".coefficients") or n.startswith("heads.") for n in with_grad)
    assert any(n.endswith(".coefficients") for n in with_grad)
    assert all(p.grad is None for n, p in tm.named_parameters() if "template" in n)


def test_switching_tasks_and_zero_forgetting(bases, tasks):
    tm = _learn(bases[1], "recast", tasks)
    x = _batch(tm, tasks)
    first = tm.predict(x, tasks[0].name).clone()
    second = tm.predict(x, tasks[1].name)
    assert not torch.equal(first[:, :5], second[:, :5])
    c0, c1 = (tm.task_states[t.name]["layer1.1.conv1.coefficients"] for t in tasks)
    assert not torch.equal(c0, c1)  # each task has its own coefficients
    assert torch.equal(tm.predict(x, tasks[0].name), first)  # switching back is bit-for-bit
    with pytest.raises(WeightlabError, match="unknown task"):
        tm.set_task("nope")


@pytest.mark.parametrize("method", ["recast", "piggyback", "recast+rosa", "recast+clr"])
def test_task_artifact_round_trip(tmp_path, bases, tasks, method):
    spec = parse_method(method)
    base = bases[1] if spec.recast else bases[0]
    tm = _learn(base, method, tasks)
    x = _batch(tm, tasks)
    save_base(base, tmp_path / "base")
    for t in tasks:
        save_task(tm, t.name, tmp_path / t.name)
    fresh = TaskModel.from_base(load_base(tmp_path / "base"), spec)
    assert fresh.base_hash == tm.base_hash
    for t in tasks:
        load_task(fresh, tmp_path / t.name)
    for t in tasks:
        assert torch.equal(fresh.predict(x, t.name), tm.predict(x, t.name))


def test_task_artifact_refused_on_another_base(tmp_path, bases, tasks):
    tm = _learn(bases[1], "recast", tasks[:1])
    save_task(tm, tasks[0].name, tmp_path / "t")
    torch.manual_seed(123)  # another random backbone
    _, other = build_bases(
        "resnet20", None, dict(templates="auto", layers_per_group=2), need_recast=True, seed=1, pretrained=False
    )
    with pytest.raises(WeightlabError, match="was learnt on base"):
        load_task(TaskModel.from_base(other, parse_method("recast")), tmp_path / "t")
    with pytest.raises(WeightlabError, match="uses method"):
        load_task(TaskModel.from_base(bases[1], parse_method("recast+lora")), tmp_path / "t")


def test_peft_lora_over_recast_layer_adds_the_lora_term():
    lin = torch.nn.Linear(12, 8)
    bank = recast.TemplateBank(2, (8, 12))
    layer = recast.RecastLinear(lin, bank, coef_sets=2, owner=True)
    model = torch.nn.Sequential(layer)
    from peft import LoraConfig, inject_adapter_in_model

    inject_adapter_in_model(LoraConfig(r=2, lora_alpha=4, target_modules=["0"]), model)
    wrapped = model[0]
    assert wrapped.base_layer is layer
    with torch.no_grad():
        wrapped.lora_B["default"].weight.normal_()
    x = torch.randn(5, 12)
    expected = F.linear(x, layer.generate_weight(), layer.bias) + 2.0 * wrapped.lora_B["default"](
        wrapped.lora_A["default"](x)
    )
    torch.testing.assert_close(model(x), expected)
    # it trains: gradients reach the LoRA factors and the coefficients through the generated weight
    layer.coefficients.requires_grad_(True)
    model(x).pow(2).sum().backward()
    assert wrapped.lora_A["default"].weight.grad is not None and layer.coefficients.grad is not None


def test_recast_plus_lora_trains_and_materializes(bases, tasks):
    tm = _learn(bases[1], "recast+lora", tasks[:1])
    names = set(tm.trainable_parameters())
    assert any(".lora_" in n for n in names) and any(n.endswith("coefficients") for n in names)
    assert not torch.equal(
        tm.task_states[tasks[0].name]["layer1.1.conv1.base_layer.coefficients"],
        tm.init_state["layer1.1.conv1.base_layer.coefficients"],
    )
    x = _batch(tm, tasks)
    plain = tm.materialize(tasks[0].name)
    assert not any(isinstance(m, recast.RecastLayer) for m in plain.modules())
    assert not any("lora" in n for n, _ in plain.named_parameters())
    torch.testing.assert_close(plain(x), tm.predict(x, tasks[0].name), atol=1e-5, rtol=1e-5)


def test_dora_and_adaptformer_start_as_the_base_on_a_vit():
    vit = create_model("timm:vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    cfg = recast.preset("vit-att-mlp", templates="auto")
    rvit = recast.apply_recast(vit, cfg, seed=0)
    recast.reconstruct(vit, rvit, method="closed_form", progress=False)
    rvit.weightlab_cfg = vit.weightlab_cfg
    x = torch.randn(3, 3, 32, 32)
    ref = TaskModel.from_base(rvit, parse_method("recast"))
    ref.new_task("t", ["a", "b"])
    ref.eval()
    for method in ("recast+dora", "recast+adaptformer", "recast+rosa", "recast+piggyback"):
        tm = TaskModel.from_base(rvit, parse_method(method))
        tm.new_task("t", ["a", "b"])
        tm.eval()
        torch.testing.assert_close(tm(x), ref(x), atol=1e-5, rtol=1e-5, msg=method)
    with pytest.raises(WeightlabError, match="does not apply"):
        TaskModel.from_base(rvit, parse_method("recast+clr"))


def test_run_sequence_records_zero_forgetting(bases, tasks):
    record, _ = run_sequence(bases[0], "lora", tasks, CFG, seed=3, progress=False)
    R = record["accuracy_matrix"]
    assert record["zero_forgetting"] and R[1][0] == R[0][0]
    assert record["trainable_per_task"] > 0 and record["bytes_per_task"][0] > 0


def test_metrics_on_a_hand_made_matrix():
    R = [[90.0], [80.0, 70.0], [60.0, 75.0, 50.0]]
    assert metrics.average_accuracy(R) == pytest.approx((60 + 75 + 50) / 3)
    assert metrics.backward_transfer(R) == pytest.approx(((60 - 90) + (75 - 70)) / 2)
    assert metrics.max_forgetting(R) == pytest.approx(30.0)
    assert not metrics.zero_forgetting(R)
    assert metrics.zero_forgetting([[90.0], [90.0, 70.0]])
    assert metrics.mean_std([1.0, 3.0]) == (2.0, pytest.approx(2**0.5))


def test_cli_adapt_evaluate_and_errors(tmp_path, capsys):
    args = [
        "recast",
        "adapt",
        "--model",
        "resnet20",
        "--no-pretrained",
        "--tasks",
        "digits:0-2,digits:3-5",
        "--epochs",
        "1",
        "--train-size",
        "40",
        "--val-size",
        "20",
        "--test-size",
        "30",
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    assert "zero forgetting: yes" in capsys.readouterr().out
    assert main(["recast", "evaluate", "--base", str(tmp_path / "base"), "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "digits_0-2" in out and "digits_3-5" in out
    rows = json.loads((tmp_path / "eval" / "evaluate.json").read_text())["tasks"]
    assert [r["test_accuracy"] for r in rows] == [r["when_learnt"] for r in rows]  # zero forgetting
    assert main(["recast", "evaluate", "--base", str(tmp_path / "nowhere")]) == 2
    assert main(["recast", "adapt", "--tasks", "digits", "--method", "lora:r=0", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("weightlab: error:") == 2 and "Traceback" not in err


def test_bench_suite_writes_outputs_and_resumes(tmp_path):
    from dataclasses import replace

    from weightlab.bench.incremental import get_suite, run_suite

    suite = replace(get_suite("smoke"), sizes=SplitSizes(40, 20, 20))
    payload = run_suite(suite, tmp_path, progress=False, methods=["head", "recast"])
    assert {r["method"] for r in payload["runs"]} == {"head", "recast"}
    assert all(r["zero_forgetting"] for r in payload["summary"])
    for name in ("results.json", "results.md", "average_accuracy.png", "budget.png"):
        assert (tmp_path / name).stat().st_size > 0
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir() if p.is_file()}
    again = run_suite(suite, tmp_path, progress=False, methods=["head", "recast"])  # resumes: nothing to redo
    assert [r["wall_s"] for r in again["runs"]] == [r["wall_s"] for r in payload["runs"]]
    # a resume with nothing new writes nothing: no byte and no timestamp of the kept files changes
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir() if p.is_file()} == files
    with pytest.raises(WeightlabError, match="different suite configuration"):
        run_suite(replace(suite, epochs=2), tmp_path, progress=False)


def test_budget_plot_spreads_equal_budgets_and_colours_rows_apart():
    import math

    from weightlab.bench.reports.incremental_plots import _color, _spread

    xs = [1, 48, 6288, 6336, 6960, 269072, 269072, 269072]
    out = _spread(xs)
    assert out[:2] == [1, 48]  # alone at their budget: not moved
    logs = [math.log10(x) for x in out]
    assert len({round(v, 6) for v in logs}) == len(logs)  # no point hides another
    assert all(abs(a - math.log10(x)) <= 0.1 + 1e-9 for a, x in zip(logs, xs))  # moved a tenth of a decade at most
    assert len({_color(k) for k in range(20)}) == 20
    assert _color(0) != _color(1) and _color(1) != _color(2)  # neighbours are not a dark/light pair
