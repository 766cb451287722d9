"""L2P, learning to prompt (Wang et al., "Learning to Prompt for Continual Learning", CVPR 2022),
task-incremental, on a timm ViT.

The pretrained ViT is frozen. A pool of ``pool_size`` prompts (each ``length`` tokens) with one key
each is shared by all tasks. For an image, the query is the frozen ViT's own [CLS] feature; the
``top_k`` prompts whose keys are nearest (cosine) are inserted after the class token (without
position embedding), and the mean of their output tokens goes to the task's head. Loss:
cross-entropy minus ``sim_coefficient`` times the summed query-key similarity of the chosen keys
(the surrogate loss that pulls the keys to the queries). Prompts, keys and the current head are
trained (Adam, lr 0.03 as in the paper); the pool keeps changing with every task, so earlier tasks
can be forgotten.

Why not Avalanche's ``LearningToPrompt``: it builds its own ViT from a timm hub name with
patch 16 at 224 x 224 and downloads hub weights (no local weights, no other geometry), replaces
the head by ``nn.Linear(768, num_classes)`` (ViT-Base width only; our ViT is 96 wide), and is
class-incremental (one head, logits outside the experience masked in training).

Defaults: pool 10, length 5, top-k 5 (the paper's Split CIFAR-100 setting), sim_coefficient 0.1
(Avalanche's default), prompts and keys initialised uniform in [-1, 1].
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
from weightlab.models import get_family
from weightlab.registry import option


@dataclass
class L2POptions:
    pool_size: int = option(10, "prompts in the shared pool", minimum=1)
    length: int = option(5, "tokens per prompt", minimum=1)
    top_k: int = option(5, "prompts chosen per input", minimum=1)
    sim_coefficient: float = option(0.1, "weight of the query-key matching loss", minimum=0.0)
    lr: float = option(0.03, "learning rate (Adam) of prompts, keys and heads", minimum=0.0)


@BASELINES.register("l2p", display="L2P", paper="Wang et al. 2022", options=L2POptions)
class L2P(ContinualMethod):
    """L2P (Wang et al., 2022): a shared prompt pool chosen by query-key match on a frozen ViT."""

    needs_tokens = True  # a transformer family (weightlab.models.families: tokens=True)

    def __init__(self, backbone, feature_dim, classes_per_task, options, cfg, model_cfg, seed: int = 0) -> None:
        super().__init__(backbone, feature_dim, classes_per_task, options, cfg, model_cfg, seed)
        if not get_family(model_cfg).tokens or not hasattr(backbone, "patch_embed"):
            raise WeightlabError(
                "L2P is implemented for timm ViT backbones (prompts are tokens), as in Wang et al. (2022)"
            )
        self.pool_size, self.length = self.opts.pool_size, self.opts.length
        self.top_k, self.sim_coefficient = self.opts.top_k, self.opts.sim_coefficient
        if not 1 <= self.top_k <= self.pool_size:
            raise WeightlabError(f"L2P top_k must be between 1 and pool_size ({self.pool_size}), got {self.top_k}")
        for p in backbone.parameters():
            p.requires_grad_(False)
        dim = backbone.embed_dim
        self.prompts = nn.Parameter(torch.empty(self.pool_size, self.length, dim).uniform_(-1, 1))
        self.keys = nn.Parameter(torch.empty(self.pool_size, dim).uniform_(-1, 1))

    def trainable(self, t):
        return [self.prompts, self.keys, *self.heads[t].parameters()]

    def optimizer(self, t):
        return make_optimizer("adam", self.trainable(t), lr=self.opts.lr)

    def set_train_mode(self, t):
        self.train()
        self.backbone.eval()

    def select(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices of the top-k prompts per image, their summed query-key cosine per image)."""
        with torch.no_grad():
            query = F.normalize(self.backbone(x), dim=1)
        sim = query @ F.normalize(self.keys, dim=1).T
        idx = sim.topk(self.top_k, dim=1).indices
        return idx, sim.gather(1, idx).sum(1)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean of the chosen prompts' output tokens, summed query-key cosine of the chosen keys) per image."""
        vit = self.backbone
        idx, sim = self.select(x)
        prompts = self.prompts[idx].flatten(1, 2)  # (B, top_k * length, D)
        h = vit._pos_embed(vit.patch_embed(x))
        n = vit.num_prefix_tokens
        h = torch.cat([h[:, :n], prompts, h[:, n:]], dim=1)
        h = vit.norm(vit.blocks(vit.norm_pre(h)))
        return h[:, n : n + prompts.shape[1]].mean(1), sim

    def logits(self, t, x):
        return self.heads[t](self.features(x)[0])

    def loss(self, t, x, y, batch, n_batches):
        feats, sim = self.features(x)
        return F.cross_entropy(self.heads[t](feats), y) - self.sim_coefficient * sim.mean()

    def learnt_per_task(self) -> int:
        return self.prompts.numel() + self.keys.numel()

    def shared_state_bytes(self) -> int:
        """The prompt pool and its keys."""
        return tensor_bytes([self.prompts, self.keys])
