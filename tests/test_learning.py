"""Real learning in short CPU runs: a non-saturating GAN covers the 8-mode ring, and a VAE's
test ELBO on digits, grayscale or binarized, improves by a clear margin."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ganrun.data.mixtures import mode_stats
from ganrun.models.latent import sample_noise
from ganrun.training.loop import Trainer
from ganrun.training.setup import build_setup, seed_everything
from tests.conftest import composed

# The shipped preset, so its claim (all 8 modes with seed=0) is what is tested.
RING = ["experiment=ring_gan", "device=cpu"]


def _fit(overrides: list[str], run_dir: Path):
    quiet = ["train.sample_every=100000", "train.checkpoint_every=100000", "train.log_every=100000"]
    with composed([*overrides, *quiet]) as cfg:
        seed_everything(cfg.seed)
        setup = build_setup(cfg)
    return cfg, setup, Trainer(setup, run_dir)


def test_non_saturating_gan_covers_the_ring(tmp_path):
    cfg, setup, trainer = _fit(RING, tmp_path)
    trainer.fit()
    G = setup.model.networks["generator"].eval()
    with torch.no_grad():
        z = sample_noise(cfg.model, 2000, setup.device, torch.Generator().manual_seed(0))
        samples = G(z)
    info = setup.data.info
    stats = mode_stats(samples, info.extra["centers"], info.extra["std"])
    assert stats["modes_covered"] >= 7, stats
    assert stats["high_quality"] >= 0.7, stats


def _test_elbo(setup) -> float:
    x, _ = setup.data.split("test").all()
    vae = setup.model.networks["vae"]
    vae.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        elbo = torch.stack([vae.elbo(x) for _ in range(5)]).mean()
    vae.train()
    return float(elbo)


@pytest.mark.parametrize("binarize", ["none", "dynamic"])
def test_vae_test_elbo_improves_on_digits(tmp_path, binarize):
    _, setup, trainer = _fit(
        [
            "model=vae",
            "data=digits",
            f"data.binarize={binarize}",
            "device=cpu",
            "model.g_hidden=[128]",
            "model.latent_dim=8",
            "train.batch_size=64",
            "train.steps=150",
        ],
        tmp_path,
    )
    before = _test_elbo(setup)
    trainer.fit()
    after = _test_elbo(setup)
    # 16x16 Bernoulli pixels: about -180 nats at initialisation, about -110 after 150 steps.
    assert after > before + 40, (before, after)
