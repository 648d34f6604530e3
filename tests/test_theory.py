"""The 2014 paper's theory on data with a known density: ganrun.theory, data=gauss1d, the metrics
jsd and d_gap, the values in metrics.csv and the 1-D figures."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from scipy import integrate, stats

from ganrun import theory
from ganrun.config.schema import DataConfig
from ganrun.data import build_data
from ganrun.models.losses import LOSSES
from ganrun.training.setup import build_setup
from tests.conftest import assert_one_line_error, composed

CPU = torch.device("cpu")
LOG4 = math.log(4)


def exact_jsd(p, q, lo: float = -30, hi: float = 30) -> float:
    def f(x: float) -> float:
        a, b = p(x), q(x)
        m = 0.5 * (a + b)
        return 0.5 * (a * math.log(a / m) if a > 0 else 0) + 0.5 * (
            b * math.log(b / m) if b > 0 else 0
        )

    return integrate.quad(f, lo, hi, limit=400, points=[-2, 0, 1, 2])[0]


def comparison_of(p_data: theory.Mixture, p_g: theory.Mixture) -> theory.Comparison:
    """Both densities exact, on the grid the estimate would use."""
    samples, _ = p_g.sample(20000, torch.Generator().manual_seed(0))
    grid = theory.grid_for(p_data, samples, min(p_data.bandwidth(20000), p_g.bandwidth(20000)))
    points = grid.points()
    return theory.Comparison(grid, p_data.density(points), p_g.density(points))


# ------------------------------------------------------------------------------- the theory
def test_jsd_is_zero_and_c_g_is_minus_log_4_when_p_g_is_p_data() -> None:
    p = theory.Mixture.of([-2.0, 2.0], [0.5, 0.25], [0.3, 0.7])
    c = comparison_of(p, p)
    assert c.jsd() == pytest.approx(0.0, abs=1e-9)
    assert c.c_g() == pytest.approx(-LOG4, abs=1e-3)
    assert c.v_dstar() == pytest.approx(-LOG4, abs=1e-3)
    assert torch.allclose(c.d_star()[c.p_data > 1e-6], torch.tensor(0.5, dtype=torch.float64))


def test_v_dstar_equals_c_g_and_jsd_matches_the_integral() -> None:
    """Theorem 1 on two known densities: V(D*, G), computed from its definition, is
    -log 4 + 2 JSD, and the grid's JSD is the integral's."""
    p, q = theory.Mixture.of([0.0], [1.0]), theory.Mixture.of([1.0], [0.5])
    c = comparison_of(p, q)
    exact = exact_jsd(stats.norm(0, 1).pdf, stats.norm(1, 0.5).pdf)
    assert c.jsd() == pytest.approx(exact, abs=1e-4)
    assert c.v_dstar() == pytest.approx(c.c_g(), abs=1e-6)
    assert c.c_g() == pytest.approx(-LOG4 + 2 * exact, abs=2e-4)
    # Disjoint supports: JSD is log 2 and C(G) is 0, the value of a D that is always right.
    far = comparison_of(p, theory.Mixture.of([40.0], [1.0]))
    assert far.jsd() == pytest.approx(math.log(2), abs=1e-3)
    assert far.v_dstar() == pytest.approx(0.0, abs=2e-3)


def test_estimate_of_p_g_from_samples() -> None:
    gen = torch.Generator().manual_seed(1)
    two = theory.Mixture.of([-2.0, 2.0], [0.25])
    own, _ = two.sample(10000, gen)
    floor = theory.compare(two, own)
    assert 0 < floor.jsd() < 2e-3  # the estimator's own floor
    # All of G's mass on one mode: the JSD of the mixture and that mode.
    one, _ = theory.Mixture.of([2.0], [0.25]).sample(10000, gen)
    exact = exact_jsd(
        lambda x: 0.5 * stats.norm(-2, 0.25).pdf(x) + 0.5 * stats.norm(2, 0.25).pdf(x),
        stats.norm(2, 0.25).pdf,
    )
    assert theory.compare(two, one).jsd() == pytest.approx(exact, abs=5e-3)
    # 2-D: the ring's own samples are near the floor; half of its modes are not.
    angles = torch.arange(8) * (2 * math.pi / 8)
    ring = theory.Mixture.of(torch.stack([2 * angles.cos(), 2 * angles.sin()], 1), [0.02])
    points, modes = ring.sample(10000, gen)
    assert theory.compare(ring, points).jsd() < 0.02
    assert theory.compare(ring, points[modes < 4]).jsd() > 0.15


def test_samples_that_are_not_finite_count_as_mass_off_the_data() -> None:
    p = theory.Mixture.of([0.0], [1.0])
    x, _ = p.sample(4000, torch.Generator().manual_seed(2))
    x[:2000] = float("nan")
    c = theory.compare(p, x)
    assert float(c.p_g.sum() * c.grid.cell) == pytest.approx(0.5, abs=0.01)
    # Half of q on p's support (q = p / 2 there), half where p has no mass.
    expected = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    assert c.jsd() == pytest.approx(expected, abs=5e-3)
    assert c.v_dstar() == pytest.approx(c.c_g(), abs=1e-6)


def test_mixture_density_and_sampling() -> None:
    m = theory.Mixture.of([[0.0, 0.0], [3.0, 1.0]], [1.0, 0.5], [0.25, 0.75])
    x = torch.tensor([[0.5, -0.2], [2.0, 1.0]])
    expected = 0.25 * stats.multivariate_normal([0, 0], 1.0).pdf(x.numpy()) + 0.75 * (
        stats.multivariate_normal([3, 1], 0.25).pdf(x.numpy())
    )
    assert torch.allclose(m.density(x), torch.as_tensor(expected), rtol=1e-10)
    points, modes = m.sample(20000, torch.Generator().manual_seed(3))
    assert (modes == 1).double().mean() == pytest.approx(0.75, abs=0.02)
    assert points[modes == 1].mean(0).tolist() == pytest.approx([3.0, 1.0], abs=0.02)
    assert theory.Mixture.from_extra({"mixture": m.to_extra()}).weights.tolist() == [0.25, 0.75]
    assert theory.Mixture.from_extra({}) is None


def test_d_gap_is_zero_for_d_star_and_measures_a_constant_d() -> None:
    p = theory.Mixture.of([0.0], [1.0])
    gen = torch.Generator().manual_seed(4)
    fake, _ = theory.Mixture.of([1.0], [1.0]).sample(20000, gen)
    real, _ = p.sample(5000, gen)
    c = theory.compare(p, fake)
    d_star = c.d_star_at(p, real)
    assert theory.d_gap(c, p, real, d_star) == pytest.approx(0.0, abs=1e-12)
    half = torch.full((real.shape[0],), 0.5)
    assert theory.d_gap(c, p, real, half) == pytest.approx(float((d_star - 0.5).abs().mean()))


# ------------------------------------------------------------------------------ data=gauss1d
def test_gauss1d_data_set() -> None:
    with composed(
        ["data=gauss1d", "data.means=[-1,4]", "data.stds=[0.5,1]", "data.weights=[1,3]"]
    ) as cfg:
        fields = dict(cfg.data.items())
    data = build_data(DataConfig(**fields), (-1.0, 1.0), CPU)
    info = data.info
    assert (info.kind, info.channels, info.num_classes) == ("points", 1, 2)
    assert {k: len(v) for k, v in data.splits.items()} == {
        "train": 50000,
        "valid": 5000,
        "test": 5000,
    }
    points, modes = data.train.all()
    assert points.shape == (50000, 1) and points.dtype == torch.float32
    assert (modes == 1).double().mean() == pytest.approx(0.75, abs=0.01)
    assert points[modes == 0].std().item() == pytest.approx(0.5, rel=0.05)
    assert points[modes == 1].mean().item() == pytest.approx(4.0, abs=0.05)
    assert theory.Mixture.from_extra(info.extra).weights.tolist() == [0.25, 0.75]
    again = build_data(DataConfig(**fields), (0.0, 1.0), CPU)
    assert torch.equal(again.train.all()[0], points)  # the same data whatever the run


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.means=[]", "data=gauss1d needs at least one mode"),
        ("data.stds=[1,2,3]", "must hold one standard deviation or one per mode (1)"),
        ("data.stds=[-1]", "data.stds=[-1.0] must be positive"),
        ("data.weights=[1,1]", "must be empty (equal weights) or one per mode (1)"),
        ("data.num_points=0", "data.num_points=0 must be at least 1"),
    ],
)
def test_gauss1d_settings_are_checked(cli, tmp_path, override: str, message: str) -> None:
    result = cli("train", "data=gauss1d", "model=gan", override, cwd=tmp_path)
    assert_one_line_error(result, message)
    assert not (tmp_path / "outputs").exists()


# ------------------------------------------------------------------------- real learning
class Affine(torch.nn.Module):
    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return 1.0 + 0.8 * z


def test_trained_d_approaches_d_star_for_a_fixed_g() -> None:
    """Proposition 1: with G held fixed, training D alone brings it to D* = p_data/(p_data+p_g)."""
    overrides = [
        "experiment=goodfellow2014_fig1",
        "device=cpu",
        "data.num_points=5000",
        "data.valid_size=2000",
        "data.means=[0.0]",
        "data.stds=[1.0]",
        "model.noise=normal",
    ]
    with composed(overrides) as cfg:
        torch.manual_seed(0)
        setup = build_setup(cfg)
    model, batches = setup.model, setup.batches
    model.configure_training(cfg, fused=False)
    # A fixed G with a smooth p_g = N(1, 0.8^2) beside p_data = N(0, 1).
    model.networks["generator"] = Affine()
    D, opt = model.D, model.optimizers["discriminator"]
    mixture = theory.Mixture.from_extra(setup.data.info.extra)
    real, _ = setup.data.split("valid").all()
    noise = torch.Generator().manual_seed(1)
    before = theory.measure(model, mixture, real, 10000, 0, 1000)["d_gap"]
    for _ in range(600):
        x, _ = batches.batch(256)
        with torch.no_grad():
            fake = model.G(model.noise(256, noise))
        loss = LOSSES["minimax"].d(D(x), D(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = theory.measure(model, mixture, real, 10000, 0, 1000)["d_gap"]
    assert after < 0.04 and after < before / 3, (before, after)


# ------------------------------------------------------------------------------ end to end
FIG1 = [
    "experiment=goodfellow2014_fig1",
    "train.steps=40",
    "train.sample_every=20",
    "train.checkpoint_every=20",
    "train.log_every=10",
    "data.num_points=2000",
    "data.valid_size=1000",
    "device=cpu",
]


def test_fig1_run_measures_the_theory_draws_it_and_is_scored(cli, tmp_path) -> None:
    code, out, err = cli("train", *FIG1, "hydra.run.dir=run", cwd=tmp_path)
    assert code == 0, err
    run = tmp_path / "run"
    rows = list(csv.DictReader((run / "metrics.csv").open(newline="")))
    assert list(rows[0]) == [
        "step",
        "loss_d",
        "loss_g",
        "d_real",
        "d_fake",
        "jsd",
        "c_g",
        "v_dstar",
        "d_gap",
        "sec_per_step",
    ]
    measured = [r for r in rows if r["jsd"]]
    assert [int(r["step"]) for r in measured] == [20, 40]
    assert all(r["d_gap"] == "" for r in rows if r not in measured)
    for r in measured:
        jsd, c_g, v = float(r["jsd"]), float(r["c_g"]), float(r["v_dstar"])
        assert 0 < jsd < math.log(2) and c_g == pytest.approx(-LOG4 + 2 * jsd, abs=1e-5)
        assert v == pytest.approx(c_g, abs=1e-4)  # Theorem 1, to grid accuracy
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "step_000020.png",
        "step_000040.png",
    ]
    # A resumed run writes the same rows as one that never stopped.
    code, out, err = cli(
        "train", *FIG1, "train.steps=60", "resume=auto", "hydra.run.dir=run", cwd=tmp_path
    )
    assert code == 0, err
    again = list(csv.DictReader((run / "metrics.csv").open(newline="")))
    assert again[:40] == rows and [int(r["step"]) for r in again if r["jsd"]] == [20, 40, 60]

    code, out, err = cli(
        "eval",
        f"checkpoint={run}/checkpoints/last.pt",
        "eval=fast",  # all of it: what does not apply to 1-D points is skipped
        "eval.num_samples=2000",
        cwd=tmp_path,
    )
    assert code == 0, err
    record = json.loads((run / "eval/last/metrics.json").read_text())["results"]["fast"]
    values = record["metrics"]
    modes = {"modes_covered", "high_quality", "num_modes", "mode_kl"}
    assert set(values) == {"jsd", "c_g", "v_dstar", "jsd_floor", "d_gap", *modes}
    assert values["num_modes"] == 1 and 0 < values["high_quality"] <= 1  # N(3, 0.5^2)
    assert 0 < values["jsd_floor"] < values["jsd"] + 0.05
    assert values["v_dstar"] == pytest.approx(values["c_g"], abs=1e-4)
    assert record["protocol"]["jsd"]["num_generated"] == 2000

    code, out, err = cli("report", f"run={run}", cwd=tmp_path)
    assert code == 0, err
    made = {p.name for p in (run / "report").iterdir()}
    assert {"theory.png", "progress.png", "samples.png"} <= made


def test_theory_metrics_refuse_data_without_a_known_density(cli, tmp_path) -> None:
    code, out, err = cli(
        "train",
        "data=digits",
        "model=dcgan",
        "train.steps=2",
        "eval=fast",
        "eval.at_end=true",
        "eval.metrics=[jsd]",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert_one_line_error((code, out, err), "jsd")
    assert "data=digits is not point data" in err


def test_a_critic_has_no_d_gap(cli, tmp_path) -> None:
    code, out, err = cli(
        "train",
        *FIG1,
        "loss=wasserstein",
        "model.critic=true",
        "train.steps=20",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert code == 0, err
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith("jsd,c_g,v_dstar,sec_per_step")


def test_metrics_csv_of_a_run_from_before_the_measured_columns_is_kept(tmp_path) -> None:
    """A ring run written before ganrun measured the theory resumes: its rows are kept, with
    the new cells empty, under the new header."""
    from ganrun.training.logs import MetricsLog, rows_to_keep

    path = tmp_path / "metrics.csv"
    path.write_text(
        "step,loss_d,loss_g,sec_per_step\n1,0.5,0.7,0.01\n2,0.4,0.8,0.01\n3,0.3,0.9,0.01\n"
    )
    kept = rows_to_keep(path, ["loss_d", "loss_g"], 2, ["jsd", "c_g"])
    assert kept == [["1", "0.5", "0.7", "", "", "0.01"], ["2", "0.4", "0.8", "", "", "0.01"]]
    log = MetricsLog(path, ["loss_d", "loss_g"], kept, ["jsd", "c_g"])
    t = torch.tensor
    log.write(
        [
            (3, {"loss_d": t(0.1), "loss_g": t(0.2)}, 0.5),
            (4, {"loss_d": t(0.1), "loss_g": t(0.2), "jsd": 0.25, "c_g": -0.886}, 0.5),
        ]
    )
    log.close()
    assert path.read_text().splitlines() == [
        "step,loss_d,loss_g,jsd,c_g,sec_per_step",
        "1,0.5,0.7,,,0.01",
        "2,0.4,0.8,,,0.01",
        "3,0.1,0.2,,,0.5",
        "4,0.1,0.2,0.25,-0.886,0.5",
    ]
