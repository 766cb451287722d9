"""Neural Mimicry (paper Sec. 2.2, Alg. 2, Eq. 3): fit templates and coefficients to pretrained
weights without data.

Methods:
  * ``recipe``: the authors' iterative recipe (defaults from their code: SmoothL1, per-role loss
    weights, coefficient noise in training only, RMSprop, StepLR, gradient clipping, keep the best
    snapshot) from the random init.
  * ``closed_form``: the optimal rank-n factorisation (:mod:`weightlab.recast.closed_form`).
  * ``closed_form+recipe``: the recipe started from the closed form.

Two engines run the recipe with the same semantics and the same noise stream: ``torch`` (autograd +
``torch.optim.RMSprop``, the reference) and ``fused`` (numba kernels, ~10x faster on CPU).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from weightlab.errors import WeightlabError
from weightlab.recast.closed_form import closed_form
from weightlab.recast.config import LOSSES, METHODS  # noqa: F401  (re-exported)
from weightlab.recast.problem import BankProblem, build_problems, fidelity, target_weights, write_back

# the fused engine sums each bank's partial results over this many chunks, whatever the thread count: its
# result is then the same on every machine and thread count (on exact fits the recipe ends on a flat
# valley of gauge directions, where rounding differences decide where it stops)
FUSED_CHUNKS = 64


@dataclass
class MimicryConfig:
    """Every hyper-parameter of the recipe. Defaults: the authors' ViT recipe."""

    iterations: int = 1000
    lr: float = 0.1
    lr_step: int = 200
    lr_gamma: float = 0.1
    loss: str = "smoothl1"
    beta: float = 1.0
    noise_std: float = 1e-4
    clip_norm: float | None = 1.0
    role_weights: dict[str, float] = field(default_factory=lambda: {"fc1": 2.0, "fc2": 2.0})
    rms_alpha: float = 0.99
    rms_eps: float = 1e-8
    keep_best: bool = True
    engine: str = "auto"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise WeightlabError(f"unknown mimicry loss '{self.loss}' (use {', '.join(LOSSES)})")
        if self.engine not in ("auto", "fused", "torch"):
            raise WeightlabError(f"unknown engine '{self.engine}' (use auto, fused or torch)")
        if self.iterations < 0 or self.lr <= 0 or self.lr_step < 1 or self.beta <= 0 or self.noise_std < 0:
            raise WeightlabError("mimicry needs iterations >= 0, lr > 0, lr_step >= 1, beta > 0, noise_std >= 0")

    @classmethod
    def for_family(cls, family, **overrides) -> MimicryConfig:
        """The authors' recipe for a model family (a name or a ``Family``), from the family table's
        ``mimicry`` (ViT: the defaults; ResNets: 3.5/2.5 loss weights, lr 0.2, StepLR(500), 3,000
        iterations, no noise; other families: the ViT recipe without role weights)."""
        from weightlab.models.families import get_family

        base = copy.deepcopy(get_family(family).mimicry)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class MimicryResult:
    method: str
    engine: str
    seconds: float
    iterations: int
    best_iteration: int | None
    final_loss: float | None
    losses: list[float]
    fidelity: dict | None = None  # relative weight error per bank and overall (weightlab.recast.problem.fidelity)

    def to_dict(self, with_history: bool = False) -> dict:
        d = dataclasses.asdict(self)
        if not with_history:
            d.pop("losses")
        return d


def reconstruct(
    original: nn.Module,
    recast_model: nn.Module,
    method: str = "recipe",
    config: MimicryConfig | None = None,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> MimicryResult:
    """Fit ``recast_model``'s banks and coefficients to ``original``'s weights, in place. The fit runs
    on ``device`` (default: the CPU) and is written back to the model wherever it is; on a GPU the
    recipe runs the torch engine (the fused engine is CPU code)."""
    from weightlab.engine import resolve_device

    if method not in METHODS:
        raise WeightlabError(f"unknown mimicry method '{method}' (use {', '.join(METHODS)})")
    config = config or MimicryConfig()
    dev = resolve_device(device)
    if dev.type == "mps":  # the closed form works in float64, which MPS does not have: fit on the CPU
        dev = torch.device("cpu")
    problems = [
        p.on(dev) for p in build_problems(recast_model, target_weights(original, recast_model), config.role_weights)
    ]
    t0 = time.perf_counter()
    if method.startswith("closed_form"):
        closed_form(problems, seed=seed)
    result = MimicryResult(method, "closed_form", 0.0, 0, None, None, [])
    if method.endswith("recipe"):
        result = run_recipe(problems, config, seed=seed, progress=progress)
        result.method = method
    result.seconds = time.perf_counter() - t0
    write_back(recast_model, problems)
    result.fidelity = fidelity(problems)  # warns when the base misses the pretrained weights
    return result


def run_recipe(
    problems: list[BankProblem], config: MimicryConfig, seed: int = 0, progress: bool = True
) -> MimicryResult:
    """Run the iterative recipe on the bank problems in place (their templates/coefficients)."""
    engine = config.engine
    on_cpu = all(p.targets.device.type == "cpu" for p in problems)
    if engine == "auto":
        engine = "fused" if on_cpu else "torch"
    if engine == "fused" and not on_cpu:
        raise WeightlabError("the fused mimicry engine runs on the CPU; use engine 'torch' (or 'auto') on a GPU")
    run = _run_fused if engine == "fused" else _run_torch
    t0 = time.perf_counter()
    losses, best_it = run(problems, config, torch.Generator().manual_seed(seed), progress)
    return MimicryResult(
        "recipe",
        engine,
        time.perf_counter() - t0,
        config.iterations,
        best_it,
        losses[best_it] if best_it is not None else (losses[-1] if losses else None),
        losses,
    )


def _noise(problems: list[BankProblem], config: MimicryConfig, gen: torch.Generator) -> list[torch.Tensor]:
    """One draw of coefficient noise per bank, in bank order, on the CPU (the same stream on every device;
    shared by both engines)."""
    if config.noise_std == 0:
        return [torch.zeros(p.coefficients.shape, dtype=p.coefficients.dtype) for p in problems]
    return [torch.randn(p.coefficients.shape, generator=gen) * config.noise_std for p in problems]


def _scales(p: BankProblem) -> np.ndarray:
    L, _, _, D = p.shape
    return np.full(L, p.loss_weight / D, dtype=np.float32)


def _torch_loss(gen_w: torch.Tensor, target: torch.Tensor, config: MimicryConfig) -> torch.Tensor:
    """Per-layer mean loss: (L,) for one bank's (L, D), (B, L) for a stack of banks."""
    if config.loss == "smoothl1":
        return F.smooth_l1_loss(gen_w, target, reduction="none", beta=config.beta).mean(-1)
    if config.loss == "mse":
        return F.mse_loss(gen_w, target, reduction="none").mean(-1)
    return F.l1_loss(gen_w, target, reduction="none").mean(-1)


def _shape_groups(problems: list[BankProblem]) -> list[list[int]]:
    """Indices of the banks that share a shape (L, K, n, D), a dtype and a device, in bank order: each
    group is one stacked tensor, so an iteration costs a few kernels per group instead of per bank."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(problems):
        groups.setdefault((p.shape, p.targets.dtype, p.targets.device), []).append(i)
    return list(groups.values())


def _all_noise(problems, config, gen, groups) -> list[torch.Tensor] | None:
    """Every iteration's coefficient noise, drawn up front in the engines' shared order (per iteration,
    per bank in bank order, on the CPU), stacked per group: (iterations + 1, B, L, K, n) on the device."""
    if config.noise_std == 0:
        return None
    per_it = [_noise(problems, config, gen) for _ in range(config.iterations + 1)]
    return [
        torch.stack([torch.stack([draw[i] for i in idx]) for draw in per_it]).to(
            problems[idx[0]].coefficients.device, non_blocking=True
        )
        for idx in groups
    ]


def _run_torch(problems, config, gen, progress):
    """The recipe with autograd and ``torch.optim.RMSprop`` on every device. Banks of one shape are
    stacked; noise is drawn up front; the loss history and the best snapshot stay on the device (no
    synchronisation per iteration, only for the progress bar every 50)."""
    groups = _shape_groups(problems)
    dev = problems[0].targets.device
    T = [torch.stack([problems[i].templates for i in idx]).requires_grad_(True) for idx in groups]  # (B, n, D)
    C = [torch.stack([problems[i].coefficients for i in idx]).requires_grad_(True) for idx in groups]  # (B,L,K,n)
    W = [torch.stack([problems[i].targets for i in idx]) for idx in groups]  # (B, L, D)
    weights = [
        torch.tensor([problems[i].loss_weight for i in idx], dtype=W[g].dtype, device=dev)[:, None]
        for g, idx in enumerate(groups)
    ]
    noise = _all_noise(problems, config, gen, groups)
    params = T + C
    opt = torch.optim.RMSprop(params, lr=config.lr, alpha=config.rms_alpha, eps=config.rms_eps)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=config.lr_step, gamma=config.lr_gamma)
    losses = torch.empty(config.iterations + 1, dtype=torch.float32, device=dev)
    best = torch.tensor(math.inf, device=dev)
    best_it = torch.tensor(-1, device=dev)
    best_state = [x.detach().clone() for x in params] if config.keep_best else None
    bar = tqdm(range(config.iterations + 1), desc="neural mimicry [torch]", disable=not progress, leave=False)
    for it in bar:
        loss = sum(
            (_torch_loss(torch.matmul(c.mean(2) if e is None else (c + e[it]).mean(2), t), w, config) * lw).sum()
            for t, c, w, lw, e in zip(T, C, W, weights, noise or [None] * len(groups))
        )
        value = loss.detach()
        losses[it] = value
        if config.keep_best:
            better = value < best
            best = torch.where(better, value, best)
            best_it = torch.where(better, it, best_it)
            for b, x in zip(best_state, params):
                b.copy_(torch.where(better, x.detach(), b))
        if it == config.iterations:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_norm is not None:
            nn.utils.clip_grad_norm_(params, config.clip_norm)
        opt.step()
        sched.step()
        if progress and it % 50 == 0:
            bar.set_postfix(loss=f"{float(value):.3e}")
    final = best_state if config.keep_best and int(best_it) >= 0 else [x.detach() for x in params]
    for g, idx in enumerate(groups):
        for j, i in enumerate(idx):
            problems[i].templates.copy_(final[g][j])
            problems[i].coefficients.copy_(final[len(groups) + g][j])
    history = losses.tolist()
    if not config.keep_best:
        return history, config.iterations
    return history, (int(best_it) if int(best_it) >= 0 else None)


def _run_fused(problems, config, gen, progress):
    import weightlab.recast.fused as fused

    kind = fused.LOSS_KINDS[config.loss]
    nchunks = FUSED_CHUNKS
    bufs = [
        [p.templates.numpy(), np.empty_like(p.templates.numpy()), np.empty_like(p.templates.numpy())] for p in problems
    ]
    V = [np.zeros_like(p.templates.numpy()) for p in problems]
    W = [p.targets.numpy() for p in problems]
    C = [p.coefficients.double().numpy().copy() for p in problems]
    VC = [np.zeros_like(c) for c in C]
    S = [_scales(p) for p in problems]
    K = [p.shape[1] for p in problems]
    mix = lambda c, e: np.ascontiguousarray((c + e.double().numpy()).mean(axis=1), dtype=np.float32)  # noqa: E731
    f32 = np.float32
    beta = f32(config.beta)

    a_cur = [mix(c, e) for c, e in zip(C, _noise(problems, config, gen))]
    stats = [fused.bank_stats(b[0], w, a, s, kind, beta, nchunks) for b, w, a, s in zip(bufs, W, a_cur, S)]
    cur = [0] * len(problems)
    best_buf = [0] * len(problems)
    best_C = [c.copy() for c in C]
    best, best_it, losses = math.inf, None, []
    bar = tqdm(range(config.iterations + 1), desc="neural mimicry [fused]", disable=not progress, leave=False)
    for it in bar:
        value = float(sum(st[0].sum() * p.loss_weight / p.shape[3] for st, p in zip(stats, problems)))
        losses.append(value)
        if value < best:
            best, best_it = value, it
            if config.keep_best:
                best_buf = list(cur)
                best_C = [c.copy() for c in C]
        if it == config.iterations:
            break
        grads_C = [st[1][:, None, :] / k * np.ones((1, k, 1)) for st, k in zip(stats, K)]
        norm = math.sqrt(sum(st[2] for st in stats) + sum(float((g * g).sum()) for g in grads_C))
        clip = min(1.0, config.clip_norm / (norm + 1e-6)) if config.clip_norm is not None else 1.0
        lr = config.lr * config.lr_gamma ** (it // config.lr_step)
        for c, vc, g in zip(C, VC, grads_C):
            g = g * clip
            vc *= config.rms_alpha
            vc += (1 - config.rms_alpha) * g * g
            c -= lr * g / (np.sqrt(vc) + config.rms_eps)
        a_next = [mix(c, e) for c, e in zip(C, _noise(problems, config, gen))]
        for b in range(len(problems)):
            out = next(i for i in range(3) if i != cur[b] and i != best_buf[b])
            stats[b] = fused.bank_step(
                bufs[b][cur[b]],
                bufs[b][out],
                V[b],
                W[b],
                a_cur[b],
                a_next[b],
                S[b],
                kind,
                beta,
                f32(clip),
                f32(lr),
                f32(config.rms_alpha),
                f32(config.rms_eps),
                nchunks,
            )
            cur[b] = out
        a_cur = a_next
        if it % 50 == 0:
            bar.set_postfix(loss=f"{value:.3e}")
    final_buf = best_buf if config.keep_best else cur
    for p, b, i, c in zip(problems, bufs, final_buf, best_C if config.keep_best else C):
        p.templates.copy_(torch.from_numpy(b[i]))
        p.coefficients.copy_(torch.from_numpy(c).float())
    return losses, best_it if config.keep_best else config.iterations
