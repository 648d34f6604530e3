"""Super-resolution: model=srresnet and model=srgan (models/families/superres.py, srgan.py), their
networks (models/nets/srgan.py), metrics (metrics/superres.py) and ``ganrun sample``."""

from __future__ import annotations

import json
import math
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image

from ganrun.cli import main
from ganrun.config.schema import EvalConfig
from ganrun.errors import GanrunError
from ganrun.metrics import scoring
from ganrun.metrics import superres as superres_metrics
from ganrun.metrics.superres import Upscaled, luma, upscaled
from ganrun.models.families import superres
from ganrun.models.families.superres import VggContent, bicubic, downscale
from ganrun.models.nets.srgan import SRDiscriminator, SRResNet, check_scale
from ganrun.runs.checkpoint import restore
from ganrun.training.setup import build_setup
from tests.conftest import assert_one_line_error, checkpoint_tensors, composed
from tests.test_data import make_mnist

CPU = torch.device("cpu")
SMALL = [
    "data=mnist",
    "data.valid_size=0",
    "model.width=4",
    "model.blocks=1",
    "train.batch_size=4",
    "train.log_every=1",
    "train.sample_every=3",
    "train.checkpoint_every=3",
    "device=cpu",
]
D_SMALL = ["model.d_width=4", "model.d_dense=8"]


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    make_mnist(tmp_path / "data", n_train=40, n_test=20)
    return tmp_path / "data"


def _run(model: str, root: Path, steps: int, *extra: str) -> list[str]:
    more = D_SMALL if model == "srgan" else []
    return [f"model={model}", *SMALL, *more, f"data.root={root}", f"train.steps={steps}", *extra]


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ------------------------------------------------------------------------------------ networks
def _srresnet_parameters(c: int, w: int, blocks: int, scale: int) -> int:
    head = c * w * 81 + w + 1  # 9x9 convolution and a PReLU of one slope
    block = 2 * (w * w * 9 + w) + 2 * 2 * w + 1  # two convolutions, two BatchNorms, a PReLU
    join = w * w * 9 + w + 2 * w
    stage = w * 4 * w * 9 + 4 * w + 1
    tail = w * c * 81 + c
    return head + blocks * block + join + int(math.log2(scale)) * stage + tail


def _discriminator_parameters(c: int, w: int, dense: int, side: int) -> int:
    total = c * w * 9 + w
    have = w
    for multiple, stride in SRDiscriminator.LAYERS:
        total += have * multiple * w * 9 + multiple * w + 2 * multiple * w
        have = multiple * w
        side = (side - 1) // 2 + 1 if stride == 2 else side
    return total + have * side * side * dense + dense + dense + 1


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize(("res", "ch"), [(16, 1), (28, 1), (32, 3), (64, 3)])
def test_shapes_and_parameter_counts(res, ch, scale):
    g = SRResNet(ch, 8, 2, scale)
    lr = torch.rand(3, ch, res // scale, res // scale) * 2 - 1
    sr = g(lr)
    assert sr.shape == (3, ch, res, res) and sr.abs().max() <= 1
    assert _count(g) == _srresnet_parameters(ch, 8, 2, scale)
    d = SRDiscriminator(ch, 4, 16, res)
    assert d(sr).shape == (3,)
    assert _count(d) == _discriminator_parameters(ch, 4, 16, res)


def test_the_papers_sizes():
    # 64 channels, 16 blocks, 4x on RGB; D from 64 to 512 channels, 1024 dense units, 96 px crops.
    assert _count(SRResNet(3, 64, 16, 4)) == _srresnet_parameters(3, 64, 16, 4) == 1_549_462
    d = SRDiscriminator(3, 64, 1024, 96)
    assert _count(d) == _discriminator_parameters(3, 64, 1024, 96)
    assert d.head[1].in_features == 512 * 6 * 6


@pytest.mark.parametrize(("scale", "res", "fragment"), [(3, 24, "2 or 4"), (4, 30, "multiple")])
def test_scale_refusals(scale, res, fragment):
    with pytest.raises(GanrunError, match=fragment):
        check_scale(scale, res)


# ------------------------------------------------------------------------------- degradation
def test_low_resolution_inputs_are_antialiased_bicubic():
    hr = torch.rand(2, 1, 28, 28) * 2 - 1
    lr = downscale(hr, 4, (-1.0, 1.0))
    expected = F.interpolate(hr, size=(7, 7), mode="bicubic", antialias=True, align_corners=False)
    assert torch.allclose(lr, expected.clamp(-1, 1))
    flat = torch.full((1, 3, 32, 32), 0.25)
    assert torch.allclose(downscale(flat, 2, (-1.0, 1.0)), torch.full((1, 3, 16, 16), 0.25))
    assert torch.allclose(bicubic(torch.full((1, 3, 8, 8), 0.25), 4, (-1.0, 1.0)), flat)


def test_luma_is_bt601_with_the_border_cropped():
    white = torch.full((1, 3, 12, 12), 255, dtype=torch.uint8)
    black = torch.zeros((1, 3, 12, 12), dtype=torch.uint8)
    assert torch.allclose(luma(white, 2), torch.full((1, 1, 8, 8), 235 / 255, dtype=torch.float64))
    assert torch.allclose(luma(black, 2), torch.full((1, 1, 8, 8), 16 / 255, dtype=torch.float64))
    gray = torch.arange(144, dtype=torch.uint8).view(1, 1, 12, 12)
    assert torch.equal(luma(gray, 4), gray[..., 4:8, 4:8].double() / 255)


# ---------------------------------------------------------------------------- content losses
def _vgg_file(tmp_path: Path, layers: int) -> Path:
    """A torchvision VGG19 state dict, random weights, only the first ``layers`` layers."""
    from torchvision.models import vgg19

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg19().features[:layers].state_dict().items()}
    torch.save(state, tmp_path / "vgg.pth")
    return tmp_path / "vgg.pth"


def test_vgg_content_is_the_papers_rescaled_feature_mse(tmp_path):
    from torchvision.models import vgg19

    path = _vgg_file(tmp_path, 9)
    loss = VggContent("2_2", str(path))
    a, b = torch.rand(2, 1, 16, 16) * 2 - 1, torch.rand(2, 1, 16, 16) * 2 - 1
    phi = vgg19().features[:9]
    phi.load_state_dict({k[len("features.") :]: v for k, v in torch.load(path).items()})
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def features(x: torch.Tensor) -> torch.Tensor:
        return phi((((x + 1) / 2).expand(-1, 3, -1, -1) - mean) / std) / 12.75

    assert torch.allclose(loss(a, b), F.mse_loss(features(a), features(b)), rtol=1e-5)
    a.requires_grad_(True)
    loss(a, b).backward()
    assert a.grad is not None and all(not p.requires_grad for p in loss.parameters())
    with pytest.raises(GanrunError, match="lack features.10.weight"):
        VggContent("5_4", str(path))


def test_vgg_offline_without_weights_names_the_setting(cli, tmp_path, mnist_root, monkeypatch):
    from torchvision.models import VGG19_Weights

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(type(VGG19_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    run = _run("srresnet", mnist_root, 2, "model.content=vgg", "hydra.run.dir=r")
    assert_one_line_error(cli("train", *run, cwd=tmp_path), "model.vgg_weights=")
    assert not (tmp_path / "r/checkpoints").exists()


# -------------------------------------------------------------------------------- end to end
def test_srresnet_trains_resumes_samples_and_upscales_a_folder(cli, tmp_path, mnist_root):
    full = _run("srresnet", mnist_root, 6, "hydra.run.dir=full")
    code, _, err = cli("train", *full, cwd=tmp_path)
    assert code == 0, err
    part = _run("srresnet", mnist_root, 3, "hydra.run.dir=part")
    assert cli("train", *part, cwd=tmp_path)[0] == 0
    resumed = _run("srresnet", mnist_root, 6, "resume=auto", "hydra.run.dir=part")
    assert cli("train", *resumed, cwd=tmp_path)[0] == 0
    a = checkpoint_tensors(tmp_path / "full/checkpoints/last.pt")
    b = checkpoint_tensors(tmp_path / "part/checkpoints/last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Rows of 8: low resolution (enlarged), bicubic, the model's, the originals.
    grid = Image.open(tmp_path / "full/samples/step_000006.png")
    assert grid.size[0] // 2 == pytest.approx(grid.size[1], abs=8)

    ckpt = f"checkpoint={tmp_path / 'full/checkpoints/last.pt'}"
    code, out, err = cli("sample", ckpt, "n=3", "sample.format=npz", "out=s.npz", cwd=tmp_path)
    assert code == 0, err
    with np.load(tmp_path / "s.npz") as saved:
        shapes = {k: saved[k].shape for k in saved.files}
    assert shapes == {
        "lr": (3, 7, 7, 1),
        "bicubic": (3, 28, 28, 1),
        "sr": (3, 28, 28, 1),
        "hr": (3, 28, 28, 1),
        "samples": (12, 28, 28, 1),
    }

    (tmp_path / "mine").mkdir()
    Image.fromarray(np.full((10, 6, 3), 200, dtype=np.uint8)).save(tmp_path / "mine/rgb.png")
    code, out, err = cli("sample", ckpt, "input=mine", "out=up", cwd=tmp_path)
    assert code == 0, err
    assert "1 image(s) of mine upscaled 4x" in out
    image = Image.open(tmp_path / "up/rgb.png")
    assert image.size == (24, 40) and image.mode == "L"  # 4x its own size, the model's channels
    result = cli("sample", ckpt, "input=mine", "out=up", "sample.direction=ba", cwd=tmp_path)
    assert_one_line_error(result, "sample.direction=ba is for translation models")


def _eval_config(**overrides: object) -> OmegaConf:
    base = OmegaConf.structured(EvalConfig)
    return OmegaConf.merge(base, {"metrics": ["psnr", "ssim", "sr_acc", "sr_fid"], **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """An srresnet checkpoint of three steps on MNIST fixtures with 150 test images."""
    root = tmp_path_factory.mktemp("superres")
    make_mnist(root / "data", n_train=40, n_test=150)
    assert main(["train", *_run("srresnet", root / "data", 3), f"hydra.run.dir={root / 'r'}"]) == 0
    return root / "r/checkpoints/last.pt"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch) -> None:
    # One cache for the module: the MNIST fixture's classifier is trained once.
    monkeypatch.setenv("GANRUN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "srcache"))


def test_scores_against_the_bicubic_baseline(cli, tmp_path, trained):
    code, _, err = cli("eval", f"checkpoint={trained}", "eval=superres", cwd=tmp_path)
    assert code == 0, err
    saved = trained.parent.parent / "eval/last/metrics.json"
    record = json.loads(saved.read_text())["results"]["superres"]
    values, protocol = record["metrics"], record["protocol"]
    assert protocol["psnr"]["border_cropped"] == 4 and protocol["psnr"]["compared"] == "pixels"
    assert protocol["sr_acc"]["feature_extractor"] == "mnist_cnn"

    # PSNR by hand: per image on the cropped uint8 pixels, then averaged.
    snapshot = restore(trained, CPU)
    job = scoring.plan(snapshot, _eval_config(), CPU)
    u = upscaled(job.ctx)
    sr, hr, base = torch.cat(u.sr), torch.cat(u.hr), torch.cat(u.bicubic)
    assert sr.dtype == torch.uint8 and sr.shape == (150, 1, 28, 28)
    mse = ((luma(sr, 4) - luma(hr, 4)) ** 2).mean(dim=(1, 2, 3))
    assert values["psnr"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), rel=1e-6)
    mse = ((luma(base, 4) - luma(hr, 4)) ** 2).mean(dim=(1, 2, 3))
    assert values["bicubic_psnr"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()))
    assert -1 <= values["ssim"] <= 1 and 0 <= values["sr_acc"] <= 1


def test_psnr_and_ssim_of_known_images(trained):
    """Flat gray images: PSNR is 10 log10(1 / d^2) for a difference d, and SSIM reduces to its
    luminance term (2 a b + C1) / (a^2 + b^2 + C1), C1 = (0.01 x range)^2, since nothing varies."""
    snapshot = restore(trained, CPU)
    job = scoring.plan(snapshot, _eval_config(metrics=["psnr", "ssim"]), CPU)

    def flat(value: int) -> torch.Tensor:
        return torch.full((2, 1, 28, 28), value, dtype=torch.uint8)

    flats = Upscaled([flat(128)], [flat(64)], [flat(128)], None, {"reference_split": "test"})
    job.ctx.shared("upscaled", lambda: flats)
    a, b = 128 / 255, 64 / 255
    psnr, protocol = superres_metrics.psnr(job.ctx)
    assert psnr["psnr"] == pytest.approx(10 * math.log10(1 / (a - b) ** 2))
    assert psnr["bicubic_psnr"] == math.inf  # bicubic "recovered" the originals exactly
    assert protocol["num_real"] == 2 and protocol["units"] == "dB"
    ssim, _ = superres_metrics.ssim(job.ctx)
    assert ssim["ssim"] == pytest.approx((2 * a * b + 1e-4) / (a * a + b * b + 1e-4), rel=1e-5)
    assert ssim["bicubic_ssim"] == pytest.approx(1.0)


def test_sr_images_scores_a_folder_at_its_own_sizes(cli, tmp_path, trained):
    """Set5-style: images of several sizes, each cropped to a multiple of the scale and scored
    whole; PSNR again by hand for one of them."""
    bench = tmp_path / "set"
    bench.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)).save(bench / "a.png")
    Image.fromarray(rng.integers(0, 256, (36, 36), dtype=np.uint8)).save(bench / "b.png")
    args = [f"checkpoint={trained}", "eval.metrics=[psnr,ssim]", f"eval.sr_images={bench}"]
    code, _, err = cli("eval", *args, "eval.name=set", cwd=tmp_path)
    assert code == 0, err
    saved = trained.parent.parent / "eval/last/metrics.json"
    record = json.loads(saved.read_text())["results"]["set"]
    protocol = record["protocol"]["psnr"]
    assert protocol["num_real"] == 2 and protocol["reference_folder"] == str(bench)
    assert len(protocol["reference_sha256"]) == 64 and "reference_split" not in protocol

    snapshot = restore(trained, CPU)
    cfg = _eval_config(metrics=["psnr"], sr_images=str(bench))
    u = upscaled(scoring.plan(snapshot, cfg, CPU).ctx)
    assert [tuple(x.shape) for x in u.hr] == [(1, 1, 28, 40), (1, 1, 36, 36)]
    per_image = [
        10 * torch.log10(1 / ((luma(sr, 4) - luma(hr, 4)) ** 2).mean())
        for sr, hr in zip(u.sr, u.hr, strict=True)
    ]
    expected = float(sum(per_image) / 2)
    assert record["metrics"]["psnr"] == pytest.approx(expected, rel=1e-6)

    result = cli("eval", *args[:1], "eval=superres", f"eval.sr_images={bench}", cwd=tmp_path)
    assert_one_line_error(result, "eval.sr_images has no labels", "eval.metrics=[psnr,ssim]")
    Image.fromarray(np.zeros((12, 40), dtype=np.uint8)).save(bench / "small.png")
    assert_one_line_error(cli("eval", *args, cwd=tmp_path), "small.png is 12x40", "too small")


def test_a_model_that_is_bicubic_scores_the_baseline(trained):
    snapshot = restore(trained, CPU)
    model = snapshot.model
    model.upscale = lambda lr: bicubic(lr, 4, (-1.0, 1.0))  # type: ignore[method-assign]
    values = scoring.score(scoring.plan(snapshot, _eval_config(), CPU), _eval_config())["metrics"]
    for name in ("psnr", "ssim", "sr_acc", "sr_fid"):
        assert values[name] == values[f"bicubic_{name}"], name


def test_metric_refusals(cli, tmp_path, trained):
    base = [f"checkpoint={trained}", "eval=superres"]
    result = cli("eval", *base, "eval.test_examples=50", cwd=tmp_path)
    assert_one_line_error(result, "sr_fid needs at least 128 test images")
    # 16 px at 4x leaves 8x8 once the border is cropped: SSIM's 11x11 window does not fit.
    data = trained.parent.parent.parent / "data"
    run = _run("srresnet", data, 1, "data.resolution=16", "hydra.run.dir=s16")
    assert cli("train", *run, cwd=tmp_path)[0] == 0
    result = cli("eval", "checkpoint=s16/checkpoints/last.pt", "eval=superres", cwd=tmp_path)
    assert_one_line_error(result, "window does not fit", "drop ssim")


def test_srgan_starts_from_an_srresnet_and_trains(cli, tmp_path, trained):
    data = trained.parent.parent.parent / "data"
    with composed(_run("srgan", data, 2, f"model.init_from={trained}")) as cfg:
        setup = build_setup(cfg)
    source = restore(trained, CPU).model.networks["generator"].state_dict()
    started = setup.model.networks["generator"].state_dict()
    assert all(torch.equal(source[k], started[k]) for k in source)

    run = _run("srgan", data, 4, f"model.init_from={trained}", "hydra.run.dir=g")
    code, _, err = cli("train", *run, cwd=tmp_path)
    assert code == 0, err
    header = (tmp_path / "g/metrics.csv").read_text().splitlines()[0]
    assert header == "step,content,loss_g,loss_d,d_real,d_fake,sec_per_step"
    code, _, err = cli("eval", "checkpoint=g/checkpoints/last.pt", "eval=superres", cwd=tmp_path)
    assert code == 0, err


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["model.scale=3"], ["model.scale=3 must be 2 or 4"]),
        (["data.resolution=30"], ["data.resolution=30", "multiple of model.scale=4"]),
        (["model.content=l1"], ["model.content"]),
        (["model.init_from=nowhere.pt"], ["model.init_from=nowhere.pt does not exist"]),
        (["model.width=8"], ["does not fit this one"]),
        (["model.d_dense=0"], ["model.d_dense=0"]),
    ],
)
def test_srgan_refusals(cli, tmp_path, trained, overrides, fragments):
    init = [f"model.init_from={trained}"] * ("init_from" not in overrides[0])
    data = trained.parent.parent.parent / "data"
    result = cli("train", *_run("srgan", data, 2, *init, *overrides), cwd=tmp_path)
    assert_one_line_error(result, *fragments)


def test_content_loss_falls_on_real_digits(cli, tmp_path):
    """Real learning (scikit-learn's digits at 16 px, 2x): the content loss of the last steps is
    clearly below the first steps'."""
    run = [
        "model=srresnet",
        "data=digits",
        "model.scale=2",
        "model.width=8",
        "model.blocks=1",
        "optim.lr=1e-3",
        "train.batch_size=16",
        "train.steps=80",
        "train.log_every=1",
        "train.sample_every=80",
        "device=cpu",
        "hydra.run.dir=r",
    ]
    assert cli("train", *run, cwd=tmp_path)[0] == 0
    lines = (tmp_path / "r/metrics.csv").read_text().splitlines()[1:]
    content = [float(line.split(",")[1]) for line in lines]
    first, last = sum(content[:5]) / 5, sum(content[-5:]) / 5
    assert last < 0.5 * first, (first, last)


def test_family_has_its_own_statistics():
    assert [s.name for s in superres.FAMILY.statistics] == ["content"]


def test_the_srgan_preset_needs_the_srresnet_it_starts_from(cli, tmp_path):
    result = cli("train", "experiment=srgan_mnist", "device=cpu", cwd=tmp_path)
    assert_one_line_error(result, "model.init_from")
