"""Issue 20's interruption cases, before and after: run each case against a weightlab source tree and
record what happened (exit codes, whether the resumed output equals an uninterrupted run, ...).

    python benchmarks/resume_audit.py --before a530d36 --out benchmarks/results/resume_audit.json

``--before COMMIT`` checks that commit out into a scratch worktree and runs every case there too (each
case in a fresh process with that tree first on ``sys.path``). Data: digits (ships with scikit-learn),
and MNIST / Fashion-MNIST from ``$WEIGHTLAB_SHARED/data`` when present (the issue's own case).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from _common import before_after

ROOT = Path(__file__).resolve().parents[1]
CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def _killed(fn, after: int) -> int:
    """Run ``fn()`` in a fork that dies (os._exit) right after its ``after``-th file rename."""
    pid = os.fork()
    if pid == 0:
        import torch

        torch.set_num_threads(1)
        real, n = os.replace, [0]

        def replace(src, dst, *a, **k):
            real(src, dst, *a, **k)
            n[0] += 1
            if n[0] == after:
                os._exit(86)

        os.replace = replace
        try:
            fn()
        finally:
            os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _forget_args(data: list[str], out: Path) -> list[str]:
    return ["know", "forget", "--model", "smallcnn", "--no-pretrained", "--stages", "4", "--batch-size", "64",
            *data, "--eval-limit", "300", "--no-progress", "--out", str(out)]  # fmt: skip


def _data_pair() -> tuple[list[str], list[str], str]:
    shared = Path(os.environ.get("WEIGHTLAB_SHARED", ROOT.parent / "shared")) / "data"
    if (shared / "MNIST").is_dir() and (shared / "FashionMNIST").is_dir():
        root = ["--data-root", str(shared)]
        return (
            ["--data", "mnist", "--limit", "1500", *root],
            ["--data", "fashion_mnist", "--limit", "1500", *root],
            "mnist",
        )
    return ["--data", "digits:0-4"], ["--data", "digits:5-9"], "digits"


@case
def forget_rerun_with_other_data(tmp: Path) -> dict:
    """Killed after stage 1, rerun with other --data."""
    import torch

    from weightlab.cli import main

    torch.set_num_threads(1)
    first, other, name = _data_pair()
    out = tmp / "traj"
    # renames up to the end of stage 1: subsets, then 3 per stage
    assert _killed(lambda: main(_forget_args(first, out)), after=1 + 3 * 2) == 86
    code = main(_forget_args(other, out))
    manifest = json.loads((out / "manifest.json").read_text())
    return dict(
        data=name, exit=code, completed_stages=manifest["completed_stages"], manifest_data=manifest["data"]["name"]
    )


@case
def forget_kill_between_optimizer_and_manifest(tmp: Path) -> dict:
    """Killed after stage 1's optimiser state is in place, before its manifest; resumed."""
    import torch

    from weightlab.cli import main
    from weightlab.io import load_weights

    torch.set_num_threads(1)
    first, _, name = _data_pair()
    assert main(_forget_args(first, tmp / "whole")) == 0
    # subsets (1), stage 0 (weights, optimiser, manifest), stage 1's weights and optimiser: 6 renames
    assert _killed(lambda: main(_forget_args(first, tmp / "killed")), after=6) == 86
    assert main(_forget_args(first, tmp / "killed")) == 0
    acc = {d: [s["eval_accuracy"] for s in json.loads((tmp / d / "manifest.json").read_text())["stages"]]
           for d in ("whole", "killed")}  # fmt: skip
    a, b = (load_weights(tmp / d / "stage_03.safetensors") for d in ("whole", "killed"))
    return dict(
        data=name,
        accuracy_uninterrupted=acc["whole"],
        accuracy_resumed=acc["killed"],
        stage3_max_abs_diff=max((a[k].float() - b[k].float()).abs().max().item() for k in a),
    )


@case
def bench_method_order(tmp: Path) -> dict:
    """The smoke suite (with HAT) in two method orders, the second after other work drew from the global
    generator (as in a worker process that ran other jobs first, or a resumed suite)."""
    from dataclasses import replace

    import torch

    from weightlab.bench.incremental import get_suite, run_suite
    from weightlab.data.tasks import SplitSizes

    torch.set_num_threads(1)
    suite = replace(get_suite("smoke"), sizes=SplitSizes(48, 24, 24), methods=["head", "hat", "lora"])
    rows = []
    for n, order in enumerate((["head", "hat", "lora"], ["lora", "hat", "head"])):
        torch.rand(n * 1000)  # the generator's state after whatever ran before in this process
        payload = run_suite(suite, tmp / f"o{n}", progress=False, methods=order)
        timing = ("wall_s", "task_wall_s")
        rows.append({r["method"]: {k: v for k, v in r.items() if k not in timing} for r in payload["runs"]})
    differ = {m: sorted(k for k in rows[0][m] if rows[0][m][k] != rows[1][m].get(k)) for m in rows[0]}
    return dict(
        accuracy_first_order={m: r["accuracy_matrix"] for m, r in rows[0].items()},
        accuracy_second_order={m: r["accuracy_matrix"] for m, r in rows[1].items()},
        fields_that_differ={m: d for m, d in differ.items() if d},
        identical=rows[0] == rows[1],
    )


@case
def adapt_rerun_with_other_epochs(tmp: Path) -> dict:
    import contextlib
    import io

    from weightlab.cli import main

    args = ["recast", "adapt", "--model", "resnet20", "--no-pretrained", "--method", "head", "--tasks",
            "digits:0-2,digits:3-5", "--train-size", "40", "--val-size", "20", "--test-size", "30",
            "--no-progress", "--out", str(tmp / "run")]  # fmt: skip
    assert main([*args, "--epochs", "1"]) == 0
    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        code = main([*args, "--epochs", "3"])
    return dict(exit=code, reused_old_tasks="already learnt" in buf.getvalue(), error=err.getvalue().strip()[:300])


@case
def collect_truncated_shard_and_other_archs(tmp: Path) -> dict:
    from weightlab.know.meta.collect import Ranges, collect, sample_specs, shard_path

    ranges = Ranges(train_size=48, pretrain_epochs=1)
    specs = sample_specs(2, seed=3, archs=["smallcnn-narrow"], ranges=ranges)
    collect(tmp, specs, backend="serial", progress=False)
    good = shard_path(tmp, 1).read_bytes()
    shard_path(tmp, 1).write_bytes(good[: len(good) // 2])
    again = collect(tmp, specs, backend="serial", progress=False)
    out = dict(
        truncated_shard_recollected=again["last_collection"]["runs"] == 1 and shard_path(tmp, 1).read_bytes() == good
    )
    try:
        m = collect(tmp, sample_specs(2, seed=3, archs=["mlp"], ranges=ranges), backend="serial", progress=False)
        out.update(other_archs="ran", other_archs_runs_collected=m["last_collection"]["runs"])
    except Exception as e:  # noqa: BLE001 -- what the version under test does is the finding
        out.update(other_archs="refused", message=str(e)[:300])
    return out


@case
def imagefolder_cache_after_replacing_an_image(tmp: Path) -> dict:
    import numpy as np
    from PIL import Image

    os.environ["WEIGHTLAB_CACHE"] = str(tmp / "cache")
    from weightlab.data.sources import load_image_folder

    for c in ("a", "b"):
        (tmp / "imgs" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((4, 4, 3), 10 * i, np.uint8)).save(tmp / "imgs" / c / f"{i}.png")
    load_image_folder(tmp / "imgs", "t")
    img = tmp / "imgs" / "b" / "1.png"
    size = img.stat().st_size
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(img)
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = load_image_folder(tmp / "imgs", "t")
    return dict(same_file_size=img.stat().st_size == size, pixel_after_replace=int(again.images[3].max()), expected=200)


@case
def output_file_mode(tmp: Path) -> dict:
    from weightlab.io import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp / "x.json", {})
    finally:
        os.umask(old)
    return dict(umask="022", mode=oct((tmp / "x.json").stat().st_mode & 0o777))


@case
def bench_unwritable_out(tmp: Path) -> dict:
    from weightlab.cli import main

    (tmp / "file").write_text("x")
    start = time.perf_counter()
    code = main(["recast", "bench", "--suite", "smoke", "--methods", "head", "--no-progress", "--out",
                 str(tmp / "file" / "sub")])  # fmt: skip
    return dict(exit=code, seconds_before_the_error=round(time.perf_counter() - start, 2))


def run_case(name: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        try:
            result = CASES[name](Path(d))
        except Exception as e:  # noqa: BLE001
            result = dict(error=f"{type(e).__name__}: {e}"[:300])
        result["seconds"] = round(time.perf_counter() - start, 1)
        return result


if __name__ == "__main__":
    before_after(__file__, __doc__, CASES, run_case, "cases", "resume_audit.json")
