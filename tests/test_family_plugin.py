"""A model family from outside ganrun: one module (this file) and one YAML (written below) are all
it takes. It registers through the public registry, then trains, checkpoints, resumes bit for
bit, samples and is scored with nothing else touched.

The family: a 2-D "shift and scale" generator x = z * scale + shift against an MLP critic, trained
with the non-saturating loss on the 8-mode ring.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

import ganrun.models
from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError
from ganrun.models import Family, family_of, register
from ganrun.models.family import ModelConfig, Statistic
from ganrun.models.latent import LatentModel
from ganrun.runs.checkpoint import load_checkpoint
from tests.conftest import assert_one_line_error, checkpoint_tensors


@dataclass
class ShiftScaleConfig(ModelConfig):
    latent_dim: int = 2
    noise: str = "normal"
    noise_scale: float = 1.0
    hidden: int = 32  # the critic's hidden units


class ShiftScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return z * self.scale + self.shift


class ShiftScaleModel(LatentModel):
    averaged = ("generator",)

    def configure_training(self, cfg: DictConfig, fused: bool) -> None:
        super().configure_training(cfg, fused)
        self.n = cfg.train.batch_size
        self.add_optimizer("generator", self.G.parameters(), cfg.optim, fused)
        self.add_optimizer("critic", self.D.parameters(), cfg.optim, fused)

    @property
    def G(self) -> nn.Module:
        return self.networks["generator"]

    @property
    def D(self) -> nn.Module:
        return self.networks["critic"]

    def training_step(self, batches: Any, noise: torch.Generator) -> dict[str, torch.Tensor]:
        opt_g, opt_d = self.optimizers["generator"], self.optimizers["critic"]
        real, _ = batches.batch(self.n)
        fake = self.G(self.noise(self.n, noise))
        loss_d = F.softplus(-self.D(real)).mean() + F.softplus(self.D(fake.detach())).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = F.softplus(-self.D(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        self.update_averages()
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}


class ShiftScaleFamily(Family):
    name = "shift_scale"
    models = ("shift_scale",)
    schema = ShiftScaleConfig
    statistics = (Statistic("loss_d", "critic loss"), Statistic("loss_g", "generator loss"))

    def data_kinds(self, model: str) -> tuple[str, ...]:
        return ("points",)

    def check(self, cfg: DictConfig) -> None:
        if cfg.model.hidden < 1:
            raise GanrunError(f"model.hidden={cfg.model.hidden} must be at least 1")

    def build(self, cfg: DictConfig, info: DataInfo) -> ShiftScaleModel:
        dim = info.channels
        critic = nn.Sequential(nn.Linear(dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1))
        return ShiftScaleModel(
            cfg, info, {"generator": ShiftScale(dim), "critic": _Squeezed(critic)}
        )


class _Squeezed(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).squeeze(-1)


YAML = """# @package _global_
# A 2-D shift-and-scale generator against an MLP critic.
defaults:
  - /model_schema_shift_scale@model
  - override /optim: adam
  - _self_

model:
  name: shift_scale

optim:
  lr: 0.01
  betas: [0.5, 0.999]
"""

RUN = [
    "model=shift_scale",
    "data=ring",
    "data.num_points=2000",
    "data.valid_size=200",
    "train.batch_size=64",
    "train.steps=40",
    "train.log_every=10",
    "train.sample_every=20",
    "train.checkpoint_every=10",
    "model.ema_decay=0.9",
    "device=cpu",
]


@pytest.fixture(autouse=True)
def _forget_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hydra's ConfigStore outlives a test, and submitit jobs of later tests unpickle it in
    processes that cannot import this module: the schema goes with the test."""
    from hydra.core.config_store import ConfigStore

    key = f"{ganrun.models.SCHEMA_PREFIX}{ShiftScaleFamily.name}.yaml"
    monkeypatch.setitem(ConfigStore.instance().repo, key, None)  # undone: deleted again


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The family registered for this test only; the flags that put its YAML on Hydra's path."""
    ganrun.models.all_families()  # the built-in ones first, so that only this one is extra
    monkeypatch.setattr(ganrun.models, "_FAMILIES", dict(ganrun.models._FAMILIES))
    monkeypatch.setattr(ganrun.models, "_MODELS", dict(ganrun.models._MODELS))
    register(ShiftScaleFamily())
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "shift_scale.yaml").write_text(YAML)
    return ["--config-dir", str(tmp_path / "conf")]


def test_a_family_of_ones_own_trains_resumes_samples_and_is_scored(
    cli, tmp_path, plugin, monkeypatch
):
    monkeypatch.setenv("GANRUN_CACHE_DIR", str(tmp_path / "cache"))
    code, out, err = cli("train", *plugin, *RUN, "hydra.run.dir=full", cwd=tmp_path)
    assert code == 0, err
    run = tmp_path / "full"
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    assert (ckpt["family"], ckpt["step"]) == ("shift_scale", 40)
    assert set(ckpt["networks"]) == set(ckpt["optimizers"]) == {"generator", "critic"}
    assert set(ckpt["averages"]) == {"generator"}
    with (run / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    # The ring's density is known, so the theory's values come with every figure (no "d_gap":
    # this critic gives no probabilities).
    assert list(rows[0]) == ["step", "loss_d", "loss_g", "jsd", "c_g", "v_dstar", "sec_per_step"]
    assert [int(r["step"]) for r in rows] == list(range(1, 41))
    assert [int(r["step"]) for r in rows if r["jsd"]] == [20, 40]
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "step_000020.png",
        "step_000040.png",
    ]
    scale = ckpt["networks"]["generator"]["scale"]
    assert not torch.equal(scale, torch.ones(2))  # it learned (the ring's radius is 2)

    # Half the steps, then resume=auto: the same weights, averages and optimizer states.
    half = [o if not o.startswith("train.steps") else "train.steps=20" for o in RUN]
    assert cli("train", *plugin, *half, "hydra.run.dir=part", cwd=tmp_path)[0] == 0
    code, _, err = cli("train", *plugin, *RUN, "resume=auto", "hydra.run.dir=part", cwd=tmp_path)
    assert code == 0, err
    full, part = (
        checkpoint_tensors(run / "checkpoints/last.pt"),
        checkpoint_tensors(tmp_path / "part/checkpoints/last.pt"),
    )
    assert full.keys() == part.keys()
    assert all(torch.equal(full[k], part[k]) for k in full)

    code, out, err = cli(
        "sample",
        f"checkpoint={run}/checkpoints/last.pt",
        "n=100",
        "sample.format=npz",
        "out=drawn.npz",
        cwd=tmp_path,
    )
    assert code == 0 and "(step 40, ema weights)" in out, err
    assert np.load(tmp_path / "drawn.npz")["samples"].shape == (100, 2)

    code, out, err = cli("eval", f"run={run}", "eval=fast", "device=cpu", cwd=tmp_path)
    assert code == 0, err
    with (run / "eval.csv").open(newline="") as f:
        scored = list(csv.DictReader(f))
    assert [r["checkpoint"] for r in scored] == [
        f"checkpoints/step_0000{s}.pt" for s in (10, 20, 30, 40)
    ]
    assert int(scored[-1]["num_modes"]) == 8 and 0 <= int(scored[-1]["modes_covered"]) <= 8
    assert "has no evidence lower bound" in scored[-1]["elbo.skipped"]


def test_a_family_refuses_its_own_bad_settings_before_writing(cli, tmp_path, plugin):
    code, out, err = cli("train", *plugin, *RUN, "model.hidden=0", "hydra.run.dir=r", cwd=tmp_path)
    assert code == 2 and "model.hidden=0 must be at least 1" in err, err
    assert not (tmp_path / "r").exists()
    # Keys of other families are not its keys: the schema refuses them while composing.
    code, out, err = cli("train", *plugin, *RUN, "model.width=8", "hydra.run.dir=r", cwd=tmp_path)
    assert code == 2 and "model.width" in err and not (tmp_path / "r").exists()


def test_families_of_other_packages_load_from_entry_points(monkeypatch):
    monkeypatch.setattr(ganrun.models, "_FAMILIES", {})
    monkeypatch.setattr(ganrun.models, "_MODELS", {})
    monkeypatch.setattr(ganrun.models, "_loaded", False)
    entry = EntryPoint("shift_scale", f"{__name__}:ShiftScaleFamily", ganrun.models.ENTRY_POINTS)
    monkeypatch.setattr(ganrun.models, "entry_points", lambda group: [entry])
    assert isinstance(family_of("shift_scale"), ShiftScaleFamily)
    assert family_of("dcgan").name == "gan"  # beside the built-in families

    broken = EntryPoint("broken", "no_such_module:Family", ganrun.models.ENTRY_POINTS)
    monkeypatch.setattr(ganrun.models, "entry_points", lambda group: [broken])
    monkeypatch.setattr(ganrun.models, "_loaded", False)
    with pytest.raises(GanrunError, match="family 'broken' of entry point 'no_such_module:Family'"):
        ganrun.models.all_families()


def test_two_families_cannot_serve_one_model(plugin):
    class Impostor(ShiftScaleFamily):
        name = "impostor"
        models = ("dcgan",)

    with pytest.raises(GanrunError, match="model=dcgan is served by family 'gan' already"):
        register(Impostor())


def test_unknown_family_in_a_checkpoint_names_what_to_install(cli, tmp_path, plugin):
    code, _, err = cli("train", *plugin, *RUN, "train.steps=2", "hydra.run.dir=r", cwd=tmp_path)
    assert code == 0, err
    del ganrun.models._FAMILIES["shift_scale"], ganrun.models._MODELS["shift_scale"]
    code, out, err = cli("sample", f"checkpoint={tmp_path}/r/checkpoints/last.pt", cwd=tmp_path)
    fragment = "model=shift_scale, which no installed model family serves"
    assert_one_line_error((code, out, err), fragment)
