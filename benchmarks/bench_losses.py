"""Saturating (``minimax``) against non-saturating generator loss on the 8-mode ring.

Goodfellow et al. 2014 note that log(1 - D(G(z))) saturates early in training, when D rejects
G's samples with confidence, and propose -log D(G(z)) instead. This trains the 2014 GAN (small
MLPs, Adam) on ``data=ring`` with each loss and the same seeds, and reports the modes covered and
the share of high-quality samples (within 3 std of a mode) as training goes on.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

# The tuned preset that tests/test_learning.py checks for full mode coverage.
RING = ["experiment=ring_gan", "device=cpu"]


def _curve(loss: str, seed: int, steps: int, every: int) -> list[dict]:
    from hydra import compose, initialize_config_module

    import ganrun.config.schema  # noqa: F401
    from ganrun.data.mixtures import mode_stats
    from ganrun.models import all_families
    from ganrun.models.latent import sample_noise
    from ganrun.training.loop import Trainer
    from ganrun.training.setup import build_setup, seed_everything

    all_families()  # their schemas, for composing
    with initialize_config_module("ganrun.configs", version_base=None):
        cfg = compose(config_name="train", overrides=[*RING, f"loss={loss}", f"seed={seed}"])
    seed_everything(cfg.seed)
    setup = build_setup(cfg)
    info, model = setup.data.info, setup.model
    G = model.networks["generator"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(setup, Path(tmp))
        start = time.perf_counter()
        for step in range(1, steps + 1):
            model.training_step(setup.batches, trainer.noise)
            if step % every == 0:
                G.eval()
                with torch.no_grad():
                    z = sample_noise(
                        cfg.model, 2000, setup.device, torch.Generator().manual_seed(seed)
                    )
                    stats = mode_stats(G(z), info.extra["centers"], info.extra["std"])
                G.train()
                rows.append(
                    {
                        "case": f"{loss} seed {seed} step {step}",
                        "modes_covered": int(stats["modes_covered"]),
                        "high_quality": round(float(stats["high_quality"]), 3),
                        "sec": round(time.perf_counter() - start, 1),
                    }
                )
    return rows


def run(quick: bool) -> list[dict]:
    steps, every = (300, 100) if quick else (2000, 250)
    seeds = (0,) if quick else (0, 1, 2)
    rows: list[dict] = []
    for loss in ("minimax", "non_saturating"):
        for seed in seeds:
            rows += _curve(loss, seed, steps, every)
    return rows
