"""Devices, mixed precision and parallel backends (issue 15). CI has no GPU: every entry point is checked to
take a device (a CUDA device on this machine is one clear error, raised before any work; the CPU puts model
and batches on it), mixed precision trains on the CPU, and the device-only code paths (the KNOWN kernel's
batched path, problems moved off their device) run here on the CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from weightlab.data import SplitSizes, build_sequence, load_dataset
from weightlab.engine import (
    Precision,
    evaluate_accuracy,
    make_optimizer,
    module_device,
    place,
    resolve_device,
    tensor_batches,
    train_epoch,
)
from weightlab.errors import WeightlabError
from weightlab.models import create_model

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def digits_tasks():
    return build_sequence("digits", None, SplitSizes(60, 30, 60))


def _tiny_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return x, y


# -- precision ------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_mixed_precision_trains_a_tiny_model(precision):
    x, y = _tiny_problem()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = make_optimizer("adam", model.parameters(), lr=1e-2)
    prec = Precision(precision, "cpu")
    before = evaluate_accuracy(model, tensor_batches(x, y, 64), precision=prec)
    losses = [train_epoch(model, tensor_batches(x, y, 32, torch.randperm(256)), opt, precision=prec) for _ in range(15)]
    after = evaluate_accuracy(model, tensor_batches(x, y, 64), precision=prec)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] * 0.5
    assert after > max(before, 90.0)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, not a cast of the weights
    if precision == "fp16":
        assert prec.scaler is not None and prec.scaler.get_scale() > 0  # one scaler kept over the epochs


def test_autocast_really_runs_in_low_precision():
    seen = []
    model = nn.Linear(8, 2)
    model.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x, y = _tiny_problem()
    evaluate_accuracy(model, tensor_batches(x, y, 256), precision="bf16")
    evaluate_accuracy(model, tensor_batches(x, y, 256), precision="fp32")
    assert seen == [torch.bfloat16, torch.float32]


def test_bad_precision_and_device_are_one_clear_error():
    from weightlab.incremental import AdaptConfig

    with pytest.raises(WeightlabError, match="unknown precision 'fp8'"):
        Precision("fp8")
    with pytest.raises(WeightlabError, match="unknown precision"):
        AdaptConfig(precision="half")
    with pytest.raises(WeightlabError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")


# -- every entry point takes a device ---------------------------------------------------------------


def _entry_points(digits_tasks, tmp_path):
    """name -> fn(device) for every API entry point that trains or evaluates."""
    from weightlab.bench.incremental import suite_run
    from weightlab.bench.suites import get_suite
    from weightlab.engine import fit_classifier
    from weightlab.incremental import AdaptConfig, TaskModel, learn_task, parse_method
    from weightlab.incremental.baselines import run_baseline
    from weightlab.know.forgetting import ForgetConfig, incremental_pretraining, run_forgetting
    from weightlab.know.meta.collect import RunSpec, collect_run
    from weightlab.know.meta.train import MetaTrainConfig, train_known
    from weightlab.know.transfer import TransferConfig, transfer
    from weightlab.recast.pipeline import recast_base

    tasks = digits_tasks
    train = load_dataset("digits", "train", limit=64)
    small = lambda: create_model("smallcnn", num_classes=10, input_size=(1, 8, 8))  # noqa: E731
    adapt = lambda d: AdaptConfig(epochs=1, batch_size=32, device=d)  # noqa: E731
    spec = RunSpec(0, "mlp", "digits", 0.5, 1e-3, 32, "adam", 0, 64, 1, stages=3)
    rows = (torch.randn(64, 5), torch.randn(64))
    return {
        "learn_task": lambda d: learn_task(
            TaskModel.from_base(create_model("resnet20"), parse_method("head")), tasks[0], adapt(d), progress=False
        ),
        "baseline (own loop)": lambda d: run_baseline(
            create_model("resnet20"), "derpp", tasks, adapt(d), seed=0, progress=False
        ),
        "baseline (Avalanche)": lambda d: run_baseline(
            create_model("resnet20"), "lwf", tasks, adapt(d), seed=0, progress=False
        ),
        "run_forgetting": lambda d: run_forgetting(
            small(), train, tmp_path / f"traj-{d}", ForgetConfig(stages=2), progress=False, device=d
        ),
        "incremental_pretraining": lambda d: incremental_pretraining(
            small(), train, ForgetConfig(stages=2), progress=False, device=d
        ),
        "transfer": lambda d: transfer(
            small().state_dict(),
            small().weightlab_cfg,
            train,
            train,
            TransferConfig(warmup_epochs=1, epochs=1),
            progress=False,
            device=d,
        ),
        "fit_classifier": lambda d: fit_classifier(
            m := small(), train, m.weightlab_cfg, epochs=1, progress=False, device=d
        ),
        "collect_run": lambda d: collect_run(spec, tmp_path / f"meta-{d}", device=d),
        "train_known": lambda d: train_known(rows, rows, MetaTrainConfig(epochs=1), progress=False, device=d),
        "recast_base": lambda d: recast_base(create_model("resnet20"), {}, device=d),
        "suite_run": lambda d: suite_run(get_suite("smoke"), None, "head", {}, 0, device=d),
    }


@pytest.mark.skipif(not NO_CUDA, reason="checks the error of a CUDA device on a machine without one")
def test_every_entry_point_takes_a_device(digits_tasks, tmp_path):
    """A CUDA device here is one clear error from every entry point: the device reaches the engine."""
    import importlib.util

    for name, run in _entry_points(digits_tasks, tmp_path).items():
        if "Avalanche" in name and importlib.util.find_spec("avalanche") is None:
            continue
        with pytest.raises(WeightlabError, match="no CUDA GPU"):
            run("cuda")
            pytest.fail(f"{name} ignored its device")


def test_entry_points_put_model_and_batches_on_the_device(digits_tasks, monkeypatch):
    """On the CPU: the engine moves the model with ``place`` and every batch reaches the model on the
    model's device."""
    import weightlab.engine.loop as loop
    from weightlab.incremental import AdaptConfig, TaskModel, learn_task, parse_method

    placed = []
    real_place = loop.place
    monkeypatch.setattr("weightlab.incremental.learner.place", lambda m, d: placed.append(str(d)) or real_place(m, d))
    tm = TaskModel.from_base(create_model("resnet20"), parse_method("lora"))
    seen = []
    tm.backbone.register_forward_pre_hook(lambda m, args: seen.append((args[0].device, module_device(m))))
    learn_task(tm, digits_tasks[0], AdaptConfig(epochs=1, batch_size=32, device="cpu"), progress=False)
    assert placed == ["cpu"]
    assert seen and all(x == p == torch.device("cpu") for x, p in seen)


def test_task_model_follows_a_conversion():
    """``.to()`` / ``.double()`` replace buffers: the stored task tensors follow and switching still works."""
    from weightlab.incremental import AdaptConfig, TaskModel, accuracy, learn_task, parse_method

    tasks = build_sequence("digits", None, SplitSizes(60, 30, 60))
    tm = TaskModel.from_base(create_model("resnet20"), parse_method("lora"))
    for t in tasks:
        learn_task(tm, t, AdaptConfig(epochs=1, batch_size=32), progress=False)
    before = [accuracy(tm, t.name, t.test) for t in tasks]
    tm.double()
    assert all(v.dtype == torch.float64 for st in tm.task_states.values() for v in st.values() if v.is_floating_point())
    tm.float()
    bufs = dict(tm.backbone.named_buffers())
    assert all(tm._live[k] is bufs[k] for k in bufs)  # the live view is the module's tensors again
    assert [accuracy(tm, t.name, t.test) for t in tasks] == before


def test_place_moves_only_when_needed():
    m = nn.Linear(2, 2)
    w = m.weight
    assert place(m, None) == torch.device("cpu") and place(m, "cpu") == torch.device("cpu")
    assert m.weight is w


# -- device-only code paths, run on the CPU ---------------------------------------------------------


def test_known_batched_device_path_matches_the_cpu_kernel():
    from weightlab.know.hypermodel import KNOWNNet

    torch.manual_seed(0)
    for conv in ("raw", "normalized"):
        net = KNOWNNet(conv).eval()
        seq = torch.randn(5000, 5) * 0.1
        cpu = net.fused()(seq, chunk=512)
        batched = net.fused()._call_on_device(seq, torch.device("cpu"), 1200)  # the GPU path's code
        with torch.no_grad():
            ref = net(seq)
        torch.testing.assert_close(batched, cpu, rtol=0, atol=1e-6)
        torch.testing.assert_close(batched, ref, rtol=0, atol=1e-5)


def test_fused_mimicry_refuses_a_gpu_and_problems_move():
    from weightlab.recast.config import preset
    from weightlab.recast.mimicry import MimicryConfig, run_recipe
    from weightlab.recast.problem import build_problems, target_weights
    from weightlab.recast.tuner import apply_recast

    plain = create_model("resnet20")
    rm = apply_recast(plain, preset("cifar-resnet", templates=2, layers_per_group=2))
    problems = build_problems(rm, target_weights(plain, rm))
    assert problems[0].on(torch.device("cpu")) is problems[0]
    moved = [p.on(torch.device("meta")) for p in problems]
    assert all(p.targets.device.type == "meta" and p.templates.device.type == "meta" for p in moved)
    with pytest.raises(WeightlabError, match="fused mimicry engine runs on the CPU"):
        run_recipe(moved, MimicryConfig(iterations=1, engine="fused"), progress=False)


def test_closed_form_on_a_device_equals_the_cpu(monkeypatch):
    """``reconstruct(device=...)`` gives the same RECAST model as the default (here both on the CPU)."""
    from weightlab.recast.pipeline import recast_base

    plain = create_model("resnet20")
    a, b = recast_base(plain, {}), recast_base(plain, {}, device="cpu")
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


# -- CLI ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not NO_CUDA, reason="checks the error of a CUDA device on a machine without one")
def test_cli_device_without_gpu_is_one_line(capsys, tmp_path):
    from weightlab.cli import main

    rc = main(["know", "forget", "--model", "smallcnn", "--data", "digits", "--device", "cuda", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no CUDA GPU" in err[0]
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_cli_trains_in_bf16(tmp_path):
    from weightlab.cli import main
    from weightlab.io import read_json

    rc = main(
        [
            "recast", "adapt", "--model", "resnet20", "--no-pretrained", "--tasks", "digits:0-4", "--method", "head",
            "--epochs", "1", "--train-size", "60", "--val-size", "30", "--test-size", "60", "--precision", "bf16",
            "--device", "auto", "--out", str(tmp_path), "--no-progress",
        ]
    )  # fmt: skip
    assert rc == 0
    meta = read_json(tmp_path / "tasks" / "digits_0-4" / "task.json")
    # auto is the GPU where there is one
    assert meta["metrics"]["adapt"]["precision"] == "bf16" and meta["metrics"]["adapt"]["device"] == str(
        resolve_device("auto")
    )


# -- parallel backends --------------------------------------------------------------------------------


def _square_after_training(seed: int, n: int) -> list[float]:
    """A deterministic job: a seeded tiny training run (module level, so that workers can import it)."""
    torch.manual_seed(seed)
    x, y = _tiny_problem(seed)
    model = nn.Linear(8, 2)
    opt = make_optimizer("sgd", model.parameters(), lr=0.1)
    for _ in range(n):
        train_epoch(model, tensor_batches(x, y, 32), opt)
    return [float(v) for v in model.weight.detach().reshape(-1)]


def test_backends_give_the_serial_results():
    from weightlab.parallel import Backend, run_jobs

    jobs = [(s, 2) for s in range(4)]
    serial = dict(run_jobs(_square_after_training, jobs, Backend("serial", threads=1)))
    procs = dict(run_jobs(_square_after_training, jobs, Backend("processes", workers=2)))
    assert procs == serial
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # one runtime for both calls
    try:
        ray_results = dict(run_jobs(_square_after_training, jobs, Backend("ray", workers=2)))
        assert ray_results == serial
        with pytest.raises(WeightlabError, match="^unknown architecture 'x'$"):  # the job's own error line
            list(run_jobs(_raise_clear_error, [(1,)], Backend("ray", workers=1)))
    finally:
        ray.shutdown()


def test_backend_errors():
    from weightlab.parallel import Backend, run_jobs

    with pytest.raises(WeightlabError, match="unknown backend 'mpi'"):
        Backend("mpi")
    with pytest.raises(WeightlabError, match="workers must be >= 1"):
        Backend("processes", workers=0)
    assert list(run_jobs(_square_after_training, [], Backend("processes"))) == []
    with pytest.raises(WeightlabError, match="unknown architecture"):
        list(run_jobs(_raise_clear_error, [(1,)], Backend("processes", workers=1)))


def _raise_clear_error(_):
    raise WeightlabError("unknown architecture 'x'")


def test_suite_runs_in_suite_order_and_resume_with_processes(tmp_path):
    """A suite on two worker processes gives the serial suite's results file (bit for bit, up to timings
    and the backend record), with its runs in the suite's order."""
    from dataclasses import replace

    from weightlab.bench.incremental import run_suite
    from weightlab.bench.suites import get_suite
    from weightlab.parallel import Backend

    suite = replace(get_suite("smoke"), methods=["head", "recast"], sizes=SplitSizes(60, 30, 60))
    from weightlab.io import read_json, write_json

    a = run_suite(suite, tmp_path / "a", progress=False, seeds=(0, 1), backend=Backend("serial", threads=1))
    partial = read_json(tmp_path / "a" / "results.json")  # a suite stopped after its seed-0 runs
    partial["runs"] = [r for r in partial["runs"] if r["seed"] == 0]
    write_json(tmp_path / "b" / "results.json", partial)
    b = run_suite(suite, tmp_path / "b", progress=False, seeds=(0, 1), backend=Backend("processes", workers=2))
    strip = lambda runs: [{k: v for k, v in r.items() if "wall" not in k} for r in runs]  # noqa: E731
    assert [(r["method"], r["seed"]) for r in b["runs"]] == [("head", 0), ("head", 1), ("recast", 0), ("recast", 1)]
    assert strip(b["runs"]) == strip(a["runs"])


# -- streaming data -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """A small ImageFolder tree (train / test, 3 classes of 12x10 RGB PNGs) written from random pixels."""
    from PIL import Image

    root = tmp_path_factory.mktemp("folder")
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 7), ("test", 3)):
        for c in ("cat", "dog", "eel"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                px = torch.randint(0, 256, (10, 12, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(px).save(root / split / c / f"{i:03d}.png")
    return root


def _all(batches):
    return [(x.clone(), y.clone()) for x, y in batches]


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_gives_the_in_memory_batches(image_folder, workers):
    from weightlab.data.sources import load_image_folder
    from weightlab.data.streaming import StreamingImages

    mem = load_image_folder(image_folder / "train", "t")
    stream = StreamingImages.image_folder(image_folder / "train", workers=workers)
    assert stream.classes == mem.classes and torch.equal(stream.labels, mem.labels)
    cfg = create_model("resnet20").weightlab_cfg  # 3x32x32, CIFAR normalisation
    for shuffle, seed in ((False, 0), (True, 0), (True, 5)):
        a = _all(mem.batches(4, cfg, shuffle=shuffle, seed=seed))
        b = _all(stream.batches(4, cfg, shuffle=shuffle, seed=seed))
        assert len(a) == len(b) == 6
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(ya, yb) and torch.equal(xa, xb)
    sub = torch.tensor([1, 4, 20])
    a, b = _all(mem.subset(sub).batches(8, cfg)), _all(stream.subset(sub).batches(8, cfg))
    assert torch.equal(a[0][0], b[0][0])


def test_streaming_tasks_and_torchvision_folders(image_folder, tmp_path):
    from weightlab.data import build_task, load_dataset
    from weightlab.data.streaming import StreamingImages

    spec = f"imagefolder:{image_folder}:0,2"
    mem = build_task(spec, sizes=SplitSizes(None, 4, None))
    st = build_task(spec, sizes=SplitSizes(None, 4, None), stream=dict(workers=0))
    assert isinstance(st.train, StreamingImages) and st.classes == mem.classes == ["cat", "eel"]
    assert (len(st.train), len(st.val), len(st.test)) == (len(mem.train), len(mem.val), len(mem.test)) == (10, 4, 6)
    for part in ("train", "val", "test"):
        (xa, ya), (xb, yb) = next(getattr(mem, part).batches(64)), next(getattr(st, part).batches(64))
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(WeightlabError, match="CIFAR100 in"):
        load_dataset("tv:CIFAR100", "train", tmp_path)
    with pytest.raises(WeightlabError, match="no data set 'NotASet'"):
        load_dataset("tv:NotASet", "train", tmp_path)


@pytest.mark.parametrize("augment", ["crop_flip", "resized_crop"])
def test_augmentation_is_seeded_and_only_on_training_batches(image_folder, augment):
    from weightlab.data.streaming import StreamingImages

    cfg = create_model("resnet20").weightlab_cfg
    plain = StreamingImages.image_folder(image_folder / "train")
    aug = plain.with_options(augment=augment, workers=2)
    a = _all(aug.batches(8, cfg, shuffle=True, seed=1))
    b = _all(aug.with_options(workers=0).batches(8, cfg, shuffle=True, seed=1))
    c = _all(plain.batches(8, cfg, shuffle=True, seed=1))
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b))  # the same in any worker
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(a, c))  # and really augmented
    assert all(x.shape == (len(y), 3, 32, 32) for x, y in a)
    evaluation = _all(aug.batches(8, cfg, shuffle=False))
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(evaluation, _all(plain.batches(8, cfg))))
    with pytest.raises(WeightlabError, match="unknown augmentation"):
        plain.with_options(augment="mixup")


def test_learning_on_a_streamed_augmented_task(image_folder):
    from weightlab.data import build_task
    from weightlab.incremental import AdaptConfig, TaskModel, learn_task, parse_method

    task = build_task(
        f"imagefolder:{image_folder}", sizes=SplitSizes(None, 3, None), stream=dict(workers=0, augment="crop_flip")
    )
    tm = TaskModel.from_base(create_model("resnet20"), parse_method("head"))
    res = learn_task(tm, task, AdaptConfig(epochs=2, batch_size=8), progress=False)
    assert len(res.history) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in res.history)


# -- paper-scale suites -------------------------------------------------------------------------------


def test_paper_scale_suites_are_complete_and_say_what_they_need(tmp_path, image_folder):
    from dataclasses import replace

    from weightlab.bench.incremental import _tasks, run_suite
    from weightlab.bench.suites import KNOW_SUITES, SUITES, get_suite
    from weightlab.data import parse_task_spec

    for name in ("paper-table1-resnet34", "paper-table2-vits"):
        suite = get_suite(name)
        assert suite.needs_weights and suite.stream["augment"] == "resized_crop" and suite.epochs == 100
        specs = suite.sequence.split(",")
        assert len(specs) == 6 and all(s.startswith("imagefolder:{data}/") for s in specs)
        with pytest.raises(WeightlabError, match="needs the pretrained weights as a file"):
            run_suite(suite, tmp_path / name, progress=False)
        # {data} is the data root; the trees stream from disk
        tiny = replace(suite, sequence="imagefolder:{data}:0-1", sizes=SplitSizes(None, 2, None))
        (task,) = _tasks(tiny, image_folder)
        assert task.dataset == f"imagefolder:{image_folder}" and task.classes == ["cat", "dog"]
        assert type(task.train).__name__ == "StreamingImages" and task.train.augment == "resized_crop"
    assert {"paper-table1-resnet34", "paper-table2-vits"} <= set(SUITES.names())
    know = KNOW_SUITES.get("paper-table1-resnet18")
    assert (know.source, know.target, know.model) == ("tv:CIFAR100", "tv:CIFAR10", "tv:resnet18")
    assert parse_task_spec("tv:CIFAR100:0-4") == ("tv:CIFAR100", [0, 1, 2, 3, 4])
    assert parse_task_spec("imagefolder:/a/b") == ("imagefolder:/a/b", None)


def test_the_command_limits_openmp_spinning_unless_the_user_chose(monkeypatch):
    import os

    from weightlab.cli import GOMP_SPINCOUNT, main

    for var in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(var, raising=False)
    assert main(["--version"]) == 0
    assert os.environ["GOMP_SPINCOUNT"] == GOMP_SPINCOUNT
    monkeypatch.setenv("GOMP_SPINCOUNT", "50000")
    main(["--version"])
    assert os.environ["GOMP_SPINCOUNT"] == "50000"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    main(["--version"])
    assert "GOMP_SPINCOUNT" not in os.environ


def test_learning_through_torch_compile_equals_eager(monkeypatch):
    """``AdaptConfig(compile=True)`` trains through ``torch.compile(model)`` (here with dynamo's eager backend,
    which traces the model without generating code): the same task as without it."""
    from weightlab.incremental import AdaptConfig, TaskModel, learn_task, parse_method
    from weightlab.recast.pipeline import recast_base

    task = build_sequence("digits", None, SplitSizes(40, 20, 20))[0]
    compiled = []
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(m) or real(m, backend="eager"))
    base = recast_base(create_model("resnet20"), {})
    heads = []
    for on in (False, True):
        tm = TaskModel.from_base(base, parse_method("recast"))
        cfg = AdaptConfig(epochs=2, batch_size=16, compile=on)
        learn_task(tm, task, cfg, progress=False)
        heads.append(tm.heads[task.name].state_dict())
        assert ("compile" in cfg.to_dict()) is on  # recorded only when on
    assert len(compiled) == 1
    for k, v in heads[0].items():
        torch.testing.assert_close(heads[1][k], v, rtol=1e-5, atol=1e-6)
