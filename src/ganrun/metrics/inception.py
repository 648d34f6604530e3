"""torch-fidelity's FID Inception, rebuilt for inference: the same weights and features, twice
the images per second on a CPU.

torch-fidelity's network is the TensorFlow graph ported layer by layer: every convolution is
followed by a separate BatchNorm, activations are in NCHW, and the TF1 bilinear resize to 299x299
is computed pixel by pixel. :class:`FusedInception` rebuilds it from a loaded torch-fidelity
extractor with

* each BatchNorm folded into its convolution (w * g / sqrt(var + eps), b = beta - mean * that),
* weights and activations in channels_last, the layout oneDNN's convolutions run fastest in,
* the resize as two small matrix products (rows, then columns) with TF1's sample positions and
  weights (``align_corners=False``, no half-pixel centres, no antialiasing),
* on a CPU, batches cut into chunks of :data:`CPU_CHUNK` images, whose activations stay in cache.

None of this changes what is computed, only the order of float32 sums: pool3 features agree
with torch-fidelity's to about 2e-5 (``tests/test_inception.py``; ``make bench`` reports the
largest difference on real digits beside the speed-up).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

# Images per forward pass on a CPU: measured on 2 cores with 28x28 digits (benchmarks/bench_eval
# and docs/PERFORMANCE.md): 8-16 images ran 20-30% faster than 64.
CPU_CHUNK = 16
SIZE = 299  # Inception's input size


class _ConvReLU(nn.Module):
    """A BasicConv2d (conv without bias, BatchNorm with eps 1e-3, ReLU) with its BatchNorm folded
    into the convolution."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        conv, bn = block.conv, block.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        self.conv = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            bias=True,
        )
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight * scale[:, None, None, None])
            self.conv.bias.copy_(bn.bias - bn.running_mean * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x), inplace=True)


def _fold(module: nn.Module) -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    for name, child in module.named_children():
        if isinstance(child, BasicConv2d):
            setattr(module, name, _ConvReLU(child))
        else:
            _fold(child)


def tf1_resize_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in) weights of TF1's bilinear resize along one axis
    (``align_corners=False``): output i samples the input at i * (size_in / size_out), between
    the floor of that and the next pixel (clamped at the edge). The position is computed in
    float32, as TF1 (and torch-fidelity's port of it) computes it: in float64 a 400-pixel input
    would land up to 3e-5 of a pixel elsewhere."""
    scale = torch.tensor(size_in / size_out, dtype=torch.float32)
    position = torch.arange(size_out, dtype=torch.float32) * scale
    low = position.floor()
    frac = position - low
    low = low.long().clamp(max=size_in - 1)
    high = (low + 1).clamp(max=size_in - 1)
    rows = torch.arange(size_out)
    weights = torch.zeros(size_out, size_in, dtype=torch.float32)
    weights.index_put_((rows, low), 1 - frac, accumulate=True)
    weights.index_put_((rows, high), frac, accumulate=True)
    return weights


class FusedInception(nn.Module):
    """uint8 (N, 3, H, W) images -> {layer: (N, D) float32} for the layers asked for: ``2048``
    (pool3) and ``logits_unbiased`` (pool3 times the classifier's weights, as torch-fidelity)."""

    def __init__(self, reference: nn.Module) -> None:
        super().__init__()
        net = copy.deepcopy(reference)
        _fold(net)
        layers = dict(net.named_children())
        self.fc = layers.pop("fc")
        # torch-fidelity registers the blocks in the order its forward runs them, ending with the
        # global average pool.
        self.trunk = nn.Sequential(*layers.values()).to(memory_format=torch.channels_last)
        self.layers = list(reference.features_list)
        unknown = set(self.layers) - {"2048", "logits_unbiased"}
        if unknown:
            raise ValueError(f"the fused Inception has no layer {sorted(unknown)}")
        self._resize: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self.requires_grad_(False)
        self.eval()

    def _matrices(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (h, w, str(device))
        if key not in self._resize:
            self._resize[key] = (
                tf1_resize_matrix(h, SIZE).to(device),
                tf1_resize_matrix(w, SIZE).to(device),
            )
        return self._resize[key]

    def _forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        rows, cols = self._matrices(x.shape[2], x.shape[3], x.device)
        x = torch.einsum("oh,nchw,pw->ncop", rows, x.float(), cols)
        x = ((x - 128) / 128).contiguous(memory_format=torch.channels_last)
        pool = self.trunk(x).flatten(1)
        out = {"2048": pool}
        if "logits_unbiased" in self.layers:
            out["logits_unbiased"] = pool @ self.fc.weight.T
        return {k: out[k] for k in self.layers}

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if images.device.type != "cpu":
            return self._forward(images)
        parts = [self._forward(chunk) for chunk in images.split(CPU_CHUNK)]
        return {k: torch.cat([p[k] for p in parts]) for k in self.layers}
