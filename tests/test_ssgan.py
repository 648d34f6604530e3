"""model=ssgan and what came with it: the (K+1)-class real/fake probability against a direct
softmax, the released code's losses, feature matching (also for the GANs), weight normalisation's
data-dependent start, the labelled subset, ``test_error``, D's features for ``knn_acc``
(``eval.features``), and the family trained, resumed bit for bit, sampled and scored from the CLI,
with its refusals."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganrun.data import LABELLED, build_data, labelled_subset
from ganrun.data.base import DataInfo
from ganrun.models import build_model
from ganrun.models.families.ssgan import real_logit
from ganrun.models.losses import LOSSES, feature_matching_g
from ganrun.models.nets.improved_gan import WeightNormLinear
from ganrun.runs.checkpoint import restore
from tests.conftest import TINY, assert_one_line_error, checkpoint_tensors, composed

CPU = torch.device("cpu")
INFO = DataInfo("test", 1, 8, 10, (0.0, 1.0))
# TINY without its GAN width, and small ssgan networks.
SMALL = [
    *(o for o in TINY if not o.startswith("model.")),
    "model=ssgan",
    "model.g_hidden=[32]",
    "model.d_hidden=[64,32]",
    "model.init_examples=50",
    "data.labels_per_class=3",
]


def test_the_real_probability_is_a_k_plus_1_softmax_with_the_fake_logit_at_zero():
    logits = torch.randn(50, 10, dtype=torch.float64) * 5
    with_fake = torch.cat([logits, torch.zeros(50, 1, dtype=torch.float64)], dim=1)
    p_real = 1 - F.softmax(with_fake, dim=1)[:, -1]
    assert torch.allclose(torch.sigmoid(real_logit(logits)), p_real, atol=1e-12)
    # and it stays finite where a direct exp would overflow
    assert torch.isfinite(real_logit(torch.full((2, 10), 1000.0))).all()


def test_unsupervised_loss_is_the_released_codes():
    unl, fake = torch.randn(64, 10, dtype=torch.float64), torch.randn(64, 10, dtype=torch.float64)
    lse_unl, lse_fake = torch.logsumexp(unl, 1), torch.logsumexp(fake, 1)
    released = (
        -0.5 * lse_unl.mean() + 0.5 * F.softplus(lse_unl).mean() + 0.5 * F.softplus(lse_fake).mean()
    )
    ours = 0.5 * LOSSES["feature_matching"].d(real_logit(unl), real_logit(fake))
    assert torch.allclose(ours, released, atol=1e-12)


def test_feature_matching_is_the_mean_squared_difference_of_mean_features():
    fake, real = torch.randn(7, 5, dtype=torch.float64), torch.randn(9, 5, dtype=torch.float64)
    by_hand = sum((fake[:, j].mean() - real[:, j].mean()) ** 2 for j in range(5)) / 5
    assert torch.allclose(feature_matching_g(fake, real), by_hand, atol=1e-12)
    assert feature_matching_g(real, real).item() == 0.0


def test_weight_norm_layer_starts_with_unit_variance_outputs():
    torch.manual_seed(0)
    layer = WeightNormLinear(20, 6, train_scale=False)
    x = torch.randn(500, 20) * 3 + 1
    layer.initialise(x)
    out = layer(x)
    assert torch.allclose(out.mean(0), torch.zeros(6), atol=1e-4)
    assert torch.allclose(out.std(0, unbiased=False), torch.ones(6), atol=1e-4)
    # The weight's rows have the scale as their norm; a hidden layer trains no scale.
    assert torch.allclose(layer.weight().norm(dim=1), layer.scale)
    assert "scale" not in dict(layer.named_parameters())
    assert "scale" in dict(WeightNormLinear(3, 2, train_scale=True).named_parameters())


def _model(*overrides: str):
    with composed(["model=ssgan", *overrides]) as cfg:
        return build_model(cfg.model, INFO), cfg


def test_network_shapes_and_sizes():
    model, _ = _model()
    x = torch.rand(4, 1, 8, 8)
    D, G = model.networks["discriminator"], model.networks["generator"]
    logits, hidden = D.logits_and_hidden(x)
    assert logits.shape == (4, 10) and hidden.shape == (4, 250)
    assert G(torch.rand(4, 100)).shape == (4, 1, 8, 8)
    # D: 64-1000-500-250-250-250-10 weights (v) and biases, the last layer's scale.
    sizes = [64, 1000, 500, 250, 250, 250, 10]
    d_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True)) + 10
    assert sum(p.numel() for p in D.parameters()) == d_params
    # G: 100-500-500 without biases (each normalisation's shift is one), 64 pixels with a scale.
    g_params = 100 * 500 + 500 + 500 * 500 + 500 + 500 * 64 + 64 + 64
    assert sum(p.numel() for p in G.parameters()) == g_params
    with model.evaluating():  # no noise: the same logits twice
        assert torch.equal(model.classify(x), model.classify(x))
        assert model.features(x).shape == (4, 250)
        assert model.features(x, "output").shape == (4, 10)


def test_labelled_subset_is_balanced_seeded_and_distinct():
    labels = torch.arange(10).repeat(30)[
        torch.randperm(300, generator=torch.Generator().manual_seed(1))
    ]
    a = labelled_subset(labels, 4, seed=0)
    assert torch.equal(torch.bincount(labels[a]), torch.full((10,), 4))
    assert a.unique().numel() == 40 and torch.equal(a, a.sort().values)
    assert torch.equal(a, labelled_subset(labels, 4, seed=0))
    assert not torch.equal(a, labelled_subset(labels, 4, seed=1))
    # A larger subset of the same draw keeps the smaller one's examples.
    assert set(a.tolist()) <= set(labelled_subset(labels, 6, seed=0).tolist())


def test_numpy_label_draw_picks_the_released_codes_images():
    labels = torch.arange(10).repeat(30)[
        torch.randperm(300, generator=torch.Generator().manual_seed(2))
    ]
    # openai/improved-gan's train_mnist_feature_matching.py: a RandomState(seed_data) order
    # of the training set, then the first `count` images of each class in it.
    order = np.random.RandomState(7).permutation(300)
    shuffled = labels.numpy()[order]
    release = np.concatenate([order[shuffled == c][:4] for c in range(10)])
    drawn = labelled_subset(labels, 4, seed=7, rng="numpy")
    assert drawn.tolist() == sorted(release.tolist())
    assert not torch.equal(drawn, labelled_subset(labels, 4, seed=7))  # torch's draw differs


def test_data_gets_a_labelled_split_of_the_training_images():
    with composed(["model=ssgan", "data.labels_per_class=5", "data.label_seed=3"]) as cfg:
        data = build_data(cfg.data, (0.0, 1.0), CPU)
    labelled, train = data.split(LABELLED), data.train
    assert len(labelled) == 50 and torch.equal(
        torch.bincount(labelled.labels), torch.full((10,), 5)
    )
    index = labelled_subset(train.labels, 5, 3)
    assert torch.equal(labelled.images, train.images[index])
    x, _ = labelled.all()
    assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.9  # the training split's value range


def test_labelled_batches_cycle_through_every_label():
    with composed(["model=ssgan", "data.labels_per_class=2"]) as cfg:
        data = build_data(cfg.data, (0.0, 1.0), CPU)
        model = build_model(cfg.model, data.info)
    model.use_data(data)
    gen = torch.Generator().manual_seed(0)
    x, y = model.labelled_batch(20, gen)
    assert x.shape == (20, *data.train.images.shape[1:])
    assert torch.equal(torch.bincount(y), torch.full((10,), 2))
    x, y = model.labelled_batch(30, gen)  # one order and half of the next
    assert torch.bincount(y, minlength=10).min() >= 2


def test_family_trains_resumes_bit_for_bit_samples_and_scores(cli, tmp_path):
    run = [*SMALL, "model.ema_decay=0.9"]
    code, _, err = cli("train", *run, "hydra.run.dir=full", cwd=tmp_path)
    assert code == 0, err
    full = tmp_path / "full"
    with (full / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "step", "loss_lab", "loss_unl", "loss_g", "train_err", "d_real", "d_fake", "sec_per_step"
    ]  # fmt: skip
    assert len(rows) == 6 and all(0 <= float(r["train_err"]) <= 1 for r in rows)
    half = [o for o in run if not o.startswith("train.steps")] + ["train.steps=3"]
    assert cli("train", *half, "hydra.run.dir=part", cwd=tmp_path)[0] == 0
    code, _, err = cli("train", *run, "resume=auto", "hydra.run.dir=part", cwd=tmp_path)
    assert code == 0, err
    a = checkpoint_tensors(full / "checkpoints/last.pt")
    b = checkpoint_tensors(tmp_path / "part/checkpoints/last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.startswith("averages.discriminator") for k in a)  # D is averaged, G is not
    assert not any(k.startswith("averages.generator") for k in a)

    ckpt = full / "checkpoints/last.pt"
    code, _, err = cli("sample", f"checkpoint={ckpt}", "out=s.png", "n=16", cwd=tmp_path)
    assert code == 0, err and (tmp_path / "s.png").is_file()

    args = [
        f"checkpoint={ckpt}",
        "eval.metrics=[test_error,knn_acc]",
        "eval.name=semi",
        "device=cpu",
    ]
    code, _, err = cli("eval", *args, cwd=tmp_path)
    assert code == 0, err
    record = json.loads((full / "eval/last/metrics.json").read_text())["results"]["semi"]
    values, protocol = record["metrics"], record["protocol"]
    # test_error is D's (the average's) error on the test split, counted here again.
    snapshot = restore(ckpt, CPU)
    x, y = snapshot.data.split("test").all()
    wrong = int((snapshot.model.classify(x).argmax(1) != y).sum())
    assert values["test_misclassified"] == wrong
    assert values["test_error"] == pytest.approx(wrong / len(y))
    assert protocol["test_error"]["labels_per_class"] == 3
    assert protocol["test_error"]["label_rng"] == "torch"
    assert protocol["test_error"]["weights"] == "ema discriminator"
    assert protocol["knn_acc"]["features"] == "penultimate: D's last hidden layer"


def test_features_layer_is_chosen_by_eval_features(cli, tmp_path):
    run = [*TINY, "model=vae", "model.g_hidden=[32]", "hydra.run.dir=v"]
    assert cli("train", *run, cwd=tmp_path)[0] == 0
    ckpt = tmp_path / "v/checkpoints/last.pt"
    base = [f"checkpoint={ckpt}", "eval.metrics=[knn_acc]", "device=cpu"]
    for layer, described in (("output", "posterior mean"), ("penultimate", "encoder's")):
        code, _, err = cli(
            "eval", *base, f"eval.features={layer}", f"eval.name={layer}", cwd=tmp_path
        )
        assert code == 0, err
        record = json.loads((tmp_path / "v/eval/last/metrics.json").read_text())
        assert described in record["results"][layer]["protocol"]["knn_acc"]["features"]
    results = json.loads((tmp_path / "v/eval/last/metrics.json").read_text())["results"]
    assert results["output"]["metrics"]["knn_acc"] != results["penultimate"]["metrics"]["knn_acc"]


def test_gan_discriminator_features_and_feature_matching(cli, tmp_path):
    run = [*TINY, "loss=feature_matching", "hydra.run.dir=fm"]
    code, _, err = cli("train", *run, cwd=tmp_path)
    assert code == 0, err
    ckpt = tmp_path / "fm/checkpoints/last.pt"
    snapshot = restore(ckpt, CPU)
    x, _ = snapshot.data.split("test").all()
    assert snapshot.model.features(x[:5]).shape == (5, 8 * 2 * 4 * 4)  # dcgan, width 8, 16 px
    base = [f"checkpoint={ckpt}", "eval.metrics=[knn_acc]", "device=cpu"]
    code, _, err = cli("eval", *base, "eval.features=output", cwd=tmp_path)
    assert_one_line_error((code, _, err), "eval.features=output is not a layer of model=dcgan")
    assert "penultimate (D's last hidden layer)" in err


def test_gan_feature_matching_loss_is_that_of_ds_hidden_layer():
    with composed([*TINY, "loss=feature_matching"]) as cfg:
        model = build_model(cfg.model, DataInfo("t", 1, 16, 0, (-1.0, 1.0)))
        model.configure_training(cfg, fused=False)
    torch.manual_seed(0)
    fake, real = torch.rand(8, 1, 16, 16) * 2 - 1, torch.rand(8, 1, 16, 16) * 2 - 1
    hidden = model.D.hidden
    expected = (hidden(fake).mean(0) - hidden(real).mean(0)).pow(2).mean()
    assert torch.allclose(model.g_loss(fake, real, None), expected)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["loss=wasserstein"], "loss=wasserstein does not apply to model=ssgan"),
        (["data=ring"], "model=ssgan needs image data"),
        (["data.labels_per_class=1000"], "data.labels_per_class=1000 is more than the"),
        (["data.labels_per_class=-1"], "data.labels_per_class=-1 must be 0"),
        (["data.label_rng=python"], "data.label_rng='python' is not one of: torch, numpy"),
        (["data.label_rng=numpy", "data.label_seed=4294967296"], "below 2**32"),
        (["model.d_hidden=[]"], "model.d_hidden=[] must be one or more layer sizes"),
        (["model.arch=conv"], "model.arch"),
    ],
)
def test_bad_settings_are_refused_in_one_line_before_writing(cli, tmp_path, overrides, fragment):
    result = cli("train", *SMALL, *overrides, "hydra.run.dir=r", cwd=tmp_path)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["data.labels_per_class=5"], "model=dcgan is not one; use model=ssgan"),
        (["model=wgan", "loss=feature_matching"], "trains D as a classifier"),
    ],
)
def test_other_families_refuse_what_they_cannot_use(cli, tmp_path, overrides, fragment):
    result = cli("train", *TINY, *overrides, "hydra.run.dir=r", cwd=tmp_path)
    assert_one_line_error(result, fragment)


def test_unlabelled_data_is_refused(cli, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    for i in range(20):
        Image.new("L", (8, 8), color=i * 10).save(folder / f"{i}.png")
    args = [*SMALL, "data=folder", f"data.root={folder}", "data.resolution=8", "data.valid_size=0"]
    result = cli("train", *args, "data.labels_per_class=0", "hydra.run.dir=r", cwd=tmp_path)
    assert_one_line_error(result, "model=ssgan")
    result = cli("train", *args, "hydra.run.dir=r", cwd=tmp_path)
    assert_one_line_error(result, "data.labels_per_class=3", "has none")
