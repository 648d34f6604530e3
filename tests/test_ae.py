"""model=ae: the corruptions, losses and sparse penalty against hand-computed values, the running
code Gaussian and its factor, the priors of ``ganrun sample``, a short run that learns, and every
variant trained, resumed bit for bit, sampled and scored from the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganrun.data import build_data
from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError
from ganrun.models import build_model
from ganrun.models.families import ae
from ganrun.runs.checkpoint import load_checkpoint, restore
from tests.conftest import TINY, assert_one_line_error, checkpoint_tensors, composed

CPU = torch.device("cpu")
INFO = DataInfo("test", 1, 16, 10, (0.0, 1.0))


def _model(*overrides: str, info: DataInfo = INFO):
    """A built and configured autoencoder (g_hidden=[32]) and its run config."""
    with composed(["model=ae", "model.g_hidden=[32]", "model.width=8", *overrides]) as cfg:
        model = build_model(cfg.model, info)
        model.configure_training(cfg, fused=False)
        return model, cfg


class _Batches:
    """The one batch ``x`` over and over, as the trainer's sampler would hand it out."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def batch(self, n: int) -> tuple[torch.Tensor, None]:
        return self.x[:n], None


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize(("res", "ch"), [(16, 1), (28, 1), (32, 3), (48, 1), (64, 3)])
@pytest.mark.parametrize("output", ["sigmoid", "tanh"])
def test_output_shapes_and_ranges(arch, res, ch, output):
    low, high = (0.0, 1.0) if output == "sigmoid" else (-1.0, 1.0)
    info = DataInfo("test", ch, res, 10, (low, high))
    model, _ = _model(f"model.arch={arch}", f"model.output={output}", info=info)
    with model.evaluating():  # as scoring draws them: BatchNorm's running statistics
        samples = model.generate(5, seed=0, batch_size=2)
        again = model.generate(5, seed=0, batch_size=5)
    assert samples.shape == (5, ch, res, res)
    assert low <= samples.min().item() and samples.max().item() <= high
    assert torch.allclose(again, samples, atol=1e-5)  # the same draws, whatever the batch size
    x = torch.rand(3, ch, res, res) * (high - low) + low
    assert model.reconstruct(x).shape == x.shape


# ------------------------------------------------------------------------- corruption, losses
@pytest.mark.parametrize(("value_range", "std"), [((0.0, 1.0), 0.2), ((-1.0, 1.0), 0.4)])
def test_gaussian_noise_has_the_requested_std_in_unit_range_units(value_range, std):
    x = torch.full((400, 1, 16, 16), 0.25)
    noisy = ae.corrupt(x, "gaussian", 0.2, value_range, torch.Generator().manual_seed(0))
    assert (noisy - x).std().item() == pytest.approx(std, rel=0.02)
    assert (noisy - x).mean().abs().item() < 0.01
    again = ae.corrupt(x, "gaussian", 0.2, value_range, torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)  # seeded


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_masking_sets_the_requested_fraction_of_pixels_to_the_low_value(value_range):
    low, high = value_range
    x = torch.full((200, 3, 16, 16), high)
    masked = ae.corrupt(x, "masking", 0.3, value_range, torch.Generator().manual_seed(1))
    hit = masked == low
    assert hit.float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert torch.equal(hit.all(1), hit.any(1))  # a pixel's channels go together
    assert torch.equal(masked[~hit], x[~hit])
    again = ae.corrupt(x, "masking", 0.3, value_range, torch.Generator().manual_seed(1))
    assert torch.equal(masked, again)


def test_reconstruction_losses_match_hand_computed_values():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 0.5]]]])
    x = torch.tensor([[[[1.0, 0.0], [0.25, 1.0]]]])
    p = torch.sigmoid(logits)
    bce = -(x * p.log() + (1 - x) * (1 - p).log()).sum()
    got = ae.reconstruction_loss(logits, x, "bce", "sigmoid")
    assert got.shape == (1,) and got.item() == pytest.approx(bce.item(), rel=1e-6)
    mse = ((p - x) ** 2).sum()
    assert ae.reconstruction_loss(logits, x, "mse", "sigmoid").item() == pytest.approx(mse.item())
    t = torch.tanh(logits)
    x2 = x * 2 - 1
    mse_tanh = ((t - x2) ** 2).sum()
    assert ae.reconstruction_loss(logits, x2, "mse", "tanh").item() == pytest.approx(
        mse_tanh.item()
    )


@pytest.mark.parametrize(
    ("overrides", "weight"),
    [
        (["model.variant=sparse", "model.sparsity=0.05"], 0.05),
        (["model.variant=sparse"], ae.SPARSITY),
        (["model.variant=plain"], 0.0),
        (["model.variant=denoising", "model.noise=masking"], 0.0),
        (["model.variant=denoising", "model.output=tanh", "model.arch=conv"], 0.0),
    ],
)
def test_training_step_returns_its_terms_computed_by_hand(overrides, weight):
    torch.manual_seed(0)
    model, cfg = _model(*overrides)
    net = model.networks[ae.NET]
    x = torch.rand(cfg.train.batch_size, 1, 16, 16)
    if model.cfg.output == "tanh":
        x = x * 2 - 1
    noise = torch.Generator().manual_seed(5)
    # What the step will see, computed first from copies of the weights and of the noise.
    inputs = x
    if model.noise_kind is not None:
        copy = torch.Generator().set_state(noise.get_state())
        level = ae.NOISE_LEVELS[model.noise_kind]
        inputs = ae.corrupt(x, model.noise_kind, level, INFO.value_range, copy)
    with torch.no_grad():
        code = net.encode(inputs)
        out = net.decode(code)
    if model.recon_loss == "bce":
        recon = -(x * out.log() + (1 - x) * (1 - out).log()).flatten(1).sum(1).mean()
    else:
        recon = (out - x).pow(2).flatten(1).sum(1).mean()
    l1 = sum(code[i].abs().sum() for i in range(code.shape[0])) / code.shape[0]
    stats = model.training_step(_Batches(x), noise)
    assert set(stats) == {"loss", "recon", "sparsity"}
    assert stats["recon"].item() == pytest.approx(recon.item(), rel=1e-4)
    assert stats["sparsity"].item() == pytest.approx(weight * l1.item(), rel=1e-4)
    assert stats["loss"].item() == pytest.approx((stats["recon"] + stats["sparsity"]).item())
    assert (model.sparsity, model.recon_loss) == (
        weight,
        "mse" if "tanh" in str(overrides) else "bce",
    )
    assert int(net.code_batches) == 1


# -------------------------------------------------------------------------- the code Gaussian
def test_running_code_gaussian_converges_to_the_codes_mean_and_covariance():
    torch.manual_seed(0)
    model, _ = _model("model.latent_dim=6")
    net = model.networks[ae.NET].eval()
    data = torch.rand(3000, 1, 16, 16)
    with torch.no_grad():
        codes = net.encode(data)  # a fixed encoder: the same data, the same codes
        order = torch.Generator().manual_seed(0)
        for _ in range(1500):
            net.track_codes(codes[torch.randint(0, 3000, (64,), generator=order)])
    scale = codes.var(0).mean().item()
    assert torch.allclose(net.code_mean, codes.mean(0), atol=0.03 * scale**0.5)
    assert torch.allclose(net.code_cov, torch.cov(codes.T), atol=0.05 * scale)
    assert int(net.code_batches) == 1500


def test_running_statistics_start_from_the_first_batch_then_move_by_the_momentum():
    model, _ = _model("model.latent_dim=3")
    net = model.networks[ae.NET]
    batch = torch.randn(10, 3) * 2 + 1
    net.track_codes(batch)  # the initial N(0, I) is forgotten at once
    assert torch.allclose(net.code_mean, batch.mean(0))
    assert torch.allclose(net.code_cov, torch.cov(batch.T), atol=1e-6)
    net.code_batches.fill_(1000)
    old_mean, old_cov = net.code_mean.clone(), net.code_cov.clone()
    other = torch.randn(10, 3)
    net.track_codes(other)
    m = ae.CODE_MOMENTUM
    assert torch.allclose(net.code_mean, (1 - m) * old_mean + m * other.mean(0), atol=1e-6)
    assert torch.allclose(net.code_cov, (1 - m) * old_cov + m * torch.cov(other.T), atol=1e-6)


def test_cholesky_factor_of_singular_and_broken_covariances():
    a = torch.randn(5, 5, dtype=torch.float64)
    cov = a @ a.T + torch.eye(5, dtype=torch.float64)
    # Exactly symmetric: a @ a.T need not be, depending on the BLAS kernel (seen under load),
    # and cholesky_factor symmetrises what it is given.
    cov = 0.5 * (cov + cov.T)
    assert torch.equal(ae.cholesky_factor(cov), torch.linalg.cholesky(cov))  # no jitter needed
    v = torch.tensor([[1.0, 2.0, 0.0, 0.0]])  # rank one, and two unused dimensions
    singular = v.T @ v
    factor = ae.cholesky_factor(singular)
    assert torch.allclose(factor @ factor.T, singular.double(), atol=1e-4)
    with pytest.raises(GanrunError, match="not finite"):
        ae.cholesky_factor(torch.full((3, 3), float("nan")))


def test_priors_map_standard_normal_draws_to_their_codes():
    model, _ = _model("model.latent_dim=3")
    net = model.networks[ae.NET]
    mean = torch.tensor([1.0, -2.0, 0.5])
    a = torch.tensor([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.0, -1.0, 0.3]])
    net.code_mean.copy_(mean)
    net.code_cov.copy_(a @ a.T)
    z = torch.randn(50000, 3, generator=torch.Generator().manual_seed(0))
    codes = net.codes(z)
    assert torch.allclose(codes.mean(0), mean, atol=0.05)
    assert torch.allclose(torch.cov(codes.T), a @ a.T, atol=0.08)
    model.use_prior("normal")
    assert torch.equal(net.codes(z), z) and model.prior == "normal"
    with pytest.raises(GanrunError, match="sample.prior=uniform is not a prior of model=ae"):
        model.use_prior("uniform")


def test_figures_show_samples_then_inputs_above_reconstructions():
    for variant, blocks in (("plain", 2), ("denoising", 3)):
        model, cfg = _model(f"model.variant={variant}", "train.num_samples=16")
        data = build_data(cfg.data, model.info.value_range, CPU)
        grids = model.figures(7, data)
        assert [g.name for g in grids] == ["step_000007", "recon_step_000007"]
        assert grids[0].images.shape == (16, 1, 16, 16)
        assert grids[1].images.shape == (blocks * ae.RECONSTRUCTED, 1, 16, 16)
        shown = data.split("valid").all()[0][: ae.RECONSTRUCTED]
        assert torch.equal(grids[1].images[: ae.RECONSTRUCTED], shown)
        assert torch.equal(model.figures(7, data)[0].images, grids[0].images)  # fixed draws
        assert model.networks[ae.NET].training  # left as it was


# ------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize(
    "overrides",
    [
        ["model.variant=plain", "model.ema_decay=0.9"],
        ["model.variant=denoising", "model.noise=masking", "model.arch=conv"],
        ["model.variant=denoising", "model.arch=conv", "model.output=tanh"],
        ["model.variant=sparse", "model.sparsity=0.5"],
    ],
    ids=["plain-mlp-ema", "denoising-masking-conv", "denoising-gaussian-conv-tanh", "sparse-mlp"],
)
def test_each_variant_trains_and_resumes_bit_for_bit(cli, tmp_path, overrides):
    run = [*TINY, "model=ae", "model.g_hidden=[32]", "train.grid_min_width=0", *overrides]
    code, out, err = cli("train", *run, "hydra.run.dir=full", cwd=tmp_path)
    assert code == 0, err
    full = tmp_path / "full"
    with (full / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "loss", "recon", "sparsity", "sec_per_step"]
    sparse = "model.variant=sparse" in overrides
    assert all((float(r["sparsity"]) > 0) == sparse for r in rows)
    assert sorted(p.name for p in (full / "samples").iterdir()) == [
        "recon_step_000003.png",
        "recon_step_000006.png",
        "step_000003.png",
        "step_000006.png",
    ]
    rows_of_recon = Image.open(full / "samples/recon_step_000006.png").height // 18
    assert rows_of_recon == (12 if "model.variant=denoising" in overrides else 8)
    ckpt = load_checkpoint(full / "checkpoints/last.pt")
    assert ckpt["family"] == "ae" and int(ckpt["networks"]["autoencoder"]["code_batches"]) == 6
    if ckpt["averages"]:  # the EMA copy carries the fitted Gaussian too
        assert torch.equal(
            ckpt["averages"]["autoencoder"]["code_cov"], ckpt["networks"]["autoencoder"]["code_cov"]
        )

    half = [o for o in run if not o.startswith("train.steps")] + ["train.steps=3"]
    assert cli("train", *half, "hydra.run.dir=part", cwd=tmp_path)[0] == 0
    code, _, err = cli("train", *run, "resume=auto", "hydra.run.dir=part", cwd=tmp_path)
    assert code == 0, err
    a, b = (
        checkpoint_tensors(full / "checkpoints/last.pt"),
        checkpoint_tensors(tmp_path / "part/checkpoints/last.pt"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def learned(cli, tmp_path_factory) -> Path:
    """250 steps of the plain MLP autoencoder on digits (a few seconds), trained once."""
    run = tmp_path_factory.getbasetemp() / "ae-learned"
    if not (run / "checkpoints/last.pt").is_file():
        args = ["model=ae", "model.g_hidden=[128]", "train.batch_size=64", "device=cpu"]
        steps = ["train.steps=250", "train.log_every=50", "train.sample_every=250"]
        code, _, err = cli("train", *args, *steps, f"hydra.run.dir={run}", cwd=run.parent)
        assert code == 0, err
    return run


def test_a_few_hundred_steps_learn_to_reconstruct_digits(learned):
    with (learned / "metrics.csv").open(newline="") as f:
        recon = [float(r["recon"]) for r in csv.DictReader(f)]
    first, last = np.mean(recon[:10]), np.mean(recon[-10:])
    assert last < 0.65 * first, (first, last)
    # The fitted Gaussian is the codes', not N(0, I) any more; it trails the encoder by about
    # 1 / CODE_MOMENTUM steps, in which the codes still spread out.
    snapshot = restore(learned / "checkpoints/last.pt", CPU)
    net = snapshot.model.network(ae.NET)
    x, _ = snapshot.data.split("train").all()
    with torch.no_grad():
        codes = net.encode(x)
    mean, cov = codes.mean(0), torch.cov(codes.T)
    assert (net.code_mean - mean).norm() < 0.2 * mean.norm()
    assert (net.code_cov - cov).norm() < 0.5 * (torch.eye(20) - cov).norm()


def test_sample_priors_and_recon_mse(cli, learned, tmp_path, monkeypatch):
    ckpt = learned / "checkpoints/last.pt"
    drawn = {}
    for prior in (None, "fitted", "normal"):
        args = [f"checkpoint={ckpt}", "n=16", "sample.format=npz", "device=cpu"]
        if prior:
            args.append(f"sample.prior={prior}")
        code, out, err = cli("sample", *args, cwd=tmp_path)
        assert code == 0, err
        assert f"(codes from the {prior or 'fitted'} prior)" in out
        name = f"last_n16{'' if prior is None else f'_prior-{prior}'}_seed0.npz"
        drawn[prior] = np.load(learned / "generated" / name)
    assert np.array_equal(drawn[None]["samples"], drawn["fitted"]["samples"])  # the default
    assert np.array_equal(drawn["fitted"]["z"], drawn["normal"]["z"])  # the same draws ...
    assert not np.array_equal(drawn["fitted"]["samples"], drawn["normal"]["samples"])  # ...
    assert np.allclose(drawn["normal"]["codes"], drawn["normal"]["z"])  # N(0, I): codes = z
    code, out, err = cli(
        "sample",
        f"checkpoint={ckpt}",
        "n=8",
        "sample.interpolate=true",
        "sample.steps=4",
        "sample.prior=normal",
        "device=cpu",
        cwd=tmp_path,
    )
    assert code == 0 and (learned / "generated/last_interp_prior-normal_seed0.png").is_file(), err

    monkeypatch.setenv("GANRUN_CACHE_DIR", str(tmp_path / "cache"))
    code, out, err = cli(
        "eval",
        f"checkpoint={ckpt}",
        "eval=paper",
        "eval.metrics=[recon_mse,parzen]",
        "eval.parzen_samples=300",
        "eval.parzen_chunk=64",
        "device=cpu",
        cwd=tmp_path,
    )
    assert code == 0, err
    record = json.loads((learned / "eval/last/metrics.json").read_text())["results"]["paper"]
    values = record["metrics"]
    assert 0 < values["recon_mse"] < 0.03 and values["recon_mse_se"] > 0
    assert record["protocol"]["recon_mse"]["num_real"] == 150
    assert np.isfinite(values["parzen_ll"])
    # recon_mse is the model's own reconstructions' squared error, pixels in [0, 1]
    snapshot = restore(ckpt, CPU)
    x, _ = snapshot.data.split("test").all()
    direct = (snapshot.model.reconstruct(x) - x).pow(2).mean().item()
    assert values["recon_mse"] == pytest.approx(direct, rel=1e-4)


def test_sample_prior_refusals(cli, learned, tmp_path):
    ckpt = learned / "checkpoints/last.pt"
    before = sorted((learned / "generated").glob("*")) if (learned / "generated").exists() else []
    for prior, fragment in (
        ("uniform", "sample.prior=uniform is not a prior of model=ae; choose one of: fitted"),
        ("a/b", "sample.prior='a/b' is not a prior's name"),
    ):
        result = cli("sample", f"checkpoint={ckpt}", f"sample.prior={prior}", cwd=tmp_path)
        assert_one_line_error(result, fragment)
    after = sorted((learned / "generated").glob("*")) if (learned / "generated").exists() else []
    assert after == before

    # A GAN has one prior: refused in one line, nothing written.
    gan = [*TINY, "model=dcgan", "train.steps=1", "hydra.run.dir=gan"]
    assert cli("train", *gan, cwd=tmp_path)[0] == 0
    result = cli(
        "sample", "checkpoint=gan/checkpoints/last.pt", "sample.prior=normal", cwd=tmp_path
    )
    assert_one_line_error(result, "model=dcgan draws from one prior only; drop sample.prior")
    assert not (tmp_path / "gan/generated").exists()


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["model.variant=contractive"], "model.variant=contractive is not one of: plain"),
        (["model.arch=infogan"], "model.arch=infogan is not one of: mlp, conv"),
        (["model.output=relu"], "model.output=relu is not one of"),
        (["model.loss=l1"], "model.loss=l1 is not one of: auto, bce, mse"),
        (["model.prior=uniform"], "model.prior=uniform is not one of: fitted, normal"),
        (["model.output=tanh", "model.loss=bce"], "model.loss=bce needs model.output=sigmoid"),
        (["model.latent_dim=0"], "model.latent_dim=0 must be at least 1"),
        (["model.variant=denoising", "model.noise=salt"], "model.noise=salt is not one of"),
        (["model.variant=denoising", "model.noise_level=0"], "must be a positive standard dev"),
        (
            ["model.variant=denoising", "model.noise=masking", "model.noise_level=1"],
            "model.noise_level=1.0 is the fraction of pixels masked: it must be in (0, 1)",
        ),
        (["model.noise=masking"], "model.noise=masking applies to model.variant=denoising only"),
        (["model.noise_level=0.2"], "model.noise_level=0.2 applies to model.variant=denoising"),
        (["model.variant=sparse", "model.sparsity=-1"], "model.sparsity=-1.0 must be a non-neg"),
        (["model.sparsity=0.1"], "model.sparsity=0.1 applies to model.variant=sparse only"),
        (["model.conditional=true"], "model=ae has no conditional variant"),
        (["train.batch_size=1"], "train.batch_size=1 must be at least 2"),
        (["model.noise_scale=2"], "noise_scale"),  # a GAN key: the schema refuses it
        (["data=ring"], "model=ae needs image data"),
    ],
)
def test_bad_settings_are_refused_in_one_line_before_writing(cli, tmp_path, overrides, fragment):
    args = [*TINY, "model=ae", *overrides, "hydra.run.dir=r"]
    result = cli("train", *args, cwd=tmp_path)
    if "noise_scale" in fragment:  # Hydra's own message for an unknown key
        assert result[0] == 2 and fragment in result[2]
    else:
        assert_one_line_error(result, fragment)
    assert not (tmp_path / "r").exists()


def test_build_refuses_what_the_checks_refuse():
    with pytest.raises(GanrunError, match="model.loss=bce needs model.output=sigmoid"):
        _model("model.output=tanh", "model.loss=bce")
    with pytest.raises(GanrunError, match="needs image data"):
        _model(info=DataInfo("ring", 2, 0, 0, (-1.0, 1.0), kind="points"))


def test_representation_metrics_read_the_codes_against_their_floors(cli, learned, tmp_path):
    ckpt = learned / "checkpoints/last.pt"
    args = [f"checkpoint={ckpt}", "eval.metrics=[knn_acc,linear_acc]", "eval.name=repr"]
    code, out, err = cli("eval", *args, "device=cpu", cwd=tmp_path)
    assert code == 0, err
    record = json.loads((learned / "eval/last/metrics.json").read_text())["results"]["repr"]
    values, protocol = record["metrics"], record["protocol"]["knn_acc"]
    assert set(values) == {
        f"{probe}_acc{floor}"
        for probe in ("knn", "linear")
        for floor in ("", "_pixels", "_untrained")
    }
    assert all(0 <= v <= 1 for v in values.values())
    # The pixel floor is scikit-learn's 1-NN on the same images; the codes are not the pixels.
    from sklearn.neighbors import KNeighborsClassifier

    data = restore(ckpt, CPU).data
    (memory, y_memory), (test, y_test) = data.split("train").all(), data.split("test").all()
    knn = KNeighborsClassifier(n_neighbors=1).fit(memory.flatten(1).numpy(), y_memory.numpy())
    assert values["knn_acc_pixels"] == pytest.approx(knn.score(test.flatten(1).numpy(), y_test))
    assert values["knn_acc"] != values["knn_acc_pixels"] and values["knn_acc"] > 0.5
    assert (protocol["features"], protocol["memory_split"]) == ("output: code", "train")
    assert protocol["num_memory"] == 1497 and protocol["num_test"] == 150


def test_heldout_queries_classify_the_training_images_left_out_of_the_memory(
    cli, learned, tmp_path
):
    # The BiGAN release's protocol: a seeded memory of the training split, the rest as queries.
    ckpt = learned / "checkpoints/last.pt"
    args = [f"checkpoint={ckpt}", "eval.metrics=[knn_acc]", "eval.name=heldout", "device=cpu"]
    split = ["eval.representation_examples=1000", "eval.representation_queries=heldout"]
    code, out, err = cli("eval", *args, *split, cwd=tmp_path)
    assert code == 0, err
    record = json.loads((learned / "eval/last/metrics.json").read_text())["results"]["heldout"]
    protocol = record["protocol"]["knn_acc"]
    assert (protocol["num_memory"], protocol["num_test"]) == (1000, 497)
    assert protocol["reference_split"] == "train, the images not in the memory"
    from sklearn.neighbors import KNeighborsClassifier

    x, y = restore(ckpt, CPU).data.split("train").all()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    memory, queries = order[:1000], order[1000:]
    knn = KNeighborsClassifier(n_neighbors=1).fit(x[memory].flatten(1).numpy(), y[memory].numpy())
    expected = knn.score(x[queries].flatten(1).numpy(), y[queries].numpy())
    assert record["metrics"]["knn_acc_pixels"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["eval.representation_queries=heldout"], "leaves none of the 1497; set it between 1"),
        (["eval.representation_queries=valid"], "eval.representation_queries"),
        (["eval.representation_examples=-1"], "eval.representation_examples=-1 must be non-neg"),
    ],
)
def test_bad_representation_protocols_are_refused_before_scoring(
    cli, learned, tmp_path, overrides, fragment
):
    record = learned / "eval/last/metrics.json"
    before = record.read_bytes() if record.exists() else None
    args = [f"checkpoint={learned / 'checkpoints/last.pt'}", "eval.metrics=[knn_acc]"]
    result = cli("eval", *args, "eval.name=bad", "device=cpu", *overrides, cwd=tmp_path)
    assert_one_line_error(result, fragment)
    assert (record.read_bytes() if record.exists() else None) == before
