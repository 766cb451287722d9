"""Neural Mimicry under CPU contention: the fused (numba) and torch engines, quiet and next to busy
processes, with OpenMP's default spin-waiting and with the ``weightlab`` command's setting.

Both engines run their threads on OpenMP (torch's bundled libgomp; numba's ``omp`` threading layer
loads the same library). By default a libgomp thread that waits at a barrier spins for ~300,000
iterations before it sleeps; on an oversubscribed CPU the spinning threads take the cores the
working threads need, and every parallel region (the fused engine runs one per bank per iteration)
pays for it. ``weightlab`` sets ``GOMP_SPINCOUNT`` (unless ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` is already set) before anything loads libgomp.

Each row runs in its own process (the variables are read when libgomp loads): ResNet-56, the
cifar-resnet preset, random-init weights, timing covers the recipe's iterations only (compiled and
warmed first). The load: ``--load`` processes each multiplying 256x256 matrices on 2 torch threads.

    python benchmarks/omp_contention.py [--load 3] [--fused-iterations 200] [--torch-iterations 40]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROW = r"""
import json, sys, time, torch
from weightlab import recast
from weightlab.models import create_model
from weightlab.recast.mimicry import MimicryConfig
engine, its = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
m = create_model("resnet56", pretrained=False)
r = recast.apply_recast(m, recast.preset("cifar-resnet"))
recast.reconstruct(m, r, method="recipe", config=MimicryConfig(iterations=5, engine=engine), progress=False)
t = time.perf_counter()
recast.reconstruct(m, r, method="recipe", config=MimicryConfig(iterations=its, engine=engine), progress=False)
dt = time.perf_counter() - t
print(json.dumps(dict(engine=engine, iterations=its, seconds=dt, ms_per_iteration=1000 * dt / its)))
"""

LOAD = r"""
import time, torch
torch.set_num_threads(2)
a = torch.randn(256, 256)
while True:
    for _ in range(50):
        a @ a
"""

SETTINGS = {
    "default (libgomp spins ~300k)": {},
    "GOMP_SPINCOUNT=1000 (the weightlab command's)": {"GOMP_SPINCOUNT": "1000"},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
}


def run_row(engine: str, iters: int, env: dict) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run(
        [sys.executable, "-c", ROW, engine, str(iters)], env=base | env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from _common import command, machine, write

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load", type=int, default=3, help="busy processes (2 torch threads each) in the loaded rows")
    ap.add_argument("--fused-iterations", type=int, default=200)
    ap.add_argument("--torch-iterations", type=int, default=40)
    args = ap.parse_args()
    rows = []
    for loaded in (False, True):
        procs = [subprocess.Popen([sys.executable, "-c", LOAD]) for _ in range(args.load if loaded else 0)]
        try:
            time.sleep(3 if loaded else 0)
            for name, env in SETTINGS.items():
                for engine, iters in (("fused", args.fused_iterations), ("torch", args.torch_iterations)):
                    row = run_row(engine, iters, env) | {
                        "setting": name,
                        "load_processes": len(procs),
                        "loadavg_1min": os.getloadavg()[0],
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            for p in procs:
                p.kill()
                p.wait()
    write(
        "omp_contention.json",
        {
            "benchmark": "omp_contention",
            "machine": machine(),
            "device": "cpu",
            "command": command(),
            "model": "resnet56, cifar-resnet preset, random init",
            "rows": rows,
        },
    )


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.exit(run_script(main))
