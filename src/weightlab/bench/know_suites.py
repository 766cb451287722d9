"""The KNOW transfer suites (paper Table 1), as data: what each fixes is
:class:`weightlab.know.protocol.KnowSuite`; its runner is :mod:`weightlab.bench.know`. Adding a suite is one
entry here (:mod:`weightlab.bench.suites` re-exports them beside the RECAST suites)."""

from __future__ import annotations

from dataclasses import replace

from weightlab.know.forgetting import ForgetConfig
from weightlab.know.pretrain import PretrainConfig
from weightlab.know.protocol import KnowSuite
from weightlab.know.transfer import TransferConfig
from weightlab.registry import Registry

# the faithful protocol (issue 16); the ablation suite reuses its trajectories
FAITHFUL = KnowSuite(
    "cifar5-smallcnn-faithful",
    "the faithful protocol on two cores: small CNN pretrained to convergence (30 epochs, Adam 3e-3 with "
    "cosine decay, crop + flip) on a half (5,000) of 10,000 CIFAR-10 images of classes 0-4, forgotten on "
    "nested subsets (r=0.5, S=5, 3 augmented epochs per stage), transferred to 500 images of classes 5-9 "
    "with the learning rate chosen on validation; 3 trajectory seeds x 3 transfer seeds; the real x2 "
    "weights (all 10,000 images) and the shrink control beside every prediction",
    model="smallcnn",
    source="cifar10:0-4",
    target="cifar10:5-9",
    source_train=10000,
    source_val=1000,
    eval_size=2000,
    pretrain=PretrainConfig(epochs=30, lr=3e-3, augment="crop_flip"),
    forget=ForgetConfig(stages=5, epochs=3, augment="crop_flip"),
    target_train=500,
    target_test=2000,
    transfer=TransferConfig(warmup_epochs=2, epochs=8, lr=1e-3, batch_size=64, lr_grid=(3e-4, 1e-3, 3e-3)),
    trajectory_seeds=(0, 1, 2),
    truth=True,
    controls=True,
    incremental=False,
)

# the v3 protocol (issue 36): nothing capped, controls that can refute, the power stated
FAITHFUL_V3 = replace(
    FAITHFUL,
    name="cifar5-smallcnn-v3",
    description="the v3 protocol (issue 36) on the faithful setting: 6 trajectories x 5 transfer seeds; each "
    "row's transfer rate chosen once per trajectory (first seed) on 500 held-out downstream images from a 5-point "
    "grid extended past an edge up to 4 times; the test split (all 5,000 images of classes 5-9) read once; a "
    "same-size restart control beside every trajectory (forgetting counted only beyond it), the truth rows Θ⁰ "
    "fine-tuned on x2 and x2 from scratch with the base's steps, and the base trained twice as long on the first "
    "two trajectories",
    eval_size=5000,
    target_val=500,
    target_test=5000,
    transfer=TransferConfig(
        warmup_epochs=2, epochs=8, lr=1e-3, batch_size=64, lr_grid=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2), lr_extensions=4
    ),
    predictors=("linear_fit", "task_vector", "magmax", "tsv", "known", "known_authors"),
    steps=(1, 2),
    seeds=(42, 1998, 3142592, 7, 11),
    trajectory_seeds=(0, 1, 2, 3, 4, 5),
    select_once=True,
    restart_control=True,
    truth_scratch="steps",
    long_base=2,
)

KNOW_SUITES: Registry[KnowSuite] = Registry("KNOW suite")
for _k in [
    KnowSuite(
        "digits-smallcnn",
        "small CNN pretrained here on digits 0-4 (scikit-learn), transferred to digits 5-9",
        model="smallcnn",
        source="digits:0-4",
        target="digits:5-9",
        pretrain_epochs=30,
        pretrain_lr=3e-3,
        model_kwargs={"input_size": (1, 16, 16)},
        target_train=None,
        target_test=None,
        eval_size=None,
        forget=ForgetConfig(batch_size=64),
        transfer=TransferConfig(warmup_epochs=3, epochs=10, batch_size=64),
        seeds=(42,),
        needs_shared=False,
    ),
    KnowSuite(
        "mnist-fmnist-quick",
        "small CNN pretrained here to convergence on 3k MNIST images, transferred to 1k Fashion-MNIST "
        "(the quickstart with --data-root)",
        model="smallcnn",
        source="mnist",
        target="fashion_mnist",
        model_kwargs={"input_size": (1, 28, 28)},
        # 20 epochs with cosine decay: D⁰ test accuracy 96.7, falling monotonically under forgetting (92.1 at the
        # last stage); 8 constant-rate epochs left it at 89.1, and the first forgetting stage raised it to 95.7
        pretrain=PretrainConfig(epochs=20, lr=3e-3, batch_size=64),
        source_train=3000,
        target_train=1000,
        target_test=1000,
        eval_size=1000,
        forget=ForgetConfig(batch_size=64),
        transfer=TransferConfig(warmup_epochs=2, epochs=6, batch_size=64),
        seeds=(42,),
    ),
    KnowSuite(
        "mnist-fmnist-smallcnn",
        "small CNN pretrained here on 20k MNIST images, transferred to Fashion-MNIST",
        model="smallcnn",
        source="mnist",
        target="fashion_mnist",
        pretrain_epochs=3,
        pretrain_lr=2e-3,
        model_kwargs={"input_size": (1, 28, 28)},
        source_train=20000,
        target_train=1000,
        target_test=2000,
        transfer=TransferConfig(warmup_epochs=2, epochs=10, lr=1e-3),
    ),
    KnowSuite(
        "resnet20-cifar10-fmnist",
        "shared pretrained CIFAR ResNet-20, D0 = CIFAR-10 (JPEG, 50k), transferred to Fashion-MNIST",
        model="resnet20",
        source="cifar10",
        target="fashion_mnist",
        pretrained=True,
        forget=ForgetConfig(full_data_pass=True),
        target_train=1000,
        target_test=2000,
        transfer=TransferConfig(warmup_epochs=2, epochs=10, lr=1e-3),
    ),
    FAITHFUL,
    FAITHFUL_V3,
    replace(
        FAITHFUL,
        name="cifar5-smallcnn-ablation",
        description="the paper's Table 6 (the history length S) and the faithful incremental-pretraining baseline, "
        "on the trajectories of cifar5-smallcnn-faithful (same bases, forgetting, transfer and seeds): S=2 is Task "
        "Vector, S=3, 4, 5 are KNOWN hypermodels meta-trained on one meta-dataset that differ only in S "
        "(benchmarks/weights/known_s<S>; run from the repository root); incremental pretraining has the base's "
        "epochs, steps and schedule on the nested subsets, smallest first",
        truth=False,
        controls=False,
        half_source=True,
        incremental=True,
        predictors=("task_vector",),
        known_variants=tuple((f"known_s{n}", f"KNOWN S={n}", f"benchmarks/weights/known_s{n}") for n in (3, 4, 5)),
    ),
    KnowSuite(
        "paper-table1-resnet18",
        "KNOW Table 1 at paper scale: ResNet-18 pretrained here on CIFAR-100 (200 epochs, Adam, crop + flip), "
        "progressive forgetting r=0.5, transferred to CIFAR-10 (100 epochs); both read by torchvision from "
        "their folders under --data-root (cifar-100-python, cifar-10-batches-py); a GPU run",
        model="tv:resnet18",
        source="tv:CIFAR100",
        target="tv:CIFAR10",
        pretrain_epochs=200,
        pretrain_lr=1e-3,
        source_train=None,
        target_train=None,
        target_test=None,
        eval_size=None,
        forget=ForgetConfig(full_data_pass=True),
        transfer=TransferConfig(),
        stream=dict(workers=8, augment="crop_flip"),
    ),
]:
    KNOW_SUITES.add(_k.name, _k, display=_k.name, summary=_k.description)


def get_know_suite(name: str) -> KnowSuite:
    return KNOW_SUITES.get(name)


__all__ = ["FAITHFUL", "FAITHFUL_V3", "KNOW_SUITES", "get_know_suite"]
