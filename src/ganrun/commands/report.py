"""``ganrun report sweep=<multirun folder>`` (or ``run=<run folder>``): tables and plots.

Reads only what runs already wrote (metrics.csv, .hydra/overrides.yaml, eval.csv, samples/) and
writes ``<target>/report/`` (or ``out=``):

- ``report.md`` and ``report.csv``: one row per job with its overrides, steps, training time,
  final training values, and for each evaluated metric its value at the last scored checkpoint
  and its best value over all scored checkpoints, sorted by ``sort_by``;
- ``losses.png`` and one figure per other panel the runs' families put statistics in (the GANs':
  ``d_outputs.png``, D(x) and D(G(z))), ``metrics.png`` (evaluated metrics over steps): one line
  per job;
- ``samples.png``: the latest sample grid of every job side by side;
- ``progress.png``: each job's sample figures over training, a row per job (up to
  :data:`PROGRESS_STEPS` steps, evenly spaced from the first to the last), e.g. the 1-D
  densities of the 2014 paper's Figure 1 (a) to (d) as they happened.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from ganrun.errors import GanrunError
from ganrun.images import save_plot
from ganrun.metrics import HIGHER, THEORY, direction
from ganrun.models import all_families
from ganrun.models.family import Statistic
from ganrun.runs.files import atomic_write, check_writable, natural_key, read_metrics_csv
from ganrun.runs.layout import CONFIG_FILE, METRICS_FILE, SAMPLE_GRIDS, SAMPLES
from ganrun.runs.results import EVAL_CSV, META_COLUMNS, read_csv

log = logging.getLogger("ganrun")

REPORT_DIR = "report"
NOT_PLOTTED = ("step", "sec_per_step")
LOSSES = "losses"  # the panel of every training value its family puts in no other


def higher_is_better(column: str) -> bool:
    """Whether a larger value ranks first: as the metric or the training statistic that writes
    the column declares (``best_<metric>`` ranks like its metric); everything else is
    minimised."""
    name = column.removeprefix("best_")
    better = direction(name)
    if better is not None:
        return better == HIGHER
    stat = _declared(name)
    return stat is not None and stat.higher


def _declared(name: str) -> Statistic | None:
    for family in all_families():
        for stat in family.statistics:
            if stat.name == name:
                return stat
    return next((stat for stat in THEORY if stat.name == name), None)


def panel_of(column: str) -> str:
    """The report figure a metrics.csv column belongs to, as its family declares it."""
    stat = _declared(column)
    return stat.panel if stat is not None else LOSSES


def panel_title(panel: str, columns: list[str]) -> str:
    if panel == LOSSES:
        return LOSSES
    meanings = [(_declared(c), c) for c in columns]
    return "; ".join(f"{s.meaning} ({c})" if s else c for s, c in meanings)


@dataclass
class Job:
    """What one run folder holds, as numbers."""

    name: str
    path: Path
    overrides: list[str]
    history: dict[str, list[float]]  # metrics.csv columns
    evals: list[dict[str, str]] = field(default_factory=list)  # eval.csv rows
    objective: str | None = None

    @property
    def steps(self) -> int:
        column = self.history.get("step", [])
        return int(column[-1]) if column else 0


# ---------------------------------------------------------------------------------- reading
def _read_yaml(path: Path, kind: type, what: str) -> Any:
    """A run's YAML file, or None where it is missing or damaged (then with a warning that says
    what the report goes without)."""
    if not path.is_file():
        return None
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        loaded = None
    if not isinstance(loaded, kind):
        log.warning("%s does not parse; the report goes without %s", path, what)
        return None
    return loaded


def _read_overrides(run_dir: Path) -> list[str]:
    loaded = _read_yaml(run_dir / ".hydra" / "overrides.yaml", list, "the run's overrides")
    return [str(o) for o in loaded or []]


def _read_objective(run_dir: Path) -> str | None:
    loaded = _read_yaml(run_dir / CONFIG_FILE, dict, "the run's objective")
    return None if loaded is None else loaded.get("objective")


def _read_history(path: Path) -> dict[str, list[float]]:
    table = read_metrics_csv(path)
    if table.damaged:
        log.warning("%s: %d damaged row(s) left out of the report", path, table.damaged)
    return table.columns()


def find_runs(cfg: DictConfig) -> tuple[Path, list[Path]]:
    given = [k for k in ("sweep", "run") if cfg[k]]
    if len(given) != 1:
        raise GanrunError(
            "say what to report on with exactly one of sweep=<multirun folder> or "
            f"run=<run folder> (got {', '.join(given) or 'none'})"
        )
    key = given[0]
    target = Path(cfg[key]).expanduser()
    if not target.is_dir():
        raise GanrunError(f"{key}={cfg[key]} is not a folder")
    if key == "run":
        if not (target / METRICS_FILE).is_file():
            raise GanrunError(f"run={cfg.run} has no {METRICS_FILE}; is it a ganrun run folder?")
        return target, [target]
    runs = sorted(
        (p.parent for p in target.rglob(METRICS_FILE)),
        key=lambda p: natural_key(p.relative_to(target).as_posix()),
    )
    if not runs:
        raise GanrunError(f"sweep={cfg.sweep} holds no runs (no */{METRICS_FILE} below it)")
    return target, runs


def load_job(target: Path, run_dir: Path) -> Job:
    name = run_dir.relative_to(target).as_posix() if run_dir != target else run_dir.name
    return Job(
        name,
        run_dir,
        _read_overrides(run_dir),
        _read_history(run_dir / METRICS_FILE),
        read_csv(run_dir / EVAL_CSV),
        _read_objective(run_dir),
    )


# ---------------------------------------------------------------------------------- the table
def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def eval_metrics(job: Job) -> dict[str, list[tuple[int, float]]]:
    """Each evaluated metric as (step, value) pairs; a checkpoint scored twice counts once."""
    series: dict[str, dict[int, float]] = {}
    for row in sorted(job.evals, key=lambda r: r.get("timestamp") or ""):
        step = _number(row.get("step"))
        if step is None:
            continue
        for key, value in row.items():
            number = _number(value)
            if key in META_COLUMNS or "." in key or number is None:
                continue
            series.setdefault(key, {})[int(step)] = number  # the newest scoring wins
    return {k: sorted(v.items()) for k, v in series.items()}


def varying(jobs: list[Job]) -> tuple[list[str], dict[str, list[str]]]:
    """Overrides every job shares, and each job's own (the sweep's parameters)."""
    common = set(jobs[0].overrides)
    for job in jobs[1:]:
        common &= set(job.overrides)
    shared = [o for o in jobs[0].overrides if o in common] if len(jobs) > 1 else []
    own = {
        job.name: [o for o in job.overrides if o not in common or len(jobs) == 1] for job in jobs
    }
    return shared, own


def table(jobs: list[Job]) -> tuple[list[str], list[dict[str, Any]]]:
    _, own = varying(jobs)
    rows: list[dict[str, Any]] = []
    for job in jobs:
        row: dict[str, Any] = {
            "job": job.name,
            "overrides": " ".join(own[job.name]),
            "steps": job.steps,
        }
        seconds = job.history.get("sec_per_step", [])
        row["time_s"] = round(sum(s for s in seconds if math.isfinite(s)), 3)
        for name, values in job.history.items():
            finite = [v for v in values if not math.isnan(v)]  # measured every few steps only
            if name not in NOT_PLOTTED and finite:
                row[name] = finite[-1]
        for name, points in eval_metrics(job).items():
            values = [v for _, v in points]
            row[name] = values[-1]
            if direction(name) is not None:  # a spread, a count or a setting has no best
                row[f"best_{name}"] = max(values) if higher_is_better(name) else min(values)
        rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    silent = {c for c in columns if _says_nothing(c, rows)}
    kept = [{k: v for k, v in row.items() if k not in silent} for row in rows]
    return [c for c in columns if c not in silent], kept


def _says_nothing(column: str, rows: list[dict[str, Any]]) -> bool:
    """A ``best_<metric>`` column equal to ``<metric>`` in every row (each run's best score is
    its last, as when every run scored one checkpoint)."""
    if not column.startswith("best_"):
        return False
    last = column.removeprefix("best_")
    return all(row.get(column) == row.get(last) for row in rows)


def default_sort(columns: list[str], jobs: list[Job]) -> str | None:
    for job in jobs:
        if job.objective and job.objective in columns:
            return job.objective
    for prefix in ("best_fid", "fid", "best_kid", "kid", "best_"):
        for c in columns:
            if c.startswith(prefix) and direction(c.removeprefix("best_")) is not None:
                return c
    return "loss_g" if "loss_g" in columns else None


def sort_rows(rows: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    present = [r for r in rows if _number(r.get(key)) is not None]
    missing = [r for r in rows if _number(r.get(key)) is None]  # unscored jobs go last
    present.sort(key=lambda r: float(r[key]), reverse=descending)
    return present + missing


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")


def markdown(columns: list[str], rows: list[dict[str, Any]], title: str, notes: list[str]) -> str:
    lines = [f"# {title}", "", *notes, ""] if notes else [f"# {title}", ""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def optuna_notes(target: Path) -> list[str]:
    """The Optuna sweeper's verdict (optimization_results.yaml), when there is one."""
    path = target / "optimization_results.yaml"
    if not path.is_file():
        return []
    try:
        result = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return []
    params = " ".join(f"{k}={v}" for k, v in (result.get("best_params") or {}).items())
    return [f"Optuna best: {params} (objective {result.get('best_value')})", ""]


# ---------------------------------------------------------------------------------- the plots
def _smooth(values: list[float]) -> list[float]:
    """A running mean over ~1% of the steps: per-step GAN losses are too noisy to compare."""
    window = max(1, len(values) // 100)
    if window == 1:
        return values
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _line_plot(
    path: Path,
    jobs: list[Job],
    labels: dict[str, str],
    panels: list[str],
    series: Any,
    xlabel: str,
    title: str,
) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in panels if any(series(job, p) for job in jobs)]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for job in jobs:
            points = series(job, panel)
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, label=labels[job.name], marker="o" if len(xs) < 5 else None)
        ax.set_title(panel)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        loc="lower center",
        ncol=min(4, len(names)),
        fontsize="small",
        bbox_to_anchor=(0.5, 0.0),
    )
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(names) / 4), 1, 1))
    save_plot(fig, path, dpi=100)
    plt.close(fig)
    return path


def _history_series(job: Job, column: str) -> list[tuple[float, float]]:
    # Values measured every few steps only (the theory's) leave the other cells empty (NaN).
    pairs = [
        (s, v)
        for s, v in zip(job.history.get("step", []), job.history.get(column, []), strict=False)
        if not math.isnan(v)
    ]
    if not pairs:
        return []
    steps, values = zip(*pairs, strict=True)
    return list(zip(steps, _smooth(list(values)), strict=True))


def _eval_series(job: Job, metric: str) -> list[tuple[int, float]]:
    return eval_metrics(job).get(metric, [])


def sample_grids(job: Job) -> list[Path]:
    """The run's training sample grids, in step order."""
    return sorted((job.path / SAMPLES).glob(SAMPLE_GRIDS), key=lambda p: natural_key(p.name))


def latest_sample(job: Job) -> Path | None:
    grids = sample_grids(job)
    return grids[-1] if grids else None


Cell = tuple[tuple[int, int], Path, str]  # (row, column), a PNG, its title


def _picture_table(
    path: Path, cells: list[Cell], shape: tuple[int, int], size: tuple[float, float], dpi: int
) -> Path:
    """PNG files in a table of ``shape`` (rows, columns) panels of ``size`` inches, each under
    its title; panels without a picture stay blank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    (rows, cols), (width, height) = shape, size
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for (row, col), picture, title in cells:
        with Image.open(picture) as image:
            # Nearest: a grid's pixels stay blocks at any panel size, as in the PNG itself.
            axes[row, col].imshow(image.convert("RGB"), interpolation="nearest")
        axes[row, col].set_title(title, fontsize="small")
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    save_plot(fig, path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def samples_figure(path: Path, jobs: list[Job], labels: dict[str, str]) -> Path | None:
    """The latest sample grid of every run, four to a row."""
    grids = [(job, latest_sample(job)) for job in jobs]
    grids = [(job, g) for job, g in grids if g is not None]
    if not grids:
        return None
    cols = min(4, len(grids))
    cells = [
        ((i // cols, i % cols), grid, f"{labels[job.name]}\n{grid.stem}")
        for i, (job, grid) in enumerate(grids)
    ]
    return _picture_table(path, cells, (math.ceil(len(grids) / cols), cols), (3.2, 3.5), 100)


PROGRESS_STEPS = 5


def progress_figure(path: Path, jobs: list[Job], labels: dict[str, str]) -> Path | None:
    """Each run's sample grids over training, one run to a row: ``PROGRESS_STEPS`` of them,
    evenly spaced from the first to the last."""
    strips = []
    for job in jobs:
        grids = sample_grids(job)
        if len(grids) > PROGRESS_STEPS:
            last = len(grids) - 1
            picks = sorted({round(i * last / (PROGRESS_STEPS - 1)) for i in range(PROGRESS_STEPS)})
            grids = [grids[i] for i in picks]
        if len(grids) > 1:
            strips.append((job, grids))
    if not strips:
        return None
    cells = [
        ((row, col), grid, grid.stem if col else f"{labels[job.name]}\n{grid.stem}")
        for row, (job, grids) in enumerate(strips)
        for col, grid in enumerate(grids)
    ]
    cols = max(len(grids) for _, grids in strips)
    return _picture_table(path, cells, (len(strips), cols), (3.6, 3.0), 120)


def plots(out: Path, jobs: list[Job]) -> list[Path]:
    _, own = varying(jobs)
    labels = {
        job.name: f"{job.name}: {' '.join(own[job.name])}".strip().rstrip(":") for job in jobs
    }
    columns: list[str] = []
    for job in jobs:
        columns.extend(c for c in job.history if c not in columns)
    panels: dict[str, list[str]] = {LOSSES: []}
    for column in columns:
        if column not in NOT_PLOTTED:
            panels.setdefault(panel_of(column), []).append(column)
    metrics: list[str] = []
    for job in jobs:
        metrics.extend(m for m in eval_metrics(job) if m not in metrics and not m.endswith("_std"))
    made = [
        _line_plot(
            out / f"{name}.png",
            jobs,
            labels,
            shown,
            _history_series,
            "step",
            panel_title(name, shown),
        )
        for name, shown in panels.items()
    ]
    made += [
        _line_plot(
            out / "metrics.png", jobs, labels, metrics, _eval_series, "step", "evaluated metrics"
        ),
        samples_figure(out / "samples.png", jobs, labels),
        progress_figure(out / "progress.png", jobs, labels),
    ]
    return [p for p in made if p is not None]


# ---------------------------------------------------------------------------------- command
def run(cfg: DictConfig) -> Path:
    target, run_dirs = find_runs(cfg)
    jobs = [load_job(target, d) for d in run_dirs]
    columns, rows = table(jobs)
    key = cfg.sort_by or default_sort(columns, jobs)
    if key is not None and key not in columns and key.removeprefix("best_") in columns:
        key = key.removeprefix("best_")  # left out as the same as the last score in every row
    if key is not None and key not in columns:
        numeric = [c for c in columns if c not in ("job", "overrides")]
        raise GanrunError(
            f"sort_by={key} is not a column of this report; choose one of: {', '.join(numeric)}"
        )
    if key is not None:
        descending = higher_is_better(key) if cfg.descending is None else cfg.descending
        rows = sort_rows(rows, key, descending)
    out = Path(cfg.out).expanduser() if cfg.out else target / REPORT_DIR
    check_writable(out, "choose another out=")
    shared, _ = varying(jobs)
    notes = optuna_notes(target)
    if shared:
        notes.append(f"Common overrides: `{' '.join(shared)}`")
    if key is not None:
        order = (
            "descending"
            if (cfg.descending if cfg.descending is not None else higher_is_better(key))
            else "ascending"
        )
        notes.append(
            f"Sorted by `{key}` ({order}). `best_<metric>` is the best value over all "
            "scored checkpoints, shown where it differs from the last; `time_s` is the summed "
            "time of the training steps."
        )
    text = markdown(columns, rows, f"ganrun report: {target}", notes)
    atomic_write(out / "report.md", text)
    atomic_write(out / "report.csv", csv_text(columns, rows))
    written = [out / "report.md", out / "report.csv"]
    if cfg.plots:
        written += plots(out, jobs)
    print(text, flush=True)
    print(
        f"ganrun: report on {len(jobs)} run(s) -> {', '.join(str(p) for p in written)}", flush=True
    )
    return out
