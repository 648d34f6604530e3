"""``optim=<name>``: build a torch optimizer from the optimizer config."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ganrun.errors import GanrunError
from ganrun.schema import OptimConfig

OPTIMIZERS = ("adam", "sgd", "rmsprop")


def build_optimizer(
    cfg: OptimConfig, params: Iterable[torch.nn.Parameter], fused: bool = False
) -> torch.optim.Optimizer:
    """``fused`` selects the single-kernel Adam (CUDA); results match the default to rounding."""
    if cfg.name == "adam":
        return torch.optim.Adam(
            params,
            lr=cfg.lr,
            betas=tuple(cfg.betas),
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            fused=fused or None,
        )
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=cfg.lr, momentum=cfg.momentum, eps=cfg.eps, weight_decay=cfg.weight_decay
        )
    raise GanrunError(
        f"unknown optimizer {cfg.name!r}; choose optim= one of: {', '.join(OPTIMIZERS)}"
    )
