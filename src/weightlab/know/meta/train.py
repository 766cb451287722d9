"""Meta-training one KNOWN hypermodel: L1 on the predicted weight (Eq. 6), Adam, early stopping
on held-out rows (which must come from held-out *runs*, never rows of a training run)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from weightlab.engine import batch_to, make_optimizer, module_device, place, tensor_batches, to_device, train_epoch
from weightlab.errors import WeightlabError
from weightlab.know.hypermodel import MIN_SEQ_LEN, SEQ_LEN, KNOWNNet


@dataclass
class MetaTrainConfig:
    lr: float = 1e-3
    batch_size: int = 4096
    epochs: int = 20
    patience: int = 3  # epochs without a better validation L1 before stopping
    seed: int = 0
    input_convention: str = "normalized"  # raw inputs train unstably and do not beat "no change" on convs
    # the history length S the hypermodels read (the paper's Table 6 ablation); the meta rows hold the
    # five stages before their target, and a shorter S reads the last S of them: same rows, same targets
    seq_len: int = SEQ_LEN

    def __post_init__(self) -> None:
        if not MIN_SEQ_LEN <= self.seq_len <= SEQ_LEN:
            raise WeightlabError(
                f"KNOWN's history length must be in [{MIN_SEQ_LEN}, {SEQ_LEN}] (the meta rows hold {SEQ_LEN} "
                f"stages before their target), got {self.seq_len}"
            )
        # epochs = 0 is the untrained initialisation (a reference point in Python; the CLI asks for >= 1)
        if self.lr <= 0 or self.batch_size < 1 or self.epochs < 0 or self.patience < 1:
            raise WeightlabError(
                f"KNOWN meta-training needs lr > 0, batch_size >= 1, epochs >= 0 and patience >= 1 (got {self.lr}, "
                f"{self.batch_size}, {self.epochs}, {self.patience})"
            )


@torch.no_grad()
def l1_error(net: KNOWNNet, seq: torch.Tensor, target: torch.Tensor, batch_size: int = 65536) -> float:
    """Mean |θ^t + KNOWN(seq) − target| over the rows (on the net's device)."""
    net.eval()
    total = 0.0
    for s, t in to_device(tensor_batches(seq, target, batch_size), module_device(net)):
        total += float((s[:, -1] + net(s) - t).abs().sum())
    return total / max(seq.shape[0], 1)


def last_stages(rows: tuple[torch.Tensor, torch.Tensor], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows cut to the last ``seq_len`` stages before the target (the newest, Θ⁰'s column, stays last)."""
    seq, target = rows
    return seq[:, seq.shape[1] - seq_len :].contiguous(), target


def baseline_l1(seq: torch.Tensor, target: torch.Tensor, method: str, lam: float = 0.2) -> float:
    """L1 error of the reference predictors: ``zero`` (no change) and ``task_vector`` (λ·(θ⁰ − θ¹))."""
    if method == "zero":
        pred = seq[:, -1]
    elif method == "task_vector":
        pred = seq[:, -1] + lam * (seq[:, -1] - seq[:, -2])
    else:
        raise WeightlabError(f"unknown baseline '{method}' (use zero or task_vector)")
    return float((pred - target).abs().mean())


def train_known(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    cfg: MetaTrainConfig | None = None,
    *,
    progress: bool = True,
    desc: str = "meta-training KNOWN",
    device: str | None = None,
) -> tuple[KNOWNNet, dict]:
    """Train a KNOWN on ``(sequences, targets)`` rows on ``device`` (default CPU); returns the
    best-on-validation model (on the CPU) and the history. The rows are ``(N, cfg.seq_len)``
    (:func:`last_stages` cuts the collected five-stage rows to a shorter S)."""
    cfg = cfg or MetaTrainConfig()
    seq, target = train
    if seq.ndim != 2 or seq.shape[1] != cfg.seq_len or target.shape != seq.shape[:1]:
        raise WeightlabError(
            f"meta-training rows must be (N, {cfg.seq_len}) sequences and (N,) targets, got "
            f"{tuple(seq.shape)} and {tuple(target.shape)}"
        )
    torch.manual_seed(cfg.seed)
    net = KNOWNNet(cfg.input_convention, cfg.seq_len)
    with torch.no_grad():  # start as the "no change" predictor: a zero residual, then learn corrections
        net.head.weight.zero_()
        net.head.bias.zero_()
    dev = place(net, device)
    seq, target = batch_to((seq, target), dev)  # the rows are small: they sit on the device whole
    val = batch_to(tuple(val), dev)
    opt = make_optimizer("adam", net.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    history = {"train_l1": [], "val_l1": [], "seconds": 0.0}
    start = time.perf_counter()
    # the start (the zero predictor) is a candidate too: the result is never worse on validation than "no change"
    history["val_l1_start"] = best = l1_error(net, *val)
    best_state, waited = copy.deepcopy(net.state_dict()), 0
    for _ in tqdm(range(cfg.epochs), desc=desc, disable=not progress):
        order = torch.randperm(seq.shape[0], generator=g)
        l1 = train_epoch(
            net,
            tensor_batches(seq, target, cfg.batch_size, order),
            opt,
            desc="meta-training",
            loss_fn=lambda b, s, t: (s[:, -1] + net(s) - t).abs().mean(),
        )  # the next weight's L1
        history["train_l1"].append(l1)
        history["val_l1"].append(l1_error(net, *val))
        if history["val_l1"][-1] < best:
            best, best_state, waited = history["val_l1"][-1], copy.deepcopy(net.state_dict()), 0
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    net.load_state_dict(best_state)
    place(net, "cpu")
    history["best_val_l1"] = best
    history["seconds"] = round(time.perf_counter() - start, 1)
    return net.eval(), history
