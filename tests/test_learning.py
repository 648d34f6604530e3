"""Real learning on toy data, end to end through the trainer (CPU, well under a minute each)."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from ganrun.data.mixtures import mode_stats
from ganrun.models import sample_noise
from ganrun.train import build_setup
from ganrun.trainer import Trainer


def _train(overrides: list[str], run_dir: Path):
    with initialize_config_module("ganrun.configs", version_base=None):
        cfg = compose(config_name="train", overrides=["device=cpu", *overrides])
    setup = build_setup(cfg)
    return cfg, setup, Trainer(setup, run_dir)


def test_non_saturating_gan_covers_the_ring(tmp_path):
    cfg, setup, trainer = _train(["experiment=ring_gan"], tmp_path)
    trainer.fit()
    g = setup.ema.model if setup.ema is not None else setup.nets.generator
    z = sample_noise(cfg.model, 2500, torch.device("cpu"), torch.Generator().manual_seed(7))
    with torch.no_grad():
        samples = g.eval()(z)
    info = setup.data.info
    stats = mode_stats(samples, info.extra["centers"], info.extra["std"])
    assert stats["modes_covered"] >= 7, stats
    assert stats["high_quality"] >= 0.70, stats
    assert (tmp_path / "samples").is_dir()  # the scatter plots were written


def test_vae_test_elbo_improves_on_digits(tmp_path):
    overrides = ["model=vae", "train.steps=400", "train.log_every=100", "train.sample_every=400",
                 "train.checkpoint_every=400"]
    cfg, setup, trainer = _train(overrides, tmp_path)
    vae = setup.nets.generator
    x, _ = setup.data.split("test").all()

    def test_elbo() -> float:
        torch.manual_seed(0)
        vae.eval()
        with torch.no_grad():
            value = vae.elbo(x).mean().item()
        vae.train()
        return value

    before = test_elbo()
    trainer.fit()
    after = test_elbo()
    # Digits at 16x16 (256 Bernoulli pixels): an untrained decoder is ~ -180 nats; 400 steps
    # reach about -100.
    assert after > before + 50, (before, after)
