"""Metrics: ``eval.metrics`` names keys of :data:`METRICS`.

A metric is one function ``(EvalContext) -> (values, protocol)`` plus one registry line: the
columns it writes, each with its direction (higher or lower is better, or neither), what it needs
of a model (:attr:`ganrun.models.family.Model.provides`) and of the data, and what it must refuse
before anything is computed. ``values`` are the numbers, named as the columns (in metrics.json and
eval.csv); ``protocol`` records how they were obtained (library and version, feature extractor
and weights hash, sample counts, split, seed). Whatever ranks scores (``ganrun report``,
``checkpoints/best.pt``) reads the directions from here, through :func:`direction`.

Feature metrics come in two families that are never mixed up: ``fid``, ``kid``, ``is``, ``prc``
use Inception-v3 (the standard, comparable numbers); ``fid_cnn``, ``kid_cnn``, ``is_cnn`` use the
data-set classifier and report as ``fid_<data set>_cnn`` etc.

Sample-count rule for FID: each side needs at least as many samples as the features have
dimensions (2,048 for Inception's pool3, 128 for the classifier); with fewer, the covariance
matrices are singular and FID is dominated by their estimation error.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ganrun import theory
from ganrun.errors import GanrunError
from ganrun.metrics import (
    fidelity,
    likelihood,
    parzen,
    representation,
    superres,
    translation,
)
from ganrun.metrics.classifier import FEATURES
from ganrun.metrics.context import EvalContext, as_unit_interval
from ganrun.metrics.mixtures import mixture_stats
from ganrun.models.family import Statistic

Values = dict[str, Any]
Result = tuple[Values, Values]
HIGHER, LOWER = "higher", "lower"


@dataclass(frozen=True)
class Column:
    """One value a metric writes; ``{data}`` in a name stands for the data set's name."""

    name: str
    better: str | None = None  # HIGHER, LOWER, or None: a spread, a count, a chosen setting


@dataclass(frozen=True)
class Metric:
    compute: Callable[[EvalContext], Result]
    columns: tuple[Column, ...]
    needs: str = "samples"  # what the model must provide (Model.provides)
    data: str | None = None  # the kind of data it scores (DataInfo.kind); None: any
    check: Callable[[EvalContext], None] | None = None  # refusals, before any work is done
    cached: bool = False  # writes reference features or a classifier to eval.cache_dir
    draws: str = "num_samples"  # the eval setting that says how many samples it scores

    def column_names(self, data_name: str) -> list[str]:
        return [c.name.format(data=data_name) for c in self.columns]

    def applies(self, ctx: EvalContext) -> str | None:
        """Why this metric does not apply to the model and data set, or None when it does."""
        if self.needs not in ctx.model.provides:
            return f"model={ctx.model.cfg.name} has no {_NEEDS[self.needs]}"
        if self.data is not None and ctx.info.kind != self.data:
            return f"data={ctx.info.name} is not {_KINDS[self.data]}"
        return None


_NEEDS = {
    "samples": "samples",
    "elbo": "evidence lower bound",
    "iw_ll": "importance-weighted likelihood",
    "log_likelihood": "exact likelihood",
    "reconstruct": "encoder to reconstruct with",
    "features": "encoder whose features a classifier could use",
    "classifier": "classifier of the data's classes",
    "discriminator": "discriminator giving probabilities (a sigmoid D, unconditional)",
    "translate": "generators translating between two domains",
    "upscale": "super-resolution generator",
}
_KINDS = {"image": "an image data set", "points": "point data (gauss1d, ring, grid)"}


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
        out.update(num_real=ctx.num_real(), **ctx.reference_protocol())
    return out


def _fid(ctx: EvalContext, which: str) -> Result:
    extractor = ctx.extractor(which)
    real = ctx.real_reference(which)
    generated = ctx.generated_features(which)[extractor.feature_layer]
    name = _prefix(ctx, which, "fid")
    values = {name: fidelity.fid(fidelity.fid_statistics(generated), real["stats"])}
    protocol = {**_protocol(ctx, which), "reference_cached": real["cached"]}
    if which == "cnn":
        n, dim = ctx.floor_size(), int(FEATURES)
        floor: float | None = None
        why = f"not computed: {n} images a side, fewer than the {dim} features"
        if n >= dim:
            a, b = (fidelity.fid_statistics(f) for f in ctx.real_halves(which))
            floor, why = fidelity.fid(a, b), "computed"
        values[f"{name}_floor"] = floor
        protocol.update(_floor_protocol(ctx, n, why))
    return values, protocol


def _kid(ctx: EvalContext, which: str) -> Result:
    extractor = ctx.extractor(which)
    real = ctx.real_reference(which)
    out = fidelity.kid(
        ctx.generated_features(which)[extractor.feature_layer], real["features"], ctx.cfg
    )
    name = _prefix(ctx, which, "kid")
    values = {f"{name}_mean": out["mean"], f"{name}_std": out["std"]}
    protocol = {
        **_protocol(ctx, which),
        "kid_subsets": ctx.cfg.kid_subsets,
        "kid_subset_size": ctx.cfg.kid_subset_size,
    }
    if which == "cnn":
        n, size = ctx.floor_size(), ctx.cfg.kid_subset_size
        floor = None
        why = f"not computed: {n} images a side, fewer than kid_subset_size {size}"
        if n >= size:
            floor, why = fidelity.kid(*ctx.real_halves(which), ctx.cfg)["mean"], "computed"
        values[f"{name}_floor"] = floor
        protocol.update(_floor_protocol(ctx, n, why))
    return values, protocol


def _floor_protocol(ctx: EvalContext, n: int, why: str) -> Values:
    """How the ``*_floor`` value was measured: the metric between two disjoint sets of real
    images, the score a model drawing exactly the data would get at this sample size."""
    return {
        "floor": f"two disjoint seeded sets of {ctx.reference_name()}; {why}",
        "floor_num_per_side": n,
    }


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
                    + (f" ({ctx.reference_name()} has {n_real})" if side == "real" else "")
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
        "fold": ctx.run_config.data.fold,
    }
    return values, protocol


def _check_parzen(ctx: EvalContext) -> None:
    ctx.require_split("valid", "parzen (sigma is chosen on it; train with data.valid_size>0)")
    ctx.require_split("test", "parzen")


def _likelihood_data(ctx: EvalContext):  # noqa: ANN202 (a tensor)
    x, _ = ctx.split("test").all()
    n = ctx.cfg.likelihood_examples
    return x if n == 0 else x[:n]


def _on_test(x: torch.Tensor, **protocol: Any) -> dict[str, Any]:
    """The protocol of a metric computed by ganrun on the test examples ``x``."""
    return {
        "metric_library": "ganrun",
        "reference_split": "test",
        "num_real": int(x.shape[0]),
        **protocol,
    }


def _elbo(ctx: EvalContext) -> Result:
    x = _likelihood_data(ctx)
    with ctx.seeded():  # the bound's z ~ q(z|x) draws
        out = likelihood.elbo(ctx.model, x, ctx.cfg.batch_size)
    return (
        {"elbo": out["mean"], "elbo_se": out["se"]},
        _on_test(
            x,
            seed=ctx.cfg.seed,
            units="nats per example",
            binarize=ctx.run_config.data.binarize,
        ),
    )


def _iw_ll(ctx: EvalContext) -> Result:
    x = _likelihood_data(ctx)
    with ctx.seeded():  # the importance samples
        out = likelihood.importance_log_likelihood(ctx.model, x, ctx.cfg.iw_samples)
    return (
        {"iw_ll": out["mean"], "iw_ll_se": out["se"]},
        _on_test(
            x,
            k=ctx.cfg.iw_samples,
            seed=ctx.cfg.seed,
            units="nats per example",
            binarize=ctx.run_config.data.binarize,
        ),
    )


def _test_ll(ctx: EvalContext) -> Result:
    x = _likelihood_data(ctx)
    out = likelihood.exact_log_likelihood(ctx.model, x, ctx.cfg.batch_size)
    return (
        {"test_ll": out["mean"], "test_ll_se": out["se"]},
        _on_test(
            x,
            units="nats per example",
            value_range=list(ctx.info.value_range),
            binarize=ctx.run_config.data.get("binarize"),
        ),
    )


def _recon_mse(ctx: EvalContext) -> Result:
    x = _likelihood_data(ctx)
    with ctx.seeded():  # corruption or sampling a family may draw while encoding
        out = likelihood.reconstruction_error(
            ctx.model, x, ctx.info.value_range, ctx.cfg.batch_size
        )
    return (
        {"recon_mse": out["mean"], "recon_mse_se": out["se"]},
        _on_test(x, seed=ctx.cfg.seed, units="mean squared error per pixel, pixels in [0, 1]"),
    )


# eval.representation_queries: what knn_acc / linear_acc classify
REPRESENTATION_QUERIES = ("test", "heldout")


def _memory_and_queries(ctx: EvalContext) -> tuple[torch.Tensor, ...]:
    """(memory, its labels, queries, their labels): all of the training split, or the seeded
    ``eval.representation_examples`` of it, as memory; the test split as queries, or with
    ``eval.representation_queries=heldout`` the training images left out of the memory (which
    the metric's check guarantees there are)."""
    train, labels = ctx.split("train").all()
    n = ctx.cfg.representation_examples
    if not 0 < n < train.shape[0]:
        return train, labels, *ctx.split("test").all()
    gen = torch.Generator().manual_seed(ctx.cfg.seed)
    order = torch.randperm(train.shape[0], generator=gen).to(train.device)
    keep, rest = order[:n].sort().values, order[n:].sort().values
    if ctx.cfg.representation_queries == "heldout":
        return train[keep], labels[keep], train[rest], labels[rest]
    return train[keep], labels[keep], *ctx.split("test").all()


def _representation(ctx: EvalContext, probe: str) -> Result:
    """``knn_acc`` or ``linear_acc`` of the model's features, and of the two floors."""
    memory, memory_labels, test, labels = _memory_and_queries(ctx)
    heldout = ctx.cfg.representation_queries == "heldout"
    untrained = ctx.untrained_model()
    layer = _feature_layer(ctx)

    def accuracy(features: Any) -> float:
        a, b = features(memory), features(test)
        y_a, y_b = memory_labels.cpu(), labels.cpu()
        if probe == "knn":
            return representation.knn_accuracy(a, y_a, b, y_b)
        return representation.linear_accuracy(a, y_a, b, y_b, ctx.cfg.seed)

    def pixels(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).cpu()

    name = f"{probe}_acc"
    values = {
        name: accuracy(lambda x: _features(ctx.model, x, layer, ctx.cfg.batch_size)),
        f"{name}_pixels": accuracy(pixels),
        f"{name}_untrained": accuracy(lambda x: _features(untrained, x, layer, ctx.cfg.batch_size)),
    }
    return values, {
        "metric_library": "ganrun" if probe == "knn" else "scikit-learn",
        "probe": "1-nearest neighbour, Euclidean"
        if probe == "knn"
        else "logistic regression on standardised features",
        "features": f"{layer}: {ctx.model.feature_layers[layer]}",
        "memory_split": "train",
        "num_memory": int(memory.shape[0]),
        "reference_split": "train, the images not in the memory" if heldout else "test",
        "num_test": int(test.shape[0]),
        "seed": ctx.cfg.seed,
        "untrained": f"the run's model config, built with seed {ctx.cfg.seed}",
    }


def _test_error(ctx: EvalContext) -> Result:
    """The classification error of a classifier family (the semi-supervised GAN's D) on the
    test split: the number the semi-supervised literature reports."""
    x, labels = ctx.split("test").all()
    b = ctx.cfg.batch_size
    predicted = torch.cat(
        [ctx.model.classify(x[i : i + b]).argmax(dim=1) for i in range(0, len(x), b)]
    )
    wrong = int((predicted != labels.cpu()).sum())
    data = ctx.run_config.data
    return {"test_error": wrong / len(x), "test_misclassified": wrong}, _on_test(
        x,
        weights=ctx.model.weights,
        labels_per_class=data.get("labels_per_class", 0),
        label_seed=data.get("label_seed", 0),
        label_rng=data.get("label_rng", "torch"),
    )


def _feature_layer(ctx: EvalContext) -> str:
    """``eval.features``, or for auto the first layer the model offers."""
    layers = ctx.model.feature_layers
    return next(iter(layers)) if ctx.cfg.features == "auto" else ctx.cfg.features


def _features(model: Any, x: torch.Tensor, layer: str, batch_size: int) -> torch.Tensor:
    return torch.cat(
        [model.features(x[i : i + batch_size], layer).cpu() for i in range(0, len(x), batch_size)]
    )


def _check_labels(ctx: EvalContext) -> None:
    ctx.require_split("test", "a representation metric")
    if ctx.info.num_classes == 0:
        raise GanrunError(
            f"knn_acc, linear_acc and test_error score by the data's labels; data="
            f"{ctx.info.name} has none: drop them from eval.metrics"
        )


def _check_representation(ctx: EvalContext) -> None:
    _check_labels(ctx)
    if ctx.cfg.representation_queries == "heldout":
        n, size = ctx.cfg.representation_examples, len(ctx.split("train"))
        if not 0 < n < size:
            raise GanrunError(
                f"eval.representation_queries=heldout classifies the training images left out "
                f"of the memory, but eval.representation_examples={n} leaves none of the "
                f"{size}; set it between 1 and {size - 1} (the BiGAN release: 50000 of 60000)"
            )
    layers = ctx.model.feature_layers
    if ctx.cfg.features != "auto" and ctx.cfg.features not in layers:
        offered = "; ".join(f"{name} ({what})" for name, what in layers.items())
        raise GanrunError(
            f"eval.features={ctx.cfg.features} is not a layer of model={ctx.model.cfg.name}; "
            f"choose eval.features=auto or one of: {offered}"
        )


def _check_test(ctx: EvalContext) -> None:
    ctx.require_split("test", "the likelihood or reconstruction")


def _modes(ctx: EvalContext) -> Result:
    out = mixture_stats(ctx.samples(ctx.cfg.num_samples), ctx.info.extra)
    return dict(out), {
        "metric_library": "ganrun",
        "num_generated": ctx.cfg.num_samples,
        "seed": ctx.cfg.seed,
        "quality_radius": "3 std",
    }


def _mixture(ctx: EvalContext) -> theory.Mixture:
    mixture = theory.Mixture.from_extra(ctx.info.extra)
    if mixture is None:
        raise GanrunError(
            f"data={ctx.info.name} has no known density to compare samples with; the theory "
            "metrics need data=gauss1d, ring or grid"
        )
    return mixture


def _theory_protocol(ctx: EvalContext, comparison: theory.Comparison, n: int) -> Values:
    return {
        "metric_library": "ganrun",
        "protocol": "p_data exact, p_g by Gaussian KDE on a grid (ganrun.theory)",
        "num_generated": n,
        "seed": ctx.cfg.seed,
        "grid_cells": list(comparison.grid.shape),
        "units": "nats",
    }


def _jsd(ctx: EvalContext) -> Result:
    mixture, n = _mixture(ctx), ctx.cfg.num_samples
    comparison = theory.compare(mixture, ctx.samples(n))
    # The estimator's floor: the same estimate from n points of the data itself.
    real, _ = ctx.split(ctx.cfg.reference_split).all()
    floor = theory.compare(mixture, real[:n]).jsd()
    protocol = _theory_protocol(ctx, comparison, n)
    protocol.update(floor_split=ctx.cfg.reference_split, floor_points=int(min(n, len(real))))
    return {**comparison.values(), "jsd_floor": floor}, protocol


def _d_gap(ctx: EvalContext) -> Result:
    mixture, n = _mixture(ctx), ctx.cfg.num_samples
    comparison = theory.compare(mixture, ctx.samples(n))
    real, _ = ctx.split(ctx.cfg.reference_split).all()
    real = real[: ctx.num_real()]
    value = theory.d_gap(comparison, mixture, real, ctx.model.discriminate(real))
    protocol = _theory_protocol(ctx, comparison, n)
    protocol.update(reference_split=ctx.cfg.reference_split, num_real=int(real.shape[0]))
    return {"d_gap": value}, protocol


def _check_mixture(ctx: EvalContext) -> None:
    _mixture(ctx)


# What ganrun train writes to metrics.csv besides a family's statistics on data with a known
# density, every train.sample_every steps (ganrun.theory.measure); `ganrun report` plots them.
THEORY = (
    Statistic("jsd", "JSD(p_data || p_g), nats", panel="theory"),
    Statistic("c_g", "C(G) = -log 4 + 2 JSD", panel="theory"),
    Statistic("v_dstar", "V(D*, G), from the densities", panel="theory"),
    Statistic("d_gap", "E_data |D - D*|", panel="theory"),
)


def _lower(name: str) -> tuple[Column, ...]:
    return (Column(name, LOWER),)


def _mean_std(name: str, better: str) -> tuple[Column, ...]:
    return (Column(f"{name}_mean", better), Column(f"{name}_std"))


CNN = "{data}_cnn"  # the data-set classifier's columns carry the data set's name

# fmt: off
METRICS: dict[str, Metric] = {
    "fid": Metric(lambda c: _fid(c, "inception"), _lower("fid"), data="image",
                  check=_check_fid("inception"), cached=True),
    "kid": Metric(lambda c: _kid(c, "inception"), _mean_std("kid", LOWER), data="image",
                  check=_check_kid, cached=True),
    "is": Metric(lambda c: _is(c, "inception"), _mean_std("is", HIGHER), data="image",
                 check=_check_is("inception"), cached=True),
    "prc": Metric(lambda c: _prc(c, "inception"),
                  (Column("precision", HIGHER), Column("recall", HIGHER)), data="image",
                  check=_check_prc, cached=True),
    # *_floor: the same metric between two disjoint sets of real images (a perfect model's score)
    "fid_cnn": Metric(lambda c: _fid(c, "cnn"),
                      (*_lower(f"fid_{CNN}"), Column(f"fid_{CNN}_floor")), data="image",
                      check=_check_fid("cnn"), cached=True),
    "kid_cnn": Metric(lambda c: _kid(c, "cnn"),
                      (*_mean_std(f"kid_{CNN}", LOWER), Column(f"kid_{CNN}_floor")),
                      data="image", check=_check_kid, cached=True),
    "is_cnn": Metric(lambda c: _is(c, "cnn"), _mean_std(f"is_{CNN}", HIGHER), data="image",
                     check=_check_is("cnn"), cached=True),
    "parzen": Metric(_parzen, (Column("parzen_ll", HIGHER), Column("parzen_ll_se"),
                               Column("parzen_sigma")), check=_check_parzen,
                     draws="parzen_samples"),
    "elbo": Metric(_elbo, (Column("elbo", HIGHER), Column("elbo_se")), needs="elbo",
                   check=_check_test),
    "iw_ll": Metric(_iw_ll, (Column("iw_ll", HIGHER), Column("iw_ll_se")), needs="iw_ll",
                    check=_check_test),
    "test_ll": Metric(_test_ll, (Column("test_ll", HIGHER), Column("test_ll_se")),
                      needs="log_likelihood", check=_check_test),
    "recon_mse": Metric(_recon_mse, (Column("recon_mse", LOWER), Column("recon_mse_se")),
                        needs="reconstruct", check=_check_test),
    # Beside each accuracy, the same probe on raw pixels and on an untrained model's features.
    "knn_acc": Metric(lambda c: _representation(c, "knn"),
                      (Column("knn_acc", HIGHER), Column("knn_acc_pixels"),
                       Column("knn_acc_untrained")),
                      needs="features", data="image", check=_check_representation),
    "linear_acc": Metric(lambda c: _representation(c, "linear"),
                         (Column("linear_acc", HIGHER), Column("linear_acc_pixels"),
                          Column("linear_acc_untrained")),
                         needs="features", data="image", check=_check_representation),
    "test_error": Metric(_test_error, (Column("test_error", LOWER), Column("test_misclassified")),
                         needs="classifier", data="image", check=_check_labels),
    "jsd": Metric(_jsd, (Column("jsd", LOWER), Column("c_g", LOWER), Column("v_dstar", LOWER),
                         Column("jsd_floor")), data="points", check=_check_mixture),
    "d_gap": Metric(_d_gap, _lower("d_gap"), needs="discriminator", data="points",
                    check=_check_mixture),
    # Translations scored by the target domain's classifier; *_identity: the untranslated images.
    "translation_acc": Metric(translation.accuracy,
                              (Column("translation_acc_ab", HIGHER),
                               Column("translation_acc_ba", HIGHER),
                               Column("translation_acc_ab_identity"),
                               Column("translation_acc_ba_identity")),
                              needs="translate", data="image", check=translation.check_labels,
                              cached=True, draws="test_examples"),
    "translation_fid": Metric(translation.fid,
                              (Column("translation_fid_ab", LOWER),
                               Column("translation_fid_ba", LOWER),
                               Column("translation_fid_ab_identity"),
                               Column("translation_fid_ba_identity")),
                              needs="translate", data="image", check=translation.check_fid,
                              cached=True, draws="test_examples"),
    "cycle_error": Metric(translation.cycle_error,
                          (Column("cycle_error_a", LOWER), Column("cycle_error_b", LOWER)),
                          needs="translate", data="image", check=translation.check_cycle,
                          draws="test_examples"),
    # Super-resolved test images; bicubic_*: bicubic upscaling of the same inputs.
    "psnr": Metric(superres.psnr, (Column("psnr", HIGHER), Column("bicubic_psnr")),
                   needs="upscale", data="image", check=superres.check_images,
                   draws="test_examples"),
    "ssim": Metric(superres.ssim, (Column("ssim", HIGHER), Column("bicubic_ssim")),
                   needs="upscale", data="image", check=superres.check_images,
                   draws="test_examples"),
    "sr_acc": Metric(superres.accuracy,
                     (Column("sr_acc", HIGHER), Column("bicubic_sr_acc"), Column("hr_acc")),
                     needs="upscale", data="image", check=superres.check_labels, cached=True,
                     draws="test_examples"),
    "sr_fid": Metric(superres.fid, (Column("sr_fid", LOWER), Column("bicubic_sr_fid")),
                     needs="upscale", data="image", check=superres.check_fid, cached=True,
                     draws="test_examples"),
    "modes": Metric(_modes, (Column("modes_covered", HIGHER), Column("high_quality", HIGHER),
                             Column("num_modes"), Column("mode_kl", LOWER)), data="points"),
}
# fmt: on


@functools.cache
def _patterns() -> list[tuple[re.Pattern[str], str | None]]:
    out = []
    for metric in METRICS.values():
        for column in metric.columns:
            pattern = re.escape(column.name).replace(re.escape("{data}"), r"[^.]+")
            out.append((re.compile(f"^{pattern}$"), column.better))
    return out


def direction(column: str) -> str | None:
    """HIGHER or LOWER for a column some metric writes and ranks by; None for anything else
    (a spread, a count, a chosen setting, a training statistic, an unknown name)."""
    for pattern, better in _patterns():
        if pattern.match(column):
            return better
    return None


__all__ = [
    "HIGHER",
    "LOWER",
    "METRICS",
    "THEORY",
    "Column",
    "EvalContext",
    "Metric",
    "direction",
]
