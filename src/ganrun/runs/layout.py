"""The run folder: what goes where, and writing its config files once the config is valid.

<run>/config.yaml            the resolved config (what evaluation rebuilds the model from)
<run>/.hydra/                Hydra's unresolved config, overrides and settings
<run>/checkpoints/           last.pt, step_NNNNNN.pt, best.pt (runs.checkpoint)
<run>/samples/               step_NNNNNN.png (the family's figures)
<run>/metrics.csv            one row per training step
<run>/train.log              the log
<run>/eval/, <run>/eval.csv  evaluation records (runs.results)
<run>/generated/             what `ganrun sample` writes by default
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ganrun.errors import GanrunError
from ganrun.runs.files import atomic_write

CONFIG_FILE = "config.yaml"  # the resolved config, what `ganrun eval` rebuilds a run from
CHECKPOINTS = "checkpoints"
LAST = "last.pt"  # always the latest checkpoint
BEST = "best.pt"  # the best scored one (eval.every)
SAMPLES = "samples"
METRICS_FILE = "metrics.csv"
LOG_FILE = "train.log"
GENERATED = "generated"


def step_checkpoint(step: int) -> str:
    """The name of the checkpoint kept at ``step`` (every ``train.checkpoint_every`` steps)."""
    return f"step_{step:06d}.pt"


STEP_CHECKPOINTS = "step_*.pt"  # every checkpoint kept at a step


def figure_name(step: int, what: str = "") -> str:
    """The file name (without .png) of a figure of ``step`` in samples/: the sample grid, or
    ``what`` else the model shows (``recon``: ``recon_step_000100``)."""
    return f"{what}_step_{step:06d}" if what else f"step_{step:06d}"


SAMPLE_GRIDS = "step_*.png"  # the sample grids in samples/, one per step shown


def last_checkpoint(run_dir: Path) -> Path:
    return run_dir / CHECKPOINTS / LAST


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to (its parent for a checkpoint outside a run)."""
    checkpoint = Path(checkpoint)
    if checkpoint.parent.name == CHECKPOINTS:
        return checkpoint.parent.parent
    return checkpoint.parent


def checkpoint_name(checkpoint: Path) -> str:
    """How records name a checkpoint: relative to its run folder, so runs can be moved."""
    checkpoint = Path(checkpoint)
    return checkpoint.relative_to(run_dir_of(checkpoint)).as_posix()


def hydra_run_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def continue_command(run_dir: Path) -> str:
    """The command that continues this run: its own overrides, since a resume must keep the model,
    data and loss it was trained with, then ``resume=auto`` in the same folder."""
    task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    keep = [o for o in task if o.lstrip("+~").split("=", 1)[0] != "resume"]
    args = [*keep, "resume=auto", f"hydra.run.dir={run_dir}"]
    return "ganrun train " + " ".join(shlex.quote(a) for a in args)


def remove_if_empty(path: Path) -> None:
    """Hydra creates the run folder (and its date folder) before ganrun sees the config: drop the
    empty ones again when a check failed. rmdir only ever removes empty folders, so nothing
    written is lost; folders above the working directory are never touched."""
    cwd = Path.cwd().resolve()
    path = path.resolve()
    while path != cwd and cwd in path.parents:
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent


def write_run_config(run_dir: Path, cfg: DictConfig) -> None:
    """config.yaml (resolved) plus Hydra's usual .hydra/ files (unresolved config, overrides)."""
    atomic_write(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    hydra_dir = run_dir / ".hydra"
    atomic_write(hydra_dir / "config.yaml", OmegaConf.to_yaml(cfg))
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        atomic_write(hydra_dir / "overrides.yaml", OmegaConf.to_yaml(list(hc.overrides.task)))
        atomic_write(hydra_dir / "hydra.yaml", OmegaConf.to_yaml({"hydra": hc}))


class _LogFile(logging.FileHandler):
    """train.log, whose failures (a full disk) cost one warning, not a traceback per line: the
    run and its checkpoints matter more than its log."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        if not self.failed:
            self.failed = True
            print(
                f"ganrun: warning: cannot write {self.baseFilename}; the log goes on here only",
                file=sys.stderr,
            )


def attach_log_file(run_dir: Path) -> logging.Handler:
    try:
        handler = _LogFile(run_dir / LOG_FILE)
    except OSError as exc:
        raise GanrunError(f"cannot write {run_dir / LOG_FILE} ({exc.strerror or exc})") from exc
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler
