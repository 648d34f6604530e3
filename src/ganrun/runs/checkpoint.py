"""Checkpoints: the one module that writes and reads them, in every format ganrun has written.

A checkpoint is a plain dict of tensors, numbers, strings and containers, loaded with
``torch.load(weights_only=True)`` so loading never runs pickled code, and written atomically
(:func:`~ganrun.runs.files.atomic_write`), so a crash at any moment leaves the previous one whole.

Format 2 (this version), whatever the model family:

    format_version  2
    ganrun_version  the version that wrote it
    step            training steps done
    config          the resolved run config: the model is rebuilt from it, never from flags
    family          the model family (ganrun.models) whose networks these are
    networks        {name: state dict}, the family's named networks ("generator", ...)
    averages        {name: state dict}, EMA copies, by the name of the network they follow
    optimizers      {name: state dict}
    extra           the family's state beyond those (ganrun.models.family.Model.extra_state)
    best            {metric, value, step} of the best scoring so far (eval.every), or None
    channels_last   the networks' memory layout in training (absent before 2026-12-04: the
                    rule of then, trainer.channels_last=on, or auto on CUDA)
    rng             torch, cuda, numpy and python random states, the training noise generator
                    and the training split's sampler: what makes a resume bit-identical

Format 1 (ganrun before model families) had one generator and an optional discriminator:
``kind`` (gan | vae), ``generator``, ``discriminator``, ``ema``, ``opt_g``, ``opt_d`` beside the
same step, config, best and rng. :func:`load_checkpoint` reads it as format 2, so sampling,
scoring and resuming such runs work unchanged.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ganrun import __version__
from ganrun.config.schema import RunConfig, flat_settings
from ganrun.data import Data, build_data
from ganrun.errors import GanrunError
from ganrun.models import Model, build_model, family_named, family_of
from ganrun.runs.files import atomic_write

FORMAT_VERSION = 2

# Format 1's slots, per model kind: where each holds in format 2.
_FORMAT1_NETWORKS = {
    "gan": {"generator": "generator", "discriminator": "discriminator"},
    "vae": {"generator": "vae"},
}
_FORMAT1_OPTIMIZERS = {"opt_g": "generator", "opt_d": "discriminator"}


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` (format 2) to ``path`` atomically and durably."""
    path = Path(path)
    full = {"format_version": FORMAT_VERSION, **payload}
    return atomic_write(
        path, lambda f: torch.save(full, f), durable=True, what=f"checkpoint {path}"
    )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path`` as a format-2 dict, whichever format it was written in."""
    path = Path(path)
    if not path.is_file():
        raise GanrunError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise GanrunError(
            f"refusing to load {path}: it needs pickled code to load, which could run arbitrary "
            "commands (only plain tensors and containers are accepted)"
        ) from exc
    except Exception as exc:  # torch raises many types for damaged files (RuntimeError, ...)
        raise GanrunError(
            f"checkpoint {path} is truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise GanrunError(f"{path} is not a ganrun checkpoint")
    version = payload["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise GanrunError(
            f"checkpoint {path} has format version {version}, newer than this ganrun "
            f"understands ({FORMAT_VERSION}); upgrade ganrun"
        )
    return _from_format1(payload) if version == 1 else payload


def _from_format1(old: dict[str, Any]) -> dict[str, Any]:
    kind = old.get("kind")
    slots = _FORMAT1_NETWORKS.get(kind, _FORMAT1_NETWORKS["gan"])
    networks = {new: old[key] for key, new in slots.items() if old.get(key) is not None}
    optimizers = {
        slots.get(new, new): old[key]
        for key, new in _FORMAT1_OPTIMIZERS.items()
        if old.get(key) is not None
    }
    sampler = slots["generator"]
    averages = {sampler: old["ema"]} if old.get("ema") is not None else {}
    config = old.get("config")
    if isinstance(config, dict) and isinstance(config.get("model"), dict) and kind is not None:
        config = {**config, "model": _known_model_fields(config["model"])}
    new = {
        key: old[key]
        for key in ("format_version", "ganrun_version", "step", "best", "rng")
        if key in old
    }
    new.update(family=kind, networks=networks, averages=averages, optimizers=optimizers)
    new.update(extra={}, config=config)
    if config is None:
        new.pop("config")
    return new


def _known_model_fields(model: dict[str, Any]) -> dict[str, Any]:
    """Format 1 saved one flat model config with every model's fields; keep the family's own."""
    try:
        fields = OmegaConf.structured(family_of(str(model.get("name"))).schema).keys()
    except GanrunError:
        return model  # unknown model: run_config() says so with the name
    return {k: v for k, v in model.items() if k in fields}


# ---------------------------------------------------------------------------------- writing
def capture(
    model: Model,
    *,
    step: int,
    config: DictConfig,
    best: dict[str, Any] | None,
    rng: dict[str, Any],
    channels_last: bool,
) -> dict[str, Any]:
    """A training state as a format-2 payload (``rng`` from :func:`capture_rng`)."""
    return {
        "ganrun_version": __version__,
        "step": step,
        "config": OmegaConf.to_container(config, resolve=True),
        "family": family_of(model.cfg.name).name,
        "networks": {name: net.state_dict() for name, net in model.networks.items()},
        "averages": {name: avg.state_dict() for name, avg in model.averages.items()},
        "optimizers": {name: opt.state_dict() for name, opt in model.optimizers.items()},
        "extra": model.extra_state(),
        "best": best,
        "rng": rng,
        "channels_last": channels_last,
    }


def capture_rng(noise: torch.Generator, batches: Any) -> dict[str, Any]:
    """Every random state training draws from: global torch (and CUDA), numpy and python, the
    training noise generator and the training split's sampler."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
        "noise": noise.get_state(),
        "data": batches.state_dict(),
    }


# ---------------------------------------------------------------------------------- reading
# What a checkpoint's weights mean: continuing them under another model, data set or loss would
# silently train something that is neither run. Where the data lives and how it is read may change.
_FIXED_GROUPS = ("model", "data", "loss")
_MOVABLE = {"data.root", "data.download", "data.num_workers"}


def config_changes(
    saved: dict[str, Any], current: dict[str, Any], movable: Iterable[str] = ()
) -> list[str]:
    """``key=saved (now current)`` for each model/data/loss setting that differs, except the
    ``movable`` ones (the model family's :attr:`~ganrun.models.family.Family.adjustable`).

    A setting the checkpoint does not know (added by a later ganrun, whose defaults keep old
    behaviour) or that this ganrun no longer has is not a change.
    """
    movable = _MOVABLE | set(movable)
    old, new = (flat_settings({g: c.get(g, {}) for g in _FIXED_GROUPS}) for c in (saved, current))
    return [
        f"{key}={old[key]} (now {new[key]})"
        for key in sorted(old.keys() & new.keys())
        if key not in movable and old[key] != new[key]
    ]


def check_resumable(
    payload: dict[str, Any],
    path: Path,
    family: str,
    config: DictConfig,
    movable: Iterable[str] = (),
) -> None:
    """Refuse to continue a checkpoint of another family, or of another model, data set or
    loss than ``config`` describes (``movable`` settings aside)."""
    if payload.get("family") != family:
        raise GanrunError(
            f"checkpoint {path} holds a {payload.get('family')} model, not a {family}"
        )
    saved = payload.get("config")
    current = OmegaConf.to_container(config, resolve=True)
    changes = config_changes(saved, current, movable) if saved else []
    if changes:
        more = f" and {len(changes) - 1} more" if len(changes) > 1 else ""
        raise GanrunError(
            f"checkpoint {path} was trained with {changes[0]}{more}; resume with the run's "
            "own model, data and loss settings (its config.yaml), or train into a new folder"
        )


def load_state(payload: dict[str, Any], model: Model, path: Path, training: bool) -> None:
    """Put the checkpoint's networks and averages into ``model``; with ``training`` also its
    optimizers and extra state. A checkpoint that does not fit is a one-line error."""
    try:
        for name, net in model.networks.items():
            net.load_state_dict(payload["networks"][name])
        if training:
            for name, average in model.averages.items():
                average.load_state_dict(payload["averages"].get(name) or payload["networks"][name])
            for name, opt in model.optimizers.items():
                opt.load_state_dict(payload["optimizers"][name])
            model.load_extra_state(payload.get("extra") or {})
        else:
            model.keep_averages_from(payload.get("averages") or {})
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GanrunError(f"checkpoint {path} does not fit this model/config: {first}") from exc


def restore_rng(
    rng: dict[str, Any], noise: torch.Generator, batches: Any, reseed: int = 0
) -> list[str]:
    """The inverse of :func:`capture_rng`. A generator whose saved state is of another device
    kind (a run written on a GPU, continued on a CPU, or the other way) cannot take that state:
    it is seeded from ``reseed`` instead, and its name returned, so the run goes on but is not
    the bit-identical continuation. Returns the names of the generators re-seeded so."""
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.cpu() for t in rng["cuda"]])
    numpy_state = rng["numpy"]  # its tensor follows the checkpoint's map_location
    np.random.set_state(
        (numpy_state[0], numpy_state[1].cpu().numpy().astype(np.uint32), *numpy_state[2:])
    )
    random.setstate(_as_tuple(rng["python"]))
    reseeded = []
    if _fits(noise, rng["noise"]):
        noise.set_state(rng["noise"].cpu())
    else:
        noise.manual_seed(reseed)
        reseeded.append("training noise")
    batches.load_state_dict(rng["data"])
    if getattr(batches, "moved", False):
        reseeded.append("data order")
    return reseeded


def _fits(generator: torch.Generator, state: Any) -> bool:
    """Whether ``state`` is a state of ``generator``'s kind (a CPU generator's state and a CUDA
    one's differ in size); anything else is left to ``set_state`` to refuse."""
    return not isinstance(state, torch.Tensor) or state.numel() == generator.get_state().numel()


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


# ------------------------------------------------------------------- rebuilding for use
@dataclass
class Snapshot:
    """A model at one step, with its run config and data: what is sampled and scored."""

    path: Path  # the checkpoint the weights are (or, during training, will be) saved in
    config: DictConfig  # the run's config
    model: Model
    data: Data
    step: int
    # Where the samples came from when they are not the model's (ganrun eval samples=): the
    # file and its sha256, recorded in every metric's protocol.
    source: dict[str, Any] | None = None

    @property
    def weights(self) -> str:
        return self.model.weights


def run_config(payload: dict[str, Any], path: Path, data_root: str | None = None) -> DictConfig:
    """The checkpoint's saved config, checked against today's schemas (its family's for the
    model)."""
    saved = payload.get("config")
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
        raise GanrunError(f"checkpoint {path} has no saved config; it cannot be rebuilt")
    name = str(saved["model"].get("name"))
    try:
        family = family_of(name)
    except GanrunError as exc:
        raise GanrunError(
            f"checkpoint {path} was trained with model={name}, which no installed model family "
            "serves; install the package that provides it"
        ) from exc
    try:
        rest = {key: value for key, value in saved.items() if key != "model"}
        cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), rest)
        cfg.model = OmegaConf.merge(OmegaConf.structured(family.schema), saved["model"])
    except Exception as exc:  # OmegaConf raises many types for a key/type mismatch
        raise GanrunError(
            f"the config saved in {path} does not fit this ganrun version: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    if data_root:
        cfg.data.root = str(data_root)
    return cfg


def data_for(cfg: DictConfig, device: torch.device, cache: dict[str, Data] | None = None) -> Data:
    """The run's data set, built once per distinct data config when ``cache`` is given."""
    value_range = family_of(cfg.model.name).value_range(cfg.model)
    key = OmegaConf.to_yaml(cfg.data) + repr(value_range) + str(device)
    if cache is not None and key in cache:
        return cache[key]
    data = build_data(cfg.data, value_range, device)
    if cache is not None:
        cache[key] = data
    return data


def restore(
    path: str | Path,
    device: torch.device,
    data_root: str | None = None,
    data_cache: dict[str, Data] | None = None,
) -> Snapshot:
    """Load ``path`` and rebuild its model (eval mode, no gradients, on ``device``) and data."""
    path = Path(path)
    payload = load_checkpoint(path, map_location="cpu")
    cfg = run_config(payload, path, data_root)
    family = family_named(str(payload.get("family")))
    if family is not family_of(cfg.model.name):  # refused before the data is read
        raise GanrunError(
            f"checkpoint {path} says its networks are a {family.name} model's, but its config "
            f"is model={cfg.model.name}'s; it cannot be rebuilt"
        )
    data = data_for(cfg, device, data_cache)
    model = build_model(cfg.model, data.info)
    load_state(payload, model, path, training=False)
    model.to(device)
    for net in [*model.networks.values(), *(a.model for a in model.averages.values())]:
        net.eval().requires_grad_(False)
    return Snapshot(path, cfg, model, data, int(payload.get("step", 0)))
