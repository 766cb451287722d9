"""KNOWN, the Knowledge-Overflowed Weight Nowcaster (9,425 weights), and its loader for the
authors' Keras weights.

Every scalar parameter is predicted independently from its sequence of S=5 values, ordered
oldest-forgetting-stage first ``[θ^{S-1}, …, θ^1, θ^0]``. Stream 1 reads the 5 values, stream 2
the 4 consecutive differences (``seq_len`` S sets another history length, for the paper's Table 6
ablation; the authors' weights and weightlab's shipped ones take S=5); each stream is
Dense(64, linear) → exp block → Dense(32) → LeakyReLU(0.3), with the exp block
``h = ReLU(Dense8(x)); Dense64_a(h) + Dense64_b(h) ⊙ exp(Dense64_c(h) ⊙ x)``. The two 32-wide
outputs are concatenated → Dense(1) → tanh: a residual added to the last value, ``θ̂^{-1} = θ^0 + residual``.

:class:`KNOWNNet` is the plain module (the reference, used for the golden-file test and for
training); :meth:`KNOWNNet.fused` gives an algebraically folded inference kernel that evaluates
the same function several times faster over millions of parameters (:class:`FusedKNOWN`).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from weightlab.errors import WeightlabError

SEQ_LEN = 5  # the paper's S, the history length of the authors' and the shipped hypermodels
MIN_SEQ_LEN = 2  # one difference at least (S=2 reads θ¹, θ⁰ and their difference)
INPUT_CONVENTIONS = ("raw", "normalized")
KINDS = ("conv", "fc", "bias")
# Keras layer names of one stream, in the roles of the reference notes.
_STREAM_ROLES = ("inp", "gate", "add", "factor", "rate", "out")
_LEAKY_SLOPE = 0.3  # Keras' LeakyReLU default


class KNOWNStream(nn.Module):
    """Dense(64, linear) → exp block → Dense(32) → LeakyReLU(0.3)."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.inp = nn.Linear(in_features, 64)
        self.gate = nn.Linear(64, 8)  # Dense8 of the exp block
        self.add = nn.Linear(8, 64)  # Dense64_a: the additive term
        self.factor = nn.Linear(8, 64)  # Dense64_b: multiplies the exponential
        self.rate = nn.Linear(8, 64)  # Dense64_c: inside the exponential
        self.out = nn.Linear(64, 32)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x = self.inp(u)
        h = F.relu(self.gate(x))
        y = self.add(h) + self.factor(h) * torch.exp(self.rate(h) * x)
        return F.leaky_relu(self.out(y), _LEAKY_SLOPE)


class KNOWNNet(nn.Module):
    """The KNOWN hypermodel: ``(N, seq_len)`` sequences (default 5) → ``(N,)`` residuals.

    ``input_convention="raw"`` feeds the values as they are (the authors' current code);
    ``"normalized"`` (their earlier version, as in WNN) subtracts ``w[0]``, divides by
    ``2·(range + 1e-5)``, predicts, and maps the residual back to weight units.
    """

    def __init__(self, input_convention: str = "raw", seq_len: int = SEQ_LEN) -> None:
        super().__init__()
        if input_convention not in INPUT_CONVENTIONS:
            raise WeightlabError(
                f"unknown KNOWN input convention '{input_convention}' (use one of {', '.join(INPUT_CONVENTIONS)})"
            )
        if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < MIN_SEQ_LEN:
            raise WeightlabError(f"KNOWN's history length must be an integer >= {MIN_SEQ_LEN}, got {seq_len!r}")
        self.input_convention = input_convention
        self.seq_len = seq_len
        self.values = KNOWNStream(seq_len)
        self.diffs = KNOWNStream(seq_len - 1)
        self.head = nn.Linear(64, 1)

    def core(self, seq: torch.Tensor) -> torch.Tensor:
        """The network itself on already-prepared sequences."""
        d = seq[:, 1:] - seq[:, :-1]
        z = torch.cat([self.values(seq), self.diffs(d)], dim=1)
        return torch.tanh(self.head(z)).squeeze(1)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        _check_seq(seq, self.seq_len)
        if self.input_convention == "raw":
            return self.core(seq)
        shift, scale = _norm_stats(seq)
        return self.core((seq - shift) / scale) * scale.squeeze(1)

    def extra_repr(self) -> str:
        return f"input_convention={self.input_convention!r}, seq_len={self.seq_len}"

    def fused(self) -> FusedKNOWN:
        return FusedKNOWN(self)


def _check_seq(seq: torch.Tensor, seq_len: int = SEQ_LEN) -> None:
    if seq.ndim != 2 or seq.shape[1] != seq_len:
        raise WeightlabError(f"KNOWN takes (N, {seq_len}) sequences, got shape {tuple(seq.shape)}")


def seq_len_of(state: dict[str, torch.Tensor]) -> int:
    """The history length a KNOWNNet state dict was made for (its value stream's input width)."""
    w = state.get("values.inp.weight")
    if w is None or w.ndim != 2:
        raise WeightlabError("not a KNOWN state dict (no 2-D values.inp.weight)")
    return int(w.shape[1])


def _norm_stats(seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shift = seq[:, :1]
    scale = 2.0 * (seq.amax(1, keepdim=True) - seq.amin(1, keepdim=True) + 1e-5)
    return shift, scale


class FusedKNOWN:
    """Inference-only KNOWN with the linear layers folded together (same function, fewer FLOPs).

    The differences are a linear map of the values, and the first Dense(64) is linear, so both
    streams' first layers and both Dense8 gates become one (S → 144) matmul; the additive branch
    ``Dense64_a`` folds into ``Dense(32)``. What is left per scalar is two (8 → 128) matmuls, 128
    exponentials, two (64 → 32) matmuls and the head. Evaluated in chunks that stay in cache.
    """

    def __init__(self, net: KNOWNNet) -> None:
        self.input_convention = net.input_convention
        self.seq_len = n = net.seq_len
        with torch.no_grad():
            dt = torch.float64
            eye = torch.eye(n, dtype=dt)
            diff = eye[:, 1:] - eye[:, :-1]  # (S, S-1): seq @ diff = consecutive differences
            first_w, first_b, gate_w, gate_b, bc_w, bc_b, out_w, out_b, h_w = [], [], [], [], [], [], [], [], []
            for stream, a in ((net.values, eye), (net.diffs, diff)):
                w_in = a @ stream.inp.weight.to(dt).T  # (S, 64)
                b_in = stream.inp.bias.to(dt)
                g_w = w_in @ stream.gate.weight.to(dt).T  # (S, 8)
                g_b = b_in @ stream.gate.weight.to(dt).T + stream.gate.bias.to(dt)
                first_w.append(w_in)
                first_b.append(b_in)
                gate_w.append(g_w)
                gate_b.append(g_b)
                bc_w.append((stream.factor.weight.to(dt).T, stream.rate.weight.to(dt).T))  # (8, 64) each
                bc_b.append((stream.factor.bias.to(dt), stream.rate.bias.to(dt)))
                w_out = stream.out.weight.to(dt).T  # (64, 32)
                out_w.append(w_out)
                h_w.append(stream.add.weight.to(dt).T @ w_out)  # (8, 32)
                out_b.append(stream.add.bias.to(dt) @ w_out + stream.out.bias.to(dt))
            f32 = torch.float32
            self.w1 = torch.cat(first_w + gate_w, dim=1).to(f32).contiguous()  # (S, 144)
            self.b1 = torch.cat(first_b + gate_b).to(f32).contiguous()
            self.factor_w = [w[0].to(f32).contiguous() for w in bc_w]
            self.rate_w = [w[1].to(f32).contiguous() for w in bc_w]
            self.factor_b = [b[0].to(f32).contiguous() for b in bc_b]
            self.rate_b = [b[1].to(f32).contiguous() for b in bc_b]
            self.out_w = [w.to(f32).contiguous() for w in out_w]
            self.h_w = [w.to(f32).contiguous() for w in h_w]
            self.out_b = [b.to(f32).contiguous() for b in out_b]
            hw = net.head.weight.detach().to(f32).reshape(-1)
            self.head_w = [hw[:32].contiguous().view(32, 1), hw[32:].contiguous().view(32, 1)]
            self.head_b = net.head.bias.detach().to(f32).clone()

    _WEIGHTS = ("w1", "b1", "factor_w", "rate_w", "factor_b", "rate_b", "out_w", "h_w", "out_b", "head_w", "head_b")

    def _on(self, device: torch.device) -> SimpleNamespace:
        """The folded weights on ``device`` (copied once per device)."""
        cache = self.__dict__.setdefault("_device_weights", {})
        if device not in cache:
            move = lambda t: torch.empty_like(t, device=device).copy_(t)  # noqa: E731
            cache[device] = SimpleNamespace(
                **{
                    k: [move(t) for t in v] if isinstance(v, list) else move(v)
                    for k, v in ((k, getattr(self, k)) for k in self._WEIGHTS)
                }
            )
        return cache[device]

    def __call__(
        self, seq: torch.Tensor, chunk: int = 4096, threads: int | None = None, device: str | None = None
    ) -> torch.Tensor:
        """Residuals for ``(N, S)`` sequences, computed on ``device`` (default: where ``seq`` is). On the CPU,
        chunks are spread over ``threads`` worker threads (default: torch's thread count), each running
        single-threaded kernels on cache-sized blocks, which is much faster than torch's intra-op threading
        for these thin matmuls. On a GPU, the sequences are evaluated in large batches of ``chunk * 256``
        and the residuals returned where ``seq`` is."""
        _check_seq(seq, self.seq_len)
        from weightlab.engine import resolve_device

        dev = resolve_device(device) if device is not None else seq.device
        if dev.type != "cpu":
            return self._call_on_device(seq, dev, chunk * 256)
        seq = seq.detach().to(torch.float32).contiguous()
        out = torch.empty(seq.shape[0], dtype=torch.float32)
        threads = threads or torch.get_num_threads()
        starts = list(range(0, seq.shape[0], chunk))

        def work(part: list[int]) -> None:
            with torch.inference_mode():
                for start in part:
                    s = seq[start : start + chunk]
                    if self.input_convention == "normalized":
                        shift, scale = _norm_stats(s)
                        out[start : start + chunk] = self._core((s - shift) / scale) * scale.squeeze(1)
                    else:
                        out[start : start + chunk] = self._core(s)

        if threads <= 1 or len(starts) < 2:
            work(starts)
            return out
        from concurrent.futures import ThreadPoolExecutor

        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            parts = [starts[i::threads] for i in range(threads)]
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, parts))
        finally:
            torch.set_num_threads(previous)
        return out

    @torch.inference_mode()
    def _call_on_device(self, seq: torch.Tensor, dev: torch.device, batch: int) -> torch.Tensor:
        """Residuals on ``dev`` in batches of ``batch`` rows; they are returned where ``seq`` is (sequences
        kept on the device stay there, with no copy)."""
        w = self._on(dev)
        out = torch.empty(seq.shape[0], dtype=torch.float32, device=seq.device)
        for start in range(0, seq.shape[0], batch):
            s = seq[start : start + batch].detach().to(dev, torch.float32)  # no copy when already there
            if self.input_convention == "normalized":
                shift, scale = _norm_stats(s)
                r = self._core((s - shift) / scale, w, torch.exp_) * scale.squeeze(1)
            else:
                r = self._core(s, w, torch.exp_)
            out[start : start + batch].copy_(r)
        return out

    def _core(self, s: torch.Tensor, w=None, exp_=None) -> torch.Tensor:
        """The folded network on a block ``s`` with the weights ``w`` (default: the CPU ones)."""
        w = w if w is not None else self
        exp_ = exp_ or _exp_
        first = torch.addmm(w.b1, s, w.w1)  # (n, 144): x1 | x2 | gate1 | gate2
        gates = first[:, 128:].relu_()
        acc = w.head_b.expand(s.shape[0], 1).clone()
        for k in range(2):
            x = first[:, 64 * k : 64 * (k + 1)]
            h = gates[:, 8 * k : 8 * (k + 1)]
            # exp on a contiguous tensor: torch's strided exp is ~4x slower, numpy's SIMD exp ~1.7x faster
            rate = torch.addmm(w.rate_b[k], h, w.rate_w[k]).mul_(x)
            exp_(rate)
            e = rate.mul_(torch.addmm(w.factor_b[k], h, w.factor_w[k]))
            y = torch.addmm(w.out_b[k], e, w.out_w[k]).addmm_(h, w.h_w[k])
            F.leaky_relu_(y, _LEAKY_SLOPE)
            acc.addmm_(y, w.head_w[k])
        return acc.tanh_().squeeze(1)


def _exp_(t: torch.Tensor) -> None:
    """In-place exp of a contiguous float32 CPU tensor (numpy's vectorised exp shares its memory)."""
    arr = t.numpy()
    np.exp(arr, out=arr)


def load_keras_known(path: str | Path, input_convention: str = "raw") -> KNOWNNet:
    """Build a :class:`KNOWNNet` from one of the authors' Keras ``save_weights`` files (h5py only)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise WeightlabError(f"{path}: no such KNOWN weights file")
    net = KNOWNNet(input_convention)
    layers = {"head": "dense_12"}
    for s, stream in enumerate(("values", "diffs")):
        for i, role in enumerate(_STREAM_ROLES):
            layers[f"{stream}.{role}"] = "dense" if s == 0 and i == 0 else f"dense_{6 * s + i}"
    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            with torch.no_grad():
                for module_name, layer in layers.items():
                    if layer not in group:
                        raise WeightlabError(f"{path}: layer '{layer}' not found (not a KNOWN weights file)")
                    g = group[layer][layer] if layer in group[layer] else group[layer]
                    module = net.get_submodule(module_name)
                    missing = [k for k in ("kernel:0", "bias:0") if not hasattr(g, "keys") or k not in g]
                    if missing:
                        raise WeightlabError(
                            f"{path}: layer '{layer}' has no {' / '.join(missing)} (not a KNOWN weights file)"
                        )
                    arrays = [g[k][()] for k in ("kernel:0", "bias:0")]
                    bad = [
                        k
                        for k, a in zip(("kernel:0", "bias:0"), arrays)
                        if getattr(a, "dtype", None) is None or a.dtype.kind != "f"
                    ]
                    if bad:
                        raise WeightlabError(
                            f"{path}: layer '{layer}' {' / '.join(bad)} is not floating-point "
                            "(not a KNOWN weights file)"
                        )
                    kernel, bias = torch.from_numpy(arrays[0]).T, torch.from_numpy(arrays[1])
                    if not (torch.isfinite(kernel).all() and torch.isfinite(bias).all()):
                        raise WeightlabError(f"{path}: layer '{layer}' holds NaN or Inf values")
                    if kernel.shape != module.weight.shape or bias.shape != module.bias.shape:
                        raise WeightlabError(
                            f"{path}: layer '{layer}' has kernel {tuple(kernel.shape[::-1])}, "
                            f"expected {tuple(module.weight.shape[::-1])} (in, out)"
                        )
                    module.weight.copy_(kernel)
                    module.bias.copy_(bias)
    except OSError as e:
        raise WeightlabError(f"{path}: not a readable HDF5 file ({e})") from None
    return net.eval()


def load_official_known(path: str | Path, input_convention: str = "raw") -> KNOWNNet:
    """The authors' trained KNOWN from ``KNOWN_{Conv,FC,Bias}.h5``: a torch module mapping an
    ``(N, 5)`` tensor of sequences (oldest stage first) to the ``(N,)`` residuals."""
    return load_keras_known(path, input_convention)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
