"""Adding an adapter, a KNOW predictor or a continual-learning baseline is its one file.

A copy of the package gets three new files -- nothing else changes -- and the CLI of that copy offers
and runs each of them end to end: the registries discover the files, the CLI's catalogue is built again
because the sources changed, and a suite runs the new rows when asked for them."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "weightlab"

ADAPTER = '''
from dataclasses import dataclass

from weightlab.incremental.methods.base import ADAPTERS, Adapter
from weightlab.registry import option


@dataclass
class BitFitOptions:
    scope: str = option("all", "which biases train", choices=("all", "norm"))


@ADAPTERS.register("bitfit", display="BitFit", paper="Ben Zaken et al. 2022", options=BitFitOptions)
class BitFit(Adapter):
    """Only the backbone's biases train per task."""

    def is_trainable(self, name):
        return name.endswith(".bias") and (self.opts.scope == "all" or ".bn" in name)
'''

PREDICTOR = '''
from dataclasses import dataclass

from weightlab.know.predictors.base import PREDICTORS, Predictor
from weightlab.registry import option


@dataclass
class MeanStepOptions:
    lam: float = option(0.5, "scale of the mean per-stage update")


@PREDICTORS.register("mean_step", display="MeanStep", options=MeanStepOptions)
class MeanStep(Predictor):
    """Θ̂ = Θ⁰ + k·λ·mean over stages of (Θ^{j-1} − Θ^j)."""

    def _predict_keys(self, trajectory, keys, steps):
        s = trajectory.stages
        n = len(s) - 1
        return {
            k: {
                key: s[0][key].double()
                + k * self.opts.lam * sum(s[j - 1][key].double() - s[j][key].double() for j in range(1, n + 1)) / n
                for key in keys
            }
            for k in steps
        }
'''

BASELINE = '''
from dataclasses import dataclass

from weightlab.incremental.baselines.harness import ContinualMethod
from weightlab.incremental.baselines.spec import BASELINES
from weightlab.registry import option


@dataclass
class LinearProbeOptions:
    gain: float = option(1.0, "scale of the features the heads read", minimum=0.0)


@BASELINES.register("linear_probe", display="linear probe", options=LinearProbeOptions)
class LinearProbe(ContinualMethod):
    """A frozen shared backbone and a head per task."""

    def trainable(self, t):
        return list(self.heads[t].parameters())

    def logits(self, t, x):
        return self.heads[t](self.opts.gain * self.backbone(x))

    def learnt_per_task(self):
        return 0
'''


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("pkg")
    shutil.copytree(SRC, root / "src" / "weightlab", ignore=shutil.ignore_patterns("__pycache__"))
    pkg = root / "src" / "weightlab"
    (pkg / "incremental" / "methods" / "bitfit.py").write_text(ADAPTER)
    (pkg / "know" / "predictors" / "mean_step.py").write_text(PREDICTOR)
    (pkg / "incremental" / "baselines" / "linear_probe.py").write_text(BASELINE)
    return root


def _cli(copy: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONPATH=str(copy / "src"),
        WEIGHTLAB_CACHE=str(copy / "cache"),
        CUDA_VISIBLE_DEVICES="",
        MPLBACKEND="Agg",
    )
    return subprocess.run(
        [sys.executable, "-m", "weightlab", *args], cwd=copy, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_cli_offers_the_new_files(copy):
    adapt = _cli(copy, "recast", "adapt", "--help")
    assert adapt.returncode == 0 and "recast+bitfit" in adapt.stdout.replace("\n", " ").replace("  ", " ")
    predict = _cli(copy, "know", "predict", "--help")
    assert predict.returncode == 0 and "mean_step" in predict.stdout and "--lam" in predict.stdout
    # the catalogue was built from the copy's sources, not taken from the tree's
    (entry,) = (copy / "cache").glob("catalogue-*.json")
    names = json.loads(entry.read_text())
    assert "bitfit" in names["methods"] and "mean_step" in names["predictors"]


def test_a_new_adapter_and_baseline_run_in_a_suite(copy):
    done = _cli(
        copy, "recast", "bench", "--suite", "smoke", "--methods", "bitfit:scope=norm,recast+bitfit,linear_probe",
        "--seeds", "0", "--device", "cpu", "--out", "bench", "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    runs = {r["method"]: r for r in json.loads((copy / "bench" / "results.json").read_text())["runs"]}
    assert set(runs) == {"bitfit:scope=norm", "recast+bitfit", "linear_probe"}
    assert runs["bitfit:scope=norm"]["zero_forgetting"] and runs["recast+bitfit"]["zero_forgetting"]
    assert 0 < runs["bitfit:scope=norm"]["trainable_per_task"] < runs["recast+bitfit"]["trainable_per_task"]
    assert runs["linear_probe"]["trainable_per_task"] == 0 and len(runs["linear_probe"]["final_accuracy"]) == 2


def test_a_new_predictor_predicts_from_a_trajectory(copy):
    forget = _cli(
        copy, "know", "forget", "--model", "smallcnn", "--no-pretrained", "--data", "digits", "--stages", "3",
        "--epochs", "1", "--device", "cpu", "--out", "traj", "--no-progress",
    )  # fmt: skip
    assert forget.returncode == 0, forget.stderr[-2000:]
    predict = _cli(
        copy, "know", "predict", "--trajectory", "traj", "--method", "mean_step", "--lam", "0.25", "--steps", "2",
        "--out", "pred", "--no-progress",
    )  # fmt: skip
    assert predict.returncode == 0, predict.stderr[-2000:]
    assert sorted(p.name for p in (copy / "pred").glob("mean_step*.safetensors")) == [
        "mean_step_x2.safetensors",
        "mean_step_x4.safetensors",
    ]
