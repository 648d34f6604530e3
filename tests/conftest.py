"""Shared helpers: run the real CLI in a subprocess, compose configs in-process."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

import ganrun.config.schema  # noqa: F401  (registers the command schemas)
from ganrun.models import all_families
from ganrun.runs.checkpoint import load_checkpoint

all_families()  # registers the model families' schemas
CONFIGS = Path(ganrun.config.schema.__file__).parents[1] / "configs"
SHARED_DATA = Path(
    os.environ.get("GANRUN_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data")
)

# A tiny, fast training config for end-to-end runs.
TINY = [
    "train.steps=6",
    "train.batch_size=16",
    "train.log_every=2",
    "train.sample_every=3",
    "train.checkpoint_every=3",
    "train.num_samples=16",
    "model.width=8",
    "device=cpu",
]

# eval=fast on tiny runs: small enough to be quick, large enough for the FID rule (>= 128
# samples a side for the classifier's features).
FAST = [
    "eval=fast",
    "eval.num_samples=200",
    "eval.num_real=150",
    "eval.kid_subsets=5",
    "eval.kid_subset_size=50",
    "eval.classifier_epochs=1",
    "device=cpu",
]


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m ganrun <args>`` in ``cwd``; returns the finished process (text output)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("GANRUN_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "ganrun", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def spawn_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    """``python -m ganrun <args>`` started in the background (text pipes), for tests that
    signal, kill or race it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GANRUN_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "ganrun", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def wait_for_rows(metrics: Path, rows: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until a running training has written ``rows`` rows of metrics.csv."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if metrics.exists() and len(metrics.read_text().splitlines()) > rows:
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{metrics} never reached {rows} rows")


def checkpoint_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint's networks, averages and optimizer states, by name: what
    "the same run, bit for bit" compares."""
    ckpt = load_checkpoint(path)
    out = {
        f"{part}.{net}.{k}": v
        for part in ("networks", "averages")
        for net, state in ckpt[part].items()
        for k, v in state.items()
    }
    for net, state in ckpt["optimizers"].items():
        for i, values in state["state"].items():
            out.update({f"optimizers.{net}.{i}.{k}": v for k, v in values.items()})
    return out


def assert_one_line_error(
    result: subprocess.CompletedProcess | tuple[int, str, str], *fragments: str
) -> None:
    """A user error: exit code 2, one stderr line starting 'ganrun: error:', no traceback.
    ``result``: a finished process, or what the ``cli`` fixture returns (code, stdout, stderr)."""
    if isinstance(result, tuple):
        code, out, err = result
    else:
        code, out, err = result.returncode, result.stdout, result.stderr
    assert code == 2, (code, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("ganrun: error: "), err
    assert "Traceback" not in err + out
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """In-process CLI runs let Hydra point a console handler at pytest's captured stdout, which is
    closed after that test; later tests that log would then print 'Logging error' noise."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``ganrun`` in this process (fast): ``cli(*args, cwd=path) -> (code, stdout, stderr)``."""
    from ganrun.cli import main

    def call(*args: str, cwd: Path) -> tuple[int, str, str]:
        monkeypatch.chdir(cwd)
        monkeypatch.delenv("GANRUN_DEBUG", raising=False)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return call


@contextmanager
def composed(
    overrides: list[str] | None = None, config_name: str = "train"
) -> Iterator[DictConfig]:
    with initialize_config_module("ganrun.configs", version_base=None):
        yield compose(config_name=config_name, overrides=overrides or [])


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
