"""Never lose a run: signals, exact resume after SIGKILL, divergence, disk full, safe loading."""

from __future__ import annotations

import csv
import errno
import os
import shlex
import signal
from pathlib import Path

import pytest
import torch

import ganrun.runs.checkpoint
from ganrun.errors import GanrunError
from ganrun.models.families.gan import GanModel
from ganrun.runs.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from tests.conftest import TINY, run_cli, spawn_cli, wait_for_rows

LONG = [o for o in TINY if not o.startswith(("train.steps", "train.checkpoint_every"))]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    return {
        **{f"g.{k}": v for k, v in ckpt["networks"]["generator"].items()},
        **{f"d.{k}": v for k, v in ckpt["networks"]["discriminator"].items()},
    }


def test_sigterm_writes_checkpoint_and_exits_cleanly(tmp_path):
    proc = spawn_cli(
        [
            "train",
            *LONG,
            "train.steps=100000",
            "train.checkpoint_every=100000",
            "hydra.run.dir=run",
        ],
        tmp_path,
    )
    wait_for_rows(tmp_path / "run/metrics.csv", 4, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().startswith("ganrun: stopped: SIGTERM received") and "resume=auto" in err
    assert "Traceback" not in err
    ckpt = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert ckpt["step"] >= 4
    with (tmp_path / "run/metrics.csv").open() as f:
        assert int(list(csv.DictReader(f))[-1]["step"]) == ckpt["step"]


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    steps = ["train.steps=40", "train.checkpoint_every=4", "train.log_every=1"]
    full = run_cli("train", *LONG, *steps, "hydra.run.dir=full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr

    proc = spawn_cli(["train", *LONG, *steps, "hydra.run.dir=killed"], tmp_path)
    wait_for_rows(tmp_path / "killed/metrics.csv", 11 + int.from_bytes(os.urandom(1)) % 15, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(tmp_path / "killed/checkpoints/last.pt")["step"]
    assert 0 < killed_at < 40

    resumed = run_cli("train", *LONG, *steps, "hydra.run.dir=killed", "resume=auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = (
        _weights(tmp_path / "full/checkpoints/last.pt"),
        _weights(tmp_path / "killed/checkpoints/last.pt"),
    )
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    with (tmp_path / "killed/metrics.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 41))


def _sigterm_while_writing_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """SIGTERM the process right after the metrics row of ``step`` is written."""
    import ganrun.training.logs

    real_write = ganrun.training.logs.MetricsLog.write

    def write_then_signal(self, window):
        out = real_write(self, window)
        if window and window[-1][0] == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(ganrun.training.logs.MetricsLog, "write", write_then_signal)


def test_signal_after_the_step_still_gets_its_checkpoint(cli, tmp_path, monkeypatch):
    # SIGTERM lands while step 3's metrics are written, after the loop has decided that step 3
    # needs no checkpoint: the run must do one more step and save it, never stop without one.
    _sigterm_while_writing_step(monkeypatch, 3)
    code, _, err = cli(
        "train", *LONG, "train.steps=10", "train.log_every=1", "hydra.run.dir=run", cwd=tmp_path
    )
    assert code == 128 + signal.SIGTERM, err
    assert "stopped after step 4/10" in err
    assert load_checkpoint(tmp_path / "run/checkpoints/last.pt")["step"] == 4


def test_the_printed_continue_command_resumes_the_run(cli, tmp_path, monkeypatch):
    # The run's own overrides (model.width=8, eval.metrics=[...]) must be in the command it
    # prints: a resume without them is refused as a different model.
    overrides = [*LONG, "train.steps=5", "train.log_every=1", "eval.metrics=[fid_cnn,is_cnn]"]
    with monkeypatch.context() as m:
        _sigterm_while_writing_step(m, 2)
        code, _, err = cli("train", *overrides, "hydra.run.dir=run", cwd=tmp_path)
    assert code == 128 + signal.SIGTERM, err
    command = shlex.split(err.split("continue with: ", 1)[1].strip())
    assert command[:2] == ["ganrun", "train"] and "model.width=8" in command
    assert "eval.metrics=[fid_cnn,is_cnn]" in command and "resume=auto" in command
    code, _, err = cli(*command[1:], cwd=tmp_path)
    assert code == 0, err
    assert load_checkpoint(tmp_path / "run/checkpoints/last.pt")["step"] == 5
    with (tmp_path / "run/metrics.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5]


def test_divergence_stops_and_keeps_last_good_checkpoint(cli, tmp_path, monkeypatch):
    real_step = GanModel.training_step
    done = []

    def poisoned(model, batches, noise):
        stats = real_step(model, batches, noise)
        done.append(1)
        if len(done) >= 5:  # the step being run is step 5
            stats["loss_d"] = stats["loss_d"] * float("nan")
        return stats

    monkeypatch.setattr(GanModel, "training_step", poisoned)
    code, out, err = cli(
        "train",
        *LONG,
        "train.steps=10",
        "train.checkpoint_every=3",
        "train.log_every=10",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert code == 2
    assert "diverged at step 5" in err and "loss_d" in err
    assert load_checkpoint(tmp_path / "run/checkpoints/last.pt")["step"] == 3
    assert not (tmp_path / "run/checkpoints/step_000006.pt").exists()


def test_disk_full_keeps_previous_checkpoint(cli, tmp_path, monkeypatch):
    code, _, _ = cli("train", *LONG, "train.steps=3", "hydra.run.dir=run", cwd=tmp_path)
    assert code == 0
    last = tmp_path / "run/checkpoints/last.pt"
    before = last.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ganrun.runs.checkpoint.torch, "save", full)
    with pytest.raises(GanrunError, match="No space left on device.*previous one is kept"):
        save_checkpoint({"step": 99}, last)
    assert last.read_bytes() == before
    assert [p.name for p in last.parent.iterdir() if p.name.startswith(".")] == []


class _Payload:
    """Unpickling this would create a marker file: the test checks it never runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_pickle_checkpoint_is_refused_without_running(cli, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "step": 1, "generator": _Payload(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(GanrunError, match="refusing to load"):
        load_checkpoint(evil)
    code, _, err = cli("train", *TINY, f"resume={evil}", "hydra.run.dir=run", cwd=tmp_path)
    assert code == 2 and "refusing to load" in err
    assert not marker.exists()


def test_checkpoint_format_errors(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint({"step": 1}, good)
    assert load_checkpoint(good)["format_version"] == FORMAT_VERSION

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(GanrunError, match="truncated or corrupt"):
        load_checkpoint(truncated)

    newer = tmp_path / "newer.pt"
    torch.save({"format_version": FORMAT_VERSION + 1}, newer)
    with pytest.raises(GanrunError, match="newer than this ganrun"):
        load_checkpoint(newer)

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(GanrunError, match="not a ganrun checkpoint"):
        load_checkpoint(foreign)

    with pytest.raises(GanrunError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resume_under_another_model_data_or_loss_is_refused(cli, tmp_path):
    code, _, _ = cli("train", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert code == 0
    last = tmp_path / "run/checkpoints/last.pt"
    before = last.read_bytes()
    for change, expected in (
        ("model.dropout_hidden=0.3", "model.dropout_hidden=0.0 (now 0.3)"),  # same shapes
        ("loss=hinge", "loss.name=non_saturating (now hinge)"),
        ("model.width=16", "model.width=8 (now 16)"),
    ):
        code, _, err = cli("train", *TINY, change, "hydra.run.dir=run", "resume=auto", cwd=tmp_path)
        assert code == 2 and f"was trained with {expected}" in err, err
        assert len(err.strip().splitlines()) == 1
    assert last.read_bytes() == before  # nothing written
    # Longer training, another learning rate and moved data are what resuming is for.
    code, _, err = cli(
        "train",
        *TINY,
        "train.steps=8",
        "optim.lr=1e-4",
        f"data.root={tmp_path / 'elsewhere'}",
        "hydra.run.dir=run",
        "resume=auto",
        cwd=tmp_path,
    )
    assert code == 0, err


def test_resume_from_checkpoint_of_another_shape(cli, tmp_path):
    # Checkpoints without a stored config are still checked, by their tensors' shapes.
    code, _, _ = cli("train", *TINY, "hydra.run.dir=small", cwd=tmp_path)
    assert code == 0
    ckpt = load_checkpoint(tmp_path / "small/checkpoints/last.pt")
    del ckpt["config"], ckpt["format_version"]
    save_checkpoint(ckpt, tmp_path / "bare.pt")
    code, _, err = cli(
        "train",
        *TINY,
        "model.width=16",
        "hydra.run.dir=big",
        f"resume={tmp_path / 'bare.pt'}",
        cwd=tmp_path,
    )
    assert code == 2 and "does not fit this model" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "big").exists()  # rejected before anything was written


def test_a_run_written_on_a_gpu_continues_on_a_cpu(cli, tmp_path):
    # A CUDA generator's state (Philox: seed and offset, 16 bytes) cannot be loaded into a CPU
    # generator (Mersenne Twister, 5,056 bytes): the two streams it fed continue from fresh
    # seeds, the rest of the state is restored, and the log says the run is not bit-identical.
    code, _, err = cli("train", *TINY, "train.steps=3", "hydra.run.dir=run", cwd=tmp_path)
    assert code == 0, err
    last = tmp_path / "run/checkpoints/last.pt"
    ckpt = load_checkpoint(last)
    cuda_state = torch.zeros(16, dtype=torch.uint8)
    ckpt["rng"]["noise"] = cuda_state
    ckpt["rng"]["data"]["generator"] = cuda_state.clone()
    ckpt["rng"]["cuda"] = [cuda_state.clone()]
    save_checkpoint(ckpt, last)
    code, _, err = cli("train", *TINY, "hydra.run.dir=run", "resume=auto", cwd=tmp_path)
    assert code == 0, err
    moved = load_checkpoint(last)
    assert moved["step"] == 6 and moved["rng"]["noise"].numel() > 16
    log = (tmp_path / "run/train.log").read_text()
    assert "written on another kind of device than cpu" in log
    assert "training noise and data order continue from fresh seeds" in log
    with (tmp_path / "run/metrics.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5, 6]
    # Its weights at step 3 are the saved ones, so it differs from the uninterrupted run only
    # after the move.
    code, _, err = cli("train", *TINY, "hydra.run.dir=full", cwd=tmp_path)
    full = load_checkpoint(tmp_path / "full/checkpoints/step_000003.pt")
    saved = load_checkpoint(tmp_path / "run/checkpoints/step_000003.pt")
    for key, value in full["networks"]["generator"].items():
        assert torch.equal(value, saved["networks"]["generator"][key]), key


def test_periodic_evaluation_keeps_best_checkpoint(cli, tmp_path):
    code, out, err = cli(
        "train",
        *TINY,
        "model=vae",
        "model.g_hidden=[32]",
        "eval=fast",
        "eval.metrics=[elbo]",
        "eval.every=3",
        "eval.at_end=true",  # the last step is scored once, by eval.every
        "eval.best_mode=max",
        "eval.likelihood_examples=50",
        "train.steps=6",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert "step 6 was scored already: " in out
    best = load_checkpoint(tmp_path / "run/checkpoints/best.pt")
    last = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert best["best"]["metric"].startswith("elbo")
    assert best["step"] == best["best"]["step"] in (3, 6)
    assert last["step"] == 6 and last["best"] == best["best"]
    with (tmp_path / "run/eval.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["checkpoint"] for r in rows] == [
        "checkpoints/step_000003.pt",
        "checkpoints/step_000006.pt",
    ]


def test_periodic_evaluation_needs_metrics(cli, tmp_path):
    code, _, err = cli("train", *TINY, "eval.every=2", cwd=tmp_path)
    assert code == 2 and "eval.every=2" in err


def test_periodic_evaluation_unknown_best_metric(cli, tmp_path):
    args = ["model=vae", "model.g_hidden=[32]", "eval=fast", "eval.metrics=[elbo]"]
    code, _, err = cli(
        "train",
        *TINY,
        *args,
        "eval.every=3",
        "eval.best_metric=fid",
        "eval.likelihood_examples=50",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert code == 2 and err.count("\n") == 1, err
    assert "eval.best_metric=fid is not a score" in err and "elbo" in err
    assert load_checkpoint(tmp_path / "run/checkpoints/step_000003.pt")["step"] == 3


def test_existing_run_folder_needs_resume(cli, tmp_path):
    assert cli("train", *TINY, "hydra.run.dir=run", cwd=tmp_path)[0] == 0
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    code, _, err = cli("train", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert code == 2 and err.count("\n") == 1, err
    assert "already holds a run" in err and "resume=auto" in err
    after = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert after == before


def _processes_with(fragment: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if fragment in cmdline:
            pids.append(int(proc.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the job process through /proc")
def test_submitit_preemption_checkpoints_requeues_and_resumes(tmp_path):
    """submitit's preemption signal (USR2) mid-run: the step finishes, a checkpoint is written,
    submitit requeues the job, and the requeued job continues from that checkpoint."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    steps = ["train.steps=200", "train.checkpoint_every=1000", "train.log_every=1"]
    proc = spawn_cli(
        ["train", "-m", "hydra/launcher=submitit_local", "hydra.sweep.dir=sweep", *LONG, *steps],
        tmp_path,
    )
    wait_for_rows(tmp_path / "sweep/0/metrics.csv", 10, proc)
    jobs = _processes_with(f"submitit.core._submit {tmp_path}")
    assert len(jobs) == 1, jobs
    os.kill(jobs[0], signal.SIGUSR2)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err

    run = tmp_path / "sweep/0"
    log = (run / "train.log").read_text()
    resumed = [line for line in log.splitlines() if "continuing from step" in line]
    assert len(resumed) == 1, log
    at = int(resumed[0].split("continuing from step ")[1].split()[0])
    assert 10 <= at < 200
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 200
    with (run / "metrics.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 201))
    submitit_logs = "".join(p.read_text() for p in (tmp_path / "sweep/.submitit").rglob("*.out"))
    assert "Requeued job" in submitit_logs
