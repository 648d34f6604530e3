"""Training steps, one function per model kind: each reads top to bottom in one screen.

A step takes the :class:`~ganrun.trainer.Trainer` (networks, optimizers, data, config) and returns
its statistics as 0-d tensors still on the device; the trainer reads them every
``train.log_every`` steps, so a step never waits for the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ganrun.losses import d_of, gradient_penalty

if TYPE_CHECKING:
    from ganrun.trainer import Trainer


def gan_step(t: Trainer) -> dict[str, torch.Tensor]:
    """One generator step and ``train.d_steps`` discriminator steps (Algorithm 1 of the 2014 paper)."""
    G, D, loss, cfg = t.G, t.D, t.s.loss, t.cfg
    n = cfg.train.batch_size

    # (1) D/critic: k steps on real batches against detached fakes.
    D.requires_grad_(True)
    for _ in range(cfg.train.d_steps):
        real, labels = t.s.data.train.batch(n)
        with torch.no_grad():
            fake = G(t.noise(n), labels)
        d_real, d_fake = D(real, labels), D(fake, labels)
        loss_d = loss.d(d_real, d_fake)
        if cfg.model.gp_weight > 0:
            loss_d = loss_d + cfg.model.gp_weight * gradient_penalty(D, real, fake, labels)
        t.s.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        t.s.opt_d.step()
        if cfg.model.clip_value > 0:
            with torch.no_grad():
                for p in D.parameters():
                    p.clamp_(-cfg.model.clip_value, cfg.model.clip_value)

    # (2) G: one step through a frozen D (its weights need no gradients here).
    D.requires_grad_(False)
    loss_g = loss.g(D(G(t.noise(n), labels), labels))
    t.s.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    t.s.opt_g.step()

    critic = cfg.model.critic
    return {
        "loss_d": loss_d.detach(),
        "loss_g": loss_g.detach(),
        "d_real": d_of(d_real.detach(), critic).mean(),
        "d_fake": d_of(d_fake.detach(), critic).mean(),
    }


STEPS: dict[str, Callable[[Trainer], dict[str, torch.Tensor]]] = {
    "gan": gan_step,
}
