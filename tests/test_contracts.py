"""Contract tests over the registries: every adapter, predictor, baseline, suite and model family that
is registered gets these checks without a test of its own."""

import dataclasses
import re

import pytest
import torch

from weightlab import paths
from weightlab.bench.suites import KNOW_SUITES, SUITES
from weightlab.data.tasks import SplitSizes, build_sequence
from weightlab.incremental import AdaptConfig, TaskModel, learn_task, load_task, parse_method, save_task
from weightlab.incremental.baselines import BASELINES, is_baseline, parse_baseline
from weightlab.incremental.methods import ADAPTERS, suite_methods
from weightlab.know.predictors import PREDICTORS, get_predictor
from weightlab.know.trajectory import Trajectory
from weightlab.models import create_model, get_family
from weightlab.models.families import FAMILIES
from weightlab.models.registry import MODELS
from weightlab.recast.config import PRESETS
from weightlab.recast.mimicry import MimicryConfig
from weightlab.recast.pipeline import recast_base
from weightlab.registry import option_fields


def _every_option_documented(entry):
    for f in option_fields(entry.options):
        assert f.metadata.get("help"), f"{entry.name}: option {f.name} has no help text"


# -- adapters ------------------------------------------------------------------------------------
_BASES: dict = {}


def _base(kind: str, recast: bool):
    if (kind, recast) not in _BASES:
        torch.manual_seed(0)
        plain = (
            create_model("resnet20")
            if kind == "cnn"
            else create_model(
                "timm:vit_tiny_patch16_224", img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2
            )
        )
        _BASES[(kind, False)] = plain
        _BASES[(kind, True)] = recast_base(plain, dict(templates="auto", layers_per_group=2))
    return _BASES[(kind, recast)]


def _where(adapter: str) -> str:
    """A model kind the adapter applies to (a CNN when it can, else the tiny ViT)."""
    a = ADAPTERS.get(adapter)()
    return "cnn" if a.applies_to(get_family("cifar_resnet")) is None else "vit"


ADAPTER_METHODS = [m for a in ADAPTERS for m in ([a] if a == "full" else [a, f"recast+{a}"])]


@pytest.mark.parametrize("method", ADAPTER_METHODS)
def test_every_adapter_starts_as_the_base_and_round_trips_its_artifact_bit_exactly(method, tmp_path):
    spec = parse_method(method)
    kind = _where(spec.adapter)
    base = _base(kind, spec.recast)
    x = torch.randn(4, 3, 16, 16) if kind == "vit" else torch.randn(4, 3, 32, 32)
    ref = TaskModel.from_base(base, parse_method("recast" if spec.recast else "head"), seed=0)
    ref.new_task("t", ["a", "b"], seed=0)
    tm = TaskModel.from_base(base, spec, seed=0)
    tm.new_task("t", ["a", "b"], seed=0)
    ref.eval(), tm.eval()
    with torch.no_grad():
        torch.testing.assert_close(tm(x), ref(x), atol=1e-5, rtol=1e-5)  # a new task starts as the base
    task = build_sequence("digits:0-1", None, SplitSizes(24, 8, 8))[0]
    learn_task(tm, task, AdaptConfig(epochs=1, batch_size=8), seed=0, progress=False)
    save_task(tm, task.name, tmp_path / "t")
    again = TaskModel.from_base(base, spec, seed=0)
    assert load_task(again, tmp_path / "t") == task.name
    tm.set_task(task.name), again.set_task(task.name)
    tm.eval(), again.eval()
    with torch.no_grad():
        assert torch.equal(tm(x), again(x))
    _every_option_documented(ADAPTERS.entry(spec.adapter))


def test_every_adapter_is_named_and_suites_take_each_that_fits():
    for entry in ADAPTERS.entries():
        assert entry.display and entry.summary, entry.name
    for fam in FAMILIES.names():
        for m in suite_methods(get_family(fam)):
            parse_method(m)


# -- predictors ----------------------------------------------------------------------------------
def _trajectory(stages: int = 5) -> Trajectory:
    g = torch.Generator().manual_seed(0)
    shapes = {
        "conv.weight": (4, 3, 3, 3),
        "fc.weight": (6, 8),
        "fc.bias": (6,),
        "bn.weight": (4,),
        "bn.running_mean": (4,),
        "head.weight": (2, 6),
    }
    kinds = {
        "conv.weight": "conv",
        "fc.weight": "fc",
        "fc.bias": "bias",
        "bn.weight": "norm",
        "bn.running_mean": "buffer",
        "head.weight": "head",
    }
    base = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    return Trajectory(
        [{k: v + 0.1 * s * torch.randn(v.shape, generator=g) for k, v in base.items()} for s in range(stages)], kinds
    )


@pytest.mark.parametrize("name", list(PREDICTORS))
def test_every_predictor_is_deterministic_and_touches_only_its_kinds(name):
    if name == "known_authors" and not paths.shared_root():
        pytest.skip("the authors' KNOWN weights are in the shared folder")
    traj = _trajectory(6)
    for kinds in ("conv", "fc,bias"):
        p = get_predictor(name, kinds=kinds)
        steps = [3]  # every predictor defines x8 (ConsensusTA needs three candidates)
        a, b = p.predict_steps(traj, steps), get_predictor(name, kinds=kinds).predict_steps(traj, steps)
        allowed = {k for k, kind in traj.kinds.items() if kind in kinds.split(",")}
        for k in steps:
            assert all(torch.equal(a[k][n], b[k][n]) for n in a[k])
            changed = {n for n in a[k] if not torch.equal(a[k][n], traj.stages[0][n])}
            assert changed and changed <= allowed, (name, kinds, changed)
    _every_option_documented(PREDICTORS.entry(name))


# -- baselines -----------------------------------------------------------------------------------
# small buffers and pools for two tiny tasks; a new baseline runs with its defaults
_TINY = {
    "gdumb": "gdumb:mem_size=50",
    "er_ace": "er_ace:per_class=3",
    "derpp": "derpp:per_class=3",
    "inflora": "inflora:rank=2",
    "l2p": "l2p:pool_size=4,top_k=2,length=2",
}


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    cnn = create_model("smallcnn", num_classes=10, input_size=(1, 16, 16), widths=(4, 8, 8, 8), hidden=16)
    vit = create_model(
        "timm:vit_tiny_patch16_224",
        img_size=16,
        patch_size=4,
        embed_dim=24,
        depth=2,
        num_heads=2,
        num_classes=10,
        in_chans=1,
    )
    return {"cnn": cnn, "vit": vit}, build_sequence("digits", None, SplitSizes(60, 20, 40))


@pytest.mark.parametrize("name", list(BASELINES))
def test_every_baseline_runs_two_tiny_tasks_deterministically_and_leaves_the_base_alone(name, tiny_models):
    pytest.importorskip("avalanche")
    from weightlab.incremental.baselines import run_baseline

    entry = BASELINES.entry(name)
    _every_option_documented(entry)
    assert parse_baseline(name).name == name  # the defaults name the plain method
    models, tasks = tiny_models
    base = models["vit" if getattr(entry.obj, "needs_tokens", False) else "cnn"]
    before = {k: v.clone() for k, v in base.state_dict().items()}
    cfg = AdaptConfig(epochs=1, batch_size=16)
    a = run_baseline(base, _TINY.get(name, name), tasks, cfg, seed=0, progress=False)
    b = run_baseline(base, _TINY.get(name, name), tasks, cfg, seed=0, progress=False)
    assert [len(row) for row in a["accuracy_matrix"]] == [1, 2]
    assert all(0 <= x <= 100 for row in a["accuracy_matrix"] for x in row)
    assert a["accuracy_matrix"] == b["accuracy_matrix"]
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())


# -- suites and families -------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SUITES))
def test_every_suite_names_methods_that_exist_and_fit_its_model(name):
    suite = SUITES.get(name)
    family = get_family(create_model(suite.model, **suite.model_kwargs))
    methods = [p.method for p in suite.points] or suite.methods
    for m in methods:
        if is_baseline(m):
            cls = BASELINES.get(parse_baseline(m).method)
            assert not getattr(cls, "needs_tokens", False) or family.tokens
        else:
            spec = parse_method(m)
            if spec.adapter:
                assert spec.build_adapter().applies_to(family) is None, (name, m)
    for name_ in KNOW_SUITES:
        assert all(p in PREDICTORS for p in KNOW_SUITES.get(name_).predictors)


def test_every_family_row_is_complete_and_every_model_has_one():
    fields = {f.name for f in dataclasses.fields(MimicryConfig)}
    for entry in FAMILIES.entries():
        fam = entry.obj
        assert fam.recast_preset is None or fam.recast_preset in PRESETS
        for p in fam.presets.values():  # one pattern syntax: every table pattern is a regular expression
            re.compile(p.targets)
        assert set(fam.mimicry) <= fields
        MimicryConfig.for_family(fam)
        for rx in fam.placements.values():
            re.compile(rx)
        assert fam.batch_size >= 1 and fam.paper_table in (1, 2)
    for entry in MODELS.entries():
        assert entry.obj.family in FAMILIES
    from weightlab.models.families import ARCHITECTURES

    for entry in ARCHITECTURES.entries():
        assert entry.obj.family in FAMILIES
        re.compile(entry.obj.target_modules)
        re.compile(entry.obj.layers_pattern)


def test_a_library_model_s_family_is_its_class_row_never_an_attribute_guess():
    import timm

    from weightlab.models import create_model

    assert create_model("timm:vit_tiny_patch16_224", img_size=32, patch_size=4).weightlab_cfg.family == "vit"
    distilled = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, img_size=32, patch_size=4)
    from weightlab.models.families import architecture_row

    assert architecture_row(distilled).name == "timm:VisionTransformer"  # a subclass finds its base's row
    assert create_model("tv:resnet18").weightlab_cfg.family == "resnet"
    # torchvision's ViT names its layers encoder.layers.encoder_layer_N: not the vit family's placements
    assert create_model("tv:vit_b_16").weightlab_cfg.family == "generic"


def test_published_suites_name_their_rows_and_every_row_is_registered():
    """A suite's rows are written in its definition: registering a method never changes a published
    suite (nor its resume checks); every row a suite names is registered."""
    from pathlib import Path

    from weightlab.bench.suites import ALL_PREDICTORS

    source = (Path(__file__).resolve().parents[1] / "src/weightlab/bench/suites.py").read_text()
    assert "suite_methods(" not in source and "tuple(PREDICTORS)" not in source
    for name in SUITES:
        suite = SUITES.get(name)
        for m in suite.methods + [p.method for p in suite.points]:
            assert is_baseline(m) or parse_method(m), (name, m)
    for name in KNOW_SUITES:
        assert set(KNOW_SUITES.get(name).predictors) <= set(PREDICTORS), name
    assert len(set(ALL_PREDICTORS)) == len(ALL_PREDICTORS)


def test_a_registry_with_a_package_discovers_its_files(tmp_path, monkeypatch):
    """What adding a method takes: a file with a decorator; the registry finds it on its first lookup."""
    import sys

    pkg = tmp_path / "demo_methods"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text(
        "from weightlab.registry import Registry\nREG = Registry('demo', package='demo_methods')\n"
    )
    for name in ("zeta", "alpha", "mid"):
        (pkg / f"{name}.py").write_text(
            f"from demo_methods.base import REG\n\n@REG.register('{name}')\nclass M:\n    pass\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    from demo_methods.base import REG

    assert REG._entries == {}  # nothing imported yet
    assert "mid" in REG and set(REG) == {"alpha", "mid", "zeta"}
    for mod in [m for m in sys.modules if m.startswith("demo_methods")]:
        monkeypatch.delitem(sys.modules, mod)


def test_options_are_checked_by_type_and_range_with_one_line_naming_the_option():
    from weightlab.errors import WeightlabError
    from weightlab.registry import parse_spec

    assert parse_spec("lora:r=2,alpha=8.5,targets=a.b") == ("lora", {"r": 2, "alpha": 8.5, "targets": "a.b"})
    assert parse_method("lora:alpha=8").build_adapter().opts.alpha == 8.0  # an int where a float goes
    for spec, message in [
        ("lora:r=abc", "lora: option 'rank' must be an integer, got 'abc'"),
        ("lora:r=1.5", "lora: option 'rank' must be an integer"),
        ("lora:alpha=x", "lora: option 'alpha' must be a number"),
        ("lora:r=0", "lora: option 'rank' must be >= 1, got 0"),
        ("lora:nope=1", "lora: unknown option 'nope' (options: rank=1, alpha=4.0, targets=None)"),
        ("lora:r", "bad option 'r' in 'lora:r'"),
    ]:
        with pytest.raises(WeightlabError) as err:
            parse_method(spec)
        assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(WeightlabError, match="hat: option 'c' must be a number"):
        parse_baseline("hat:c=x")
    with pytest.raises(WeightlabError, match="input_convention' must be one of raw, normalized"):
        get_predictor("known", input_convention="other")


def test_cli_flags_come_from_the_options_dataclasses():
    import argparse

    from weightlab.errors import WeightlabError
    from weightlab.registry import add_option_flags, options_from_flags

    p = argparse.ArgumentParser()
    owners = add_option_flags(p, PREDICTORS.entries())
    flags = {a.option_strings[0] for a in p._actions if a.option_strings}
    assert {"--lam", "--keep", "--stages", "--known-weights", "--input-convention", "--tall-lambda"} <= flags
    args = p.parse_args(["--lam", "0.3", "--keep", "0.2"])
    assert options_from_flags(args, owners, "tsv") == {"lam": 0.3, "keep": 0.2}
    with pytest.raises(WeightlabError, match="--keep does not apply to task_vector"):
        options_from_flags(args, owners, "task_vector")
    help_text = {a.dest: a.help for a in p._actions}
    assert "fraction of singular components" in help_text["opt_keep"]


def test_every_own_model_builds_for_grey_and_colour_images_with_a_findable_head():
    from weightlab.know.kinds import param_kinds
    from weightlab.models import create_model, find_classifier

    for entry in MODELS.entries():
        for size in ((1, 28, 28), (3, 32, 32)):
            model = create_model(entry.name, num_classes=7, input_size=size).eval()
            with torch.no_grad():
                assert model(torch.randn(2, *size)).shape == (2, 7), (entry.name, size)
            name, head = find_classifier(model)
            assert head.out_features == 7
            kinds = param_kinds(model)  # what KNOW's predictors and meta rows group weights by
            assert kinds[f"{name}.weight"] == "head"
            assert ("fc" if entry.obj.family == "mlp" else "conv") in kinds.values(), entry.name
