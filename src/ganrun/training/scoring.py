"""Scoring the model while it trains (``eval.every``) and when it is done (``eval.at_end``).

The model in memory and the data already loaded are scored through the very function
``ganrun eval`` uses (:mod:`ganrun.metrics.scoring`), and the record is stored the same way, under
the checkpoint that holds these weights. Scoring leaves training as it found it: every random
state is put back, the networks return to the modes they were in, and autocast
(``trainer.precision``) is off while scoring, so the score is that of the saved checkpoint.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganrun.errors import GanrunError
from ganrun.metrics.scoring import announce, check_eval_config, plan, score, summary
from ganrun.runs.checkpoint import Snapshot
from ganrun.runs.layout import last_checkpoint
from ganrun.runs.results import write_record
from ganrun.training.accelerate import full_precision
from ganrun.training.setup import Setup


@contextlib.contextmanager
def _random_state_kept(device: torch.device) -> Iterator[None]:
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    np.random.set_state(numpy_state)
    random.setstate(python_state)


class Scorer:
    """Scores ``setup``'s model with the run's ``eval`` config (see the module docs)."""

    def __init__(self, setup: Setup, run_dir: Path) -> None:
        self.setup = setup
        self.run_dir = run_dir
        self.latest: tuple[int, dict[str, Any]] | None = None  # the last step scored, its record

    def _snapshot(self, step: int, checkpoint: Path) -> Snapshot:
        s = self.setup
        return Snapshot(checkpoint, s.cfg, s.model, s.data, step)

    def check(self) -> None:
        """Refuse, before training, a protocol that cannot score this model and data."""
        cfg = self.setup.cfg
        check_eval_config(cfg.eval)
        if not cfg.eval.metrics:
            raise GanrunError(
                f"eval.at_end=true with eval={cfg.eval.name}, which has no metrics; "
                "choose a preset such as eval=fast"
            )
        plan(self._snapshot(0, last_checkpoint(self.run_dir)), cfg.eval, self.setup.device)

    def __call__(self, step: int, checkpoint: Path, say_so: bool = False) -> dict[str, Any]:
        """Score the weights of ``step`` (saved in ``checkpoint``) and store the record;
        ``say_so`` prints what is being scored first. A step scored already (``eval.every``
        reaching the last step, then ``eval.at_end``) is not scored twice: its record is
        returned."""
        if self.latest is not None and self.latest[0] == step:
            print(f"ganrun: step {step} was scored already: {summary(self.latest[1])}", flush=True)
            return self.latest[1]
        s = self.setup
        networks = list(s.model.networks.values())
        with _random_state_kept(s.device), full_precision(networks):
            job = plan(self._snapshot(step, checkpoint), s.cfg.eval, s.device)
            if say_so:
                print(announce(job, s.cfg.eval), flush=True)
            record = score(job, s.cfg.eval)
        out = write_record(checkpoint, record)
        print(f"ganrun: {summary(record)} -> {out}", flush=True)
        self.latest = (step, record)
        return record
