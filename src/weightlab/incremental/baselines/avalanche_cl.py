"""EWC, LwF, GDumb and ER-ACE through Avalanche (``avalanche-lib``), task-incremental.

One shared backbone (the pretrained model without its classifier) and one head per task in an
Avalanche ``MultiTaskModule``; each task is one experience with its own task label, so replayed
samples go through their own task's head. The backbone is trained by every task (these methods
can forget). Optimiser as for the per-task methods (AdamW, the suite's lr and weight decay, the
suite's batch size and epochs); the last epoch is kept (no selection on validation: the
strategies train on a stream). Accuracies are measured here, task by task, after each experience.

Buffers follow the RECAST paper (Sec. 3): GDumb 4,400 samples; ER-ACE and DER++ 120 samples per
class of the whole sequence (Avalanche's ``mem_size`` is the total). EWC keeps one Fisher matrix
per task (``mode="separate"``); LwF distils the previous model's outputs (α, temperature).
References: EWC (Kirkpatrick et al., 2017), LwF (Li & Hoiem, 2016), GDumb (Prabhu et al., 2020),
ER-ACE (Caccia et al., 2021).

Avalanche's DER++ (``avalanche.training.DER``) is class-incremental only: its buffer stores the
logits of ``model(x)`` called without task labels, which a multi-head ``MultiTaskModule`` refuses
(``forward() missing … 'task_labels'``), and one logit vector per sample cannot hold heads of
different sizes. DER++ is therefore not taken from Avalanche.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from weightlab.engine import Precision, batch_to, make_optimizer, place
from weightlab.errors import WeightlabError
from weightlab.incremental.baselines.harness import build_record, check_finite, prepare, score_after_task, tensor_bytes
from weightlab.incremental.baselines.spec import BASELINES, BaselineSpec
from weightlab.registry import option


class AvalancheBaseline:
    """A continual-learning strategy from Avalanche: subclasses build it with :meth:`strategy`."""

    @staticmethod
    def strategy(options, common: dict, total_classes: int, batch_size: int):
        """The Avalanche strategy; ``options`` is the registered options dataclass, typed."""
        raise NotImplementedError


@dataclass
class EWCOptions:
    lam: float = option(100.0, "weight of the EWC penalty", key="lambda", minimum=0.0)


@BASELINES.register("ewc", display="EWC", paper="Kirkpatrick et al. 2017", options=EWCOptions)
class EWC(AvalancheBaseline):
    """EWC (Kirkpatrick et al., 2017) via avalanche.training.EWC, one Fisher matrix per task"""

    @staticmethod
    def strategy(options, common, total_classes, batch_size):
        from avalanche.training import EWC as Strategy

        return Strategy(ewc_lambda=options.lam, mode="separate", **common)


@dataclass
class LwFOptions:
    alpha: float = option(1.0, "weight of the distillation loss", minimum=0.0)
    temperature: float = option(2.0, "distillation temperature", minimum=0.0)


@BASELINES.register("lwf", display="LwF", paper="Li & Hoiem 2016", options=LwFOptions)
class LwF(AvalancheBaseline):
    """LwF (Li & Hoiem, 2016) via avalanche.training.LwF"""

    @staticmethod
    def strategy(options, common, total_classes, batch_size):
        from avalanche.training import LwF as Strategy

        return Strategy(alpha=options.alpha, temperature=options.temperature, **common)


@dataclass
class GDumbOptions:
    mem_size: int = option(4400, "replay buffer size in samples (the RECAST paper's)", minimum=1)


@BASELINES.register("gdumb", display="GDumb", paper="Prabhu et al. 2020", options=GDumbOptions)
class GDumb(AvalancheBaseline):
    """GDumb (Prabhu et al., 2020) via avalanche.training.GDumb, 4,400-sample buffer"""

    @staticmethod
    def strategy(options, common, total_classes, batch_size):
        from avalanche.training import GDumb as Strategy

        return Strategy(mem_size=options.mem_size, **common)


@dataclass
class ERACEOptions:
    per_class: int = option(120, "replay buffer samples per class of the whole sequence", minimum=1)


@BASELINES.register(
    "er_ace", display="ER-ACE", paper="Caccia et al. 2021", options=ERACEOptions, aliases=("er-ace", "erace")
)
class ERACE(AvalancheBaseline):
    """ER-ACE (Caccia et al., 2021) via avalanche.training.ER_ACE, 120 samples per class"""

    @staticmethod
    def strategy(options, common, total_classes, batch_size):
        from avalanche.training import ER_ACE as Strategy

        return Strategy(mem_size=options.per_class * total_classes, batch_size_mem=batch_size, **common)


def _avalanche():
    try:
        import avalanche
    except ImportError:
        raise WeightlabError(
            "the continual-learning baselines need Avalanche: pip install avalanche-lib "
            "(or pip install 'weightlab[cl]')"
        ) from None
    return avalanche


def multihead(backbone: nn.Module, feature_dim: int, classes_per_task: list[int]) -> nn.Module:
    """An Avalanche ``MultiTaskModule``: ``backbone`` then the head of each sample's task."""
    from avalanche.models import MultiTaskModule

    class MultiHeadNet(MultiTaskModule):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.heads = nn.ModuleList(nn.Linear(feature_dim, n) for n in classes_per_task)

        def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
            return self.heads[int(task_label)](self.backbone(x))

    return MultiHeadNet()


def _buffer_samples(strategy) -> int:
    """Samples held in the replay buffer now, on the strategy or one of its plugins (0 for EWC / LwF)."""
    for owner in [strategy, *strategy.plugins]:
        policy = getattr(owner, "storage_policy", None)
        if policy is not None:
            return len(policy.buffer)
    return 0


def _ewc_bytes_per_task(strategy) -> list[int]:
    """Bytes EWC keeps per task: its Fisher diagonal and the parameters it anchors to."""
    plugin = next((p for p in strategy.plugins if hasattr(p, "importances")), None)
    if plugin is None:
        return []
    out = []
    for exp in sorted(plugin.importances):
        tensors = [d.data for d in plugin.importances[exp].values()] + [
            d.data for d in plugin.saved_params[exp].values()
        ]
        out.append(tensor_bytes(tensors))
    return out


def run_avalanche(
    cls: type[AvalancheBaseline], base: nn.Module, spec: BaselineSpec, tasks, cfg, *, seed: int, progress: bool = True
) -> dict:
    avalanche = _avalanche()
    # Avalanche's deprecated() calls simplefilter("once") on every call, which overrides any filter of ours, so
    # its notices (and "no loggers": we log nothing there) are caught here and dropped; other warnings pass on.
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("ignore", module="avalanche")
        record = _run(cls, base, spec, tasks, cfg, seed=seed, progress=progress)
    package = os.path.dirname(avalanche.__file__)
    for w in caught:
        if not os.path.abspath(w.filename).startswith(package):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return record


def _run(
    cls: type[AvalancheBaseline], base: nn.Module, spec: BaselineSpec, tasks, cfg, *, seed: int, progress: bool
) -> dict:
    from avalanche.benchmarks import tensors_benchmark
    from avalanche.training.plugins import EvaluationPlugin

    start = time.perf_counter()
    model_cfg = base.weightlab_cfg
    if cfg.precision == "fp16":  # Avalanche's loop has no gradient scaler
        raise WeightlabError(f"{spec.name} (Avalanche) trains in fp32 or bf16, not fp16")
    backbone, dim, train, val, test = prepare(base, tasks, seed)  # Avalanche moves its own batches
    model = multihead(backbone, dim, [t.num_classes for t in tasks])
    dev = place(model, cfg.device)
    prec = Precision(cfg.precision, dev)
    val, test = ([batch_to(xy, dev) for xy in split] for split in (val, test))
    bench = tensors_benchmark(
        train_tensors=[list(xy) for xy in train],
        test_tensors=[list(xy) for xy in test],
        task_labels=list(range(len(tasks))),
    )
    optimizer = make_optimizer("adamw", model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batch = cfg.batch_for(model_cfg)
    common = dict(
        model=model,
        optimizer=optimizer,
        criterion=nn.CrossEntropyLoss(),
        train_mb_size=batch,
        train_epochs=cfg.epochs,
        eval_mb_size=256,
        device=dev,
        evaluator=EvaluationPlugin(loggers=[]),
    )
    strategy = cls.strategy(
        BASELINES.entry(spec.method).build_options(spec.options), common, sum(t.num_classes for t in tasks), batch
    )
    from tqdm.auto import tqdm

    R: list[list[float]] = []
    val_acc, task_wall = [], []
    for i, exp in enumerate(tqdm(bench.train_stream, desc=spec.name, disable=not progress, leave=False)):
        t0 = time.perf_counter()
        with prec.autocast():
            strategy.train(exp)
        task_wall.append(time.perf_counter() - t0)
        model = strategy.model  # GDumb replaces the model by a fresh copy at every experience
        check_finite(model, spec.name, tasks[i].name)
        model.eval()
        score_after_task(lambda task, x, net=model: net(x, task), i, val, test, val_acc, R, prec)
    extra = _ewc_bytes_per_task(strategy)
    n_buffer = _buffer_samples(strategy)
    sample_bytes = train[0][0][0].numel() * train[0][0].element_size()
    return build_record(
        name=spec.name,
        seed=seed,
        tasks=tasks,
        R=R,
        trainable_per_task=sum(p.numel() for p in model.backbone.parameters()),
        head_per_task=[sum(p.numel() for p in h.parameters()) for h in model.heads],
        bytes_per_task=[
            tensor_bytes(h.parameters()) + (extra[i] if i < len(extra) else 0) for i, h in enumerate(model.heads)
        ],
        backbone_bytes=tensor_bytes(model.backbone.state_dict().values()),
        buffer_samples=n_buffer,
        buffer_bytes=n_buffer * sample_bytes,
        options=spec.options,
        epochs=cfg.epochs,
        val_accuracy=val_acc,
        task_wall_s=task_wall,
        start=start,
    )
