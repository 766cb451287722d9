"""The one engine: every training path in weightlab (task learning, continual-learning baselines,
progressive forgetting, transfer, KNOW meta collection, pretraining) runs its epochs, builds its
optimiser, clips, evaluates top-1 and moves batches here.

>>> from weightlab.engine import make_optimizer, train_epoch, evaluate_accuracy
>>> opt = make_optimizer("adamw", model.parameters(), lr=2e-3, weight_decay=1e-6)
>>> loss = train_epoch(model, data.batches(64, cfg, shuffle=True, seed=0), opt, clip_norm=1.0)
>>> acc = evaluate_accuracy(model, data.batches(256, cfg))

Every function takes a ``device`` (default: where the model is; ``"auto"``: CUDA, then MPS, then the
CPU) and a ``precision`` (``fp32``, ``bf16`` or ``fp16``: autocast, with a gradient scaler for fp16).
Models move with :func:`place`, batches with :func:`to_device`; nothing else in the library changes a
tensor's device on its own.
"""

# ruff: noqa: F401
from typing import TYPE_CHECKING

from weightlab._lazy import attach

# the submodules are imported on first use: ``weightlab.engine.options`` (the CLI's choices) needs no torch
__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "options": ["DEVICE_HELP", "OPTIMIZERS", "PRECISIONS", "SEEDS"],
        "loop": [
            "SYNC_EVERY",
            "Precision",
            "batch_to",
            "correct_count",
            "derived_seed",
            "evaluate_accuracy",
            "fit_classifier",
            "load_optimizer_tensors",
            "make_optimizer",
            "module_device",
            "optimizer_tensors",
            "place",
            "resolve_device",
            "seed_everything",
            "set_deterministic",
            "tensor_batches",
            "to_device",
            "train_epoch",
        ],
    },
)

if TYPE_CHECKING:  # for type checkers and IDEs (__all__ is built by attach, which linters cannot see)
    from weightlab.engine.loop import (
        SYNC_EVERY,
        Precision,
        batch_to,
        correct_count,
        derived_seed,
        evaluate_accuracy,
        fit_classifier,
        load_optimizer_tensors,
        make_optimizer,
        module_device,
        optimizer_tensors,
        place,
        resolve_device,
        seed_everything,
        set_deterministic,
        tensor_batches,
        to_device,
        train_epoch,
    )
    from weightlab.engine.options import DEVICE_HELP, OPTIMIZERS, PRECISIONS, SEEDS
