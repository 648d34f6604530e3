"""model=bigan: the three networks' shapes and sizes, the joint loss's swapped labels, a step that
moves every player, the linear learning-rate decay its preset uses, and the family trained,
resumed bit for bit, sampled and scored (E(x) and the layer before it, G(E(x))) from the CLI,
with its refusals."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganrun.data.base import DataInfo
from ganrun.models import build_model
from ganrun.models.losses import LOSSES
from ganrun.models.optim import scheduled
from ganrun.runs.checkpoint import restore
from tests.conftest import TINY, assert_one_line_error, checkpoint_tensors, composed

CPU = torch.device("cpu")
SMALL = [
    *(o for o in TINY if not o.startswith("model.")),
    "model=bigan",
    "model.g_hidden=[32]",
    "model.e_hidden=[32,16]",
    "model.d_hidden=[32,16]",
    "train.grid_min_width=0",
]


def _model(res: int, ch: int, *overrides: str):
    with composed(["model=bigan", *overrides]) as cfg:
        info = DataInfo("t", ch, res, 10, (0.0, 1.0))
        model = build_model(cfg.model, info)
        model.configure_training(cfg, fused=False)
        return model, cfg


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize(("res", "ch"), [(16, 1), (28, 1), (32, 3)])
def test_shapes_of_the_three_networks(arch, res, ch):
    small = ["model.g_hidden=[32]", "model.e_hidden=[32,16]", "model.d_hidden=[32,16]"]
    model, _ = _model(res, ch, f"model.arch={arch}", "model.width=8", *small)
    x, z = torch.rand(4, ch, res, res), torch.rand(4, 50) * 2 - 1
    G, E, D = model.G, model.E, model.D
    assert G(z).shape == (4, ch, res, res)
    assert E(x).shape == (4, 50) and D(x, z).shape == (4,)
    assert model.features(x, "output").shape == (4, 50)
    assert model.features(x, "penultimate").shape[0] == 4
    assert model.reconstruct(x).shape == x.shape
    assert model.reconstruct(x).min() >= 0 and model.reconstruct(x).max() <= 1


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_encoder_output_lives_where_the_prior_does(arch):
    small = ["model.e_hidden=[32]", "model.width=8", f"model.arch={arch}"]
    x = torch.rand(64, 1, 16, 16) * 50  # large inputs: large pre-activations
    uniform, _ = _model(16, 1, *small, "model.noise_scale=2")
    e = uniform.E.eval()
    logits = e.logits(x)
    assert torch.allclose(e(x), 2 * (2 * torch.sigmoid(logits) - 1), atol=1e-6)
    assert torch.equal(uniform.features(x, "output"), logits)
    assert e(x).abs().max() <= 2
    normal, _ = _model(16, 1, *small, "model.noise=normal")
    e = normal.E.eval()
    assert torch.equal(e(x), e.head(e.hidden(x)))


def test_release_mlp_sizes():
    model, _ = _model(28, 1)
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    # Bias-free linear maps, BatchNorm without parameters (the release's --nobias --nogain).
    # G: 50 -> 1024 -> 1024 (+ z projected into it) -> 784.
    assert count(model.G) == 50 * 1024 + 1024 * 1024 + 50 * 1024 + 1024 * 784
    # E: 784 -> 1024 -> 1024 -> 50.
    assert count(model.E) == 784 * 1024 + 1024 * 1024 + 1024 * 50
    # D: x -> 1024, then FC(h) + FC(z) -> 1024, -> 1 logit.
    assert count(model.D) == 784 * 1024 + 1024 * 1024 + 50 * 1024 + 1024
    weights = torch.cat([p.flatten() for p in model.D.parameters()])
    assert abs(weights.std().item() - 0.02) < 0.001  # N(0, 0.02)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) and m.affine for m in model.G.modules())


def test_encoders_loss_is_the_generators_with_the_labels_swapped():
    l_real = torch.randn(20, dtype=torch.float64)
    # non_saturating: E wants D(x, E(x)) to say "generated": -log(1 - D).
    ns = LOSSES["non_saturating"].g(-l_real)
    assert torch.allclose(ns, -torch.log1p(-torch.sigmoid(l_real)).mean())
    # minimax: E minimises log D(x, E(x)), the value function's real term.
    mm = LOSSES["minimax"].g(-l_real)
    assert torch.allclose(mm, F.logsigmoid(l_real).mean())


def test_a_step_moves_every_player_and_reports_its_losses():
    model, cfg = _model(16, 1, "model.g_hidden=[32]", "model.e_hidden=[32]", "model.d_hidden=[32]")
    before = {
        name: [p.detach().clone() for p in net.parameters()] for name, net in model.networks.items()
    }

    class Batches:
        def batch(self, n):
            return torch.rand(n, 1, 16, 16), None

    stats = model.training_step(Batches(), torch.Generator().manual_seed(0))
    assert set(stats) == {"loss_d", "loss_ge", "d_real", "d_fake"}
    assert all(torch.isfinite(v) for v in stats.values())
    for name, net in model.networks.items():
        moved = any(
            not torch.equal(a, b) for a, b in zip(before[name], net.parameters(), strict=True)
        )
        assert moved, name


def test_linear_decay_schedule():
    with composed(
        ["optim=adam", "optim.lr=0.1", "optim.decay_from=10", "optim.decay_to=30"]
    ) as cfg:
        o = cfg.optim
    assert scheduled(o, 0)["lr"] == pytest.approx(0.1)
    assert scheduled(o, 10)["lr"] == pytest.approx(0.1)
    assert scheduled(o, 20)["lr"] == pytest.approx(0.05)
    assert scheduled(o, 30)["lr"] == 0.0 and scheduled(o, 40)["lr"] == 0.0
    exponential = ["optim.decay_shape=exponential", "optim.decay_final=0.01"]
    with composed(
        ["optim=adam", "optim.lr=0.1", "optim.decay_from=10", "optim.decay_to=30", *exponential]
    ) as cfg:
        o = cfg.optim
    assert scheduled(o, 10)["lr"] == pytest.approx(0.1)
    assert scheduled(o, 20)["lr"] == pytest.approx(0.01)  # 0.1 * 0.01 ** 0.5
    assert scheduled(o, 30)["lr"] == pytest.approx(0.001) == scheduled(o, 50)["lr"]


def test_family_trains_resumes_bit_for_bit_samples_and_scores(cli, tmp_path):
    run = [*SMALL, "model.ema_decay=0.9"]
    code, _, err = cli("train", *run, "hydra.run.dir=full", cwd=tmp_path)
    assert code == 0, err
    full = tmp_path / "full"
    with (full / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "loss_d", "loss_ge", "d_real", "d_fake", "sec_per_step"]
    assert sorted(p.name for p in (full / "samples").iterdir()) == [
        "recon_step_000003.png",
        "recon_step_000006.png",
        "step_000003.png",
        "step_000006.png",
    ]
    half = [o for o in run if not o.startswith("train.steps")] + ["train.steps=3"]
    assert cli("train", *half, "hydra.run.dir=part", cwd=tmp_path)[0] == 0
    code, _, err = cli("train", *run, "resume=auto", "hydra.run.dir=part", cwd=tmp_path)
    assert code == 0, err
    a = checkpoint_tensors(full / "checkpoints/last.pt")
    b = checkpoint_tensors(tmp_path / "part/checkpoints/last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {k.split(".")[1] for k in a if k.startswith("averages.")} == {"generator", "encoder"}

    ckpt = full / "checkpoints/last.pt"
    assert cli("sample", f"checkpoint={ckpt}", "out=s.png", "n=16", cwd=tmp_path)[0] == 0
    # sample.reconstruct: rows of held-out images above G(E(x)); the npz keeps both, as uint8
    recon = ["sample.reconstruct=true", "n=8", "sample.grid_min_width=0"]
    code, out, err = cli("sample", f"checkpoint={ckpt}", *recon, "out=r.png", cwd=tmp_path)
    assert code == 0 and "8 held-out images above their reconstructions" in out, err
    # default_nrow(8) = 2 a row: 4 rows of originals, each above its row of reconstructions
    assert Image.open(tmp_path / "r.png").size == (2 + 2 * 18, 2 + 8 * 18)
    args = [f"checkpoint={ckpt}", *recon, "sample.format=npz", "out=r.npz"]
    assert cli("sample", *args, cwd=tmp_path)[0] == 0
    saved = np.load(tmp_path / "r.npz")
    assert saved["originals"].shape == saved["reconstructions"].shape == (8, 16, 16, 1)
    assert saved["originals"].dtype == np.uint8 and saved["samples"].shape == (16, 16, 16, 1)
    base = [f"checkpoint={ckpt}", "device=cpu"]
    for layer in ("output", "penultimate"):
        args = [*base, "eval.metrics=[knn_acc,recon_mse]", f"eval.features={layer}"]
        code, _, err = cli("eval", *args, f"eval.name={layer}", cwd=tmp_path)
        assert code == 0, err
    results = json.loads((full / "eval/last/metrics.json").read_text())["results"]
    assert results["output"]["protocol"]["knn_acc"]["features"] == "output: E(x) before squashing"
    assert "E's last hidden" in results["penultimate"]["protocol"]["knn_acc"]["features"]
    # recon_mse is the mean squared error of G(E(x)) against x, pixels in [0, 1]
    snapshot = restore(ckpt, CPU)
    x, _ = snapshot.data.split("test").all()
    mse = (snapshot.model.reconstruct(x) - x).pow(2).mean().item()
    assert results["output"]["metrics"]["recon_mse"] == pytest.approx(mse, rel=1e-4)


def test_sample_reconstruct_refusals(cli, tmp_path):
    assert cli("train", *TINY, "hydra.run.dir=g", cwd=tmp_path)[0] == 0
    ckpt = f"checkpoint={tmp_path / 'g/checkpoints/last.pt'}"
    result = cli("sample", ckpt, "sample.reconstruct=true", cwd=tmp_path)
    assert_one_line_error(result, "model=dcgan does not reconstruct images")
    result = cli("sample", ckpt, "sample.reconstruct=true", "sample.interpolate=true", cwd=tmp_path)
    assert_one_line_error(result, "choose one")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["loss=wasserstein"], "loss=wasserstein does not apply to model=bigan"),
        (["model.conditional=true"], "model=bigan has no conditional variant"),
        (["model.arch=infogan"], "model.arch"),
        (["data=ring"], "model=bigan needs image data"),
        (["model.e_hidden=[]"], "model.e_hidden=[] must be one or more layer sizes"),
        (["optim.decay_from=5", "optim.decay_to=5"], "needs 0 <= decay_from < decay_to"),
        (["optim.decay_shape=exponential"], "above 0 for decay_shape=exponential"),
        (["optim.decay_shape=cosine"], "must be linear or exponential"),
    ],
)
def test_bad_settings_are_refused_in_one_line_before_writing(cli, tmp_path, overrides, fragment):
    result = cli("train", *SMALL, *overrides, "hydra.run.dir=r", cwd=tmp_path)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "r").exists()
