"""Speed settings from ``trainer.*``: mixed precision, channels_last, torch.compile, cuDNN.

The networks keep their own state-dict keys (no wrapper modules), so checkpoints written with any
of these settings load without them.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ganrun.config.schema import TrainerConfig
from ganrun.errors import GanrunError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast_forward(module: nn.Module, device_type: str, dtype: torch.dtype) -> None:
    """Run ``module``'s forward under autocast and hand back float32 outputs, so losses,
    gradient penalties and backward passes outside the forward stay in full precision."""
    forward: Callable[..., Any] = module.forward

    @functools.wraps(forward)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type, dtype=dtype):
            out = forward(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            return out.float()
        return out

    wrapped._ganrun_autocast = True  # type: ignore[attr-defined]
    module.forward = wrapped


@contextlib.contextmanager
def full_precision(modules: list[nn.Module]) -> Iterator[None]:
    """The networks' forward passes without ``trainer.precision``'s autocast, and back: scoring
    a model during training must score what its checkpoint holds, in full precision."""
    wrapped = [
        m
        for net in modules
        for m in net.modules()
        if getattr(m.__dict__.get("forward"), "_ganrun_autocast", False)
    ]
    forwards = [m.__dict__.pop("forward") for m in wrapped]
    try:
        yield
    finally:
        for module, forward in zip(wrapped, forwards, strict=True):
            module.forward = forward


def uses_channels_last(cfg: TrainerConfig, device: torch.device, cpu_pays: bool = False) -> bool:
    """``trainer.channels_last``: on, off, or auto: on for CUDA, and on a CPU where the model
    says it pays (``Model.channels_last_on_cpu``, measured per model)."""
    if cfg.channels_last not in ("auto", "on", "off"):
        raise GanrunError(f"trainer.channels_last={cfg.channels_last!r} must be auto, on or off")
    if cfg.channels_last != "auto":
        return cfg.channels_last == "on"
    return device.type == "cuda" or cpu_pays


def legacy_channels_last(cfg: TrainerConfig, device: torch.device) -> bool:
    """What a checkpoint that does not record its layout trained in: before 2026-12-04, auto
    meant CUDA only."""
    return cfg.channels_last == "on" or (cfg.channels_last == "auto" and device.type == "cuda")


def set_channels_last(modules: list[nn.Module], channels_last: bool) -> None:
    """Put the convolutional networks among ``modules`` in channels_last or back in NCHW."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    for module in modules:
        if any(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in module.modules()):
            module.to(memory_format=layout)


def accelerate(
    modules: list[nn.Module], cfg: TrainerConfig, device: torch.device, cpu_pays: bool = False
) -> bool:
    """Apply the ``trainer.*`` settings to the networks in place; returns whether they are in
    channels_last (:func:`uses_channels_last`, with the model's ``cpu_pays``)."""
    channels_last = uses_channels_last(cfg, device, cpu_pays)
    if cfg.precision not in PRECISIONS:
        raise GanrunError(
            f"trainer.precision={cfg.precision!r}; choose one of: {', '.join(PRECISIONS)}"
        )
    dtype = PRECISIONS[cfg.precision]
    if dtype is torch.float16 and device.type != "cuda":
        raise GanrunError("trainer.precision=fp16 needs device=cuda; use bf16 or fp32")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    set_channels_last(modules, channels_last)
    for module in modules:
        if dtype is not None:
            _autocast_forward(module, device.type, dtype)
        if cfg.compile:
            module.compile()
    return channels_last
