"""The three RECAST bases on the shared pretrained CIFAR ResNets: how exact, at what template scale.

    WEIGHTLAB_SHARED=../shared python benchmarks/recast_bases.py [--models resnet20,resnet56]

For each model and base (closed form, the authors' recipe, the closed form re-gauged to the recipe's
template scale), with the suites' preset (groups of 2 layers, n = layers per group, K = 2): the
relative reconstruction error of the generated weights, the RMS template norm and the paper's
Frobenius diversity averaged over banks, the mean |coefficient|, the per-bank factor against the closed
form's template norm, and the fit time. An Adam step moves each coefficient by about its rate whatever the
coefficient's scale, so the weights move in proportion to the template norm: the reason the gauge
matters for adaptation. Writes benchmarks/results/recast_bases.json.

The recipe's fit on these exact problems (n = layers per group) reaches a loss of ~1e-15, where the
loss is flat along every gauge direction: where RMSprop ends along them (and so the recipe's template
scale) is set by float rounding, and changes with the fused engine's chunking (the torch thread count).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import torch

from _common import command, machine, write
from weightlab import paths
from weightlab.models import create_model
from weightlab.recast.gauge import match_template_scale, template_scale
from weightlab.recast.metrics import template_diversity
from weightlab.recast.pipeline import BASES, recast_base
from weightlab.recast.tuner import banks, recast_layers


def describe(plain, model) -> dict:
    originals = dict(plain.named_modules())
    errs = [
        float((layer.weight.detach() - originals[k].weight).norm() / originals[k].weight.norm())
        for k, layer in recast_layers(model).items()
    ]
    scale = template_scale(model)
    bank_map = banks(model)
    return dict(
        max_relative_error=max(errs),
        template_rms_norm=sum(scale.values()) / len(scale),
        frobenius_diversity=sum(template_diversity(b.templates) for b in bank_map.values()) / len(bank_map),
        coefficient_mean_abs=float(
            torch.cat([layer.coefficients.detach().abs().flatten() for layer in recast_layers(model).values()]).mean()
        ),
        scale_per_bank=scale,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet20,resnet56")
    args = ap.parse_args()
    if paths.models_root() is None:
        raise SystemExit("recast_bases: the shared pretrained CIFAR ResNets are needed (set WEIGHTLAB_SHARED)")
    rows = []
    for name in args.models.split(","):
        plain = create_model(name, pretrained=True)
        base_scale, fitted = None, {}
        for base in BASES:
            t0 = time.perf_counter()
            if base == "regauged":  # re-gauged to the recipe fit of this row above (recast_base would refit it)
                model = copy.deepcopy(fitted["closed_form"])
                match_template_scale(model, fitted["recipe"])
            else:
                model = recast_base(plain, dict(templates="auto", layers_per_group=2), base=base)
            fitted[base] = model
            seconds = time.perf_counter() - t0
            d = describe(plain, model)
            if base == "closed_form":
                base_scale = d["scale_per_bank"]
            d["factor_vs_closed_form"] = {k: v / base_scale[k] for k, v in d["scale_per_bank"].items()}
            d["torch_threads"] = torch.get_num_threads()
            rows.append(dict(model=name, base=base, seconds=seconds, load_average_1min=os.getloadavg()[0], **d))
            print(
                f"{name:9s} {base:12s} err {d['max_relative_error']:.1e}  template norm {d['template_rms_norm']:.2f}  "
                f"diversity {d['frobenius_diversity']:.2f}  |coef| {d['coefficient_mean_abs']:.3f}  {seconds:.1f} s"
            )
    write(
        "recast_bases.json",
        dict(
            benchmark="recast_bases",
            command=command(),
            machine=machine(),
            device="cpu",
            preset="cifar-resnet, groups of 2 layers, n = layers per group, K = 2",
            rows=rows,
        ),
    )


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.exit(run_script(main))
