"""`ganrun report` on hand-made run folders (no training): table, sorting, metrics, plots."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from ganrun.commands.report import _smooth, higher_is_better
from ganrun.images import save_grid
from ganrun.runs.results import write_record


def make_run(
    run: Path,
    overrides: list[str],
    loss_g: list[float],
    objective: str = "loss_g",
    evals: dict[int, dict[str, float]] | None = None,
) -> Path:
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run / "config.yaml").write_text(yaml.safe_dump({"objective": objective}))
    with (run / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss_d", "loss_g", "d_real", "d_fake", "sec_per_step"])
        for step, value in enumerate(loss_g, 1):
            w.writerow([step, 1.0, value, 0.6, 0.4, 0.5])
    save_grid(torch.rand(4, 1, 8, 8), run / "samples" / f"step_{len(loss_g):06d}.png", (0, 1))
    for step, metrics in (evals or {}).items():
        name = f"step_{step:06d}.pt"
        write_record(
            run / "checkpoints" / name,
            {
                "checkpoint": f"checkpoints/{name}",
                "step": step,
                "preset": "fast",
                "weights": "generator",
                "wall_time_s": 1.0,
                "timestamp": f"2026-01-01T00:00:{step:02d}",
                "metrics": metrics,
                "protocol": {"fid": {"num_generated": 100}},
                "skipped": {},
            },
        )
    return run


def read_report(folder: Path) -> list[dict[str, str]]:
    with (folder / "report.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_table_final_and_best_metrics(cli, tmp_path):
    sweep = tmp_path / "sweep"
    make_run(
        sweep / "0",
        ["lr=1", "steps=3"],
        [0.9, 0.8, 0.7],
        evals={
            1: {"fid": 30.0, "is_mean": 2.0, "kid_std": 0.1},
            3: {"fid": 35.0, "is_mean": 2.5, "kid_std": 0.2},
        },
    )
    make_run(
        sweep / "1",
        ["lr=2", "steps=3"],
        [0.9, 0.6, 0.5],
        evals={1: {"fid": 20.0, "is_mean": 1.0}, 3: {"fid": 25.0, "is_mean": 3.0}},
    )
    make_run(sweep / "10", ["lr=3", "steps=3"], [0.9, 0.9, 0.9])  # not scored
    code, out, err = cli("report", "sweep=sweep", "sort_by=best_fid", cwd=tmp_path)
    assert code == 0, err
    rows = read_report(sweep / "report")
    assert [r["job"] for r in rows] == ["1", "0", "10"]  # ascending, unscored last
    assert [r["overrides"] for r in rows] == ["lr=2", "lr=1", "lr=3"]
    first = rows[0]
    assert float(first["fid"]) == 25.0 and float(first["best_fid"]) == 20.0
    assert float(first["is_mean"]) == 3.0
    # Columns that say nothing are left out: every run's best IS is its last, and a KID's
    # standard deviation has no best at all.
    assert "best_is_mean" not in first and "best_kid_std" not in first
    assert float(rows[1]["kid_std"]) == 0.2
    assert float(first["loss_g"]) == 0.5
    assert first["steps"] == "3" and float(first["time_s"]) == pytest.approx(1.5)
    assert rows[2]["fid"] == ""
    md = (sweep / "report" / "report.md").read_text()
    assert "Common overrides: `steps=3`" in md
    assert md.count("\n| ") == 4  # header + 3 jobs
    for png in ("losses.png", "d_outputs.png", "metrics.png", "samples.png"):
        assert (sweep / "report" / png).stat().st_size > 1000
    assert "| 1 | lr=2 |" in out


def test_higher_is_better_metrics_sort_descending(cli, tmp_path):
    make_run(tmp_path / "s" / "0", ["a=0"], [1.0], evals={1: {"is_mean": 2.0}})
    make_run(tmp_path / "s" / "1", ["a=1"], [1.0], evals={1: {"is_mean": 5.0}})
    code, _, err = cli("report", "sweep=s", "sort_by=is_mean", "plots=false", cwd=tmp_path)
    assert code == 0, err
    assert [r["job"] for r in read_report(tmp_path / "s" / "report")] == ["1", "0"]
    assert not (tmp_path / "s" / "report" / "losses.png").exists()
    code, _, err = cli(
        "report", "sweep=s", "sort_by=is_mean", "descending=false", "out=r2", cwd=tmp_path
    )
    assert code == 0, err
    assert [r["job"] for r in read_report(tmp_path / "r2")] == ["0", "1"]


def test_default_sort_is_the_runs_objective(cli, tmp_path):
    make_run(tmp_path / "s" / "0", ["a=0"], [1.0], objective="d_fake")
    make_run(tmp_path / "s" / "1", ["a=1"], [2.0], objective="d_fake")
    code, _, _ = cli("report", "sweep=s", "plots=false", cwd=tmp_path)
    assert code == 0
    assert "Sorted by `d_fake`" in (tmp_path / "s" / "report" / "report.md").read_text()


def test_single_run(cli, tmp_path):
    make_run(tmp_path / "run", ["seed=3"], [0.5, 0.25])
    code, _, err = cli("report", "run=run", cwd=tmp_path)
    assert code == 0, err
    rows = read_report(tmp_path / "run" / "report")
    assert len(rows) == 1 and rows[0]["overrides"] == "seed=3"
    assert float(rows[0]["loss_g"]) == 0.25


def test_optuna_results_are_reported(cli, tmp_path):
    make_run(tmp_path / "s" / "0", ["lr=1"], [1.0])
    (tmp_path / "s" / "optimization_results.yaml").write_text(
        yaml.safe_dump({"name": "optuna", "best_params": {"optim.lr": 0.5}, "best_value": 0.1})
    )
    code, _, _ = cli("report", "sweep=s", "plots=false", cwd=tmp_path)
    assert code == 0
    assert (
        "Optuna best: optim.lr=0.5 (objective 0.1)"
        in (tmp_path / "s" / "report" / "report.md").read_text()
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        ([], "exactly one of"),
        (["sweep=s", "run=s/0"], "exactly one of"),
        (["sweep=missing"], "not a folder"),
        (["sweep=empty"], "holds no runs"),
        (["run=empty"], "no metrics.csv"),
        (["sweep=s", "sort_by=nope"], "sort_by=nope is not a column"),
        (["sweep=s", "plots=maybe"], "plots"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, args, fragment):
    make_run(tmp_path / "s" / "0", ["a=0"], [1.0])
    (tmp_path / "empty").mkdir()
    code, out, err = cli("report", *args, cwd=tmp_path)
    assert code == 2
    assert err.startswith("ganrun: error: ") and err.count("\n") == 1 and fragment in err
    assert not (tmp_path / "s" / "report").exists()


def test_helpers():
    assert higher_is_better("is_digits_cnn_mean") and higher_is_better("best_precision")
    assert not higher_is_better("fid") and not higher_is_better("is_mean_std")
    # Training statistics rank as their family declares: a log-likelihood up, a loss down.
    assert higher_is_better("ll") and not higher_is_better("loss_g")
    assert _smooth([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]
    smoothed = _smooth([float(i % 2) for i in range(1000)])
    assert max(smoothed[20:]) - min(smoothed[20:]) < 0.2
