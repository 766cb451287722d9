"""Learning-rate grids that cannot cap a choice: a rate chosen at a grid's edge is not known to be the
best, so both protocols (RECAST's fair suites, :mod:`weightlab.incremental.selection`; KNOW's transfer,
:func:`weightlab.know.transfer.select_lr`) extend the grid past that edge by the grid's own step, and a
choice still at an edge after the allowed extensions is flagged in the record, never reported silently."""

from __future__ import annotations


def extend_grid(rates: list[float], best: float) -> float | None:
    """The next rate past the edge of ``rates`` that ``best`` sits on (the grid's own step), or None when
    ``best`` is inside (or the grid has fewer than two rates: no step to take)."""
    rs = sorted(rates)
    if len(rs) < 2 or rs[0] < best < rs[-1]:
        return None
    nxt = rs[-1] * rs[-1] / rs[-2] if best == rs[-1] else rs[0] * rs[0] / rs[1]
    return float(f"{nxt:.3g}")


def at_edge(rates: list[float], best: float) -> bool:
    """Whether ``best`` is the smallest or largest of ``rates`` (of two or more)."""
    return extend_grid(rates, best) is not None


__all__ = ["extend_grid", "at_edge"]
