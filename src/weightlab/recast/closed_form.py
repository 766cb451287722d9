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
def closed_form_bank(problem: BankProblem, generator: torch.Generator | None = None) -> None:
    """Fill ``problem.templates`` and ``problem.coefficients`` with the optimal rank-n solution."""
    W = problem.targets.double()
    L, K, n, D = problem.shape
    gram = W @ W.T
    evals, evecs = torch.linalg.eigh(gram)  # ascending
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    r = min(n, L)
    rho = (gram.trace() / L).sqrt().clamp_min(1e-30)  # RMS Frobenius norm of one layer
    A = torch.zeros(L, n, dtype=torch.float64, device=W.device)
    T = torch.zeros(n, D, dtype=torch.float64, device=W.device)
    for i in range(r):
        s = evals[i].sqrt()
        if s <= 1e-12 * rho:
            continue  # rank-deficient: leave for random fill below
        T[i] = (evecs[:, i] @ W) / s * rho  # unit right singular vector, scaled to rho
        A[:, i] = evecs[:, i] * s / rho
    # Templates with no share of the spectrum (n > rank): random directions of the same norm with
    # zero mixing, so reconstruction stays exact and adaptation can still use them.
    for i in range(n):
        if A[:, i].abs().sum() == 0:
            v = torch.randn(D, dtype=torch.float64, generator=generator)  # on the CPU: the same on every device
            T[i] = v / v.norm() * float(rho)
    problem.templates.copy_(T.float())
    problem.coefficients.copy_(A.float().unsqueeze(1).expand(L, K, n))


def closed_form(problems: list[BankProblem], seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in problems:
        closed_form_bank(p, g)
