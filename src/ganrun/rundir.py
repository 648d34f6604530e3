"""The run folder: what goes where, and writing its config files once the config is valid."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

CONFIG_FILE = "config.yaml"  # the resolved config, what `ganrun eval` rebuilds a run from
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
METRICS_FILE = "metrics.csv"
LOG_FILE = "train.log"


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
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(OmegaConf.to_yaml(cfg, resolve=True))
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(exist_ok=True)
    (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        (hydra_dir / "overrides.yaml").write_text(OmegaConf.to_yaml(list(hc.overrides.task)))
        (hydra_dir / "hydra.yaml").write_text(OmegaConf.to_yaml({"hydra": hc}))


def attach_log_file(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / LOG_FILE)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler
