"""Bad input on the command line: every case ends with exit status 2 and exactly one ``weightlab: error:``
line (never a traceback, never a run that "succeeds" on nonsense). Table-driven: add a row per new case."""

from __future__ import annotations

import errno
import json
import threading

import numpy as np
import pytest
from PIL import Image

from weightlab.cli import main, user_os_error
from weightlab.io import write_json

MIMIC = ["recast", "mimic", "--model", "resnet20", "--no-pretrained", "--method", "closed_form", "--dataset", "none"]
ADAPT = ["recast", "adapt", "--model", "resnet20", "--no-pretrained", "--tasks", "digits:0-1", "--epochs", "1"]
FORGET = ["know", "forget", "--model", "smallcnn", "--no-pretrained", "--data", "digits:0-4", "--stages", "2"]


@pytest.fixture
def places(tmp_path):
    """Paths the cases refer to: a plain file, a broken image tree, damaged trajectories and KNOWN files."""
    f = tmp_path / "a_file"
    f.write_text("x")
    tree = tmp_path / "tree"
    for c in ("cat", "dog"):
        (tree / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(tree / c / f"{i}.png")
    (tree / "dog" / "bad.jpg").write_bytes(b"this is not a jpeg")
    truncated = tmp_path / "truncated"
    for c in ("cat", "dog"):
        (truncated / c).mkdir(parents=True)
        Image.fromarray(np.full((64, 64, 3), 7, dtype=np.uint8)).save(truncated / c / "ok.png")
        Image.fromarray(np.full((64, 64, 3), 9, dtype=np.uint8)).save(truncated / c / "ok2.png")
    whole = (truncated / "cat" / "ok.png").read_bytes()
    (truncated / "dog" / "cut.png").write_bytes(whole[: len(whole) // 2])
    as_list = tmp_path / "traj_list"
    as_list.mkdir()
    (as_list / "manifest.json").write_text("[1, 2]")
    nulls = tmp_path / "traj_nulls"
    nulls.mkdir()
    write_json(
        nulls / "manifest.json",
        {"format": "weightlab.know.trajectory/1", "stage_files": [None, None], "completed_stages": 2},
    )
    import h5py

    h5 = tmp_path / "known.h5"
    with h5py.File(h5, "w") as hf:
        g = hf.create_group("dense").create_group("dense")
        g.create_dataset("bias:0", data=np.zeros(4, dtype=np.float32))  # no kernel:0
    return dict(tmp=tmp_path, file=f, tree=tree, truncated=truncated, traj_list=as_list, traj_nulls=nulls, h5=h5)


CASES = [
    # (id, argv with {placeholders}, what the one line must say)
    ("out-is-a-file", MIMIC + ["--out", "{file}"], "is a file, not a folder"),
    ("out-under-a-file", MIMIC + ["--out", "{file}/sub"], "not a folder"),
    ("seed-negative", MIMIC + ["--seed", "-1"], "argument --seed: must be an integer in [0, 4294967295]"),
    ("seed-too-big", MIMIC + ["--seed", "99999999999"], "argument --seed"),
    ("templates-word", ADAPT + ["--templates", "two"], "argument --templates: must be a positive integer"),
    ("lr-negative", ADAPT + ["--lr", "-1"], "argument --lr: must be a number > 0"),
    ("weight-decay-negative", ADAPT + ["--weight-decay", "-1"], "argument --weight-decay: must be a number >= 0"),
    ("batch-zero", ADAPT + ["--batch-size", "0"], "argument --batch-size: must be an integer >= 1"),
    ("train-size-zero", ADAPT + ["--train-size", "0"], "argument --train-size"),
    ("lr-step-negative", ADAPT + ["--lr-step", "-1"], "argument --lr-step: must be an integer >= 0"),
    ("lr-nan", ADAPT + ["--lr", "nan"], "argument --lr"),
    ("epochs-zero-adapt", ADAPT + ["--epochs", "0"], "argument --epochs"),
    ("seeds-word", ["recast", "bench", "--suite", "smoke", "--seeds", "x"], "argument --seeds"),
    ("seeds-repeat", ["recast", "bench", "--suite", "smoke", "--seeds", "1,1"], "repeats a seed"),
    ("mimic-iterations-zero", MIMIC + ["--iterations", "0"], "argument --iterations"),
    ("mimic-eval-limit-negative", MIMIC + ["--eval-limit", "-5"], "argument --eval-limit"),
    ("forget-limit-negative", FORGET + ["--limit", "-5", "--out", "{tmp}/f"], "argument --limit"),
    ("forget-eval-limit-zero", FORGET + ["--eval-limit", "0", "--out", "{tmp}/f"], "argument --eval-limit"),
    ("forget-ratio", FORGET + ["--ratio", "1", "--out", "{tmp}/f"], "argument --ratio: must be a number in (0, 1)"),
    (
        "transfer-epochs-zero",
        ["know", "transfer", "--trajectory", "{tmp}", "--task", "digits", "--epochs", "0"],
        "argument --epochs",
    ),
    ("meta-train-batch-zero", ["know", "meta", "train", "--data", "{tmp}", "--batch-size", "0"], "--batch-size"),
    ("meta-train-max-rows-zero", ["know", "meta", "train", "--data", "{tmp}", "--max-rows", "0"], "--max-rows"),
    (
        "meta-train-val-fraction",
        ["know", "meta", "train", "--data", "{tmp}", "--val-fraction", "1.5"],
        "--val-fraction",
    ),
    ("meta-train-epochs-zero", ["know", "meta", "train", "--data", "{tmp}", "--epochs", "0"], "argument --epochs"),
    (
        "meta-collect-workers-zero",
        ["know", "meta", "collect", "--out", "{tmp}/m", "--runs", "1", "--workers", "0"],
        "argument --workers",
    ),
    ("meta-collect-runs-negative", ["know", "meta", "collect", "--out", "{tmp}/m", "--runs", "-3"], "argument --runs"),
    ("unknown-command", ["recast", "nonsense"], "invalid choice"),
    (
        "corrupt-image",
        ADAPT[:6] + ["imagefolder:{tree}", "--epochs", "1", "--out", "{tmp}/a"],
        "bad.jpg: not a readable image",
    ),
    (
        "truncated-image",
        ADAPT[:6] + ["imagefolder:{truncated}", "--epochs", "1", "--out", "{tmp}/a"],
        "cut.png: not a readable image",
    ),
    ("manifest-is-a-list", ["know", "predict", "--trajectory", "{traj_list}", "--out", "{tmp}/p"], "unknown format"),
    (
        "manifest-null-files",
        ["know", "predict", "--trajectory", "{traj_nulls}", "--out", "{tmp}/p"],
        "damaged manifest",
    ),
]


@pytest.mark.parametrize("argv,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(argv, expected, places, capsys):
    argv = [a.format(**places) for a in argv]
    code = main(argv)
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert code == 2, (code, captured.err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("weightlab: error:"), captured.err[-2000:]
    assert expected in lines[0], lines[0]


def test_known_h5_missing_a_kernel_is_one_line(places):
    from weightlab.errors import WeightlabError
    from weightlab.know.hypermodel import load_keras_known

    with pytest.raises(WeightlabError, match="not found|has no kernel:0"):
        load_keras_known(places["h5"])


def test_os_errors_a_user_causes_are_named_and_programming_errors_are_not():
    assert user_os_error(PermissionError(errno.EACCES, "Permission denied", "/out")) == "/out: permission denied"
    assert "no space left" in user_os_error(OSError(errno.ENOSPC, "No space left on device", "/out/x"))
    assert user_os_error(OSError(errno.EBADF, "Bad file descriptor")) is None  # a bug: keeps its traceback


def test_a_diverging_forgetting_run_is_refused_and_writes_no_stage(tmp_path, capsys):
    out = tmp_path / "traj"
    code = main(FORGET + ["--limit", "300", "--eval-limit", "100", "--lr", "1e6", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "diverged" in err[0], err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["completed_stages"] == 1  # stage 0 (the base) only; the diverged stage left no file
    assert not (out / "stage_1.safetensors").exists()


def test_cifar_cache_extraction_tolerates_a_concurrent_winner(tmp_path, monkeypatch):
    import tarfile

    from weightlab.data import sources

    root = tmp_path / "data"
    src = tmp_path / "src" / "cifar10-jpeg"
    for split in ("train", "test"):
        (src / split / "cat").mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(src / split / "cat" / "0.jpg")
    root.mkdir()
    with tarfile.open(root / "cifar10-jpeg.tar", "w") as tf:
        tf.add(src, arcname="cifar10-jpeg")
    monkeypatch.setenv("WEIGHTLAB_CACHE", str(tmp_path / "cache"))
    results, errors = [], []
    barrier = threading.Barrier(4)

    def extract():
        try:
            barrier.wait()
            results.append(sources._cifar10_folder(root))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=extract) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1 and (results[0] / "test" / "cat" / "0.jpg").is_file()
    assert [p.name for p in results[0].parent.iterdir() if p.name.startswith(".cifar10")] == []


def test_negative_lam_is_predicted_with_a_warning_line(tmp_path, capsys):
    traj = tmp_path / "t"
    argv = FORGET + ["--limit", "64", "--eval-limit", "20", "--batch-size", "32", "--out", str(traj), "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "know",
                "predict",
                "--trajectory",
                str(traj),
                "--method",
                "task_vector",
                "--lam",
                "-1",
                "--out",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("weightlab: warning: lam = -1.0 < 0 reverses the extrapolation")


def test_mistyped_names_get_the_closest_one(capsys):
    from weightlab.cli import main

    assert main(["recst"]) == 2
    assert "invalid choice: 'recst' (did you mean 'recast'?)" in capsys.readouterr().err
    assert main(["recast", "mimic", "--model", "resnet2"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnet2' (did you mean 'resnet20'?)" in err and err.count("\n") == 1
    assert main(["recast", "mimic", "--model", "resnet2O"]) == 2  # a letter O for the zero: one edit, not two
    assert "(did you mean 'resnet20'?)" in capsys.readouterr().err
    assert main(["recast", "mimic", "--model", "qqqqqqqq"]) == 2  # nothing close: no suggestion
    assert "did you mean" not in capsys.readouterr().err


def test_every_option_has_help_and_every_command_a_description():
    import argparse

    from weightlab.cli import build_parser

    missing, undescribed = [], []

    def walk(parser, path):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    if not sub.description:
                        undescribed.append(" ".join([*path, name]))
                    walk(sub, [*path, name])
            elif a.option_strings and not a.help and "-h" not in a.option_strings:
                missing.append(f"{' '.join(path)} {a.option_strings[-1]}")

    walk(build_parser(), [])
    assert missing == [] and undescribed == []


def _leaves(parser, path=()):
    """(path, parser) of every command without subcommands."""
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for a in subs:
        for name, sub in a.choices.items():
            yield from _leaves(sub, (*path, name))


def test_a_parser_built_for_one_command_has_that_command_whole():
    """build_parser(path) stubs the commands off the path; the typed command keeps every option."""
    from weightlab.cli import build_parser

    full = dict(_leaves(build_parser()))
    assert len(full) == 13
    for path, leaf in full.items():
        built = dict(_leaves(build_parser(path)))
        assert {p[0] for p in built} == {p[0] for p in full}, path  # the other commands stay (as stubs)
        flags = lambda p: sorted(s for a in p._actions for s in a.option_strings)  # noqa: E731
        assert flags(built[path]) == flags(leaf), path
        assert built[path].description == leaf.description


def _all_leaves():
    from weightlab.cli import build_parser

    return sorted(dict(_leaves(build_parser())))


@pytest.mark.parametrize("command", [(), ("recast",), ("know",), ("know", "meta"), *_all_leaves()])
def test_help_imports_no_torch(command):
    """Every command's --help (and its parsing) runs without importing torch: the registries' names come
    from the catalogue."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom weightlab.cli import main\n"
        f"assert main({[*command, '--help']!r}) == 0\nprint('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False" and "usage: weightlab" in out


def test_the_cli_catalogue_equals_the_registries():
    from weightlab.cli import catalogue

    assert catalogue.load() == catalogue.build(), "stale catalogue: run python -m weightlab.cli.catalogue"


def test_top_level_help_imports_no_torch():
    import subprocess
    import sys

    code = "import sys\nfrom weightlab.cli import main\nassert main(['--help']) == 0\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False" and "know" in out and "recast" in out


def test_report_only_on_a_folder_that_is_not_a_suite_s_results_is_one_line(tmp_path, capsys):
    """``recast bench --report-only`` on a results.json of another shape (e.g. a record of adapt commands)
    names the file in one line instead of a traceback; without one it says to run the suite first."""
    import json

    from weightlab.cli import main

    assert main(["recast", "bench", "--suite", "smoke", "--report-only", "--out", str(tmp_path)]) == 2
    assert "no results to report" in capsys.readouterr().err
    (tmp_path / "results.json").write_text(json.dumps({"machine": {}, "runs": {"head": {"command": "x"}}}))
    assert main(["recast", "bench", "--suite", "smoke", "--report-only", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not the results of a 'weightlab recast bench' suite" in err[0]
    assert not (tmp_path / "results.md").exists()


def test_a_method_that_sets_its_own_rates_refuses_lr_instead_of_ignoring_it(tmp_path, capsys):
    """Piggyback's recipe sets every rate (its options); ``--lr`` / ``--coef-lr`` never reached it, silently.
    Now they are refused in one line, and the fair protocol does not tune it (its row: own recipe)."""
    from weightlab.cli import main
    from weightlab.incremental.selection import tunable

    for flag in ("--lr", "--coef-lr"):
        argv = ["recast", "adapt", "--model", "resnet20", "--no-pretrained", "--tasks", "digits", "--epochs", "1"]
        rc = main([*argv, "--method", "recast+piggyback", flag, "0.01", "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "sets its own learning rates" in err[0] and flag in err[0]
    assert not (tmp_path / "x").exists()
    assert not tunable("piggyback") and not tunable("recast+piggyback") and not tunable("ewc")
    assert tunable("lora") and tunable("recast") and tunable("head")


def test_a_mistyped_model_name_is_answered_without_importing_timm_once_its_names_are_cached(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\nfrom weightlab.errors import WeightlabError\nfrom weightlab.models import _split\n"
        "try:\n    _split('resnet2O')\nexcept WeightlabError as e:\n    print(e)\nprint('timm' in sys.modules)\n"
    )
    env = dict(__import__("os").environ, WEIGHTLAB_CACHE=str(tmp_path))
    first, second = (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
        for _ in range(2)
    )
    assert "did you mean 'resnet20'" in first and first.strip().endswith("True")  # timm read, its names cached
    assert "did you mean 'resnet20'" in second and second.strip().endswith("False")  # answered from the cache
    assert list(tmp_path.glob("timm-models-*.json"))
