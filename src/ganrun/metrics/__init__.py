"""Metrics: ``eval.metrics`` names keys of :data:`METRICS`.

A metric is one function ``(EvalContext) -> (values, protocol)`` plus one registry line saying
which runs it applies to and what it must refuse before anything is computed. ``values`` are the
numbers (names as they appear in metrics.json and eval.csv); ``protocol`` records how they were
obtained (library and version, feature extractor and weights hash, sample counts, split, seed).

Feature metrics come in two families that are never mixed up: ``fid``, ``kid``, ``is``, ``prc``
use Inception-v3 (the standard, comparable numbers); ``fid_cnn``, ``kid_cnn``, ``is_cnn`` use the
data-set classifier and report as ``fid_<data set>_cnn`` etc.

Sample-count rule for FID: each side needs at least as many samples as the features have
dimensions (2,048 for Inception's pool3, 128 for the classifier); with fewer, the covariance
matrices are singular and FID is dominated by their estimation error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ganrun.errors import GanrunError
from ganrun.metrics import fidelity, likelihood, parzen
from ganrun.metrics.classifier import FEATURES
from ganrun.metrics.context import EvalContext, as_unit_interval
from ganrun.metrics.mixtures import mixture_stats

Values = dict[str, Any]
Result = tuple[Values, Values]


@dataclass(frozen=True)
class Metric:
    compute: Callable[[EvalContext], Result]
    applies: Callable[[EvalContext], str | None]  # why it does not apply to a run, or None
    check: Callable[[EvalContext], None] | None = None  # refusals, before any work is done


# ------------------------------------------------------------------------------ applicability
def _images(ctx: EvalContext) -> str | None:
    return None if ctx.info.kind == "image" else f"data={ctx.info.name} is not an image data set"


def _vae(ctx: EvalContext) -> str | None:
    return None if ctx.restored.kind == "vae" else "the model is not a VAE"


def _points(ctx: EvalContext) -> str | None:
    return None if ctx.info.kind == "points" else f"data={ctx.info.name} is not a 2-D mixture"


def _any(ctx: EvalContext) -> str | None:
    return None


# ---------------------------------------------------------------------------------- feature metrics
def _prefix(ctx: EvalContext, which: str, metric: str) -> str:
    return metric if which == "inception" else f"{metric}_{ctx.info.name}_cnn"


def _protocol(ctx: EvalContext, which: str, real: bool = True) -> Values:
    cfg = ctx.cfg
    out: Values = {
        **fidelity.library_info(),
        **ctx.extractor(which).protocol(),
        "num_generated": cfg.num_samples,
        "seed": cfg.seed,
    }
    if real:
        out.update(num_real=ctx.num_real(), reference_split=cfg.reference_split)
    return out


def _fid(ctx: EvalContext, which: str) -> Result:
    extractor = ctx.extractor(which)
    real = ctx.real_reference(which)
    generated = ctx.generated_features(which)[extractor.feature_layer]
    value = fidelity.fid(fidelity.fid_statistics(generated), real["stats"])
    return {_prefix(ctx, which, "fid"): value}, {
        **_protocol(ctx, which),
        "reference_cached": real["cached"],
    }


def _kid(ctx: EvalContext, which: str) -> Result:
    extractor = ctx.extractor(which)
    real = ctx.real_reference(which)
    out = fidelity.kid(
        ctx.generated_features(which)[extractor.feature_layer], real["features"], ctx.cfg
    )
    name = _prefix(ctx, which, "kid")
    return (
        {f"{name}_mean": out["mean"], f"{name}_std": out["std"]},
        {
            **_protocol(ctx, which),
            "kid_subsets": ctx.cfg.kid_subsets,
            "kid_subset_size": ctx.cfg.kid_subset_size,
        },
    )


def _is(ctx: EvalContext, which: str) -> Result:
    extractor = ctx.extractor(which)
    out = fidelity.inception_score(ctx.generated_features(which)[extractor.logits_layer], ctx.cfg)
    name = _prefix(ctx, which, "is")
    return (
        {f"{name}_mean": out["mean"], f"{name}_std": out["std"]},
        {**_protocol(ctx, which, real=False), "isc_splits": ctx.cfg.isc_splits},
    )


def _prc(ctx: EvalContext, which: str) -> Result:
    extractor = ctx.extractor(which)
    real = ctx.real_reference(which)
    out = fidelity.precision_recall(
        ctx.generated_features(which)[extractor.feature_layer], real["features"], ctx.cfg
    )
    return out, {**_protocol(ctx, which), "prc_neighborhood": ctx.cfg.prc_neighborhood}


def _check_fid(which: str) -> Callable[[EvalContext], None]:
    def check(ctx: EvalContext) -> None:
        # The classifier's width is fixed; asking for its extractor here would train it.
        dim = ctx.extractor(which).feature_dim if which == "inception" else int(FEATURES)
        name = _prefix(ctx, which, "fid")
        n_real = ctx.num_real()
        for side, n, key in (
            ("generated", ctx.cfg.num_samples, "eval.num_samples"),
            ("real", n_real, "eval.num_real"),
        ):
            if n < dim:
                raise GanrunError(
                    f"{name} needs at least {dim} {side} samples (the feature dimension; fewer "
                    f"make the covariance singular), got {n}; raise {key}"
                    + (
                        f" (the {ctx.cfg.reference_split} split has {n_real})"
                        if side == "real"
                        else ""
                    )
                )

    return check


def _check_kid(ctx: EvalContext) -> None:
    n = min(ctx.cfg.num_samples, ctx.num_real())
    if ctx.cfg.kid_subset_size > n:
        raise GanrunError(
            f"eval.kid_subset_size={ctx.cfg.kid_subset_size} is larger than the {n} samples "
            f"available per side (eval.num_samples={ctx.cfg.num_samples}, real samples "
            f"{ctx.num_real()}); lower eval.kid_subset_size or raise the sample counts"
        )


def _check_is(which: str) -> Callable[[EvalContext], None]:
    def check(ctx: EvalContext) -> None:
        if ctx.cfg.num_samples < ctx.cfg.isc_splits:
            raise GanrunError(
                f"IS splits {ctx.cfg.num_samples} samples into eval.isc_splits="
                f"{ctx.cfg.isc_splits} parts; raise eval.num_samples"
            )
        if which == "inception" and not fidelity.has_classifier(ctx.extractor(which)):
            raise GanrunError(
                "the Inception weights in use have no classifier layer (zero-filled), so the "
                "Inception Score cannot be computed; drop `is` from eval.metrics (is_cnn scores "
                "with the data-set classifier) or use the official weights"
            )

    return check


def _check_prc(ctx: EvalContext) -> None:
    n = min(ctx.cfg.num_samples, ctx.num_real())
    if n <= ctx.cfg.prc_neighborhood:
        raise GanrunError(
            f"precision/recall needs more than eval.prc_neighborhood={ctx.cfg.prc_neighborhood} "
            f"samples a side, got {n}"
        )


# -------------------------------------------------------------------------------- likelihoods
def _split_unit(ctx: EvalContext, name: str):  # noqa: ANN202 (a tensor)
    x, _ = ctx.split(name).all()
    return x if ctx.info.kind == "points" else as_unit_interval(x, ctx.info.value_range)


def _parzen(ctx: EvalContext) -> Result:
    cfg = ctx.cfg
    samples = ctx.samples(cfg.parzen_samples)
    if ctx.info.kind != "points":
        samples = as_unit_interval(samples, ctx.info.value_range)
    sigmas = parzen.sigma_grid(cfg.parzen_sigmas)
    valid, test = _split_unit(ctx, "valid"), _split_unit(ctx, "test")
    out = parzen.parzen_evaluate(
        samples.to(ctx.device), valid.to(ctx.device), test.to(ctx.device), sigmas, cfg.parzen_chunk
    )
    values = {"parzen_ll": out["ll"], "parzen_ll_se": out["se"], "parzen_sigma": out["sigma"]}
    protocol = {
        "metric_library": "ganrun",
        "protocol": "Goodfellow et al. 2014 parzen_ll.py",
        "num_generated": cfg.parzen_samples,
        "sigma_grid": [float(s) for s in sigmas],
        "sigma_split": "valid",
        "num_valid": int(valid.shape[0]),
        "reference_split": "test",
        "num_real": int(test.shape[0]),
        "seed": cfg.seed,
        "valid_ll": out["valid_ll"],
        "fold": ctx.restored.config.data.fold,
    }
    return values, protocol


def _check_parzen(ctx: EvalContext) -> None:
    ctx.require_split("valid", "parzen (sigma is chosen on it; train with data.valid_size>0)")
    ctx.require_split("test", "parzen")


def _likelihood_data(ctx: EvalContext):  # noqa: ANN202 (a tensor)
    x, _ = ctx.split("test").all()
    n = ctx.cfg.likelihood_examples
    return x if n == 0 else x[:n]


def _elbo(ctx: EvalContext) -> Result:
    x = _likelihood_data(ctx)
    out = likelihood.elbo(ctx.restored.generator, x, ctx.cfg.batch_size)
    return (
        {"elbo": out["mean"], "elbo_se": out["se"]},
        {
            "metric_library": "ganrun",
            "reference_split": "test",
            "num_real": int(x.shape[0]),
            "seed": ctx.cfg.seed,
            "units": "nats per example",
            "binarize": ctx.restored.config.data.binarize,
        },
    )


def _iw_ll(ctx: EvalContext) -> Result:
    x = _likelihood_data(ctx)
    out = likelihood.importance_log_likelihood(ctx.restored.generator, x, ctx.cfg.iw_samples)
    return (
        {"iw_ll": out["mean"], "iw_ll_se": out["se"]},
        {
            "metric_library": "ganrun",
            "reference_split": "test",
            "num_real": int(x.shape[0]),
            "k": ctx.cfg.iw_samples,
            "seed": ctx.cfg.seed,
            "units": "nats per example",
            "binarize": ctx.restored.config.data.binarize,
        },
    )


def _check_test(ctx: EvalContext) -> None:
    ctx.require_split("test", "the VAE likelihood")


def _modes(ctx: EvalContext) -> Result:
    out = mixture_stats(ctx.samples(ctx.cfg.num_samples), ctx.info.extra)
    return dict(out), {
        "metric_library": "ganrun",
        "num_generated": ctx.cfg.num_samples,
        "seed": ctx.cfg.seed,
        "quality_radius": "3 std",
    }


METRICS: dict[str, Metric] = {
    "fid": Metric(lambda c: _fid(c, "inception"), _images, _check_fid("inception")),
    "kid": Metric(lambda c: _kid(c, "inception"), _images, _check_kid),
    "is": Metric(lambda c: _is(c, "inception"), _images, _check_is("inception")),
    "prc": Metric(lambda c: _prc(c, "inception"), _images, _check_prc),
    "fid_cnn": Metric(lambda c: _fid(c, "cnn"), _images, _check_fid("cnn")),
    "kid_cnn": Metric(lambda c: _kid(c, "cnn"), _images, _check_kid),
    "is_cnn": Metric(lambda c: _is(c, "cnn"), _images, _check_is("cnn")),
    "parzen": Metric(_parzen, _any, _check_parzen),
    "elbo": Metric(_elbo, _vae, _check_test),
    "iw_ll": Metric(_iw_ll, _vae, _check_test),
    "modes": Metric(_modes, _points),
}

__all__ = ["METRICS", "EvalContext", "Metric"]
