"""Scores of a translation model (``model=cyclegan``) on two-domain data.

Each direction translates the test images of one domain into the other: ``ab`` takes domain A's
``test`` split to B, ``ba`` takes B's ``test_b`` to A. The two domains are stored at one
resolution and channel count (the data layer converts them), so a source image can be fed as it
is to anything made for the target domain: that is the identity baseline each score is read
against, what a model that changes nothing would get.

* ``translation_acc``: the target domain's data-set classifier (trained on the target's training
  split, cached like every classifier) reads the translations and is scored against the source
  images' labels: whether a translation keeps what the image shows (semantic consistency, as
  CyCADA reports it).
* ``translation_fid``: FID between that classifier's features of the translations and of the
  target domain's test images.
* ``cycle_error``: the mean absolute error per pixel, pixels in [0, 1], between each test image and
  its round trip through both generators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ganrun.errors import GanrunError
from ganrun.images import to_uint8
from ganrun.metrics import fidelity
from ganrun.metrics.classifier import FEATURES
from ganrun.metrics.context import EvalContext, as_unit_interval

# direction: (source split, target split, target domain)
DIRECTIONS = {"ab": ("test", "test_b", "b"), "ba": ("test_b", "test", "a")}
BACK = {"ab": "ba", "ba": "ab"}

Values = dict[str, Any]


@dataclass(frozen=True)
class Translated:
    source: torch.Tensor  # the source domain's test images, scaled, on the CPU
    labels: torch.Tensor | None  # their classes, where the domain has them
    out: torch.Tensor  # their translations, on the CPU


def _translate(ctx: EvalContext, x: torch.Tensor, direction: str) -> torch.Tensor:
    b = ctx.cfg.batch_size
    return torch.cat(
        [ctx.model.translate(x[i : i + b], direction).float().cpu() for i in range(0, len(x), b)]
    )


def translated(ctx: EvalContext, direction: str) -> Translated:
    """The direction's test images and their translations, computed once per checkpoint."""

    def compute() -> Translated:
        x, labels = ctx.test_images(DIRECTIONS[direction][0])
        return Translated(x, labels, _translate(ctx, x, direction))

    return ctx.shared(f"translated_{direction}", compute)


def _classifier_outputs(
    ctx: EvalContext, key: str, images: torch.Tensor, domain: str
) -> dict[str, Any]:
    """Domain ``domain``'s classifier outputs of images in the model's value range."""
    return ctx.classifier_outputs(key, to_uint8(images, ctx.info.value_range), domain)


def _classifier_protocol(ctx: EvalContext) -> Values:
    out: Values = {"metric_library": "ganrun", "seed": ctx.cfg.seed}
    for direction, (source, _, domain) in DIRECTIONS.items():
        extractor = ctx.extractor("cnn", domain)
        out[f"classifier_{domain}"] = extractor.label
        out[f"classifier_{domain}_weights_sha256"] = extractor.weights_sha256
        out[f"classifier_{domain}_test_accuracy"] = extractor.extra["classifier_test_accuracy"]
        out[f"num_{direction}"] = len(translated(ctx, direction).source)
        out[f"source_{direction}"] = source
    return out


def accuracy(ctx: EvalContext) -> tuple[Values, Values]:
    values: Values = {}
    for direction, (_, _, domain) in DIRECTIONS.items():
        t = translated(ctx, direction)
        layer = ctx.extractor("cnn", domain).logits_layer
        for name, images in ((direction, t.out), (f"{direction}_identity", t.source)):
            logits = _classifier_outputs(ctx, name, images, domain)[layer]
            values[f"translation_acc_{name}"] = float((logits.argmax(1) == t.labels).float().mean())
    protocol = {
        **_classifier_protocol(ctx),
        "identity": "the source images as they are, fed to the target domain's classifier",
        "scored_against": "the source images' labels",
    }
    return values, protocol


def fid(ctx: EvalContext) -> tuple[Values, Values]:
    values: Values = {}
    for direction, (_, target, domain) in DIRECTIONS.items():
        t = translated(ctx, direction)
        layer = ctx.extractor("cnn", domain).feature_layer
        real, _ = ctx.test_images(target)
        real_outputs = _classifier_outputs(ctx, target, real, domain)
        reference = fidelity.fid_statistics(real_outputs[layer])
        for name, images in ((direction, t.out), (f"{direction}_identity", t.source)):
            features = _classifier_outputs(ctx, name, images, domain)[layer]
            values[f"translation_fid_{name}"] = fidelity.fid(
                fidelity.fid_statistics(features), reference
            )
    protocol = {
        **_classifier_protocol(ctx),
        "feature_layer": layer,
        "reference": "the target domain's test images (as many as translated of it)",
        "identity": "the source images as they are, against the same reference",
    }
    return values, protocol


def cycle_error(ctx: EvalContext) -> tuple[Values, Values]:
    values: Values = {}
    protocol: Values = {
        "metric_library": "ganrun",
        "units": "mean |x - round trip| per pixel, pixels in [0, 1]",
        "seed": ctx.cfg.seed,
    }
    for direction in DIRECTIONS:
        t = translated(ctx, direction)
        back = _translate(ctx, t.out, BACK[direction])
        lo_hi = ctx.info.value_range
        error = (as_unit_interval(back, lo_hi) - as_unit_interval(t.source, lo_hi)).abs()
        values[f"cycle_error_{direction[0]}"] = float(error.mean())
        protocol[f"num_{direction[0]}"] = len(t.source)
    return values, protocol


# ------------------------------------------------------------------------------------ checks
def check_labels(ctx: EvalContext) -> None:
    for split in ("test", "test_b", "train", "train_b"):
        ctx.require_split(split, "a translation metric")
        if ctx.split(split).labels is None:
            raise GanrunError(
                f"translation_acc and translation_fid read translations with each domain's "
                f"classifier, trained on its labels; the {split!r} split of data="
                f"{ctx.info.name} has none: score with cycle_error"
            )


def check_fid(ctx: EvalContext) -> None:
    check_labels(ctx)
    dim = int(FEATURES)
    for split in ("test", "test_b"):
        n = ctx.test_count(split)
        if n < dim:
            raise GanrunError(
                f"translation_fid needs at least {dim} test images of each domain (the "
                f"classifier's feature dimension; fewer make the covariance singular), the "
                f"{split!r} split gives {n}; raise eval.test_examples (0: all)"
            )


def check_cycle(ctx: EvalContext) -> None:
    for split in ("test", "test_b"):
        ctx.require_split(split, "cycle_error")
