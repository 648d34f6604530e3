"""The GAN training steps against updates written out by hand: Algorithm 1 (D, then G through
the updated D) and the 2014 code's simultaneous update (both from the pre-update weights)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ganrun.data.base import DataInfo
from ganrun.models.families.gan import GanModel
from ganrun.models.losses import LOSSES
from ganrun.runs.checkpoint import load_checkpoint
from tests.conftest import TINY, composed

LR = 0.1
LOSS = LOSSES["non_saturating"]


class _Net(nn.Module):
    """A linear map called as the trainer calls networks: net(x, labels)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


def _model(G: nn.Module, D: nn.Module, batch_size: int, simultaneous: bool = False) -> GanModel:
    """The GAN family's model around two given players, trained by plain SGD at LR."""
    overrides = [
        "model=gan",
        "model.latent_dim=3",
        "model.noise=normal",
        "model.noise_scale=1",
        "loss=non_saturating",
        "optim=sgd",
        f"optim.lr={LR}",
        "optim.momentum=0",
        f"train.batch_size={batch_size}",
        f"train.simultaneous={simultaneous}",
    ]
    with composed(overrides) as cfg:
        info = DataInfo("test", 2, 0, 0, (0.0, 1.0), "points")
        model = GanModel(cfg.model, info, {"generator": G, "discriminator": D})
        model.configure_training(cfg, fused=False)
    return model


def _batches(real: torch.Tensor) -> SimpleNamespace:
    return SimpleNamespace(batch=lambda n: (real, None))


def _noise() -> torch.Generator:
    return torch.Generator().manual_seed(7)


def _sgd(net: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    names, params = zip(*net.named_parameters(), strict=True)
    grads = torch.autograd.grad(loss, params, retain_graph=True)
    return {n: p.detach() - LR * g for n, p, g in zip(names, params, grads, strict=True)}


def _start() -> SimpleNamespace:
    """Two small players, one batch, and D's update written out by hand: the same in both
    steps, since D always steps first from the pre-update weights."""
    torch.manual_seed(0)
    G, D = _Net(3, 2), _Net(2, 1)
    real = torch.randn(8, 2)
    z = torch.randn(8, 3, generator=_noise())  # what the step draws from _noise()
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

    stats = _model(c.G, c.D, 8, simultaneous=True).simultaneous_step(_batches(c.real), _noise())
    _assert_weights(c.D, c.expected_d)
    _assert_weights(c.G, expected_g)
    assert set(stats) == {"loss_d", "loss_g", "d_real", "d_fake"}


def test_alternating_step_moves_g_through_the_updated_d():
    c = _start()
    d1 = copy.deepcopy(c.d0)
    d1.load_state_dict(c.expected_d)
    expected_g = _sgd(c.g0, LOSS.g(d1(c.fake)))

    _model(c.G, c.D, 8).alternating_step(_batches(c.real), _noise())
    _assert_weights(c.D, c.expected_d)
    _assert_weights(c.G, expected_g)


def test_training_step_picks_the_update(monkeypatch):
    for simultaneous, picked in ((False, "alternating_step"), (True, "simultaneous_step")):
        model = _model(_Net(3, 2), _Net(2, 1), 8, simultaneous)
        monkeypatch.setattr(model, picked, lambda batches, noise, name=picked: {name: None})
        assert model.training_step(None, None) == {picked: None}


def test_simultaneous_training_with_half_d_rate_end_to_end(cli, tmp_path):
    overrides = ["model=gan", "model.g_hidden=[32]", "model.d_hidden=[16]"]
    extra = ["train.simultaneous=true", "optim.d_lr_scale=0.5", "optim.lr_decay=2"]
    code, _, err = cli("train", *TINY, *overrides, *extra, "hydra.run.dir=run", cwd=tmp_path)
    assert code == 0, err
    ckpt = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    opts = ckpt["optimizers"]
    lr_g = opts["generator"]["param_groups"][0]["lr"]
    assert opts["discriminator"]["param_groups"][0]["lr"] == pytest.approx(0.5 * lr_g)
    assert all(torch.isfinite(t).all() for t in ckpt["networks"]["generator"].values())
