"""DDP under torchrun: 2 CPU processes (gloo) train one run; its checkpoint loads in one process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from ganrun.runs.checkpoint import load_checkpoint
from tests.conftest import TINY

pytestmark = pytest.mark.slow


def _torchrun(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GANRUN_DEBUG", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return subprocess.run(
        [*cmd, "-m", "ganrun", "train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_two_process_cpu_training(cli, tmp_path):
    proc = _torchrun(TINY, tmp_path)
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
    assert not any(k.startswith("module.") for k in ckpt["networks"]["generator"])
    assert not any(k.startswith("module.") for k in ckpt["networks"]["discriminator"])

    # The checkpoint is an ordinary single-process one: sample, restore, resume.
    code, out, err = cli("sample", f"checkpoint={run}/checkpoints/last.pt", "n=4", cwd=tmp_path)
    assert code == 0, err
    assert (run / "generated" / "last_n4_seed0.png").is_file()
    from ganrun.devices import resolve_device
    from ganrun.runs.checkpoint import restore

    restored = restore(run / "checkpoints" / "last.pt", resolve_device("cpu"))
    assert restored.step == 6
    generator = restored.model.networks["generator"]
    torch.testing.assert_close(generator.state_dict(), ckpt["networks"]["generator"])
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


def _sync_worker(rank: int, folder: str) -> None:
    import torch.distributed as dist

    from ganrun.training.distributed import _broadcast_weights, average_gradients

    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2
    )
    torch.manual_seed(rank)  # different weights on each rank until the broadcast
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    net[1].running_mean.fill_(rank)
    _broadcast_weights(net, None)
    for p in net.parameters():
        p.grad = torch.full_like(p, float(rank + 1))
    net[0].bias.grad = None  # a parameter without a gradient on every rank is left alone
    average_gradients(net)
    torch.save(
        {"state": net.state_dict(), "grads": [p.grad for p in net.parameters()]},
        f"{folder}/rank{rank}.pt",
    )
    dist.destroy_process_group()


def test_steps_ddp_cannot_follow_average_gradients_themselves(tmp_path):
    # VAE and simultaneous-GAN steps are not DDP-wrapped: they rely on these two functions.
    torch.multiprocessing.spawn(_sync_worker, args=(str(tmp_path),), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    torch.testing.assert_close(ranks[0]["state"], ranks[1]["state"])
    assert float(ranks[1]["state"]["1.running_mean"][0]) == 0.0  # rank 0's buffers too
    for grads in (r["grads"] for r in ranks):
        assert grads[1] is None
        for g in grads[:1] + grads[2:]:
            torch.testing.assert_close(g, torch.full_like(g, 1.5))  # the mean of 1 and 2


@pytest.mark.parametrize(
    "model", [["model=vae"], ["model=gan", "train.simultaneous=true"]], ids=["vae", "simultaneous"]
)
def test_two_process_training_of_steps_without_ddp_wrapping(model, tmp_path):
    proc = _torchrun([*TINY, *model, "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DDP: 2 processes (gloo backend)" in proc.stdout
    ckpt = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert ckpt["step"] == 6
    sampler = next(iter(ckpt["networks"].values()))  # the generator, or the VAE
    assert all(torch.isfinite(t).all() for t in sampler.values())
