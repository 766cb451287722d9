"""The README's Python blocks run as written: extracted in order and executed in one namespace (each
block may use what an earlier one made, as a reader running them in sequence would), from a folder
beside the shared material, so that its ``../shared`` paths resolve."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    shared = Path(os.environ.get("WEIGHTLAB_SHARED", README.parents[1] / "shared")).resolve()
    if not (shared / "models").is_dir() or not (shared / "reference").is_dir():
        pytest.skip("the README's examples read the shared models and reference weights")
    (tmp_path / "shared").symlink_to(shared)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("WEIGHTLAB_SHARED", str(shared))
    blocks = python_blocks()
    assert len(blocks) >= 4
    namespace: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)  # noqa: S102
    assert namespace["result"].zero_forgetting and 0.0 <= namespace["res"]["accuracy"] <= 100.0
