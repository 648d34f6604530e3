"""Saturating (minimax) against non-saturating G loss on the 8-mode ring: modes covered and
high-quality share over training steps, same networks, data, optimizer and seed.

Goodfellow et al. 2014 (section 3) motivate the non-saturating loss by the vanishing gradient
of log(1 - D(G(z))) early in training; this measures what that does on the ring.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch


def ring_curve(loss: str, steps: int, every: int, seed: int = 0) -> list[dict]:
    from hydra import compose, initialize_config_module

    import ganrun.schema  # noqa: F401
    from ganrun.data.mixtures import mode_stats
    from ganrun.models import sample_noise
    from ganrun.train import build_setup
    from ganrun.trainer import Trainer

    overrides = ["experiment=ring_gan", f"loss={loss}", f"seed={seed}", "device=cpu",
                 f"train.sample_every={10**9}", f"train.checkpoint_every={10**9}"]
    with initialize_config_module("ganrun.configs", version_base=None):
        cfg = compose(config_name="train", overrides=overrides)
    setup = build_setup(cfg)
    info = setup.data.info
    noise = torch.Generator().manual_seed(1234)
    z = sample_noise(cfg.model, 2500, torch.device("cpu"), noise)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(setup, Path(tmp))
        for until in range(every, steps + 1, every):
            cfg.train.steps = until
            trainer.fit()
            g = setup.ema.model if setup.ema is not None else setup.nets.generator
            with torch.no_grad():
                stats = mode_stats(g.eval()(z), info.extra["centers"], info.extra["std"])
            g.train()
            rows.append({"step": until, **stats})
    return rows


def run(quick: bool = False) -> list[dict]:
    steps, every = (600, 200) if quick else (3000, 500)
    rows = []
    for loss in ("minimax", "non_saturating"):
        for point in ring_curve(loss, steps, every):
            rows.append({
                "case": f"ring {loss} step {point['step']}",
                "modes_covered": point["modes_covered"],
                "high_quality": point["high_quality"],
                "mode_kl": point["mode_kl"],
            })
    return rows
