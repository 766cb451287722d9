"""KNOWN as a predictor: every scalar's sequence of 5 values ``[θ^4, θ^3, θ^2, θ^1, θ^0]`` goes
through the hypermodel of its kind (Conv for >2-D weights, FC for 2-D weights, Bias for biases),
``θ̂^{-1} = θ^0 + KNOWN(·)``. Further steps slide the window: ``[θ^3, …, θ^0, θ̂^{-1}] → θ̂^{-2}``.
A set meta-trained with another history length S (``know meta train --seq-len``) reads the last S
stages ``[θ^{S-1}, …, θ^0]`` instead (the paper's Table 6 ablation).

Kinds map to the three hypermodels as: conv → Conv; fc → FC; bias, norm → Bias; head and other
by shape (more than 2 dims → Conv, 2-D → FC, vectors → Bias: the head's bias is a bias).
BatchNorm (``norm``) is not predicted by default, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from weightlab import paths
from weightlab.errors import WeightlabError
from weightlab.know.hypermodel import KNOWNNet, load_keras_known, seq_len_of
from weightlab.know.predictors.base import PREDICTORS, Predictor, flat_sequences, unflatten
from weightlab.know.trajectory import Trajectory
from weightlab.registry import option

MODEL_FOR_KIND = {"conv": "Conv", "fc": "FC", "bias": "Bias", "norm": "Bias"}  # head, other: by shape


def hypermodel_for(kind: str, ndim: int) -> str:
    """Which of the three hypermodels predicts a tensor of this kind and number of dims."""
    if kind in ("head", "other"):
        return "Conv" if ndim > 2 else ("FC" if ndim == 2 else "Bias")
    return MODEL_FOR_KIND[kind]


OFFICIAL_FILES = {"Conv": "KNOWN_Conv.h5", "FC": "KNOWN_FC.h5", "Bias": "KNOWN_Bias.h5"}
# weightlab's own meta-trained hypermodels, shipped in the package (see weights/MODEL_CARD.md)
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "weights"


def official_known_dir() -> Path | None:
    root = paths.shared_root()
    d = root / "reference" / "known_official" if root is not None else None
    return d if d is not None and d.is_dir() else None


def known_weights_dir(weights: str | Path | None) -> Path:
    """Where a KNOWN set lives: ``None`` / ``"weightlab"`` the shipped one, ``"authors"`` the authors'
    ``.h5`` files in the shared folder, otherwise the given folder."""
    if weights is None or str(weights) == "weightlab":
        return SHIPPED_DIR
    if str(weights) == "authors":
        d = official_known_dir()
        if d is None:
            raise WeightlabError(
                "the authors' KNOWN weights were not found: set WEIGHTLAB_SHARED to the shared "
                "folder (reference/known_official) or pass a folder of KNOWN weights"
            )
        return d
    return Path(weights)


def load_known_set(weights: str | Path | None = None, input_convention: str | None = None) -> dict[str, KNOWNNet]:
    """The three hypermodels ``{"Conv", "FC", "Bias"}``: weightlab's shipped set (default), the authors'
    (``"authors"``), or a folder of the authors' ``.h5`` files or of ``KNOWN_<kind>.safetensors``.

    ``input_convention``: for the authors' files ``"raw"`` (default, their current code) or
    ``"normalized"``; a safetensors set was trained with one and says which in its metadata."""
    folder = known_weights_dir(weights)
    if not folder.is_dir():
        raise WeightlabError(
            f"KNOWN weights not found: {folder} is not a folder (it must hold KNOWN_Conv, "
            "KNOWN_FC and KNOWN_Bias as .h5 or .safetensors)"
        )
    nets = {}
    for kind, h5 in OFFICIAL_FILES.items():
        st = folder / f"KNOWN_{kind}.safetensors"
        if (folder / h5).is_file():
            nets[kind] = load_keras_known(folder / h5, input_convention or "raw")
        elif st.is_file():
            from weightlab.io import load_weights, read_metadata
            from weightlab.models import load_state_dict_strict

            trained = read_metadata(st).get("input_convention", "raw")
            if input_convention not in (None, trained):
                raise WeightlabError(
                    f"{st} was trained with the '{trained}' input convention, not "
                    f"'{input_convention}' (leave the input convention unset)"
                )
            state = load_weights(st)
            try:
                net = KNOWNNet(trained, seq_len_of(state))
            except WeightlabError as e:
                raise WeightlabError(f"{st}: {e}") from None
            load_state_dict_strict(net, state, source=str(st))
            nets[kind] = net.eval()
        else:
            raise WeightlabError(f"{folder}: no {h5} or KNOWN_{kind}.safetensors")
    set_seq_len(nets, str(folder))
    return nets


def set_seq_len(nets: dict[str, KNOWNNet], where: str) -> int:
    """The one history length S the hypermodels of a set read; a set mixing lengths is refused."""
    lengths = {k: n.seq_len for k, n in nets.items()}
    if len(set(lengths.values())) != 1:
        raise WeightlabError(f"{where}: its hypermodels read different history lengths {lengths} (one set, one S)")
    return next(iter(lengths.values()))


@dataclass
class KNOWNOptions:
    weights: str | None = option(
        None,
        "KNOWN hypermodels: 'weightlab' (the shipped ones, default), 'authors' (the "
        "published .h5 in <shared>/reference/known_official) or a folder of "
        "KNOWN_{Conv,FC,Bias}.h5/.safetensors",
        flag="known-weights",
    )
    input_convention: str | None = option(
        None,
        "input convention for the authors' .h5 (raw by default, as in their "
        "current code); weightlab's sets record their own",
        choices=("raw", "normalized"),
    )
    chunk: int = option(4096, "parameters per chunk of the folded kernel (x256 per batch on a GPU)", minimum=1)
    device: str = option("cpu", "where the KNOWN kernel runs: cpu, cuda, cuda:N, mps or auto")


@PREDICTORS.register(
    "known", display="KNOWN (weightlab)", paper="KNOW; weightlab's meta-trained hypermodels", options=KNOWNOptions
)
class KNOWN(Predictor):
    """KNOWN with weightlab's shipped hypermodels by default (``weights="authors"``: the authors')."""

    default_weights: str | None = None

    def __init__(self, kinds=None, **options) -> None:
        """``options``: :class:`KNOWNOptions`; ``weights`` may also be a dict of loaded :class:`KNOWNNet`."""
        from weightlab.engine import resolve_device

        nets = options.pop("weights") if isinstance(options.get("weights"), dict) else None
        super().__init__(kinds, **options)
        opts = self.opts
        self.device = resolve_device(opts.device)
        weights = nets if nets is not None else (self.default_weights if opts.weights is None else opts.weights)
        self.weights_source = None if isinstance(weights, dict) else str(known_weights_dir(weights))
        self.nets = weights if isinstance(weights, dict) else load_known_set(self.weights_source, opts.input_convention)
        self.input_convention = ",".join(sorted({net.input_convention for net in self.nets.values()}))
        self.seq_len = set_seq_len(self.nets, self.weights_source or "KNOWN hypermodels")
        self._fused = {k: net.fused() for k, net in self.nets.items()}

    def options(self) -> dict:
        return {"input_convention": self.input_convention, "weights": self.weights_source, "seq_len": self.seq_len}

    def min_stages(self, step: int) -> int:
        return self.seq_len

    def residuals(self, seq_by_model: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self._fused[m](seq, chunk=self.opts.chunk, device=self.device) for m, seq in seq_by_model.items()}

    def _predict_keys(self, trajectory: Trajectory, keys, steps):
        groups: dict[str, list[str]] = {}
        for k in keys:
            groups.setdefault(hypermodel_for(trajectory.kinds[k], trajectory.stages[0][k].ndim), []).append(k)
        # window per model: (N, S) float32, oldest-forgetting first, the last column is Θ⁰; on the predictor's
        # device for every step (one copy there, one copy of each predicted step back)
        home = trajectory.stages[0][keys[0]].device
        windows = {
            m: flat_sequences(trajectory, ks, list(range(self.seq_len - 1, -1, -1)), torch.float32, dim=1).to(
                self.device
            )
            for m, ks in groups.items()
        }
        out = {}
        for k in range(1, max(steps) + 1):
            res = self.residuals(windows)
            for m in windows:
                nxt = windows[m][:, -1] + res[m]
                windows[m] = torch.cat([windows[m][:, 1:], nxt.unsqueeze(1)], dim=1)
            if k in steps:
                out[k] = {}
                for m, ks in groups.items():
                    out[k].update(unflatten(windows[m][:, -1].to(home), trajectory, ks))
        return out


@PREDICTORS.register(
    "known_authors", display="KNOWN (authors)", paper="KNOW (the authors' published weights)", options=KNOWNOptions
)
class KNOWNAuthors(KNOWN):
    """KNOWN with the authors' published hypermodels (``<shared>/reference/known_official``)."""

    default_weights = "authors"
