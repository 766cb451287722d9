"""RECAST as a registered PEFT method, on random-init models from transformers, timm and torchvision."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")
from peft import PeftModel, get_peft_model  # noqa: E402

import weightlab.peft  # noqa: E402,F401  (registers RECAST)
from weightlab.errors import WeightlabError  # noqa: E402
from weightlab.peft import TEMPLATES_FILE, RecastConfig, RecastPeftLayer, describe_plan  # noqa: E402


def _hf_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, vocab_size=50)
    gen = torch.Generator().manual_seed(1)
    return BertModel(cfg).eval(), lambda: {"input_ids": torch.randint(0, 50, (2, 7), generator=gen.manual_seed(1))}


def _hf_vit():
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    gen = torch.Generator().manual_seed(1)
    return ViTModel(cfg).eval(), lambda: {"pixel_values": torch.randn(2, 3, 32, 32, generator=gen.manual_seed(1))}


def _timm(name, **kw):
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=5, **kw).eval()


def _images(size=32):
    return lambda: {"x": torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))}


def _tv_resnet():
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(0)
    return ResNet(BasicBlock, [3, 3, 1, 1], num_classes=5).eval()


MODELS = {
    "hf_bert": _hf_bert,
    "hf_vit": _hf_vit,
    "timm_vit": lambda: (_timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=4), _images()),
    "timm_efficientnet": lambda: (_timm("efficientnet_b0"), _images()),
    "timm_mobilenetv3": lambda: (_timm("mobilenetv3_small_050"), _images()),
    "tv_resnet": lambda: (_tv_resnet(), _images()),
}


def _out(model, inputs):
    out = model(**inputs) if "x" not in inputs else model(inputs["x"])
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out


def _perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "recast_coefficients" in name and p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.mark.parametrize("kind", list(MODELS))
def test_get_peft_model_is_the_base_then_adapters_switch_save_load_merge(kind, tmp_path):
    base, inputs = MODELS[kind]()
    x = inputs()
    with torch.no_grad():
        ref = _out(base, x).clone()
    model = get_peft_model(base, RecastConfig())
    model.eval()
    layers = [m for m in model.modules() if isinstance(m, RecastPeftLayer)]
    assert layers, "nothing was templated"
    with torch.no_grad():
        fresh = _out(model, x)
    scale = ref.abs().max().item()
    assert (fresh - ref).abs().max().item() <= 1e-4 * max(scale, 1.0)

    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("recast_coefficients.default" in n for n in trainable)

    # two tasks as two adapters
    _perturb(model, 1)
    model.add_adapter("task2", RecastConfig())
    model.set_adapter("task2")
    assert all("recast_coefficients.task2" in n for n, p in model.named_parameters() if p.requires_grad)
    _perturb(model, 2)
    with torch.no_grad():
        out2 = _out(model, x).clone()
        model.set_adapter("default")
        out1 = _out(model, x).clone()
        model.set_adapter("task2")
        assert torch.equal(_out(model, x), out2)  # switching is bit-exact
        model.set_adapter("default")
        assert torch.equal(_out(model, x), out1)
        with model.disable_adapter():
            assert (_out(model, x) - ref).abs().max().item() <= 1e-6 * max(scale, 1.0)
    assert not torch.allclose(out1, out2)

    # save / load: adapters hold coefficients only, the templates are written once
    model.save_pretrained(tmp_path)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files.count(TEMPLATES_FILE) == 1 and "task2/adapter_model.safetensors" in files
    coef_numbers = sum(p.numel() for n, p in model.named_parameters() if "recast_coefficients.task2" in n)
    adapter_bytes = os.path.getsize(tmp_path / "task2" / "adapter_model.safetensors")
    assert adapter_bytes < 4 * coef_numbers + 8_000  # float32 coefficients + a small safetensors header
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "RECAST" and cfg["bank_plan"] and cfg["templates_sha256"]

    base2, _ = MODELS[kind]()
    loaded = PeftModel.from_pretrained(base2, tmp_path)
    loaded.load_adapter(tmp_path / "task2", adapter_name="task2")
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(_out(loaded, x), out1)
        loaded.set_adapter("task2")
        assert torch.equal(_out(loaded, x), out2)

    # merge_and_unload: a plain model with the active adapter's weights
    with torch.no_grad():
        merged = loaded.merge_and_unload()
        assert not any(isinstance(m, RecastPeftLayer) for m in merged.modules())
        assert (_out(merged, x) - out2).abs().max().item() <= 1e-5 * max(scale, 1.0)


def test_templates_recomputed_from_the_base_when_the_file_is_missing(tmp_path):
    base, inputs = MODELS["hf_bert"]()
    model = get_peft_model(base, RecastConfig())
    _perturb(model, 3)
    model.eval()
    x = inputs()
    with torch.no_grad():
        want = _out(model, x)
    model.save_pretrained(tmp_path)
    (tmp_path / TEMPLATES_FILE).unlink()
    base2, _ = MODELS["hf_bert"]()
    loaded = PeftModel.from_pretrained(base2, tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(_out(loaded, x), want)
    # another base model gives other templates: refused with one line
    from transformers import BertConfig, BertModel

    torch.manual_seed(5)
    other = BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, vocab_size=50)
    )
    with pytest.raises(WeightlabError, match="templates_sha256"):
        PeftModel.from_pretrained(other, tmp_path)


def test_plan_printout_and_clear_errors():
    base, _ = MODELS["timm_efficientnet"]()
    text = describe_plan(base)
    assert "timm:EfficientNet" in text and "blocks_5__g0__conv_pw" in text and "left as they are" in text
    # the stage is blocks.N, the layer the block number: every bank is within one stage
    cfg = RecastConfig()
    model = get_peft_model(base, cfg)
    for plan in model.peft_config["default"].bank_plan:
        stages = {".".join(m.split(".")[:2]) for m in plan["modules"]}
        assert len(stages) == 1 and len(plan["modules"]) >= 2

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 8)])

    with pytest.raises(WeightlabError, match="no RECAST architecture row"):
        get_peft_model(Plain(), RecastConfig())
    flat = get_peft_model(Plain(), RecastConfig(target_modules=["a", "b"]))  # no layer index: banked by shape
    assert [p.modules for p in flat.base_model.recast_plan] == [("a", "b")]
    with pytest.raises(WeightlabError, match="no template bank would be shared"):
        get_peft_model(Plain(), RecastConfig(target_modules=r"blocks\.\d+"))
    with pytest.raises(WeightlabError, match="no Linear / Conv2d module"):
        get_peft_model(Plain(), RecastConfig(target_modules=["zzz"]))
    with pytest.raises(WeightlabError, match="one adapter at a time"):
        m = get_peft_model(_tv_resnet(), RecastConfig())
        m.add_adapter("t2", RecastConfig())
        m.base_model.set_adapter(["default", "t2"])


def _sequences(rule, n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (n, 8), generator=g)
    return [{"input_ids": x, "labels": torch.tensor(int(rule(x)))} for x in ids]


def _accuracy(model, data):
    model.eval()
    with torch.no_grad():
        ids = torch.stack([d["input_ids"] for d in data])
        labels = torch.stack([d["labels"] for d in data])
        return (model(input_ids=ids).logits.argmax(-1) == labels).float().mean().item()


def test_transformers_trainer_learns_two_tasks_as_two_adapters_without_forgetting(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, vocab_size=50)
    base = BertForSequenceClassification(cfg)
    frozen = {n: p.detach().clone() for n, p in base.named_parameters() if "classifier" not in n}
    tasks = {"default": lambda x: x[0] < 25, "task2": lambda x: 12 <= x[0] < 37}
    model = get_peft_model(base, RecastConfig(task_type="SEQ_CLS"))
    before, after = {}, {}

    def train(name):
        data = _sequences(tasks[name])
        before[name] = _accuracy(model, data)
        args = TrainingArguments(
            output_dir=str(tmp_path / name),
            num_train_epochs=8,
            per_device_train_batch_size=32,
            learning_rate=3e-2,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            use_cpu=True,
            seed=0,
            disable_tqdm=True,
        )
        Trainer(model=model, args=args, train_dataset=data).train()
        after[name] = _accuracy(model, data)

    train("default")
    first = _accuracy(model, _sequences(tasks["default"], seed=1))
    model.add_adapter("task2", RecastConfig(task_type="SEQ_CLS"))
    model.set_adapter("task2")
    assert {n.split(".")[-1] for n, p in model.named_parameters() if p.requires_grad} == {"task2", "weight", "bias"}
    train("task2")
    model.set_adapter("default")
    assert _accuracy(model, _sequences(tasks["default"], seed=1)) == first  # zero forgetting
    for name in tasks:
        assert after[name] >= before[name] + 0.15, (name, before[name], after[name])
    # the base weights never moved: only coefficients and the per-adapter heads were trained
    for n, p in model.base_model.model.named_parameters():
        key = n.replace(".base_layer", "")
        if key in frozen:
            assert torch.equal(p, frozen[key]), n


def test_recast_plan_cli(tmp_path, capsys):
    from weightlab.cli import main

    assert main(["recast", "plan", "--model", "tv:resnet34", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "torchvision:ResNet" in out and "layer3__g0__conv1: role 'conv1', n=5" in out
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert len(plan["banks"]) == 8 and plan["banks"][0]["modules"] == ["layer1.1.conv1", "layer1.2.conv1"]
    assert main(["recast", "plan", "--model", "tv:resnet34", "--targets", "zzz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("weightlab: error: no Linear / Conv2d module")


def test_load_recast_rebuilds_a_hugging_face_model_from_its_saved_config(tmp_path):
    from weightlab import recast

    base, inputs = MODELS["hf_bert"]()
    cfg = recast.RecastConfig(target_modules=["encoder.layer.*.attention.self.query"], templates=None)
    rmodel = recast.apply_recast(base, cfg)
    recast.reconstruct(base, rmodel, method="closed_form", progress=False)
    recast.save_recast(rmodel, tmp_path)
    loaded = recast.load_recast(tmp_path).eval()
    x = inputs()
    with torch.no_grad():
        assert torch.equal(loaded(**x).last_hidden_state, rmodel.eval()(**x).last_hidden_state)

    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])

    own = recast.apply_recast(Mine(), recast.RecastConfig(target_modules=["blocks.*"], templates=None))
    recast.save_recast(own, tmp_path / "own")
    with pytest.raises(WeightlabError, match="pass it: load_recast"):
        recast.load_recast(tmp_path / "own")


def test_a_weightlab_recast_model_becomes_a_peft_model_with_its_templates(tmp_path):
    from weightlab import recast
    from weightlab.peft import from_recast_model

    base = _tv_resnet()
    cfg = recast.RecastConfig(
        target_modules=["layer*.*.conv1", "layer*.*.conv2"], templates=2, coef_sets=2, skip_first_per_stage=True
    )
    rmodel = recast.apply_recast(base, cfg, seed=0)
    mimic = recast.MimicryConfig(iterations=30, lr=0.05, lr_step=10, noise_std=0.0)
    recast.reconstruct(base, rmodel, method="recipe", config=mimic, progress=False)
    rmodel.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = rmodel(x)
    model = from_recast_model(rmodel).eval()
    with torch.no_grad():
        assert (model(x) - want).abs().max().item() <= 1e-4 * want.abs().max().item()
    model.add_adapter("task2", RecastConfig())  # a new adapter starts from the recipe's coefficients
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["init"] == "recipe"
    loaded = PeftModel.from_pretrained(recast.materialize(rmodel), tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    (tmp_path / TEMPLATES_FILE).unlink()  # the recipe's templates cannot be derived again: refused
    with pytest.raises(WeightlabError, match="fitted by 'recipe'"):
        PeftModel.from_pretrained(recast.materialize(rmodel), tmp_path)


def test_frozen_adapters_cache_their_weight_and_inference_mode_does_not_poison_training():
    base, inputs = MODELS["timm_vit"]()
    model = get_peft_model(base, RecastConfig())
    layer = next(m for m in model.modules() if isinstance(m, RecastPeftLayer))
    x = inputs()["x"]
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    _out(model, {"x": x})
    w = layer.generated_weight("default")
    assert w is layer.generated_weight("default")  # cached with autograd on: nothing needs a gradient
    with torch.inference_mode():
        _out(model, {"x": x})
    for p in layer.recast_coefficients.parameters():
        p.requires_grad_(True)
    model.train()
    _out(model, {"x": x}).sum().backward()  # no "inference tensors cannot be saved for backward"
    assert layer.recast_coefficients["default"].grad is not None


def test_roberta_and_deit_rows_and_delete_adapter():
    from transformers import DeiTConfig, DeiTModel, RobertaConfig, RobertaModel

    small = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64)
    for model, row in [
        (RobertaModel(RobertaConfig(vocab_size=50, **small)), "hf:roberta"),
        (DeiTModel(DeiTConfig(image_size=32, patch_size=8, **small)), "hf:deit"),
    ]:
        text = describe_plan(model)
        assert row in text and "10 banks, 20 modules" in text  # q, k, v, fc1/intermediate, fc2/output x 2 groups
    model = get_peft_model(_tv_resnet(), RecastConfig())
    model.add_adapter("t2", RecastConfig())
    model.delete_adapter("t2")
    assert not [n for n, _ in model.named_parameters() if ".t2" in n]
    with pytest.raises(WeightlabError, match="shares its template banks"):
        model.add_adapter("t3", RecastConfig(coef_sets=3))


def test_per_task_norms_through_modules_to_save(tmp_path):
    base, inputs = MODELS["hf_bert"]()
    model = get_peft_model(base, RecastConfig(modules_to_save=["LayerNorm"]))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("LayerNorm.modules_to_save.default" in n for n in names)
    assert all("recast_coefficients.default" in n or "modules_to_save.default" in n for n in names)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1)
    x = inputs()
    model.eval()
    with torch.no_grad():
        want = _out(model, x)
    model.save_pretrained(tmp_path)
    fresh, _ = MODELS["hf_bert"]()
    loaded = PeftModel.from_pretrained(fresh, tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(_out(loaded, x), want)


def test_the_recast_peft_type_is_a_member_in_every_way_peft_uses_one():
    """weightlab adds ``RECAST`` to ``peft.PeftType`` (PEFT has no public way; see
    :mod:`weightlab.peft.peft_type`). This fails loudly when a PEFT or Python change breaks the member."""
    import json

    from peft import PeftConfig
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils.peft_types import PeftType

    import weightlab.peft as wp
    from weightlab.peft.peft_type import recast_peft_type

    wp.register()
    member = recast_peft_type()
    assert recast_peft_type() is member and PeftType.RECAST is member  # idempotent, an attribute
    assert PeftType("RECAST") is member and PeftType["RECAST"] is member  # by value and by name
    assert member in list(PeftType) and member == "RECAST" and isinstance(member, str)
    assert json.dumps({"peft_type": member}) == '{"peft_type": "RECAST"}'
    assert hash(member) == hash("RECAST") and {member: 1}["RECAST"] == 1  # dict lookups by the string
    assert PEFT_TYPE_TO_CONFIG_MAPPING[member] is wp.RecastConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING[member] is wp.RecastModel
    assert PEFT_TYPE_TO_PREFIX_MAPPING[member] == "recast_"
    cfg = PeftConfig.from_peft_type(peft_type="RECAST", target_modules=["fc"])  # PEFT's own factory
    assert type(cfg) is wp.RecastConfig and cfg.peft_type is member


def test_the_peft_recipe_weighs_roles_as_the_native_path(monkeypatch):
    """Issue 37: init='recipe' fits with the recipe's per-role loss weights (the ViT's fc1 / fc2 at 2.0, as
    weightlab.recast.reconstruct), not every role at 1.0."""
    import weightlab.recast.mimicry as mimicry
    from weightlab.recast.problem import role_weight

    seen = {}
    real = mimicry.run_recipe

    def spy(problems, config, seed=0, progress=True):
        seen.update({p.role: p.loss_weight for p in problems})
        return real(problems, config, seed=seed, progress=progress)

    monkeypatch.setattr(mimicry, "run_recipe", spy)
    base, _ = MODELS["timm_vit"]()
    get_peft_model(base, RecastConfig(init="recipe", recipe=dict(iterations=2)))
    mlp = {r for r in seen if r.endswith(("fc1", "fc2"))}
    assert mlp and len(seen) > len(mlp) and {r for r, w in seen.items() if w == 2.0} == mlp
    assert all(w == role_weight(r, mimicry.MimicryConfig().role_weights) for r, w in seen.items())


@pytest.mark.parametrize("damage", ["int", "shape"])
def test_a_templates_file_of_the_wrong_dtype_or_shape_is_refused_when_loaded(tmp_path, damage):
    """Issue 37: checked on loading, not at the first forward."""
    from weightlab.io import load_weights, save_tensors

    base, _ = MODELS["timm_vit"]()
    get_peft_model(base, RecastConfig()).save_pretrained(tmp_path)
    tensors = load_weights(tmp_path / TEMPLATES_FILE)
    key = next(k for k in tensors if k.startswith("templates."))
    t = tensors[key]
    tensors[key] = t.long() if damage == "int" else t[:, :-1]
    save_tensors(tmp_path / TEMPLATES_FILE, tensors)
    base2, _ = MODELS["timm_vit"]()
    with pytest.raises(WeightlabError, match="the plan needs floating-point"):
        PeftModel.from_pretrained(base2, tmp_path)


# -- PEFT's generic behaviours (issue 39): what every built-in PEFT method does, on small stacked models ---------
class _MLP(nn.Module):
    """Same-shaped stacked layers: ``layers.0`` / ``layers.1`` Linear 20 -> 20 (PEFT's generic test model)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList([nn.Linear(20, 20) for _ in range(2)])
        self.out = nn.Linear(20, 2)

    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.out(x)


class _FlatCNN(nn.Module):
    """Layers named without an index: ``conv_a`` / ``conv_b`` Conv2d 5 -> 5, ``lin0`` / ``lin1`` Linear."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv_a, self.conv_b = nn.Conv2d(5, 5, 3, padding=1), nn.Conv2d(5, 5, 3, padding=1)
        self.lin0, self.lin1 = nn.Linear(5, 5), nn.Linear(5, 5)

    def forward(self, x):
        x = torch.relu(self.conv_b(torch.relu(self.conv_a(x)))).mean((2, 3))
        return self.lin1(torch.relu(self.lin0(x)))


_X = torch.randn(4, 20, generator=torch.Generator().manual_seed(3))
_TARGETS = ["layers.0", "layers.1"]


def _nudge(model, by=0.1):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "recast_coefficients" in n:
                p.add_(by)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_base_with_peft_defaults(dtype):
    base = _MLP()
    ref = base(_X)
    model = get_peft_model(_MLP().to(dtype), RecastConfig(target_modules=_TARGETS))  # autocast_adapter_dtype=True
    coef = next(p for n, p in model.named_parameters() if "recast_coefficients" in n)
    assert coef.dtype == torch.float32  # PEFT keeps the adapter in float32; the templates stay half
    out = model(_X.to(dtype))
    assert out.dtype == dtype and torch.allclose(out.float(), ref, atol=5e-2)  # the closed form: the base's function
    out.float().sum().backward()
    assert coef.grad is not None and coef.grad.abs().sum() > 0


def test_low_cpu_mem_usage_loading(tmp_path):
    model = get_peft_model(_MLP(), RecastConfig(target_modules=_TARGETS))
    _nudge(model)
    model.add_adapter("b", RecastConfig(target_modules=_TARGETS))
    ref = model(_X)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_MLP(), tmp_path, low_cpu_mem_usage=True)
    assert torch.equal(loaded(_X), ref)
    loaded.load_adapter(tmp_path / "b", adapter_name="b", low_cpu_mem_usage=True)
    assert not any(p.device.type == "meta" for p in loaded.parameters())
    loaded.set_adapter("b")
    assert torch.allclose(loaded(_X), _MLP()(_X), atol=1e-5)  # b was saved untouched: the base's function


def test_second_adapter_goes_on_its_own_targets_or_is_refused(tmp_path):
    model = get_peft_model(_MLP(), RecastConfig(target_modules=_TARGETS))
    model.add_adapter("b", RecastConfig(target_modules=["layers.0"]))
    on = sorted(n for n, _ in model.named_parameters() if n.endswith("recast_coefficients.b"))
    assert on == ["base_model.model.layers.0.recast_coefficients.b"]
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "b" / "adapter_config.json").read_text())
    assert saved["target_modules"] == ["layers.0"]
    with pytest.raises(WeightlabError, match="template banks made for its first adapter"):
        model.add_adapter("other", RecastConfig(target_modules=["out"]))  # no bank holds it
    assert "other" not in model.peft_config


def test_layers_expose_their_shape_like_peft_layers():
    model = get_peft_model(_FlatCNN(), RecastConfig(target_modules=["conv_a", "conv_b", "lin0", "lin1"]))
    inner = model.base_model.model
    assert (inner.lin0.in_features, inner.lin0.out_features) == (5, 5)
    assert (inner.conv_a.in_channels, inner.conv_a.out_channels, inner.conv_a.kernel_size) == (5, 5, (3, 3))


def test_flat_named_layers_are_banked_by_shape_in_order():
    x = torch.randn(2, 5, 6, 6, generator=torch.Generator().manual_seed(0))
    ref = _FlatCNN()(x)
    model = get_peft_model(_FlatCNN(), RecastConfig(target_modules=["conv_a", "conv_b", "lin0", "lin1"]))
    assert sorted(p.modules for p in model.base_model.recast_plan) == [("conv_a", "conv_b"), ("lin0", "lin1")]
    assert torch.allclose(model(x), ref, atol=1e-5)
    with pytest.raises(WeightlabError, match="while other targets have one"):  # some indexed, some not: ambiguous
        get_peft_model(_MLP(), RecastConfig(target_modules=["layers.0", "layers.1", "out"]))
    with pytest.raises(WeightlabError, match="no template bank would be shared"):  # one layer per group
        get_peft_model(_FlatCNN(), RecastConfig(target_modules=["lin0", "lin1"], layers_per_group=1))


def test_add_weighted_adapter_mixes_coefficients_linearly():
    model = get_peft_model(_MLP(), RecastConfig(target_modules=_TARGETS))
    _nudge(model, 0.2)
    model.add_adapter("b", RecastConfig(target_modules=_TARGETS))  # the base's coefficients
    model.add_weighted_adapter(["default", "b"], [0.5, 0.5], "mixed")
    coef = {n.rsplit(".", 1)[-1]: p for n, p in model.named_parameters() if ".layers.0.recast_coefficients." in n}
    assert torch.allclose(coef["mixed"], 0.5 * coef["default"] + 0.5 * coef["b"])
    model.set_adapter("mixed")
    assert model(_X).shape == (4, 2)
    with pytest.raises(WeightlabError, match="linearly"):
        model.add_weighted_adapter(["default", "b"], [0.5, 0.5], "svd", combination_type="svd")


_FSDP_SCRIPT = r"""
import os, sys, torch
import torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
sys.path.insert(0, sys.argv[1])
from test_peft_recast import _MLP, _X, _TARGETS, _nudge
from peft import get_peft_model
from weightlab.peft import RecastConfig
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2])
dist.init_process_group("gloo", rank=0, world_size=1)
model = get_peft_model(_MLP(), RecastConfig(target_modules=_TARGETS))
_nudge(model, 0.3)
ref, base = model(_X).detach(), _MLP()(_X).detach()
wrapped = FSDP(model, use_orig_params=True, device_id=torch.device("cpu"))
out = wrapped(_X)
out.sum().backward()
grads = [float(p.grad.abs().sum()) for n, p in wrapped.named_parameters() if "recast_coefficients" in n]
print("RESULT", float((out - ref).abs().max()), float((out - base).abs().max()), min(grads), flush=True)
dist.destroy_process_group()
os._exit(0)
"""


def test_fsdp_runs_the_adapter_and_trains_its_coefficients(tmp_path):
    import socket
    import subprocess
    import sys

    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "fsdp_check.py"
    script.write_text(_FSDP_SCRIPT)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        [sys.executable, str(script), os.path.dirname(__file__), str(port)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line is not None, done.stderr[-2000:]
    to_adapter, to_base, grad = map(float, line.split()[1:])
    assert to_adapter < 1e-6  # FSDP runs the adapter's weights ...
    assert to_base > 1e-3  # ... not the base model's ...
    assert grad > 0  # ... and the coefficients learn
