"""RECAST as a PEFT method on random-init models of five libraries' architectures (issue 18's evidence).

For each model: ``get_peft_model`` against the base (max abs output difference); two adapters, each
trained 10 Adam steps on its own synthetic task (regress the output to a random target; only that
adapter's coefficients train); switching between them (bit-exact?); ``save_pretrained`` /
``from_pretrained`` (bit-exact?); ``merge_and_unload`` against the adapter model (max abs difference);
and the bytes: an adapter file per task, the templates file written once, the model's own weights.
Random init because this machine has no network; the architectures (module names, shapes) are real.

    python benchmarks/peft_recast.py        # -> benchmarks/results/peft_recast.json
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import torch
from peft import PeftModel, get_peft_model

import weightlab.peft  # noqa: F401
from _common import command, machine, write
from weightlab.peft import TEMPLATES_FILE, RecastConfig, RecastPeftLayer


def _hf_bert():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
    return BertModel(cfg), {"input_ids": torch.randint(0, 1000, (2, 16))}


def _hf_vit():
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768)
    return ViTModel(cfg), {"pixel_values": torch.randn(2, 3, 224, 224)}


def _timm(name):
    import timm

    return lambda: (timm.create_model(name, pretrained=False), {"x": torch.randn(2, 3, 224, 224)})


def _tv(name):
    import torchvision

    return lambda: (getattr(torchvision.models, name)(), {"x": torch.randn(2, 3, 224, 224)})


MODELS = {
    "transformers BertModel (4 x 256)": _hf_bert,
    "transformers ViTModel (ViT-Ti size)": _hf_vit,
    "timm vit_tiny_patch16_224": _timm("vit_tiny_patch16_224"),
    "timm efficientnet_b0": _timm("efficientnet_b0"),
    "torchvision resnet34": _tv("resnet34"),
}


def _out(model, x):
    out = model(x["x"]) if "x" in x else model(**x)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out


def _train(model, name, x, seed, steps=10) -> tuple[float, float]:
    """Adapter ``name`` trained for ``steps`` Adam steps (lr 1e-2, train mode) to move the output toward a random
    target of the output's scale: a synthetic task. Returns the loss before and after."""
    model.set_adapter(name)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ref = _out(model, x)
    target = torch.randn(ref.shape, generator=g) * ref.std()
    params = [p for p in model.parameters() if p.requires_grad]
    assert params and all(p.numel() for p in params)
    opt = torch.optim.Adam(params, lr=1e-2)
    model.train()
    for m in model.modules():  # BatchNorm statistics belong to the shared base: kept frozen (eval mode)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    losses = []
    for _ in range(steps + 1):
        loss = torch.nn.functional.mse_loss(_out(model, x), target)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return losses[0], losses[-1]


def _time(fn, repeats=5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _timing(model, x) -> dict:
    """Best-of-5 forward seconds in eval mode with autograd on: the plain base (adapters disabled), the adapter
    with its coefficients frozen (the generated weights cached), and with them trainable (regenerated)."""
    coefs = [p for n, p in model.named_parameters() if "recast_coefficients" in n]
    with model.disable_adapter():
        plain = _time(lambda: _out(model, x))
    for p in coefs:
        p.requires_grad_(False)
    frozen = _time(lambda: _out(model, x))
    for p in coefs:
        p.requires_grad_(True)
    trainable = _time(lambda: _out(model, x))
    return dict(
        forward_s_plain=plain,
        forward_s_frozen_adapter=frozen,
        forward_s_trainable_adapter=trainable,
        frozen_over_plain=frozen / plain,
        load_average_1min=os.getloadavg()[0],
    )


def measure(label, make) -> dict:
    torch.manual_seed(0)
    base, x = make()
    base.eval()
    base_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
    with torch.no_grad():
        ref = _out(base, x).clone()
    t0 = time.perf_counter()
    model = get_peft_model(base, RecastConfig())
    wrap_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        fresh_diff = (_out(model, x) - ref).abs().max().item()
    timing = _timing(model, x)
    model.add_adapter("task2", RecastConfig())
    train1 = _train(model, "default", x, 1)
    train2 = _train(model, "task2", x, 2)
    with torch.no_grad():
        model.set_adapter("default")
        out1 = _out(model, x).clone()
        model.set_adapter("task2")
        out2 = _out(model, x).clone()
        model.set_adapter("default")
        switch_exact = torch.equal(_out(model, x), out1)
        model.set_adapter("task2")
        switch_exact &= torch.equal(_out(model, x), out2)
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        adapter_bytes = os.path.getsize(os.path.join(d, "task2", "adapter_model.safetensors"))
        template_bytes = os.path.getsize(os.path.join(d, TEMPLATES_FILE))
        torch.manual_seed(0)
        fresh, _ = make()
        loaded = PeftModel.from_pretrained(fresh.eval(), d)
        loaded.load_adapter(os.path.join(d, "task2"), adapter_name="task2")
        loaded.eval()
        with torch.no_grad():
            round_trip = torch.equal(_out(loaded, x), out1)
            loaded.set_adapter("task2")
            round_trip &= torch.equal(_out(loaded, x), out2)
            merged = loaded.merge_and_unload()
            merge_diff = (_out(merged, x) - out2).abs().max().item()
    cfg = model.peft_config["default"]
    return dict(
        model=label,
        architecture_row=cfg.architecture,
        banks=len(cfg.bank_plan),
        templated_modules=sum(isinstance(m, RecastPeftLayer) for m in model.modules()),
        coefficients_per_task=sum(p.numel() for n, p in model.named_parameters() if "recast_coefficients.task2" in n),
        fit_seconds=round(wrap_s, 2),
        output_scale=ref.abs().max().item(),
        fresh_vs_base_max_abs=fresh_diff,
        switching_bit_exact=bool(switch_exact),
        save_load_bit_exact=bool(round_trip),
        merge_vs_adapter_max_abs=merge_diff,
        adapter_file_bytes=adapter_bytes,
        templates_file_bytes=template_bytes,
        base_model_bytes=base_bytes,
        task_loss_before_after=[train1, train2],
        **timing,
    )


def main() -> None:
    rows = []
    for label, make in MODELS.items():
        row = measure(label, make)
        print(row)
        rows.append(row)
    write("peft_recast.json", dict(machine=machine(), device="cpu", command=command(), rows=rows))


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.exit(run_script(main))
