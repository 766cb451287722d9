"""KNOWN prediction speed on a ResNet-18-sized state dict (torchvision resnet18, 11.69M parameters).

    python benchmarks/known_speed.py [--repeats 5] [--keras-python PATH/TO/tf-venv/bin/python]

Builds a 5-stage trajectory of the resnet18 state dict (Θ^s = Θ⁰ + s·small noise; speed does not
depend on the values), then times one full KNOW prediction step (gather the sequences, run the
three hypermodels, scatter back) with weightlab's folded kernel, and the plain nn.Module for
reference. With ``--keras-python`` (a separate environment holding TensorFlow; weightlab never
depends on it) it also times the authors' Keras architecture loaded with the official weights on
the same sequences, via benchmarks/known_speed_keras.py. Target: <= 2e-7 s/parameter on 2 cores
and >= 2.5x faster than Keras. Writes benchmarks/results/known_speed.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import command, machine, write
from weightlab.know import KNOWNNet, Trajectory
from weightlab.know.kinds import param_kinds
from weightlab.know.predictors import KNOWN, load_known_set, official_known_dir
from weightlab.know.predictors.base import flat_sequences


def _trajectory(seed: int = 0, model=None) -> tuple[Trajectory, int]:
    """A 5-stage trajectory of ``model`` (default: torchvision resnet18), Θ^s = Θ⁰ + s·small noise, and its
    parameter count."""
    import torchvision

    torch.manual_seed(seed)
    model = model if model is not None else torchvision.models.resnet18()
    kinds = param_kinds(model)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    stages = [theta0] + [
        {k: (v + 1e-3 * s * torch.randn_like(v)) if v.is_floating_point() else v for k, v in theta0.items()}
        for s in range(1, 5)
    ]
    n_params = sum(p.numel() for p in model.parameters())
    return Trajectory(stages, kinds), n_params


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--keras-python", default=None, help="python of an environment with TensorFlow")
    ap.add_argument("--device", default="cpu", help="where KNOWN runs: cpu (the folded kernel), cuda, ... (batched)")
    ap.add_argument("--out", default=None, help="results file name (default known_speed[_<device>].json)")
    args = ap.parse_args()
    from weightlab.engine import resolve_device

    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    clock = [time.perf_counter()]

    def phase(text: str) -> None:  # each phase as it ends, with its time (a hang shows where it is)
        sync()
        now = time.perf_counter()
        print(f"[{now - clock[0]:8.3f} s] {text}", flush=True)
        clock[0] = now

    phase(f"start on {device}")
    traj, n_params = _trajectory()
    if device.type != "cpu":  # the trajectory kept on the device: gathering the windows costs no host work
        traj = Trajectory([{k: v.to(device) for k, v in st.items()} for st in traj.stages], traj.kinds)
    phase(f"trajectory: 5 stages of torchvision resnet18 ({n_params:,} parameters) on {device}")
    folder = official_known_dir()
    nets = load_known_set(folder) if folder is not None else {k: KNOWNNet().eval() for k in ("Conv", "FC", "Bias")}
    predictor = KNOWN(weights=nets, device=str(device))
    touched = sum(predictor.describe(traj)["touched"].values())
    phase(f"hypermodels loaded ({'official' if folder is not None else 'random'}), {touched:,} parameters to predict")
    predictor.predict(traj, 1)  # warm-up
    phase("warm-up predict step")
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        predictor.predict(traj, 1)
        times.append(time.perf_counter() - t)
    phase(f"{args.repeats} predict steps, median {statistics.median(times):.3f} s")
    # the kernel alone and the plain module on the same (N, 5) sequences
    keys = traj.keys_of(predictor.kinds)
    seq = flat_sequences(traj, keys, list(range(4, -1, -1)), torch.float32, dim=1).cpu()  # on the host
    phase(f"sequences gathered: {tuple(seq.shape)}")
    fused = nets["Conv"].fused()
    fused(seq, device=str(device))  # warm-up (and the weights' copy on a GPU)
    phase("kernel warm-up")
    kernel = []
    for _ in range(args.repeats):
        sync()
        t = time.perf_counter()
        fused(seq, device=str(device))  # on a GPU: the sequences go there and the residuals come back
        sync()
        kernel.append(time.perf_counter() - t)
    phase(f"kernel (host sequences), median {statistics.median(kernel):.4f} s")
    resident = []
    if device.type != "cpu":
        on_device = seq.to(device)
        fused(on_device)
        for _ in range(args.repeats):
            sync()
            t = time.perf_counter()
            fused(on_device)  # sequences kept on the device: no transfer
            sync()
            resident.append(time.perf_counter() - t)
        phase(f"kernel (sequences on the device), median {statistics.median(resident):.4f} s")
    net = nets["Conv"].to(device)  # the plain module on the same device, for reference
    sync()
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, seq.shape[0], 65536):
            net(seq[i : i + 65536])
    sync()
    plain = time.perf_counter() - t
    phase(f"plain nn.Module on {device}")
    result = {
        "command": command(),
        "machine": machine(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "paper_gpu_seconds_per_parameter": 2.68e-7,
        "state_dict": "torchvision resnet18",
        "parameters": n_params,
        "predicted_parameters": touched,
        "kinds": list(predictor.kinds),
        "weights": "official" if folder is not None else "random (no shared folder)",
        "predict_step_seconds": {"median": statistics.median(times), "all": times},
        "predict_step_seconds_per_parameter": statistics.median(times) / touched,
        "kernel_seconds_per_parameter": statistics.median(kernel) / seq.shape[0],
        "kernel_on_device_seconds_per_parameter": statistics.median(resident) / seq.shape[0] if resident else None,
        "plain_module_seconds_per_parameter": plain / seq.shape[0],
        "target_seconds_per_parameter": 2e-7,
    }
    if args.keras_python and folder is not None and device.type == "cpu":
        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "seq.npy", seq.numpy())
            script = Path(__file__).with_name("known_speed_keras.py")
            out = subprocess.run(
                [
                    args.keras_python,
                    str(script),
                    str(folder / "KNOWN_Conv.h5"),
                    str(Path(tmp) / "seq.npy"),
                    str(args.repeats),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            keras = json.loads(out.stdout.strip().splitlines()[-1])
            ours = nets["Conv"].fused()(seq[:4096].cpu()).numpy()
            result["keras"] = keras
            result["keras_seconds_per_parameter"] = keras["median_seconds"] / seq.shape[0]
            result["speedup_over_keras"] = keras["median_seconds"] / statistics.median(kernel)
            result["keras_max_abs_diff_first_4096"] = float(np.abs(np.asarray(keras["first_4096"]) - ours).max())
            result["keras"].pop("first_4096")
    default = "known_speed.json" if device.type == "cpu" else f"known_speed_{device.type}.json"
    path = write(args.out or default, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine",)}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.exit(run_script(main))
