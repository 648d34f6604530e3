"""The command line: help, subcommand dispatch, Hydra features after the subcommand, errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import TINY, assert_one_line_error, run_cli


def test_top_level_help_lists_subcommands(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for sub in ("train", "eval", "sample", "report"):
        assert f"  {sub}" in proc.stdout


def test_train_help_shows_groups_and_options(tmp_path):
    proc = run_cli("train", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "== Config groups" in proc.stdout
    for group in ("model:", "data:", "loss:", "optim:", "device:", "eval:"):
        assert group in proc.stdout
    assert "batch_size" in proc.stdout
    assert not (tmp_path / "outputs").exists()


def test_cfg_job_prints_composed_config_with_overrides(tmp_path):
    proc = run_cli("train", "--cfg", "job", "optim.lr=1e-3", "+extra_key=7", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "lr: 0.001" in proc.stdout
    assert "extra_key: 7" in proc.stdout


def test_version(tmp_path):
    proc = run_cli("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("ganrun ")


def test_unknown_subcommand(tmp_path):
    assert_one_line_error(run_cli("trian", cwd=tmp_path), "unknown subcommand 'trian'")


def test_eval_data_keys_without_a_data_set_name_the_setting_to_use(tmp_path):
    result = run_cli("eval", "checkpoint=c.pt", "data.root=/elsewhere", cwd=tmp_path)
    assert_one_line_error(result, "data.root= needs data=<name>", "data_root=<folder>")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["train.steps=abc"], ["train.steps=abc", "Integer"]),
        (["train.nope=1"], ["train.nope"]),
        (["model=nope"], ["model/nope", "dcgan"]),
        (["device=cuda"], ["device=cuda", "CUDA is not available"]),
        (["train.steps=0"], ["train.steps=0"]),
        # an interpolation fails only when the job reads it, inside Hydra's job runner
        (["train.steps=${train.nothing}"], ["train.nothing", "not found"]),
        (["experiment=lucic2018_mnist", "model=wgan", "train.d_steps=0"], ["train.d_steps=0"]),
        (["optim.lr=-0.1"], ["optim.lr"]),
        (["train.batch_size=5000"], ["train.batch_size=5000", "1497"]),
        (["loss=wasserstein"], ["needs a critic"]),
        (["data.resolution=36"], ["data.resolution=36"]),
        (["--bogus", "train.steps=2"], ["unknown option '--bogus'", "ganrun train --help"]),
        (["--cfg", "everything"], ["--cfg", "invalid choice: 'everything'"]),
        (["train.steps=2", "--cfg"], ["--cfg", "expected one argument"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, args, fragments):
    code, out, err = cli("train", *args, cwd=tmp_path)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganrun: error: "), err
    assert "Traceback" not in out + err
    for fragment in fragments:
        assert fragment in lines[0]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_debug_flag_shows_traceback(tmp_path):
    proc = run_cli("--debug", "train", "device=cuda", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_hydra_run_dir_override(tmp_path):
    proc = run_cli("train", *TINY, "hydra.run.dir=custom/run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "custom/run/checkpoints/last.pt").is_file()
    assert "custom/run" in proc.stdout.strip().splitlines()[-1]


def test_info_flag(tmp_path):
    proc = run_cli("train", "--info", "searchpath", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ganrun.configs" in proc.stdout


def test_failed_submitit_job_is_one_line():
    from submitit.core.utils import FailedJobError, UncompletedJobError

    from ganrun.cli import _job_failure

    failed = FailedJobError(
        "Job (task=0) failed during processing with trace:\n----------------------\n"
        'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        "RuntimeError: CUDA out of memory\n----------------------\n"
        "You can check full logs with 'job.stderr(0)' and 'job.stdout(0)'or at paths:\n"
        "  - /sweep/.submitit/7/7_0_log.err\n  - /sweep/.submitit/7/7_0_log.out"
    )
    assert _job_failure(failed) == (
        "a sweep job failed: RuntimeError: CUDA out of memory "
        "(its log: /sweep/.submitit/7/7_0_log.err)"
    )
    timed_out = UncompletedJobError("Job not requeued because: timed-out too many times.")
    assert _job_failure(timed_out) == (
        "a sweep job failed: Job not requeued because: timed-out too many times."
    )


def test_closed_stdout_ends_quietly(tmp_path):
    read, write = os.pipe()
    os.close(read)  # the reader is gone, as after `ganrun train --help | head -1`
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ganrun", "train", "--help"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (141, "")
