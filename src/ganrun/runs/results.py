"""Where scores go: ``<run>/eval/<checkpoint>/metrics.json`` and ``<run>/eval.csv``.

metrics.json holds, per preset (``eval.name``), the full record of the last scoring of that
checkpoint: the model, its networks and data set, values, and per metric its protocol (library
and version, feature extractor and weights sha256, sample counts, reference split, seed), plus wall
time. eval.csv has one row per (checkpoint, preset) with the values and protocols flattened
(``<metric>.<protocol key>`` columns).
Scoring again replaces that checkpoint's row and preset entry; everything else is kept. Both
files are replaced atomically, under a lock on the run's ``.eval.lock``, so two processes scoring
one run (``ganrun eval`` twice, or beside training's ``eval.every``) never lose each other's
records. A file that does not parse is kept beside the new one as ``<name>.damaged``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

from ganrun.runs.files import atomic_write, locked, set_aside
from ganrun.runs.layout import run_dir_of

log = logging.getLogger("ganrun")

EVAL_DIR = "eval"
EVAL_CSV = "eval.csv"
METRICS_JSON = "metrics.json"
EVAL_LOCK = ".eval.lock"
# The columns of eval.csv that describe a scoring rather than score it; they come first.
META_COLUMNS = ("checkpoint", "step", "preset", "weights", "wall_time_s", "timestamp")


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One eval.csv row from a record."""
    row = {key: record.get(key) for key in META_COLUMNS}
    row.update(record["metrics"])
    for metric, protocol in record["protocol"].items():
        for key, value in protocol.items():
            row[f"{metric}.{key}"] = json.dumps(value) if isinstance(value, list | dict) else value
    for metric, reason in record.get("skipped", {}).items():
        row[f"{metric}.skipped"] = reason
    return row


def write_record(checkpoint: Path, record: dict[str, Any], run_dir: Path | None = None) -> Path:
    """Store one checkpoint's record in its run folder (or ``run_dir``); returns the
    metrics.json path."""
    checkpoint = Path(checkpoint)
    run_dir = run_dir_of(checkpoint) if run_dir is None else Path(run_dir)
    json_path = run_dir / EVAL_DIR / checkpoint.stem / METRICS_JSON
    with locked(run_dir / EVAL_LOCK):
        results = _stored_results(json_path)
        results[record["preset"]] = record
        payload = {"checkpoint": record["checkpoint"], "results": results}
        atomic_write(json_path, json.dumps(payload, indent=2, sort_keys=False) + "\n")
        _update_csv(run_dir / EVAL_CSV, flatten(record))
    return json_path


def _stored_results(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text())
        results = stored["results"]
        if not isinstance(results, dict):
            raise TypeError("results is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        set_aside(path, f"does not parse ({type(exc).__name__}); a new one is written")
        return {}
    return results


def read_csv(path: Path) -> list[dict[str, str]]:
    """eval.csv's rows; rows of another width than the header (cut short, edited) are left out,
    with a warning that counts them."""
    rows, damaged = _read_csv(path)
    if damaged:
        log.warning("%s: %d damaged row(s) left out", path, damaged)
    return rows


def _read_csv(path: Path) -> tuple[list[dict[str, str]], int]:
    if not path.is_file():
        return [], 0
    with path.open(newline="", errors="replace") as f:
        rows = list(csv.DictReader(f))
    good = [r for r in rows if None not in r and None not in r.values()]
    return good, len(rows) - len(good)


def _update_csv(path: Path, row: dict[str, Any]) -> None:
    kept, damaged = _read_csv(path)
    if damaged:
        set_aside(path, f"has {damaged} damaged row(s), left out of the one written now")
    rows: list[dict[str, Any]] = [
        old
        for old in kept
        if (old.get("checkpoint"), old.get("preset")) != (row["checkpoint"], row["preset"])
    ]
    rows.append(row)
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    first = [c for c in META_COLUMNS if c in columns]
    columns = first + [c for c in columns if c not in first]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buffer.getvalue())
