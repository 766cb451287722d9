"""Continual-learning baselines (Avalanche's, and DER++, HAT, InfLoRA, L2P implemented here): two tiny
tasks end to end, the property each method rests on, options, the suite table."""

import pytest
import torch

from weightlab.data.tasks import SplitSizes, build_sequence
from weightlab.errors import WeightlabError
from weightlab.incremental.baselines import BASELINES, parse_baseline, run_baseline
from weightlab.incremental.learner import AdaptConfig

pytest.importorskip("avalanche")


@pytest.fixture(scope="module")
def tiny():
    from weightlab.models import create_model

    torch.manual_seed(0)
    base = create_model("smallcnn", num_classes=10, input_size=(1, 16, 16), widths=(4, 8, 8, 8), hidden=16)
    tasks = build_sequence("digits", None, SplitSizes(60, 20, 40))
    return base, tasks


@pytest.mark.parametrize(
    "method",
    [
        "ewc",
        "lwf",
        "gdumb:mem_size=50",
        "er_ace:per_class=3",
        "derpp:per_class=3",
        "derpp:per_class=3,sgd_lr=0.03",
        "hat",
    ],
)
def test_each_baseline_learns_two_tiny_tasks_end_to_end(tiny, method):
    base, tasks = tiny
    before = {k: v.clone() for k, v in base.state_dict().items()}
    r = run_baseline(base, method, tasks, AdaptConfig(epochs=1, batch_size=16), seed=0, progress=False)
    R = r["accuracy_matrix"]
    assert [len(row) for row in R] == [1, 2] and all(0 <= a <= 100 for row in R for a in row)
    assert r["final_accuracy"] == R[-1] and r["backward_transfer"] == pytest.approx(R[1][0] - R[0][0])
    backbone = sum(v.numel() for k, v in base.named_parameters() if not k.startswith("head"))
    units = sum(
        m.weight.shape[0]
        for n, m in base.named_modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and not n.startswith("head")
    )
    assert r["trainable_per_task"] == backbone + (units if method == "hat" else 0)  # HAT: + one embedding per unit
    assert r["head_per_task"] == [16 * 5 + 5, 16 * 5 + 5]
    spec = parse_baseline(method)
    if spec.method == "gdumb":
        assert r["buffer_samples"] == 50 and r["buffer_bytes"] == 50 * 16 * 16 * 4
    elif spec.method in ("er_ace", "derpp"):
        assert r["buffer_samples"] == 3 * 10
        assert spec.method == "er_ace" or r["buffer_bytes"] == 30 * 16 * 16 * 4
    else:
        assert r["buffer_samples"] == 0
    if spec.method == "ewc":  # per task: a Fisher diagonal and anchor weights of the whole model, and the head
        whole = r["trainable_per_task"] + 2 * (16 * 5 + 5)
        assert r["bytes_per_task"][0] == 2 * whole * 4 + (16 * 5 + 5) * 4
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())  # the given model is untouched


def test_derpp_runs_its_papers_plain_sgd_when_asked(tiny, monkeypatch):
    from weightlab.incremental.baselines import derpp

    made = []
    real = derpp.DERpp.optimizer

    def spy(self, t):
        made.append(real(self, t))
        return made[-1]

    monkeypatch.setattr(derpp.DERpp, "optimizer", spy)
    base, tasks = tiny
    for method in ("derpp:per_class=3", "derpp:per_class=3,sgd_lr=0.03"):
        run_baseline(base, method, tasks[:1], AdaptConfig(epochs=1, batch_size=16, lr=1e-3), seed=0, progress=False)
    assert isinstance(made[0], torch.optim.AdamW) and made[0].param_groups[0]["lr"] == 1e-3
    assert type(made[1]) is torch.optim.SGD and made[1].param_groups[0]["lr"] == 0.03
    assert made[1].param_groups[0]["momentum"] == 0.0


def test_baselines_are_deterministic_with_a_seed(tiny):
    base, tasks = tiny
    cfg = AdaptConfig(epochs=1, batch_size=16)
    a = run_baseline(base, "lwf", tasks, cfg, seed=3, progress=False)["accuracy_matrix"]
    b = run_baseline(base, "lwf", tasks, cfg, seed=3, progress=False)["accuracy_matrix"]
    assert a == b


def test_avalanche_notices_do_not_reach_the_user(tiny):
    import os
    import warnings

    import avalanche

    base, tasks = tiny
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_baseline(base, "er_ace:per_class=3", tasks, AdaptConfig(epochs=1, batch_size=16), seed=0, progress=False)
    package = os.path.dirname(avalanche.__file__)
    assert [str(w.message) for w in caught if os.path.abspath(w.filename).startswith(package)] == []


def test_baseline_names_and_options():
    assert set(BASELINES) == {"ewc", "lwf", "gdumb", "er_ace", "derpp", "hat", "inflora", "l2p"}
    assert parse_baseline("DER++:alpha=0.2").name == "derpp:alpha=0.2"
    assert parse_baseline("inflora").options == {"rank": 10, "threshold": 0.97}
    assert parse_baseline("ewc").options == {"lambda": 100.0}
    assert parse_baseline("ER-ACE:per_class=50").name == "er_ace:per_class=50"
    assert parse_baseline("gdumb").options["mem_size"] == 4400  # the paper's buffer
    with pytest.raises(WeightlabError, match="lwf: unknown option 'rank'"):
        parse_baseline("lwf:rank=2")
    with pytest.raises(WeightlabError, match="unknown continual-learning baseline"):
        parse_baseline("icarl")


def test_suite_runs_baselines_beside_per_task_methods(tmp_path):
    from dataclasses import replace

    from weightlab.bench.incremental import Suite, merge_results, run_suite
    from weightlab.io import read_json

    suite = Suite(
        "tiny-cl",
        "smallcnn",
        "digits",
        ["head", "lwf"],
        seeds=(0,),
        sizes=SplitSizes(40, 20, 30),
        epochs=1,
        pretrained=False,
        model_kwargs={"input_size": (1, 16, 16), "widths": (4, 8, 8, 8)},
    )
    run_suite(suite, tmp_path / "a", progress=False, methods=["head"])
    run_suite(suite, tmp_path / "b", progress=False, methods=["lwf"])  # a second worker
    assert merge_results(tmp_path / "a", tmp_path / "b") == 1
    assert merge_results(tmp_path / "a", tmp_path / "b") == 0  # already there
    payload = read_json(tmp_path / "a" / "results.json")
    rows = {r["name"]: r for r in payload["summary"]}
    assert set(rows) == {"head", "lwf"}
    assert rows["head"]["zero_forgetting"] and rows["head"]["forgetting"] == 0.0
    assert rows["lwf"]["storage_bytes"] == rows["lwf"]["backbone_bytes"] + sum(payload["runs"][1]["bytes_per_task"])
    md = (tmp_path / "a" / "results.md").read_text()
    assert "| lwf | 1 |" in md and "storage KiB" in md
    table = (tmp_path / "a" / "paper_table.md").read_text()  # the paper's Table 1 order: head, then LwF
    assert "Table 1" in table and table.index("| head only") < table.index("| LwF | regularisation |")
    assert "Not run in this suite: EWC, GDumb" in table
    assert (tmp_path / "a" / "forgetting_curves.png").stat().st_size > 0
    other = replace(suite, epochs=2)
    run_suite(other, tmp_path / "c", progress=False, methods=["head"])
    with pytest.raises(WeightlabError, match="different suite configuration"):
        merge_results(tmp_path / "a", tmp_path / "c")


def test_gdumb_is_evaluated_on_the_model_it_retrains(tiny):
    """GDumb retrains a fresh copy of the initial model on its buffer at every task: the second
    model is the one evaluated (a stale reference would give task 1 exactly its old accuracy)."""
    base, tasks = tiny
    r = run_baseline(base, "gdumb:mem_size=50", tasks, AdaptConfig(epochs=10, batch_size=16), seed=0, progress=False)
    R = r["accuracy_matrix"]
    assert R[1][0] != R[0][0]  # deterministic with the seed: retrained on the buffer, task 1 changes


# -- the baselines implemented here: the property each one rests on ------------------------------


def _method(cls, base, tasks, options, **cfg):
    import copy

    from weightlab.incremental.model import detach_classifier

    backbone, dim = detach_classifier(copy.deepcopy(base))
    spec = parse_baseline(options)
    return cls(
        backbone,
        dim,
        [t.num_classes for t in tasks],
        spec.options,
        AdaptConfig(epochs=1, **cfg),
        base.weightlab_cfg,
        seed=0,
    )


def _data(base, task):
    from weightlab.data.arrays import ModelInput
    from weightlab.incremental.baselines.harness import task_tensors

    return task_tensors(task.train, ModelInput.from_cfg(base.weightlab_cfg))


@pytest.fixture(scope="module")
def tiny_vit():
    from weightlab.models import create_model

    torch.manual_seed(0)
    vit = create_model(
        "timm:vit_tiny_patch16_224",
        pretrained=False,
        img_size=16,
        patch_size=4,
        embed_dim=24,
        depth=2,
        num_heads=2,
        num_classes=10,
        in_chans=1,
    )
    return vit, build_sequence("digits", None, SplitSizes(60, 20, 40))


@pytest.mark.parametrize("method", ["inflora:rank=2", "l2p:pool_size=4,top_k=2,length=2"])
def test_vit_baselines_learn_two_tiny_tasks_and_keep_the_backbone_frozen(tiny_vit, method):
    vit, tasks = tiny_vit
    r = run_baseline(vit, method, tasks, AdaptConfig(epochs=1, batch_size=16), seed=0, progress=False)
    assert [len(row) for row in r["accuracy_matrix"]] == [1, 2]
    head = 24 * 5 + 5
    if method.startswith("inflora"):  # per block: A_t of (2 x 24 rows) x rank 2; B_t of 2 x 24
        assert r["trainable_per_task"] == 2 * 48 * 2
        assert r["bytes_per_task"] == [head * 4 + 2 * (48 * 2 + 2 * 24) * 4] * 2
        assert r["shared_state_bytes"] > 0  # the subspace bases
    else:  # the pool: 4 prompts of 2 tokens and 4 keys, width 24
        assert r["trainable_per_task"] == 4 * 2 * 24 + 4 * 24
        assert r["shared_state_bytes"] == (4 * 2 * 24 + 4 * 24) * 4 and r["bytes_per_task"] == [head * 4] * 2


def test_inflora_designs_each_branch_orthogonal_to_the_earlier_tasks_inputs(tiny_vit):
    from weightlab.incremental.baselines.harness import fit_task
    from weightlab.incremental.baselines.inflora import InfLoRA

    vit, tasks = tiny_vit
    m = _method(InfLoRA, vit, tasks, "inflora:rank=3,threshold=0.99", batch_size=16)
    frozen = {k: v.clone() for k, v in m.backbone.state_dict().items() if ".A." not in k}
    gen = torch.Generator().manual_seed(0)
    fit_task(m, 0, *_data(vit, tasks[0]), epochs=1, batch=16, gen=gen)
    assert all(M.shape[1] >= 1 for M in m.bases)
    for M in m.bases:
        assert torch.allclose(M.T @ M, torch.eye(M.shape[1], dtype=M.dtype), atol=1e-8)  # orthonormal basis
    assert any(layer.A[0].abs().sum() > 0 for layer in m.layers)  # A_0 was trained from zero
    first = [M.clone() for M in m.bases]
    fit_task(m, 1, *_data(vit, tasks[1]), epochs=1, batch=16, gen=gen)
    for layer, M0, M in zip(m.layers, first, m.bases):
        B1 = layer.B[1].double()
        assert B1.shape == (3, 24) and torch.equal(M[:, : M0.shape[1]], M0)  # the basis only grows
        assert (B1 @ M0).abs().max() < 1e-5  # the new branch reads nothing of the first task's input subspace
    assert all(torch.equal(v, m.backbone.state_dict()[k]) for k, v in frozen.items())  # backbone untouched


def test_hat_keeps_the_units_earlier_tasks_use_fixed(tiny):
    from weightlab.incremental.baselines.harness import fit_task
    from weightlab.incremental.baselines.hat import HAT

    base, tasks = tiny
    m = _method(HAT, base, tasks, "hat", batch_size=16)
    gen = torch.Generator().manual_seed(0)
    x0, _ = _data(base, tasks[0])
    fit_task(m, 0, *_data(base, tasks[0]), epochs=3, batch=16, gen=gen)
    m.eval()
    with torch.no_grad():
        before = m.logits(0, x0)
    used = [(p == 1.0) for p in m.prev]  # units whose mask saturated at s_max: their gradients are exactly 0
    weights = [g.weight.detach().clone() for g in m.gated]
    fit_task(m, 1, *_data(base, tasks[1]), epochs=3, batch=16, gen=gen)
    assert any(u.any() for u in used) and not all(u.all() for u in used)
    for g, w, u in zip(m.gated, weights, used):
        assert torch.equal(g.weight[u], w[u])  # rows of used units: unchanged
    assert any(not torch.equal(g.weight, w) for g, w in zip(m.gated, weights))  # free units did learn
    m.eval()
    with torch.no_grad():
        after = m.logits(0, x0)
    # the first task's outputs survive (its BatchNorm copy and units are its own); the masks are soft,
    # so partly used units may still move a little
    assert torch.equal(after.argmax(1), before.argmax(1))
    assert (after - before).abs().max() < 1e-3 * before.abs().max() + 1e-4


def test_derpp_reservoir_keeps_a_uniform_sample_of_the_stream_with_task_sized_logits():
    from weightlab.incremental.baselines.derpp import ReservoirBuffer

    buf = ReservoirBuffer(50, seed=0)
    for task, width in ((0, 3), (1, 5)):
        for start in range(0, 500, 25):
            x = torch.arange(start, start + 25).float().view(-1, 1) + 1000 * task
            buf.add(x, torch.zeros(25, dtype=torch.long), task, torch.ones(25, width), width=5)
    assert len(buf) == 50 and buf.seen == 1000
    assert len(set(buf.x.flatten().tolist())) == 50  # distinct samples
    n1 = int((buf.task == 1).sum())
    assert 13 <= n1 <= 37  # about half from each task (binomial 50, 1/2: beyond 6 sd otherwise)
    assert torch.equal(buf.logits[buf.task == 0][:, 3:], torch.zeros(50 - n1, 2))  # padded past the head
    assert torch.equal(buf.logits[buf.task == 1], torch.ones(n1, 5))
    assert buf.nbytes() == 50 * 4
    again = ReservoirBuffer(50, seed=0)
    for task, width in ((0, 3), (1, 5)):
        for start in range(0, 500, 25):
            x = torch.arange(start, start + 25).float().view(-1, 1) + 1000 * task
            again.add(x, torch.zeros(25, dtype=torch.long), task, torch.ones(25, width), width=5)
    assert torch.equal(again.x, buf.x)  # seeded


def test_vit_only_baselines_refuse_a_cnn_with_a_clear_error(tiny):
    base, tasks = tiny
    for method in ("inflora", "l2p"):
        with pytest.raises(WeightlabError, match="timm ViT"):
            run_baseline(base, method, tasks, AdaptConfig(epochs=1), seed=0, progress=False)


def test_forgetting_curves_average_each_methods_matrices_over_seeds():
    from weightlab.bench.reports.incremental_plots import mean_accuracy_matrices

    runs = [
        dict(method="ewc", seed=0, accuracy_matrix=[[90.0], [70.0, 80.0]]),
        dict(method="ewc", seed=1, accuracy_matrix=[[80.0], [50.0, 90.0]]),
        dict(method="head", seed=0, accuracy_matrix=[[60.0], [60.0, 70.0]]),
    ]
    assert mean_accuracy_matrices(runs) == {"ewc": [[85.0], [60.0, 85.0]], "head": [[60.0], [60.0, 70.0]]}
