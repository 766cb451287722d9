"""InfLoRA, interference-free low-rank adaptation (Liang & Li, "InfLoRA: Interference-Free Low-Rank
Adaptation for Continual Learning", CVPR 2024), task-incremental, on a timm ViT.

The pretrained backbone is frozen. Each task t adds a branch ``W + A_t B_t`` to the key and value
projections of every attention block (the rows k and v of timm's fused ``qkv``), as in the paper:

* ``B_t`` (r x d_in, the dimensionality reduction) is *designed*, not learnt: the top-r eigenvectors
  of ``(I - M M^T) H_t H_t^T (I - M M^T)``, with ``H_t`` the layer's inputs on task t's training data
  (through the model of the earlier tasks) and ``M`` an orthonormal basis of the earlier tasks'
  input subspace. Updates of ``A_t`` then move the layer's output only along directions orthogonal
  to the earlier tasks' inputs, and inside the new task's input space.
* ``A_t`` (d_out x r) starts at zero and is the only backbone tensor trained for task t.
* After the task, ``M`` grows by the new input directions it does not yet explain, in Gradient
  Projection Memory's way (Saha et al., 2021): the fewest eigenvectors of the residual so that the
  kept share of the inputs' energy reaches ``threshold``. (The paper uses DualGPM, which stores
  this basis or its complement, whichever is smaller; the subspace is the same.)

All branches stay on for every task (no task identity inside the backbone), so forgetting is small
but not zero. Defaults: rank r = 10 (the paper's), threshold 0.97 (GPM's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from weightlab.errors import WeightlabError
from weightlab.incremental.baselines.harness import ContinualMethod, tensor_bytes
from weightlab.incremental.baselines.spec import BASELINES
from weightlab.models import get_family
from weightlab.registry import option


class InfLoRALinear(nn.Module):
    """``base(x)`` plus, on output rows ``rows``, the sum of every task branch ``x B_t^T A_t^T``."""

    def __init__(self, base: nn.Linear, rows: slice) -> None:
        super().__init__()
        self.base, self.rows = base, rows
        self.A = nn.ParameterList()
        self.B: list[torch.Tensor] = []
        self.cov: torch.Tensor | None = None  # input second moment while collecting

    def add_branch(self, B: torch.Tensor) -> nn.Parameter:
        n_out = len(range(*self.rows.indices(self.base.out_features)))
        self.B.append(B)
        self.A.append(nn.Parameter(torch.zeros(n_out, B.shape[0], device=B.device)))
        return self.A[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cov is not None:
            flat = x.detach().reshape(-1, x.shape[-1]).double()
            self.cov += flat.T @ flat
        y = self.base(x)
        if not self.B:
            return y
        delta = sum((x @ B.T) @ A.T for A, B in zip(self.A, self.B))
        return torch.cat([y[..., : self.rows.start], y[..., self.rows] + delta, y[..., self.rows.stop :]], dim=-1)


def _top_eigvecs(sym: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending, clipped at 0) and eigenvectors (columns) of a symmetric matrix."""
    vals, vecs = torch.linalg.eigh(sym)
    return vals.flip(0).clamp_min(0), vecs.flip(1)


@dataclass
class InfLoRAOptions:
    rank: int = option(10, "rank of each task's key/value branch", minimum=1)
    threshold: float = option(0.97, "energy kept in the subspace of earlier tasks' inputs (0, 1]", minimum=0.0)


@BASELINES.register("inflora", display="InfLoRA", paper="Liang & Li 2024", options=InfLoRAOptions)
class InfLoRA(ContinualMethod):
    """InfLoRA (Liang & Li, 2024): ViT key/value low-rank branches orthogonal to earlier tasks' inputs."""

    needs_tokens = True  # a transformer family (weightlab.models.families: tokens=True)

    def __init__(self, backbone, feature_dim, classes_per_task, options, cfg, model_cfg, seed: int = 0) -> None:
        super().__init__(backbone, feature_dim, classes_per_task, options, cfg, model_cfg, seed)
        if not get_family(model_cfg).tokens or not hasattr(backbone, "blocks"):
            raise WeightlabError(
                "InfLoRA is implemented for timm ViT backbones (the key and value projections "
                "of each attention block), as in Liang & Li (2024)"
            )
        self.rank, self.threshold = self.opts.rank, self.opts.threshold
        if not 0 < self.threshold <= 1:
            raise WeightlabError(f"InfLoRA threshold must be in (0, 1], got {self.threshold}")
        for p in backbone.parameters():
            p.requires_grad_(False)
        self.layers: list[InfLoRALinear] = []
        for block in backbone.blocks:
            dim = block.attn.qkv.in_features
            block.attn.qkv = InfLoRALinear(block.attn.qkv, slice(dim, 3 * dim))  # k and v, not q
            self.layers.append(block.attn.qkv)
        self.bases: list[torch.Tensor | None] = [None] * len(self.layers)  # M per layer (d_in x k)

    @torch.no_grad()
    def _input_moments(self, x: torch.Tensor) -> list[torch.Tensor]:
        """H H^T of every adapted layer on ``x`` through the current model."""
        self.eval()
        for layer in self.layers:
            layer.cov = torch.zeros(
                layer.base.in_features, layer.base.in_features, dtype=torch.float64, device=layer.base.weight.device
            )
        for i in range(0, len(x), 256):
            self.backbone(x[i : i + 256])
        covs = [layer.cov for layer in self.layers]
        for layer in self.layers:
            layer.cov = None
        return covs

    def _project_out(self, cov: torch.Tensor, M: torch.Tensor | None) -> torch.Tensor:
        if M is None:
            return cov
        P = torch.eye(len(cov), dtype=cov.dtype, device=cov.device) - M @ M.T
        return P @ cov @ P

    def begin_task(self, t, x, y):
        for layer, cov, M in zip(self.layers, self._input_moments(x), self.bases):
            _, vecs = _top_eigvecs(self._project_out(cov, M))
            B = vecs[:, : self.rank]
            if M is not None:  # eigenvalue-0 directions may lie in span(M): remove it exactly
                B = B - M @ (M.T @ B)
            layer.add_branch(B.T.float().contiguous())

    def trainable(self, t):
        return [*(layer.A[t] for layer in self.layers), *self.heads[t].parameters()]

    def set_train_mode(self, t):
        self.train()
        self.backbone.eval()  # frozen backbone: no dropout / statistics updates inside it

    @torch.no_grad()
    def end_task(self, t, x, y):
        for i, cov in enumerate(self._input_moments(x)):
            M = self.bases[i]
            total = float(torch.trace(cov))
            kept = 0.0 if M is None else float(torch.trace(M.T @ cov @ M))
            vals, vecs = _top_eigvecs(self._project_out(cov, M))
            need = self.threshold * total - kept
            k = 0
            if need > 0:
                k = int((torch.cumsum(vals, 0) < need).sum()) + 1
            k = min(k, len(cov) - (0 if M is None else M.shape[1]))
            if k:
                new = vecs[:, :k]
                self.bases[i] = new if M is None else torch.cat([M, new], dim=1)

    def learnt_per_task(self) -> int:
        return sum(layer.A[0].numel() for layer in self.layers)

    def task_bytes(self, t: int) -> int:
        """The task's branch: its trained A_t and its designed B_t."""
        return sum(tensor_bytes([layer.A[t], layer.B[t]]) for layer in self.layers)

    def backbone_bytes(self) -> int:
        return tensor_bytes(layer_t for n, layer_t in self.backbone.state_dict().items() if ".A." not in n)

    def shared_state_bytes(self) -> int:
        """The subspace bases M (float32), needed to design the next task's B."""
        return sum(M.numel() * 4 for M in self.bases if M is not None)
