"""Optimizers and the per-step schedules of the 2014 GAN code, including across a resume."""

from __future__ import annotations

import math

import pytest
import torch

from ganrun.config.schema import OptimConfig
from ganrun.models.optim import apply_schedule, build_optimizer, scheduled
from ganrun.runs.checkpoint import load_checkpoint
from tests.conftest import TINY, assert_one_line_error


def _sgd(**kw) -> OptimConfig:
    return OptimConfig(name="sgd", lr=0.1, momentum=0.5, **kw)


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop"])
def test_build_optimizer_uses_the_config(name):
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = build_optimizer(OptimConfig(name=name, lr=0.01, momentum=0.3), params)
    group = opt.param_groups[0]
    assert group["lr"] == 0.01
    if name != "adam":
        assert group["momentum"] == 0.3


def test_no_schedule_changes_nothing():
    assert scheduled(_sgd(), 0) == {}
    assert scheduled(_sgd(), 10**6) == {}


def test_lr_decays_per_update_down_to_its_floor():
    cfg = _sgd(lr_decay=1.000004, min_lr=1e-6)
    assert scheduled(cfg, 0) == {"lr": 0.1}
    # pylearn2's ExponentialDecay divides by the factor after every update.
    assert scheduled(cfg, 50_000)["lr"] == pytest.approx(
        0.1 / math.exp(50_000 * math.log(1.000004))
    )
    assert scheduled(cfg, 10**7)["lr"] == 1e-6


def test_momentum_ramps_linearly_then_stays():
    cfg = _sgd(final_momentum=0.7, momentum_ramp_steps=1000)
    assert scheduled(cfg, 0) == {"momentum": 0.5}
    assert scheduled(cfg, 500)["momentum"] == pytest.approx(0.6)
    assert scheduled(cfg, 1000)["momentum"] == pytest.approx(0.7)
    assert scheduled(cfg, 5000)["momentum"] == pytest.approx(0.7)


def test_apply_schedule_sets_every_group():
    cfg = _sgd(lr_decay=2.0, final_momentum=0.9, momentum_ramp_steps=4)
    opt = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(2))])
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})
    apply_schedule(cfg, {"generator": opt}, {"generator": 1.0}, 2)
    for group in opt.param_groups:
        assert group["lr"] == pytest.approx(0.025)
        assert group["momentum"] == pytest.approx(0.7)


def test_d_lr_scale_holds_at_build_and_under_the_schedule():
    cfg = _sgd(d_lr_scale=0.5, lr_decay=2.0, min_lr=0.02)
    opt_g = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(2))])
    opt_d = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(2))], lr_scale=cfg.d_lr_scale)
    assert (opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]) == (0.1, 0.05)
    opts, scales = {"g": opt_g, "d": opt_d}, {"g": 1.0, "d": cfg.d_lr_scale}
    apply_schedule(cfg, opts, scales, 1)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(0.025)
    apply_schedule(cfg, opts, scales, 10)  # G at the floor; D at half of it, as in the 2014 code
    assert opt_g.param_groups[0]["lr"] == pytest.approx(0.02)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(0.01)
    # The momentum ramp is shared: both players' momentum follows the same schedule.
    ramp = _sgd(d_lr_scale=0.5, final_momentum=0.9, momentum_ramp_steps=4)
    apply_schedule(ramp, opts, {"g": 1.0, "d": ramp.d_lr_scale}, 2)
    assert opt_d.param_groups[0]["momentum"] == opt_g.param_groups[0]["momentum"]
    assert opt_d.param_groups[0]["momentum"] == pytest.approx(0.7)


SCHEDULE = [
    "model=gan",
    "model.g_hidden=[32]",
    "model.d_hidden=[16]",
    "optim.lr_decay=1.5",
    "optim.min_lr=0.02",
    "optim.final_momentum=0.9",
    "optim.momentum_ramp_steps=4",
]


def test_scheduled_training_resumes_bit_identically(cli, tmp_path):
    code, _, err = cli("train", *TINY, *SCHEDULE, "hydra.run.dir=full", cwd=tmp_path)
    assert code == 0, err
    # The 6th update (step 5) used lr 0.1 / 1.5**5 = 0.0132 -> the 0.02 floor; momentum 0.9.
    ckpt = load_checkpoint(tmp_path / "full/checkpoints/last.pt")
    for key in ("generator", "discriminator"):
        group = ckpt["optimizers"][key]["param_groups"][0]
        assert group["lr"] == pytest.approx(0.02)
        assert group["momentum"] == pytest.approx(0.9)

    half = [o for o in TINY if not o.startswith("train.steps")] + ["train.steps=3"]
    code, _, err = cli("train", *half, *SCHEDULE, "hydra.run.dir=split", cwd=tmp_path)
    assert code == 0, err
    code, _, err = cli(
        "train", *TINY, *SCHEDULE, "hydra.run.dir=split", "resume=auto", cwd=tmp_path
    )
    assert code == 0, err
    full = load_checkpoint(tmp_path / "full/checkpoints/last.pt")
    split = load_checkpoint(tmp_path / "split/checkpoints/last.pt")
    for net in ("generator", "discriminator"):
        for name, tensor in full["networks"][net].items():
            assert torch.equal(tensor, split["networks"][net][name]), (net, name)


def test_adam_with_eps_in_the_root_follows_the_released_formula():
    """improved-gan's nn.adam_updates: p -= lr * m_hat / sqrt(v_hat + eps), with bias-corrected
    moments; checked over three steps against a direct float64 computation."""
    cfg = OptimConfig(name="adam", lr=0.003, betas=[0.5, 0.999], eps=1e-8, eps_in_sqrt=True)
    start = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    p = torch.nn.Parameter(start.clone())
    opt = build_optimizer(cfg, [p])
    grads = [torch.tensor([1e-4, -2e-3, 0.5]), torch.tensor([3e-4, 1e-3, -0.2]), torch.zeros(3)]
    expected, m, v = start.clone(), torch.zeros(3, dtype=torch.float64), torch.zeros(3)
    v = v.double()
    for t, g in enumerate(grads, 1):
        g = g.double()
        p.grad = g.clone()
        opt.step()
        m = 0.5 * m + 0.5 * g
        v = 0.999 * v + 0.001 * g * g
        m_hat, v_hat = m / (1 - 0.5**t), v / (1 - 0.999**t)
        expected -= 0.003 * m_hat / torch.sqrt(v_hat + 1e-8)
        assert torch.allclose(p.detach(), expected, rtol=0, atol=1e-15)
    # With eps negligible both forms are Adam: torch's agrees.
    q = torch.nn.Parameter(start.clone())
    ref = torch.optim.Adam([q], lr=0.003, betas=(0.5, 0.999), eps=0.0)
    r = torch.nn.Parameter(start.clone())
    ours = build_optimizer(OptimConfig(name="adam", lr=0.003, eps=0.0, eps_in_sqrt=True), [r])
    for g in grads[:2]:
        q.grad, r.grad = g.double().clone(), g.double().clone()
        ref.step()
        ours.step()
    assert torch.allclose(q.detach(), r.detach(), rtol=1e-12, atol=0)


def test_eps_in_sqrt_is_refused_for_other_optimizers(cli, tmp_path):
    result = cli("train", *TINY, "optim=sgd", "optim.eps_in_sqrt=true", cwd=tmp_path)
    assert_one_line_error(result, "optim.eps_in_sqrt")
    assert not any(tmp_path.iterdir())
