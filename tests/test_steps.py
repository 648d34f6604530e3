"""The GAN training steps against updates written out by hand: Algorithm 1 (D, then G through
the updated D) and the 2014 code's simultaneous update (both from the pre-update weights)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from ganrun.checkpoint import load_checkpoint
from ganrun.losses import LOSSES
from ganrun.steps import gan_step, simultaneous_gan_step, step_for
from tests.conftest import TINY

LR = 0.1
LOSS = LOSSES["non_saturating"]


class _Net(nn.Module):
    """A linear map called as the trainer calls networks: net(x, labels)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


def _trainer(G: nn.Module, D: nn.Module, real: torch.Tensor, z: torch.Tensor) -> SimpleNamespace:
    cfg = OmegaConf.create(
        {
            "train": {"batch_size": len(real), "d_steps": 1},
            "model": {"critic": False, "gp_weight": 0, "clip_value": 0},
        }
    )
    data = SimpleNamespace(train=SimpleNamespace(batch=lambda n: (real, None)))
    s = SimpleNamespace(
        loss=LOSS,
        opt_g=torch.optim.SGD(G.parameters(), lr=LR),
        opt_d=torch.optim.SGD(D.parameters(), lr=LR),
        data=data,
    )
    return SimpleNamespace(G=G, D=D, cfg=cfg, s=s, ema=None, noise=lambda n: z)


def _sgd(net: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    names, params = zip(*net.named_parameters(), strict=True)
    grads = torch.autograd.grad(loss, params, retain_graph=True)
    return {n: p.detach() - LR * g for n, p, g in zip(names, params, grads, strict=True)}


def _start() -> SimpleNamespace:
    """Two small players, one batch, and D's update written out by hand: the same in both
    steps, since D always steps first from the pre-update weights."""
    torch.manual_seed(0)
    G, D = _Net(3, 2), _Net(2, 1)
    real, z = torch.randn(8, 2), torch.randn(8, 3)
    g0, d0 = copy.deepcopy(G), copy.deepcopy(D)
    fake = g0(z)
    expected_d = _sgd(d0, LOSS.d(d0(real), d0(fake.detach())))
    return SimpleNamespace(G=G, D=D, real=real, z=z, g0=g0, d0=d0, fake=fake, expected_d=expected_d)


def _assert_weights(net: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name], rtol=0, atol=1e-7)


def test_simultaneous_step_moves_both_players_from_the_pre_update_weights():
    c = _start()
    expected_g = _sgd(c.g0, LOSS.g(c.d0(c.fake)))  # through D before its update

    stats = simultaneous_gan_step(_trainer(c.G, c.D, c.real, c.z))
    _assert_weights(c.D, c.expected_d)
    _assert_weights(c.G, expected_g)
    assert set(stats) == {"loss_d", "loss_g", "d_real", "d_fake"}


def test_alternating_step_moves_g_through_the_updated_d():
    c = _start()
    d1 = copy.deepcopy(c.d0)
    d1.load_state_dict(c.expected_d)
    expected_g = _sgd(c.g0, LOSS.g(d1(c.fake)))

    gan_step(_trainer(c.G, c.D, c.real, c.z))
    _assert_weights(c.D, c.expected_d)
    _assert_weights(c.G, expected_g)


def test_step_for_picks_the_update():
    assert step_for("gan", False) is gan_step
    assert step_for("gan", True) is simultaneous_gan_step


def test_simultaneous_training_with_half_d_rate_end_to_end(cli, tmp_path):
    overrides = ["model=gan", "model.g_hidden=[32]", "model.d_hidden=[16]"]
    extra = ["train.simultaneous=true", "optim.d_lr_scale=0.5", "optim.lr_decay=2"]
    code, _, err = cli("train", *TINY, *overrides, *extra, "hydra.run.dir=run", cwd=tmp_path)
    assert code == 0, err
    ckpt = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    lr_g = ckpt["opt_g"]["param_groups"][0]["lr"]
    assert ckpt["opt_d"]["param_groups"][0]["lr"] == pytest.approx(0.5 * lr_g)
    assert all(torch.isfinite(t).all() for t in ckpt["generator"].values())
