"""Checks that need more than a type: ranges and combinations, run before anything is written.

Types and unknown keys are already checked by the schemas (:mod:`ganrun.config.schema` and each
model family's) while Hydra composes the config. This module checks the groups every run has;
the model family checks its own keys (:meth:`ganrun.models.family.Family.check`). Each failure is
a :class:`GanrunError` naming the key and a fix.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from ganrun.data import BINARIZE, LABEL_RNGS, MNIST_DATASETS, POINT_DATASETS, loader_for
from ganrun.data.mnist import FRAMING
from ganrun.errors import require
from ganrun.models import family_of
from ganrun.models.losses import LOSSES
from ganrun.models.optim import OPTIMIZERS


def check_train_config(cfg: DictConfig) -> None:
    """Everything about a ``ganrun train`` config that can be refused before data is loaded."""
    t = cfg.train
    for key in (  # d_steps first: presets may compute steps from it
        "d_steps",
        "steps",
        "batch_size",
        "sample_every",
        "checkpoint_every",
        "log_every",
        "num_samples",
    ):
        require(t[key] >= 1, f"train.{key}={t[key]} must be at least 1")
    require(
        t.grid_min_width >= 0,
        f"train.grid_min_width={t.grid_min_width} must be 0 (native size) or a width in pixels",
    )
    family = family_of(cfg.model.name)
    schema = OmegaConf.get_type(cfg.model)
    require(
        schema is family.schema,
        f"model.name={cfg.model.name} belongs to the {family.name} family, but the config was "
        f"composed with the {getattr(schema, '__name__', 'untyped')} schema; choose the model with "
        f"model={cfg.model.name} rather than by setting model.name",
    )
    require(
        not t.simultaneous or (t.d_steps == 1 and family.simultaneous),
        f"train.simultaneous=true updates one D step together with each G step: it needs "
        f"train.d_steps=1 (got {t.d_steps}) and a GAN (got model={cfg.model.name})",
    )
    require(cfg.seed >= 0, f"seed={cfg.seed} must be a non-negative integer")
    for group, name, registry, noun in (
        ("loss", cfg.loss.name, LOSSES, "loss"),
        ("optim", cfg.optim.name, OPTIMIZERS, "optimizer"),
    ):
        require(
            name in registry,
            f"unknown {noun} {name!r}; choose {group}= one of: {', '.join(registry)}",
        )
    check_optim_config(cfg.optim)
    require(
        0.0 <= cfg.model.ema_decay < 1.0, f"model.ema_decay={cfg.model.ema_decay} must be in [0, 1)"
    )
    require(
        cfg.data.labels_per_class == 0 or family.semi_supervised,
        f"data.labels_per_class={cfg.data.labels_per_class} picks the labelled examples of a "
        f"semi-supervised model, and model={cfg.model.name} is not one; use model=ssgan or "
        "data.labels_per_class=0",
    )
    family.check(cfg)
    check_data_config(cfg.data)

    e = cfg.eval
    require(e.every >= 0, f"eval.every={e.every} must be 0 (off) or a number of steps")
    require(
        e.best_mode in ("auto", "min", "max"),
        f"eval.best_mode={e.best_mode!r} must be auto (the metric's direction), min or max",
    )
    require(
        not (e.every and not e.metrics),
        f"eval.every={e.every} with eval={e.name}, which has no metrics; choose a preset "
        "such as eval=fast",
    )


def check_optim_config(o: DictConfig) -> None:
    require(o.lr > 0, f"optim.lr={o.lr} must be positive")
    require(
        len(o.betas) == 2 and all(0.0 <= b < 1.0 for b in o.betas),
        f"optim.betas={list(o.betas)} must be two numbers in [0, 1)",
    )
    require(o.momentum >= 0, f"optim.momentum={o.momentum} must be non-negative")
    require(o.weight_decay >= 0, f"optim.weight_decay={o.weight_decay} must be non-negative")
    require(
        o.name == "adam" or not o.eps_in_sqrt,
        f"optim.eps_in_sqrt=true is a form of Adam's step, not of {o.name}'s; "
        "use optim=adam or drop it",
    )
    require(o.d_lr_scale > 0, f"optim.d_lr_scale={o.d_lr_scale} must be positive")
    require(o.lr_decay > 0, f"optim.lr_decay={o.lr_decay} must be positive (1 = constant lr)")
    require(o.min_lr >= 0, f"optim.min_lr={o.min_lr} must be non-negative")
    require(
        o.decay_to == 0 or 0 <= o.decay_from < o.decay_to,
        f"optim.decay_from={o.decay_from} and optim.decay_to={o.decay_to}: the decay "
        "needs 0 <= decay_from < decay_to (decay_to=0: off)",
    )
    require(
        o.decay_shape in ("linear", "exponential"),
        f"optim.decay_shape={o.decay_shape!r} must be linear or exponential",
    )
    require(
        0.0 <= o.decay_final < 1.0 and (o.decay_shape == "linear" or o.decay_final > 0),
        f"optim.decay_final={o.decay_final} is the share of optim.lr left at optim.decay_to: "
        "in [0, 1), and above 0 for decay_shape=exponential",
    )
    require(
        o.decay_to == 0 or o.lr_decay == 1.0,
        "optim.lr_decay and optim.decay_to are two learning-rate schedules; choose one",
    )
    require(
        o.momentum_ramp_steps >= 0,
        f"optim.momentum_ramp_steps={o.momentum_ramp_steps} must be non-negative (0 = off)",
    )
    require(
        o.momentum_ramp_steps == 0 or (o.name in ("sgd", "rmsprop") and o.final_momentum >= 0),
        f"optim.momentum_ramp_steps needs optim=sgd or optim=rmsprop and a non-negative "
        f"optim.final_momentum (got optim={o.name}, final_momentum={o.final_momentum})",
    )


def check_gauss1d(d: DictConfig) -> None:
    means, stds, weights = list(d.means), list(d.stds), list(d.weights)
    require(d.num_points >= 1, f"data.num_points={d.num_points} must be at least 1")
    require(len(means) >= 1, "data=gauss1d needs at least one mode: data.means=[0.0]")
    require(
        len(stds) in (1, len(means)),
        f"data.stds={stds} must hold one standard deviation or one per mode ({len(means)})",
    )
    require(all(s > 0 for s in stds), f"data.stds={stds} must be positive")
    require(
        len(weights) in (0, len(means)),
        f"data.weights={weights} must be empty (equal weights) or one per mode ({len(means)})",
    )
    require(
        all(w >= 0 for w in weights) and (not weights or sum(weights) > 0),
        f"data.weights={weights} must be non-negative with a positive sum",
    )


def check_data_config(d: DictConfig) -> None:
    """The ``data`` group's ranges; what needs the files (splits, sizes) is checked on loading."""
    loader_for(d.name)
    require(d.valid_size >= 0, f"data.valid_size={d.valid_size} must be non-negative")
    require(0 <= d.fold <= 4, f"data.fold={d.fold} does not exist; choose a fold in 0..4")
    require(d.num_workers >= 0, f"data.num_workers={d.num_workers} must be non-negative")
    require(
        d.binarize in BINARIZE,
        f"data.binarize={d.binarize!r} is not one of: {', '.join(BINARIZE)}",
    )
    if d.binarize != "none":
        require(
            d.name not in (*POINT_DATASETS, "folder"),
            f"data.binarize={d.binarize} applies to image data sets held in memory, not "
            f"data={d.name}; leave data.binarize=none",
        )
    require(
        d.labels_per_class >= 0,
        f"data.labels_per_class={d.labels_per_class} must be 0 (every label) or a count per class",
    )
    require(d.label_seed >= 0, f"data.label_seed={d.label_seed} must be a non-negative integer")
    require(
        d.label_rng in LABEL_RNGS,
        f"data.label_rng={d.label_rng!r} is not one of: {', '.join(LABEL_RNGS)}",
    )
    require(
        d.label_rng != "numpy" or d.label_seed < 2**32,
        f"data.label_seed={d.label_seed} is too large for data.label_rng=numpy (numpy seeds are "
        "below 2**32); pick a smaller seed",
    )
    require(d.framing in FRAMING, f"data.framing={d.framing!r} is not one of: {', '.join(FRAMING)}")
    if d.framing != "native":
        require(
            d.name in MNIST_DATASETS,
            f"data.framing={d.framing} reframes MNIST's digits (data="
            f"{', '.join(MNIST_DATASETS)}), not data={d.name}; leave data.framing=native",
        )
    if d.name == "gauss1d":
        check_gauss1d(d)
        return
    if d.name in POINT_DATASETS:
        require(d.num_points >= 1, f"data.num_points={d.num_points} must be at least 1")
        require(d.std > 0, f"data.std={d.std} must be positive")
        require(d.scale > 0, f"data.scale={d.scale} must be positive")
        return
    require(d.resolution >= 1, f"data.resolution={d.resolution} must be at least 1")
    require(d.channels in (1, 3), f"data.channels={d.channels} must be 1 or 3")
