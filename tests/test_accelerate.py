"""trainer.* speed settings: same state-dict keys, float32 outputs, clear errors."""

from __future__ import annotations

import pytest
import torch

from ganrun.accelerate import accelerate, uses_channels_last
from ganrun.errors import GanrunError
from ganrun.models.dcgan import Discriminator, Generator
from ganrun.optim import build_optimizer
from ganrun.schema import OptimConfig, TrainerConfig

CPU = torch.device("cpu")


def _nets():
    torch.manual_seed(0)
    return Generator(16, 1, 16, 8, "tanh"), Discriminator(1, 16, 8, True)


def test_bf16_autocast_keeps_keys_and_returns_float32():
    g, d = _nets()
    keys = list(g.state_dict())
    z = torch.randn(4, 16)
    reference = g(z)
    accelerate([g, d], TrainerConfig(precision="bf16"), CPU)
    assert list(g.state_dict()) == keys
    out = g(z)
    assert out.dtype == torch.float32
    assert torch.allclose(out, reference, atol=0.05)  # bf16 rounding only
    d(out).sum().backward()  # backward runs outside autocast


def test_channels_last_applies_to_conv_weights():
    g, d = _nets()
    accelerate([g, d], TrainerConfig(channels_last="on"), CPU)
    weight = next(m.weight for m in d.modules() if isinstance(m, torch.nn.Conv2d))
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert uses_channels_last(TrainerConfig(), torch.device("cuda"))
    assert not uses_channels_last(TrainerConfig(), CPU)


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (TrainerConfig(precision="fp8"), "trainer.precision"),
        (TrainerConfig(precision="fp16"), "needs device=cuda"),
        (TrainerConfig(channels_last="maybe"), "trainer.channels_last"),
    ],
)
def test_bad_settings(cfg, match):
    with pytest.raises(GanrunError, match=match):
        accelerate(list(_nets()), cfg, CPU)


def test_fused_adam_flag_reaches_the_optimizer():
    g, _ = _nets()
    opt = build_optimizer(OptimConfig(name="adam"), g.parameters(), fused=False)
    assert not opt.defaults.get("fused")
