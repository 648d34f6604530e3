"""``optim=<name>``: build a torch optimizer from the optimizer config."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ganrun.config.schema import OptimConfig
from ganrun.errors import GanrunError

OPTIMIZERS = ("adam", "sgd", "rmsprop")


def fused_for(device: torch.device) -> bool:
    """Whether Adam runs fused (one kernel per step, not several per tensor) on ``device``: on
    CPU that is 3-4x less time in the optimizer, which bounds the step of networks with large
    fully connected layers (the InfoGAN networks: 13 million weights)."""
    return device.type in ("cuda", "cpu")


class SqrtEpsAdam(torch.optim.Optimizer):
    """Adam as Theano-era releases wrote it (openai/improved-gan's ``nn.adam_updates``):
    p -= lr * m_hat / sqrt(v_hat + eps), where torch's Adam divides by sqrt(v_hat) + eps.

    The two differ where gradients are small: with eps = 1e-8 inside the root, a parameter whose
    sqrt(v_hat) is 1e-4 steps 1/sqrt(2) as far as with no eps; torch's eps = 1e-4 outside it
    would step half as far. ssgan's D sits at exactly that scale, so only the release's form
    reproduces its step sizes."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        betas: tuple[float, float],
        eps: float,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                state["exp_avg"].lerp_(grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (state["exp_avg_sq"] / (1 - beta2**t)).add_(group["eps"]).sqrt_()
                p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1 - beta1**t))


def build_optimizer(
    cfg: OptimConfig,
    params: Iterable[torch.nn.Parameter],
    fused: bool = False,
    lr_scale: float = 1.0,
) -> torch.optim.Optimizer:
    """``fused`` selects the single-kernel Adam (CUDA and CPU); results match the default to
    rounding.
    The learning rate is ``cfg.lr * lr_scale`` (D's optimizer gets ``optim.d_lr_scale``)."""
    lr = cfg.lr * lr_scale
    if cfg.name == "adam" and cfg.eps_in_sqrt:
        return SqrtEpsAdam(
            params, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay
        )
    if cfg.name == "adam":
        return torch.optim.Adam(
            params,
            lr=lr,
            betas=tuple(cfg.betas),
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            fused=fused or None,
        )
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=lr, momentum=cfg.momentum, eps=cfg.eps, weight_decay=cfg.weight_decay
        )
    raise GanrunError(
        f"unknown optimizer {cfg.name!r}; choose optim= one of: {', '.join(OPTIMIZERS)}"
    )


def scheduled(cfg: OptimConfig, step: int) -> dict[str, float]:
    """The scheduled hyperparameters for update number ``step`` (0-based); empty when no
    schedule is on. A pure function of the step, so a resumed run needs no scheduler state."""
    values: dict[str, float] = {}
    if cfg.lr_decay != 1.0:
        values["lr"] = max(cfg.lr / cfg.lr_decay**step, cfg.min_lr)
    if cfg.decay_to:
        done = min(max((step - cfg.decay_from) / (cfg.decay_to - cfg.decay_from), 0.0), 1.0)
        final = cfg.decay_final
        if cfg.decay_shape == "exponential":
            values["lr"] = cfg.lr * final**done
        else:
            values["lr"] = cfg.lr * (1.0 - (1.0 - final) * done)
    if cfg.momentum_ramp_steps > 0:
        done = min(step / cfg.momentum_ramp_steps, 1.0)
        values["momentum"] = cfg.momentum + done * (cfg.final_momentum - cfg.momentum)
    return values


def apply_schedule(
    cfg: OptimConfig,
    optimizers: dict[str, torch.optim.Optimizer],
    lr_scales: dict[str, float],
    step: int,
) -> None:
    """Set every optimizer's scheduled values for update ``step``; each keeps its share of the
    learning rate (``lr_scales``: D's ``optim.d_lr_scale``, as at build time)."""
    values = scheduled(cfg, step)
    if not values:
        return
    for name, opt in optimizers.items():
        own = dict(values)
        if "lr" in own:
            own["lr"] = values["lr"] * lr_scales.get(name, 1.0)
        for group in opt.param_groups:
            group.update(own)
