"""Shared helpers for benchmarks: machine description and atomic JSON output."""

from __future__ import annotations

import sys
from pathlib import Path

from weightlab.machine import machine  # noqa: F401  (re-exported for the benchmarks)

RESULTS = Path(__file__).resolve().parent / "results"


def command() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])


def write(name: str, payload: dict) -> Path:
    from weightlab.io import write_json

    path = RESULTS / name
    write_json(path, payload)
    return path


def before_after(script: str, doc: str, items: dict, run_item, key: str, out_name: str) -> None:
    """The main of a before/after audit. ``--item NAME`` runs one item in this process and prints its JSON
    (the child). Otherwise every item runs in a fresh process against this checkout's ``src`` ("after")
    and, with ``--before COMMIT``, against that commit checked out into a scratch worktree ("before"),
    each with its tree first on ``sys.path``; the result goes to ``results/<out_name>``."""
    import argparse
    import json
    import os
    import subprocess
    import tempfile

    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    ap.add_argument("--item", choices=sorted(items))
    ap.add_argument("--before", help="the commit to compare with (checked out into a scratch worktree)")
    ap.add_argument("--out", type=Path, default=RESULTS / out_name)
    args = ap.parse_args()
    if args.item:
        print(json.dumps(run_item(args.item), default=str))
        return

    def audit(src: Path) -> dict:
        env = dict(os.environ, PYTHONPATH=str(src))
        out = {}
        for name in items:
            p = subprocess.run([sys.executable, script, "--item", name], env=env, capture_output=True, text=True)
            lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
            out[name] = json.loads(lines[-1]) if lines else dict(error=(p.stderr.strip().splitlines() or ["?"])[-1])
            print(src, name, out[name], file=sys.stderr)
        return out

    from weightlab.io import write_json

    root = Path(script).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    result = dict(
        machine=machine(),
        device="cpu",
        command=f"python benchmarks/{Path(script).name}" + (f" --before {args.before}" if args.before else ""),
        after={"commit": head.stdout.strip(), key: audit(root / "src")},
    )
    if args.before:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(["git", "worktree", "add", "--detach", d, args.before], cwd=root, check=True)
            try:
                result["before"] = {"commit": args.before, key: audit(Path(d) / "src")}
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", d], cwd=root, check=False)
    write_json(args.out, result)
    print(f"wrote {args.out}")
