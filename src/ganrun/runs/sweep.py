"""Sweep progress and the sweep objective.

:class:`SweepProgress` is a Hydra callback (listed under ``hydra.callbacks`` in ``train.yaml``).
It counts the jobs a sweep will run when the multirun starts and prints ``job i of n`` as each
one starts. Launchers that run jobs in other processes (joblib, submitit) rebuild the callbacks
there, so the count travels in an environment variable that those processes inherit.

:func:`objective_value` is what ``ganrun train`` returns to Hydra: the Optuna sweeper minimises
(or maximises) it; the basic launcher just records it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ganrun.errors import GanrunError
from ganrun.runs.files import read_metrics_csv

SWEEP_SIZE_ENV = "GANRUN_SWEEP_SIZE"


def count_jobs(config: DictConfig) -> int | None:
    """How many jobs this multirun will launch, or None when that is not known in advance
    (a sweep over an interval with the basic sweeper, an unknown sweeper)."""
    sweeper = config.hydra.sweeper
    target = str(sweeper.get("_target_", ""))
    if "optuna" in target.lower():
        return int(sweeper.n_trials)
    if not target.endswith("BasicSweeper"):
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = list(config.hydra.overrides.task)
    params = sweeper.get("params") or {}
    task += [f"{key}={value}" for key, value in params.items()]
    total = 1
    for override in OverridesParser.create().parse_overrides(task):
        if not override.is_sweep_override():
            continue
        if override.is_interval_sweep():
            return None
        total *= sum(1 for _ in override.sweep_string_iterator())
    return total


class SweepProgress(Callback):
    """``hydra.callbacks`` entry: announces each job of a multirun as ``job i of n``."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            n = count_jobs(config)
        except Exception:  # a sweep syntax we cannot count still runs; it only loses the "of n"
            n = None
        if n is None:
            os.environ.pop(SWEEP_SIZE_ENV, None)
        else:
            os.environ[SWEEP_SIZE_ENV] = str(n)
            print(f"ganrun: sweep of {n} job(s) -> {config.hydra.sweep.dir}", flush=True)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra = config.get("hydra")
        if hydra is None or not str(hydra.get("mode")).endswith("MULTIRUN"):
            return
        num = int(hydra.job.num) + 1
        size = os.environ.get(SWEEP_SIZE_ENV)
        of = f" of {size}" if size else ""
        overrides = " ".join(hydra.overrides.task) or "(no overrides)"
        print(f"ganrun: sweep job {num}{of}: {overrides}", flush=True)


def check_objective(name: str, statistics: list[str], at_end: bool) -> None:
    """Refuse, before training, an objective the run will certainly not produce: neither one of
    its training ``statistics`` (metrics.csv columns) nor, with ``eval.at_end``, a metric."""
    if name not in statistics and not at_end:
        raise GanrunError(
            f"objective={name} is not a training value of this run ({', '.join(statistics)}); "
            "for an evaluation metric (e.g. fid_digits_cnn) add eval.at_end=true with an eval= "
            "preset that computes it"
        )


def _last_row(metrics_csv: Path) -> dict[str, float]:
    """The final metrics.csv row: what a resumed run that had nothing left to train ends on."""
    try:
        table = read_metrics_csv(metrics_csv)
    except OSError:
        return {}
    out: dict[str, float] = {}
    for key, value in zip(table.header, table.rows[-1] if table.rows else [], strict=False):
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def objective_value(
    name: str,
    last: dict[str, float],
    evaluated: dict[str, Any] | None,
    metrics_csv: Path | None = None,
) -> float:
    """The value of ``objective=<name>``: a final training value (metrics.csv column) or, with
    ``eval.at_end=true``, a metric of the final evaluation (as named in eval.csv)."""
    if not last and metrics_csv is not None:
        last = _last_row(metrics_csv)
    if name in last:
        value = float(last[name])
    elif evaluated is not None and name in evaluated.get("metrics", {}):
        value = float(evaluated["metrics"][name])
    else:
        options = sorted(k for k in last if k != "step")
        if evaluated is not None:
            options += sorted(evaluated.get("metrics", {}))
        hint = ""
        if evaluated is None:
            hint = "; for an evaluation metric add eval.at_end=true and an eval= preset with it"
        raise GanrunError(
            f"objective={name} is not a value of this run; choose one of: {', '.join(options)}"
            + hint
        )
    if not math.isfinite(value):
        raise GanrunError(f"objective={name} is {value}, not a finite number")
    return value
