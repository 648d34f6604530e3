"""Scoring one model at one step: the function ``ganrun eval`` and in-training scoring share.

:func:`plan` runs every up-front check (the eval config's ranges, each metric's applicability
and refusals) before anything is computed; :func:`score` runs the planned metrics and returns the
record that :mod:`ganrun.runs.results` stores.
"""

from __future__ import annotations

import datetime
import re
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ganrun import __version__
from ganrun.errors import GanrunError, require_one_of
from ganrun.metrics import METRICS, REPRESENTATION_QUERIES, EvalContext, Metric
from ganrun.metrics.cache import CACHE_FIX
from ganrun.metrics.classifier import data_key
from ganrun.metrics.fidelity import INCEPTION_IMPLS
from ganrun.models import family_of, model_names
from ganrun.runs.checkpoint import Snapshot
from ganrun.runs.files import check_writable
from ganrun.runs.layout import checkpoint_name

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def check_eval_config(e: DictConfig) -> None:
    """Ranges and names of the ``eval`` group (shared by ``ganrun eval`` and training)."""
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
    for key in ("num_real", "likelihood_examples", "test_examples", "representation_examples"):
        if e[key] < 0:
            raise GanrunError(f"eval.{key}={e[key]} must be non-negative (0 = all)")
    if e.seed < 0:
        raise GanrunError(f"eval.seed={e.seed} must be non-negative")
    require_one_of(e.inception_impl, INCEPTION_IMPLS, "eval.inception_impl")
    require_one_of(e.representation_queries, REPRESENTATION_QUERIES, "eval.representation_queries")
    if e.inception_weights_sha256 and not _SHA256.match(e.inception_weights_sha256):
        raise GanrunError(
            f"eval.inception_weights_sha256={e.inception_weights_sha256} is not a "
            "sha256 (64 hex digits)"
        )


@dataclass
class Job:
    ctx: EvalContext
    metrics: list[tuple[str, Metric]]
    skipped: dict[str, str] = field(default_factory=dict)


def plan(snapshot: Snapshot, eval_cfg: DictConfig, device: torch.device) -> Job:
    """Which metrics apply to ``snapshot``, after running every up-front check."""
    ctx = EvalContext(snapshot, eval_cfg, device)
    ctx.reference_set()  # eval.reference is read and checked before any metric
    job = Job(ctx, [])
    for name in eval_cfg.metrics:
        metric = METRICS[name]
        reason = metric.applies(ctx)
        if reason is not None:
            job.skipped[name] = reason
            continue
        if metric.check is not None:
            metric.check(ctx)
        limit, want = ctx.model.sample_limit, eval_cfg[metric.draws]
        if limit is not None and metric.needs == "samples" and want > limit:
            raise GanrunError(
                f"{name} scores eval.{metric.draws}={want} samples, but {snapshot.path} holds "
                f"{limit}; lower eval.{metric.draws} to {limit} or give more images"
            )
        job.metrics.append((name, metric))
    if any(metric.cached for _, metric in job.metrics):
        # Reference features and their statistics, at Inception's 2,048 dimensions at most.
        need = 2 * 4 * ctx.num_real() * 2048 + 8 * 2048**2 + 2**24
        check_writable(eval_cfg.cache_dir, CACHE_FIX, need, "reference features to cache")
    if not job.metrics:
        raise GanrunError(
            f"none of eval.metrics ({', '.join(eval_cfg.metrics) or 'empty'}) applies to "
            f"{snapshot.path}: "
            + "; ".join(f"{k}: {v}" for k, v in job.skipped.items())
            + " (choose other metrics or another eval= preset)"
        )
    return job


def score(job: Job, eval_cfg: DictConfig) -> dict[str, Any]:
    """Run the job's metrics; the record that :mod:`ganrun.runs.results` stores."""
    ctx = job.ctx
    start = time.perf_counter()
    values: dict[str, Any] = {}
    protocol: dict[str, Any] = {}
    with ctx.model.evaluating():
        for name, metric in job.metrics:
            t0 = time.perf_counter()
            out, how = metric.compute(ctx)
            declared = metric.column_names(ctx.info.name)
            if sorted(out) != sorted(declared):  # the registry line is what ranks these values
                raise RuntimeError(f"metric {name} returned {sorted(out)}, declares {declared}")
            values.update(out)
            protocol[name] = {
                **how,
                **(ctx.snapshot.source or {}),
                "wall_time_s": round(time.perf_counter() - t0, 3),
            }
    snapshot = ctx.snapshot
    model_cfg = snapshot.config.get("model") or ctx.model.cfg  # given samples have no run config
    family = family_of(model_cfg.name) if model_cfg.name in model_names() else None
    return {
        "checkpoint": checkpoint_name(snapshot.path),
        "step": snapshot.step,
        "preset": eval_cfg.name,
        "weights": snapshot.weights,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "ganrun_version": __version__,
        "torch_version": torch.__version__,
        "device": str(ctx.device),
        "model": model_cfg.name,
        "arch": family.arch(model_cfg) if family is not None else None,
        "data": snapshot.config.data.name,
        # What the data's content depends on (resolution, framing, ...): a floor or a score read
        # later is read against the very images it was measured on.
        "data_options": data_key(OmegaConf.to_container(snapshot.config.data, resolve=True)),
        "metrics": values,
        "protocol": protocol,
        "skipped": dict(job.skipped),
        "eval_config": OmegaConf.to_container(eval_cfg, resolve=True),
    }


def announce(job: Job, eval_cfg: DictConfig) -> str:
    # Inception metrics on a CPU take half an hour per checkpoint with nothing else printed, which
    # reads as a hang, or (after training's "done") as a finished job.
    names = ", ".join(name for name, _ in job.metrics)
    where = checkpoint_name(job.ctx.snapshot.path)
    return f"ganrun: scoring {where} (eval={eval_cfg.name}: {names})"


def summary(record: dict[str, Any]) -> str:
    parts = [
        f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in record["metrics"].items()
    ]
    return f"{record['checkpoint']} (step {record['step']}): " + ", ".join(parts)
