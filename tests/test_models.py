"""Models: output shapes and exact parameter counts per model and resolution, conditional
variants, EMA, the VAE's likelihood bounds, and a few CLI training steps of every model."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError
from ganrun.models import build_model, model_names
from ganrun.models.ema import EMA
from ganrun.models.family import output_range
from ganrun.models.latent import sample_noise
from tests.conftest import TINY, composed, group_options


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _nets(
    model: str,
    res: int,
    ch: int,
    classes: int = 10,
    overrides: list[str] | None = None,
    kind: str = "image",
):
    with composed([f"model={model}", *(overrides or [])]) as cfg:
        info = DataInfo("test", ch, res, classes, output_range(cfg.model.output), kind)
        model = build_model(cfg.model, info)
        return cfg, SimpleNamespace(
            generator=model.networks[model.sampler],
            discriminator=model.networks.get("discriminator"),
            names=set(model.networks),
        )


def test_gan_2014_mnist_parameter_counts():
    _, nets = _nets("gan", 28, 1)
    g = (100 * 1200 + 1200) + (1200 * 1200 + 1200) + (1200 * 784 + 784)
    d = (784 * 1200 + 1200) + (240 * 1200 + 1200) + (240 + 1)  # maxout: 240 units x 5 pieces
    assert (_count(nets.generator), _count(nets.discriminator)) == (g, d)


def test_gan_2014_initialisation_follows_the_released_code():
    # mnist.yaml of the 2014 code: irange .05 in G, .005 in D, zero biases.
    _, nets = _nets("gan", 28, 1)
    for net, irange in ((nets.generator, 0.05), (nets.discriminator, 0.005)):
        weights = [m.weight for m in net.modules() if isinstance(m, torch.nn.Linear)]
        biases = [m.bias for m in net.modules() if isinstance(m, torch.nn.Linear)]
        assert all(w.abs().max() <= irange for w in weights)
        assert all(w.abs().max() > 0.9 * irange for w in weights)
        assert all(torch.count_nonzero(b) == 0 for b in biases)


@pytest.mark.parametrize(("output", "lo"), [("sigmoid", 0.0), ("tanh", -1.0)])
def test_gan_output_bias_from_the_data_mean(output, lo):
    # pylearn2's init_sigmoid_bias_from_marginals: an untrained G puts out the mean image, with
    # always-dark and always-bright pixels clipped to 1e-7 from the ends of the range.
    mean = torch.rand(1, 4, 4) * (1 - lo) + lo
    mean[0, 0, :2] = torch.tensor([lo, 1.0])
    with composed(["model=gan", "model.output_bias=data_mean", f"model.output={output}"]) as cfg:
        info = DataInfo("test", 1, 4, 0, (lo, 1.0), train_mean=lambda: mean)
        g = build_model(cfg.model, info).networks["generator"]
    last = [m for m in g.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
    out = g(torch.randn(3, 100))
    expected = mean.clamp(lo + 1e-7, 1 - 1e-7).expand(3, 1, 4, 4)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.isfinite(last.bias).all() and last.bias[0] < -8 and last.bias[1] > 8


def test_gan_output_bias_on_points_is_the_mean_point_and_needs_held_data():
    mean = torch.tensor([0.5, -2.0])
    with composed(["model=gan", "model.output_bias=data_mean"]) as cfg:
        g = build_model(
            cfg.model, DataInfo("ring", 2, 0, 0, (0, 1), "points", train_mean=lambda: mean)
        ).networks["generator"]
        assert torch.equal(
            [m for m in g.modules() if isinstance(m, torch.nn.Linear)][-1].bias, mean
        )
        with pytest.raises(
            GanrunError, match="data=folder is streamed; use model.output_bias=zero"
        ):
            build_model(cfg.model, DataInfo("folder", 1, 4, 0, (0, 1)))


def test_dcgan_64_matches_the_reference_implementation():
    _, nets = _nets("dcgan", 64, 3)
    # The pytorch/examples DCGAN at 64x64 (nz 100, ngf = ndf = 64).
    assert (_count(nets.generator), _count(nets.discriminator)) == (3_576_704, 2_765_568)


def test_dcgan_28_parameter_count():
    _, nets = _nets("dcgan", 28, 1)  # 7x7 start, two doublings
    g = 100 * 128 * 49 + 256 + 128 * 64 * 16 + 128 + 64 * 1 * 16
    d = 1 * 64 * 16 + 64 * 128 * 16 + 256 + 128 * 49
    assert (_count(nets.generator), _count(nets.discriminator)) == (g, d)


def test_infogan_28_parameter_count():
    # Lucic et al.'s MNIST networks (compare_gan): z of 64, FC 1024, FC 7x7x128, two 4x4
    # stride-2 layers; BatchNorm (scale and shift) replaces the bias of the layer before it.
    _, nets = _nets("dcgan", 28, 1, overrides=["model.arch=infogan", "model.latent_dim=64"])
    g = (64 * 1024 + 2 * 1024) + (1024 * 6272 + 2 * 6272) + (128 * 64 * 16 + 2 * 64)
    g += 64 * 1 * 16 + 1
    d = (1 * 64 * 16 + 64) + (64 * 128 * 16 + 2 * 128) + (6272 * 1024 + 2 * 1024) + (1024 + 1)
    assert (_count(nets.generator), _count(nets.discriminator)) == (g, d)


def test_infogan_initialisation_and_critic():
    _, nets = _nets("wgan_gp", 28, 1, overrides=["model.arch=infogan"])
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    assert not any(isinstance(m, norms) for m in nets.discriminator.modules())
    assert any(isinstance(m, norms) for m in nets.generator.modules())
    layers = [
        m
        for net in (nets.generator, nets.discriminator)
        for m in net.modules()
        if isinstance(m, torch.nn.Linear | torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    ]
    for m in layers:  # compare_gan: N(0, 0.02) weights, zero biases
        assert abs(m.weight.std().item() - 0.02) < 0.004
        assert m.bias is None or torch.count_nonzero(m.bias) == 0


def test_wgan_gp_critic_has_no_batchnorm():
    _, nets = _nets("wgan_gp", 32, 3)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in nets.discriminator.modules())
    d = 3 * 64 * 16 + (64 * 128 * 16 + 128) + (128 * 256 * 16 + 256) + 256 * 16
    assert _count(nets.discriminator) == d


def test_vae_infogan_networks_follow_compare_gan():
    # Lucic et al.'s VAE: the InfoGAN D's layers encode (to 2 x 64 Gaussian parameters), its G's
    # layers decode, with ReLU where the GAN's G has leaky ReLU; N(0, 0.02) init throughout.
    _, nets = _nets(
        "vae", 28, 1, overrides=["model.arch=infogan", "model.latent_dim=64", "model.width=64"]
    )
    vae = nets.generator
    enc = (1 * 64 * 16 + 64) + (64 * 128 * 16 + 2 * 128) + (6272 * 1024 + 2 * 1024)
    dec = (64 * 1024 + 2 * 1024) + (1024 * 6272 + 2 * 6272) + (128 * 64 * 16 + 2 * 64)
    dec += 64 * 1 * 16 + 1
    assert _count(vae.encoder) == enc and _count(vae.decoder_net) == dec
    assert _count(vae.to_stats) == 1024 * 128 + 128
    acts = [
        type(m)
        for m in vae.decoder_net.modules()
        if isinstance(m, torch.nn.ReLU | torch.nn.LeakyReLU)
    ]
    assert acts == [torch.nn.ReLU] * 3
    assert abs(vae.to_stats.weight.std().item() - 0.02) < 0.004
    assert torch.count_nonzero(vae.to_stats.bias) == 0
    assert vae.decode_logits(torch.randn(2, 64)).shape == (2, 1, 28, 28)


def test_vae_mlp_parameter_count():
    _, nets = _nets("vae", 28, 1)
    expected = (784 * 500 + 500) + (500 * 40 + 40) + (20 * 500 + 500) + (500 * 784 + 784)
    assert _count(nets.generator) == expected and nets.names == {"vae"}


# model=ae: tests/test_ae.py (its model.noise is the denoising corruption, not the latent's);
# model=gmm, which has no latent: tests/test_gmm.py; model=ssgan, whose D gives class logits,
# model=bigan, whose D takes pairs, model=cyclegan, which translates images, and model=srresnet
# and srgan, which upscale them: tests/test_ssgan.py, tests/test_bigan.py, tests/test_cyclegan.py
# and tests/test_superres.py.
@pytest.mark.parametrize(
    "model",
    [
        *sorted(
            set(model_names()) - {"ae", "gmm", "ssgan", "bigan", "cyclegan", "srresnet", "srgan"}
        ),
        "dcgan-infogan",
        "wgan_gp-infogan",
        "vae-conv",
        "vae-infogan",
    ],
)
@pytest.mark.parametrize(("res", "ch"), [(16, 1), (28, 1), (32, 3), (48, 1), (64, 3)])
def test_output_shapes(model, res, ch):
    model, _, arch = model.partition("-")
    small = ["model.width=8", "model.g_hidden=[32]"] + (["model.d_hidden=[16]"] * (model != "vae"))
    cfg, nets = _nets(model, res, ch, overrides=[*small, *([f"model.arch={arch}"] if arch else [])])
    z = sample_noise(cfg.model, 4, torch.device("cpu"))
    x = nets.generator(z)
    assert x.shape == (4, ch, res, res)
    lo, hi = output_range(cfg.model.output)
    assert lo <= x.min().item() and x.max().item() <= hi
    if nets.discriminator is not None:
        nets.discriminator.eval()
        assert nets.discriminator(x).shape == (4,)


@pytest.mark.parametrize(
    ("noise", "scale"), [("normal", 1.0), ("uniform", 1.0), ("uniform", 3**0.5)]
)
def test_noise_distribution_and_scale(noise, scale):
    # uniform at sqrt(3) is the 2014 released code's unit-variance "uniform" noise.
    overrides = [f"model.noise={noise}", f"model.noise_scale={scale}"]
    cfg, _ = _nets("gan", 0, 2, 0, kind="points", overrides=overrides)
    z = sample_noise(cfg.model, 20000, torch.device("cpu"), torch.Generator().manual_seed(0))
    variance = scale**2 if noise == "normal" else scale**2 / 3
    assert z.var().item() == pytest.approx(variance, rel=0.02)
    assert z.mean().abs().item() < 0.01 * scale
    if noise == "uniform":
        assert -scale <= z.min().item() and z.max().item() <= scale
        assert z.abs().max().item() > 0.999 * scale


def test_gan_on_points():
    cfg, nets = _nets("gan", 0, 2, 0, kind="points")
    out = nets.generator(sample_noise(cfg.model, 5, torch.device("cpu")))
    assert out.shape == (5, 2)
    assert nets.discriminator(out).shape == (5,)


@pytest.mark.parametrize("model", ["dcgan", "gan", "wgan_gp", "dcgan-infogan"])
def test_conditional_models_use_the_label(model):
    model, _, arch = model.partition("-")
    overrides = ["model.conditional=true", "model.width=8", f"model.arch={arch or 'conv'}"]
    cfg, nets = _nets(model, 28, 1, overrides=overrides)
    torch.manual_seed(0)
    for net in (nets.generator, nets.discriminator):
        for p in net.parameters():  # leave no zero-initialised path unused
            torch.nn.init.normal_(p, 0, 0.1)
    z = sample_noise(cfg.model, 3, torch.device("cpu"))
    y0, y1 = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    nets.generator.eval()
    nets.discriminator.eval()
    assert not torch.allclose(nets.generator(z, y0), nets.generator(z, y1))
    x = nets.generator(z, y0)
    assert not torch.allclose(nets.discriminator(x, y0), nets.discriminator(x, y1))


@pytest.mark.parametrize(
    ("model", "res", "kind", "classes", "overrides", "match"),
    [
        ("dcgan", 36, "image", 10, [], "data.resolution=36"),
        ("dcgan", 0, "points", 0, [], "needs image data"),
        ("vae", 0, "points", 0, [], "needs image data"),
        ("dcgan", 28, "image", 0, ["model.conditional=true"], "needs class labels"),
        ("vae", 28, "image", 10, ["model.arch=rnn"], "model.arch"),
        ("wgan", 28, "image", 10, ["model.arch=mlp"], "not a network of model=wgan"),
        ("dcgan", 30, "image", 10, ["model.arch=infogan"], "multiple of 4"),
        ("vae", 28, "image", 10, ["model.likelihood=poisson"], "model.likelihood"),
    ],
)
def test_impossible_combinations(model, res, kind, classes, overrides, match):
    with pytest.raises(GanrunError, match=match):
        _nets(model, res, 2 if kind == "points" else 1, classes, overrides, kind)


def test_ema_tracks_the_average():
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, decay=0.5)
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(2.0)
    ema.update(net)
    assert torch.allclose(ema.model.weight, start + 1.0)
    assert not ema.model.weight.requires_grad


def test_vae_bounds_are_consistent():
    torch.manual_seed(0)
    _, nets = _nets("vae", 16, 1, overrides=["model.g_hidden=[32]"])
    vae = nets.generator
    x = torch.rand(6, 1, 16, 16).round()
    with torch.no_grad():
        elbo = torch.stack([vae.elbo(x) for _ in range(200)]).mean(0)
        iw = vae.importance_log_likelihood(x, k=400, chunk=64)
    assert iw.shape == (6,)
    assert (iw >= elbo - 0.5).all()  # the importance-weighted bound is the tighter one
    assert (iw < 0).all() and math.isfinite(iw.sum().item())


@pytest.mark.parametrize(
    "overrides",
    # The Gaussian mixture has no networks to shrink (TINY's keys), the semi-supervised GAN,
    # CycleGAN and the super-resolution models other ones: tests/test_gmm.py, test_ssgan.py,
    # test_cyclegan.py and test_superres.py run them.
    [
        [f"model={m}"]
        for m in group_options("model")
        if m not in ("gmm", "ssgan", "cyclegan", "srresnet", "srgan")
    ]
    + [
        ["model=dcgan", "model.conditional=true", "model.ema_decay=0.9"],
        ["model=gan", "data=ring", "data.num_points=2000", "data.valid_size=200"],
        ["model=vae", "model.arch=conv"],
        ["model=vae", "model.likelihood=gaussian"],
        ["model=wgan_gp", "model.conditional=true"],
        ["model=wgan_gp", "model.arch=infogan", "model.width=8"],
        ["model=vae", "model.arch=infogan", "model.width=8"],
    ],
    ids=lambda o: "-".join(v.split("=")[1] for v in o),
)
def test_every_model_trains_from_the_cli(cli, tmp_path, overrides):
    tiny = [o for o in TINY if not o.startswith("train.steps")] + [
        "train.steps=4",
        "model.g_hidden=[64]",
    ]
    code, out, err = cli("train", *tiny, *overrides, "hydra.run.dir=run", cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / "run/checkpoints/last.pt").is_file()
    assert list((tmp_path / "run/samples").glob("step_*.png"))
    if "model.arch=infogan" in overrides:
        assert " model.arch=infogan data=" in (tmp_path / "run/train.log").read_text()
    if "model=vae" in overrides:
        assert list((tmp_path / "run/samples").glob("recon_step_*.png"))
        assert (tmp_path / "run/metrics.csv").read_text().startswith("step,loss,recon,kl,")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["model=dcgan", "loss=wasserstein"], "needs a critic"),
        (["model=dcgan", "model.gp_weight=10"], "needs a critic"),
        (["model=dcgan", "model.conditional=true", "data=ring"], "needs image data"),
        (["model=dcgan", "data.resolution=36"], "data.resolution=36"),
        (["model=vae", "model.output=tanh"], "model.output=sigmoid"),
        (["model=vae", "model.conditional=true"], "no conditional variant"),
        (["model=vae", "model.noise=uniform"], "use model.noise=normal"),
        (["model=vae", "model.noise_scale=2"], "use model.noise_scale=1"),
        (["model=gan", "model.noise_scale=0"], "model.noise_scale=0.0 must be positive"),
        (["model=vae", "model.arch=gan"], "choose model.arch= one of: mlp, conv, infogan"),
        (["model=gan", "model.dropout_hidden=1.0"], "model.dropout_hidden"),
        (["model=wgan", "model.clip_value=-1"], "model.clip_value"),
        (["model=dcgan", "model.arch=mlp"], "choose model.arch= one of: conv, infogan"),
        (["model=wgan", "model.arch=infogan", "data.resolution=30"], "multiple of 4"),
    ],
)
def test_impossible_configs_fail_before_writing(cli, tmp_path, overrides, fragment):
    code, _, err = cli("train", *TINY, *overrides, "hydra.run.dir=run", cwd=tmp_path)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
    assert not (tmp_path / "run").exists()
