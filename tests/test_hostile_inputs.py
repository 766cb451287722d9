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
