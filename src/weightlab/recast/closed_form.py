"""Closed-form Neural Mimicry: the optimal rank-n factorisation of a bank's stacked weights.

Stack the L weights of a bank as W (L, D). For the MSE objective the best templates x mixing
is the truncated SVD W ~ U_n S_n V_n^T (Eckart-Young); when n >= L it is exact. (With the
authors' SmoothL1, beta=1, and every residual below 1 -- true for pretrained weights -- the loss
is 0.5 * MSE, so this is also that recipe's global optimum.) Because D >> L we eigendecompose
the L x L Gram matrix W W^T in float64 instead of running an SVD on W (with ``torch.linalg`` on
whatever device the problem's tensors are on).

The factorisation is unique only up to an invertible n x n map; we fix it so that every
template has the Frobenius norm of an average layer and the coefficients carry the spectrum.
All K coefficient sets get the same mixing vector, so their mean reproduces it exactly.
"""

from __future__ import annotations

import torch

from weightlab.recast.problem import BankProblem


@torch.no_grad()
def _fill(problem: BankProblem, W: torch.Tensor, evals: torch.Tensor, evecs: torch.Tensor, rho: float, generator):
    """Templates and coefficients of one bank from its targets ``W`` (L, D, float64, on the bank's device)
    and the eigen-decomposition of its Gram matrix (on the CPU, ascending)."""
    L, K, n, D = problem.shape
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    r = min(n, L)
    A = torch.zeros(L, n, dtype=torch.float64)
    T = torch.zeros(n, D, dtype=torch.float64, device=W.device)
    vecs = evecs.to(W.device)
    filled = [False] * n
    for i in range(r):
        s = float(evals[i].sqrt())
        if s <= 1e-12 * rho:
            continue  # rank-deficient: leave for random fill below
        T[i] = (vecs[:, i] @ W) / s * rho  # unit right singular vector, scaled to rho
        A[:, i] = evecs[:, i] * s / rho
        filled[i] = bool(A[:, i].abs().sum() != 0)
    # Templates with no share of the spectrum (n > rank): random directions of the same norm with
    # zero mixing, so reconstruction stays exact and adaptation can still use them.
    for i in range(n):
        if not filled[i]:
            v = torch.randn(D, dtype=torch.float64, generator=generator)  # on the CPU: the same on every device
            T[i] = (v / v.norm() * rho).to(W.device)
    problem.templates.copy_(T.float())
    problem.coefficients.copy_(A.float().to(W.device).unsqueeze(1).expand(L, K, n))


@torch.no_grad()
def closed_form(problems: list[BankProblem], seed: int = 0) -> None:
    """Every bank's closed form: templates and coefficients of the optimal rank-n solution. Banks of one
    shape share one batched Gram product in float64 on their device; the small L x L eigen-problems are
    solved on the CPU (no synchronisation per bank, the same decomposition on every device); random fill
    draws from one CPU generator in bank order."""
    g = torch.Generator().manual_seed(seed)
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(problems):
        groups.setdefault((tuple(p.targets.shape), p.targets.device), []).append(i)
    solved: dict[int, tuple] = {}
    for idx in groups.values():
        W = torch.stack([problems[i].targets for i in idx]).double()  # (B, L, D)
        gram = torch.matmul(W, W.transpose(1, 2)).cpu()  # (B, L, L)
        evals, evecs = torch.linalg.eigh(gram)
        rho = (gram.diagonal(dim1=1, dim2=2).sum(-1) / gram.shape[-1]).sqrt().clamp_min(1e-30)
        for j, i in enumerate(idx):
            solved[i] = (W[j], evals[j], evecs[j], float(rho[j]))
    for i, p in enumerate(problems):  # bank order: the random fill's draws do not depend on the grouping
        _fill(p, *solved[i], g)
