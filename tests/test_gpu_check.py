"""``scripts/gpu_check.sh --dry-run``: the GPU check's whole flow on the CPU at toy sizes (issue 34). On a
GPU machine the same script runs every check on CUDA and measures the figures against their targets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_passes_every_check_and_writes_its_record(tmp_path):
    out = tmp_path / "gpu_check.json"
    p = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(out), "--work", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHON=sys.executable),
        timeout=900,
    )
    record = json.loads(out.read_text())
    failed = {k: v["detail"] for k, v in record["checks"].items() if not v["passed"]}
    assert p.returncode == 0 and not failed, (failed, p.stdout[-2000:], p.stderr[-2000:])
    assert record["dry_run"] is True and record["device"] == "cpu" and {"torch", "cuda", "device_name"} <= set(record)
    commands = {"quickstart", "recast mimic", "recast plan", "recast adapt", "recast evaluate", "recast bench smoke",
                "know forget", "know transfer", "know bench digits-smallcnn", "know meta collect", "know meta train",
                "PEFT path"}  # fmt: skip
    assert commands <= set(record["checks"])
    assert set(record["figures"]) == {"mimicry", "known", "steps", "engine", "packing"}
    for name, v in record["verdicts"].items():  # every measured figure is judged against its target
        assert isinstance(v["met"], bool) and v["value"] > 0, name
    assert all(v["seconds"] > 0 for v in record["checks"].values())
