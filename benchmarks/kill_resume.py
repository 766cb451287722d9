"""kill -9 at random moments, then rerun: does every resumable command end bit-identical to an uninterrupted run?

For each command (``know forget``, ``recast adapt``, ``recast bench``, ``know meta collect``, on tiny
settings): one uninterrupted reference run; then ``--kills`` runs, each SIGKILLed at a uniformly random
moment within the reference's wall time and rerun to the end. Every output file is compared with the
reference: tensors (safetensors) bit for bit, JSON with the fields that record time, machine or command
line left out, anything else byte for byte.

    python benchmarks/kill_resume.py --kills 5      # -> benchmarks/results/kill_resume.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file

from _common import command, machine, write

EXE = [str(Path(sys.executable).parent / "weightlab")]  # the console script of this environment
COMMANDS = {
    "know forget": "know forget --model smallcnn --no-pretrained --data digits:0-4 --limit 600 --eval-limit 200 "
    "--stages 4 --epochs 2 --seed 0 --no-progress --out {out}",
    "recast adapt": "recast adapt --model resnet20 --no-pretrained --tasks digits:0-1,digits:2-3,digits:4-5 "
    "--method recast --epochs 2 --train-size 200 --val-size 50 --test-size 100 --seed 0 --no-progress --out {out}",
    "recast bench": "recast bench --suite smoke --backend serial --no-progress --out {out}",
    "know meta collect": "know meta collect --runs 3 --archs mlp --backend serial --no-progress --out {out}",
}
# "backends" / "collections" / "last_collection" log every invocation that worked on a folder (a resumed run
# adds its own entry): provenance, not results
VOLATILE = (
    "seconds",
    "wall",
    "time",
    "machine",
    "argv",
    "command",
    "elapsed",
    "started",
    "finished",
    "date",
    "backends",
    "collection",
)


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items() if not any(w in k.lower() for w in VOLATILE)}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def _snapshot(folder: Path) -> dict[str, object]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        rel = p.relative_to(folder).as_posix()
        if p.suffix == ".safetensors":
            out[rel] = {k: v.numpy().tobytes() for k, v in load_file(p).items()}
        elif p.suffix == ".json":  # paths inside name the run's own folder: the same file, not a difference
            out[rel] = _clean(json.loads(p.read_text().replace(str(folder), "OUT")))
        elif p.suffix in (".png", ".md", ".log"):
            continue  # plots and text renderings are drawn from the JSON compared above
        else:
            out[rel] = p.read_bytes()
    return out


def _diff(a: dict, b: dict) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [k for k in keys if a.get(k) != b.get(k)]


def _run(cmd: str, out: Path, kill_after: float | None = None) -> tuple[int | None, float]:
    args = EXE + cmd.format(out=out).split()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WEIGHTLAB_CACHE": os.environ.get("WEIGHTLAB_CACHE", "")}
    env = {k: v for k, v in env.items() if v != ""}
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None, time.perf_counter() - t0
    err = proc.communicate()[1]
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd}: exit {proc.returncode}: {err.decode()[-500:]}")
    return proc.returncode, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="comma-separated command names")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = []
    names = [n for n in COMMANDS if args.only is None or n in args.only.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            cmd = COMMANDS[name]
            ref = Path(tmp) / name.replace(" ", "_") / "reference"
            _, ref_wall = _run(cmd, ref)
            want = _snapshot(ref)
            trials = []
            for k in range(args.kills):
                out = Path(tmp) / name.replace(" ", "_") / f"kill{k}"
                at = rng.uniform(0.05, 0.95) * ref_wall
                finished, _ = _run(cmd, out, kill_after=at)
                _run(cmd, out)  # the rerun resumes to the end
                diff = _diff(want, _snapshot(out))
                trials.append(dict(kill_at_s=round(at, 2), killed=finished is None, differing_files=diff))
                print(f"{name}: kill at {at:.1f} s -> {'identical' if not diff else f'DIFFERS: {diff}'}", flush=True)
                shutil.rmtree(out, ignore_errors=True)
            rows.append(
                dict(
                    command="weightlab " + cmd.format(out="OUT"),
                    reference_wall_s=round(ref_wall, 1),
                    kills=len(trials),
                    identical=sum(not t["differing_files"] for t in trials),
                    trials=trials,
                )
            )
    path = Path(__file__).resolve().parent / "results" / "kill_resume.json"
    if args.only and path.is_file():  # a rerun of some commands keeps the other commands' rows
        done = {r["command"] for r in rows}
        rows = [r for r in json.loads(path.read_text())["rows"] if r["command"] not in done] + rows
    write("kill_resume.json", dict(machine=machine(), device="cpu", command=command(), rows=rows))


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.exit(run_script(main))
