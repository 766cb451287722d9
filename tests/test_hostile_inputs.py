"""Hostile inputs, by family (issue 37): what real users hand weightlab. Every case either ends in one
``weightlab: error:`` line with exit 2 (a :class:`WeightlabError` from the API) or does the right thing and
says so. A new case joins its family's table by one line; ``tests/test_bad_inputs.py`` holds the earlier
option cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from weightlab.cli import main
from weightlab.data import build_task, load_dataset
from weightlab.data.tasks import SplitSizes
from weightlab.errors import WeightlabError, WeightlabNotice


def _tree(root, classes, n=3, value=0):
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = np.full((8, 8, 3), (value + 20 * ci + 3 * i) % 256, dtype=np.uint8)
            Image.fromarray(img).save(root / c / f"{i}.png")
    return root


def _run(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


# -- image trees -----------------------------------------------------------------------------------
def _mismatched(tmp):
    _tree(tmp / "t" / "train", ["a", "b"])
    _tree(tmp / "t" / "test", ["x", "y", "z"])
    return tmp / "t"


def _empty_class(tmp):
    _tree(tmp / "t", ["a", "c"])
    (tmp / "t" / "b").mkdir()
    return tmp / "t"


def _one_class(tmp):
    return _tree(tmp / "t", ["only"])


def _test_only(tmp):
    return _tree(tmp / "t" / "test", ["a", "b"]).parent


def _single_image_class(tmp):
    _tree(tmp / "t", ["a"])
    _tree(tmp / "t", ["b"], n=1)
    return tmp / "t"


# (id, builds the tree under tmp, what the error says)
IMAGE_TREE_ERRORS = [
    ("train-and-test-classes-differ", _mismatched, "both need the same class folders"),
    ("empty-class-folder", _empty_class, "class folder has no images"),
    ("one-class", _one_class, "one class (only) is not a classification task"),
    ("test-but-no-train", _test_only, "has test/ but no train/"),
    ("one-image-cannot-be-split", _single_image_class, "one image cannot be split"),
]


@pytest.mark.parametrize("build,expected", [c[1:] for c in IMAGE_TREE_ERRORS], ids=[c[0] for c in IMAGE_TREE_ERRORS])
def test_image_tree_errors_are_one_line(build, expected, tmp_path, capsys):
    tree = build(tmp_path)
    with pytest.raises(WeightlabError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        build_task(f"imagefolder:{tree}", sizes=SplitSizes(None, 0, None))
    argv = ["recast", "adapt", "--model", "resnet20", "--no-pretrained", "--tasks", f"imagefolder:{tree}"]
    code, err = _run(argv + ["--epochs", "1", "--out", tmp_path / "out", "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("weightlab: error:") and expected in err, err


def test_a_tree_without_test_folder_holds_out_a_seeded_split_and_says_so(tmp_path, capsys):
    tree = _tree(tmp_path / "flat", ["a", "b"], n=10)
    with pytest.warns(WeightlabNotice, match="no test/ folder: a seeded fifth of every class"):
        train = load_dataset(f"imagefolder:{tree}", "train")
        test = load_dataset(f"imagefolder:{tree}", "test")
    assert (len(train), len(test)) == (16, 4) and train.classes == test.classes == ["a", "b"]
    rows = lambda a: {tuple(x.flatten().tolist()) for x in a.images}  # noqa: E731
    assert not rows(train) & rows(test)  # never the training images as the test split
    assert sorted(test.labels.tolist()) == [0, 0, 1, 1]  # a fifth of every class
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = load_dataset(f"imagefolder:{tree}", "test")
    assert torch.equal(again.images, test.images)  # seeded: the same split every time
    # with train/ but no test/: the same
    _tree(tmp_path / "split" / "train", ["a", "b"], n=5)
    with pytest.warns(WeightlabNotice):
        assert len(load_dataset(f"imagefolder:{tmp_path / 'split'}", "test")) == 2
    argv = ["recast", "adapt", "--model", "resnet20", "--no-pretrained", "--tasks", f"imagefolder:{tree}"]
    code, err = _run(argv + ["--epochs", "1", "--out", tmp_path / "out", "--no-progress"], capsys)
    assert code == 0 and "weightlab: note: imagefolder:" in err and "Traceback" not in err


def test_hidden_folders_and_files_are_not_classes_or_images(tmp_path):
    tree = _tree(tmp_path / "t" / "train", ["a", "b"]).parent
    _tree(tree / "test", ["a", "b"])
    (tree / "train" / ".ipynb_checkpoints").mkdir()
    (tree / "train" / "a" / ".thumb.png").write_bytes((tree / "train" / "a" / "0.png").read_bytes())
    task = build_task(f"imagefolder:{tree}", sizes=SplitSizes(None, 0, None))
    assert task.classes == ["a", "b"] and len(task.train) == 6 and len(task.test) == 6


@pytest.mark.parametrize("name", ["with space", "dots.in.it", "ünïcødé", "colon:0-1", "a:b"])
def test_paths_as_users_have_them(tmp_path, name):
    tree = tmp_path / name
    _tree(tree / "train", ["a", "b"])
    _tree(tree / "test", ["a", "b"])
    task = build_task(f"imagefolder:{tree}", sizes=SplitSizes(None, 0, None))
    assert task.classes == ["a", "b"] and len(task.test) == 6
    # a class list after the path still selects
    if not name.startswith("colon"):
        assert build_task(f"imagefolder:{tree}:0-1", sizes=SplitSizes(None, 0, None)).classes == ["a", "b"]


def test_one_class_of_a_data_set_is_refused_and_a_huge_class_list_is_a_short_line(capsys):
    with pytest.raises(WeightlabError, match="one class is not a classification task"):
        build_task("digits:3")
    code, err = _run(
        ["recast", "adapt", "--model", "resnet20", "--no-pretrained", "--tasks", "digits:0-300000"], capsys
    )
    assert code == 2 and err.count("\n") == 1 and len(err) < 300, err[:300]


# -- trajectories and manifests ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def trajectory(tmp_path_factory):
    """A real 3-stage trajectory of a tiny CNN on digits, made by ``know forget``."""
    out = tmp_path_factory.mktemp("traj") / "t"
    argv = ["know", "forget", "--model", "smallcnn", "--no-pretrained", "--input-size", "1,8,8"]
    argv += ["--data", "digits:0-4", "--limit", "120", "--stages", "3", "--batch-size", "32", "--out", str(out)]
    assert main(argv + ["--no-progress"]) == 0
    return out


def _copy(trajectory, tmp):
    import shutil

    return shutil.copytree(trajectory, tmp / "copy")


def _edit_manifest(change):
    def edit(traj):
        import json

        meta = json.loads((traj / "manifest.json").read_text())
        change(meta, traj)
        (traj / "manifest.json").write_text(json.dumps(meta))

    return edit


def _swap_stages(traj):
    a, b = traj / "stage_01.safetensors", traj / "stage_02.safetensors"
    tmp = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(tmp)


def _retype_stage(traj):
    from weightlab.io import load_weights, save_tensors

    s = load_weights(traj / "stage_01.safetensors")
    save_tensors(traj / "stage_01.safetensors", {k: v.double() if v.is_floating_point() else v for k, v in s.items()})


def _outside(meta, traj):
    meta["stage_files"][1] = "../elsewhere.safetensors"


def _absolute(meta, traj):
    meta["stage_files"][1] = str(traj / "stage_01.safetensors")


# (id, what is done to a copy of a good trajectory, what the one error line says)
TRAJECTORY_ERRORS = [
    ("stages-swapped", _swap_stages, "not the stage the manifest recorded"),
    ("stage-retyped", _retype_stage, "not the stage the manifest recorded"),
    ("stage-outside-the-folder", _edit_manifest(_outside), "is not a file name in the folder"),
    ("stage-absolute-path", _edit_manifest(_absolute), "is not a file name in the folder"),
    ("ratio-negative", _edit_manifest(lambda m, t: m["config"].update(ratio=-0.5)), "config.ratio must be a number"),
    ("ratio-zero", _edit_manifest(lambda m, t: m["config"].update(ratio=0)), "config.ratio must be a number"),
    ("ratio-word", _edit_manifest(lambda m, t: m["config"].update(ratio="half")), "config.ratio must be a number"),
    ("config-a-list", _edit_manifest(lambda m, t: m.update(config=[])), "config must be a mapping"),
    ("unknown-kind", _edit_manifest(lambda m, t: m["kinds"].update({next(iter(m["kinds"])): "blah"})), "not kinds"),
    ("hashes-not-a-list", _edit_manifest(lambda m, t: m.update(stage_sha256="x")), "stage_sha256 must list"),
    (
        "utf16-manifest",
        lambda t: (t / "manifest.json").write_bytes((t / "manifest.json").read_text().encode("utf-16")),
        "not UTF-8 text",
    ),
]


@pytest.mark.parametrize("damage,expected", [c[1:] for c in TRAJECTORY_ERRORS], ids=[c[0] for c in TRAJECTORY_ERRORS])
def test_damaged_trajectories_are_one_line(damage, expected, trajectory, tmp_path, capsys):
    traj = _copy(trajectory, tmp_path)
    damage(traj)
    code, err = _run(
        ["know", "predict", "--trajectory", traj, "--method", "task_vector", "--out", tmp_path / "p"], capsys
    )
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_a_prediction_that_overflows_its_dtype_is_refused(trajectory, tmp_path, capsys):
    argv = ["know", "predict", "--trajectory", trajectory, "--method", "task_vector", "--lam", "1e308"]
    code, err = _run(argv + ["--out", tmp_path / "p"], capsys)
    assert code == 2 and "produced NaN/Inf" in err and "--lam" in err, err
    assert not list((tmp_path / "p").glob("*.safetensors")) if (tmp_path / "p").exists() else True


# -- weights files -----------------------------------------------------------------------------------
def test_non_finite_and_integer_weights_are_refused(trajectory, tmp_path, capsys):
    from weightlab.io import load_weights, save_tensors
    from weightlab.models import create_model, load_state_dict_strict

    state = load_weights(trajectory / "stage_00.safetensors")
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() > 1)
    bad = dict(state)
    bad[key] = bad[key].clone()
    bad[key][0] = float("nan")
    save_tensors(tmp_path / "nan.safetensors", bad)
    with pytest.raises(WeightlabError, match="hold NaN or Inf values, e.g. '" + key):
        load_weights(tmp_path / "nan.safetensors")
    torch.save(bad, tmp_path / "nan.pt")
    with pytest.raises(WeightlabError, match="NaN or Inf"):
        load_weights(tmp_path / "nan.pt")
    model = create_model("smallcnn", input_size=(1, 8, 8), num_classes=5)
    ints = {k: v.long() for k, v in state.items()}
    with pytest.raises(WeightlabError, match="not floating-point"):
        load_state_dict_strict(model, ints)
    # know forget from a NaN weights file: one line, no stage written
    argv = ["know", "forget", "--model", "smallcnn", "--input-size", "1,8,8", "--weights", tmp_path / "nan.safetensors"]
    code, err = _run(argv + ["--data", "digits:0-4", "--stages", "2", "--out", tmp_path / "f", "--no-progress"], capsys)
    assert code == 2 and "NaN or Inf" in err and err.count("\n") == 1, err
    assert not list((tmp_path / "f").glob("stage_*")) if (tmp_path / "f").exists() else True


def test_a_known_h5_with_a_string_kernel_is_one_line(tmp_path):
    import h5py

    from weightlab.know.hypermodel import load_keras_known

    with h5py.File(tmp_path / "k.h5", "w") as f:
        g = f.create_group("dense_12").create_group("dense_12")  # the head, read first
        g.create_dataset("kernel:0", data=np.array([b"a", b"b"]))
        g.create_dataset("bias:0", data=np.zeros(2, dtype=np.float32))
    with pytest.raises(WeightlabError, match="is not floating-point"):
        load_keras_known(tmp_path / "k.h5")


# -- options -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seeds,expected", [("3,3", "repeats a seed"), ("-5", "--seeds"), ("x", "--seeds")])
def test_know_transfer_seeds_are_checked(seeds, expected, trajectory, tmp_path, capsys):
    argv = ["know", "transfer", "--trajectory", trajectory, "--task", "digits:5-9", f"--seeds={seeds}"]
    code, err = _run(argv + ["--out", tmp_path / "t"], capsys)
    assert code == 2 and expected in err and err.count("\n") == 1, err


def test_know_transfer_resumes_its_own_runs_and_refuses_another_task_s_folder(trajectory, tmp_path, capsys):
    import json

    argv = ["know", "transfer", "--trajectory", trajectory, "--train-limit", "30", "--test-limit", "30"]
    argv += ["--warmup-epochs", "1", "--epochs", "1", "--seeds", "1", "--out", tmp_path / "t", "--no-progress"]
    assert _run(argv + ["--task", "digits:5-9"], capsys)[0] == 0
    first = json.loads((tmp_path / "t" / "transfer.json").read_text())
    assert _run(argv + ["--task", "digits:5-9"], capsys)[0] == 0  # resumes: nothing to redo
    assert json.loads((tmp_path / "t" / "transfer.json").read_text())["runs"] == first["runs"]
    code, err = _run(argv + ["--task", "digits:0-4"], capsys)  # another task: refused, nothing overwritten
    assert code == 2 and "use another --out" in err, err
    assert json.loads((tmp_path / "t" / "transfer.json").read_text())["runs"] == first["runs"]


ADAPT = ["recast", "adapt", "--model", "resnet20", "--no-pretrained", "--epochs", "1", "--no-progress"]
MIMIC = ["recast", "mimic", "--model", "resnet20", "--no-pretrained", "--method", "closed_form", "--dataset", "none"]
# (id, argv with {tmp}, what the one error line says)
OPTION_ERRORS = [
    ("layers-pattern-not-a-regex", ["recast", "plan", "--model", "resnet20", "--layers-pattern", "("], "not a regular"),
    ("tv-not-a-data-set-class", ADAPT + ["--tasks", "tv:ImageFolder", "--out", "{tmp}/a"], "not a torchvision data"),
    ("tv-a-module", ADAPT + ["--tasks", "tv:utils", "--out", "{tmp}/a"], "not a torchvision data set"),
    (
        "tv-not-on-disk",  # torchvision's own hint (download=True) is not something the CLI can do
        ADAPT + ["--tasks", "tv:CIFAR10:0-1", "--data-root", "{tmp}", "--out", "{tmp}/a"],
        "weightlab never downloads",
    ),
    (
        "lora-rank-huge",
        ADAPT + ["--tasks", "digits:0-1", "--method", "lora:r=100000000", "--out", "{tmp}/a"],
        "exceeds",
    ),
    ("out-cannot-be-made", MIMIC + ["--out", "/proc/self/nope"], "no such file or folder"),
    ("seeds-too-big", ["recast", "bench", "--suite", "smoke", "--seeds", "99999999999999999999"], "--seeds"),
    ("know-bench-seeds-repeat", ["know", "bench", "--suite", "digits-smallcnn", "--seeds", "1,1"], "repeats a seed"),
]


@pytest.mark.parametrize("argv,expected", [c[1:] for c in OPTION_ERRORS], ids=[c[0] for c in OPTION_ERRORS])
def test_option_errors_are_one_line(argv, expected, tmp_path, capsys):
    code, err = _run([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("weightlab: error:") and expected in err, err


@pytest.mark.parametrize("bad", [dict(layers_per_group="two"), dict(templates=2.5), dict(coef_sets=True)])
def test_api_config_types_are_checked(bad):
    from weightlab.recast import RecastConfig

    with pytest.raises(WeightlabError, match="must be a whole number"):
        RecastConfig(target_modules=["layer*"], **bad)


# -- environment -------------------------------------------------------------------------------------
def test_an_ascii_terminal_gets_escaped_text_not_a_traceback(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    for argv in (["know", "forget", "--help"], ["know", "predict", "--trajectory", str(tmp_path), "--out", "x"]):
        p = subprocess.run([sys.executable, "-m", "weightlab", *argv], env=env, capture_output=True, text=True)
        assert "Traceback" not in p.stderr and "UnicodeEncodeError" not in p.stderr, p.stderr[-500:]
        assert p.returncode in (0, 2)


# -- hand-edited records -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """A base and a learnt task written by ``recast adapt``."""
    out = tmp_path_factory.mktemp("adapt") / "run"
    argv = ["recast", "adapt", "--model", "resnet20", "--no-pretrained", "--tasks", "digits:0-1"]
    assert main(argv + ["--train-size", "40", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    return out


def _json_edit(rel, change):
    def edit(root):
        import json

        f = root / rel
        meta = json.loads(f.read_text())
        change(meta)
        f.write_text(json.dumps(meta))

    return edit


def _task_dir(root):
    return next((root / "tasks").iterdir())


# (id, damage to a copy of the run, what the one line says)
RECORD_ERRORS = [
    ("base-inputs-a-string", _json_edit("base/base.json", lambda m: m.update(inputs="x")), "damaged record"),
    ("base-no-model", _json_edit("base/base.json", lambda m: (m.pop("model"), m.update(recast=False))), "damaged"),
    ("recast-config-no-plan", _json_edit("base/recast/recast_config.json", lambda m: m.pop("plan")), "damaged"),
]


@pytest.mark.parametrize("damage,expected", [c[1:] for c in RECORD_ERRORS], ids=[c[0] for c in RECORD_ERRORS])
def test_hand_edited_records_are_one_line(damage, expected, adapted, tmp_path, capsys):
    import shutil

    run = shutil.copytree(adapted, tmp_path / "run")
    damage(run)
    argv = ["recast", "adapt", "--model", "resnet20", "--no-pretrained", "--tasks", "digits:0-1"]
    code, err = _run(argv + ["--train-size", "40", "--epochs", "1", "--out", run, "--no-progress"], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and expected in err, err


def test_a_task_record_without_metrics_or_classes_is_one_line(adapted, tmp_path):
    import json
    import shutil

    from weightlab.incremental.artifact import load_task_model

    run = shutil.copytree(adapted, tmp_path / "run")
    task = _task_dir(run)
    meta = json.loads((task / "task.json").read_text())
    meta.pop("classes")
    (task / "task.json").write_text(json.dumps(meta))
    with pytest.raises(WeightlabError, match="damaged task record"):
        load_task_model(run / "base", [task])


def test_the_users_own_model_reaches_the_cli_as_module_factory(tmp_path, monkeypatch, capsys):
    """Issue 37: --model package.module:factory builds the user's model (no row: --targets), the saved RECAST
    model loads back through the same factory, and a missing module or factory is one line."""
    import sys

    (tmp_path / "own_net.py").write_text(
        "from torch import nn\n\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, num_classes=10):\n"
        "        super().__init__()\n"
        "        self.blocks = nn.Sequential(*[nn.Sequential(nn.Conv2d(3, 3, 3, padding=1)) for _ in range(4)])\n"
        "        self.head = nn.Linear(3, num_classes)\n\n"
        "    def forward(self, x):\n"
        "        return self.head(self.blocks(x).mean((2, 3)))\n\n\n"
        "def make(num_classes=10):\n"
        "    return Net(num_classes)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["recast", "mimic", "--model", "own_net:make", "--no-pretrained", "--targets", "blocks.*.0"]
    argv += ["--templates", "auto", "--method", "closed_form", "--dataset", "none", "--out", tmp_path / "out"]
    code, err = _run(argv, capsys)
    assert code == 0 and "Traceback" not in err, err
    from weightlab.recast import load_recast

    model = load_recast(tmp_path / "out" / "model")
    assert type(model).__name__ == "Net" and model.weightlab_cfg.source == "python"
    code, err = _run(["recast", "plan", "--model", "own_net:nothing"], capsys)
    assert code == 2 and "has no callable 'nothing'" in err
    code, err = _run(["recast", "plan", "--model", "not_a_module_xyz:make"], capsys)
    assert code == 2 and "cannot import not_a_module_xyz" in err
    code, err = _run(
        ["recast", "mimic", "--model", "own_net:make", "--method", "closed_form", "--out", tmp_path / "o"], capsys
    )
    assert code == 2 and "no pretrained weights" in err
    del sys.modules["own_net"]


def test_another_library_s_warning_never_surrounds_the_error_line(tmp_path):
    """Issue 37: a torch-style UserWarning raised before a bad input fails the command is dropped (the one
    error line says what is wrong); on success it is printed after the run as one line."""
    import subprocess
    import sys

    script = (
        "import sys, warnings\n"
        "from weightlab import cli\n"
        "from weightlab.cli import recast as r\n"
        "from weightlab.errors import WeightlabError\n"
        "def bad(args):\n"
        "    warnings.warn('TypedStorage is deprecated', UserWarning)\n"
        "    raise WeightlabError('the input is bad')\n"
        "def good(args):\n"
        "    warnings.warn('TypedStorage is deprecated', UserWarning)\n"
        "    print('done')\n"
        "    return 0\n"
        "r.COMMANDS['plan'] = bad if sys.argv[1] == 'bad' else good\n"
        "sys.exit(cli.main(['recast', 'plan', '--model', 'resnet20']))\n"
    )
    for case in ("bad", "good"):
        p = subprocess.run([sys.executable, "-c", script, case], capture_output=True, text=True)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        if case == "bad":
            assert p.returncode == 2 and lines == ["weightlab: error: the input is bad"], p.stderr
        else:
            assert p.returncode == 0 and len(lines) == 1 and "TypedStorage is deprecated" in lines[0], p.stderr
