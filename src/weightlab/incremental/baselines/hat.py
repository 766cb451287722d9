"""HAT, hard attention to the task (Serra et al., "Overcoming Catastrophic Forgetting with Hard
Attention to the Task", ICML 2018), task-incremental.

Every unit (output channel of each ``Conv2d``, output feature of each ``Linear``) of the backbone is
gated per task by ``a = sigmoid(s * e_t)``, ``e_t`` a learnt task embedding; where a BatchNorm
follows the layer the gate multiplies the BatchNorm's output. Training task t:

* ``s`` is annealed from 1/s_max to s_max over the batches of each epoch (Eq. 3);
* the attention regulariser ``c * sum a_t (1 - a_<t) / sum (1 - a_<t)`` keeps units free (Eq. 5);
* the gradient of each weight is scaled by ``1 - a_<t`` of its unit, ``a_<t`` the element-wise max of
  the earlier tasks' masks at s_max (Eq. 4), so units that earlier tasks use stay fixed;
* the embedding gradient is compensated for the annealing (Eq. 6), embeddings clamped to [-6, 6].

At test the task's mask at s_max is used. Two choices for arbitrary backbones, where the paper
gates a plain feed-forward stack:

* Eq. 4 conditions a weight on ``min(a_out, a_in)``. In a network with residual additions or
  attention an input channel has no single preceding unit, so here a weight is conditioned on its
  output unit only: every weight the paper fixes is fixed here too (and some more).
* Parameters outside the gated layers (normalisation layers, class token, position embedding) and
  the BatchNorm statistics are kept per task: each task starts from the previous task's copy and
  stores its own (counted in its storage).

Defaults as in the paper: s_max = 400, c = 0.75, plain SGD with lr 0.05, gradient norm clipped at
10,000. (Adam would undo the gradient scaling of partly used units, normalising tiny gradients back
to full steps.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from weightlab.engine import make_optimizer
from weightlab.errors import WeightlabError
from weightlab.incremental.baselines.harness import ContinualMethod, tensor_bytes
from weightlab.incremental.baselines.spec import BASELINES
from weightlab.registry import option

GATED = (nn.Conv2d, nn.Linear)
EMB_CLAMP, COSH_CLAMP = 6.0, 50.0  # the authors' code


def gated_units(backbone: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(layer whose output units are gated, module whose output carries the gate) for every Conv2d and
    Linear: the BatchNorm right after a layer when there is one (a gate before BatchNorm would be
    normalised away in training and mismatch its running statistics at test), else the layer itself."""
    modules = list(backbone.modules())
    pairs = []
    for i, m in enumerate(modules):
        if isinstance(m, GATED):
            nxt = modules[i + 1] if i + 1 < len(modules) else None
            norm = isinstance(nxt, nn.modules.batchnorm._BatchNorm) and nxt.num_features == m.weight.shape[0]
            pairs.append((m, nxt if norm else m))
    return pairs


@dataclass
class HATOptions:
    s_max: float = option(400.0, "largest gate slope s_max", minimum=0.0)
    c: float = option(0.75, "weight c of the attention regulariser", minimum=0.0)
    lr: float = option(0.05, "SGD learning rate", minimum=0.0)


@BASELINES.register("hat", display="HAT", paper="Serra et al. 2018", options=HATOptions)
class HAT(ContinualMethod):
    """HAT (Serra et al., 2018): learnt unit masks per task, gradients of used units blocked."""

    clip_norm = 10000.0

    def __init__(self, backbone, feature_dim, classes_per_task, options, cfg, model_cfg, seed: int = 0) -> None:
        super().__init__(backbone, feature_dim, classes_per_task, options, cfg, model_cfg, seed)
        self.s_max, self.c = self.opts.s_max, self.opts.c
        pairs = gated_units(backbone)
        if not pairs:
            raise WeightlabError("HAT found no Conv2d or Linear layer to gate in this backbone")
        self.gated = [layer for layer, _ in pairs]
        units = [layer.weight.shape[0] for layer in self.gated]
        self.emb = nn.ModuleList(
            nn.ParameterList(nn.Parameter(torch.randn(u)) for u in units) for _ in classes_per_task
        )
        self.prev = [torch.zeros(u) for u in units]  # a_<t: max of the earlier tasks' masks at s_max
        self._masks: list[torch.Tensor] | None = None
        for i, (_, gate) in enumerate(pairs):
            gate.register_forward_hook(self._gate(i))
        gated_params = {id(p) for m in self.gated for p in m.parameters(recurse=False)}
        self.private = [n for n, p in backbone.named_parameters() if id(p) not in gated_params]
        self.private += [n for n, _ in backbone.named_buffers()]
        self.saved: list[dict[str, torch.Tensor]] = []  # per task: its copy of the private tensors
        self._loaded = -1
        self._s = self.s_max

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)  # .to(device): the earlier tasks' masks and private copies follow
        self.prev = [fn(p) for p in self.prev]
        self.saved = [{k: fn(v) for k, v in st.items()} for st in self.saved]
        return self

    def _gate(self, i: int):
        def hook(module, inputs, output):
            if self._masks is None:
                return output
            a = self._masks[i]
            return output * (a if isinstance(module, nn.Linear) else a.view(1, -1, *([1] * (output.dim() - 2))))

        return hook

    def masks(self, t: int, s: float) -> list[torch.Tensor]:
        return [torch.sigmoid(s * e) for e in self.emb[t]]

    # -- per-task copies of the ungated tensors -------------------------------------------------
    def _state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.backbone.state_dict(keep_vars=True).items() if k in self.private}

    def _load(self, t: int) -> None:
        if self._loaded != t:
            with torch.no_grad():
                for k, v in self._state().items():
                    v.copy_(self.saved[t][k])
            self._loaded = t

    # -- hooks ----------------------------------------------------------------------------------
    def begin_task(self, t, x, y):
        if t:
            self._load(t - 1)
        self._loaded = t  # training now writes task t's copy

    def trainable(self, t):
        return [*self.backbone.parameters(), *self.emb[t], *self.heads[t].parameters()]

    def optimizer(self, t):
        return make_optimizer("sgd", self.trainable(t), lr=self.opts.lr, momentum=0.0)

    def loss(self, t, x, y, batch, n_batches):
        self._s = 1 / self.s_max + (self.s_max - 1 / self.s_max) * batch / max(n_batches - 1, 1)
        self._masks = self.masks(t, self._s)
        out = self.heads[t](self.backbone(x))
        free = [1 - p for p in self.prev]
        reg = sum((a * f).sum() for a, f in zip(self._masks, free)) / sum(f.sum() for f in free).clamp_min(1e-12)
        return F.cross_entropy(out, y) + self.c * reg

    @torch.no_grad()
    def after_backward(self, t, batch, n_batches):
        if t:
            for m, p in zip(self.gated, self.prev):
                keep = 1 - p
                if m.weight.grad is not None:
                    m.weight.grad.mul_(keep.view(-1, *([1] * (m.weight.dim() - 1))))
                if m.bias is not None and m.bias.grad is not None:
                    m.bias.grad.mul_(keep)
        s = self._s
        for e in self.emb[t]:
            if e.grad is not None:
                num = torch.cosh(torch.clamp(s * e, -COSH_CLAMP, COSH_CLAMP)) + 1
                e.grad.mul_(self.s_max / s * num / (torch.cosh(e) + 1))

    @torch.no_grad()
    def after_step(self, t):
        for e in self.emb[t]:
            e.clamp_(-EMB_CLAMP, EMB_CLAMP)

    @torch.no_grad()
    def end_task(self, t, x, y):
        self.prev = [torch.maximum(p, a) for p, a in zip(self.prev, self.masks(t, self.s_max))]
        self.saved.append({k: v.detach().clone() for k, v in self._state().items()})
        self._loaded = t

    def logits(self, t, x):
        if t < len(self.saved):
            self._load(t)
        self._masks = self.masks(t, self.s_max if not self.training else self._s)
        return self.heads[t](self.backbone(x))

    # -- sizes ----------------------------------------------------------------------------------
    def learnt_per_task(self) -> int:
        return super().learnt_per_task() + sum(e.numel() for e in self.emb[0])

    def task_bytes(self, t: int) -> int:
        """The task's embeddings and its copy of the ungated tensors."""
        return tensor_bytes(self.emb[t]) + tensor_bytes(self.saved[t].values())
