"""The one engine: every training path in weightlab (task learning, continual-learning baselines,
progressive forgetting, transfer, KNOW meta collection, pretraining) runs its epochs, builds its
optimiser, clips, evaluates top-1 and moves batches here.

>>> from weightlab.engine import make_optimizer, train_epoch, evaluate_accuracy
>>> opt = make_optimizer("adamw", model.parameters(), lr=2e-3, weight_decay=1e-6)
>>> loss = train_epoch(model, data.batches(64, cfg, shuffle=True, seed=0), opt, clip_norm=1.0)
>>> acc = evaluate_accuracy(model, data.batches(256, cfg))

Every function takes a ``device`` (default CPU); batches are moved there and nothing else in the
library calls ``.to(device)`` on its own.
"""

from weightlab.engine.loop import (
    OPTIMIZERS,
    correct_count,
    evaluate_accuracy,
    fit_classifier,
    make_optimizer,
    resolve_device,
    tensor_batches,
    to_device,
    train_epoch,
)

__all__ = [
    "OPTIMIZERS",
    "correct_count",
    "evaluate_accuracy",
    "fit_classifier",
    "make_optimizer",
    "resolve_device",
    "tensor_batches",
    "to_device",
    "train_epoch",
]
