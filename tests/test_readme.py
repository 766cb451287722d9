"""The README runs top to bottom as written: its Python blocks and its command-line blocks, extracted in README
order and run in one folder and one namespace (each block may use what an earlier one made, as a reader running
them in sequence would), from a folder beside the shared material so that its ``../shared`` paths resolve.

Command lines run in this process through ``weightlab.cli.main`` at tiny size: :data:`TINY` appends options that
shrink each command (argparse keeps the last value of an option), never changing what it does or where it
writes. A command that cannot run here (hours-long suites, a GPU, a weights file the user brings) is listed in
:data:`NOT_RUN` with the reason; any other command line in the README fails this test until it is classified.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

# (pattern of the command line, why it is not run here): checked before anything runs
NOT_RUN = [
    (r"^bash scripts/(quickstart|test)\.sh", "the README's two commands: CI and the quickstart test run them"),
    (r"^bash scripts/gpu_check\.sh", "a GPU check; its --dry-run flow is tests/test_gpu_check.py"),
    (
        r"^weightlab (recast|know) bench ",
        "a benchmark suite (minutes to hours); its runner runs at tiny size in "
        "test_incremental.py and the test_know_* files",
    ),
    (r"^bash benchmarks/", "a benchmark pipeline (hours)"),
    (r"^python benchmarks/know_candidate\.py", "needs a finished suite"),
    (r"^python scripts/device_data\.py", "copies the shared data (25 MB) for a device machine"),
    (r"--weights resnet34\.safetensors", "needs a weights file the user brings"),
]

# options appended per command so that it runs in seconds
TINY = {
    ("recast", "adapt"): ["--epochs", "1", "--train-size", "32", "--val-size", "16", "--test-size", "16"],
    ("recast", "mimic"): ["--iterations", "20", "--eval-limit", "16"],
    ("know", "pretrain"): ["--limit", "96", "--val", "32", "--epochs", "5"],
    ("know", "forget"): ["--limit", "96", "--val", "32", "--eval-limit", "32", "--epochs", "1"],
    ("know", "transfer"): [
        "--train-limit",
        "48",
        "--test-limit",
        "48",
        "--warmup-epochs",
        "1",
        "--epochs",
        "1",
        "--seeds",
        "42",
    ],
    ("know", "meta", "collect"): [
        "--runs",
        "4",
        "--train-size",
        "64",
        "--pretrain-epochs",
        "1",
        "--eval-size",
        "32",
        "--backend",
        "serial",
    ],
    ("know", "meta", "train"): ["--epochs", "1"],
}


def blocks() -> list[tuple[str, str]]:
    """Every ```python and ```bash block of the README, in order, as (kind, text)."""
    return re.findall(r"^```(python|bash)\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def command_lines(text: str) -> list[str]:
    """The commands of a bash block: continuations joined, comments and blank lines dropped."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            out.append(re.sub(r"\s+", " ", line))
    return out


def classify(line: str) -> tuple[list[str] | None, str]:
    """(argv for weightlab.cli.main, "") for a command run here, or (None, why it is not)."""
    words = shlex.split(line)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words = words[1:]  # VAR=value prefixes: the test sets WEIGHTLAB_SHARED itself
    for pattern, why in NOT_RUN:
        if re.search(pattern, " ".join(words)):
            return None, why
    assert words and words[0] == "weightlab", f"README command not classified (run or NOT_RUN): {line}"
    argv = words[1:]
    for key in sorted(TINY, key=len, reverse=True):
        if tuple(argv[: len(key)]) == key:
            argv = [*argv, *TINY[key]]
            break
    if len(argv) > 1 and "--help" not in argv and argv[:2] != ["recast", "plan"]:  # plan shows no progress
        argv.append("--no-progress")
    return argv, ""


def test_every_readme_command_is_run_or_says_why_not():
    lines = [line for kind, text in blocks() if kind == "bash" for line in command_lines(text)]
    assert len(lines) > 30
    run = [line for line in lines if classify(line)[0] is not None]
    assert len(run) >= 20, run  # most of the README runs; the rest has a stated reason


def test_readme_runs_top_to_bottom(tmp_path, monkeypatch, capsys):
    shared = Path(os.environ.get("WEIGHTLAB_SHARED", README.parents[1] / "shared")).resolve()
    if not (shared / "models").is_dir() or not (shared / "reference").is_dir() or not (shared / "data").is_dir():
        pytest.skip("the README's examples read the shared models, data and reference weights")
    from weightlab.cli import main

    (tmp_path / "shared").symlink_to(shared)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("WEIGHTLAB_SHARED", str(shared))
    namespace: dict = {}
    ran = 0
    for n, (kind, text) in enumerate(blocks(), 1):
        if kind == "python":
            exec(compile(text, f"README.md block {n}", "exec"), namespace)  # noqa: S102
            continue
        for line in command_lines(text):
            argv, _ = classify(line)
            if argv is None:
                continue
            try:
                rc = main(argv)
            except SystemExit as e:  # --help
                rc = e.code
            err = capsys.readouterr().err
            assert rc == 0, f"README block {n}: `{line}` exited {rc}: {err.strip()[-800:]}"
            ran += 1
    assert ran >= 20
    assert namespace["result"].zero_forgetting and 0.0 <= namespace["res"]["accuracy"] <= 100.0
    assert (Path("runs/r56-tasks/base/base.json")).is_file()  # mimic -> adapt chained
