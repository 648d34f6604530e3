"""CycleGAN's networks and history buffer (models/nets/cyclegan.py)."""

from __future__ import annotations

import pytest
import torch

from ganrun.errors import GanrunError
from ganrun.models.nets.cyclegan import (
    ImagePool,
    PatchDiscriminator,
    ResnetGenerator,
    check_sizes,
    patch_grid,
)


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_parameter_counts_are_the_releases():
    """Counted from the release's networks.py (resnet_9blocks, ngf 64; basic D, ndf 64, three
    layers; instance norm without affine parameters, so convolutions keep their biases), which
    prints 11.378 M and 2.765 M."""
    assert _count(ResnetGenerator(3, 64, 9)) == 11_378_179
    assert _count(PatchDiscriminator(3, 64, 3)) == 2_764_737
    # By hand for a small one: 7x7 in, two downsamplings, one block, two up, 7x7 out.
    w, c = 8, 1
    expected = (
        (c * w * 49 + w)
        + (w * 2 * w * 9 + 2 * w)
        + (2 * w * 4 * w * 9 + 4 * w)
        + 2 * (4 * w * 4 * w * 9 + 4 * w)
        + (4 * w * 2 * w * 9 + 2 * w)
        + (2 * w * w * 9 + w)
        + (w * c * 49 + c)
    )
    assert _count(ResnetGenerator(c, w, 1)) == expected


@pytest.mark.parametrize("downsamplings", [0, 1, 3])
def test_the_number_of_downsamplings(downsamplings):
    g = ResnetGenerator(1, 4, 1, downsamplings)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    assert g(x).shape == x.shape
    inner = 4 * 2**downsamplings
    blocks = [m for m in g.modules() if m.__class__.__name__ == "ResidualBlock"]
    assert blocks[0].body[1].in_channels == inner
    strided = [m for m in g.modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == downsamplings


@pytest.mark.parametrize("resolution", [16, 28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_at_every_size(resolution, channels):
    layers = 3 if resolution >= 28 else 2
    g, d = ResnetGenerator(channels, 8, 2), PatchDiscriminator(channels, 8, layers)
    x = torch.rand(2, channels, resolution, resolution) * 2 - 1
    y = g(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    side = patch_grid(resolution, layers)
    assert d(y).shape == (2, 1, side, side)
    assert side >= 1


def test_the_release_patch_grid_at_256_is_30x30():
    assert patch_grid(256, 3) == 30
    assert PatchDiscriminator(3, 8, 3)(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def test_sizes_the_networks_cannot_take_are_refused_with_the_setting():
    check_sizes(28, 3)
    with pytest.raises(GanrunError, match="divisible by 4"):
        check_sizes(30, 2)
    check_sizes(30, 2, downsamplings=1)
    with pytest.raises(GanrunError, match="model.downsamplings=3 times.*divisible by 8"):
        check_sizes(28, 2, downsamplings=3)
    with pytest.raises(GanrunError, match="model.d_layers=2 or fewer"):
        check_sizes(16, 3)


def test_initial_weights_are_normal_002_and_biases_zero():
    g = ResnetGenerator(3, 16, 2)
    convs = [m for m in g.modules() if isinstance(m, torch.nn.Conv2d)]
    weights = torch.cat([m.weight.detach().flatten() for m in convs])
    assert abs(float(weights.std()) - 0.02) < 0.002
    biases = [m.bias.detach() for m in convs]
    assert all(float(b.abs().max()) == 0 for b in biases)


def test_the_pool_fills_then_swaps_half_the_time():
    gen = torch.Generator().manual_seed(0)
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first, gen), first)  # filling: handed back as they are
    swapped = 0
    for step in range(200):
        batch = torch.full((1, 1, 1, 1), 100.0 + step)
        out = pool.query(batch, gen)
        swapped += int(out.item() != batch.item())
        assert len(pool.images) == 4
    assert 70 < swapped < 130  # about half
    assert torch.equal(ImagePool(0).query(first, gen), first)


def test_the_pool_resumes_exactly():
    gen = torch.Generator().manual_seed(1)
    pool = ImagePool(3)
    pool.query(torch.randn(5, 1, 2, 2), gen)
    state, gen_state = pool.state_dict(), gen.get_state()
    batch = torch.randn(4, 1, 2, 2)
    expected = pool.query(batch, gen)
    restored = ImagePool(0)
    restored.load_state_dict(state)
    gen.set_state(gen_state)
    assert torch.equal(restored.query(batch, gen), expected)
    empty = ImagePool(5)
    empty.load_state_dict(ImagePool(5).state_dict())
    assert empty.images == []
