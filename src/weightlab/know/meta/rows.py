"""Meta-dataset rows from a progressive-forgetting trajectory (the KNOW paper's Eq. 2-6).

A trajectory of ``S + 1`` or more stages gives, for every target stage ``t`` with ``t + 5`` stages
behind it, one row per scalar parameter: the input sequence ``[θ^{t+5}, …, θ^{t+1}]`` (oldest
forgetting first, as KNOWN reads it) and the target ``θ^t`` (the weight trained on more data).
Rows are grouped by hypermodel: Conv, FC (2-D weights, including the head's) and Bias.
"""

from __future__ import annotations

import torch

from weightlab.errors import WeightlabError
from weightlab.know.hypermodel import SEQ_LEN
from weightlab.know.predictors.known import hypermodel_for
from weightlab.know.trajectory import Trajectory


def trajectory_rows(
    trajectory: Trajectory, kinds=("conv", "fc", "bias", "head")
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"Conv" | "FC" | "Bias": (sequences (N, 5) float32, targets (N,) float32)}``."""
    trajectory.require(SEQ_LEN + 1, "a meta-training row (5 inputs and a target)")
    groups: dict[str, list[str]] = {}
    for key in trajectory.keys_of(kinds):
        groups.setdefault(hypermodel_for(trajectory.kinds[key], trajectory.stages[0][key].ndim), []).append(key)
    if not groups:
        raise WeightlabError(f"the trajectory has no parameters of kind(s) {', '.join(kinds)}")
    out = {}
    for model, keys in groups.items():
        flat = [torch.cat([stage[k].reshape(-1).float() for k in keys]) for stage in trajectory.stages]
        seqs, targets = [], []
        for t in range(trajectory.num_stages - SEQ_LEN):
            seqs.append(torch.stack([flat[s] for s in range(t + SEQ_LEN, t, -1)], dim=1))
            targets.append(flat[t])
        out[model] = (torch.cat(seqs), torch.cat(targets))
    return out
