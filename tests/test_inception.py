"""The fused Inception (metrics/inception.py) computes torch-fidelity's features: on random
weights with every BatchNorm non-trivial (no shared files needed), and on the FID weights with
real digits when ``../shared/data/weights`` is there."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from ganrun.metrics import fidelity
from ganrun.metrics.inception import CPU_CHUNK, FusedInception, tf1_resize_matrix
from tests.conftest import FAST, TINY, assert_one_line_error

LAYERS = ["2048", "logits_unbiased"]


@pytest.mark.parametrize("size_in", [7, 28, 32, 64, 400])
def test_the_resize_matrices_are_tf1_bilinear(size_in: int) -> None:
    gen = torch.Generator().manual_seed(size_in)
    images = torch.randint(0, 256, (2, 3, size_in, size_in + 3), generator=gen).float()
    expected = interpolate_bilinear_2d_like_tensorflow1x(
        images, size=(299, 299), align_corners=False
    )
    rows, cols = tf1_resize_matrix(size_in, 299), tf1_resize_matrix(size_in + 3, 299)
    assert torch.allclose(rows.sum(1), torch.ones(299))  # every output pixel a convex mix
    got = torch.einsum("oh,nchw,pw->ncop", rows, images, cols)
    assert (got - expected).abs().max() < 2e-3  # pixel values 0-255: float32 rounding


class _RandomInception(FeatureExtractorInceptionV3):
    """torch-fidelity's network left at its own initialisation (its constructor insists on a
    weights file; an empty one is read and ignored)."""

    def load_state_dict(self, state_dict, strict=True, assign=False):  # noqa: ARG002
        return None


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory) -> FeatureExtractorInceptionV3:
    """Random weights whose BatchNorms all do something (scale, shift, running statistics away
    from 1 and 0), so a wrong fold would show."""
    empty = tmp_path_factory.mktemp("inception") / "empty.pth"
    torch.save({}, empty)
    net = _RandomInception("inception-v3-compat", LAYERS, feature_extractor_weights_path=str(empty))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith("bn.weight"):
                tensor.copy_(0.8 + 0.4 * torch.rand(tensor.shape, generator=gen))
            elif name.endswith(("running_mean", "bn.bias")):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=gen))
            elif name.endswith("conv.weight"):
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2 / fan_in) ** 0.5)
            elif name.startswith("fc."):
                tensor.copy_(0.01 * torch.randn(tensor.shape, generator=gen))
    return net


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)


@pytest.mark.parametrize("size", [28, 64])
def test_fused_features_equal_torch_fidelitys_on_random_weights(random_inception, size) -> None:
    images = _images(3, size, size)
    with torch.no_grad():
        expected = random_inception.convert_features_tuple_to_dict(random_inception(images))
    got = FusedInception(random_inception)(images)
    assert list(got) == LAYERS
    for layer in LAYERS:
        scale = expected[layer].abs().max()
        assert scale > 0.1, "a degenerate network would prove nothing"
        assert (got[layer] - expected[layer]).abs().max() < 1e-5 * max(1.0, float(scale))


def test_cpu_chunks_change_nothing_but_speed(random_inception) -> None:
    """Batches are cut into CPU_CHUNK images; a batch across a chunk boundary gives each image
    the features it gets alone."""
    fused = FusedInception(random_inception)
    images = _images(CPU_CHUNK + 1, 28, 1)
    together = fused(images)["2048"]
    alone = fused(images[-1:])["2048"]
    assert together.shape == (CPU_CHUNK + 1, 2048)
    assert (together[-1:] - alone).abs().max() < 1e-5 * float(alone.abs().max())


def test_the_fused_network_refuses_what_torch_fidelity_refuses(random_inception) -> None:
    fused = FusedInception(random_inception)
    with pytest.raises(ValueError, match="uint8"):
        fused(torch.zeros(1, 3, 28, 28))
    with pytest.raises(ValueError, match="N, 3, H, W"):
        fused(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


def _digits(shared, n: int) -> torch.Tensor:
    with gzip.open(shared / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz") as f:
        data = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    return torch.from_numpy(data.copy()).repeat(1, 3, 1, 1)


def test_fid_features_and_fid_equal_torch_fidelitys_on_digits(shared_data) -> None:
    """The issue's bar: features within 1e-4, FID within 1e-3 (relative), with the real FID
    weights on real digits."""
    weights = shared_data / "weights" / "pt_inception-2015-12-05-pool3-only.pth"
    if not weights.is_file():
        pytest.skip(f"no Inception weights at {weights}")
    reference = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights)
    )
    images = _digits(shared_data, 40)
    with torch.no_grad():
        expected = torch.cat([reference(images[i : i + 20])[0] for i in (0, 20)])
    got = FusedInception(reference)(images)["2048"]
    assert (got - expected).abs().max() < 1e-4
    half = {
        name: [fidelity.fid_statistics(f[:20].double()), fidelity.fid_statistics(f[20:].double())]
        for name, f in (("fused", got), ("reference", expected))
    }
    fid_fused = fidelity.fid(*half["fused"])
    fid_reference = fidelity.fid(*half["reference"])
    assert fid_reference > 1
    assert abs(fid_fused - fid_reference) < 1e-3 * fid_reference


def test_the_implementation_is_a_checked_setting(cli, tmp_path) -> None:
    result = cli(
        "train", *TINY, *FAST, "eval.at_end=true", "eval.inception_impl=fast", cwd=tmp_path
    )
    assert_one_line_error(result, "eval.inception_impl=fast", "fused", "torch-fidelity")
    assert not any(tmp_path.rglob("*.pt"))
