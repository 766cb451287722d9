"""weightlab's own RECAST pipeline on models outside the zoo (random-init timm EfficientNet / MobileNetV3,
Hugging Face BERT and ViT): the planner finds the layer index, shares banks across consecutive blocks
of a stage (one role each) or says clearly why not; the layer and helper defects of issue 21."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch import nn

from weightlab.errors import WeightlabError
from weightlab.models import create_model
from weightlab.recast import apply_recast, mark_only_coefficients_trainable
from weightlab.recast.architectures import config_for_model
from weightlab.recast.config import RecastConfig, preset
from weightlab.recast.metrics import feature_cosine, output_fidelity
from weightlab.recast.mimicry import reconstruct
from weightlab.recast.planner import plan_banks
from weightlab.recast.problem import role_weight
from weightlab.recast.serialization import load_recast, save_recast


def _bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, vocab_size=50)
    return BertModel(cfg).eval()


def _vit():
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    return ViTModel(cfg).eval()


def _stage_and_block(name: str) -> tuple[str, int]:
    m = re.match(r"blocks\.(\d+)\.(\d+)\.", name)
    return m.group(1), int(m.group(2))


@pytest.mark.parametrize("name", ["timm:efficientnet_lite0", "timm:mobilenetv3_small_100"])
def test_timm_efficientnet_and_mobilenet_share_banks_within_a_stage(name):
    model = create_model(name, pretrained=False)
    assert model.weightlab_cfg.family == "generic"  # not a ViT because it keeps its blocks in .blocks
    config, source = config_for_model(model)
    assert source.startswith("architecture row 'timm:")
    plans = plan_banks(model, config)
    shared = [p for p in plans if len(p.modules) > 1]
    assert shared, "no bank is shared"
    for p in plans:
        stages = {_stage_and_block(m)[0] for m in p.modules}
        blocks = [_stage_and_block(m)[1] for m in p.modules]
        assert len(stages) == 1 and blocks == list(range(blocks[0], blocks[0] + len(blocks)))  # consecutive
        assert {m.rsplit(".", 1)[-1] for m in p.modules} == {p.role}  # one role each
        assert 0 not in blocks  # a stage's first block changes the width: left as it is


def test_layer_index_is_inferred_when_names_hold_several_numbers():
    model = create_model("timm:efficientnet_lite0", pretrained=False)
    # the case: blocks.5.* without layers_pattern made 11 one-layer banks ("layer" = the stage)
    plans = plan_banks(model, RecastConfig(target_modules=["blocks.5.*"], templates=None, skip_first_per_stage=True))
    assert [(p.stage, p.role, len(p.modules)) for p in plans] == [
        ("blocks.5", "conv_pw", 3),
        ("blocks.5", "conv_dw", 3),
        ("blocks.5", "conv_pwl", 3),
    ]
    with pytest.raises(WeightlabError, match="different weight shapes.*skip_first_per_stage=True"):
        plan_banks(model, RecastConfig(target_modules=["blocks.5.*"], templates=None))
    # a SentenceTransformer-like wrapper: 0.model.encoder.layer.<i>...; the first number is the wrapper's
    wrapped = nn.Sequential(nn.ModuleDict({"model": _bert()}))
    plans = plan_banks(wrapped, RecastConfig(target_modules=["*.query", "*.value"], templates=None, layers_per_group=2))
    assert [(p.stage, p.group, p.role, len(p.modules)) for p in plans][:2] == [
        ("0.model.encoder.layer", 0, "attention.self.query", 2),
        ("0.model.encoder.layer", 0, "attention.self.value", 2),
    ]


def test_hf_bert_and_vit_v5_names_give_one_role_per_bank_in_pairs_of_layers():
    for model, roles in (
        (
            _bert(),
            {
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "intermediate.dense",
                "output.dense",
            },
        ),
        (_vit(), None),
    ):
        config, source = config_for_model(model)
        plans = plan_banks(model, config)
        assert all(len(p.modules) == 2 for p in plans) and len({p.role for p in plans}) == len(plans) // 2
        if roles is not None:
            assert {p.role for p in plans} == roles  # attention.output.dense is not output.dense


def test_a_plan_with_no_shared_bank_warns_and_says_how_the_names_were_read():
    import torchvision

    model = torchvision.models.resnet18(num_classes=5)  # two blocks per stage, the first left: one each
    with pytest.warns(UserWarning, match=r"no template bank is shared.*'layer2.1.conv1' -> stage 'layer2', layer 1"):
        plan_banks(model, RecastConfig(target_modules=["layer2.*.conv1"], templates=None, skip_first_per_stage=True))


def test_conv_subclasses_with_their_own_forward_keep_it_on_both_paths():
    """Issue 37, one rule: timm's Conv2dSame (pads, then convolves) is templated on the native path and the
    PEFT path alike, and runs its own forward with the generated weight: the closed form reproduces the
    model's outputs on both, and materialising gives back a Conv2dSame."""
    import copy

    from peft import get_peft_model
    from timm.layers import Conv2dSame

    from weightlab.peft import RecastConfig as PeftRecastConfig
    from weightlab.recast import materialize

    torch.manual_seed(0)

    class Net(nn.Module):  # 4 blocks of a 'same'-padding conv with a stride (its forward pads first)
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(*[nn.Sequential(Conv2dSame(8, 8, 3, stride=2)) for _ in range(4)])
            self.stem = nn.Conv2d(3, 8, 1)

        def forward(self, x):
            return self.blocks(self.stem(x)).flatten(1)

    model = Net().eval()
    config = RecastConfig(target_modules=["blocks.*.0"], templates=None, layers_per_group=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing is skipped any more
        plans = plan_banks(model, config)
    assert [len(p.modules) for p in plans] == [4]
    x = torch.randn(2, 3, 33, 33)  # an odd size: 'same' padding is asymmetric, unlike Conv2d's padding
    with torch.no_grad():
        want = model(x)
    native = apply_recast(copy.deepcopy(model), config, seed=0)
    reconstruct(model, native, "closed_form", progress=False)
    native.eval()
    peft_model = get_peft_model(copy.deepcopy(model), PeftRecastConfig(target_modules=r"blocks\.\d+\.0")).eval()
    with torch.no_grad():
        got_native, got_peft = native(x), peft_model(x)
    scale = want.abs().max().item()
    assert (got_native - want).abs().max().item() <= 1e-4 * scale
    assert (got_peft - want).abs().max().item() <= 1e-4 * scale
    plain = materialize(native).eval()
    assert type(plain.blocks[0][0]) is Conv2dSame
    with torch.no_grad():
        assert (plain(x) - want).abs().max().item() <= 1e-4 * scale
    assert not any("_shell" in k for k in native.state_dict())

    class Scaled(nn.Linear):  # a subclass that keeps Linear's forward is a plain linear: templated
        pass

    seq = nn.Sequential(*[nn.Sequential(Scaled(4, 4)) for _ in range(2)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [len(p.modules) for p in plan_banks(seq, RecastConfig(target_modules=["*.0"], templates=None))] == [2]


def test_recipe_role_weights_map_across_naming_schemes():
    w = {"fc1": 2.0, "fc2": 2.0}
    assert [role_weight(r, w) for r in ("mlp.fc1", "intermediate.dense", "output.dense", "mlp.fc2")] == [2.0] * 4
    assert role_weight("attention.output.dense", w) == 1.0 and role_weight("attention.self.query", w) == 1.0


def _recast_resnet20(templates=None):
    plain = create_model("resnet20", pretrained=False).eval()
    rm = apply_recast(plain, preset("cifar-resnet", templates=templates), seed=0)
    reconstruct(plain, rm, "closed_form", progress=False)
    return plain, rm


def test_inference_mode_then_training_and_frozen_weights_cached_with_autograd_on():
    _, rm = _recast_resnet20()
    mark_only_coefficients_trainable(rm, rm.linear)
    for p in rm.parameters():
        p.requires_grad_(False)
    rm.conv1.weight.requires_grad_(True)  # a trainable module before the frozen RECAST layers
    x = torch.randn(2, 3, 32, 32)
    layer = rm.layer1[1].conv1
    rm.eval()
    assert layer.weight is layer.weight  # frozen: computed once, autograd on
    with torch.inference_mode():
        rm(x)
    rm(x).sum().backward()  # no "Inference tensors cannot be saved for backward"
    assert rm.conv1.weight.grad is not None


def test_norm_policy_of_the_coefficient_only_mode_and_an_outside_head():
    _, rm = _recast_resnet20()
    head = nn.Linear(64, 3)
    trainable = mark_only_coefficients_trainable(rm, head)
    assert {id(p) for p in head.parameters()} <= {id(p) for p in trainable}  # the head outside the model
    stats = {k: v.clone() for k, v in rm.state_dict().items() if "running" in k}
    rm.train()
    rm(torch.randn(4, 3, 32, 32))
    assert all(torch.equal(v, rm.state_dict()[k]) for k, v in stats.items())  # frozen: BN does not move
    trainable = mark_only_coefficients_trainable(rm, norm="task")
    assert any(p is rm.bn1.weight for p in trainable)
    rm.train()
    rm(torch.randn(4, 3, 32, 32))
    assert not torch.equal(stats["bn1.running_mean"], rm.bn1.running_mean)  # per task: it moves
    with pytest.raises(WeightlabError, match="unknown norm policy"):
        mark_only_coefficients_trainable(rm, norm="moving")


def test_feature_cosine_on_a_hugging_face_model_and_load_recast_leaves_the_given_model(tmp_path):
    bert = _bert()
    config, _ = config_for_model(bert)
    rm = apply_recast(bert, config.replace(templates=None), seed=0)
    reconstruct(bert, rm, "closed_form", progress=False)
    rows = feature_cosine(bert, rm, torch.randint(0, 50, (2, 7)))
    assert rows[-1]["module"] == "logits" and rows[-1]["feature_cosine"] > 0.99999
    save_recast(rm, tmp_path / "m")
    plain = _bert()
    loaded = load_recast(tmp_path / "m", model=plain)
    assert type(plain.encoder.layer[0].attention.self.query) is nn.Linear  # the given model is not rewritten
    x = torch.randint(0, 50, (2, 7))
    assert torch.allclose(loaded(x).last_hidden_state, rm(x).last_hidden_state)


def test_output_fidelity_comes_first_and_warns_when_compression_collapses_the_outputs():
    from weightlab.data import load_dataset
    from weightlab.recast.report import build_report, summary_rows

    digits = load_dataset("digits", "test").head(64)
    plain = create_model("resnet20", pretrained=False, num_classes=10).eval()
    exact = apply_recast(plain, preset("cifar-resnet"), seed=0)  # n = layers: exact
    one = apply_recast(plain, preset("cifar-resnet", templates=1), seed=0)  # n = 1 per bank: compression
    reports = []
    for rm in (exact, one):
        res = reconstruct(plain, rm, "closed_form", progress=False)
        reports.append(build_report(plain, rm, res, model_name="resnet20", test_data=digits))
    assert reports[0]["output_fidelity"]["output_cosine"] > 0.9999 and reports[0]["warnings"] == []
    fid = reports[1]["output_fidelity"]
    assert fid["output_cosine"] < 0.99 and "do not follow the original's" in reports[1]["warnings"][0]
    assert summary_rows(reports[1])[2][0].startswith("output fidelity")
    assert output_fidelity(plain, exact, [torch.randn(2, 3, 32, 32)])["top1_agreement"] == 100.0


def test_a_base_that_cannot_reproduce_the_weights_says_so_on_both_paths():
    """Issue 37: one template per bank cannot reproduce a model: building the base reports its weight
    fidelity and warns; an exact base (n = layers per bank) is silent."""
    from peft import get_peft_model

    from weightlab.peft import RecastConfig as PeftRecastConfig

    plain = create_model("resnet20", pretrained=False).eval()
    rm = apply_recast(plain, preset("cifar-resnet", templates=1), seed=0)
    with pytest.warns(UserWarning, match="does not reproduce the pretrained weights"):
        res = reconstruct(plain, rm, "closed_form", progress=False)
    assert res.fidelity["relative_error"] > 0.05 and res.fidelity["worst_bank"] in res.fidelity["per_bank"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        res = reconstruct(plain, apply_recast(plain, preset("cifar-resnet"), seed=0), "closed_form", progress=False)
    assert res.fidelity["relative_error"] < 1e-5
    base = create_model("timm:vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2)
    with pytest.warns(UserWarning, match="does not reproduce the pretrained weights"):
        get_peft_model(base, PeftRecastConfig(templates=1))


def test_a_bank_never_spans_a_change_of_stride_on_a_flat_block_list():
    """Issue 37: blocks 0-3 of a flat list, block 2 downsampling with the same weight shape: the banks are
    runs of one stride, named __run<j> (not read as stage numbers)."""
    blocks = nn.Sequential(*[nn.Sequential(nn.Conv2d(8, 8, 3, stride=s, padding=1)) for s in (1, 1, 2, 1, 1)])
    model = nn.Sequential(blocks)
    plans = plan_banks(model, RecastConfig(target_modules=["0.*.0"], templates=None))
    assert [list(p.modules) for p in plans] == [["0.0.0", "0.1.0"], ["0.2.0"], ["0.3.0", "0.4.0"]]
    assert [p.name.rsplit("__", 1)[-1] for p in plans] == ["run0", "run1", "run2"]
