"""Continual-learning metrics on an accuracy matrix R, R[i][j] = test accuracy on task j after
learning task i (j <= i; NaN above the diagonal)."""

from __future__ import annotations

from weightlab.stats import mean_std  # noqa: F401  (re-exported: the one mean ± std)


def average_accuracy(R: list[list[float]]) -> float:
    """Mean accuracy over all tasks after the last one was learnt."""
    last = R[-1]
    return sum(last) / len(last)


def backward_transfer(R: list[list[float]]) -> float:
    """BWT (Lopez-Paz & Ranzato 2017): mean over earlier tasks of R[T-1][j] - R[j][j] (0: no forgetting)."""
    t = len(R)
    if t < 2:
        return 0.0
    return sum(R[-1][j] - R[j][j] for j in range(t - 1)) / (t - 1)


def max_forgetting(R: list[list[float]]) -> float:
    """Largest drop of any task from its best accuracy to its final accuracy."""
    t = len(R)
    return max((max(R[i][j] for i in range(j, t)) - R[-1][j] for j in range(t)), default=0.0)


def zero_forgetting(R: list[list[float]]) -> bool:
    """True when every earlier task's final accuracy equals its accuracy right after it was learnt,
    exactly, at every later step."""
    return all(R[i][j] == R[j][j] for j in range(len(R)) for i in range(j, len(R)))
