"""Progressive forgetting (nested subsets, resume), parameter kinds, transfer protocol, CLI."""

import json

import pytest
import torch

from weightlab.cli import main
from weightlab.data.tasks import SplitSizes, build_task
from weightlab.errors import WeightlabError
from weightlab.know import ForgetConfig, Trajectory, nested_subsets, param_kinds, run_forgetting
from weightlab.know.transfer import TransferConfig, build_transfer_model, transfer
from weightlab.models import create_model


def test_nested_subsets_are_nested_sized_and_seeded():
    labels = torch.arange(1000) % 10
    subs = nested_subsets(labels, 0.5, 5, seed=3)
    assert [len(s) for s in subs] == [1000, 500, 250, 125, 62]
    for big, small in zip(subs, subs[1:]):
        assert set(small.tolist()) <= set(big.tolist())
    again = nested_subsets(labels, 0.5, 5, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(subs, again))
    assert not torch.equal(nested_subsets(labels, 0.5, 5, seed=4)[2], subs[2])
    balanced = nested_subsets(labels, 0.5, 4, seed=0, class_balanced=True)
    for s in balanced[1:]:
        counts = torch.bincount(labels[s], minlength=10)
        assert int(counts.max() - counts.min()) == 0


def test_forget_config_errors():
    for cfg, msg in (
        (ForgetConfig(ratio=1.5), "ratio r"),
        (ForgetConfig(stages=1), "at least 2 stages"),
        (ForgetConfig(optimizer="lbfgs"), "unknown optimizer"),
    ):
        with pytest.raises(WeightlabError, match=msg):
            cfg.validate()


def test_param_kinds_of_a_cifar_resnet():
    kinds = param_kinds(create_model("resnet20"))
    assert kinds["conv1.weight"] == "conv" and kinds["layer3.2.conv2.weight"] == "conv"
    assert kinds["bn1.weight"] == "norm" and kinds["bn1.running_var"] == "buffer"
    assert kinds["linear.weight"] == "head" and kinds["linear.bias"] == "head"
    small = param_kinds(create_model("smallcnn"))
    assert small["fc.weight"] == "fc" and small["fc.bias"] == "bias" and small["head.weight"] == "head"


@pytest.fixture(scope="module")
def digits_task():
    return build_task("digits:0-4", sizes=SplitSizes(train=160, val=0, test=100))


def _model(seed=0):
    torch.manual_seed(seed)
    return create_model("smallcnn", num_classes=5)


def test_interrupted_forgetting_resumes_to_the_same_trajectory(tmp_path, digits_task):
    cfg = ForgetConfig(stages=4, batch_size=32, seed=1)
    full = run_forgetting(_model(), digits_task.train, tmp_path / "full", cfg, progress=False)
    part = run_forgetting(_model(), digits_task.train, tmp_path / "part", cfg, progress=False, stop_after=2)
    assert part.num_stages == 2
    manifest = json.loads((tmp_path / "part" / "manifest.json").read_text())
    assert manifest["completed_stages"] == 2 and not list((tmp_path / "part").glob("*.tmp"))
    # a new process: a fresh model holding Θ⁰ again; the run continues at stage 2
    resumed = run_forgetting(_model(), digits_task.train, tmp_path / "part", cfg, progress=False)
    assert resumed.num_stages == full.num_stages == 4
    assert resumed.meta["subset_sizes"] == [160, 80, 40, 20]
    for a, b in zip(full.stages, resumed.stages):
        for k in a:
            assert torch.equal(a[k], b[k]), k
    assert not torch.equal(full.stages[0]["fc.weight"], full.stages[3]["fc.weight"])
    with pytest.raises(WeightlabError, match=r"other inputs \(config.batch_size: 32 -> 128; config.lr"):
        run_forgetting(_model(), digits_task.train, tmp_path / "part", ForgetConfig(stages=4, lr=1e-2), progress=False)
    # the same options on other data, or from another Θ⁰: refused, naming what differs
    other = build_task("digits:5-9", sizes=SplitSizes(train=160, val=0, test=100)).train
    with pytest.raises(WeightlabError, match="inputs.train_sha256"):
        run_forgetting(_model(), other, tmp_path / "part", cfg, progress=False)
    with pytest.raises(WeightlabError, match="inputs.base_sha256"):
        run_forgetting(_model(seed=5), digits_task.train, tmp_path / "part", cfg, progress=False)


def test_transfer_warmup_trains_only_norm_and_head(digits_task):
    state = _model().state_dict()
    model_cfg = _model().weightlab_cfg
    target = build_task("digits:5-9", sizes=SplitSizes(train=60, val=0, test=60))
    res = transfer(
        state,
        model_cfg,
        target.train,
        target.test,
        TransferConfig(warmup_epochs=1, epochs=0, batch_size=32),
        progress=False,
    )
    assert 0.0 <= res["accuracy"] <= 100.0 and len(res["warmup_loss"]) == 1
    # rebuild what transfer did, to inspect the weights after the warm-up
    m = build_transfer_model(state, model_cfg, 5, seed=0)
    assert torch.equal(m.state_dict()["features.0.weight"], state["features.0.weight"])
    assert m.head.out_features == 5
    with pytest.raises(WeightlabError, match="shape mismatch for features.0.weight"):
        build_transfer_model({**state, "features.0.weight": torch.zeros(1)}, model_cfg, 5, seed=0)


def test_transfer_is_deterministic_with_a_seed(digits_task):
    state, cfg = _model().state_dict(), _model().weightlab_cfg
    t = build_task("digits:5-9", sizes=SplitSizes(train=60, val=0, test=60))
    tc = TransferConfig(warmup_epochs=1, epochs=1, batch_size=32, seed=7)
    a = transfer(state, cfg, t.train, t.test, tc, progress=False)
    b = transfer(state, cfg, t.train, t.test, tc, progress=False)
    assert a["accuracy"] == b["accuracy"] and a["loss"] == b["loss"]


def test_cli_forget_predict_transfer(tmp_path, capsys):
    traj, pred = tmp_path / "traj", tmp_path / "pred"
    assert (
        main(
            [
                "know",
                "forget",
                "--model",
                "smallcnn",
                "--no-pretrained",
                "--data",
                "digits:0-4",
                "--limit",
                "120",
                "--eval-limit",
                "50",
                "--stages",
                "5",
                "--batch-size",
                "32",
                "--out",
                str(traj),
                "--no-progress",
            ]
        )
        == 0
    )
    assert Trajectory.load(traj).num_stages == 5
    for method in ("task_vector", "consensus_ta"):
        assert (
            main(
                [
                    "know",
                    "predict",
                    "--trajectory",
                    str(traj),
                    "--method",
                    method,
                    "--steps",
                    "3",
                    "--out",
                    str(pred),
                    "--no-progress",
                ]
            )
            == 0
        )
    out = capsys.readouterr().out
    assert "consensus_ta: step 1 skipped" in out
    assert sorted(p.name for p in pred.glob("*.safetensors")) == [
        "consensus_ta_x8.safetensors",
        "task_vector_x2.safetensors",
        "task_vector_x4.safetensors",
        "task_vector_x8.safetensors",
    ]
    info = json.loads((pred / "task_vector.json").read_text())
    assert info["touched"]["conv"] == 15192 and "norm" in info["untouched"]
    assert (
        main(
            [
                "know",
                "transfer",
                "--trajectory",
                str(traj),
                "--predictions",
                str(pred / "task_vector_x2.safetensors"),
                "--task",
                "digits:5-9",
                "--train-limit",
                "40",
                "--test-limit",
                "40",
                "--warmup-epochs",
                "1",
                "--epochs",
                "1",
                "--seeds",
                "1,2",
                "--out",
                str(tmp_path / "tr"),
                "--no-progress",
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "tr" / "transfer.json").read_text())["runs"]
    assert [(r["row"], r["seed"]) for r in rows] == [
        ("naive", 1),
        ("naive", 2),
        ("task_vector_x2", 1),
        ("task_vector_x2", 2),
    ]
    md = (tmp_path / "tr" / "transfer.md").read_text()
    assert md.startswith(f"# Transfer from {traj} to digits_5-9") and "transfer seeds 1, 2" in md
    assert "| task_vector_x2 | 2 |" in md and "(p " in md  # two seeds: the gain is paired with naive, with its p


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["know", "predict", "--trajectory", "/nonexistent", "--out", "/tmp/x"], "not a trajectory folder"),
        (["know", "predict", "--trajectory", ".", "--method", "nope", "--out", "/tmp/x"], "not a trajectory folder"),
        (
            [
                "know",
                "forget",
                "--model",
                "smallcnn",
                "--data",
                "digits:0-4",
                "--out",
                "/tmp/x",
                "--ratio",
                "2",
                "--no-pretrained",
            ],
            "argument --ratio: must be a number in (0, 1)",
        ),
        (
            ["know", "transfer", "--trajectory", "/nonexistent", "--task", "digits", "--out", "/tmp/x"],
            "not a trajectory",
        ),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("weightlab: error:") and msg in err and "\n" not in err


def test_cli_predict_known_with_own_weights_and_too_few_stages(tmp_path, capsys):
    from weightlab.io import save_tensors
    from weightlab.know import KNOWNNet

    weights = tmp_path / "known"
    for kind in ("Conv", "FC", "Bias"):
        save_tensors(weights / f"KNOWN_{kind}.safetensors", KNOWNNet().state_dict())
    assert (
        main(
            [
                "know",
                "forget",
                "--model",
                "smallcnn",
                "--no-pretrained",
                "--data",
                "digits:0-4",
                "--limit",
                "64",
                "--eval-limit",
                "20",
                "--stages",
                "3",
                "--batch-size",
                "32",
                "--out",
                str(tmp_path / "t"),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    argv = [
        "know",
        "predict",
        "--trajectory",
        str(tmp_path / "t"),
        "--method",
        "known",
        "--known-weights",
        str(weights),
        "--out",
        str(tmp_path / "p"),
        "--no-progress",
    ]
    assert main(argv) == 2
    assert "needs a trajectory of at least 5 stages, this one has 3" in capsys.readouterr().err
    assert (
        main(
            [
                "know",
                "predict",
                "--trajectory",
                str(tmp_path / "t"),
                "--method",
                "linear_fit",
                "--steps",
                "2",
                "--out",
                str(tmp_path / "p"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (tmp_path / "p" / "linear_fit_x4.safetensors").is_file()


def _tiny_suite():
    from weightlab.know.protocol import KnowSuite

    return KnowSuite(
        "tiny",
        "test suite",
        model="smallcnn",
        source="digits:0-4",
        target="digits:5-9",
        model_kwargs={"input_size": (1, 8, 8)},
        pretrain_epochs=2,
        source_train=100,
        target_train=50,
        target_test=50,
        eval_size=50,
        forget=ForgetConfig(batch_size=32),
        transfer=TransferConfig(warmup_epochs=1, epochs=1, batch_size=32),
        predictors=("task_vector", "consensus_ta"),
        steps=(1, 3),
        seeds=(1, 2),
        needs_shared=False,
    )


def test_bench_suite_runs_resumes_and_reports(tmp_path):
    from dataclasses import replace

    from weightlab.bench.know import run_suite

    suite = _tiny_suite()
    res = run_suite(suite, tmp_path, progress=False)
    rows = [(r["row"], r["seed"]) for r in res["runs"]]
    assert rows == [
        (row, s)
        for row in ("naive", "incremental", "task_vector_x2", "task_vector_x8", "consensus_ta_x8")
        for s in (1, 2)
    ]
    md = (tmp_path / "results.md").read_text()
    assert "| x8 | ConsensusTA | 2 |" in md and "| x1 | Naive transfer | 2 |" in md
    assert "step 1 not defined" in md  # ConsensusTA at x2 is reported as undefined, not silently dropped
    assert (tmp_path / "trajectory_pca.png").stat().st_size > 1000
    # an interrupted run: drop the last two transfer runs, run again, only those are redone
    saved = json.loads((tmp_path / "results.json").read_text())
    kept = saved["runs"][:-2]
    saved["runs"] = kept
    (tmp_path / "results.json").write_text(json.dumps(saved))
    again = run_suite(suite, tmp_path, progress=False)
    assert again["runs"][:-2] == kept and len(again["runs"]) == len(rows)
    assert [r["accuracy"] for r in again["runs"][-2:]] == [r["accuracy"] for r in res["runs"][-2:]]
    # a complete suite run again writes nothing: every file keeps its bytes and its timestamp (the PCA figure too)
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir() if p.is_file()}
    run_suite(suite, tmp_path, progress=False)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir() if p.is_file()} == files
    with pytest.raises(WeightlabError, match="another suite configuration"):
        run_suite(replace(suite, steps=(1,)), tmp_path, progress=False)
