"""trainer.* speed settings: same state-dict keys, float32 outputs, clear errors."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from ganrun.config.schema import OptimConfig, TrainerConfig
from ganrun.data.base import DataInfo
from ganrun.devices import configure_threads
from ganrun.errors import GanrunError
from ganrun.models import build_model
from ganrun.models.nets.dcgan import Discriminator, Generator
from ganrun.models.optim import build_optimizer, fused_for
from ganrun.training.accelerate import accelerate, uses_channels_last
from tests.conftest import TINY, checkpoint_tensors, composed

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
    assert accelerate([g, d], TrainerConfig(channels_last="on"), CPU)
    weight = next(m.weight for m in d.modules() if isinstance(m, torch.nn.Conv2d))
    assert weight.is_contiguous(memory_format=torch.channels_last)


def test_auto_channels_last_is_the_models_choice_on_a_cpu():
    with pytest.raises(GanrunError, match="trainer.channels_last"):
        uses_channels_last(TrainerConfig(channels_last="maybe"), CPU)
    cuda = torch.device("cuda")
    assert uses_channels_last(TrainerConfig(), cuda)
    assert not uses_channels_last(TrainerConfig(), CPU)
    assert uses_channels_last(TrainerConfig(), CPU, cpu_pays=True)
    assert not uses_channels_last(TrainerConfig(channels_last="off"), CPU, cpu_pays=True)
    assert uses_channels_last(TrainerConfig(channels_last="on"), CPU, cpu_pays=False)


@pytest.mark.parametrize(
    ("overrides", "pays"),
    [
        (["model=dcgan"], True),
        (["model=dcgan", "model.arch=infogan"], False),
        (["model=wgan_gp"], False),
        (["model=gan"], False),
        (["model=vae", "model.arch=conv"], True),
        (["model=vae"], False),
    ],
)
def test_which_models_train_in_channels_last_on_a_cpu(overrides, pays):
    """The measured choice (docs/PERFORMANCE.md): DCGAN's and the conv VAE's networks gain,
    dense-layer networks and the gradient penalty's double backward do not."""
    with composed([*overrides, "data=digits"]) as cfg:
        info = DataInfo("digits", 1, 16, 10, (-1.0, 1.0))
        assert build_model(cfg.model, info).channels_last_on_cpu is pays


def test_a_resume_keeps_the_layout_its_checkpoint_trained_in(cli, tmp_path):
    """A run that trained in NCHW (recorded, or a checkpoint from before the record) resumes in
    NCHW even where auto now picks channels_last, so the resume stays bit-identical."""
    from ganrun.runs.checkpoint import load_checkpoint, save_checkpoint

    code, _, err = cli("train", *TINY, "hydra.run.dir=full", cwd=tmp_path)
    assert code == 0, err
    assert load_checkpoint(tmp_path / "full/checkpoints/last.pt")["channels_last"] is True
    code, _, err = cli(
        "train", *TINY, "trainer.channels_last=off", "hydra.run.dir=ref", cwd=tmp_path
    )
    assert code == 0, err
    half = [o for o in TINY if not o.startswith("train.steps")] + ["train.steps=3"]
    code, _, err = cli(
        "train", *half, "trainer.channels_last=off", "hydra.run.dir=split", cwd=tmp_path
    )
    assert code == 0, err
    # As written before the record existed: no "channels_last", config auto.
    last = tmp_path / "split/checkpoints/last.pt"
    payload = load_checkpoint(last)
    del payload["channels_last"]
    payload["config"]["trainer"]["channels_last"] = "auto"
    save_checkpoint(payload, last)
    code, out, err = cli("train", *TINY, "hydra.run.dir=split", "resume=auto", cwd=tmp_path)
    assert code == 0, err
    assert "channels_last off" in out + err
    ref = checkpoint_tensors(tmp_path / "ref/checkpoints/last.pt")
    resumed = checkpoint_tensors(tmp_path / "split/checkpoints/last.pt")
    assert ref.keys() == resumed.keys()
    for key, value in ref.items():
        assert torch.equal(value, resumed[key]), key


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (TrainerConfig(precision="fp8"), "trainer.precision"),
        (TrainerConfig(precision="fp16"), "needs device=cuda"),
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
