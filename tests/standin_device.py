"""A second device on a CPU-only machine, with real values: the guard against "data on the CPU, model on
the GPU" bugs (issue 34: ``recast mimic`` fed CPU batches to a CUDA model and crashed on every GPU).

Inside :func:`standin_device`, ``auto`` and ``cuda`` resolve to the *stand-in* device. A tensor moved
there (``.to(dev)``, ``module.to(dev)``, a factory with ``device=dev``) is a :class:`StandIn`: a wrapper
that computes on its CPU tensor but reports another device (``meta``, the one device every PyTorch build
can name without a driver), so the library's own device logic runs as it would on a GPU. Every operation
checks its operands the way CUDA does and raises CUDA's error when a stand-in tensor meets a CPU tensor
(0-dim CPU scalars, CPU index tensors and cross-device ``copy_`` are allowed, as on CUDA); ``.numpy()``
on a stand-in tensor fails as on CUDA, and a CPU generator for a stand-in factory is refused as on CUDA.
Values are exact (the CPU computes them), so a whole CLI command runs to its end.

What it does not model: autocast and gradient scaling on the device (run it with ``fp32``), CUDA streams,
memory, spawned children (they start without the guard) and kernels that differ between devices.
"""

from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

DEVICE = torch.device("meta")  # what a stand-in tensor reports
aten = torch.ops.aten

# operations CUDA allows across devices: the destination keeps its device
_CROSS_COPY = {aten.copy_.default, aten._copy_from.default, aten._copy_from_and_resize.default}
# CUDA accepts index tensors on the CPU for a tensor on the GPU
_CPU_INDICES_OK = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default}


class StandIn(torch.Tensor):
    """A tensor "on the other device": the values live in ``self.inner`` (a CPU tensor)."""

    inner: torch.Tensor

    @staticmethod
    def __new__(cls, inner: torch.Tensor):
        # the wrapper is an ordinary tensor even in inference mode (the inner tensor is what the mode made):
        # autograd then gives a view of it its base's version counter, as it does for a view of a real tensor
        with torch.inference_mode(False):
            t = torch.Tensor._make_wrapper_subclass(
                cls,
                inner.shape,
                strides=inner.stride(),
                storage_offset=inner.storage_offset(),
                dtype=inner.dtype,
                layout=inner.layout,
                device=DEVICE,
                requires_grad=inner.requires_grad,
            )
        t.inner = inner
        return t

    def __repr__(self, *, tensor_contents=None):
        return f"StandIn({self.inner!r})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.tolist:  # CUDA copies to the host for these
            return args[0].inner.tolist()
        if func is torch.Tensor.numpy:
            raise TypeError(
                f"can't convert {DEVICE} device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host "
                "memory first. (stand-in device: this is CUDA's error)"
            )
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and len(args) > 1:
            # indexing with a Python list makes its index tensor below the dispatcher: make it on the CPU
            # here (CUDA takes CPU index tensors)
            args = (args[0], _list_indices(args[1]), *args[2:])
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # pragma: no cover - the mode handles all
        raise RuntimeError("StandIn tensors are only usable inside standin_device()")


def _list_indices(index):
    if isinstance(index, list):
        return torch.tensor(index)
    if isinstance(index, tuple):
        return tuple(torch.tensor(i) if isinstance(i, list) else i for i in index)
    return index


def _is_standin_device(device) -> bool:
    return device is not None and torch.device(device).type == DEVICE.type


class _StandInMode(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        here, there = [], []

        def see(t):
            if isinstance(t, StandIn):
                there.append(t)
            elif isinstance(t, torch.Tensor) and t.device.type == DEVICE.type:
                raise AssertionError(f"stand-in guard: a data-less {DEVICE} tensor reached {func}; teach it its maker")
            elif isinstance(t, torch.Tensor) and not (t.dim() == 0 and t.device.type == "cpu"):
                here.append(t)

        tree_map(see, (args, kwargs))
        unwrap = lambda t: t.inner if isinstance(t, StandIn) else t  # noqa: E731

        if func in _CROSS_COPY:  # the destination keeps its device
            func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs))
            return args[0]
        if func is aten.to.other:  # x.to(other): other's device and dtype
            moved = unwrap(args[0]).to(dtype=args[1].dtype, copy=len(args) > 3 and bool(args[3]))
            return StandIn(moved) if isinstance(args[1], StandIn) else moved
        # the device an operation makes its result on: device= or a positional one (aten.to.device)
        target = kwargs.get("device")
        pos = next((i for i, a in enumerate(args) if isinstance(a, torch.device)), None)
        if target is None and pos is not None:
            target = args[pos]
        on_device = _is_standin_device(target) if target is not None else bool(there)
        if target is not None and on_device:
            gen = kwargs.get("generator")
            if gen is not None and gen.device.type == "cpu":
                raise RuntimeError(
                    f"Expected a '{DEVICE.type}' device type for generator but found 'cpu' "
                    "(stand-in device: CUDA raises this)"
                )
            if "device" in kwargs:
                kwargs["device"] = torch.device("cpu")
            else:
                args = tuple(torch.device("cpu") if i == pos else a for i, a in enumerate(args))
        if target is not None:  # a move: the tensor moved is not a second device
            here, there = [], []
        if func in _CPU_INDICES_OK and isinstance(args[0], StandIn):
            here = [t for t in here if t.dtype not in (torch.long, torch.int, torch.bool, torch.uint8)]
        if here and there:
            raise RuntimeError(
                "Expected all tensors to be on the same device, but found at least two devices, "
                f"{DEVICE} and cpu! (stand-in device: CUDA raises this in {func})"
            )
        out = func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs))
        if not on_device:
            return out
        wrap = lambda t: StandIn(t) if isinstance(t, torch.Tensor) and not isinstance(t, StandIn) else t  # noqa: E731
        return tree_map(wrap, out)


class _MakersMode(TorchFunctionMode):
    """``torch.tensor`` / ``torch.as_tensor`` with a device build their tensor below the dispatcher: here they
    build it on the CPU and move it, so that it becomes a stand-in tensor."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in (torch.tensor, torch.as_tensor) and _is_standin_device(kwargs.get("device")):
            dev = kwargs.pop("device")
            return func(*args, **kwargs).to(dev)
        return func(*args, **kwargs)


@contextlib.contextmanager
def standin_device(monkeypatch):
    """Within: ``auto`` / ``cuda`` resolve to the stand-in device (see the module's text)."""
    import weightlab.engine as engine
    import weightlab.engine.loop as loop

    real = loop.resolve_device

    def resolve(device=None):
        if device is not None and str(device).split(":")[0] in ("auto", "cuda", DEVICE.type):
            return DEVICE
        return real(device)

    monkeypatch.setattr(loop, "resolve_device", resolve)
    if "resolve_device" in vars(engine):
        monkeypatch.setattr(engine, "resolve_device", resolve)
    with _StandInMode(), _MakersMode():
        yield DEVICE
