"""The PEFT layer of RECAST: a Linear / Conv2d whose weight, while an adapter is active, is that adapter's
mixture of its bank's frozen templates (:func:`weightlab.recast.layers.mix`, the one implementation)."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from peft.tuners.tuners_utils import BaseTunerLayer, check_adapters_to_merge
from torch import nn
from torch.func import functional_call

from weightlab.errors import WeightlabError
from weightlab.recast.layers import WeightCache, mix

#: module types RECAST can template: their forward uses ``self.weight`` as a dense weight, so a
#: generated weight can stand in for it (subclasses such as timm's ``Conv2dSame`` keep their own forward)
SUPPORTED_TYPES = (nn.Linear, nn.Conv2d)
_SHAPE_ATTRS = ("in_features", "out_features", "in_channels", "out_channels", "kernel_size")


class RecastPeftLayer(nn.Module, BaseTunerLayer):
    """Wraps ``base_layer``; one coefficient tensor ``(K, n)`` per adapter in ``recast_coefficients``."""

    adapter_layer_names = ("recast_coefficients",)
    other_param_names = ()

    def __init__(self, base_layer: nn.Module, templates: nn.Module, bank: str):
        super().__init__()
        if not isinstance(base_layer, SUPPORTED_TYPES):
            raise WeightlabError(f"RECAST templates Linear and Conv2d modules, not {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.recast_coefficients = nn.ParameterDict({})
        self.recast_bank = bank
        object.__setattr__(self, "_recast_templates", templates)  # the tuner's BufferDict, not registered here
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self._caches: dict[str, WeightCache] = {}
        self._original_weight: torch.Tensor | None = None
        self.kwargs: dict = {}
        # what every PEFT layer exposes of the layer it wraps
        for attr in _SHAPE_ATTRS:
            if hasattr(base_layer, attr):
                setattr(self, attr, getattr(base_layer, attr))

    @property
    def templates(self) -> torch.Tensor:
        return self._recast_templates[self.recast_bank]

    def update_layer(self, adapter_name: str, coefficients: torch.Tensor, inference_mode: bool = False) -> None:
        """Add ``adapter_name`` with initial coefficient sets ``(K, n)`` (the base's: the weight unchanged)."""
        t = self.templates
        self.recast_coefficients[adapter_name] = nn.Parameter(coefficients.detach().to(t.device, t.dtype).clone())
        self._caches[adapter_name] = WeightCache()
        self.set_adapter(self.active_adapters, inference_mode=inference_mode)

    def generated_weight(self, adapter_name: str) -> torch.Tensor:
        """The adapter's weight, in the base layer's dtype. The mixture is computed in the coefficients' dtype
        (PEFT's ``autocast_adapter_dtype`` keeps them float32 on a half-precision base, whose templates are
        half: they are upcast for the sum), then cast like the base weight."""
        c, t = self.recast_coefficients[adapter_name], self.templates
        cache = self._caches.setdefault(adapter_name, WeightCache())
        w = cache.get(lambda: mix(c, t.to(c.dtype)), c, t)
        return w.to(self.base_layer.weight.dtype)

    def _active(self) -> str | None:
        names = [a for a in self.active_adapters if a in self.recast_coefficients]
        if len(names) > 1:
            raise WeightlabError(
                f"RECAST adapters replace a layer's weight, so one is active at a time (active: {', '.join(names)})"
            )
        return names[0] if names else None

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        if self.merged:
            return self.base_layer(x, *args, **kwargs)
        name = self._active()
        if name is None:
            return self.base_layer(x, *args, **kwargs)
        w = self.generated_weight(name)
        # the plain layers compute with the generated weight directly: nothing is swapped on the base layer,
        # so a wrapper that owns its parameters (FSDP's flat parameters) cannot put its copy back in between
        if type(self.base_layer) is nn.Linear and not args and not kwargs:
            return F.linear(x, w, self.base_layer.bias)
        if type(self.base_layer) is nn.Conv2d and not args and not kwargs:
            return self.base_layer._conv_forward(x, w, self.base_layer.bias)
        # a subclass with its own forward (timm's Conv2dSame pads first) runs it with the generated weight
        return functional_call(self.base_layer, {"weight": w}, (x, *args), kwargs)

    # -- merging: the generated weight replaces the base weight (it is not a delta) -----------------
    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        base = self._original_weight if self._original_weight is not None else self.base_layer.weight
        return self.generated_weight(adapter_name).detach() - base.detach()

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        adapter_names = check_adapters_to_merge(self, adapter_names)
        adapter_names = [a for a in adapter_names if a in self.recast_coefficients]
        if not adapter_names:
            return
        if len(adapter_names) > 1 or self.merged_adapters:
            raise WeightlabError("RECAST adapters replace a layer's weight: merge one adapter at a time")
        w = self.generated_weight(adapter_names[0]).detach()
        if safe_merge and not torch.isfinite(w).all():
            raise WeightlabError(f"NaNs detected in the generated weight of adapter '{adapter_names[0]}'")
        base = self.base_layer.weight
        self._original_weight = base.detach().clone()
        with torch.no_grad():
            base.copy_(w)
        self.merged_adapters.append(adapter_names[0])

    def unmerge(self) -> None:
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.", stacklevel=2)
            return
        with torch.no_grad():
            self.base_layer.weight.copy_(self._original_weight)
        self._original_weight = None
        self.merged_adapters.clear()

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self._caches.pop(adapter_name, None)

    def _apply(self, fn, recurse=True):
        for cache in self._caches.values():
            cache.clear()
        return super()._apply(fn, recurse)

    def __repr__(self) -> str:
        return "recast." + super().__repr__()

    def extra_repr(self) -> str:
        n = self.templates.shape[0]
        k = next(iter(self.recast_coefficients.values())).shape[0] if self.recast_coefficients else 0
        return f"bank={self.recast_bank}, n={n}, K={k}"
