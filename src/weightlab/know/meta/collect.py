"""Collect a KNOWN meta-dataset: many progressive-forgetting runs of small networks.

Each run draws its architecture, data set, sampling rate r, learning rate, batch size and optimiser
from stated ranges (seeded), pretrains the network on D⁰, records its stages of progressive forgetting,
and stores the meta rows (:func:`trajectory_rows`) as one shard
``runs/run_NNNNN.safetensors`` with tensors ``<Kind>_seq`` (N, 5) and ``<Kind>_target`` (N,) for
Kind in Conv / FC / Bias. ``manifest.json`` lists every finished run (its spec, row counts, bytes,
seconds). Collecting again skips finished runs (resumable) and new specs get new ids (appendable).

Two protocols (:data:`PROTOCOLS`):

* ``v1``: 3 epochs of Adam 1e-3 on 2,000 samples, then ``S + 1 = 6`` stages. The base has not
  converged, so its stages keep learning: retrodiction there means "rewind training".
* ``faithful`` (the KNOW paper's Sec. 4 and 5.1, weightlab's v2): the base is trained to convergence on
  D⁰ (cosine decay to zero, train-time augmentation: crop for grey digits, crop + flip for CIFAR-10),
  then ``S + 2 = 7`` stages with the same augmentation; each run records D⁰ test accuracy per stage
  and whether it fell (``forgetting`` in its manifest record).

Runs execute in parallel on a local Ray runtime (``backend="ray"``; the same code on a Ray
cluster with ``address=``), on local worker processes (``"processes"``) or in-process (``"serial"``);
``"auto"`` takes Ray when it is installed.
"""

from __future__ import annotations

import math
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from weightlab.errors import WeightlabError
from weightlab.io import (
    check_writable,
    differences,
    file_matches,
    file_record,
    read_json,
    save_tensors,
    write_json,
)
from weightlab.parallel import Backend, run_jobs

MANIFEST = "manifest.json"
PARTIAL = ".partial"  # trajectories of runs in progress; left over only by an interrupted collection
# architecture -> (registered model, create_model kwargs); all run at the data set's resolution and channels
META_ARCHS = {
    "smallcnn": ("smallcnn", {}),
    "mobilenet-tiny": ("mobilenet_tiny", {"width": 0.5}),
    "densenet-tiny": ("densenet_tiny", {"growth": 8, "layers": (2, 2, 2)}),
    "smallcnn-narrow": ("smallcnn", {"widths": (4, 8, 16, 16), "hidden": 32}),
    "smallcnn-nonorm": ("smallcnn", {"norm": False}),
    "resnet8": ("resnet8", {}),
    "mlp": ("mlp", {"hidden": (128, 64)}),
    "convmixer-tiny": ("convmixer64_d4_k5_p4", {}),
}
INPUT_SIZES = {"digits": (1, 16, 16), "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


@dataclass
class Ranges:
    """Where each run's settings are drawn from (the KNOW paper's Sec. 5.1 and the reference notes)."""

    ratio: tuple[float, float] = (0.3, 0.9)  # uniform
    lr: tuple[float, float] = (1e-5, 4e-3)  # log-uniform
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256)
    optimizers: tuple[str, ...] = ("adam", "sgd")
    train_size: int = 2000  # D⁰ samples per run
    pretrain_epochs: int = 3
    protocol: str = "v1"
    stages: int = 6
    forget_epochs: tuple[int, ...] = (1,)  # epochs per forgetting stage, drawn per run
    eval_size: int = 0  # D⁰ test samples for the per-stage accuracy (0: not measured)


PROTOCOLS = {
    "v1": Ranges(),
    "faithful": Ranges(
        train_size=4000, pretrain_epochs=30, protocol="faithful", stages=7, forget_epochs=(1, 2, 3), eval_size=1000
    ),
}
# train-time augmentation of the faithful protocol, per data set (no flips for digits)
AUGMENT = {"digits": "crop", "mnist": "crop", "fashion_mnist": "crop_flip", "cifar10": "crop_flip"}
PRETRAIN = dict(lr=3e-3, optimizer="adam", schedule="cosine", batch_size=128)  # the faithful base's recipe


@dataclass
class RunSpec:
    run_id: int
    arch: str
    dataset: str
    ratio: float
    lr: float
    batch_size: int
    optimizer: str
    seed: int
    train_size: int
    pretrain_epochs: int
    stages: int = 6
    extra: dict = field(default_factory=dict)
    protocol: str = "v1"
    forget_epochs: int = 1
    eval_size: int = 0


def sample_specs(
    n: int, *, seed: int = 0, start_id: int = 0, archs=None, datasets=None, ranges: Ranges | None = None
) -> list[RunSpec]:
    ranges = ranges or Ranges()
    if ranges.protocol not in PROTOCOLS:
        raise WeightlabError(f"unknown collection protocol '{ranges.protocol}' (use one of {', '.join(PROTOCOLS)})")
    archs = list(archs or META_ARCHS)
    datasets = list(datasets or ["digits"])
    bad = [a for a in archs if a not in META_ARCHS] + [d for d in datasets if d not in INPUT_SIZES]
    if bad:
        raise WeightlabError(
            f"unknown architecture/data set {', '.join(bad)} (architectures: "
            f"{', '.join(META_ARCHS)}; data sets: {', '.join(INPUT_SIZES)})"
        )
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        lo, hi = ranges.lr
        specs.append(
            RunSpec(
                run_id=start_id + i,
                arch=rng.choice(archs),
                dataset=rng.choice(datasets),
                ratio=round(rng.uniform(*ranges.ratio), 4),
                lr=float(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.3g}"),
                batch_size=rng.choice(ranges.batch_sizes),
                optimizer=rng.choice(ranges.optimizers),
                seed=rng.randrange(2**31),
                train_size=ranges.train_size,
                pretrain_epochs=ranges.pretrain_epochs,
                stages=ranges.stages,
                protocol=ranges.protocol,
                # drawn only when there is a choice: v1's specs (one value) stay those of earlier collections
                forget_epochs=rng.choice(ranges.forget_epochs)
                if len(ranges.forget_epochs) > 1
                else ranges.forget_epochs[0],
                eval_size=ranges.eval_size,
            )
        )
    return specs


def shard_path(out: Path, run_id: int) -> Path:
    return out / "runs" / f"run_{run_id:05d}.safetensors"


def collect_run(spec: RunSpec, out_dir: str | Path, data_root: str | None = None, device: str | None = None) -> dict:
    """One run: pretrain, forget (S+1 stages) on ``device`` (default CPU), write its shard. Returns its
    manifest record."""
    from weightlab.data import load_dataset
    from weightlab.engine import fit_classifier
    from weightlab.know.forgetting import MANIFEST as FORGET_MANIFEST
    from weightlab.know.forgetting import ForgetConfig, run_forgetting
    from weightlab.know.meta.rows import trajectory_rows
    from weightlab.models import create_model

    torch.set_num_threads(1)
    start = time.perf_counter()
    out = Path(out_dir)
    train = load_dataset(spec.dataset, "train", data_root, limit=spec.train_size, seed=spec.seed)
    test = (
        load_dataset(spec.dataset, "test", data_root, limit=spec.eval_size, seed=spec.seed) if spec.eval_size else None
    )
    torch.manual_seed(spec.seed)
    name, kwargs = META_ARCHS[spec.arch]
    model = create_model(name, num_classes=len(train.classes), input_size=INPUT_SIZES[spec.dataset], **kwargs)
    augment = AUGMENT[spec.dataset] if spec.protocol == "faithful" else None
    (out / PARTIAL).mkdir(parents=True, exist_ok=True)
    record: dict = {}
    with tempfile.TemporaryDirectory(dir=out / PARTIAL) as tmp:
        if spec.protocol == "faithful":
            from weightlab.know.pretrain import PretrainConfig, pretrain

            pcfg = PretrainConfig(epochs=spec.pretrain_epochs, augment=augment, seed=spec.seed, **PRETRAIN)
            info = pretrain(model, train, Path(tmp) / "base", pcfg, val=test, progress=False, device=device)
            record["pretrain"] = {
                "converged": info.get("converged"),
                "test_accuracy": [round(h["val_accuracy"], 2) for h in info["history"] if "val_accuracy" in h][-5:],
            }
        else:
            fit_classifier(
                model,
                train,
                model.weightlab_cfg,
                epochs=spec.pretrain_epochs,
                lr=1e-3,
                batch_size=64,
                seed=spec.seed,
                progress=False,
                device=device,
            )
        cfg = ForgetConfig(
            ratio=spec.ratio,
            stages=spec.stages,
            epochs=spec.forget_epochs,
            lr=spec.lr,
            batch_size=spec.batch_size,
            optimizer=spec.optimizer,
            seed=spec.seed,
            augment=augment,
        )
        traj = run_forgetting(
            model, train, Path(tmp) / "trajectory", cfg, eval_data=test, progress=False, device=device
        )
        if test is not None:
            manifest = read_json(Path(tmp) / "trajectory" / FORGET_MANIFEST)
            record["eval_accuracy"] = [round(st["eval_accuracy"], 2) for st in manifest["stages"]]
            record["forgetting"] = manifest.get("forgetting")
    rows = trajectory_rows(traj)
    tensors = {}
    for kind, (seq, target) in rows.items():
        tensors[f"{kind}_seq"], tensors[f"{kind}_target"] = seq, target
    path = shard_path(out, spec.run_id)
    save_tensors(path, tensors)
    return {
        "spec": asdict(spec),
        **record,
        "rows": {k: int(v[0].shape[0]) for k, v in rows.items()},
        "bytes": path.stat().st_size,
        "shard": file_record(path),  # verified when a later call reuses the run
        "seconds": round(time.perf_counter() - start, 2),
    }


def collect(
    out_dir: str | Path,
    specs: list[RunSpec],
    *,
    backend: str = "auto",
    workers: int = 2,
    address: str | None = None,
    data_root: str | None = None,
    command: str | None = None,
    progress: bool = True,
    device: str | None = None,
    gpus_per_job: float = 0.0,
    time_budget: float | None = None,
) -> dict:
    """Run every spec whose shard is not there yet (on ``backend``, see :mod:`weightlab.parallel`; each
    run on ``device``, one torch thread per run); the manifest is rewritten after each run and
    every call is logged in ``collections`` (with ``command``, for the model card). With
    ``time_budget`` (seconds) no run is started after that long: runs in flight finish, the rest are
    left for a later call (``stopped_early`` in the log)."""
    from tqdm.auto import tqdm

    backend = Backend(backend, workers, address, gpus_per_job).resolved().kind
    out = check_writable(out_dir)
    manifest = read_json(out / MANIFEST) if (out / MANIFEST).is_file() else {"runs": []}
    done = finished_runs(out, manifest, specs)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / PARTIAL, ignore_errors=True)  # one collector per folder: whatever is there was interrupted
    todo = [s for s in specs if s.run_id not in done]
    bar = tqdm(total=len(todo), desc="collecting runs", disable=not progress)

    def record(rec: dict) -> None:
        manifest["runs"] = [r for r in manifest["runs"] if r["spec"]["run_id"] != rec["spec"]["run_id"]] + [rec]
        write_json(out / MANIFEST, manifest)
        bar.update()

    start = time.perf_counter()
    jobs = [(s, str(out), data_root, device) for s in todo]
    results = run_jobs(collect_run, jobs, Backend(backend, workers, address, gpus_per_job, threads=1))
    finished = 0
    for _, rec in results:
        record(rec)
        finished += 1
        if time_budget is not None and time.perf_counter() - start > time_budget:
            results.close()  # drops the runs not started; runs in flight finish unrecorded (a later call redoes them)
            break
    bar.close()
    new = {s.run_id for s in todo} & {r["spec"]["run_id"] for r in manifest["runs"]}
    manifest["last_collection"] = {
        "backend": backend,
        "workers": workers,
        "runs": len(new),
        "stopped_early": len(new) < len(todo),
        "rows": sum(sum(r["rows"].values()) for r in manifest["runs"] if r["spec"]["run_id"] in new),
        "seconds": round(time.perf_counter() - start, 2),
        "command": command,
    }
    manifest.setdefault("collections", []).append(manifest["last_collection"])
    write_json(out / MANIFEST, manifest)
    return manifest


def finished_runs(out: Path, manifest: dict, specs: list[RunSpec]) -> set[int]:
    """The ids of ``specs`` already collected in ``out``: recorded with the same settings and a shard that
    matches its record (size and sha256; a truncated or replaced shard is collected again). A run id
    recorded with other settings is refused: new runs get new ids (``start_id``)."""
    recorded = {r["spec"]["run_id"]: r for r in manifest["runs"]}
    names = {f.name for f in fields(RunSpec)}  # settings added later: their defaults (earlier collections')
    done = set()
    for spec in specs:
        rec = recorded.get(spec.run_id)
        if rec is None:
            continue
        stored = asdict(RunSpec(**{k: v for k, v in rec["spec"].items() if k in names}))
        diff = differences(stored, asdict(spec))
        if diff:
            free = max(recorded) + 1
            raise WeightlabError(
                f"{out}: run {spec.run_id} was collected with other settings ({'; '.join(diff[:3])}); append new "
                f"runs with --start-id {free} (the next free id), or use another folder"
            )
        if file_matches(shard_path(out, spec.run_id), rec.get("shard") or {"bytes": rec.get("bytes")}):
            done.add(spec.run_id)
    return done


def load_rows(
    out_dir: str | Path, kind: str, run_ids: list[int] | None = None, *, per_run: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the ``kind`` rows of the given runs (all finished runs by default); ``per_run``
    keeps a seeded random sample of at most that many rows of each run, so that one large network
    does not outweigh the others."""
    from weightlab.io import load_weights

    out = Path(out_dir)
    manifest = read_json(out / MANIFEST)
    ids = run_ids if run_ids is not None else [r["spec"]["run_id"] for r in manifest["runs"]]
    seqs, targets = [], []
    for i in ids:
        t = load_weights(shard_path(out, i))
        if f"{kind}_seq" in t:
            seq, target = t[f"{kind}_seq"], t[f"{kind}_target"]
            if per_run is not None and seq.shape[0] > per_run:
                idx = torch.randperm(seq.shape[0], generator=torch.Generator().manual_seed(seed * 100_003 + i))
                seq, target = seq[idx[:per_run]], target[idx[:per_run]]
            seqs.append(seq)
            targets.append(target)
    if not seqs:
        raise WeightlabError(f"{out}: no {kind} rows in runs {ids[:5]}")
    return torch.cat(seqs), torch.cat(targets)
