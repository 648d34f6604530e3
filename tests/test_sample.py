"""`ganrun sample`: grids, interpolation strips and npz files from a trained checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from ganrun.models.latent import plan_latents, slerp
from tests.conftest import TINY


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from ganrun.cli import main

    root = tmp_path_factory.mktemp("sample")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["train", *TINY, "hydra.run.dir=run"]) == 0
    finally:
        os.chdir(cwd)
    return root / "run" / "checkpoints" / "last.pt"


def test_grid(cli, tmp_path, checkpoint):
    code, out, err = cli("sample", f"checkpoint={checkpoint}", "n=10", cwd=tmp_path)
    assert code == 0, err
    path = checkpoint.parents[1] / "generated" / "last_n10_seed0.png"
    assert str(path) in out
    # digits are 16x16; torchvision's grid: 3 per row, 4 rows, 2-pixel padding, 56 x 74 pixels,
    # written 10 times as large (the smallest whole factor to reach sample.grid_min_width=512).
    big = np.array(Image.open(path))
    assert big.shape[:2] == (10 * (4 * 18 + 2), 10 * (3 * 18 + 2))
    args = ["sample.grid_min_width=0", "out=native.png"]
    assert cli("sample", f"checkpoint={checkpoint}", "n=10", *args, cwd=tmp_path)[0] == 0
    native = np.array(Image.open(tmp_path / "native.png"))
    assert native.shape[:2] == (4 * 18 + 2, 3 * 18 + 2)
    assert np.array_equal(big, native.repeat(10, axis=0).repeat(10, axis=1))  # blocks, nothing new


def test_npz_is_reproducible_and_matches_the_seed(cli, tmp_path, checkpoint):
    args = [f"checkpoint={checkpoint}", "n=5", "sample.format=npz"]
    assert cli("sample", *args, "out=a.npz", cwd=tmp_path)[0] == 0
    assert cli("sample", *args, "out=b.npz", cwd=tmp_path)[0] == 0
    assert cli("sample", *args, "out=c.npz", "sample.seed=1", cwd=tmp_path)[0] == 0
    a, b, c = (np.load(tmp_path / f"{n}.npz") for n in "abc")
    assert a["samples"].shape == (5, 16, 16, 1) and a["samples"].dtype == np.uint8
    assert a["z"].ndim == 2 and a["z"].shape[0] == 5
    assert "labels" not in a
    np.testing.assert_array_equal(a["samples"], b["samples"])
    assert not np.array_equal(a["z"], c["z"])


def test_interpolation_strips_start_and_end_at_random_points(cli, tmp_path, checkpoint):
    args = [f"checkpoint={checkpoint}", "n=12", "sample.interpolate=true", "sample.steps=4"]
    code, out, err = cli("sample", *args, "sample.format=npz", "out=i.npz", cwd=tmp_path)
    assert code == 0, err
    assert "3 interpolation strips of 4 images" in out
    z = torch.from_numpy(np.load(tmp_path / "i.npz")["z"]).view(3, 4, -1)
    # Each strip is the spherical path between its own two ends, at t = 0, 1/3, 2/3, 1.
    t = torch.linspace(0, 1, 4).view(4, 1)
    for strip in z:
        torch.testing.assert_close(slerp(strip[:1], strip[-1:], t), strip, atol=1e-4, rtol=0)
    assert not torch.allclose(z[0, 0], z[1, 0])
    assert cli("sample", *args, cwd=tmp_path)[0] == 0
    png = checkpoint.parents[1] / "generated" / "last_interp_seed0.png"
    assert Image.open(png).size == (7 * (4 * 18 + 2), 7 * (3 * 18 + 2))  # 74 px: 7x to 518


def test_slerp_endpoints_and_norm():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(2, 64, generator=g), torch.randn(2, 64, generator=g)
    t = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1)
    path = slerp(z0[:, None], z1[:, None], t)
    torch.testing.assert_close(path[:, 0], z0, atol=1e-5, rtol=0)
    torch.testing.assert_close(path[:, 2], z1, atol=1e-5, rtol=0)
    # a straight line's midpoint shrinks towards 0; the great circle keeps the norm up
    assert (path[:, 1].norm(dim=-1) > ((z0 + z1) / 2).norm(dim=-1)).all()


MODEL = OmegaConf.create({"noise": "normal", "noise_scale": 1.0, "latent_dim": 4})


def test_conditional_models_get_one_class_per_row():
    gen = torch.Generator().manual_seed(0)
    z, labels, per_row = plan_latents(MODEL, 10, 64, False, 5, gen)
    assert per_row == 7 and z.shape == (70, 4)
    assert labels.view(10, 7).tolist() == [[c] * 7 for c in range(10)]
    z, labels, per_row = plan_latents(MODEL, 10, 64, True, 5, torch.Generator().manual_seed(0))
    assert per_row == 5 and labels.view(10, 5)[:, 0].tolist() == list(range(10))
    z, labels, per_row = plan_latents(MODEL, 0, 64, True, 5, torch.Generator().manual_seed(0))
    assert labels is None and z.shape == (13 * 5, 4)


@pytest.mark.parametrize(
    "args, fragment",
    [
        ([], "checkpoint=<file>"),
        (["checkpoint=nope.pt"], "does not exist"),
        (["n=0"], "n=0"),
        (["sample.format=jpg"], "sample.format=jpg"),
        (["sample.steps=1"], "sample.steps=1"),
        (["out=x.png", "sample.format=npz"], "must end in .npz"),
        (["sample.grid_min_width=-5"], "sample.grid_min_width=-5 must be 0 (native size)"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, checkpoint, args, fragment):
    if args and not args[0].startswith("checkpoint="):
        args = [f"checkpoint={checkpoint}", *args]
    before = sorted(p for p in checkpoint.parents[1].rglob("*"))
    code, out, err = cli("sample", *args, cwd=tmp_path)
    assert code == 2
    assert err.startswith("ganrun: error: ") and err.count("\n") == 1 and fragment in err
    assert sorted(p for p in checkpoint.parents[1].rglob("*")) == before
    assert list(tmp_path.iterdir()) == []
