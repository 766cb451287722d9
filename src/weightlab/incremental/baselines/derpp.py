"""DER++ (Buzzega et al., "Dark Experience for General Continual Learning: a Strong, Simple
Baseline", NeurIPS 2020), task-incremental.

A reservoir buffer over the whole stream keeps (input, label, task, the logits the model gave it when
it was seen). Each step adds to the cross-entropy of the current batch

    alpha * MSE(f_task(x'), z')  +  beta * CE(f_task(x''), y'')

for two independent batches (x', z') and (x'', y'') drawn from the buffer, each replayed through its
own task's head. Logits are stored per sample at the width of its task's head, so tasks with
different numbers of classes share one buffer (Avalanche's DER is class-incremental: one logit
vector for all samples, and it calls the model without task labels).

Defaults: alpha = 0.1, beta = 0.5 (the authors' setting for Seq-CIFAR-10); buffer = 120 samples per
class of the whole sequence (RECAST paper, Sec. 3); the suite's AdamW, or with ``sgd_lr=0.03`` the
DER++ paper's plain SGD.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from weightlab.incremental.baselines.harness import ContinualMethod
from weightlab.incremental.baselines.spec import BASELINES
from weightlab.registry import option


class ReservoirBuffer:
    """Reservoir sampling (Vitter 1985): every sample of the stream is kept with probability size/seen."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seen = size, 0
        self.gen = torch.Generator().manual_seed(seed)
        self.x = self.y = self.task = self.logits = None

    def __len__(self) -> int:
        return min(self.seen, self.size)

    def _allocate(self, x: torch.Tensor, width: int) -> None:
        dev = x.device  # the buffer lives where the samples do
        self.x = torch.zeros((self.size, *x.shape[1:]), dtype=x.dtype, device=dev)
        self.y = torch.zeros(self.size, dtype=torch.long, device=dev)
        self.task = torch.zeros(self.size, dtype=torch.long, device=dev)
        self.logits = torch.zeros(self.size, width, device=dev)

    def add(self, x: torch.Tensor, y: torch.Tensor, task: int, logits: torch.Tensor, width: int) -> None:
        if self.x is None:
            self._allocate(x, width)
        for i in range(len(y)):
            if self.seen < self.size:
                slot = self.seen
            else:
                slot = int(torch.randint(0, self.seen + 1, (1,), generator=self.gen))
            self.seen += 1
            if slot < self.size:
                self.x[slot], self.y[slot], self.task[slot] = x[i], y[i], task
                self.logits[slot].zero_()
                self.logits[slot, : logits.shape[1]] = logits[i]

    def sample(self, n: int) -> torch.Tensor:
        """Indices of ``n`` distinct stored samples (all of them when fewer are stored), drawn on the CPU (the
        same draw on every device) and put where the buffer is."""
        idx = torch.randperm(len(self), generator=self.gen)[:n]
        return idx if self.x is None else idx.to(self.x.device)

    def nbytes(self) -> int:
        """The stored inputs as float32 model inputs, as for the Avalanche buffers (logits and labels aside)."""
        return 0 if self.x is None else len(self) * self.x[0].numel() * self.x.element_size()


@dataclass
class DERppOptions:
    per_class: int = option(120, "replay buffer samples per class of the whole sequence", minimum=1)
    alpha: float = option(0.1, "weight of the logit-replay (MSE) term", minimum=0.0)
    beta: float = option(0.5, "weight of the label-replay (cross-entropy) term", minimum=0.0)
    sgd_lr: float = option(
        0.0, "plain SGD at this rate (the paper's recipe: 0.03 on Seq-CIFAR-10); 0: the suite's AdamW", minimum=0.0
    )


@BASELINES.register(
    "derpp", display="DER++", paper="Buzzega et al. 2020", options=DERppOptions, aliases=("der++", "der")
)
class DERpp(ContinualMethod):
    """DER++ (Buzzega et al., 2020): task-aware reservoir buffer, 120 samples per class, logit and label replay."""

    def __init__(self, backbone, feature_dim, classes_per_task, options, cfg, model_cfg, seed: int = 0) -> None:
        super().__init__(backbone, feature_dim, classes_per_task, options, cfg, model_cfg, seed)
        self.classes = list(classes_per_task)
        self.alpha, self.beta = self.opts.alpha, self.opts.beta
        self.memory = ReservoirBuffer(self.opts.per_class * sum(classes_per_task), seed=seed)
        self.batch = cfg.batch_for(model_cfg)

    def optimizer(self, t: int) -> torch.optim.Optimizer:
        lr = self.opts.sgd_lr
        if lr == 0:
            return super().optimizer(t)
        from weightlab.engine import make_optimizer

        return make_optimizer("sgd", self.trainable(t), lr=lr, momentum=0.0)

    def _replay_logits(self, idx: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(output of each sample's own head, its row numbers in idx), grouped by task."""
        feats = self.backbone(self.memory.x[idx])
        tasks = self.memory.task[idx]
        return [(self.heads[int(k)](feats[tasks == k]), (tasks == k).nonzero().flatten()) for k in tasks.unique()]

    def loss(self, t, x, y, batch, n_batches):
        out = self.logits(t, x)
        loss = F.cross_entropy(out, y)
        if len(self.memory):
            idx = self.memory.sample(self.batch)
            mse = sum(
                F.mse_loss(o, self.memory.logits[idx[rows], : o.shape[1]], reduction="sum") / o.shape[1]
                for o, rows in self._replay_logits(idx)
            )
            loss = loss + self.alpha * mse / len(idx)
            idx = self.memory.sample(self.batch)
            ce = sum(
                F.cross_entropy(o, self.memory.y[idx[rows]], reduction="sum") for o, rows in self._replay_logits(idx)
            )
            loss = loss + self.beta * ce / len(idx)
        self.memory.add(x, y, t, out.detach(), max(self.classes))
        return loss

    def buffer(self) -> tuple[int, int]:
        return len(self.memory), self.memory.nbytes()
