"""Checks that need more than a type: ranges and combinations, run before anything is written.

Types and unknown keys are already checked by the schemas in :mod:`ganrun.schema` while Hydra
composes the config. Each failure is a :class:`GanrunError` naming the key and a fix.
"""

from __future__ import annotations

from omegaconf import DictConfig

from ganrun.errors import GanrunError


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise GanrunError(message)


def validate_train_config(cfg: DictConfig) -> None:
    from ganrun.data import DATASETS
    from ganrun.losses import LOSSES
    from ganrun.models import MODELS, check_arch
    from ganrun.optim import OPTIMIZERS

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
        _require(t[key] >= 1, f"train.{key}={t[key]} must be at least 1")
    _require(
        not t.simultaneous or (t.d_steps == 1 and cfg.model.name != "vae"),
        f"train.simultaneous=true updates one D step together with each G step: it needs "
        f"train.d_steps=1 (got {t.d_steps}) and a GAN (got model={cfg.model.name})",
    )
    _require(
        not t.simultaneous or (cfg.model.gp_weight == 0 and cfg.model.clip_value == 0),
        "train.simultaneous=true has no gradient penalty or weight clipping; use it with "
        "model.gp_weight=0 and model.clip_value=0",
    )
    _require(cfg.seed >= 0, f"seed={cfg.seed} must be a non-negative integer")

    for group, name, registry, noun in (
        ("model", cfg.model.name, MODELS, "model"),
        ("loss", cfg.loss.name, LOSSES, "loss"),
        ("optim", cfg.optim.name, OPTIMIZERS, "optimizer"),
        ("data", cfg.data.name, DATASETS, "data set"),
    ):
        _require(
            name in registry,
            f"unknown {noun} {name!r}; choose {group}= one of: {', '.join(registry)}",
        )

    o = cfg.optim
    _require(o.lr > 0, f"optim.lr={o.lr} must be positive")
    _require(
        len(o.betas) == 2 and all(0.0 <= b < 1.0 for b in o.betas),
        f"optim.betas={list(o.betas)} must be two numbers in [0, 1)",
    )
    _require(o.momentum >= 0, f"optim.momentum={o.momentum} must be non-negative")
    _require(o.weight_decay >= 0, f"optim.weight_decay={o.weight_decay} must be non-negative")
    _require(o.d_lr_scale > 0, f"optim.d_lr_scale={o.d_lr_scale} must be positive")
    _require(o.lr_decay > 0, f"optim.lr_decay={o.lr_decay} must be positive (1 = constant lr)")
    _require(o.min_lr >= 0, f"optim.min_lr={o.min_lr} must be non-negative")
    _require(
        o.momentum_ramp_steps >= 0,
        f"optim.momentum_ramp_steps={o.momentum_ramp_steps} must be non-negative (0 = off)",
    )
    _require(
        o.momentum_ramp_steps == 0 or (o.name in ("sgd", "rmsprop") and o.final_momentum >= 0),
        f"optim.momentum_ramp_steps needs optim=sgd or optim=rmsprop and a non-negative "
        f"optim.final_momentum (got optim={o.name}, final_momentum={o.final_momentum})",
    )

    m = cfg.model
    _require(m.latent_dim >= 1, f"model.latent_dim={m.latent_dim} must be at least 1")
    _require(m.width >= 1, f"model.width={m.width} must be at least 1")
    _require(m.noise in ("normal", "uniform"), f"model.noise={m.noise!r} must be normal or uniform")
    _require(m.noise_scale > 0, f"model.noise_scale={m.noise_scale} must be positive")
    _require(
        len(m.init_range) == 2 and all(r > 0 for r in m.init_range),
        f"model.init_range={list(m.init_range)} must be two positive numbers (G, D)",
    )
    _require(m.output in ("tanh", "sigmoid"), f"model.output={m.output!r} must be tanh or sigmoid")
    _require(
        m.output_bias in ("zero", "data_mean"),
        f"model.output_bias={m.output_bias!r} must be zero or data_mean",
    )
    _require(
        m.output_bias == "zero" or m.name == "gan",
        f"model.output_bias=data_mean is a model=gan option; model={m.name} has no per-pixel "
        "output bias, use model.output_bias=zero",
    )
    _require(0.0 <= m.ema_decay < 1.0, f"model.ema_decay={m.ema_decay} must be in [0, 1)")
    _require(
        not (LOSSES[cfg.loss.name].needs_critic and not m.critic),
        f"loss={cfg.loss.name} needs a critic with an unbounded output, but model="
        f"{m.name} has a sigmoid discriminator; use model=wgan or model=wgan_gp",
    )
    _require(
        not (m.gp_weight > 0 and not m.critic),
        f"model.gp_weight={m.gp_weight} needs a critic (model.critic=true), but model="
        f"{m.name} has a sigmoid discriminator",
    )
    _require(m.clip_value >= 0, f"model.clip_value={m.clip_value} must be 0 (off) or positive")
    _require(m.gp_weight >= 0, f"model.gp_weight={m.gp_weight} must be 0 (off) or positive")
    _require(m.maxout_pieces >= 1, f"model.maxout_pieces={m.maxout_pieces} must be at least 1")
    for key in ("dropout_input", "dropout_hidden"):
        _require(0.0 <= m[key] < 1.0, f"model.{key}={m[key]} is a drop probability in [0, 1)")
    for key in ("g_hidden", "d_hidden"):
        _require(all(h >= 1 for h in m[key]), f"model.{key}={list(m[key])} sizes must be >= 1")
    check_arch(m)
    if m.name == "vae":
        _require(
            m.noise == "normal",
            f"model=vae samples z from its N(0, I) prior, so model.noise={m.noise} does not "
            "apply; use model.noise=normal",
        )
        _require(
            m.noise_scale == 1.0,
            f"model=vae samples z from its N(0, I) prior, so model.noise_scale={m.noise_scale} "
            "does not apply; use model.noise_scale=1",
        )
        _require(
            m.likelihood in ("bernoulli", "gaussian"),
            f"model.likelihood={m.likelihood!r} must be bernoulli or gaussian",
        )
        # Both likelihoods model pixels in [0, 1], which is how a sigmoid output scales the data.
        _require(
            m.output == "sigmoid",
            f"model=vae needs model.output=sigmoid (pixels in [0, 1]), not {m.output}",
        )
        _require(
            not m.conditional,
            "model=vae has no conditional variant; use model.conditional=false or a GAN model",
        )

    validate_data_config(cfg.data)

    e = cfg.eval
    _require(e.every >= 0, f"eval.every={e.every} must be 0 (off) or a number of steps")
    _require(e.best_mode in ("min", "max"), f"eval.best_mode={e.best_mode!r} must be min or max")
    _require(
        not (e.every and not e.metrics),
        f"eval.every={e.every} with eval={e.name}, which has no metrics; choose a preset "
        "such as eval=fast",
    )


def validate_data_config(d: DictConfig) -> None:
    """The ``data`` group's ranges; what needs the files (splits, sizes) is checked on loading."""
    from ganrun.data import BINARIZE, DATASETS, POINT_DATASETS

    _require(
        d.name in DATASETS,
        f"unknown data set {d.name!r}; choose data= one of: {', '.join(DATASETS)}",
    )
    _require(d.valid_size >= 0, f"data.valid_size={d.valid_size} must be non-negative")
    _require(0 <= d.fold <= 4, f"data.fold={d.fold} does not exist; choose a fold in 0..4")
    _require(d.num_workers >= 0, f"data.num_workers={d.num_workers} must be non-negative")
    _require(
        d.binarize in BINARIZE,
        f"data.binarize={d.binarize!r} is not one of: {', '.join(BINARIZE)}",
    )
    if d.binarize != "none":
        _require(
            d.name not in (*POINT_DATASETS, "folder"),
            f"data.binarize={d.binarize} applies to image data sets held in memory, not "
            f"data={d.name}; leave data.binarize=none",
        )
    if d.name in POINT_DATASETS:
        _require(d.num_points >= 1, f"data.num_points={d.num_points} must be at least 1")
        _require(d.std > 0, f"data.std={d.std} must be positive")
        _require(d.scale > 0, f"data.scale={d.scale} must be positive")
        return
    _require(d.resolution >= 1, f"data.resolution={d.resolution} must be at least 1")
    _require(d.channels in (1, 3), f"data.channels={d.channels} must be 1 or 3")
