"""Multi-GPU (or multi-process CPU) training with torch DDP, launched by torchrun.

``torchrun --nproc_per_node=N -m ganrun train ...`` starts N processes; torchrun's RANK,
WORLD_SIZE and LOCAL_RANK switch this on (a plain ``ganrun train``, multirun jobs included, stays
one process). Each rank:

- trains on its own shard of the training split (every WORLD_SIZE-th image) with its own noise,
  ``train.batch_size`` images per rank per step (the global batch is N times that);
- runs the model's networks inside DistributedDataParallel, so gradients are averaged across
  ranks and the weights stay identical. Steps that DDP's hooks cannot follow (the VAE's calls
  ``elbo_terms``, not ``forward``; ``train.simultaneous`` makes two partial backward passes; a
  family says so with ``Model.uses_ddp``) average the gradients themselves with one all-reduce
  (:func:`average_gradients`, handed to the model as ``Model.sync_gradients``);
- writes nothing: rank 0 alone owns the run folder (config, log, metrics, samples, checkpoints,
  eval.at_end). The other ranks train into a scratch folder that is deleted at the end.

Checkpoints hold the unwrapped networks' state dicts, so they load in a single process
(``ganrun eval``, ``ganrun sample``, ``resume=``) like any other checkpoint.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from ganrun.errors import GanrunError
from ganrun.runs.layout import last_checkpoint, remove_if_empty

log = logging.getLogger("ganrun")


def requested() -> bool:
    """True inside a torchrun launch of more than one process."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


class _DDP(DistributedDataParallel):
    """DDP that stays out of the way where no gradients will be synchronised.

    A GAN step calls D without gradients for D's weights (the G step) and G under no_grad (fakes
    for the D step, sample grids on rank 0 alone). Going through DDP there would prepare a
    gradient reduction that never happens, or start a collective only one rank joins; calling
    the module directly computes the same thing. State dicts are the module's, without DDP's
    ``module.`` prefix, so checkpoints load in a single process."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled() or not any(
            p.requires_grad for p in self.module.parameters()
        ):
            return self.module(*args, **kwargs)
        return super().forward(*args, **kwargs)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, **kwargs: Any) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict, **kwargs)


def average_gradients(*modules: torch.nn.Module | None) -> None:
    """Average these modules' gradients over the torchrun ranks; nothing in one process.

    For the steps DDP cannot follow. One flat all-reduce: every rank has gradients for the same
    parameters, as each runs the same graph."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [p.grad for m in modules if m is not None for p in m.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


@torch.no_grad()
def _broadcast_weights(*modules: torch.nn.Module | None) -> None:
    """Rank 0's weights everywhere, as DDP does when it wraps a module."""
    import torch.distributed as dist

    for m in modules:
        if m is not None:
            for t in [*m.parameters(), *m.buffers()]:
                dist.broadcast(t, src=0)


@dataclass
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    run_dir: Path  # rank 0's run folder, the one everything is written to
    scratch: Path | None = None  # where a rank other than 0 writes (deleted at the end)
    _stdout: Any = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def out_dir(self) -> Path:
        """Where this rank's trainer writes: the run folder on rank 0, scratch elsewhere."""
        return self.run_dir if self.scratch is None else self.scratch

    def device(self, device: torch.device) -> torch.device:
        """Each process on its own GPU: cuda:LOCAL_RANK."""
        if device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def prepare(self, setup: Any) -> None:
        """Give this process its shard of the training split and wrap the model's networks
        (after the optimizers are built: DDP keeps the same parameter tensors), or, for steps
        that average their own gradients, give every rank rank 0's weights."""
        if hasattr(setup.batches, "sharded"):
            setup.batches = setup.batches.sharded(self.rank, self.world_size)
        if setup.cfg.train.batch_size > len(setup.batches):
            raise GanrunError(
                f"train.batch_size={setup.cfg.train.batch_size} (per process) is larger than "
                f"the {len(setup.batches)} training images of each of the {self.world_size} "
                "shards; lower train.batch_size"
            )
        model = setup.model
        if not model.uses_ddp:
            _broadcast_weights(*model.networks.values())
            model.sync_gradients = average_gradients
            return
        device_ids = [self.local_rank] if setup.device.type == "cuda" else None
        for name, net in model.networks.items():
            model.networks[name] = _DDP(net, device_ids=device_ids)

    def diverge(self, trainer: Any, seed: int) -> None:
        """Give ranks other than 0 their own noise and data order (rank 0 keeps the stream a
        single-process run would have)."""
        if self.main:
            return
        offset = 1_000_003 * self.rank + trainer.step
        trainer.noise.manual_seed(seed + 1 + offset)
        trainer.setup.batches.seed(seed + 3 + offset)

    def resume_target(self, resume: str) -> str:
        """``resume=auto`` means rank 0's run folder on every rank."""
        if resume == "auto" and not self.main:
            last = last_checkpoint(self.run_dir)
            return str(last) if last.exists() else "auto"
        return resume

    def close(self) -> None:
        import torch.distributed as dist

        if self._stdout is not None:
            sys.stdout.close()
            sys.stdout = self._stdout
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        if dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def start(device_type: str, hydra_dir: Path) -> Distributed:
    """Join torchrun's process group and agree on rank 0's run folder."""
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "mps":
        raise GanrunError("torchrun training needs device=cuda or device=cpu, not mps")
    cuda = device_type in ("cuda", "auto") and torch.cuda.is_available()
    if device_type == "cuda" and not cuda:
        raise GanrunError("device=cuda was asked for but no GPU is visible; use device=cpu")
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise GanrunError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} "
                "GPU(s) are visible; lower torchrun's --nproc_per_node"
            )
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        kwargs = (
            {"device_id": torch.device("cuda", local_rank)}
            if cuda and "device_id" in inspect.signature(dist.init_process_group).parameters
            else {}
        )
        dist.init_process_group("nccl" if cuda else "gloo", **kwargs)
    # Hydra named a folder in every process, from each one's clock; rank 0's wins.
    shared = [str(hydra_dir)]
    dist.broadcast_object_list(shared, src=0)
    run_dir = Path(shared[0])
    ctx = Distributed(rank, world_size, local_rank, run_dir)
    if rank != 0:
        if hydra_dir.resolve() != run_dir.resolve():
            remove_if_empty(hydra_dir)
        ctx.scratch = Path(tempfile.mkdtemp(prefix=f"ganrun-rank{rank}-"))
        # One console for the whole job: rank 0's. Warnings and errors still show.
        logging.getLogger("ganrun").setLevel(logging.WARNING)
        ctx._stdout = sys.stdout
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (restored and closed in close())
    else:
        log.info(
            "DDP: %d processes (%s backend); train.batch_size is per process",
            world_size,
            dist.get_backend(),
        )
    return ctx
