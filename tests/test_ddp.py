"""DDP under torchrun: 2 CPU processes (gloo) train one run; its checkpoint loads in one process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from ganrun.checkpoint import load_checkpoint
from tests.conftest import TINY

pytestmark = pytest.mark.slow


def test_two_process_cpu_training(cli, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GANRUN_DEBUG", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "ganrun",
            "train",
            *TINY,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("ganrun: done.") == 1  # rank 0 alone reports
    assert "DDP: 2 processes (gloo backend)" in proc.stdout
    # Each process named a run folder from its own clock; exactly one remains, with everything.
    runs = [p.parent for p in tmp_path.rglob("config.yaml") if p.parent.name != ".hydra"]
    assert len(runs) == 1, runs
    run = runs[0]
    leaves = [d for d in (tmp_path / "outputs").rglob("*") if d.is_dir() and not any(d.iterdir())]
    assert leaves == []
    with (run / "metrics.csv").open(newline="") as f:
        assert [r["step"] for r in csv.DictReader(f)] == [str(s) for s in range(1, 7)]
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "step_000003.png",
        "step_000006.png",
    ]
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 6
    assert not any(k.startswith("module.") for k in ckpt["generator"])
    assert not any(k.startswith("module.") for k in ckpt["discriminator"])

    # The checkpoint is an ordinary single-process one: sample, restore, resume.
    code, out, err = cli("sample", f"checkpoint={run}/checkpoints/last.pt", "n=4", cwd=tmp_path)
    assert code == 0, err
    assert (run / "generated" / "last_n4_seed0.png").is_file()
    from ganrun.devices import resolve_device
    from ganrun.restore import restore

    restored = restore(run / "checkpoints" / "last.pt", resolve_device("cpu"))
    assert restored.step == 6
    torch.testing.assert_close(restored.generator.state_dict(), ckpt["generator"])
    code, out, err = cli(
        "train",
        *[o for o in TINY if not o.startswith("train.steps")],
        "train.steps=8",
        "resume=auto",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 8
