"""RECAST layers: a weight generated as (1/K) sum_k sum_i C^k_i T_{g,i} from a shared template bank.

The bank is registered once, as ``template_bank`` of the first layer that uses it; the other
layers hold an unregistered reference, so a template appears once in the state dict while many
layers mix it (and no container is added to the model, which keeps ``nn.Sequential`` models intact).
The only parameters called ``coefficients`` are the per-layer mixing weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mix(coefficients: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """The generated weight ``(1/K) sum_k sum_i C^k_i T_i`` of coefficient sets ``(K, n)`` and templates
    ``(n, *shape)``: the one implementation, used by :class:`RecastLayer` and the PEFT layers
    (:mod:`weightlab.peft`)."""
    return torch.tensordot(coefficients.mean(0), templates, dims=1)


class WeightCache:
    """A generated weight kept while its inputs are unchanged and no gradient flows into them.

    The key is the inputs' versions, storage, dtype and device, and whether inference mode is on (a
    tensor made under ``torch.inference_mode`` cannot be saved for a later backward). Whether a gradient
    is needed is decided by the inputs' ``requires_grad``, so frozen coefficients cost what a plain layer
    costs in train and eval mode, with autograd on or off."""

    def __init__(self):
        self.value: torch.Tensor | None = None
        self.key: tuple | None = None

    def get(self, fn, *inputs: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
            return fn()
        key = tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in inputs)
        key += (torch.is_inference_mode_enabled(),)
        if self.value is None or self.key != key:
            with torch.no_grad():
                self.value = fn()
            self.key = key
        return self.value

    def clear(self) -> None:
        self.value, self.key = None, None


class TemplateBank(nn.Module):
    """``n`` full-shape templates shared by the modules of one (stage, group, role)."""

    def __init__(self, n: int, shape: tuple[int, ...], dtype: torch.dtype | None = None, device=None):
        super().__init__()
        self.templates = nn.Parameter(torch.empty(n, *shape, dtype=dtype, device=device))
        for t in self.templates.data:
            nn.init.kaiming_normal_(t if t.dim() >= 2 else t.unsqueeze(0))

    @property
    def n(self) -> int:
        return self.templates.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.templates.shape[1:])

    def extra_repr(self) -> str:
        return f"n={self.n}, shape={self.shape}"


class RecastLayer(nn.Module):
    """Common part of :class:`RecastLinear` and :class:`RecastConv2d`."""

    def __init__(self, bank: TemplateBank, coef_sets: int, bias: torch.Tensor | None, owner: bool = False):
        # nn.Module's init, not nn.Linear's / nn.Conv2d's: the weight is generated, never registered
        nn.Module.__init__(self)
        if owner:
            self.template_bank = bank
        object.__setattr__(self, "_bank", bank)  # shared reference, not registered
        self.coefficients = nn.Parameter(
            torch.empty(coef_sets, bank.n, dtype=bank.templates.dtype, device=bank.templates.device)
        )
        for k in range(coef_sets):  # each set a random unit vector: orthogonal_ on an (n, 1) matrix
            nn.init.orthogonal_(self.coefficients.data[k].view(-1, 1))
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self._cache = WeightCache()
        object.__setattr__(self, "_shell", None)  # a subclass's own forward, see keep_forward_of

    def keep_forward_of(self, base: nn.Module) -> None:
        """Run ``base``'s own forward (a Linear / Conv2d subclass with a forward of its own, e.g. timm's
        ``Conv2dSame`` that pads first) with the generated weight, as the PEFT path does. The copy of ``base``
        is not registered: its tensors are never in the state dict, its weight is never used."""
        import copy

        if type(base).forward in (nn.Linear.forward, nn.Conv2d.forward):
            return
        shell = copy.deepcopy(base).requires_grad_(False)
        object.__setattr__(self, "_shell", shell)

    def _shell_forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call

        tensors = {"weight": self.weight, **({"bias": self.bias} if self.bias is not None else {})}
        return functional_call(self._shell, tensors, (x,))

    def _plain_from_shell(self) -> nn.Module:
        import copy

        out = copy.deepcopy(self._shell).requires_grad_(True)
        with torch.no_grad():
            out.weight = nn.Parameter(self.weight.detach().clone())
            if self.bias is not None:
                out.bias = nn.Parameter(self.bias.detach().clone())
        return out

    @property
    def bank(self) -> TemplateBank:
        return self._bank

    def mixing(self) -> torch.Tensor:
        """The effective mixing vector (n,): the mean of the K coefficient sets."""
        return self.coefficients.mean(0)

    def generate_weight(self, coefficients: torch.Tensor | None = None) -> torch.Tensor:
        """(1/K) sum_k sum_i C^k_i T_i, always recomputed (differentiable)."""
        return mix(self.coefficients if coefficients is None else coefficients, self._bank.templates)

    @property
    def weight(self) -> torch.Tensor:
        """The generated weight; cached while neither coefficients nor templates change and neither
        needs a gradient (see :class:`WeightCache`)."""
        return self._cache.get(self.generate_weight, self._bank.templates, self.coefficients)

    def _apply(self, fn, recurse=True):
        self._cache.clear()
        if self._shell is not None:  # unregistered: moved (device, dtype) with the layer by hand
            self._shell._apply(fn, recurse)
        return super()._apply(fn, recurse)


class RecastLinear(RecastLayer, nn.Linear):
    """A Linear whose weight is a template mixture. It *is* an ``nn.Linear`` (with a generated
    ``weight``), so adapter libraries such as PEFT wrap it like any Linear and their LoRA/DoRA
    terms stack on the generated weight."""

    def __init__(self, base: nn.Linear, bank: TemplateBank, coef_sets: int, owner: bool = False):
        super().__init__(bank, coef_sets, base.bias, owner)
        self.in_features, self.out_features = base.in_features, base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._shell is not None:
            return self._shell_forward(x)
        return F.linear(x, self.weight, self.bias)

    def to_plain(self) -> nn.Linear:
        if self._shell is not None:
            return self._plain_from_shell()
        w = self.weight.detach()
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            out.weight.copy_(w)
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"n={self._bank.n}, K={self.coefficients.shape[0]}, bias={self.bias is not None}"
        )


class RecastConv2d(RecastLayer, nn.Conv2d):
    """A Conv2d whose weight is a template mixture (an ``nn.Conv2d`` to PEFT and friends)."""

    def __new__(cls, *args, **kwargs):
        # PEFT builds a conv LoRA's factors with ``type(base_layer)(in, r, kernel, ...)``: called like
        # that, this class hands out an ordinary Conv2d.
        if args and isinstance(args[0], int):
            return nn.Conv2d(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, base: nn.Conv2d, bank: TemplateBank, coef_sets: int, owner: bool = False):
        super().__init__(bank, coef_sets, base.bias, owner)
        if base.padding_mode != "zeros":
            from weightlab.errors import WeightlabError

            raise WeightlabError(f"RECAST supports zero-padded convs only (padding_mode={base.padding_mode!r})")
        self.in_channels, self.out_channels = base.in_channels, base.out_channels
        self.kernel_size, self.stride, self.padding = base.kernel_size, base.stride, base.padding
        self.dilation, self.groups = base.dilation, base.groups
        self.padding_mode, self.transposed, self.output_padding = "zeros", False, (0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._shell is not None:
            return self._shell_forward(x)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def to_plain(self) -> nn.Conv2d:
        if self._shell is not None:
            return self._plain_from_shell()
        w = self.weight.detach()
        out = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias is not None,
            device=w.device,
            dtype=w.dtype,
        )
        with torch.no_grad():
            out.weight.copy_(w)
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, groups={self.groups}, n={self._bank.n}, K={self.coefficients.shape[0]}"
        )
