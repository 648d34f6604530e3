"""The Gaussian mixture family: EM against scikit-learn's, its densities, runs through the CLI."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkMixture

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError
from ganrun.models import build_model
from ganrun.models.families import gmm
from ganrun.runs.checkpoint import load_checkpoint, restore
from tests.conftest import assert_one_line_error, checkpoint_tensors, composed

CPU = torch.device("cpu")
COVARIANCES = ["full", "diag", "spherical"]
# A few EM iterations on digits (8x8 at data.resolution=8: 64 pixels) through the CLI.
TINY_GMM = [
    "model=gmm",
    "data.resolution=8",
    "model.components=4",
    "model.max_iter=4",
    "model.tol=0",
    "train.sample_every=2",
    "train.checkpoint_every=2",
    "train.num_samples=16",
    "device=cpu",
]


def _blobs(n: int = 600, seed: int = 0) -> torch.Tensor:
    """Three overlapping, correlated 2-D Gaussians: EM needs many iterations on them."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [1.5, 0.5], [0.5, 2.0]], dtype=torch.float64)
    mix = torch.tensor([[1.0, 0.6], [0.0, 0.5]], dtype=torch.float64)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64) @ mix
    return centres[torch.arange(n) % 3] + z


def _initial(x: torch.Tensor, k: int, covariance: str, reg: float = 1e-6):
    """A mixture as EM's first step leaves it before its first iteration."""
    mixture = gmm.GaussianMixture(k, x.shape[1], covariance, reg)
    shift = x.mean(0)
    centres = gmm.kmeans_plus_plus(x, k, torch.Generator().manual_seed(0))
    gmm.m_step(mixture, gmm.hard_statistics(x, centres, covariance, shift), shift)
    return mixture, shift


def _sklearn(mixture: gmm.GaussianMixture, **kw) -> SkMixture:
    """scikit-learn's mixture holding ``mixture``'s parameters."""
    cov = mixture.covariances.detach().numpy()
    precisions = np.linalg.inv(cov) if mixture.covariance == "full" else 1 / cov
    return SkMixture(
        mixture.components,
        covariance_type=mixture.covariance,
        weights_init=mixture.weights.detach().numpy(),
        means_init=mixture.means.detach().numpy(),
        precisions_init=precisions,
        reg_covar=mixture.reg_covar,
        **kw,
    )


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_log_likelihood_equals_scikit_learns_on_the_same_parameters(covariance):
    x = _blobs()
    mixture, _ = _initial(x, 3, covariance)
    sk = _sklearn(mixture, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(x.numpy())  # one EM iteration from our parameters; then we take sklearn's
    mixture.weights.data = torch.from_numpy(sk.weights_)
    mixture.means.data = torch.from_numpy(sk.means_)
    mixture.covariances.data = torch.from_numpy(sk.covariances_)
    test = _blobs(200, seed=1)
    ours = mixture.log_prob(test)
    assert torch.allclose(ours, torch.from_numpy(sk.score_samples(test.numpy())), atol=1e-10)
    assert math.isclose(float(ours.mean()), sk.score(test.numpy()), abs_tol=1e-10)


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_em_iterations_match_scikit_learns(covariance):
    x = _blobs()
    mixture, shift = _initial(x, 3, covariance)
    sk = _sklearn(mixture, max_iter=15, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(x.numpy())
    stats = gmm.e_step(mixture, x, shift)
    for _ in range(15):
        gmm.m_step(mixture, stats, shift)
        stats = gmm.e_step(mixture, x, shift)
    assert np.allclose(mixture.weights.numpy(), sk.weights_, atol=1e-8)
    assert np.allclose(mixture.means.numpy(), sk.means_, atol=1e-8)
    assert np.allclose(mixture.covariances.numpy(), sk.covariances_, atol=1e-8)
    assert math.isclose(stats.log_likelihood / stats.n, sk.score(x.numpy()), abs_tol=1e-9)


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_em_never_lowers_the_log_likelihood(covariance):
    x = _blobs(900, seed=3)
    mixture, shift = _initial(x, 5, covariance)
    stats = gmm.e_step(mixture, x, shift)
    lls = [stats.log_likelihood / stats.n]
    for _ in range(40):
        gmm.m_step(mixture, stats, shift)
        stats = gmm.e_step(mixture, x, shift)
        lls.append(stats.log_likelihood / stats.n)
    steps = np.diff(lls)
    assert (steps >= -1e-10).all(), steps.min()
    assert lls[-1] > lls[0] + 0.01  # and it did climb


def test_kmeans_plus_plus_picks_distinct_far_apart_seeds_reproducibly():
    x = torch.cat([torch.zeros(50, 2), torch.full((1, 2), 10.0), torch.full((1, 2), -10.0)])
    x = x.double()
    seeds = gmm.kmeans_plus_plus(x, 3, torch.Generator().manual_seed(0))
    # Once a point at 0 is chosen, the two far points hold all the remaining mass.
    assert sorted(float(s[0]) for s in seeds) == [-10.0, 0.0, 10.0]
    again = gmm.kmeans_plus_plus(x, 3, torch.Generator().manual_seed(0))
    assert torch.equal(seeds, again)
    # Fewer distinct examples than seeds: repeats, not a failure.
    assert gmm.kmeans_plus_plus(
        torch.zeros(4, 2, dtype=torch.float64), 3, torch.Generator()
    ).shape == (
        3,
        2,
    )


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_samples_have_the_mixtures_moments(covariance):
    x = _blobs()
    mixture, shift = _initial(x, 3, covariance)
    draws, picked = mixture.sample(200_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(picked, minlength=3).double() / picked.numel()
    assert torch.allclose(freq, mixture.weights, atol=0.01)
    k = int(mixture.weights.argmax())
    mine = draws[picked == k]
    assert torch.allclose(mine.mean(0), mixture.means[k], atol=0.02)
    cov = mixture.covariances[k]
    expected = cov if covariance == "full" else torch.diag(cov.expand(2))
    assert torch.allclose(torch.cov(mine.T), expected, atol=0.03)


def test_a_component_no_example_chose_keeps_finite_parameters():
    x = torch.randn(100, 3, dtype=torch.float64)
    mixture = gmm.GaussianMixture(2, 3, "full", 1e-6)
    shift = x.mean(0)
    # Every example given to the first centre: the second has no responsibility at all.
    stats = gmm.hard_statistics(x, torch.stack([x[0], x[0] + 1e6]), "full", shift)
    gmm.m_step(mixture, stats, shift)
    assert torch.isfinite(mixture.log_prob(x)).all()
    assert float(mixture.weights[1]) < 1e-12


def test_model_log_likelihood_draws_and_means_are_shaped_like_the_data():
    info = DataInfo("test", 1, 4, 0, (0.0, 1.0))
    with composed(["model=gmm", "model.components=3", "model.covariance=diag"]) as cfg:
        model = build_model(cfg.model, info)
    images = torch.rand(30, 1, 4, 4)
    model.mixture.means.data = images[:3].flatten(1).double()
    model.mixture.weights.data = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    ll = model.log_likelihood(images)
    assert ll.shape == (30,) and ll.dtype == torch.float64
    assert torch.allclose(ll, model.mixture.log_prob(images.flatten(1).double()))
    out = model.generate(10, seed=3, batch_size=4)
    assert out.shape == (10, 1, 4, 4) and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1  # clipped to the pixel range
    assert torch.equal(out, model.generate(10, seed=3, batch_size=7))
    drawn = model.sample(12, seed=0, batch_size=4)
    assert drawn.arrays["components"].shape == (12,) and "3 diag Gaussians" in drawn.description
    assert torch.equal(model.means()[0], images[1])  # the heaviest first


def test_temperature_zero_draws_the_component_means():
    info = DataInfo("test", 1, 4, 0, (0.0, 1.0))
    with composed(["model=gmm", "model.components=3", "model.temperature=0"]) as cfg:
        model = build_model(cfg.model, info)
    model.mixture.means.data = torch.rand(3, 16, dtype=torch.float64)
    drawn = model.sample(50, seed=0, batch_size=50)
    means = model.mixture.means.float().view(3, 1, 4, 4)
    assert torch.equal(drawn.images, means[drawn.arrays["components"]])
    assert "at temperature 0" in drawn.description
    # The same components are picked at any temperature: only the spread around them differs.
    with composed(["model=gmm", "model.components=3", "model.temperature=0.5"]) as cfg:
        warm = build_model(cfg.model, info)
    warm.mixture.load_state_dict(model.mixture.state_dict())
    assert torch.equal(
        warm.sample(50, seed=0, batch_size=50).arrays["components"], drawn.arrays["components"]
    )


# ------------------------------------------------------------------------------ through the CLI
def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_train_resume_sample_and_eval(cli, tmp_path, covariance):
    run = [*TINY_GMM, f"model.covariance={covariance}"]
    code, out, err = cli("train", *run, "hydra.run.dir=full", cwd=tmp_path)
    assert code == 0, err
    full = tmp_path / "full"
    rows = _rows(full / "metrics.csv")
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert list(rows[0]) == ["step", "ll", "change", "sec_per_step"]
    lls = [float(r["ll"]) for r in rows]
    assert all(b >= a - 1e-6 for a, b in zip(lls, lls[1:], strict=False)), lls
    assert sorted(p.name for p in (full / "samples").iterdir()) == [
        "means_step_000002.png",
        "means_step_000004.png",
        "step_000002.png",
        "step_000004.png",
    ]
    ckpt = load_checkpoint(full / "checkpoints/last.pt")
    assert ckpt["family"] == "gmm" and not ckpt["optimizers"]
    assert set(ckpt["networks"]["mixture"]) == {"weights", "means", "covariances", "fitted"}

    # Two iterations, then two more under a larger model.max_iter: the same mixture, bit for bit.
    half = [o for o in run if not o.startswith("model.max_iter")] + ["model.max_iter=2"]
    assert cli("train", *half, "hydra.run.dir=part", cwd=tmp_path)[0] == 0
    code, _, err = cli("train", *run, "resume=auto", "hydra.run.dir=part", cwd=tmp_path)
    assert code == 0, err
    a = checkpoint_tensors(full / "checkpoints/last.pt")
    b = checkpoint_tensors(tmp_path / "part/checkpoints/last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["ll"] for r in _rows(tmp_path / "part/metrics.csv")] == [r["ll"] for r in rows]

    ckpt_path = full / "checkpoints/last.pt"
    code, out, err = cli(
        "sample", f"checkpoint={ckpt_path}", "n=8", "sample.format=npz", cwd=tmp_path
    )
    assert code == 0, err
    drawn = np.load(full / "generated/last_n8_seed0.npz")
    assert drawn["samples"].shape[0] == 8 and drawn["components"].shape == (8,)

    code, out, err = cli(
        "eval", f"checkpoint={ckpt_path}", "eval.metrics=[test_ll]", "device=cpu", cwd=tmp_path
    )
    assert code == 0, err
    record = json.loads((full / "eval/last/metrics.json").read_text())
    snapshot = restore(ckpt_path, CPU)
    x, _ = snapshot.data.split("test").all()
    expected = snapshot.model.log_likelihood(x)
    (result,) = record["results"].values()
    assert result["weights"] == "mixture"
    assert math.isclose(result["metrics"]["test_ll"], float(expected.mean()), rel_tol=1e-9)


def test_run_stops_where_em_converges(cli, tmp_path):
    run = [o for o in TINY_GMM if not o.startswith("model.tol")] + ["model.tol=1e9"]
    code, out, err = cli("train", *run, "hydra.run.dir=r", cwd=tmp_path)
    assert code == 0, err
    assert [r["step"] for r in _rows(tmp_path / "r/metrics.csv")] == ["1"]
    assert load_checkpoint(tmp_path / "r/checkpoints/last.pt")["step"] == 1
    # A smaller tolerance continues the converged run.
    code, _, err = cli(
        "train", *run[:-1], "model.tol=0", "resume=auto", "hydra.run.dir=r", cwd=tmp_path
    )
    assert code == 0, err
    assert [r["step"] for r in _rows(tmp_path / "r/metrics.csv")] == ["1", "2", "3", "4"]


def test_a_mixture_fits_the_ring_and_is_scored_by_jsd(cli, tmp_path):
    args = ["model=gmm", "data=ring", "model.components=8", "model.covariance=diag", "device=cpu"]
    code, out, err = cli("train", *args, "hydra.run.dir=ring", cwd=tmp_path)
    assert code == 0, err
    rows = _rows(tmp_path / "ring/metrics.csv")
    assert list(rows[0])[:6] == ["step", "ll", "change", "jsd", "c_g", "v_dstar"]
    last = rows[-1]
    # Eight well separated modes, eight components: JSD at the 2-D estimator's floor.
    assert float(last["jsd"]) < 0.02, last
    assert math.isclose(float(last["c_g"]), -math.log(4) + 2 * float(last["jsd"]), abs_tol=1e-5)
    assert (tmp_path / f"ring/samples/step_{int(last['step']):06d}.png").is_file()


def test_one_dimensional_data_gets_the_density_figure(cli, tmp_path):
    args = ["model=gmm", "data=gauss1d", "model.components=2", "data.means=[-2,2]", "device=cpu"]
    code, out, err = cli("train", *args, "data.stds=[0.5,0.5]", "hydra.run.dir=g", cwd=tmp_path)
    assert code == 0, err
    rows = _rows(tmp_path / "g/metrics.csv")
    assert float(rows[-1]["jsd"]) < 0.005
    assert list((tmp_path / "g/samples").glob("step_*.png"))


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["model.covariance=tied"], "model.covariance=tied is not one of: full, diag, spherical"),
        (["model.components=0"], "model.components=0 must be at least 1"),
        (["model.reg_covar=0"], "model.reg_covar=0.0 must be positive"),
        (["model.tol=-1"], "model.tol=-1.0 must be a non-negative number"),
        (["model.temperature=-1"], "model.temperature=-1.0 must be a non-negative number"),
        (["model.ema_decay=0.9"], "nothing to average; use model.ema_decay=0"),
        (["train.steps=7"], "train.steps=7 must equal model.max_iter=4"),
        (["model.components=5000"], "training examples of data=digits; lower model.components"),
        (["model.conditional=true"], "model=gmm has no conditional variant"),
    ],
)
def test_bad_settings_are_refused_in_one_line_before_writing(cli, tmp_path, overrides, fragment):
    code, out, err = cli("train", *TINY_GMM, *overrides, "hydra.run.dir=bad", cwd=tmp_path)
    assert_one_line_error((code, out, err), fragment)
    assert not (tmp_path / "bad").exists()


def test_torchrun_and_huge_mixtures_are_refused(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    huge = pytest.raises(GanrunError, match="GiB of parameters; use fewer components")
    with composed([*TINY_GMM, "model.components=100000"]) as cfg, huge:
        build_model(cfg.model, DataInfo("test", 3, 32, 0, (0.0, 1.0)))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with composed(TINY_GMM) as cfg, pytest.raises(GanrunError, match="without torchrun"):
        gmm.FAMILY.check(cfg)
