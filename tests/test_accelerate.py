"""trainer.* speed settings: same state-dict keys, float32 outputs, clear errors."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from ganrun.config.schema import OptimConfig, TrainerConfig
from ganrun.devices import configure_threads
from ganrun.errors import GanrunError
from ganrun.models.nets.dcgan import Discriminator, Generator
from ganrun.models.optim import build_optimizer, fused_for
from ganrun.training.accelerate import accelerate, uses_channels_last

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
    assert fused_for(CPU) and fused_for(torch.device("cuda")) and not fused_for(torch.device("mps"))


def test_fused_adam_on_cpu_matches_the_per_tensor_adam():
    # Training runs it on CPU too (fused_for): the same updates to rounding, not other ones.
    cfg = OptimConfig(name="adam", lr=1e-2, betas=[0.5, 0.999])
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))
    b = copy.deepcopy(a)
    start = [p.detach().clone() for p in a.parameters()]
    opts = [build_optimizer(cfg, net.parameters(), fused=f) for net, f in ((a, True), (b, False))]
    assert opts[0].defaults["fused"]
    for _ in range(20):
        x = torch.randn(16, 5)
        for net, opt in zip((a, b), opts, strict=True):
            opt.zero_grad()
            (net(x) - 1).pow(2).mean().backward()
            opt.step()
    for p, q, p0 in zip(a.parameters(), b.parameters(), start, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(p, p0, atol=1e-3)  # 20 real updates, not a no-op


def test_threads_fill_the_cores_unless_omp_num_threads_sets_them(monkeypatch):
    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    try:
        torch.set_num_threads(1)  # what torch starts with under OMP_NUM_THREADS=1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert configure_threads() == 1 == torch.get_num_threads()
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert configure_threads() == cores == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
