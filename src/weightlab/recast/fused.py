"""Fused CPU kernels for the Neural Mimicry recipe (numba, parallel over chunks of each bank).

One pass over a bank per iteration does everything the recipe needs for it: the RMSprop update
of the templates with the (clipped) gradient at the current point, then the loss, the template
gradient norm and the coefficient gradient at the *next* point -- so the global gradient norm for
clipping is known before the next update. Reads T, W and the RMSprop state once, writes T and the
state once: the minimum traffic for an exact RMSprop on every template element. Loops run over
contiguous blocks so LLVM vectorises them.

All element arithmetic is float32 (scalars are passed as float32); per-block sums are added
into float64 partials. Loss kinds: 0 SmoothL1 (beta), 1 MSE, 2 L1 -- each a mean over the elements of one module weight.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

BLOCK = 512
LOSS_KINDS = {"smoothl1": 0, "mse": 1, "l1": 2}


@njit(inline="always", fastmath=True, error_model="numpy")
def _residual(r, T, W, a, l, b0, m):
    w = W[l, b0 : b0 + m]
    for j in range(m):
        r[j] = -w[j]
    for i in range(T.shape[0]):
        ai = a[l, i]
        t = T[i, b0 : b0 + m]
        for j in range(m):
            r[j] += ai * t[j]


@njit(inline="always", fastmath=True, error_model="numpy")
def _loss_and_grad(r, m, kind, beta, scale):
    """Return sum of the loss over r[:m]; overwrite r with d(loss)/dr * scale."""
    acc = np.float32(0.0)
    one = np.float32(1.0)
    if kind == 0:
        inv = one / beta
        for j in range(m):
            x = r[j]
            ax = abs(x)
            mm = min(ax, beta)
            acc += mm * (ax - np.float32(0.5) * mm) * inv
            r[j] = min(max(x * inv, -one), one) * scale
    elif kind == 1:
        for j in range(m):
            x = r[j]
            acc += x * x
            r[j] = np.float32(2.0) * x * scale
    else:
        for j in range(m):
            x = r[j]
            acc += abs(x)
            r[j] = (one if x > 0 else (-one if x < 0 else np.float32(0.0))) * scale
    return acc


@njit(inline="always", fastmath=True, error_model="numpy")
def _block_grad(T, W, a, scale, kind, beta, b0, m, r, g):
    """Template gradient g over one block (no statistics)."""
    n = T.shape[0]
    for i in range(n):
        for j in range(m):
            g[i, j] = 0.0
    for l in range(W.shape[0]):
        _residual(r, T, W, a, l, b0, m)
        _loss_and_grad(r, m, kind, beta, scale[l])
        for i in range(n):
            ai = a[l, i]
            gi = g[i]
            for j in range(m):
                gi[j] += ai * r[j]


@njit(inline="always", fastmath=True, error_model="numpy")
def _block_stats(T, W, a, scale, kind, beta, b0, m, r, g, ploss, pga, c):
    """Loss per layer, coefficient gradient per layer and template gradient g over one block."""
    n = T.shape[0]
    for i in range(n):
        for j in range(m):
            g[i, j] = 0.0
    for l in range(W.shape[0]):
        _residual(r, T, W, a, l, b0, m)
        ploss[c, l] += _loss_and_grad(r, m, kind, beta, scale[l])
        for i in range(n):
            ai = a[l, i]
            t = T[i, b0 : b0 + m]
            gi = g[i]
            s = np.float32(0.0)
            for j in range(m):
                s += r[j] * t[j]
                gi[j] += ai * r[j]
            pga[c, l, i] += s


@njit(parallel=True, fastmath=True, cache=True, error_model="numpy")
def bank_stats(T, W, a, scale, kind, beta, nchunks):
    """Per-layer loss (L,), coefficient-mixing gradient (L, n) and squared template-gradient norm."""
    n, D = T.shape
    L = W.shape[0]
    ploss = np.zeros((nchunks, L))
    pga = np.zeros((nchunks, L, n))
    pnorm = np.zeros(nchunks)
    chunk = (D + nchunks - 1) // nchunks
    for c in prange(nchunks):
        r = np.empty(BLOCK, dtype=np.float32)
        g = np.empty((n, BLOCK), dtype=np.float32)
        lo = c * chunk
        hi = min(D, lo + chunk)
        for b0 in range(lo, hi, BLOCK):
            m = min(BLOCK, hi - b0)
            _block_stats(T, W, a, scale, kind, beta, b0, m, r, g, ploss, pga, c)
            acc = np.float32(0.0)
            for i in range(n):
                gi = g[i]
                for j in range(m):
                    acc += gi[j] * gi[j]
            pnorm[c] += acc
    return ploss.sum(axis=0), pga.sum(axis=0), pnorm.sum()


@njit(parallel=True, fastmath=True, cache=True, error_model="numpy")
def bank_step(T_in, T_out, V, W, a_cur, a_next, scale, kind, beta, clip, lr, alpha, eps, nchunks):
    """RMSprop step of the templates with ``clip`` x the gradient at (T_in, a_cur), written to
    T_out, then the statistics of :func:`bank_stats` at (T_out, a_next)."""
    n, D = T_in.shape
    L = W.shape[0]
    ploss = np.zeros((nchunks, L))
    pga = np.zeros((nchunks, L, n))
    pnorm = np.zeros(nchunks)
    chunk = (D + nchunks - 1) // nchunks
    one = np.float32(1.0)
    for c in prange(nchunks):
        r = np.empty(BLOCK, dtype=np.float32)
        g = np.empty((n, BLOCK), dtype=np.float32)
        lo = c * chunk
        hi = min(D, lo + chunk)
        for b0 in range(lo, hi, BLOCK):
            m = min(BLOCK, hi - b0)
            _block_grad(T_in, W, a_cur, scale, kind, beta, b0, m, r, g)
            for i in range(n):
                gi = g[i]
                vi = V[i, b0 : b0 + m]
                ti = T_in[i, b0 : b0 + m]
                to = T_out[i, b0 : b0 + m]
                for j in range(m):
                    gg = gi[j] * clip
                    v = alpha * vi[j] + (one - alpha) * gg * gg
                    vi[j] = v
                    to[j] = ti[j] - lr * gg / (np.sqrt(v) + eps)
            _block_stats(T_out, W, a_next, scale, kind, beta, b0, m, r, g, ploss, pga, c)
            acc = np.float32(0.0)
            for i in range(n):
                gi = g[i]
                for j in range(m):
                    acc += gi[j] * gi[j]
            pnorm[c] += acc
    return ploss.sum(axis=0), pga.sum(axis=0), pnorm.sum()
