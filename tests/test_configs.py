"""Every option of every config group composes against the schemas and builds what it names."""

from __future__ import annotations

import re

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from ganrun.config.checks import check_train_config
from ganrun.config.schema import default_data_root
from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError
from ganrun.models import build_model, family_of
from ganrun.models.losses import LOSSES
from tests.conftest import CONFIGS, composed, group_options

GROUPS = ["model", "data", "loss", "optim", "device", "eval"]


def test_every_group_exists_and_has_options():
    for group in [*GROUPS, "experiment"]:
        assert (CONFIGS / group).is_dir(), group
    for group in GROUPS:
        assert group_options(group), group


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in group_options(g)])
def test_option_composes(group, option):
    with composed([f"{group}={option}"]) as cfg:
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        assert cfg[group] is not None


@pytest.mark.parametrize("option", group_options("model"))
def test_every_model_builds_with_its_defaults(option):
    with composed([f"model={option}"]) as cfg:
        check_train_config(cfg)
        # 28x28 grayscale (MNIST-shaped): every model must build for it.
        family = family_of(cfg.model.name)
        info = DataInfo("test", 1, 28, 10, family.value_range(cfg.model))
        model = build_model(cfg.model, info)
        model.configure_training(cfg, fused=False)
        assert model.optimizers or family.name == "gmm"  # EM sets its parameters outright
        for name, opt in model.optimizers.items():
            scale = model.lr_scales[name]
            assert opt.param_groups[0]["lr"] == cfg.optim.lr * scale
        if family.name == "gan":
            assert cfg.loss.name in LOSSES


# Settings a preset leaves to the command line (${ganrun_required:...}): a file it reads.
REQUIRED = {"srgan_mnist": "model.init_from"}


@pytest.mark.parametrize("option", group_options("experiment"))
def test_every_experiment_composes(option, tmp_path):
    given = []
    if option in REQUIRED:
        (tmp_path / "given.pt").touch()
        given = [f"{REQUIRED[option]}={tmp_path / 'given.pt'}"]
    with composed([f"experiment={option}", *given]) as cfg:
        check_train_config(cfg)


def test_goodfellow2014_preset_is_the_released_setup():
    # pylearn2 mnist.yaml: "uniform" noise, U(-sqrt 3, sqrt 3); SGD 0.1 with momentum 0.5 ->
    # 0.7 over 250 epochs of 500 batches, lr / 1.000004 per update, batch 100, first 50k images.
    with composed(["experiment=goodfellow2014_mnist"]) as cfg:
        m, o = cfg.model, cfg.optim
        assert (m.name, m.noise, m.noise_scale, list(m.init_range), cfg.loss.name) == (
            "gan",
            "uniform",
            pytest.approx(3**0.5),
            [0.05, 0.005],
            "non_saturating",
        )
        assert (o.name, o.lr, o.momentum, o.final_momentum, o.momentum_ramp_steps) == (
            "sgd",
            0.1,
            0.5,
            0.7,
            125_000,
        )
        assert (o.lr_decay, o.min_lr, cfg.train.batch_size) == (1.000004, 1e-6, 100)
        assert m.output_bias == "data_mean"  # init_sigmoid_bias_from_marginals
        # AdversaryCost2: one simultaneous update; D's objective is 0.5 * (its two BCE terms).
        assert (cfg.train.simultaneous, o.d_lr_scale) == (True, 0.5)


def test_lucic2018_preset_gives_every_row_20_epochs_of_d_batches():
    # compare_gan steps G once every d_steps D batches; an epoch is 781 D batches of 64.
    for overrides, steps in (([], 15600), (["model=wgan"], 3120), (["model=vae"], 15600)):
        with composed(["experiment=lucic2018_mnist", *overrides]) as cfg:
            assert cfg.train.steps * cfg.train.d_steps == 15600, overrides
            assert cfg.train.steps == steps
    with composed(["experiment=lucic2018_mnist", "model=wgan_gp", "train.steps=7"]) as cfg:
        assert cfg.train.steps == 7


@pytest.mark.parametrize("model", ["dcgan", "wgan", "wgan_gp"])
def test_lucic2018_infogan_preset_keeps_the_base_preset_and_each_model(model):
    with composed(["experiment=lucic2018_mnist_infogan", f"model={model}"]) as cfg:
        check_train_config(cfg)
        m = cfg.model
        assert (m.name, m.arch, m.latent_dim, m.noise, m.output) == (
            model,
            "infogan",
            64,
            "uniform",
            "sigmoid",
        )
        assert cfg.train.steps * cfg.train.d_steps == 15600 and cfg.train.batch_size == 64
        assert m.d_batchnorm == (model != "wgan_gp")  # each model keeps its own critic
    # The VAE's prior is N(0, I), not the GANs' U(-1, 1): it has a preset of its own.
    vae = composed(["experiment=lucic2018_mnist_infogan", "model=vae"])
    with vae as cfg, pytest.raises(GanrunError, match="model.noise=uniform does not apply"):
        check_train_config(cfg)


def test_lucic2018_vae_preset_is_the_vae_row_with_the_papers_networks():
    with composed(["experiment=lucic2018_mnist_vae"]) as cfg:
        check_train_config(cfg)
        m = cfg.model
        assert (m.name, m.arch, m.latent_dim, m.width, m.noise) == (
            "vae",
            "infogan",
            64,
            64,
            "normal",
        )
        assert (cfg.train.steps, cfg.train.batch_size, cfg.data.name) == (15600, 64, "mnist")
        assert cfg.eval.name == "paper" and cfg.eval.at_end


def test_model_brings_paper_defaults_and_overrides_win():
    with composed(["model=wgan"]) as cfg:
        assert cfg.loss.name == "wasserstein"
        assert cfg.optim.name == "rmsprop"
        assert cfg.train.d_steps == 5
    with composed(["model=wgan", "loss=hinge", "optim=adam", "train.d_steps=2"]) as cfg:
        assert (cfg.loss.name, cfg.optim.name, cfg.train.d_steps) == ("hinge", "adam", 2)


def test_default_is_dcgan_non_saturating_on_digits():
    with composed() as cfg:
        assert (cfg.model.name, cfg.loss.name, cfg.data.name) == (
            "dcgan",
            "non_saturating",
            "digits",
        )
        assert cfg.device.type == "auto"


def test_schema_rejects_wrong_type_and_unknown_key():
    with (
        pytest.raises((ConfigCompositionException, ValidationError)),
        composed(["train.steps=abc"]),
    ):
        pass
    with pytest.raises(ConfigCompositionException), composed(["train.nope=1"]):
        pass


def test_data_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GANRUN_DATA_DIR", str(tmp_path))
    assert default_data_root() == str(tmp_path)
    with composed() as cfg:
        assert cfg.data.root == str(tmp_path)
    monkeypatch.delenv("GANRUN_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_data_root() == str(tmp_path / "cache" / "ganrun" / "data")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.steps=0", "train.steps"),
        ("train.d_steps=0", "train.d_steps"),
        ("optim.lr=-1", "optim.lr"),
        ("optim.lr=0", "optim.lr"),
        ("model.noise=cauchy", "model.noise"),
        ("model.init_range=[0.05]", "model.init_range"),
        ("model.output_bias=mean", "model.output_bias"),
        ("optim.d_lr_scale=0", "optim.d_lr_scale"),
        ("model.output_bias=data_mean", "a model=gan option"),
        ("optim.lr_decay=0", "optim.lr_decay"),
        ("optim.min_lr=-1", "optim.min_lr"),
        ("optim.momentum_ramp_steps=-5", "optim.momentum_ramp_steps"),
        ("optim.momentum_ramp_steps=100", "optim=adam"),
        ("model.ema_decay=1.5", "model.ema_decay"),
        ("loss=wasserstein", "needs a critic"),
        ("model.gp_weight=10", "needs a critic"),
        ("data.channels=2", "data.channels"),
        ("data.binarize=yes", "data.binarize='yes' is not one of: none, static, dynamic"),
        ("train.grid_min_width=-1", "train.grid_min_width=-1 must be 0"),
    ],
)
def test_validation_rejects(override, fragment):
    with (
        composed([override]) as cfg,
        pytest.raises(GanrunError, match=fragment.replace(".", r"\.")),
    ):
        check_train_config(cfg)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["model=wgan", "train.simultaneous=true"], "needs train.d_steps=1 (got 5)"),
        (["model=vae", "train.simultaneous=true"], "and a GAN (got model=vae)"),
        (["model=wgan_gp", "train.simultaneous=true", "train.d_steps=1"], "no gradient penalty"),
    ],
)
def test_simultaneous_update_needs_one_plain_d_step(overrides, fragment):
    with composed(overrides) as cfg, pytest.raises(GanrunError, match=re.escape(fragment)):
        check_train_config(cfg)
