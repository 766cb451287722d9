"""Issue 21's items on models outside the zoo, before and after: each item run against a weightlab source
tree in a fresh process (random-init timm EfficientNet-Lite0 / TF-EfficientNet-Lite0 / MobileNetV3, Hugging
Face BERT), recording what happened.

    python benchmarks/recast_real_models_audit.py --before a530d36
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from _common import before_after

ROOT = Path(__file__).resolve().parents[1]
ITEMS = {}


def item(fn):
    ITEMS[fn.__name__] = fn
    return fn


def _bert():
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, vocab_size=50)
    return BertModel(cfg).eval()


@item
def efficientnet_blocks5_plan() -> dict:
    """Target blocks.5.* of timm EfficientNet-Lite0 (random init) with no layers_pattern."""
    from weightlab.models import create_model
    from weightlab.recast import apply_recast, count_parameters
    from weightlab.recast.config import RecastConfig

    model = create_model("timm:efficientnet_lite0", pretrained=False)
    out = {}
    for skip in (False, True):
        try:
            rm = apply_recast(
                model, RecastConfig(target_modules=["blocks.5.*"], templates=2, skip_first_per_stage=skip)
            )
            sizes = [len(p.modules) for p in rm.recast_plan]
            res = dict(banks=len(sizes), largest_bank=max(sizes), saving_S=count_parameters(rm).saving)
        except Exception as e:  # noqa: BLE001 -- what the version under test does is the finding
            res = dict(error=str(e)[:200])
        out["skip_first_per_stage" if skip else "as_given"] = res
    return out


@item
def family_of_efficientnet_and_mobilenetv3() -> dict:
    from weightlab.models import create_model

    return {
        n: create_model(f"timm:{n}", pretrained=False).weightlab_cfg.family
        for n in ("efficientnet_lite0", "mobilenetv3_small_100")
    }


@item
def cli_mimic_on_efficientnet() -> dict:
    """`weightlab recast mimic --model timm:efficientnet_lite0 --no-pretrained --method closed_form`."""
    import contextlib
    import io

    from weightlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["recast", "mimic", "--model", "timm:efficientnet_lite0", "--no-pretrained", "--method",
                     "closed_form", "--no-progress"])  # fmt: skip
    first = (out.getvalue().strip().splitlines() or [""])[0]
    return dict(exit=code, first_line=first[:200], error=err.getvalue().strip()[-300:])


@item
def conv2dsame_matches() -> dict:
    """tf_efficientnet_lite0's strided depthwise convs are timm Conv2dSame (pads, then convolves)."""
    from weightlab.models import create_model
    from weightlab.recast.config import RecastConfig
    from weightlab.recast.planner import plan_banks

    model = create_model("timm:tf_efficientnet_lite0", pretrained=False)
    same = [n for n, m in model.named_modules() if type(m).__name__ == "Conv2dSame"]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        cfg = RecastConfig(
            target_modules=["blocks.*.*.conv_dw"], templates=None, skip_first_per_stage=True, split_by_shape=True
        )
        plans = plan_banks(model, cfg)
    planned = {m for p in plans for m in p.modules}
    return dict(
        conv2dsame_modules=len(same),
        conv2dsame_planned=len(set(same) & planned),
        warnings=[str(x.message)[:160] for x in w if "Conv2dSame" in str(x.message)],
    )


@item
def recipe_role_weights_on_bert_names() -> dict:
    from weightlab.recast.mimicry import MimicryConfig
    from weightlab.recast.problem import role_weight

    w = MimicryConfig().role_weights
    return {r: role_weight(r, w) for r in ("mlp.fc1", "intermediate.dense", "output.dense", "attention.output.dense")}


def _recast_resnet20():
    import torch

    from weightlab.models import create_model
    from weightlab.recast import apply_recast
    from weightlab.recast.config import preset
    from weightlab.recast.mimicry import reconstruct

    torch.manual_seed(0)
    plain = create_model("resnet20", pretrained=False).eval()
    rm = apply_recast(plain, preset("cifar-resnet"), seed=0)
    reconstruct(plain, rm, "closed_form", progress=False)
    return plain, rm


@item
def inference_mode_then_backward() -> dict:
    import torch

    _, rm = _recast_resnet20()
    for p in rm.parameters():
        p.requires_grad_(False)
    rm.conv1.weight.requires_grad_(True)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        rm(x)
    try:
        rm(x).sum().backward()
        return dict(backward="ok")
    except RuntimeError as e:
        return dict(backward=str(e).splitlines()[0][:160])


@item
def frozen_weight_cached_in_eval_with_autograd_on() -> dict:
    _, rm = _recast_resnet20()
    for p in rm.parameters():
        p.requires_grad_(False)
    rm.eval()
    layer = rm.layer1[1].conv1
    return dict(same_tensor_twice=layer.weight is layer.weight)


@item
def batchnorm_under_coefficient_only_training() -> dict:
    import torch

    from weightlab.recast import mark_only_coefficients_trainable

    _, rm = _recast_resnet20()
    mark_only_coefficients_trainable(rm, rm.linear)
    before = {k: v.clone() for k, v in rm.state_dict().items() if "running" in k}
    rm.train()
    rm(torch.randn(8, 3, 32, 32))
    return dict(bn_buffers_changed=sum(not torch.equal(v, rm.state_dict()[k]) for k, v in before.items()))


@item
def head_outside_the_model_returned() -> dict:
    from torch import nn

    from weightlab.recast import mark_only_coefficients_trainable

    _, rm = _recast_resnet20()
    head = nn.Linear(64, 3)
    trainable = mark_only_coefficients_trainable(rm, head)
    return dict(head_in_trainable={id(p) for p in head.parameters()} <= {id(p) for p in trainable})


@item
def feature_cosine_on_hf_bert() -> dict:
    import torch

    from weightlab.recast import apply_recast
    from weightlab.recast.config import RecastConfig
    from weightlab.recast.metrics import feature_cosine
    from weightlab.recast.mimicry import reconstruct

    bert = _bert()
    cfg = RecastConfig(target_modules=["encoder.layer.*.attention.self.query"], templates=None, layers_per_group=2)
    rm = apply_recast(bert, cfg, seed=0)
    reconstruct(bert, rm, "closed_form", progress=False)
    try:
        rows = feature_cosine(bert, rm, torch.randint(0, 50, (2, 7)))
        return dict(result="ok", output_cosine=round(rows[-1]["feature_cosine"], 6))
    except Exception as e:  # noqa: BLE001 -- what the version under test does is the finding
        return dict(result=f"{type(e).__name__}: {e}"[:160])


@item
def load_recast_rewrites_the_given_model() -> dict:
    from torch import nn

    from weightlab.recast import apply_recast
    from weightlab.recast.config import RecastConfig
    from weightlab.recast.serialization import load_recast, save_recast

    bert = _bert()
    cfg = RecastConfig(target_modules=["encoder.layer.*.attention.self.query"], templates=None, layers_per_group=2)
    with tempfile.TemporaryDirectory() as d:
        save_recast(apply_recast(bert, cfg, seed=0), Path(d) / "m")
        plain = _bert()
        load_recast(Path(d) / "m", model=plain)
    return dict(given_model_still_plain=type(plain.encoder.layer[0].attention.self.query) is nn.Linear)


@item
def compression_report_on_real_inputs() -> dict:
    """n = 1 template per bank of CIFAR ResNet-20 (random init) on 64 real digits images."""
    import torch

    from weightlab.data import load_dataset
    from weightlab.models import create_model
    from weightlab.recast import apply_recast
    from weightlab.recast.config import preset
    from weightlab.recast.mimicry import reconstruct
    from weightlab.recast.report import build_report

    digits = load_dataset("digits", "test").head(64)
    torch.manual_seed(0)
    plain = create_model("resnet20", pretrained=False, num_classes=10).eval()
    rm = apply_recast(plain, preset("cifar-resnet", templates=1), seed=0)
    res = reconstruct(plain, rm, "closed_form", progress=False)
    r = build_report(plain, rm, res, model_name="resnet20", test_data=digits)
    return dict(
        weight_cosine_mean=round(r["weight_cosine_mean"], 4),
        output_fidelity=r.get("output_fidelity"),
        warnings=r.get("warnings"),
    )


def run_item(name: str) -> dict:
    import torch

    torch.set_num_threads(1)
    try:
        return ITEMS[name]()
    except Exception as e:  # noqa: BLE001
        return dict(error=f"{type(e).__name__}: {e}"[:300])


if __name__ == "__main__":
    before_after(__file__, __doc__, ITEMS, run_item, "items", "recast_real_models_audit.json")
