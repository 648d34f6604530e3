"""``ganrun eval``: score a checkpoint, every checkpoint of a run, every run of a sweep, or
images made elsewhere (``samples=<file.npz|folder> data=<name>``).

Everything that can be refused is refused before the first metric runs and before anything is
written: the target, the eval config's ranges, each checkpoint (loadable, rebuildable from its
saved config, its data present) and each metric's own conditions (sample counts, splits,
Inception weights). Then each checkpoint is scored (:mod:`ganrun.metrics.scoring`) and its record
written next to its run (:mod:`ganrun.runs.results`).
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ganrun.devices import configure_threads, resolve_device
from ganrun.errors import GanrunError
from ganrun.metrics.scoring import announce, check_eval_config, plan, score, summary
from ganrun.runs.checkpoint import Snapshot, restore
from ganrun.runs.files import check_writable, natural_key
from ganrun.runs.layout import BEST, CHECKPOINTS, LAST, STEP_CHECKPOINTS, run_dir_of
from ganrun.runs.results import EVAL_CSV, write_record

PICKS = {"last": LAST, "best": BEST}
RESULTS_FIX = "scores are written into the run folder: make it writable, or score a copy of it"


def _step_of(path: Path) -> int:
    match = re.search(r"(\d+)$", path.stem)
    return int(match.group(1)) if match else -1


def _target(cfg: DictConfig) -> str:
    """Which of checkpoint=, run=, sweep= or samples= says what to score (exactly one)."""
    given = [k for k in ("checkpoint", "run", "sweep", "samples") if cfg[k]]
    if len(given) != 1:
        raise GanrunError(
            "say what to score with exactly one of checkpoint=<file>, run=<run folder>, "
            f"sweep=<multirun folder> or samples=<file.npz|folder> (got "
            f"{', '.join(given) or 'none'})"
        )
    key = given[0]
    if key != "samples":
        for option in ("data", "out"):
            if cfg[option] is not None:
                raise GanrunError(
                    f"{option}= applies to samples= only: a checkpoint is scored against its own "
                    f"data and its record goes to its run folder; leave {option}= out"
                )
    return key


def find_checkpoints(cfg: DictConfig) -> list[Path]:
    key = _target(cfg)
    if cfg.pick not in PICKS:
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
        folder = where / CHECKPOINTS
        found = sorted(folder.glob(STEP_CHECKPOINTS), key=_step_of)
        if (folder / LAST).is_file():
            found.append(folder / LAST)  # dropped later if it repeats the last step file
        if not found:
            raise GanrunError(f"run={cfg.run} has no checkpoints ({folder}/*.pt)")
        return found
    runs = sorted((p.parent.parent for p in where.rglob(f"{CHECKPOINTS}/{LAST}")), key=natural_key)
    if not runs:
        raise GanrunError(f"sweep={cfg.sweep} holds no runs (no */{CHECKPOINTS}/{LAST} below it)")
    picked = [r / CHECKPOINTS / PICKS[cfg.pick] for r in runs]
    missing = [p for p in picked if not p.is_file()]
    if missing:
        raise GanrunError(
            f"pick={cfg.pick}: {missing[0]} does not exist ({len(missing)} of {len(runs)} runs "
            f"lack it; {BEST} is kept only by runs trained with eval.every); use pick=last"
        )
    return picked


def _check_all(
    paths: list[Path],
    eval_cfg: DictConfig,
    device: torch.device,
    restored: Callable[[Path], Snapshot],
) -> list[Path]:
    """Rebuild and plan every checkpoint once, so that anything that can be refused is refused
    before the first metric runs; the checkpoints to score (last.pt saved at the same step as a
    step_NNNNNN.pt is scored once). Only one model is in memory at a time."""
    todo: list[Path] = []
    seen: set[tuple[Path, int]] = set()
    for path in paths:
        snapshot = restored(path)
        key = (run_dir_of(path), snapshot.step)
        if key not in seen:
            seen.add(key)
            plan(snapshot, eval_cfg, device)
            check_writable(key[0], RESULTS_FIX)
            todo.append(path)
    return todo


def given_samples(cfg: DictConfig, device: torch.device) -> tuple[Snapshot, Path]:
    """Images made elsewhere (``samples=``) as something to score against ``data=``, and the
    folder their record goes to; every refusal before any feature is computed."""
    from ganrun.config.checks import check_data_config
    from ganrun.data import build_data
    from ganrun.data.external import read_image_set
    from ganrun.metrics.given import GivenSamples

    if cfg.data is None:
        raise GanrunError(
            "samples= needs data=<name>: the data set whose splits (and classifier) the images "
            "are scored against, e.g. data=mnist"
        )
    data_cfg = cfg.data
    if cfg.data_root is not None:
        data_cfg.root = cfg.data_root
    check_data_config(data_cfg)
    images = read_image_set(Path(cfg.samples))
    data = build_data(data_cfg, (0.0, 1.0), device)
    info = data.info
    if info.kind != "image":
        raise GanrunError(f"data={data_cfg.name} is not an image data set; samples= are images")
    if not images.fits(info):
        _, c, h, w = images.pixels.shape
        raise GanrunError(
            f"samples={cfg.samples} are {h}x{w} with {c} channel(s), data={data_cfg.name} is "
            f"{info.resolution}x{info.resolution} with {info.channels}: set data.resolution and "
            "data.channels to the images' (the data is resized to match), or resize the images"
        )
    source = {"samples_file": str(images.path), "samples_sha256": images.sha256}
    snapshot = Snapshot(
        images.path,
        OmegaConf.create({"data": data_cfg}),
        GivenSamples(images, info),
        data,
        0,
        source,
    )
    out = Path(cfg.out).expanduser() if cfg.out else run_dir_of(images.path)
    return snapshot, out


def score_given_samples(cfg: DictConfig, device: torch.device) -> None:
    snapshot, out = given_samples(cfg, device)
    job = plan(snapshot, cfg.eval, device)
    check_writable(out, "choose another out=")
    print(announce(job, cfg.eval), flush=True)
    record = score(job, cfg.eval)
    path = write_record(snapshot.path, record, out)
    print(f"ganrun: {summary(record)} -> {path}", flush=True)
    print(f"ganrun: eval done (eval={cfg.eval.name}). Results: {out / EVAL_CSV}", flush=True)


def run(cfg: DictConfig) -> None:
    check_eval_config(cfg.eval)
    target = _target(cfg)
    device = resolve_device(cfg.device.type)
    if device.type == "cpu":
        configure_threads()
    if target == "samples":
        score_given_samples(cfg, device)
        return
    paths = find_checkpoints(cfg)
    data: dict[str, Any] = {}  # data sets by config, loaded once for all checkpoints
    restored = functools.partial(restore, device=device, data_root=cfg.data_root, data_cache=data)
    todo = _check_all(paths, cfg.eval, device, restored)
    from tqdm import tqdm

    bar = tqdm(
        todo,
        desc="ganrun eval",
        unit="ckpt",
        file=sys.stderr,
        disable=len(todo) == 1 or not sys.stderr.isatty(),
    )
    written: set[Path] = set()
    for checkpoint in bar:
        job = plan(restored(checkpoint), cfg.eval, device)
        if bar.disable:  # else the bar shows what is being scored
            print(announce(job, cfg.eval), flush=True)
        record = score(job, cfg.eval)
        del job  # this checkpoint's model and samples go before the next one is loaded
        path = write_record(checkpoint, record)
        written.add(run_dir_of(checkpoint))
        bar.write(f"ganrun: {summary(record)} -> {path}", file=sys.stdout)
    csvs = ", ".join(str(d / EVAL_CSV) for d in sorted(written))
    print(
        f"ganrun: eval done ({len(todo)} checkpoint(s), eval={cfg.eval.name}). Results: {csvs}",
        flush=True,
    )
