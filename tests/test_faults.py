"""The faults users meet: two processes on one run folder, places that cannot be written, a
disk that fills half-way, and files that were edited, cut short or are not what they claim.
Each ends in a one-line error or a warning with a count, never a traceback, never a wrong
number, and nothing already written is lost."""

from __future__ import annotations

import csv
import errno
import json
import multiprocessing
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import ganrun.runs.files
from ganrun.errors import GanrunError
from ganrun.runs.checkpoint import load_checkpoint
from ganrun.runs.results import write_record
from tests.conftest import FAST, TINY, assert_one_line_error, run_cli, spawn_cli, wait_for_rows

LONG = [o for o in TINY if not o.startswith(("train.steps", "train.checkpoint_every"))]
SLOW = [*LONG, "train.steps=100000", "train.checkpoint_every=100000", "train.log_every=1"]


def _steps(run: Path) -> list[int]:
    with (run / "metrics.csv").open(newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


# ------------------------------------------------------------------ one writer per run folder
def test_a_second_writer_is_refused_while_the_first_trains(tmp_path):
    first = spawn_cli(["train", *SLOW, "hydra.run.dir=run"], tmp_path)
    wait_for_rows(tmp_path / "run/metrics.csv", 3, first)
    second = run_cli("train", *SLOW, "resume=auto", "hydra.run.dir=run", cwd=tmp_path)
    assert_one_line_error(second, "run is being written by another ganrun process")
    assert f"pid {first.pid} on " in second.stderr and "resume=auto" in second.stderr
    assert first.poll() is None  # the first run goes on, untouched
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    stopped_at = load_checkpoint(tmp_path / "run/checkpoints/last.pt")["step"]
    # Once it has stopped, the folder is free: the same command continues the run.
    more = [o if not o.startswith("train.steps") else f"train.steps={stopped_at + 3}" for o in SLOW]
    resumed = run_cli("train", *more, "resume=auto", "hydra.run.dir=run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert _steps(tmp_path / "run") == list(range(1, stopped_at + 4))
    assert (tmp_path / "run/.ganrun.lock").read_bytes() == b""  # let go, and says so


def test_a_killed_writer_leaves_no_stale_lock(tmp_path):
    # A checkpoint every 2 steps over SLOW's 100000 would ask for ~50 GB of room; 2000 steps
    # ask for ~1 GB and still run long after the kill.
    often = [*LONG, "train.steps=2000", "train.checkpoint_every=2", "train.log_every=1"]
    first = spawn_cli(["train", *often, "hydra.run.dir=run"], tmp_path)
    wait_for_rows(tmp_path / "run/metrics.csv", 4, first)
    first.kill()
    first.wait()
    killed_at = load_checkpoint(tmp_path / "run/checkpoints/last.pt")["step"]
    more = [*SLOW[:-3], f"train.steps={killed_at + 2}"]
    resumed = run_cli("train", *more, "resume=auto", "hydra.run.dir=run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr


def test_two_runs_started_at_once_in_one_folder(tmp_path):
    args = ["train", *LONG, "train.steps=300", "hydra.run.dir=run"]
    procs = [spawn_cli(args, tmp_path) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2)
    assert_one_line_error((2, "", refused))
    assert "being written by another" in refused or "already holds a run" in refused
    assert _steps(tmp_path / "run") == list(range(1, 301))  # one writer's rows, in order


def _write_records(run: str, worker: int, count: int) -> None:
    for i in range(count):
        name = f"step_{worker:06d}.pt"
        write_record(
            Path(run) / "checkpoints" / name,
            {
                "checkpoint": f"checkpoints/{name}",
                "step": worker,
                "preset": f"preset{i}",
                "metrics": {"fid": float(worker * 100 + i)},
                "protocol": {},
            },
        )


def test_concurrent_scorings_of_one_run_keep_every_record(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_write_records, args=(str(run), w, 8)) for w in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    with (run / "eval.csv").open(newline="") as f:
        rows = {(r["checkpoint"], r["preset"]): float(r["fid"]) for r in csv.DictReader(f)}
    assert len(rows) == 48
    assert rows[("checkpoints/step_000005.pt", "preset7")] == 507.0
    for w in range(6):
        stored = json.loads((run / f"eval/step_{w:06d}/metrics.json").read_text())
        assert sorted(stored["results"]) == [f"preset{i}" for i in range(8)]


# -------------------------------------------------------------------- places that cannot be written
def _lock_out(folder: Path) -> list[str] | None:
    """Make ``folder`` unwritable, for root too (immutable) where chattr works, else by its
    permissions; the command that undoes it, or None where neither holds (then: skip)."""
    undo: list[str] | None = ["chmod", "755", str(folder)]
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        undo = ["chattr", "-i", str(folder)] if done else None
    else:
        folder.chmod(0o555)
    try:
        (folder / ".probe").touch()
    except OSError:
        return undo
    (folder / ".probe").unlink()
    if undo:
        subprocess.run(undo, check=True)
    return None


@pytest.fixture
def lock_out() -> Iterator:
    undo: list[list[str]] = []

    def make(folder: Path) -> Path:
        command = _lock_out(folder)
        if command is None:
            pytest.skip("no way to make a folder unwritable here")
        undo.append(command)
        return folder

    yield make
    for command in undo:
        subprocess.run(command, check=True)


@pytest.fixture
def unwritable(tmp_path, lock_out) -> Path:
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "inside.txt").write_text("kept")
    return lock_out(folder)


def test_run_folder_under_a_file_or_an_unwritable_folder(cli, tmp_path, unwritable):
    (tmp_path / "a_file").write_text("not a folder")
    for where, fragment in (
        ("a_file/run", "cannot create a_file/run (Not a directory)"),
        (f"{unwritable}/run", "choose another hydra.run.dir"),
    ):
        code, out, err = cli("train", *TINY, f"hydra.run.dir={where}", cwd=tmp_path)
        assert_one_line_error((code, out, err), fragment)
    code, out, err = cli(
        "train", "-m", "seed=0,1", *TINY, f"hydra.sweep.dir={unwritable}/s", cwd=tmp_path
    )
    assert_one_line_error((code, out, err), "hydra.sweep.dir")
    # An existing folder that cannot be written: refused before anything is read or trained.
    code, out, err = cli("train", *TINY, "resume=auto", f"hydra.run.dir={unwritable}", cwd=tmp_path)
    assert_one_line_error((code, out, err), f"cannot write in the run folder {unwritable}")
    assert sorted(p.name for p in unwritable.iterdir()) == ["inside.txt"]


def test_outputs_of_eval_sample_and_report_are_checked_first(cli, tmp_path, unwritable):
    assert cli("train", *TINY, "hydra.run.dir=run", cwd=tmp_path)[0] == 0
    (tmp_path / "a_file").write_text("not a folder")
    before = sorted(p for p in (tmp_path / "run").rglob("*"))
    ckpt = "checkpoint=run/checkpoints/last.pt"
    for args, fragment in (
        (["eval", ckpt, *FAST, "eval.cache_dir=a_file/cache"], "eval.cache_dir"),
        (["eval", ckpt, *FAST, f"eval.cache_dir={unwritable}/cache"], "cannot write in"),
        (["sample", ckpt, "out=a_file/grid.png"], "choose another out="),
        (["sample", ckpt, f"out={unwritable}/grid.png"], "choose another out="),
        (["report", "run=run", "out=a_file/report"], "choose another out="),
    ):
        code, out, err = cli(*args, cwd=tmp_path)
        assert_one_line_error((code, out, err), fragment)
    assert sorted(p for p in (tmp_path / "run").rglob("*")) == before


def test_a_run_folder_scores_cannot_be_written_into(cli, tmp_path, lock_out):
    code, out, err = cli("train", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert code == 0, err
    run = lock_out(tmp_path / "run")
    code, out, err = cli("eval", f"run={run}", *FAST, cwd=tmp_path)
    assert_one_line_error((code, out, err), "scores are written into the run folder")


def test_too_little_space_is_refused_before_writing(cli, tmp_path, monkeypatch):
    usage = ganrun.runs.files.shutil.disk_usage

    def almost_full(path):
        return usage(path)._replace(free=2**20)

    monkeypatch.setattr(ganrun.runs.files.shutil, "disk_usage", almost_full)
    code, out, err = cli("train", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert_one_line_error((code, out, err), "MiB free, less than the", "checkpoints of")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- failing half-way
def test_metrics_csv_that_cannot_be_written_keeps_the_last_checkpoint(cli, tmp_path, monkeypatch):
    import ganrun.training.logs as logs

    class FillsUp:
        """metrics.csv on a disk that fills after a few windows."""

        def __init__(self, file):
            self.file, self.flushes = file, 0

        def write(self, text):
            return self.file.write(text)

        def flush(self):
            self.flushes += 1
            if self.flushes > 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.file.flush()

        def close(self):
            self.file.close()

    init = logs.MetricsLog.__init__

    def on_a_filling_disk(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.file = FillsUp(self.file)
        self.writer = logs.csv.writer(self.file)

    monkeypatch.setattr(logs.MetricsLog, "__init__", on_a_filling_disk)
    args = [*LONG, "train.steps=12", "train.checkpoint_every=2", "train.log_every=1"]
    code, out, err = cli("train", *args, "hydra.run.dir=run", cwd=tmp_path)
    assert_one_line_error((code, out, err), "No space left on device", "checkpoint is kept")
    assert load_checkpoint(tmp_path / "run/checkpoints/last.pt")["step"] == 2


def test_a_record_that_cannot_be_written_keeps_the_previous_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    _write_records(str(run), 1, 1)
    before = (run / "eval.csv").read_bytes()
    replace = os.replace

    def disk_full(src, dst):
        if str(dst).endswith("eval.csv"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return replace(src, dst)

    monkeypatch.setattr(ganrun.runs.files.os, "replace", disk_full)
    with pytest.raises(GanrunError, match="No space.*previous one is kept"):
        _write_records(str(run), 2, 1)
    assert (run / "eval.csv").read_bytes() == before
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []


# ------------------------------------------------------------------------------ damaged files
def test_a_damaged_metrics_csv_is_set_aside_on_resume(cli, tmp_path):
    half = [o if not o.startswith("train.steps") else "train.steps=3" for o in TINY]
    assert cli("train", *half, "hydra.run.dir=run", cwd=tmp_path)[0] == 0
    metrics = tmp_path / "run/metrics.csv"
    lines = metrics.read_text().splitlines(keepends=True)
    lines[2] = "2,garbled\n"  # a row edited by hand
    metrics.write_text("".join(lines))
    code, out, err = cli("train", *TINY, "resume=auto", "hydra.run.dir=run", cwd=tmp_path)
    assert code == 0, err
    assert "1 damaged row(s)" in out and "metrics.csv.damaged" in out
    assert _steps(tmp_path / "run") == [1, 3, 4, 5, 6]
    assert (tmp_path / "run/metrics.csv.damaged").read_text() == "".join(lines)


def test_metrics_csv_with_other_columns_is_refused_on_resume(cli, tmp_path):
    half = [o if not o.startswith("train.steps") else "train.steps=3" for o in TINY]
    assert cli("train", *half, "hydra.run.dir=run", cwd=tmp_path)[0] == 0
    metrics = tmp_path / "run/metrics.csv"
    metrics.write_text(metrics.read_text().replace("loss_d,loss_g", "loss_g,loss_d", 1))
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    code, out, err = cli("train", *TINY, "resume=auto", "hydra.run.dir=run", cwd=tmp_path)
    assert_one_line_error((code, out, err), "has the columns step,loss_g,loss_d")
    after = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert after == before


def test_report_reads_damaged_run_folders_with_warnings(cli, tmp_path):
    for job in ("0", "1"):
        assert cli("train", *TINY, f"hydra.run.dir=s/{job}", cwd=tmp_path)[0] == 0
    (tmp_path / "s/0/config.yaml").write_text("objective: [unclosed\n")
    (tmp_path / "s/0/.hydra/overrides.yaml").write_text("[unclosed\n")
    with (tmp_path / "s/1/metrics.csv").open("a") as f:
        f.write("7,0.1")  # cut short by a crash
    (tmp_path / "s/1/eval.csv").write_text("checkpoint,step,fid\ncheckpoints/last.pt,6\n")
    code, out, err = cli("report", "sweep=s", "plots=false", cwd=tmp_path)
    assert code == 0 and "Traceback" not in out + err, err
    assert "config.yaml does not parse" in out and "overrides.yaml does not parse" in out
    assert "1 damaged row(s) left out of the report" in out
    assert "eval.csv: 1 damaged row(s) left out" in out
    with (tmp_path / "s/report/report.csv").open(newline="") as f:
        rows = {r["job"]: r for r in csv.DictReader(f)}
    assert rows["1"]["steps"] == "6" and "fid" not in rows["1"]


def test_damaged_metrics_json_and_eval_csv_are_kept_aside(tmp_path, caplog):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    _write_records(str(run), 1, 1)
    (run / "eval/step_000001/metrics.json").write_text('{"results": {"preset0": ')
    with (run / "eval.csv").open("a") as f:
        f.write("checkpoints/x.pt\n")
    with caplog.at_level("WARNING", logger="ganrun"):
        _write_records(str(run), 1, 2)
    assert (run / "eval/step_000001/metrics.json.damaged").is_file()
    assert (run / "eval.csv.damaged").read_text().endswith("checkpoints/x.pt\n")
    stored = json.loads((run / "eval/step_000001/metrics.json").read_text())
    assert sorted(stored["results"]) == ["preset0", "preset1"]
    assert "does not parse" in caplog.text and "1 damaged row(s)" in caplog.text


def test_cache_entries_that_are_not_what_they_claim_are_computed_again(tmp_path, caplog):
    from ganrun.metrics.cache import entry_path, key_text, load_or_compute, save_entry

    key = {"data": "digits", "num": 3}
    path = entry_path(tmp_path, "reference", key)
    calls = []

    def compute():
        calls.append(1)
        return {"features": torch.ones(3, 2), "mu": torch.ones(2), "sigma": torch.eye(2)}

    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")  # torn or foreign
    with caplog.at_level("WARNING", logger="ganrun"):
        payload, cached = load_or_compute(path, compute, key, ("features", "mu", "sigma"))
    assert not cached and len(calls) == 1 and "does not parse" in caplog.text
    again, cached = load_or_compute(path, compute, key, ("features",))
    assert cached and torch.equal(again["features"], payload["features"]) and len(calls) == 1
    # An entry recorded for another key (a file copied between caches, a hash collision)
    other = {**compute(), "cache_key": key_text({"data": "mnist", "num": 3})}
    save_entry(path, other)
    _, cached = load_or_compute(path, compute, key, ("features",))
    assert not cached and len(calls) == 3
    save_entry(path, {"mu": torch.ones(2)})  # a field missing
    _, cached = load_or_compute(path, compute, key, ("features", "mu", "sigma"))
    assert not cached and len(calls) == 4


def test_image_folders_with_unreadable_or_absurd_files(tmp_path, monkeypatch):
    from PIL import Image

    from ganrun.data import build_data
    from tests.test_data import data_config, make_folder

    make_folder(tmp_path, flat=6, size=(8, 8))
    (tmp_path / "img_900.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    (tmp_path / "img_901.png").write_bytes(b"not an image at all")
    cfg = data_config("folder", tmp_path, resolution=8, num_workers=0)
    with pytest.raises(GanrunError) as info:
        build_data(cfg, (-1.0, 1.0), torch.device("cpu"))
    message = str(info.value)
    assert "img_900.png cannot be read as an image" in message and "\n" not in message
    assert "nor can 1 more of the 8 files" in message
    (tmp_path / "img_900.png").unlink()
    (tmp_path / "img_901.png").unlink()
    # A header that claims more pixels than PIL decodes safely: a decompression bomb.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)
    with pytest.raises(GanrunError, match="decompression bomb"):
        build_data(cfg, (-1.0, 1.0), torch.device("cpu"))
