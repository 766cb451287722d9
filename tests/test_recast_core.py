import math

import pytest
import timm
import torch
from torch import nn

from weightlab.errors import WeightlabError
from weightlab.models import create_model
from weightlab.recast import (
    RecastConfig,
    RecastConv2d,
    RecastLinear,
    apply_recast,
    count_parameters,
    mark_only_coefficients_trainable,
    materialize,
    preset,
    reconstruct,
)
from weightlab.recast.closed_form import closed_form
from weightlab.recast.problem import build_problems, target_weights


def tiny_vit():
    return timm.create_model(
        "vit_small_patch16_224",
        pretrained=False,
        depth=4,
        img_size=32,
        patch_size=8,
        embed_dim=48,
        num_heads=3,
        num_classes=5,
    )


def _exact(model, cfg, x):
    model.eval()
    rm = apply_recast(model, cfg, seed=0)
    reconstruct(model, rm, "closed_form", progress=False)
    rm.eval()
    with torch.no_grad():
        return model(x), rm(x), rm


@pytest.mark.parametrize("case", ["vit", "cifar_resnet", "convmixer", "tv_resnet"])
def test_wrapped_model_set_to_original_weights_gives_same_outputs(case):
    if case == "vit":
        model, cfg, x = tiny_vit(), preset("vit-att-mlp"), torch.randn(2, 3, 32, 32)
    elif case == "cifar_resnet":
        model, cfg, x = create_model("resnet20"), preset("cifar-resnet"), torch.randn(2, 3, 32, 32)
    elif case == "convmixer":
        model, cfg, x = create_model("convmixer64_d4_k5_p4"), preset("convmixer"), torch.randn(2, 3, 32, 32)
    else:
        model, cfg, x = create_model("tv:resnet18", num_classes=7), preset("resnet"), torch.randn(1, 3, 64, 64)
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
    out, rout, rm = _exact(model, cfg, x)
    assert any(isinstance(m, (RecastLinear, RecastConv2d)) for m in rm.modules())
    torch.testing.assert_close(rout, out, rtol=1e-4, atol=1e-5)
    plain = materialize(rm)
    assert not any(isinstance(m, (RecastLinear, RecastConv2d)) for m in plain.modules())
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x), rout, rtol=0, atol=0)


def test_vit_banks_follow_the_authors_layout():
    rm = apply_recast(timm.create_model("vit_small_patch16_224", pretrained=False), preset("vit-att-mlp"))
    plans = rm.recast_plan
    assert len(plans) == 18  # 6 groups x (qkv, fc1, fc2)
    shapes = {p.role: p.shape for p in plans}
    assert shapes == {"attn.qkv": (1152, 384), "mlp.fc1": (1536, 384), "mlp.fc2": (384, 1536)}
    assert plans[0].modules == ("blocks.0.attn.qkv", "blocks.1.attn.qkv")
    c = count_parameters(rm)
    assert c.coefficients == 144  # Att+MLP: 12 x 3 x 2 x 2, as in the reference notes
    assert c.templates == c.replaced  # n = layers per group: no compression
    assert c.saving == -144
    assert (
        count_parameters(apply_recast(timm.create_model("vit_small_patch16_224"), preset("vit-att"))).coefficients == 48
    )


def test_resnet34_banks_and_coefficients():
    rm = apply_recast(create_model("tv:resnet34"), preset("resnet"))
    ns = [p.n for p in rm.recast_plan]
    assert ns == [2, 2, 3, 3, 5, 5, 2, 2]  # n = blocks - 1 per stage, conv1 and conv2 banks
    assert count_parameters(rm).coefficients == 168


@pytest.mark.parametrize(
    "kw,groups",
    [
        (dict(num_groups=3), [4, 4, 4]),
        (dict(sharing="balanced"), [4, 4, 4]),
        (dict(sharing="extreme"), [12]),
        (dict(layers_per_group=5), [5, 5, 2]),
    ],
)
def test_grouping_schemes(kw, groups):
    cfg = RecastConfig(target_modules=["blocks.*.mlp.fc1"], templates=2, **kw)
    rm = apply_recast(timm.create_model("vit_small_patch16_224", depth=12), cfg)
    assert [len(p.modules) for p in rm.recast_plan] == groups


def test_closed_form_exact_when_n_at_least_layers_and_optimal_below():
    torch.manual_seed(1)
    model = create_model("resnet32")  # 4 templated layers per stage and role
    for n, exact in ((None, True), (6, True), (2, False)):
        rm = apply_recast(model, preset("cifar-resnet", templates=n if n else "auto"))
        problems = build_problems(rm, target_weights(model, rm))
        closed_form(problems)
        for p in problems:
            A = p.coefficients.double().mean(1)
            err = (A @ p.templates.double() - p.targets.double()).norm()
            if exact:
                assert float(err / p.targets.norm()) < 1e-6
            else:  # Eckart-Young: the error is the energy of the discarded singular values
                s = torch.linalg.svdvals(p.targets.double())
                assert math.isclose(float(err), float(s[p.shape[2] :].norm()), rel_tol=1e-5)


def test_generated_weight_is_cached_in_inference_and_invalidated_on_change():
    rm = apply_recast(create_model("resnet20"), preset("cifar-resnet")).eval()
    layer = rm.layer1[1].conv1
    with torch.no_grad():
        w1 = layer.weight
        assert layer.weight is w1
        layer.coefficients.add_(0.5)
        w2 = layer.weight
    assert w2 is not w1 and not torch.equal(w1, w2)
    assert layer.weight.requires_grad  # with grad enabled: recomputed, differentiable


def test_only_coefficients_and_head_train():
    rm = apply_recast(create_model("resnet20"), preset("cifar-resnet"))
    trainable = mark_only_coefficients_trainable(rm, rm.linear)
    names = {n for n, p in rm.named_parameters() if p.requires_grad}
    assert names and all(n.endswith("coefficients") or n.startswith("linear.") for n in names)
    assert len(trainable) == len(names)
    rm(torch.randn(4, 3, 32, 32)).sum().backward()
    for n, p in rm.named_parameters():
        assert (p.grad is not None) == (n in names), n
    assert all(p.grad.abs().sum() > 0 for n, p in rm.named_parameters() if n.endswith("coefficients"))


def test_error_no_module_matches():
    with pytest.raises(WeightlabError, match="no linear/conv2d module matches"):
        apply_recast(create_model("resnet20"), RecastConfig(target_modules=["blocks.*.qkv"]))


def test_error_shapes_differ_in_a_group_names_modules():
    cfg = RecastConfig(target_modules=["layer2.*.conv1"], templates=2)  # layer2.0.conv1 is 16->32
    with pytest.raises(WeightlabError, match=r"different weight shapes: layer2\.0\.conv1 \[32, 16, 3, 3\]"):
        apply_recast(create_model("resnet20"), cfg)


def test_error_everything_skipped_and_bad_config():
    with pytest.raises(WeightlabError, match="was skipped"):
        apply_recast(create_model("resnet8"), preset("cifar-resnet"))
    with pytest.raises(WeightlabError, match="only one of"):
        RecastConfig(target_modules=["x"], num_groups=2, sharing="low")
    with pytest.raises(WeightlabError, match="unknown RECAST preset"):
        preset("nope")
