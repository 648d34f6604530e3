"""End-to-end `ganrun train` runs of a few steps: the files written and what is in them."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from PIL import Image

from ganrun.runs.checkpoint import load_checkpoint
from tests.conftest import TINY, run_cli


def _only_run(root: Path) -> Path:
    runs = [p.parent for p in root.glob("outputs/*/*/config.yaml")]
    assert len(runs) == 1, runs
    return runs[0]


def test_default_config_few_steps_writes_everything(tmp_path):
    proc = run_cli("train", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = _only_run(tmp_path)

    config = (run / "config.yaml").read_text()
    assert "name: dcgan" in config and "name: digits" in config and "${" not in config
    assert (run / ".hydra" / "overrides.yaml").is_file()
    assert (run / "train.log").read_text().count("step ") >= 3

    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.pt"))
    assert ckpts == ["last.pt", "step_000003.pt", "step_000006.pt"]
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["step"] == 6 and last["config"]["model"]["name"] == "dcgan"
    assert set(last) >= {"networks", "averages", "optimizers", "rng", "ganrun_version", "family"}
    assert set(last["networks"]) == set(last["optimizers"]) == {"generator", "discriminator"}

    grids = sorted((run / "samples").glob("*.png"))
    assert [g.name for g in grids] == ["step_000003.png", "step_000006.png"]
    with Image.open(grids[-1]) as img:
        # 16 samples of 16x16 in a 4x4 grid with 2-pixel padding (74 px), written 7 times as
        # large: the smallest whole factor that reaches train.grid_min_width=512.
        assert img.size == (7 * (4 * 18 + 2), 7 * (4 * 18 + 2))

    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert set(rows[0]) == {"step", "loss_d", "loss_g", "d_real", "d_fake", "sec_per_step"}
    for row in rows:
        assert 0.0 < float(row["d_real"]) < 1.0 and float(row["sec_per_step"]) > 0

    last_line = proc.stdout.strip().splitlines()[-1]
    assert str(run) in last_line and "checkpoints" in last_line


def test_same_seed_gives_bit_identical_checkpoints(tmp_path):
    for name in ("a", "b"):
        proc = run_cli("train", *TINY, f"hydra.run.dir={name}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    a = load_checkpoint(tmp_path / "a/checkpoints/last.pt")
    b = load_checkpoint(tmp_path / "b/checkpoints/last.pt")
    for part in ("generator", "discriminator"):
        for key in a["networks"][part]:
            assert torch.equal(a["networks"][part][key], b["networks"][part][key]), (part, key)


def test_resume_continues_to_the_same_weights(tmp_path):
    full = run_cli("train", *TINY, "hydra.run.dir=full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    half = [o if not o.startswith("train.steps") else "train.steps=3" for o in TINY]
    first = run_cli("train", *half, "hydra.run.dir=part", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run_cli("train", *TINY, "hydra.run.dir=part", "resume=auto", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    a = load_checkpoint(tmp_path / "full/checkpoints/last.pt")
    b = load_checkpoint(tmp_path / "part/checkpoints/last.pt")
    assert b["step"] == 6
    for key in a["networks"]["generator"]:
        assert torch.equal(a["networks"]["generator"][key], b["networks"]["generator"][key]), key
    with (tmp_path / "part/metrics.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5, 6]
