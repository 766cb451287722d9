"""The KNOW transfer benchmark (the paper's Table 1, sized for two CPU cores): the runner.

``run_suite`` does, resumably, in ``out_dir``: the KNOW protocol's steps 1-5 for every trajectory of the
suite (:func:`weightlab.know.protocol.prepare`: base, trajectory, predictions, incremental pretraining,
the real x2 weights and the controls); then ``results.json``, one transfer run per (row, seed) appended
atomically as it finishes (:mod:`weightlab.bench.runner`); then the report (``results.md`` in the Table 1
layout, the time cost of Table 7, the weight-space table, ``trajectory_pca.png`` and, with KNOWN variants,
the Table 6 layout and ``s_ablation.png``: :mod:`weightlab.bench.reports.know`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from weightlab.bench.reports.know import row_name, trajectory_infos, write_report
from weightlab.bench.runner import Results, in_order
from weightlab.bench.suites import KNOW_SUITES, get_know_suite
from weightlab.data.tasks import build_task
from weightlab.errors import WeightlabError
from weightlab.know.protocol import CONTROL_ROWS, KnowSuite, prepare, rows, split_sizes, suite_record
from weightlab.know.transfer import TransferConfig, run_transfers

SUITES = KNOW_SUITES
get_suite = get_know_suite


# the order transfer runs are done in: controls and the KNOWNs first, every trajectory of a row together,
# so a suite stopped early has its key rows complete over the trajectories (the table's order is separate)
SCHEDULE = CONTROL_ROWS + ("known_authors", "known", "task_vector", "tsv", "linear_fit", "magmax", "consensus_ta")


def _schedule_key(row: tuple[str, str, int, Path]) -> tuple:
    name = row_name(row[0])
    base = name.rsplit("_x", 1)[0] if row[2] else name
    return (SCHEDULE.index(base) if base in SCHEDULE else len(SCHEDULE), row[2], row[0])


def run_suite(
    name: str | KnowSuite,
    out_dir: str | Path,
    *,
    progress: bool = True,
    seeds: tuple[int, ...] | None = None,
    transfer_cfg: TransferConfig | None = None,
    data_root: Path | None = None,
    device: str | None = None,
    precision: str = "fp32",
    backend=None,
) -> dict:
    """Run (or resume) a KNOW suite into ``out_dir``: prepare (base, trajectory, predictions), then every
    transfer row with every seed, each run appended to results.json as it finishes (the runs spread over
    ``backend``, a :class:`weightlab.parallel.Backend`; default serial). Training runs on ``device``
    (default CPU) in ``precision``."""
    suite = name if isinstance(name, KnowSuite) else get_suite(name)
    name = suite.name
    if seeds:
        suite = replace(suite, seeds=tuple(seeds))
    if transfer_cfg is not None:
        suite = replace(suite, transfer=transfer_cfg)
    if suite.known_weights is not None and not Path(suite.known_weights).is_dir():
        raise WeightlabError(f"known_weights {suite.known_weights}: not a folder of KNOWN weights")
    for _, display, folder in suite.known_variants:
        if not Path(folder).is_dir():
            raise WeightlabError(
                f"{display}: its KNOWN weights {folder} are not a folder (run the suite from the repository root)"
            )
    record = suite_record(suite)
    store = Results(
        out_dir,
        {"suite": record, "description": suite.description, "runs": []},
        lambda kept: (
            "" if kept.get("suite") == record else "made with another suite configuration; use a new output folder"
        ),
    )
    results, out = store.payload, store.out
    target = build_task(
        suite.target,
        data_root,
        sizes=split_sizes(suite.target_train, suite.target_test, suite.target_val or 0),
        stream=suite.stream,
    )
    val = target.val if suite.target_val else None
    # the target data the transfer runs read (D⁰'s is checked by the trajectory): other data is refused
    store.check_inputs({"target_sha256": target.fingerprint()}, "resume with the same data, or use a new output folder")
    results["target"] = target.summary()  # its split sizes (a test image is 100 / test points)
    results["prepare"] = prepare(suite, out, progress, data_root, device, precision)
    results["prepare_seconds"] = round(sum(results["prepare"]["seconds"].values()), 1)
    store.save()
    model_cfg = trajectory_infos(results["prepare"])[0][1]["model"]
    done = {(r["row"], r["seed"]) for r in results["runs"]}
    table_rows = rows(suite, out)
    # in the table's order (rows, then seeds), whatever order the workers finish in
    order = in_order((row[0], seed) for row in table_rows for seed in suite.seeds)
    ordered = sorted(table_rows, key=_schedule_key)

    def transfers(seeds, rates=None) -> None:
        for record in run_transfers(
            ordered,
            model_cfg,
            target.train,
            target.test,
            suite.transfer,
            seeds,
            done=done,
            progress=progress,
            device=device,
            precision=precision,
            backend=backend,
            val=val,
            rates=rates,
        ):
            if "/" in record["row"]:
                record["trajectory"] = int(record["row"].split("/", 1)[0][1:])
            store.file(record, lambda r: order((r["row"], r["seed"])))
            store.save()

    if suite.select_once and suite.transfer.lr_grid and len(suite.seeds) > 1:
        # each row's rate chosen on its first seed, then every other seed at that rate
        transfers(suite.seeds[:1])
        first = suite.seeds[0]
        rates = {
            r["row"]: r["lr_selection"]["lr"] for r in results["runs"] if r["seed"] == first and "lr_selection" in r
        }
        transfers(suite.seeds[1:], rates)
    else:
        transfers(suite.seeds)
    write_report(results, out)
    return results
