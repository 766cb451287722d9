"""The fair protocol's learning-rate selection (RECAST suites): each tunable row's rate chosen on
*validation* on the first seed from a grid extended past a best edge until the choice is interior, then
(rows with RECAST coefficients) the coefficients' rate at that rate. The test split never enters.

The search runs its candidate runs through a ``run(items, desc, sink)`` callable the suite runner gives
(so they spread over its backend and are kept as they finish); a row is named by its label or method."""

from __future__ import annotations

from weightlab.incremental.baselines import is_baseline, parse_baseline
from weightlab.incremental.methods import parse_method
from weightlab.tuning import extend_grid


def method_label(method: str) -> str:
    """The name a run of ``method`` is recorded under (per-task method or continual-learning baseline)."""
    return parse_baseline(method).name if is_baseline(method) else parse_method(method).name


def selection_score(record: dict) -> float:
    """What a learning rate is chosen by: the mean over tasks of each task's best *validation* accuracy
    (the epoch the learner keeps). The test split never enters."""
    vals = record.get("val_accuracy") or []
    return sum(vals) / len(vals) if vals else float("-inf")


def tunable(method: str) -> bool:
    """Rows whose rate is chosen on validation: every per-task method whose rates come from the learner
    (the continual-learning baselines and adapters that set their own rates, Piggyback, keep their recipes)."""
    return not is_baseline(method) and not parse_method(method).owns_rates


def _has_coefficients(method: str) -> bool:
    return not is_baseline(method) and parse_method(method).recast


def selection_record(
    payload: dict, name: str, lr: float | None, coef_lr: float | None, seed: int | None = None
) -> dict | None:
    if lr is None:
        return None
    for r in payload.get("selection", []):
        if (r.get("label") or r["method"]) == name and r["lr"] == lr and r.get("coef_lr") == coef_lr:
            if seed is None or r["seed"] == seed:
                return r
    return None


def choose(records: list[dict]) -> dict:
    """The record with the best :func:`selection_score`; ties go to the first (grid order)."""
    best = None
    for r in records:
        if best is None or selection_score(r) > selection_score(best):
            best = r
    return best


#: how many times the fair protocol extends a row's grid past an edge that scored best (one grid step each),
#: unless the suite says (``Suite.grid_extensions``)
MAX_GRID_EXTENSIONS = 2


def select_rates(suite, jobs: list[tuple], payload: dict, run, seed: int) -> dict[str, tuple[float, float | None]]:
    """The fair protocol's selection on the first seed: each tunable row's lr from ``suite.lr_grid``, then
    (rows with RECAST coefficients) the coefficients' lr from ``suite.coef_lr_grid`` at that lr. A row whose
    best rate is at an edge of its grid gets the next rate past that edge (the grid's step), up to
    ``suite.grid_extensions`` times (:data:`MAX_GRID_EXTENSIONS`), so that a chosen rate is inside the grid it
    was chosen from. With ``suite.head_search``, rows with coefficients then choose their own rate (the head's
    and BatchNorm's) again from the lr grid at the chosen coefficients' rate. Every selection run is kept under
    ``payload["selection"]`` (resumable); the chosen rates and each row's grid go to ``payload["chosen"]``.
    Ties go to the smaller rate. Runs on ``seed``."""
    limit = getattr(suite, "grid_extensions", MAX_GRID_EXTENSIONS)
    sel = payload.setdefault("selection", [])
    name = lambda j: j[0] or method_label(j[1])  # noqa: E731
    tuned = [j for j in jobs if tunable(j[1])]

    def rec(n: str, lr: float, clr: float | None) -> dict | None:
        return selection_record(payload, n, lr, clr, seed)

    def search(rows, grid_of, key, desc, vary=None) -> dict[str, float | None]:
        """For each row, run its grid (``key(row, value)`` -> (lr, coef_lr)) and extend it past a best edge;
        ``vary``: which of the two rates the grid varies (None: the coefficients' when set, else lr)."""
        rate = (lambda kv: kv[vary]) if vary is not None else (lambda kv: kv[1] or kv[0])  # noqa: E731
        grids = {name(j): list(grid_of(j)) for j in rows}
        extended = dict.fromkeys(grids, 0)
        while True:
            run(
                [(j, seed, *key(j, v)) for j in rows for v in grids[name(j)] if rec(name(j), *key(j, v)) is None],
                desc,
                sel.append,
            )
            best = {}
            grow = False
            for j in rows:
                values = sorted(grids[name(j)], key=lambda v: rate(key(j, v)))
                pick = choose([rec(name(j), *key(j, v)) for v in values])
                best[name(j)] = next(v for v in values if rec(name(j), *key(j, v)) is pick)
                rates = [rate(key(j, v)) for v in values]
                nxt = extend_grid(rates, rate(key(j, best[name(j)])))
                if nxt is not None and extended[name(j)] < limit:
                    grids[name(j)].append(nxt)
                    extended[name(j)] += 1
                    grow = True
            if not grow:
                return {n: (best[n], grids[n]) for n in grids}

    shared = dict(getattr(suite, "shared_lr", {}) or {})
    own = [j for j in tuned if name(j) not in shared]
    lr_pick = search(own, lambda j: suite.lr_grid, lambda j, v: (v, None), f"{suite.name}: lr selection")
    chosen = {n: (v, None) for n, (v, _) in lr_pick.items()}
    grids = {n: dict(lr_grid=g) for n, (_, g) in lr_pick.items()}
    for j in tuned:  # rows that take their own rate from another row's choice
        if name(j) in shared:
            src = shared[name(j)]
            chosen[name(j)] = (chosen[src][0], None)
            grids[name(j)] = dict(lr_from=src)
    coef_rows = [j for j in tuned if suite.coef_lr_grid and _has_coefficients(j[1])]
    if coef_rows:
        # the coefficient candidates: "the same as lr" (None) and the coefficient grid, at the row's chosen lr
        coef_pick = search(
            coef_rows,
            lambda j: [None] + [c for c in suite.coef_lr_grid if c != chosen[name(j)][0]],
            lambda j, c: (chosen[name(j)][0], c),
            f"{suite.name}: coefficient lr selection",
        )
        for n, (c, g) in coef_pick.items():
            chosen[n] = (chosen[n][0], c)
            grids[n]["coef_lr_grid"] = [x for x in g if x is not None]
        if getattr(suite, "head_search", False):
            # the row's own rate (head, BatchNorm) again, the coefficients fixed at their chosen rate
            again = [j for j in coef_rows if name(j) not in shared]
            fixed = {name(j): chosen[name(j)][1] or chosen[name(j)][0] for j in again}
            head_pick = search(
                again,
                lambda j: sorted(set(grids[name(j)]["lr_grid"])),
                lambda j, v: (v, fixed[name(j)]),
                f"{suite.name}: head lr selection at the coefficients' rate",
                vary=0,
            )
            for n, (v, g) in head_pick.items():
                chosen[n] = (v, fixed[n])
                grids[n]["head_lr_grid"] = g
    payload["chosen"] = {
        n: dict(lr=lr, coef_lr=clr, val_score=selection_score(rec(n, lr, clr)), **grids[n])
        for n, (lr, clr) in chosen.items()
    }
    return chosen
