"""Scores of a super-resolution model (``model=srresnet|srgan``).

Each test image (``eval.test_examples`` of them, or all) is downscaled as in training, then
brought back to full size twice: by the model and by bicubic interpolation, the baseline every
number is read against (``bicubic_*``). Both are compared with the original as uint8 pixels, what
a saved image holds:

* ``psnr`` and ``ssim`` (torchmetrics; SSIM with its 11x11 Gaussian window of sigma 1.5): on the
  Y channel of YCbCr (ITU-R BT.601 as MATLAB's ``rgb2ycbcr``, 16-235) for RGB data, on the pixels
  for grayscale, with ``model.scale`` pixels cropped from each border, per image and then
  averaged: how the super-resolution papers measure.
* ``sr_acc``: the data-set classifier's accuracy on the super-resolved images (``hr_acc``: on the
  originals, the ceiling).
* ``sr_fid``: FID between the classifier's features of the super-resolved images and of the
  originals.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import torch

from ganrun.errors import GanrunError
from ganrun.images import gray_to_rgb, to_uint8
from ganrun.metrics import fidelity
from ganrun.metrics.classifier import FEATURES
from ganrun.metrics.context import EvalContext

SSIM_WINDOW = 11  # torchmetrics' default Gaussian window
Values = dict[str, Any]


@dataclass(frozen=True)
class Upscaled:
    """Test images as uint8 (N, C, H, W): the originals, the model's and bicubic's."""

    hr: torch.Tensor
    labels: torch.Tensor | None
    sr: torch.Tensor
    bicubic: torch.Tensor


def upscaled(ctx: EvalContext) -> Upscaled:
    """The test images, downscaled and brought back by the model and by bicubic, once per
    checkpoint."""

    def compute() -> Upscaled:
        from ganrun.models.families.superres import bicubic

        model, b = ctx.model, ctx.cfg.batch_size
        hr, labels = ctx.test_images("test")
        sr, base = [], []
        for i in range(0, len(hr), b):
            lr = model.low_resolution(hr[i : i + b].to(ctx.device))
            sr.append(model.upscale(lr).cpu())
            base.append(bicubic(lr, model.scale, ctx.info.value_range).cpu())
        as_uint8 = [to_uint8(x, ctx.info.value_range) for x in (hr, torch.cat(sr), torch.cat(base))]
        return Upscaled(as_uint8[0], labels, as_uint8[1], as_uint8[2])

    return ctx.shared("upscaled", compute)


def luma(pixels: torch.Tensor, border: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> what PSNR and SSIM compare, in [0, 1]: Y of YCbCr for RGB, the
    pixels for grayscale, ``border`` pixels cropped from each side."""
    x = pixels.double() / 255
    if x.shape[1] == 3:
        weights = torch.tensor([65.481, 128.553, 24.966], dtype=x.dtype).view(1, 3, 1, 1)
        x = (16 + (x * weights).sum(dim=1, keepdim=True)) / 255
    return x[..., border : x.shape[-2] - border, border : x.shape[-1] - border]


def _protocol(ctx: EvalContext, what: str) -> Values:
    return {
        "metric_library": what,
        "reference_split": "test",
        "num_real": len(upscaled(ctx).hr),
        "scale": ctx.model.scale,
        "low_resolution": "bicubic downsampling with antialiasing (torch)",
        "baseline": "bicubic upscaling of the same low-resolution images (torch)",
        "seed": ctx.cfg.seed,
    }


def _compared(ctx: EvalContext, measure: Any, name: str) -> tuple[Values, Values]:
    u, border = upscaled(ctx), ctx.model.scale
    target = luma(u.hr, border)
    values = {
        name: float(measure(luma(u.sr, border), target)),
        f"bicubic_{name}": float(measure(luma(u.bicubic, border), target)),
    }
    protocol = {
        **_protocol(ctx, f"torchmetrics {version('torchmetrics')}"),
        "compared": "Y of YCbCr (BT.601, 16-235)" if u.hr.shape[1] == 3 else "pixels",
        "border_cropped": border,
        "data_range": 1.0,
        "per_image": "computed per image, then averaged",
    }
    return values, protocol


def psnr(ctx: EvalContext) -> tuple[Values, Values]:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    def measure(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return peak_signal_noise_ratio(a, b, data_range=1.0, dim=(1, 2, 3))

    values, protocol = _compared(ctx, measure, "psnr")
    return values, {**protocol, "units": "dB"}


def ssim(ctx: EvalContext) -> tuple[Values, Values]:
    from torchmetrics.functional.image import structural_similarity_index_measure

    def measure(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return structural_similarity_index_measure(a, b, data_range=1.0)

    values, protocol = _compared(ctx, measure, "ssim")
    return values, {**protocol, "window": f"Gaussian {SSIM_WINDOW}x{SSIM_WINDOW}, sigma 1.5"}


def _classifier_outputs(ctx: EvalContext, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    extractor = ctx.extractor("cnn")
    return fidelity.extract(extractor, gray_to_rgb(pixels), ctx.device, ctx.cfg.batch_size)


def _classifier_protocol(ctx: EvalContext) -> Values:
    return {**_protocol(ctx, "ganrun"), **ctx.extractor("cnn").protocol()}


def accuracy(ctx: EvalContext) -> tuple[Values, Values]:
    u, layer = upscaled(ctx), ctx.extractor("cnn").logits_layer
    values = {}
    for name, pixels in (("sr_acc", u.sr), ("bicubic_sr_acc", u.bicubic), ("hr_acc", u.hr)):
        logits = _classifier_outputs(ctx, pixels)[layer]
        values[name] = float((logits.argmax(1) == u.labels).float().mean())
    return values, _classifier_protocol(ctx)


def fid(ctx: EvalContext) -> tuple[Values, Values]:
    u, layer = upscaled(ctx), ctx.extractor("cnn").feature_layer
    reference = fidelity.fid_statistics(_classifier_outputs(ctx, u.hr)[layer])
    values = {}
    for name, pixels in (("sr_fid", u.sr), ("bicubic_sr_fid", u.bicubic)):
        stats = fidelity.fid_statistics(_classifier_outputs(ctx, pixels)[layer])
        values[name] = fidelity.fid(stats, reference)
    return values, {**_classifier_protocol(ctx), "reference": "the original test images"}


# ------------------------------------------------------------------------------------ checks
def check_images(ctx: EvalContext) -> None:
    ctx.require_split("test", "psnr and ssim")
    side = ctx.info.resolution - 2 * ctx.model.scale
    if side < SSIM_WINDOW:
        raise GanrunError(
            f"ssim's {SSIM_WINDOW}x{SSIM_WINDOW} window does not fit the {side}x{side} left of "
            f"{ctx.info.resolution}x{ctx.info.resolution} images once {ctx.model.scale} border "
            "pixels are cropped; train at a larger data.resolution, or drop ssim"
        )


def check_labels(ctx: EvalContext) -> None:
    ctx.require_split("test", "sr_acc and sr_fid")
    if ctx.info.num_classes == 0:
        raise GanrunError(
            f"sr_acc and sr_fid read images with the data-set classifier, trained on labels; "
            f"data={ctx.info.name} has none: score with psnr and ssim"
        )


def check_fid(ctx: EvalContext) -> None:
    check_labels(ctx)
    n = ctx.test_count("test")
    if n < int(FEATURES):
        raise GanrunError(
            f"sr_fid needs at least {FEATURES} test images (the classifier's feature dimension; "
            f"fewer make the covariance singular), got {n}; raise eval.test_examples "
            "(0: all)"
        )
