"""Resuming never continues with other inputs, and a kill at any write boundary resumes bit for bit.

The crash-point tests run each long job in a forked process that dies (``os._exit``) right after its
k-th file is renamed into place, for k = 1, 2, ... until the job finishes before its k-th commit;
each killed folder is then resumed in a fresh fork and compared, file by file, with an uninterrupted
run (JSON without its timings, every other file byte for byte). The forks come from a *driver*: a
process spawned per test with no GPU visible and one torch thread, which runs the uninterrupted job
itself (its children then start with everything imported) and forks the others. This process is never
forked: on a GPU machine it runs CUDA and autograd threads, which a fork cannot take along. Jobs are
module-level functions (they travel to the driver by pickle) and run on the CPU.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import stat
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from weightlab.cli import main
from weightlab.data.tasks import SplitSizes, build_task
from weightlab.errors import WeightlabError
from weightlab.io import check_writable, write_json

KILLED = 86
# what differs between two runs of the same inputs: timings, the machine, how often a job was started
VOLATILE = {"wall_s", "task_wall_s", "seconds", "machine", "backends", "collections", "last_collection", "command"}


def _child_main(fn, kill_at, counts):
    torch.set_num_threads(1)
    if kill_at is not None:
        real, count = os.replace, [0]

        def replace_then_die(src, dst, *args, **kwargs):
            real(src, dst, *args, **kwargs)
            count[0] += counts(Path(dst))
            if count[0] == kill_at:
                os._exit(KILLED)

        os.replace = replace_then_die
    try:
        fn()
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def _every(dst: Path) -> bool:
    return True


_DRIVER = "WEIGHTLAB_TEST_RESUME_DRIVER"


def _in_child(fn, kill_at: int | None = None, counts=_every) -> int:
    """Run ``fn()`` in a fork of the driver; with ``kill_at`` it dies right after its kill_at-th rename (of
    those ``counts(destination)`` counts)."""
    assert os.environ.get(_DRIVER) == "1", "forks are made by the driver only (see the module's text)"
    p = multiprocessing.get_context("fork").Process(target=_child_main, args=(fn, kill_at, counts))
    p.start()
    p.join(300)
    return p.exitcode


def _driver_main(conn, fn, args):
    torch.set_num_threads(1)  # one thread: nothing runs beside the main thread when it forks
    try:
        conn.send(("ok", fn(*args)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))


def in_driver(fn, *args):
    """``fn(*args)`` (picklable) in a spawned driver process with no GPU visible; returns its result and
    fails the test with the driver's traceback."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    saved = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", _DRIVER)}
    os.environ.update({"CUDA_VISIBLE_DEVICES": "", _DRIVER: "1"})  # what the spawned driver inherits
    try:
        p = ctx.Process(target=_driver_main, args=(child, fn, args))
        p.start()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    child.close()
    try:
        status, value = parent.recv() if parent.poll(900) else ("error", "the driver sent nothing in 900 s")
    except EOFError:
        status, value = "error", "the driver died without a result"
    p.join(60)
    if status != "ok":
        pytest.fail(f"in the driver:\n{value}", pytrace=False)
    return value


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def _same_tree(ref: Path, other: Path, skip: tuple[str, ...] = ()) -> None:
    a, b = _files(ref), _files(other)
    assert sorted(a) == sorted(b), (other, sorted(set(a) ^ set(b)))
    for name, p in a.items():
        if name.endswith(skip):
            continue
        if name.endswith(".json"):  # the output folder's own path is written in some records
            x, y = (json.loads(f.read_text().replace(str(root), "OUT")) for f, root in ((p, ref), (b[name], other)))
            assert _strip(x) == _strip(y), (other, name)
        else:
            assert p.read_bytes() == b[name].read_bytes(), (other, name)


def _crash_everywhere(job, tmp_path: Path, skip: tuple[str, ...] = (), counts=_every) -> int:
    ref = tmp_path / "ref"
    job(ref)  # here, in the driver: the forks then start with everything imported
    k = 1
    while True:
        folder = tmp_path / f"killed_at_{k}"
        code = _in_child(functools.partial(job, folder), kill_at=k, counts=counts)
        if code == 0:  # the job made fewer than k commits: every boundary was tried
            return k - 1
        assert code == KILLED, f"the job failed (exit {code}) before its commit {k}"
        assert _in_child(functools.partial(job, folder)) == 0, f"the resume after commit {k} failed"
        _same_tree(ref, folder, skip)
        k += 1


def crash_everywhere(job, tmp_path: Path, skip: tuple[str, ...] = (), counts=_every) -> int:
    """Kill ``job(folder)`` (a picklable callable) after each of its commits (the renames ``counts``
    counts), resume, compare with an uninterrupted run (files ending in ``skip`` only exist); returns the
    number of boundaries tried. Runs in a driver (see the module's text)."""
    return in_driver(_crash_everywhere, job, tmp_path, skip, counts)


# -- crash points --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return build_task("digits:0-4", sizes=SplitSizes(train=64, val=0, test=40))


def _forgetting_job(digits, folder):
    from weightlab.know.forgetting import ForgetConfig, run_forgetting
    from weightlab.models import create_model

    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=5, widths=(4, 8, 8, 8), hidden=16)
    cfg = ForgetConfig(stages=3, batch_size=16, seed=1)
    run_forgetting(model, digits.train, folder, cfg, eval_data=digits.test, progress=False, device="cpu")


def test_forgetting_resumes_bit_for_bit_after_a_kill_at_every_write(tmp_path, digits):
    # subsets, then per stage: its weights, its optimiser state, the manifest that commits both
    assert crash_everywhere(functools.partial(_forgetting_job, digits), tmp_path) == 1 + 3 * 3
    assert sorted(p.name for p in (tmp_path / "ref").iterdir()) == [
        "manifest.json",
        "optimizer_02.safetensors",
        "stage_00.safetensors",
        "stage_01.safetensors",
        "stage_02.safetensors",
        "subsets.safetensors",
    ]


ADAPT = [
    "recast",
    "adapt",
    "--model",
    "resnet20",
    "--no-pretrained",
    "--tasks",
    "digits:0-2,digits:3-5",
    "--epochs",
    "1",
    "--train-size",
    "24",
    "--val-size",
    "12",
    "--test-size",
    "12",
    "--no-progress",
]


def _adapt_job(folder):
    assert main([*ADAPT, "--method", "recast", "--device", "cpu", "--out", str(folder)]) == 0


def test_sequence_loop_resumes_bit_for_bit_after_a_kill_at_every_write(tmp_path):
    # the base (RECAST model files, base.json), each task (tensors, task.json), the run summary
    assert crash_everywhere(_adapt_job, tmp_path) >= 2 + 2 * 2 + 1


def _bench_job(folder):
    from weightlab.bench.incremental import get_suite, run_suite

    suite = replace(get_suite("smoke"), sizes=SplitSizes(24, 12, 12), methods=["head", "recast"])
    run_suite(suite, folder, progress=False, device="cpu")


def test_bench_runner_resumes_bit_for_bit_after_a_kill_at_every_write(tmp_path):
    # the Markdown tables hold each run's wall time: they are rebuilt from results.json, which is compared
    assert crash_everywhere(_bench_job, tmp_path, skip=(".md",)) >= 2 + 3


def _collect_job(folder):
    from weightlab.know.meta.collect import Ranges, collect, sample_specs

    specs = sample_specs(2, seed=3, archs=["smallcnn-narrow"], ranges=Ranges(train_size=48, pretrain_epochs=1))
    collect(folder, specs, backend="serial", progress=False, device="cpu")


def _outside_scratch(dst: Path) -> bool:
    from weightlab.know.meta.collect import PARTIAL

    return PARTIAL not in dst.parts


def _inside_scratch(dst: Path) -> bool:
    return not _outside_scratch(dst)


def _kill_inside_a_trajectory(tmp_path: Path) -> None:
    inside = tmp_path / "killed_in_trajectory"
    assert _in_child(functools.partial(_collect_job, inside), kill_at=7, counts=_inside_scratch) == KILLED
    assert _in_child(functools.partial(_collect_job, inside)) == 0
    _same_tree(tmp_path / "ref", inside)


def test_meta_collection_resumes_bit_for_bit_after_a_kill_at_every_write(tmp_path):
    # the collector's commits: per run its shard and the manifest, then the call's log. A run's trajectory
    # is recorded in a scratch folder that an interrupted collection discards (its own write boundaries
    # are the forgetting test's); one kill inside it is tried as well
    assert crash_everywhere(_collect_job, tmp_path, counts=_outside_scratch) == 2 * 2 + 1
    in_driver(_kill_inside_a_trajectory, tmp_path)


# -- order independence --------------------------------------------------------------------------


def test_bench_rows_do_not_depend_on_order_subset_or_merge(tmp_path):
    from weightlab.bench.incremental import _CACHE, get_suite, merge_results, run_suite

    # hat draws its task embeddings from the global generator; recast has a base of its own in the cache
    suite = replace(get_suite("smoke"), sizes=SplitSizes(24, 12, 12), methods=["head", "hat", "recast"])

    def rows(payload):
        return {r["method"]: _strip(r) for r in payload["runs"]}

    a = rows(run_suite(suite, tmp_path / "a", progress=False))
    torch.manual_seed(123)  # whatever the global generators hold, and whatever the per-process cache holds
    np.random.seed(5)
    b = rows(run_suite(suite, tmp_path / "b", progress=False, methods=["recast", "hat", "head"]))
    _CACHE.clear()
    run_suite(suite, tmp_path / "c", progress=False, methods=["hat"])
    run_suite(suite, tmp_path / "d", progress=False, methods=["recast", "head"])
    assert merge_results(tmp_path / "c", tmp_path / "d") == 2
    c = rows(json.loads((tmp_path / "c" / "results.json").read_text()))
    assert a == b == c


# -- other inputs are refused ----------------------------------------------------------------------


def test_bench_resumes_with_the_same_weights_moved_and_refuses_other_weights(tmp_path):
    from weightlab.bench.incremental import get_suite, run_suite
    from weightlab.errors import WeightlabError
    from weightlab.io import save_tensors
    from weightlab.models import create_model

    state = create_model("resnet20", pretrained=False).state_dict()
    save_tensors(tmp_path / "a.safetensors", state)
    suite = replace(get_suite("smoke"), sizes=SplitSizes(24, 12, 12), methods=["head"])
    run_suite(replace(suite, weights=str(tmp_path / "a.safetensors")), tmp_path / "out", progress=False)
    (tmp_path / "moved").mkdir()
    (tmp_path / "a.safetensors").rename(tmp_path / "moved" / "a.safetensors")
    again = run_suite(
        replace(suite, weights=str(tmp_path / "moved" / "a.safetensors")), tmp_path / "out", progress=False
    )
    assert len(again["runs"]) == 1  # resumed: nothing to run again
    key = next(iter(state))
    state[key] = state[key] + 1
    save_tensors(tmp_path / "b.safetensors", state)
    with pytest.raises(WeightlabError, match="weights_sha256"):
        run_suite(replace(suite, weights=str(tmp_path / "b.safetensors")), tmp_path / "out", progress=False)


FORGET = ["know", "forget", "--model", "smallcnn", "--no-pretrained", "--stages", "3", "--batch-size", "32"]


def test_forget_rerun_with_other_data_or_limits_is_refused(tmp_path, capsys):
    from weightlab.know.forgetting import run_forgetting

    out = str(tmp_path / "traj")
    data = ["--data", "digits", "--limit", "120", "--eval-limit", "40", "--no-progress", "--out", out]
    # interrupted after stage 1 (stop_after), as a kill would leave it
    import weightlab.know.forgetting as forgetting

    real = run_forgetting
    forgetting.run_forgetting = lambda *a, **k: real(*a, **{**k, "stop_after": 2})
    try:
        assert main([*FORGET, *data]) == 0
    finally:
        forgetting.run_forgetting = real
    capsys.readouterr()
    for changed, named in (
        (["--data", "digits:0-8"], "data.classes"),
        (["--limit", "100"], "data.train"),
        (["--eval-limit", "30"], "data.test"),
        (["--seed", "1"], "config.seed"),
    ):
        args = [*FORGET, *data]
        for i in range(0, len(changed), 2):
            if changed[i] in args:
                args[args.index(changed[i]) + 1] = changed[i + 1]
            else:
                args += changed[i : i + 2]
        assert main(args) == 2, changed
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "other inputs" in err and named in err, err
    assert main([*FORGET, *data]) == 0  # the same command resumes
    manifest = json.loads((tmp_path / "traj" / "manifest.json").read_text())
    assert manifest["completed_stages"] == 3 and set(manifest["inputs"]) == {
        "base_sha256",
        "train_sha256",
        "eval_sha256",
    }


def test_adapt_rerun_with_other_settings_is_refused_and_a_torn_task_is_relearnt(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main([*ADAPT, "--method", "head", "--out", out]) == 0
    capsys.readouterr()
    for option, value, named in (
        ("--epochs", "2", "adapt.epochs"),
        ("--train-size", "20", "data.sizes.train"),
        ("--seed", "3", "seed"),
    ):
        args = [*ADAPT, "--method", "head", "--out", out]
        if option in args:
            args[args.index(option) + 1] = value
        else:
            args += [option, value]
        assert main(args) == 2, option
        err = capsys.readouterr().err.strip()
        assert "other inputs" in err and named in err and "\n" not in err, err
    assert main([*ADAPT, "--method", "lora", "--out", out]) == 2  # another method on the head-only base
    assert "other inputs" in capsys.readouterr().err
    # a task whose tensors do not match its task.json (a kill between the two writes) is learnt again
    task = tmp_path / "run" / "tasks" / "digits_3-5"
    before = json.loads((task / "task.json").read_text())["tensors"]
    (task / "task.safetensors").write_bytes(b"torn")
    assert main([*ADAPT, "--method", "head", "--out", out]) == 0
    assert "digits_3-5: test" in capsys.readouterr().out  # learnt, not "already learnt"
    assert json.loads((task / "task.json").read_text())["tensors"] == before  # the same task again


def test_meta_collect_refuses_other_settings_and_redoes_a_bad_shard(tmp_path, capsys):
    from weightlab.know.meta.collect import Ranges, collect, sample_specs, shard_path

    ranges = Ranges(train_size=48, pretrain_epochs=1)
    specs = sample_specs(2, seed=3, archs=["smallcnn-narrow"], ranges=ranges)
    m = collect(tmp_path, specs, backend="serial", progress=False)
    good = shard_path(tmp_path, 1).read_bytes()
    shard_path(tmp_path, 1).write_bytes(good[: len(good) // 2])  # truncated
    again = collect(tmp_path, specs, backend="serial", progress=False)
    assert again["last_collection"]["runs"] == 1 and shard_path(tmp_path, 1).read_bytes() == good
    assert again["runs"][1]["shard"] == m["runs"][1]["shard"]
    other = sample_specs(2, seed=3, archs=["mlp"], ranges=ranges)
    with pytest.raises(WeightlabError, match=r"run 0 was collected with other settings \(arch: .*--start-id 2"):
        collect(tmp_path, other, backend="serial", progress=False)


# -- caches and files ----------------------------------------------------------------------------


def test_decoded_image_folder_cache_sees_a_replaced_image(tmp_path, monkeypatch):
    from PIL import Image

    from weightlab.data.sources import load_image_folder

    monkeypatch.setenv("WEIGHTLAB_CACHE", str(tmp_path / "cache"))
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((4, 4, 3), 10 * i, np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    first = load_image_folder(tmp_path / "imgs", "t")
    img = tmp_path / "imgs" / "b" / "1.png"
    size = img.stat().st_size
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(img)  # same size on disk, other pixels
    assert img.stat().st_size == size
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))
    second = load_image_folder(tmp_path / "imgs", "t")
    assert int(first.images[3].max()) == 10 and int(second.images[3].min()) == 200
    cache = next((tmp_path / "cache" / "decoded").glob("t-*.npz"))
    cache.write_bytes(cache.read_bytes()[:100])  # a damaged copy is decoded again
    assert torch.equal(load_image_folder(tmp_path / "imgs", "t").images, second.images)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_atomic_writes_respect_the_umask(tmp_path, mask):
    from weightlab.io import save_tensors

    old = os.umask(mask)
    try:
        write_json(tmp_path / "x.json", {"a": 1})
        save_tensors(tmp_path / "x.safetensors", {"a": torch.zeros(2)})  # safetensors makes its own 0600 file
    finally:
        os.umask(old)
    for name in ("x.json", "x.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name


def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WeightlabError, match="is a file, not a folder"):
        check_writable(tmp_path / "file")
    with pytest.raises(WeightlabError, match="cannot write to the output folder"):
        check_writable(tmp_path / "file" / "sub")
    code = main(["recast", "bench", "--suite", "smoke", "--no-progress", "--out", str(tmp_path / "file" / "sub")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write to the output folder" in err and "Traceback" not in err


def test_predictions_of_another_model_are_not_mixed_into_a_folder(tmp_path, capsys):
    traj, pred = str(tmp_path / "traj"), str(tmp_path / "pred")
    assert (
        main([*FORGET, "--data", "digits", "--limit", "120", "--eval-limit", "40", "--no-progress", "--out", traj]) == 0
    )
    predict = ["know", "predict", "--trajectory", traj, "--method", "task_vector", "--out", pred]
    assert main([*predict, "--steps", "2"]) == 0
    assert main([*predict, "--steps", "1"]) == 0  # the same model: rewritten in place
    capsys.readouterr()
    assert main([*predict, "--lam", "2"]) == 2  # another model under the same name: refused
    err = capsys.readouterr().err
    assert "other inputs (inputs.options.lam: 0.2 -> 2.0)" in err and "task_vector_*.safetensors" in err, err
