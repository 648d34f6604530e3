"""Data sets: every loader reads tiny files written in the real formats (IDX gz, CIFAR pickle
batches, a TFD .mat, image folders) through its real code path; the samplers and the 2-D
mixtures' scores. The file builders at the top are shared with test_data_cli.py.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ganrun.config.checks import check_data_config
from ganrun.config.schema import DataConfig
from ganrun.data import binarized, build_data, convert_channels
from ganrun.data.mixtures import grid_centers, mode_stats, ring_centers
from ganrun.data.resident import PointSplit, ResidentSplit
from ganrun.errors import GanrunError
from ganrun.images import plot_points
from tests.conftest import composed

CPU = torch.device("cpu")


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic (0, 0, 0x08, ndim), big-endian dims, the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def make_mnist(
    root: Path,
    n_train: int = 40,
    n_test: int = 12,
    gz: bool = True,
    seed: int = 0,
    margin: int = 0,
) -> dict[str, np.ndarray]:
    """``root/MNIST/raw`` with the four IDX files, images blank ``margin`` pixels in from each
    edge (MNIST's own margin is 4); returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    if margin:
        for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
            inner = arrays[name][:, margin:-margin, margin:-margin].copy()
            arrays[name][:] = 0
            arrays[name][:, margin:-margin, margin:-margin] = inner
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as f:
                f.write(idx_bytes(array))
        else:
            (folder / name).write_bytes(idx_bytes(array))
    return arrays


def make_cifar(
    root: Path, per_batch: int = 8, n_test: int = 6, seed: int = 0
) -> dict[str, np.ndarray]:
    """``root/cifar-10-batches-py`` as the python-version release lays it out (pickle protocol 2,
    bytes keys); returns the concatenated training data (N, 3072) and labels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    datas, labels = [], []
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        label = [int(x) for x in rng.integers(0, 10, n)]
        batch = {
            b"batch_label": name.encode(),
            b"labels": label,
            b"data": data,
            b"filenames": [f"{i}.png".encode() for i in range(n)],
        }
        with (folder / name).open("wb") as f:
            pickle.dump(batch, f, protocol=2)
        if name != "test_batch":
            datas.append(data)
            labels.extend(label)
    meta = {
        b"label_names": [
            b"airplane",
            b"automobile",
            b"bird",
            b"cat",
            b"deer",
            b"dog",
            b"frog",
            b"horse",
            b"ship",
            b"truck",
        ],
        b"num_vis": 3072,
    }
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump(meta, f, protocol=2)
    return {"data": np.concatenate(datas), "labels": np.array(labels)}


def make_tfd(
    root: Path,
    n: int = 60,
    side: int = 48,
    name: str = "TFD_48x48.mat",
    seed: int = 0,
    drop: tuple[str, ...] = (),
) -> dict[str, np.ndarray]:
    """A TFD .mat: images (N, S, S), folds (N, 5) with codes 0..3, labs_ex (-1 or 1..7), labs_id."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folds = np.stack([rng.permutation(np.arange(n) % 4) for _ in range(5)], axis=1)
    labelled = rng.integers(1, 8, n)
    # The real file marks the expression of never-labelled images with -1.
    labs_ex = np.where((folds == 0).all(axis=1), -1, labelled).reshape(-1, 1)
    contents = {
        "images": rng.integers(0, 256, (n, side, side), dtype=np.uint8),
        "folds": folds.astype(np.float64),
        "labs_ex": labs_ex.astype(np.float64),
        "labs_id": rng.integers(1, 20, (n, 1)).astype(np.float64),
    }
    root.mkdir(parents=True, exist_ok=True)
    savemat(root / name, {k: v for k, v in contents.items() if k not in drop})
    return contents


def make_folder(
    root: Path,
    classes: dict[str, int] | None = None,
    flat: int = 0,
    size: tuple[int, int] = (20, 12),
    seed: int = 0,
) -> None:
    """PNG/JPEG images of ``size`` (w, h): ``classes`` maps sub-folder -> count; ``flat`` at top."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    jobs = [(root / c, k) for c, k in (classes or {}).items()] + [(root, flat)]
    for folder, count in jobs:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            ext = "png" if i % 2 == 0 else "jpg"
            Image.fromarray(pixels).save(folder / f"img_{i:03d}.{ext}")


def data_config(name: str, root: Path | str = "/nonexistent", **overrides) -> DataConfig:
    """The data group exactly as ``data=<name>`` composes it, with overrides."""
    with composed([f"data={name}", f"data.root={root}"]) as cfg:
        fields = {k: v for k, v in cfg.data.items()}
    return DataConfig(**{**fields, **overrides})


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


# ---------------------------------------------------------------------------- 2-D mixtures
def test_mixture_centers():
    ring = ring_centers(8, 2.0)
    assert ring.shape == (8, 2)
    assert torch.allclose(ring.norm(dim=1), torch.full((8,), 2.0))
    angles = torch.atan2(ring[:, 1], ring[:, 0]).remainder(2 * math.pi).sort().values
    assert torch.allclose(angles.diff(), torch.full((7,), math.pi / 4), atol=1e-6)
    grid = grid_centers(5, 2.0)
    assert grid.shape == (25, 2)
    assert sorted(set(grid[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert len({tuple(c) for c in grid.tolist()}) == 25


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_mixture_data_set(name):
    cfg = data_config(name, num_points=2000, valid_size=300)
    data = build_data(cfg, (-1.0, 1.0), CPU)
    info = data.info
    modes = 8 if name == "ring" else 25
    assert (info.kind, info.channels, info.resolution, info.num_classes) == ("points", 2, 0, modes)
    assert info.extra["centers"].shape == (modes, 2) and info.extra["std"] == cfg.std
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 2000, "valid": 300, "test": 300}
    assert isinstance(data.train, PointSplit)
    points, labels = data.train.all()
    assert points.dtype == torch.float32 and labels.dtype == torch.int64
    # Unscaled: each point lies near the centre of the mode it is labelled with.
    offsets = points - info.extra["centers"][labels]
    assert offsets.std().item() == pytest.approx(cfg.std, rel=0.1)
    assert points.abs().max() > 1.5  # not squeezed into the generator's [-1, 1]
    # The same data in every run, whatever the training seed; the splits differ.
    again = build_data(cfg, (0.0, 1.0), CPU)
    assert torch.equal(again.train.all()[0], points)
    assert not torch.equal(data.split("valid").all()[0], data.split("test").all()[0])
    # Batches are not aliases of the stored points.
    batch, _ = data.train.batch(16)
    batch.add_(100.0)
    assert data.train.all()[0].abs().max() < 10


def test_mode_stats():
    centers = ring_centers(8, 2.0)
    std = 0.02
    gen = torch.Generator().manual_seed(0)
    on_modes = centers.repeat(50, 1) + std * torch.randn(400, 2, generator=gen)
    full = mode_stats(on_modes, centers, std)
    assert full["modes_covered"] == 8 and full["num_modes"] == 8
    assert full["high_quality"] > 0.95
    assert full["mode_kl"] < 0.05

    collapsed = mode_stats(centers[3] + torch.zeros(100, 2), centers, std)
    assert collapsed["modes_covered"] == 1
    assert collapsed["high_quality"] == 1.0
    assert collapsed["mode_kl"] == pytest.approx(math.log(8))

    # Half the samples between modes: they count against quality, not towards coverage.
    half = torch.cat([centers[:2].repeat(10, 1), torch.zeros(20, 2)])
    stats = mode_stats(half, centers, std)
    assert stats["modes_covered"] == 2 and stats["high_quality"] == pytest.approx(0.5)

    nothing = mode_stats(torch.full((10, 2), 50.0), centers, std)
    assert nothing["modes_covered"] == 0 and nothing["high_quality"] == 0.0
    with pytest.raises(ValueError, match="samples"):
        mode_stats(torch.zeros(4, 3), centers, std)


def test_plot_points(tmp_path):
    from PIL import Image

    centers = grid_centers()
    real = centers.repeat(20, 1) + 0.05 * torch.randn(500, 2)
    samples = torch.cat([torch.randn(200, 2), torch.full((3, 2), 100.0)])  # 3 far outliers
    path = plot_points(
        samples, real, centers, tmp_path / "samples" / "step_000010.png", title="step 10"
    )
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= 300
    # Works without the data or the centres too (e.g. plotting samples alone).
    assert plot_points(samples, None, None, tmp_path / "alone.png").stat().st_size > 1000


# ------------------------------------------------------------------------------- samplers
def test_point_split_resume_is_exact():
    points = torch.randn(50, 2)
    a = PointSplit(points, None, CPU, seed=3)
    for _ in range(7):  # crosses an epoch boundary (50 / 8 = 6 full batches)
        a.batch(8)
    state = a.state_dict()
    expected = [a.batch(8)[0] for _ in range(4)]
    b = PointSplit(points, None, CPU, seed=99)
    b.load_state_dict(state)
    assert all(torch.equal(x, b.batch(8)[0]) for x in expected)


def test_resident_split_scales_and_walks_epochs():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1) * 25
    split = ResidentSplit(images, torch.arange(10), (0.0, 1.0), CPU, seed=0)
    seen = torch.cat([split.batch(5)[1], split.batch(5)[1]])
    assert sorted(seen.tolist()) == list(range(10))  # one epoch = each image once
    x, y = split.batch(5)
    assert torch.allclose(x.view(-1), images[y].float().view(-1) / 255)


def test_split_mean_is_the_mean_example_in_the_value_range():
    images = torch.randint(0, 256, (9000, 2, 3, 3), dtype=torch.uint8)  # three chunks
    expected = images.double().mean(dim=0) / 255 * 2 - 1
    mean = ResidentSplit(images, None, (-1.0, 1.0), CPU).mean()
    assert mean.dtype == torch.float32 and torch.allclose(mean.double(), expected, atol=1e-6)
    points = torch.randn(20, 2)
    assert torch.allclose(PointSplit(points, None, CPU).mean(), points.mean(dim=0), atol=1e-6)


def test_data_info_gives_the_training_mean(tmp_path):
    data = build_data(data_config("digits"), (0.0, 1.0), CPU)
    x, _ = data.train.all()
    mean = data.info.train_mean()
    assert mean.shape == x.shape[1:]
    assert torch.allclose(mean, x.mean(dim=0), atol=1e-6)
    make_folder(tmp_path, flat=3, size=(9, 9))
    streamed = build_data(data_config("folder", tmp_path, resolution=8, num_workers=0), (0, 1), CPU)
    assert streamed.info.train_mean is None  # streamed data is never read whole


def test_static_binarize_draws_every_split_once():
    plain = build_data(data_config("digits"), (0.0, 1.0), CPU)
    data = build_data(data_config("digits", binarize="static"), (0.0, 1.0), CPU)
    again = build_data(data_config("digits", binarize="static"), (0.0, 1.0), CPU)
    for name, split in data.splits.items():
        x, _ = split.all()
        gray, _ = plain.split(name).all()
        assert set(x.unique().tolist()) == {0.0, 1.0}
        assert torch.all(x[gray == 0] == 0) and torch.all(x[gray == 1] == 1)
        assert abs(float(x.mean() - gray.mean())) < 0.01  # Bernoulli(intensity) per pixel
        assert torch.equal(x, again.split(name).all()[0])  # the same draw on every build
        batch, _ = split.batch(8)
        assert any(torch.equal(batch[0], image) for image in x)  # batches come from the draw


def test_dynamic_binarize_draws_training_batches_afresh_and_resumes():
    dynamic = build_data(data_config("digits", binarize="dynamic"), (-1.0, 1.0), CPU)
    static = build_data(data_config("digits", binarize="static"), (-1.0, 1.0), CPU)
    for name in ("train", "valid", "test"):  # evaluation reads the fixed draw
        assert torch.equal(dynamic.split(name).all()[0], static.split(name).all()[0])
    assert dynamic.train.intensities is not None
    assert dynamic.split("test").intensities is None

    intensities = torch.tensor([0, 51, 204, 255], dtype=torch.uint8).view(1, 1, 2, 2)
    intensities = intensities.expand(4, 1, 2, 2).contiguous()  # four copies of one image

    def split(seed: int) -> ResidentSplit:
        fixed = binarized(intensities, "train")
        return ResidentSplit(fixed, None, (0.0, 1.0), CPU, seed=seed, intensities=intensities)

    a = split(1)
    draws = torch.cat([a.batch(4)[0] for _ in range(500)])
    assert set(draws.unique().tolist()) == {0.0, 1.0}
    frequency = draws.mean(dim=0).flatten().tolist()
    assert frequency[0] == 0 and frequency[3] == 1
    assert frequency[1] == pytest.approx(0.2, abs=0.03)
    assert frequency[2] == pytest.approx(0.8, abs=0.03)
    state = a.state_dict()
    expected = [a.batch(3)[0] for _ in range(5)]
    b = split(9)
    b.load_state_dict(state)
    assert all(torch.equal(x, b.batch(3)[0]) for x in expected)


def test_shard_keeps_images_labels_and_intensities_together_and_the_split_whole():
    intensities = torch.arange(6, dtype=torch.uint8).mul(51).view(6, 1, 1, 1)  # 0, 51, ..., 255
    fixed = binarized(intensities, "train")
    whole = ResidentSplit(fixed, torch.arange(6), (0.0, 1.0), CPU, intensities=intensities)
    split = whole.sharded(1, 2)  # what process 1 of 2 trains on
    assert len(whole) == 6 and whole.labels.tolist() == list(range(6))  # evaluation's, whole
    assert split.generator is not whole.generator
    assert split.labels.tolist() == [1, 3, 5]
    assert torch.equal(split.images, fixed[1::2])
    assert torch.equal(split.intensities, intensities[1::2])
    for _ in range(10):
        x, y = split.batch(3)
        assert torch.all(x[y == 5] == 1)  # intensity 255 is drawn from its own image


@pytest.mark.parametrize("name", ["ring", "folder"])
def test_binarize_needs_images_held_in_memory(name):
    with (
        composed([f"data={name}", "data.binarize=dynamic"]) as cfg,
        pytest.raises(GanrunError, match=f"not data={name}; leave data.binarize=none"),
    ):
        check_data_config(cfg.data)


def test_convert_channels():
    gray = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    rgb = convert_channels(gray, 3)
    assert rgb.shape == (2, 3, 4, 4) and all(torch.equal(rgb[:, i : i + 1], gray) for i in range(3))
    assert torch.equal(convert_channels(rgb, 1), gray)  # luma of a gray pixel is itself
    red = torch.zeros(1, 3, 1, 1, dtype=torch.uint8)
    red[:, 0] = 255
    assert convert_channels(red, 1).item() == 76  # 0.299 * 255, as PIL's convert("L")


@pytest.mark.parametrize(
    ("valid_size", "sizes"),
    [
        (None, {"train": 1497, "valid": 150, "test": 150}),  # data/digits.yaml
        (300, {"train": 1347, "valid": 300, "test": 150}),
        (0, {"train": 1647, "test": 150}),
    ],
)
def test_digits_splits_follow_valid_size(valid_size, sizes):
    overrides = {} if valid_size is None else {"valid_size": valid_size}
    data = build_data(data_config("digits", **overrides), (-1.0, 1.0), CPU)
    assert {k: len(v) for k, v in data.splits.items()} == sizes
    # The test split is always the last 150 images, whatever valid_size is.
    reference = build_data(data_config("digits", valid_size=0), (-1.0, 1.0), CPU)
    assert torch.equal(data.split("test").images, reference.split("test").images)


def test_digits_valid_size_must_leave_training_images():
    with pytest.raises(GanrunError, match="data.valid_size=1647 leaves no digits training"):
        build_data(data_config("digits", valid_size=1647), (-1.0, 1.0), CPU)


def test_unknown_train_split():
    with pytest.raises(GanrunError, match="no split 'unlabeled'; choose one of: train, valid"):
        build_data(data_config("digits", train_split="unlabeled"), (-1.0, 1.0), CPU)


# ---------------------------------------------------------------------------------- MNIST
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_files(tmp_path, gz):
    arrays = make_mnist(tmp_path, n_train=40, n_test=12, gz=gz)
    cfg = data_config("mnist", tmp_path, valid_size=10, download=False)
    data = build_data(cfg, (-1.0, 1.0), CPU)
    assert (data.info.channels, data.info.resolution, data.info.num_classes) == (1, 28, 10)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 30, "valid": 10, "test": 12}
    train = arrays["train-images-idx3-ubyte"]
    # train = the first images of the training file, valid = the last ones, in file order.
    assert torch.equal(data.split("train").images[:, 0], torch.from_numpy(train[:30]))
    assert torch.equal(data.split("valid").images[:, 0], torch.from_numpy(train[30:]))
    assert data.split("valid").labels.tolist() == arrays["train-labels-idx1-ubyte"][30:].tolist()
    assert torch.equal(
        data.split("test").images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"])
    )
    x, _ = data.train.all()
    assert x.min() >= -1 and x.max() <= 1


def test_mnist_resized_to_rgb(tmp_path):
    make_mnist(tmp_path)
    cfg = data_config("mnist", tmp_path, valid_size=0, resolution=16, channels=3)
    data = build_data(cfg, (0.0, 1.0), CPU)
    assert set(data.splits) == {"train", "test"}
    assert data.train.images.shape == (40, 3, 16, 16) and data.info.channels == 3


def test_mnist_read_only_root_is_not_written(tmp_path):
    make_mnist(tmp_path)
    before = snapshot(tmp_path)
    folders = [tmp_path, tmp_path / "MNIST", tmp_path / "MNIST" / "raw"]
    for f in folders:
        f.chmod(0o555)
    try:
        data = build_data(data_config("mnist", tmp_path, valid_size=10), (-1.0, 1.0), CPU)
    finally:
        for f in folders:
            f.chmod(0o755)
    assert len(data.train) == 30
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda p: p.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(8))), "bad IDX magic"),
        (
            lambda p: p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-5])),
            "bytes where its header",
        ),
        (lambda p: p.write_bytes(p.read_bytes()[:30]), "cannot be read"),
        (lambda p: p.write_bytes(b"not gzip at all"), "cannot be read"),
    ],
    ids=["magic", "truncated-data", "truncated-gzip", "not-gzip"],
)
def test_mnist_corrupt_file(tmp_path, damage, fragment):
    make_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    damage(path)
    with pytest.raises(GanrunError, match=fragment) as info:
        build_data(data_config("mnist", tmp_path, valid_size=10), (-1.0, 1.0), CPU)
    assert str(path) in str(info.value)


def test_mnist_missing_offline(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(GanrunError) as info:
        build_data(data_config("mnist", tmp_path, download=False), (-1.0, 1.0), CPU)
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte" in message and str(tmp_path / "MNIST" / "raw") in message
    assert "data.download=true" in message and "\n" not in message


def test_mnist_failed_download_leaves_nothing(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    def fail(self):
        raw = Path(self.raw_folder)
        raw.mkdir(parents=True)
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"half a file")
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried https://x, "
            "got:\n<urlopen error [Errno -2] Name or service not known>\n"
        )

    monkeypatch.setattr(MNIST, "download", fail)
    root = tmp_path / "data"
    with pytest.raises(GanrunError, match="downloading it failed .*Name or service not known"):
        build_data(data_config("mnist", root, download=True), (-1.0, 1.0), CPU)
    assert not root.exists()  # the half-downloaded file and the folders made for it are gone


def test_mnist_download_is_used_when_files_are_missing(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    def download(self):  # what torchvision leaves behind: the archives and their extraction
        make_mnist(Path(self.root), gz=True)
        make_mnist(Path(self.root), gz=False)

    monkeypatch.setattr(MNIST, "download", download)
    data = build_data(data_config("mnist", tmp_path, valid_size=4), (-1.0, 1.0), CPU)
    assert len(data.train) == 36


def test_mnist_shared_data_read_only(shared_data):
    before = snapshot(shared_data / "MNIST")
    cfg = data_config("mnist", shared_data)
    data = build_data(cfg, (-1.0, 1.0), CPU)
    assert {k: len(v) for k, v in data.splits.items()} == {
        "train": 50000,
        "valid": 10000,
        "test": 10000,
    }
    assert data.split("test").labels.bincount().min() > 800  # all ten digits, real labels
    assert snapshot(shared_data / "MNIST") == before


# ------------------------------------------------------------------------------- CIFAR-10
def test_cifar10_reads_pickle_batches(tmp_path):
    written = make_cifar(tmp_path, per_batch=8, n_test=6)
    cfg = data_config("cifar10", tmp_path, valid_size=5, download=False)
    data = build_data(cfg, (-1.0, 1.0), CPU)
    assert (data.info.channels, data.info.resolution) == (3, 32)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 35, "valid": 5, "test": 6}
    assert data.info.extra["class_names"][:2] == ["airplane", "automobile"]
    # Rows are 1024 red, 1024 green, 1024 blue values, each row-major.
    first = written["data"][0]
    image = data.split("train").images[0]
    assert torch.equal(image[1].flatten(), torch.from_numpy(first[1024:2048]))
    assert torch.equal(
        data.split("valid").images[-1].flatten(), torch.from_numpy(written["data"][-1])
    )
    assert data.split("valid").labels.tolist() == written["labels"][35:].tolist()


def test_cifar10_grayscale_and_resized(tmp_path):
    make_cifar(tmp_path)
    cfg = data_config("cifar10", tmp_path, valid_size=0, channels=1, resolution=16)
    assert build_data(cfg, (-1.0, 1.0), CPU).train.images.shape == (40, 1, 16, 16)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:500]), "not a readable CIFAR-10 pickle"),
        (
            lambda p: p.write_bytes(pickle.dumps({b"data": _Payload()}, protocol=2)),
            "refusing to load",
        ),
        (
            lambda p: p.write_bytes(pickle.dumps({b"batch_label": b"x"}, protocol=2)),
            "lack 'data' and 'labels'",
        ),
        (
            lambda p: p.write_bytes(
                pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2)
            ),
            r"not uint8 \(N, 3072\)",
        ),
    ],
    ids=["truncated", "code-payload", "keys", "shape"],
)
def test_cifar10_corrupt_batch(tmp_path, monkeypatch, damage, fragment):
    make_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    damage(path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GanrunError, match=fragment) as info:
        build_data(data_config("cifar10", tmp_path), (-1.0, 1.0), CPU)
    assert str(path) in str(info.value)
    assert not (tmp_path / "PWNED").exists()


def test_cifar10_missing_offline(tmp_path):
    make_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(GanrunError, match="CIFAR-10 file test_batch not found") as info:
        build_data(data_config("cifar10", tmp_path, download=False), (-1.0, 1.0), CPU)
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in str(info.value)


def test_cifar10_failed_download_leaves_nothing(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    def fail(self):
        (Path(self.root) / self.filename).write_bytes(b"partial archive")
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(CIFAR10, "download", fail)
    (tmp_path / "other.txt").write_text("user file")
    with pytest.raises(GanrunError, match="downloading it failed .*Network is unreachable"):
        build_data(data_config("cifar10", tmp_path), (-1.0, 1.0), CPU)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt"]


# ------------------------------------------------------------------------------------ TFD
def test_tfd_folds_and_splits(tmp_path):
    written = make_tfd(tmp_path, n=60)
    for fold in (0, 3):
        cfg = data_config("tfd", tmp_path, fold=fold)
        data = build_data(cfg, (-1.0, 1.0), CPU)
        column = written["folds"][:, fold]
        assert data.info.num_classes == 7 and data.info.resolution == 48
        assert {k: len(v) for k, v in data.splits.items()} == {
            s: int((column == c).sum())
            for s, c in (("unlabeled", 0), ("train", 1), ("valid", 2), ("test", 3))
        }
        assert data.train is data.split("unlabeled") and data.train.labels is None
        index = np.flatnonzero(column == 2)
        valid = data.split("valid")
        assert valid.labels.tolist() == (written["labs_ex"][index, 0] - 1).astype(int).tolist()
        assert torch.equal(valid.images[:, 0], torch.from_numpy(written["images"][index]))


def test_tfd_prefers_the_file_closer_to_the_resolution(tmp_path):
    make_tfd(tmp_path, n=8, side=48)
    make_tfd(tmp_path, n=8, side=96, name="TFD_96x96.mat")
    small = build_data(data_config("tfd", tmp_path), (-1.0, 1.0), CPU)
    assert small.info.extra["file"].endswith("TFD_48x48.mat")
    big = build_data(data_config("tfd", tmp_path, resolution=64), (-1.0, 1.0), CPU)
    assert big.info.extra["file"].endswith("TFD_96x96.mat") and big.info.resolution == 64


def test_tfd_errors(tmp_path):
    with pytest.raises(GanrunError, match="cannot be downloaded") as info:
        build_data(data_config("tfd", tmp_path), (-1.0, 1.0), CPU)
    assert str(tmp_path / "TFD_48x48.mat") in str(info.value)
    make_tfd(tmp_path, drop=("folds",))
    with pytest.raises(GanrunError, match="lacks the key.* folds"):
        build_data(data_config("tfd", tmp_path), (-1.0, 1.0), CPU)
    (tmp_path / "TFD_48x48.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(20))
    with pytest.raises(GanrunError, match="not a readable .mat file"):
        build_data(data_config("tfd", tmp_path), (-1.0, 1.0), CPU)
    make_tfd(tmp_path)
    with pytest.raises(GanrunError, match="data.fold=5 does not exist"):
        build_data(data_config("tfd", tmp_path, fold=5), (-1.0, 1.0), CPU)
    with pytest.raises(GanrunError, match="no split 'everything'"):
        build_data(data_config("tfd", tmp_path, train_split="everything"), (-1.0, 1.0), CPU)


# --------------------------------------------------------------------------------- folder
def test_folder_with_classes(tmp_path):
    make_folder(tmp_path, {"cats": 5, "dogs": 4}, size=(20, 12))
    cfg = data_config("folder", tmp_path, resolution=8, channels=3, num_workers=0)
    data = build_data(cfg, (-1.0, 1.0), CPU)
    assert data.info.num_classes == 2 and data.info.extra["class_names"] == ["cats", "dogs"]
    assert len(data.train) == 9
    x, y = data.train.batch(4)
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and y.dtype == torch.int64
    xs, ys = data.train.all()
    assert xs.shape == (9, 3, 8, 8) and ys.tolist() == [0] * 5 + [1] * 4


def test_folder_centre_crops_and_converts(tmp_path):
    from PIL import Image

    # Left third black, middle white, right third black: the centre crop keeps the white.
    pixels = np.zeros((10, 30), np.uint8)
    pixels[:, 10:20] = 255
    Image.fromarray(pixels).save(tmp_path / "bar.png")
    cfg = data_config("folder", tmp_path, resolution=10, channels=1, num_workers=0)
    data = build_data(cfg, (0.0, 1.0), CPU)
    assert data.info.num_classes == 0 and data.train.labels is None
    x, _ = data.train.all()
    assert x.shape == (1, 1, 10, 10) and x.min() > 0.9


def test_folder_streams_with_workers_and_resumes(tmp_path):
    make_folder(tmp_path, flat=13, size=(9, 9))
    cfg = data_config("folder", tmp_path, resolution=8, valid_size=3, num_workers=2)
    a = build_data(cfg, (-1.0, 1.0), CPU)
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 10, "valid": 3}
    train = a.train
    train.seed(5)
    for _ in range(3):  # 10 images, batch 4: crosses into the second epoch
        train.batch(4)
    state = train.state_dict()
    expected = [train.batch(4)[0] for _ in range(3)]
    b = build_data(
        data_config("folder", tmp_path, resolution=8, valid_size=3, num_workers=0), (-1.0, 1.0), CPU
    ).train
    b.load_state_dict(state)
    assert all(torch.equal(x, b.batch(4)[0]) for x in expected)


def test_folder_errors(tmp_path):
    with pytest.raises(GanrunError, match="image folder not found"):
        build_data(data_config("folder", tmp_path / "absent"), (-1.0, 1.0), CPU)
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(GanrunError, match="no images in"):
        build_data(data_config("folder", tmp_path), (-1.0, 1.0), CPU)
    (tmp_path / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(GanrunError, match="a.png cannot be read as an image"):
        build_data(data_config("folder", tmp_path), (-1.0, 1.0), CPU)


@pytest.mark.parametrize("workers", [0, 1])
def test_folder_bad_image_mid_stream_is_one_line(tmp_path, workers):
    make_folder(tmp_path, flat=6, size=(8, 8))
    # A whole header, pixels cut short: only decoding finds it (headers are checked on loading).
    from PIL import Image

    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "whole.png").unlink()
    (tmp_path / "zz_broken.png").write_bytes(data[: len(data) // 2])
    cfg = data_config("folder", tmp_path, resolution=8, num_workers=workers)
    split = build_data(cfg, (-1.0, 1.0), CPU).train
    with pytest.raises(GanrunError) as info:
        split.batch(7)
    message = str(info.value)
    assert "zz_broken.png cannot be read as an image" in message and "\n" not in message


def test_tfd_float_images_stored_index_last(tmp_path):
    from scipy.io import savemat

    written = make_tfd(tmp_path, n=12)
    as_floats = {**written, "images": np.moveaxis(written["images"], 0, 2) / 255.0}
    savemat(tmp_path / "TFD_48x48.mat", as_floats)
    data = build_data(data_config("tfd", tmp_path), (-1.0, 1.0), CPU)
    index = np.flatnonzero(written["folds"][:, 0] == 1)
    assert torch.equal(data.split("train").images[:, 0], torch.from_numpy(written["images"][index]))


def test_resize_in_chunks_matches_one_pass(monkeypatch):
    import torch.nn.functional as F

    import ganrun.data

    images = torch.randint(0, 256, (10, 3, 12, 12), dtype=torch.uint8)
    one_pass = F.interpolate(
        images.float(), size=(20, 20), mode="bilinear", antialias=True, align_corners=False
    )
    monkeypatch.setattr(ganrun.data, "RESIZE_CHUNK", 3)
    resized = ganrun.data.resize_uint8(images, 20)
    assert resized.dtype == torch.uint8
    assert torch.equal(resized, one_pass.round().clamp(0, 255).to(torch.uint8))
