"""Continual-learning baselines (Avalanche): two tiny tasks end to end, options, the suite table."""

import pytest
import torch

from weightlab.errors import WeightlabError
from weightlab.incremental.baselines import BASELINES, parse_baseline, run_baseline
from weightlab.incremental.learner import AdaptConfig
from weightlab.incremental.sequences import SplitSizes, build_sequence

pytest.importorskip("avalanche")


@pytest.fixture(scope="module")
def tiny():
    from weightlab.models import create_model

    torch.manual_seed(0)
    base = create_model("smallcnn", num_classes=10, input_size=(1, 16, 16), widths=(4, 8, 8, 8), hidden=16)
    tasks = build_sequence("digits", None, SplitSizes(60, 20, 40))
    return base, tasks


@pytest.mark.parametrize("method", ["ewc", "lwf", "gdumb:mem_size=50", "er_ace:per_class=3"])
def test_each_baseline_learns_two_tiny_tasks_end_to_end(tiny, method):
    base, tasks = tiny
    before = {k: v.clone() for k, v in base.state_dict().items()}
    r = run_baseline(base, method, tasks, AdaptConfig(epochs=1, batch_size=16), seed=0, progress=False)
    R = r["accuracy_matrix"]
    assert [len(row) for row in R] == [1, 2] and all(0 <= a <= 100 for row in R for a in row)
    assert r["final_accuracy"] == R[-1] and r["backward_transfer"] == pytest.approx(R[1][0] - R[0][0])
    assert r["trainable_per_task"] == sum(v.numel() for k, v in base.named_parameters() if not k.startswith("head"))
    assert r["head_per_task"] == [16 * 5 + 5, 16 * 5 + 5]
    spec = parse_baseline(method)
    if spec.method == "gdumb":
        assert r["buffer_samples"] == 50 and r["buffer_bytes"] == 50 * 16 * 16 * 4
    elif spec.method == "er_ace":
        assert r["buffer_samples"] == 3 * 10
    else:
        assert r["buffer_samples"] == 0
    if spec.method == "ewc":  # per task: a Fisher diagonal and anchor weights of the whole model, and the head
        whole = r["trainable_per_task"] + 2 * (16 * 5 + 5)
        assert r["bytes_per_task"][0] == 2 * whole * 4 + (16 * 5 + 5) * 4
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())  # the given model is untouched


def test_baselines_are_deterministic_with_a_seed(tiny):
    base, tasks = tiny
    cfg = AdaptConfig(epochs=1, batch_size=16)
    a = run_baseline(base, "lwf", tasks, cfg, seed=3, progress=False)["accuracy_matrix"]
    b = run_baseline(base, "lwf", tasks, cfg, seed=3, progress=False)["accuracy_matrix"]
    assert a == b


def test_baseline_names_and_options():
    assert set(BASELINES) == {"ewc", "lwf", "gdumb", "er_ace"}
    assert parse_baseline("ewc").options == {"lambda": 100.0}
    assert parse_baseline("ER-ACE:per_class=50").name == "er_ace:per_class=50"
    assert parse_baseline("gdumb").options["mem_size"] == 4400  # the paper's buffer
    with pytest.raises(WeightlabError, match="bad option 'rank=2' for lwf"):
        parse_baseline("lwf:rank=2")
    with pytest.raises(WeightlabError, match="unknown continual-learning baseline"):
        parse_baseline("icarl")


def test_suite_runs_baselines_beside_per_task_methods(tmp_path):
    from weightlab.incremental.bench import Suite, run_suite

    suite = Suite("tiny-cl", "smallcnn", "digits", ["head", "lwf"], seeds=(0,), sizes=SplitSizes(40, 20, 30),
                  epochs=1, pretrained=False, model_kwargs={"input_size": (1, 16, 16), "widths": (4, 8, 8, 8)})
    payload = run_suite(suite, tmp_path, progress=False)
    rows = {r["name"]: r for r in payload["summary"]}
    assert set(rows) == {"head", "lwf"}
    assert rows["head"]["zero_forgetting"] and rows["head"]["forgetting"] == 0.0
    assert rows["lwf"]["storage_bytes"] == rows["lwf"]["backbone_bytes"] + sum(payload["runs"][1]["bytes_per_task"])
    md = (tmp_path / "results.md").read_text()
    assert "| lwf | 1 |" in md and "storage KiB" in md


def test_gdumb_is_evaluated_on_the_model_it_retrains(tiny):
    """GDumb retrains a fresh copy of the initial model on its buffer at every task: the second
    model is the one evaluated (a stale reference would give task 1 exactly its old accuracy)."""
    base, tasks = tiny
    r = run_baseline(base, "gdumb:mem_size=50", tasks, AdaptConfig(epochs=10, batch_size=16), seed=0, progress=False)
    R = r["accuracy_matrix"]
    assert R[1][0] != R[0][0]  # deterministic with the seed: retrained on the buffer, task 1 changes
