"""Multiruns on every launcher (basic, joblib, submitit_local), the Optuna sweeper and its
objective, sweep progress, and the TensorBoard logger; each ends in a `ganrun report`."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import joblib
import pytest
import yaml
from omegaconf import OmegaConf

from ganrun.errors import GanrunError
from ganrun.models import family_of
from ganrun.runs.sweep import check_objective, count_jobs, objective_value
from tests.conftest import TINY

pytestmark = pytest.mark.slow


def _runs(sweep: Path) -> list[Path]:
    return sorted((p.parent for p in sweep.rglob("metrics.csv")), key=lambda p: int(p.name))


def _last_row(run: Path) -> dict[str, str]:
    with (run / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))[-1]


def _report_rows(cli, tmp_path: Path, sweep: str) -> list[dict[str, str]]:
    code, out, err = cli("report", f"sweep={sweep}", cwd=tmp_path)
    assert code == 0, err
    with (tmp_path / sweep / "report" / "report.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _check_2x2(cli, tmp_path: Path, sweep: str) -> None:
    runs = _runs(tmp_path / sweep)
    assert [r.name for r in runs] == ["0", "1", "2", "3"]
    rows = _report_rows(cli, tmp_path, sweep)
    assert len(rows) == 4
    expected = {f"optim.lr={lr} seed={seed}" for lr in ("0.0001", "0.0002") for seed in (0, 1)}
    assert {r["overrides"] for r in rows} == expected
    for row in rows:
        run = tmp_path / sweep / row["job"]
        last = _last_row(run)
        assert row["steps"] == "6"
        for key in ("loss_d", "loss_g", "d_real", "d_fake"):
            assert float(row[key]) == pytest.approx(float(last[key]))
        # Each job really ran its own overrides.
        saved = yaml.safe_load((run / "config.yaml").read_text())
        assert f"optim.lr={saved['optim']['lr']} seed={saved['seed']}" == row["overrides"]
    losses = [float(r["loss_g"]) for r in rows]
    assert losses == sorted(losses)  # the default order: the runs' objective, loss_g, ascending
    for png in ("losses.png", "d_outputs.png", "samples.png"):
        assert (tmp_path / sweep / "report" / png).stat().st_size > 1000


def test_basic_launcher_2x2_and_report(cli, tmp_path):
    code, out, err = cli(
        "train",
        "-m",
        "optim.lr=1e-4,2e-4",
        "seed=0,1",
        *TINY,
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert "ganrun: sweep of 4 job(s)" in out
    for i in range(1, 5):
        assert f"ganrun: sweep job {i} of 4: optim.lr=" in out
    _check_2x2(cli, tmp_path, "sweep")


def test_joblib_launcher_2x2_and_report(cli, tmp_path):
    code, out, err = cli(
        "train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "optim.lr=1e-4,2e-4",
        "seed=0,1",
        *TINY,
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert code == 0, err
    _check_2x2(cli, tmp_path, "sweep")
    # joblib gives each of its n_jobs workers its share of the cores through OMP_NUM_THREADS;
    # ganrun keeps to it, where using every core in every job would oversubscribe them.
    share = os.environ.get("OMP_NUM_THREADS") or str(max(joblib.cpu_count() // 2, 1))
    for run in _runs(tmp_path / "sweep"):
        assert f"CPU threads: {share}," in (run / "train.log").read_text()


def test_submitit_local_two_jobs(cli, tmp_path):
    code, out, err = cli(
        "train",
        "-m",
        "hydra/launcher=submitit_local",
        "seed=0,1",
        *TINY,
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert code == 0, err
    runs = _runs(tmp_path / "sweep")
    assert len(runs) == 2
    assert all((r / "checkpoints" / "last.pt").is_file() for r in runs)
    rows = _report_rows(cli, tmp_path, "sweep")
    assert sorted(r["overrides"] for r in rows) == ["seed=0", "seed=1"]


def test_failed_submitit_job_is_one_line_naming_the_job(cli, tmp_path):
    # The job's error travels back from its process; Hydra would print its own
    # "Error executing job with overrides" line before ganrun's.
    code, out, err = cli(
        "train",
        "-m",
        "hydra/launcher=submitit_local",
        "data=mnist",
        f"data.root={tmp_path}",
        "data.download=false",
        *TINY,
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith(f"ganrun: error: sweep job data=mnist data.root={tmp_path} ")
    assert ": MNIST file train-images-idx3-ubyte not found" in line
    assert "Error executing job" not in err


def test_optuna_three_trials_reports_best(cli, tmp_path):
    code, out, err = cli(
        "train",
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.seed=0",
        "optim.lr=interval(1e-4,1e-3)",
        "objective=d_fake",
        *TINY,
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert "ganrun: sweep of 3 job(s)" in out
    runs = _runs(tmp_path / "sweep")
    assert len(runs) == 3
    values = {r.name: float(_last_row(r)["d_fake"]) for r in runs}
    result = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    # The sweeper minimised exactly what each job returned: its final d_fake.
    assert result["best_value"] == pytest.approx(min(values.values()), rel=1e-5)
    best = min(values, key=values.get)
    best_lr = yaml.safe_load((runs[int(best)] / "config.yaml").read_text())["optim"]["lr"]
    assert result["best_params"]["optim.lr"] == pytest.approx(best_lr)
    rows = _report_rows(cli, tmp_path, "sweep")
    assert len(rows) == 3
    assert rows[0]["job"] == best  # sorted by the runs' objective
    assert "Optuna best: optim.lr=" in (tmp_path / "sweep" / "report" / "report.md").read_text()


def test_bad_objective_is_refused_before_training(cli, tmp_path):
    code, out, err = cli("train", *TINY, "objective=fid", "hydra.run.dir=run", cwd=tmp_path)
    assert code == 2
    assert "objective=fid" in err and "eval.at_end=true" in err
    assert not (tmp_path / "run").exists()


def test_tensorboard_logger(cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, out, err = cli("train", *TINY, "logger=tensorboard", "hydra.run.dir=run", cwd=tmp_path)
    assert code == 0, err
    events = EventAccumulator(
        str(tmp_path / "run" / "tensorboard"), size_guidance={"scalars": 0, "images": 0}
    )
    events.Reload()
    loss_g = events.Scalars("train/loss_g")
    assert [e.step for e in loss_g] == list(range(1, 7))
    with (tmp_path / "run" / "metrics.csv").open(newline="") as f:
        csv_values = [float(r["loss_g"]) for r in csv.DictReader(f)]
    assert [e.value for e in loss_g] == pytest.approx(csv_values, rel=1e-5)
    assert [e.step for e in events.Images("samples")] == [3, 6]


def test_unknown_logger_is_refused(cli, tmp_path):
    code, out, err = cli("train", *TINY, "logger=wandb", "hydra.run.dir=run", cwd=tmp_path)
    assert code == 2 and "logger" in err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ unit tests
def test_slurm_preset_composes():
    from hydra import compose, initialize_config_module

    with initialize_config_module("ganrun.configs", version_base=None):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 240)
    assert launcher.array_parallelism == 16


def _sweep_cfg(task: list[str], sweeper: dict | None = None) -> OmegaConf:
    sweeper = sweeper or {
        "_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
        "params": None,
    }
    return OmegaConf.create({"hydra": {"sweeper": sweeper, "overrides": {"task": task}}})


def test_count_jobs():
    assert count_jobs(_sweep_cfg(["a=1,2", "b=range(3)", "c=5"])) == 6
    assert count_jobs(_sweep_cfg(["a=1"])) == 1
    params = {"_target_": "x.BasicSweeper", "params": {"b": "x,y,z"}}
    assert count_jobs(_sweep_cfg(["a=1,2"], params)) == 6
    optuna = {
        "_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
        "n_trials": 7,
    }
    assert count_jobs(_sweep_cfg(["a=interval(0,1)"], optuna)) == 7
    assert count_jobs(_sweep_cfg(["a=interval(0,1)"])) is None


def test_objective_value(tmp_path):
    last = {"step": 6, "loss_g": 0.5, "d_fake": 0.25}
    assert objective_value("d_fake", last, None) == 0.25
    record = {"metrics": {"fid_digits_cnn": 12.5}}
    assert objective_value("fid_digits_cnn", last, record) == 12.5
    with pytest.raises(GanrunError, match="eval.at_end=true"):
        objective_value("fid", last, None)
    with pytest.raises(GanrunError, match="not a finite"):
        objective_value("loss_g", {"loss_g": float("nan")}, None)
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("step,loss_g\n1,0.9\n2,0.7\n")
    # A resumed run with nothing left to train ends on its last metrics.csv row.
    assert objective_value("loss_g", {}, None, metrics) == pytest.approx(0.7)
    gan = [s.name for s in family_of("dcgan").statistics]
    check_objective("loss_g", gan, False)
    check_objective("fid_digits_cnn", gan, True)
    with pytest.raises(GanrunError):
        check_objective("fid_digits_cnn", gan, False)
