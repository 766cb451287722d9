"""A multi-task model: one frozen shared backbone (plain or RECAST), a head per task, and per task the
few tensors its method trains (coefficients, adapter weights, BatchNorm statistics ...).

Switching tasks copies that task's tensors into the backbone; nothing shared ever changes, so
earlier tasks cannot be forgotten.

>>> tm = TaskModel.from_base(recast_model, parse_method("recast"))
>>> learn_task(tm, task, AdaptConfig(epochs=10))        # weightlab.incremental.learner
>>> tm.set_task("mnist_0-4"); logits = tm(x)
>>> tm.predict(x, "cifar10_5-9")                         # one call: switch and classify
"""

from __future__ import annotations

import copy
import json

import torch
from torch import nn

from weightlab.engine import module_device, place
from weightlab.errors import WeightlabError
from weightlab.incremental.methods import MethodSpec
from weightlab.io import tensors_sha256
from weightlab.models import ModelCfg, find_classifier, get_family, set_submodule

BN_MODES = ("task", "frozen")


def detach_classifier(model: nn.Module) -> tuple[nn.Module, int]:
    """Replace the model's classifier by ``nn.Identity`` (in place); returns (model, feature dim)."""
    name, head = find_classifier(model)
    set_submodule(model, name, nn.Identity())
    return model, head.in_features


def fingerprint(backbone: nn.Module, model_cfg: ModelCfg | None, recast_config: dict | None) -> str:
    """sha256 of the backbone's tensors (names, dtypes, shapes, bytes) and its configuration."""
    cfg = model_cfg.to_dict() if isinstance(model_cfg, ModelCfg) else model_cfg
    header = json.dumps(dict(model=cfg, recast=recast_config), sort_keys=True, default=str).encode()
    return tensors_sha256(backbone.state_dict(), header)


def _is_bn_stat(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")


class TaskModel(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        model_cfg: ModelCfg | None,
        method: MethodSpec,
        *,
        base_hash: str,
        recast_config: dict | None = None,
        bn: str = "task",
        seed: int = 0,
    ):
        super().__init__()
        if bn not in BN_MODES:
            raise WeightlabError(f"unknown BatchNorm mode '{bn}' (use {' or '.join(BN_MODES)})")
        self.backbone = backbone
        self.heads = nn.ModuleDict()
        self.feature_dim, self.model_cfg, self.method = feature_dim, model_cfg, method
        self.base_hash, self.recast_config, self.bn, self.seed = base_hash, recast_config, bn, seed
        self.adapter = method.build_adapter()
        family = get_family(model_cfg)
        if self.adapter is not None:
            reason = self.adapter.applies_to(family)
            if reason:
                raise WeightlabError(reason)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.adapter.inject(backbone, family)
        keys = []
        for name, p in backbone.named_parameters():
            p.requires_grad_(method.trains(name, self.adapter))
            if p.requires_grad:
                keys.append(name)
        if not keys and (method.recast or method.adapter):
            raise WeightlabError(f"method {method.name} found nothing to train in this backbone")
        for name, _ in backbone.named_buffers():
            if (bn == "task" and _is_bn_stat(name)) or name.rsplit(".", 1)[-1].startswith("task_"):
                keys.append(name)
        self.task_keys = keys
        self._live = {**dict(backbone.named_parameters()), **dict(backbone.named_buffers())}
        self.init_state = {k: self._live[k].detach().clone() for k in keys}
        self.task_states: dict[str, dict[str, torch.Tensor]] = {}
        self.task_info: dict[str, dict] = {}
        self.current: str | None = None

    # construction ---------------------------------------------------------------------------
    @classmethod
    def from_base(cls, base_model: nn.Module, method: MethodSpec, *, bn: str = "task", seed: int = 0) -> TaskModel:
        """Wrap a (copy of a) pretrained model: RECAST base for ``recast*`` methods, plain otherwise."""
        from weightlab.recast.tuner import is_recast

        if method.recast != is_recast(base_model):
            need = "a RECAST" if method.recast else "a plain (non-RECAST)"
            raise WeightlabError(f"method {method.name} needs {need} base model")
        cfg = getattr(base_model, "weightlab_cfg", None)
        rcfg = base_model.recast_config.to_dict() if method.recast else None
        backbone, dim = detach_classifier(copy.deepcopy(base_model))
        backbone.eval()
        return cls(
            backbone, dim, cfg, method, base_hash=fingerprint(backbone, cfg, rcfg), recast_config=rcfg, bn=bn, seed=seed
        )

    # tasks ---------------------------------------------------------------------------------------
    @property
    def task_names(self) -> list[str]:
        return list(self.task_states)

    def new_task(self, name: str, classes: list[str], seed: int | None = None) -> None:
        """Reset the task tensors to the base's values and add a fresh head for ``name``."""
        if name in self.heads:
            raise WeightlabError(f"task '{name}' already exists in this model")
        self._load(self.init_state)
        with torch.random.fork_rng(devices=[]):  # drawn on the CPU: the same head on every device
            torch.manual_seed(self.seed if seed is None else seed)
            head = nn.Linear(self.feature_dim, len(classes))
        place(head, module_device(self.backbone))
        self.heads[name] = head
        self.task_info[name] = dict(classes=list(classes))
        self.current = name

    def commit_task(self, name: str) -> None:
        """Store the live task tensors as ``name``'s state."""
        self.task_states[name] = {k: self._live[k].detach().clone() for k in self.task_keys}

    def set_task(self, name: str) -> None:
        if name not in self.task_states:
            known = ", ".join(self.task_states) or "none"
            raise WeightlabError(f"unknown task '{name}' (this model has: {known})")
        self._load(self.task_states[name])
        self.current = name

    def add_task(
        self,
        name: str,
        classes: list[str],
        state: dict[str, torch.Tensor],
        head: dict[str, torch.Tensor],
        info: dict | None = None,
    ) -> None:
        """Register a task learnt elsewhere (e.g. loaded from an artifact)."""
        missing = sorted(set(self.task_keys) - set(state))
        extra = sorted(set(state) - set(self.task_keys))
        if missing or extra:
            raise WeightlabError(
                f"task '{name}' does not fit this model's method ({self.method.name}): "
                f"missing {missing[:3]}, unexpected {extra[:3]}"
            )
        for k, v in state.items():
            if tuple(v.shape) != tuple(self._live[k].shape):
                raise WeightlabError(
                    f"task '{name}': {k} has shape {tuple(v.shape)}, the model expects {tuple(self._live[k].shape)}"
                )
        if name in self.heads:
            del self.heads[name]
        h = nn.Linear(self.feature_dim, head["weight"].shape[0])
        h.load_state_dict(head)
        place(h, module_device(self.backbone))
        self.heads[name] = h
        self.task_info[name] = dict(classes=list(classes), **(info or {}))
        # stored like the live tensors (their dtype and device)
        self.task_states[name] = {k: self._live[k].detach().clone().copy_(v) for k, v in state.items()}

    def _apply(self, fn, recurse=True):
        """``.to(device)``, ``.double()`` ...: the stored task tensors follow the live ones, and the live
        view is rebuilt (a conversion replaces buffers by new tensors)."""
        super()._apply(fn, recurse)
        self._live = {**dict(self.backbone.named_parameters()), **dict(self.backbone.named_buffers())}
        self.init_state = {k: fn(v) for k, v in self.init_state.items()}
        self.task_states = {t: {k: fn(v) for k, v in st.items()} for t, st in self.task_states.items()}
        return self

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in state.items():
                self._live[k].copy_(v)

    # running ------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.current is None:
            raise WeightlabError("no task selected: call set_task(name) first")
        return self.heads[self.current](self.backbone(x))

    def train(self, mode: bool = True) -> TaskModel:
        super().train(mode)
        if self.bn == "frozen":
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """Logits of task ``task`` for a batch (switches to the task, in eval mode)."""
        self.set_task(task)
        self.eval()
        return self(x)

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.backbone.named_parameters() if p.requires_grad}

    # accounting and deployment ---------------------------------------------------------------
    def counts(self, name: str | None = None) -> dict:
        """Trainable numbers and storage per task, next to the shared backbone's size."""
        name = name or self.current
        params = self.trainable_parameters()
        trained = sum(p.numel() for p in params.values())
        head = sum(p.numel() for p in self.heads[name].parameters()) if name in self.heads else 0
        stats = sum(self._live[k].numel() for k in self.task_keys if k not in params)
        packed = self.adapter.pack_state(self.init_state) if self.adapter else self.init_state
        state_bytes = sum(v.numel() * v.element_size() for v in packed.values())
        head_bytes = (
            sum(p.numel() * p.element_size() for p in self.heads[name].parameters()) if name in self.heads else 0
        )
        shared = self.backbone.state_dict().values()
        backbone = sum(t.numel() for t in shared)
        backbone_bytes = sum(t.numel() * t.element_size() for t in shared)
        return dict(
            trainable_per_task=trained,
            head_per_task=head,
            buffers_per_task=stats,
            bytes_per_task=state_bytes + head_bytes,
            backbone_numbers=backbone,
            backbone_bytes=backbone_bytes,
        )

    def materialize(self, name: str) -> nn.Module:
        """A deployable copy for one task: adapters folded in where they can be, RECAST layers turned
        into plain layers, and the task's head attached (``nn.Sequential(backbone, head)``)."""
        from weightlab.recast.tuner import materialize as recast_materialize

        current = self.current
        self.set_task(name)
        backbone = copy.deepcopy(self.backbone)
        if current is not None:
            self.set_task(current)
        if self.adapter is not None and self.adapter.mergeable:
            self.adapter.merge(backbone)
        backbone = recast_materialize(backbone)
        for p in backbone.parameters():
            p.requires_grad_(False)
        return nn.Sequential(backbone, copy.deepcopy(self.heads[name])).eval()
