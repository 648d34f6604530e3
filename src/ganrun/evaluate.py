"""``ganrun eval``: score a checkpoint, every checkpoint of a run, or every run of a sweep.

Everything that can be refused is refused before the first metric runs and before anything is
written: the target, the eval config's ranges, each checkpoint (loadable, rebuildable from its
saved config, its data present) and each metric's own conditions (sample counts, splits,
Inception weights). Then each checkpoint is scored and its record written next to its run
(:mod:`ganrun.metrics.results`).
"""

from __future__ import annotations

import datetime
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ganrun import __version__
from ganrun.devices import configure_threads, resolve_device
from ganrun.errors import GanrunError
from ganrun.metrics import METRICS, EvalContext, Metric
from ganrun.metrics.results import EVAL_CSV, checkpoint_name, run_dir_of, write_record
from ganrun.models import arch_of
from ganrun.restore import Restored, restore

log = logging.getLogger("ganrun")

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def validate_eval_config(e: DictConfig) -> None:
    """Ranges and names of the ``eval`` group (shared by ``ganrun eval`` and ``eval.at_end``)."""
    unknown = [m for m in e.metrics if m not in METRICS]
    if unknown:
        raise GanrunError(
            f"unknown metric(s) in eval.metrics: {', '.join(unknown)}; choose from: "
            f"{', '.join(METRICS)}"
        )
    for key in (
        "num_samples",
        "batch_size",
        "kid_subsets",
        "kid_subset_size",
        "prc_neighborhood",
        "isc_splits",
        "classifier_epochs",
        "parzen_samples",
        "parzen_sigmas",
        "parzen_chunk",
        "iw_samples",
    ):
        if e[key] < 1:
            raise GanrunError(f"eval.{key}={e[key]} must be at least 1")
    for key in ("num_real", "likelihood_examples", "seed"):
        if e[key] < 0:
            raise GanrunError(
                f"eval.{key}={e[key]} must be non-negative (0 = all)"
                if key != "seed"
                else f"eval.seed={e[key]} must be non-negative"
            )
    if e.inception_weights_sha256 and not _SHA256.match(e.inception_weights_sha256):
        raise GanrunError(
            f"eval.inception_weights_sha256={e.inception_weights_sha256} is not a "
            "sha256 (64 hex digits)"
        )


# ------------------------------------------------------------------------------------ targets
def _step_of(path: Path) -> int:
    match = re.search(r"(\d+)$", path.stem)
    return int(match.group(1)) if match else -1


def _natural(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_checkpoints(cfg: DictConfig) -> list[Path]:
    given = [k for k in ("checkpoint", "run", "sweep") if cfg[k]]
    if len(given) != 1:
        raise GanrunError(
            "say what to score with exactly one of checkpoint=<file>, run=<run folder> or "
            f"sweep=<multirun folder> (got {', '.join(given) or 'none'})"
        )
    key = given[0]
    if cfg.pick not in ("last", "best"):
        raise GanrunError(f"pick={cfg.pick} must be last or best")
    if cfg.pick != "last" and key != "sweep":
        raise GanrunError(f"pick={cfg.pick} applies to sweep= only; with {key}= leave it out")
    where = Path(cfg[key]).expanduser()
    if key == "checkpoint":
        if not where.is_file():
            raise GanrunError(f"checkpoint={cfg.checkpoint} does not exist")
        return [where]
    if not where.is_dir():
        raise GanrunError(f"{key}={cfg[key]} is not a folder")
    if key == "run":
        folder = where / "checkpoints"
        found = sorted(folder.glob("step_*.pt"), key=_step_of)
        if (folder / "last.pt").is_file():
            found.append(folder / "last.pt")  # dropped later if it repeats the last step file
        if not found:
            raise GanrunError(f"run={cfg.run} has no checkpoints ({folder}/*.pt)")
        return found
    runs = sorted((p.parent.parent for p in where.rglob("checkpoints/last.pt")), key=_natural)
    if not runs:
        raise GanrunError(f"sweep={cfg.sweep} holds no runs (no */checkpoints/last.pt below it)")
    picked = [r / "checkpoints" / f"{cfg.pick}.pt" for r in runs]
    missing = [p for p in picked if not p.is_file()]
    if missing:
        raise GanrunError(
            f"pick={cfg.pick}: {missing[0]} does not exist ({len(missing)} of {len(runs)} runs "
            "lack it; best.pt is kept only by runs trained with eval.every); use pick=last"
        )
    return picked


# ------------------------------------------------------------------------------------ the plan
@dataclass
class Job:
    ctx: EvalContext
    metrics: list[tuple[str, Metric]]
    skipped: dict[str, str] = field(default_factory=dict)


def plan(ctx: EvalContext, eval_cfg: DictConfig) -> Job:
    """Which metrics apply to this checkpoint, after running every up-front check."""
    job = Job(ctx, [])
    for name in eval_cfg.metrics:
        metric = METRICS[name]
        reason = metric.applies(ctx)
        if reason is not None:
            job.skipped[name] = reason
            continue
        if metric.check is not None:
            metric.check(ctx)
        job.metrics.append((name, metric))
    if not job.metrics:
        raise GanrunError(
            f"none of eval.metrics ({', '.join(eval_cfg.metrics) or 'empty'}) applies to "
            f"{ctx.restored.path}: "
            + "; ".join(f"{k}: {v}" for k, v in job.skipped.items())
            + " (choose other metrics or another eval= preset)"
        )
    return job


def score(job: Job, eval_cfg: DictConfig) -> dict[str, Any]:
    """Run the job's metrics; the record that results.py stores."""
    ctx = job.ctx
    start = time.perf_counter()
    values: dict[str, Any] = {}
    protocol: dict[str, Any] = {}
    for name, metric in job.metrics:
        t0 = time.perf_counter()
        out, how = metric.compute(ctx)
        values.update(out)
        protocol[name] = {**how, "wall_time_s": round(time.perf_counter() - t0, 3)}
    restored = ctx.restored
    return {
        "checkpoint": checkpoint_name(restored.path),
        "step": restored.step,
        "preset": eval_cfg.name,
        "weights": restored.weights,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "ganrun_version": __version__,
        "torch_version": torch.__version__,
        "device": str(ctx.device),
        "model": restored.config.model.name,
        "arch": arch_of(restored.config.model),
        "data": restored.config.data.name,
        "metrics": values,
        "protocol": protocol,
        "skipped": dict(job.skipped),
        "eval_config": OmegaConf.to_container(eval_cfg, resolve=True),
    }


def _announce(job: Job, eval_cfg: DictConfig) -> None:
    # Inception metrics on a CPU take half an hour per checkpoint with nothing else printed, which
    # reads as a hang, or (after training's "done") as a finished job
    names = ", ".join(name for name, _ in job.metrics)
    where = checkpoint_name(job.ctx.restored.path)
    print(f"ganrun: scoring {where} (eval={eval_cfg.name}: {names})", flush=True)


def _summary(record: dict[str, Any]) -> str:
    parts = [
        f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in record["metrics"].items()
    ]
    return f"{record['checkpoint']} (step {record['step']}): " + ", ".join(parts)


def _prepare(
    paths: list[Path], eval_cfg: DictConfig, device: torch.device, data_root: str | None
) -> list[Job]:
    data_cache: dict[str, Any] = {}
    jobs: list[Job] = []
    seen: dict[tuple[Path, int], Path] = {}
    for path in paths:
        restored = restore(path, device, data_root, data_cache)
        key = (run_dir_of(path), restored.step)
        if key in seen:  # last.pt saved at the same step as a step_NNNNNN.pt: score it once
            continue
        seen[key] = path
        jobs.append(plan(EvalContext(restored, eval_cfg, device), eval_cfg))
    return jobs


def run(cfg: DictConfig) -> None:
    validate_eval_config(cfg.eval)
    paths = find_checkpoints(cfg)
    device = resolve_device(cfg.device.type)
    if device.type == "cpu":
        configure_threads()
    jobs = _prepare(paths, cfg.eval, device, cfg.data_root)
    from tqdm import tqdm

    bar = tqdm(
        jobs,
        desc="ganrun eval",
        unit="ckpt",
        file=sys.stderr,
        disable=len(jobs) == 1 or not sys.stderr.isatty(),
    )
    written: set[Path] = set()
    for job in bar:
        if bar.disable:  # else the bar shows what is being scored
            _announce(job, cfg.eval)
        record = score(job, cfg.eval)
        path = write_record(job.ctx.restored.path, record)
        written.add(run_dir_of(job.ctx.restored.path))
        job.ctx = None  # type: ignore[assignment]  (frees this checkpoint's samples and model)
        bar.write(f"ganrun: {_summary(record)} -> {path}", file=sys.stdout)
    csvs = ", ".join(str(d / EVAL_CSV) for d in sorted(written))
    print(
        f"ganrun: eval done ({len(jobs)} checkpoint(s), eval={cfg.eval.name}). Results: {csvs}",
        flush=True,
    )


# ------------------------------------------------------------------------- eval.at_end hook
def check_at_end(cfg: DictConfig, nets: Any, data: Any, device: torch.device) -> None:
    """``ganrun train ... eval.at_end=true``: refuse an unusable protocol before training."""
    validate_eval_config(cfg.eval)
    if not cfg.eval.metrics:
        raise GanrunError(
            f"eval.at_end=true with eval={cfg.eval.name}, which has no metrics; "
            "choose a preset such as eval=fast"
        )
    weights = "ema" if cfg.model.ema_decay > 0 else "generator"
    restored = Restored(Path("checkpoints/last.pt"), cfg, nets, data, 0, weights)
    plan(EvalContext(restored, cfg.eval, device), cfg.eval)


def evaluate_at_end(
    run_dir: Path, cfg: DictConfig, checkpoint: Path | None = None, announce: bool = False
) -> dict[str, Any]:
    """Score the run's final checkpoint (or ``checkpoint``, for ``eval.every`` during training)
    with the run's own eval config, and store the record. ``announce`` says so before scoring."""
    device = resolve_device(cfg.device.type)
    path = checkpoint or Path(run_dir) / "checkpoints" / "last.pt"
    restored = restore(path, device)
    job = plan(EvalContext(restored, cfg.eval, device), cfg.eval)
    if announce:
        _announce(job, cfg.eval)
    record = score(job, cfg.eval)
    out = write_record(path, record)
    print(f"ganrun: {_summary(record)} -> {out}", flush=True)
    return record
