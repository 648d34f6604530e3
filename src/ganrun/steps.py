"""Training steps, one function per model kind: each reads top to bottom in one screen.

A step takes the :class:`~ganrun.trainer.Trainer` (networks, optimizers, data, config) and returns
its statistics as 0-d tensors still on the device; the trainer reads them every
``train.log_every`` steps, so a step never waits for the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ganrun.distributed import average_gradients
from ganrun.losses import d_of, gradient_penalty

if TYPE_CHECKING:
    from ganrun.trainer import Trainer


def _gan_stats(
    loss_d: torch.Tensor,
    loss_g: torch.Tensor,
    d_real: torch.Tensor,
    d_fake: torch.Tensor,
    critic: bool,
) -> dict[str, torch.Tensor]:
    return {
        "loss_d": loss_d.detach(),
        "loss_g": loss_g.detach(),
        "d_real": d_of(d_real.detach(), critic).mean(),
        "d_fake": d_of(d_fake.detach(), critic).mean(),
    }


def gan_step(t: Trainer) -> dict[str, torch.Tensor]:
    """``train.d_steps`` discriminator steps, then one generator step (Algorithm 1, 2014)."""
    G, D, loss, cfg = t.G, t.D, t.s.loss, t.cfg
    n, k = cfg.train.batch_size, cfg.train.d_steps

    # (1) D/critic: k steps on real batches against fakes it cannot backpropagate into.
    D.requires_grad_(True)
    for i in range(k):
        real, labels = t.s.data.train.batch(n)
        # The last fake batch keeps its graph: G's step reuses it instead of running G again.
        with torch.set_grad_enabled(i == k - 1):
            fake = G(t.noise(n), labels)
        d_real, d_fake = D(real, labels), D(fake.detach(), labels)
        loss_d = loss.d(d_real, d_fake)
        if cfg.model.gp_weight > 0:
            loss_d = loss_d + cfg.model.gp_weight * gradient_penalty(D, real, fake, labels)
        t.s.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        t.s.opt_d.step()
        if cfg.model.clip_value > 0:  # WGAN's Lipschitz constraint by weight clipping
            with torch.no_grad():
                params = list(D.parameters())
                torch._foreach_clamp_min_(params, -cfg.model.clip_value)
                torch._foreach_clamp_max_(params, cfg.model.clip_value)

    # (2) G: one step through the updated, frozen D (its weights need no gradients here).
    D.requires_grad_(False)
    loss_g = loss.g(D(fake, labels))
    t.s.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    t.s.opt_g.step()
    if t.ema is not None:
        t.ema.update(G)

    return _gan_stats(loss_d, loss_g, d_real, d_fake, cfg.model.critic)


def simultaneous_gan_step(t: Trainer) -> dict[str, torch.Tensor]:
    """G and D step together (``train.simultaneous=true``), as the 2014 released code did: one
    forward pass, so G's objective sees D's pre-update weights and the same dropout masks."""
    G, D, loss, cfg = t.G, t.D, t.s.loss, t.cfg
    n = cfg.train.batch_size

    D.requires_grad_(True)
    real, labels = t.s.data.train.batch(n)
    fake = G(t.noise(n), labels)
    d_real, d_fake = D(real, labels), D(fake, labels)
    loss_d, loss_g = loss.d(d_real, d_fake), loss.g(d_fake)
    t.s.opt_d.zero_grad(set_to_none=True)
    t.s.opt_g.zero_grad(set_to_none=True)
    # Each loss differentiates only its own player's weights: D's loss must not move G.
    loss_d.backward(inputs=list(D.parameters()), retain_graph=True)
    loss_g.backward(inputs=list(G.parameters()))
    average_gradients(G, D)  # across torchrun ranks (DDP cannot follow two partial passes)
    t.s.opt_d.step()
    t.s.opt_g.step()
    if t.ema is not None:
        t.ema.update(G)

    return _gan_stats(loss_d, loss_g, d_real, d_fake, cfg.model.critic)


def vae_step(t: Trainer) -> dict[str, torch.Tensor]:
    """One step on the negative ELBO, averaged over the batch (nats per example)."""
    vae = t.G
    x, _ = t.s.data.train.batch(t.cfg.train.batch_size)
    recon, kl = vae.elbo_terms(x)
    loss = (kl - recon).mean()
    t.s.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(vae)  # across torchrun ranks (DDP only follows forward)
    t.s.opt_g.step()
    if t.ema is not None:
        t.ema.update(vae)
    return {"loss": loss.detach(), "recon": -recon.detach().mean(), "kl": kl.detach().mean()}


STEPS: dict[str, Callable[[Trainer], dict[str, torch.Tensor]]] = {
    "gan": gan_step,
    "gan_simultaneous": simultaneous_gan_step,
    "vae": vae_step,
}


def step_for(kind: str, simultaneous: bool) -> Callable[[Trainer], dict[str, torch.Tensor]]:
    """The step a model kind trains with; ``train.simultaneous`` picks the 2014 code's update."""
    return STEPS[f"{kind}_simultaneous" if simultaneous else kind]
