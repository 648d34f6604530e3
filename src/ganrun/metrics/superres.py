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
from pathlib import Path
from typing import Any

import torch

from ganrun.errors import GanrunError
from ganrun.images import to_uint8
from ganrun.metrics import fidelity
from ganrun.metrics.classifier import FEATURES
from ganrun.metrics.context import EvalContext

SSIM_WINDOW = 11  # torchmetrics' default Gaussian window
Values = dict[str, Any]


@dataclass(frozen=True)
class Upscaled:
    """Images as uint8 batches of one size each (N, C, H, W): the originals, the model's and
    bicubic's. The test split comes in batches of ``eval.batch_size``; a folder of images
    (``eval.sr_images``) one image a batch, each at its own size."""

    hr: list[torch.Tensor]
    sr: list[torch.Tensor]
    bicubic: list[torch.Tensor]
    labels: torch.Tensor | None  # the test split's classes
    source: dict[str, Any]  # what the records say was scored

    @property
    def count(self) -> int:
        return sum(len(batch) for batch in self.hr)


def sr_images(ctx: EvalContext) -> tuple[list[torch.Tensor], dict[str, Any]]:
    """``eval.sr_images``' images, read once: each in the model's channels and value range,
    cropped at the bottom and right to a multiple of ``model.scale`` (as the benchmarks'
    "modcrop" does), with what the records say of the folder."""

    def read() -> tuple[list[torch.Tensor], dict[str, Any]]:
        from ganrun.data import convert_channels
        from ganrun.data.external import read_image_folder

        files, images, sha256 = read_image_folder(Path(ctx.cfg.sr_images), "eval.sr_images")
        split = ctx.data.held_out
        scale, out = ctx.model.scale, []
        for path, image in zip(files, images, strict=True):
            h, w = (side - side % scale for side in image.shape[-2:])
            if min(h, w) < 2 * scale + SSIM_WINDOW:
                raise GanrunError(
                    f"{path} is {image.shape[-2]}x{image.shape[-1]}: too small to score at "
                    f"{scale}x (SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} window after {scale} border "
                    f"pixels are cropped); remove it from eval.sr_images"
                )
            pixels = convert_channels(image[None, :, :h, :w], ctx.info.channels)
            out.append(split.scaled(pixels))
        source = {
            "reference_folder": str(Path(ctx.cfg.sr_images).expanduser()),
            "reference_sha256": sha256,
            "crop": f"bottom and right to a multiple of {scale}",
        }
        return out, source

    return ctx.shared("sr_images", read)


def upscaled(ctx: EvalContext) -> Upscaled:
    """The test images (or ``eval.sr_images``), downscaled and brought back by the model and
    by bicubic, once per checkpoint."""

    def compute() -> Upscaled:
        from ganrun.models.families.superres import bicubic

        model, b, value_range = ctx.model, ctx.cfg.batch_size, ctx.info.value_range
        labels = None
        if ctx.cfg.sr_images:
            batches, source = sr_images(ctx)
        else:
            hr, labels = ctx.test_images("test")
            batches = [hr[i : i + b] for i in range(0, len(hr), b)]
            source = {"reference_split": "test"}
        out: dict[str, list[torch.Tensor]] = {"hr": [], "sr": [], "bicubic": []}
        for hr in batches:
            lr = model.low_resolution(hr.to(ctx.device))
            for name, images in (
                ("hr", hr),
                ("sr", model.upscale(lr)),
                ("bicubic", bicubic(lr, model.scale, value_range)),
            ):
                out[name].append(to_uint8(images, value_range))
        return Upscaled(**out, labels=labels, source=source)

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
    u = upscaled(ctx)
    return {
        "metric_library": what,
        **u.source,
        "num_real": u.count,
        "scale": ctx.model.scale,
        "low_resolution": "bicubic downsampling with antialiasing (torch)",
        "baseline": "bicubic upscaling of the same low-resolution images (torch)",
        "seed": ctx.cfg.seed,
    }


def _compared(ctx: EvalContext, measure: Any, name: str) -> tuple[Values, Values]:
    """``measure(a, b)`` -> per-image values, of the model's images and of bicubic's against
    the originals, averaged over the images."""
    u, border = upscaled(ctx), ctx.model.scale
    values = {}
    for key, images in ((name, u.sr), (f"bicubic_{name}", u.bicubic)):
        pairs = zip(images, u.hr, strict=True)
        per_image = [measure(luma(mine, border), luma(hr, border)) for mine, hr in pairs]
        values[key] = float(torch.cat(per_image).mean())
    protocol = {
        **_protocol(ctx, f"torchmetrics {version('torchmetrics')}"),
        "compared": "Y of YCbCr (BT.601, 16-235)" if u.hr[0].shape[1] == 3 else "pixels",
        "border_cropped": border,
        "data_range": 1.0,
        "per_image": "computed per image, then averaged",
    }
    return values, protocol


def psnr(ctx: EvalContext) -> tuple[Values, Values]:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    def measure(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return peak_signal_noise_ratio(a, b, data_range=1.0, dim=(1, 2, 3), reduction="none")

    values, protocol = _compared(ctx, measure, "psnr")
    return values, {**protocol, "units": "dB"}


def ssim(ctx: EvalContext) -> tuple[Values, Values]:
    from torchmetrics.functional.image import structural_similarity_index_measure

    def measure(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")

    values, protocol = _compared(ctx, measure, "ssim")
    return values, {**protocol, "window": f"Gaussian {SSIM_WINDOW}x{SSIM_WINDOW}, sigma 1.5"}


def _classifier_protocol(ctx: EvalContext) -> Values:
    return {**_protocol(ctx, "ganrun"), **ctx.extractor("cnn").protocol()}


def _classifier_outputs(ctx: EvalContext, u: Upscaled, which: str) -> dict[str, torch.Tensor]:
    """The classifier's outputs of the originals (``which`` = "hr"), the model's images ("sr")
    or bicubic's ("bicubic")."""
    return ctx.classifier_outputs(which, torch.cat(getattr(u, which)))


def accuracy(ctx: EvalContext) -> tuple[Values, Values]:
    u, layer = upscaled(ctx), ctx.extractor("cnn").logits_layer
    values = {}
    for name, which in (("sr_acc", "sr"), ("bicubic_sr_acc", "bicubic"), ("hr_acc", "hr")):
        logits = _classifier_outputs(ctx, u, which)[layer]
        values[name] = float((logits.argmax(1) == u.labels).float().mean())
    return values, _classifier_protocol(ctx)


def fid(ctx: EvalContext) -> tuple[Values, Values]:
    u, layer = upscaled(ctx), ctx.extractor("cnn").feature_layer
    reference = fidelity.fid_statistics(_classifier_outputs(ctx, u, "hr")[layer])
    values = {}
    for name, which in (("sr_fid", "sr"), ("bicubic_sr_fid", "bicubic")):
        stats = fidelity.fid_statistics(_classifier_outputs(ctx, u, which)[layer])
        values[name] = fidelity.fid(stats, reference)
    return values, {**_classifier_protocol(ctx), "reference": "the original test images"}


# ------------------------------------------------------------------------------------ checks
def check_images(ctx: EvalContext) -> None:
    if ctx.cfg.sr_images:
        sr_images(ctx)  # read and checked now, before anything is scored
        return
    ctx.require_split("test", "psnr and ssim (or give eval.sr_images=<folder>)")
    side = ctx.info.resolution - 2 * ctx.model.scale
    if side < SSIM_WINDOW:
        raise GanrunError(
            f"ssim's {SSIM_WINDOW}x{SSIM_WINDOW} window does not fit the {side}x{side} left of "
            f"{ctx.info.resolution}x{ctx.info.resolution} images once {ctx.model.scale} border "
            "pixels are cropped; train at a larger data.resolution, or drop ssim"
        )


def check_labels(ctx: EvalContext) -> None:
    if ctx.cfg.sr_images:
        raise GanrunError(
            "sr_acc and sr_fid score the test split with its classifier; eval.sr_images has no "
            "labels: score it with eval.metrics=[psnr,ssim]"
        )
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
