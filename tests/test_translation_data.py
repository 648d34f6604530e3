"""Two-domain data (data/translation.py): domain A in train/test, B in train_b/test_b, unpaired;
on fixtures in the real formats (MNIST IDX files, CycleGAN's folder layout)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganrun.config.checks import check_data_config
from ganrun.data import build_data
from ganrun.data.mnist import fit_to_frame
from ganrun.data.translation import MIN_CONTRAST, colorize, halves
from ganrun.errors import GanrunError
from tests.conftest import TINY, assert_one_line_error, composed
from tests.test_data import data_config, make_folder, make_mnist

CPU = torch.device("cpu")
RANGE = (-1.0, 1.0)


def test_halves_are_disjoint_seeded_and_cover_the_split():
    a, b = halves(11, "train")
    assert len(a) == 5 and len(b) == 6
    assert sorted(torch.cat([a, b]).tolist()) == list(range(11))
    assert torch.equal(a, halves(11, "train")[0])  # the same data set on every run
    assert not torch.equal(a, halves(11, "test")[0])


def test_colorize_blends_two_legible_colours():
    gray = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 1, 1, 3).repeat(50, 1, 1, 1)
    out = colorize(gray, torch.Generator().manual_seed(0))
    assert out.shape == (50, 3, 1, 3) and out.dtype == torch.uint8
    background, stroke = out[:, :, 0, 0].float(), out[:, :, 0, 1].float()
    luma = torch.tensor([0.299, 0.587, 0.114])
    assert ((stroke @ luma - background @ luma).abs() >= MIN_CONTRAST - 1).all()
    assert len({tuple(c) for c in stroke.long().tolist()}) > 40  # colours differ per image
    middle = out[:, :, 0, 2].float()
    assert torch.allclose(middle, background + (stroke - background) * 128 / 255, atol=0.51)


def test_mnist_color_splits_two_unpaired_domains(tmp_path):
    arrays = make_mnist(tmp_path, n_train=40, n_test=12)
    data = build_data(data_config("mnist_color", tmp_path), RANGE, CPU)
    assert {k: len(v) for k, v in data.splits.items()} == {
        "train": 20,
        "train_b": 20,
        "test": 6,
        "test_b": 6,
    }
    assert data.info.channels == 3 and data.info.num_classes == 10
    # A: the MNIST images of one half, gray (three equal channels); B: the other half, coloured.
    a, b = halves(40, "train")
    train = data.splits["train"]
    gray = torch.from_numpy(arrays["train-images-idx3-ubyte"])[a]
    assert torch.equal(train.images[:, 0], gray) and torch.equal(train.images[:, 2], gray)
    labels = torch.from_numpy(arrays["train-labels-idx1-ubyte"]).long()
    assert torch.equal(train.labels, labels[a])
    assert torch.equal(data.splits["train_b"].labels, labels[b])
    colour = data.splits["train_b"].images
    assert not torch.equal(colour[:, 0], colour[:, 1])
    again = build_data(data_config("mnist_color", tmp_path), RANGE, CPU)
    assert torch.equal(again.splits["train_b"].images, colour)


def test_mnist_digits_pairs_two_handwriting_sources(tmp_path):
    make_mnist(tmp_path, n_train=40, n_test=12)
    data = build_data(data_config("mnist_digits", tmp_path), RANGE, CPU)
    sizes = {k: len(v) for k, v in data.splits.items()}
    assert sizes == {"train": 40, "test": 12, "train_b": 1647, "test_b": 150}
    assert data.splits["train_b"].images.shape[1:] == (1, 16, 16)
    assert data.splits["train"].images.shape[1:] == (1, 16, 16)


def test_fit_to_frame_scales_each_digits_ink_box_to_fill_the_frame():
    images = torch.zeros(3, 1, 28, 28, dtype=torch.uint8)
    images[0, 0, 6:20, 10:17] = 255  # a 14 x 7 bar, off centre
    images[1, 0, 4:24, 4:24] = 90  # already fills MNIST's 20x20 box
    fitted = fit_to_frame(images)
    assert fitted.dtype == torch.uint8 and fitted.shape == images.shape
    # Stretched by 27/13 about the box's centre: ink down the frame's whole height, about 14
    # columns wide in the middle (interpolated edge columns beside them partly inked).
    bar = fitted[0, 0]
    assert torch.all(bar[:, 8:20] == 255)
    assert torch.all(bar[:, :6] == 0) and torch.all(bar[:, 22:] == 0)
    assert torch.all(fitted[1, 0] == 90)  # a flat box blown up to the frame stays flat
    assert not fitted[2].any()  # blank stays blank
    same = fit_to_frame(fitted[:2])  # a fitted digit already fills the frame
    assert (same.int() - fitted[:2].int()).abs().max() <= 1


def test_fitted_framing_reframes_the_mnist_domain_only(tmp_path):
    arrays = make_mnist(tmp_path, n_train=40, n_test=12, margin=5)
    native = build_data(data_config("mnist_digits", tmp_path, resolution=28), RANGE, CPU)
    fitted = build_data(
        data_config("mnist_digits", tmp_path, resolution=28, framing="fitted"), RANGE, CPU
    )
    expected = fit_to_frame(torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).unsqueeze(1))
    assert torch.equal(fitted.splits["test"].images, expected)
    assert torch.equal(fitted.splits["test"].labels, native.splits["test"].labels)
    assert torch.equal(fitted.splits["test_b"].images, native.splits["test_b"].images)
    assert not torch.equal(fitted.splits["train"].images, native.splits["train"].images)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (
            ["data=mnist_digits", "data.framing=tight"],
            "data.framing='tight' is not one of: native, fitted",
        ),
        (["data=digits", "data.framing=fitted"], "not data=digits; leave data.framing=native"),
    ],
)
def test_bad_framing_is_refused(overrides, fragment):
    with composed(overrides) as cfg, pytest.raises(GanrunError, match=re.escape(fragment)):
        check_data_config(cfg.data)


def test_two_domain_data_have_no_valid_split(tmp_path):
    make_mnist(tmp_path)
    with pytest.raises(GanrunError, match="data.valid_size=0"):
        build_data(data_config("mnist_color", tmp_path, valid_size=5), RANGE, CPU)


def _cyclegan_folder(root: Path, gray_b: bool = False) -> Path:
    for name, count in (("trainA", 6), ("trainB", 5), ("testA", 3), ("testB", 2)):
        make_folder(root / name, flat=count, seed=len(name) + count)
    if gray_b:
        for path in (root / "trainB").iterdir():
            Image.open(path).convert("L").save(path)
    return root


def test_translation_folder_streams_the_four_folders(tmp_path):
    root = _cyclegan_folder(tmp_path / "horse2zebra")
    cfg = data_config("translation_folder", root, resolution=16, num_workers=0)
    data = build_data(cfg, RANGE, CPU)
    assert {k: len(v) for k, v in data.splits.items()} == {
        "train": 6,
        "test": 3,
        "train_b": 5,
        "test_b": 2,
    }
    images, labels = data.splits["train_b"].batch(4)
    assert images.shape == (4, 3, 16, 16) and labels is None


@pytest.mark.parametrize(
    ("damage", "fragments"),
    [
        ("missing", ["translation folder not found", "testB", "data.root"]),
        ("empty", ["no images in", "testB"]),
        ("gray", ["trainA holds 3-channel", "trainB 1-channel"]),
    ],
)
def test_translation_folder_errors_name_the_folder(tmp_path, damage, fragments):
    root = _cyclegan_folder(tmp_path / "data", gray_b=damage == "gray")
    if damage in ("missing", "empty"):
        for path in (root / "testB").iterdir():
            path.unlink()
        if damage == "missing":
            (root / "testB").rmdir()
    with pytest.raises(GanrunError) as info:
        build_data(data_config("translation_folder", root, num_workers=0), RANGE, CPU)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_a_gan_trains_on_either_domain(cli, tmp_path):
    make_mnist(tmp_path / "data", n_train=40, n_test=12)
    common = [*TINY, "data=mnist_color", f"data.root={tmp_path / 'data'}", "data.resolution=16"]
    common = [o for o in common if not o.startswith("train.batch_size")] + ["train.batch_size=8"]
    code, out, err = cli(
        "train", *common, "data.train_split=train_b", "hydra.run.dir=b", cwd=tmp_path
    )
    assert code == 0, err
    assert (tmp_path / "b/checkpoints/last.pt").is_file()
    result = cli("train", *common, "data.valid_size=10", "hydra.run.dir=v", cwd=tmp_path)
    assert_one_line_error(result, "data.valid_size=0")
    assert not (tmp_path / "v/checkpoints").exists()
    assert np.isfinite(np.loadtxt(tmp_path / "b/metrics.csv", delimiter=",", skiprows=1)).all()
