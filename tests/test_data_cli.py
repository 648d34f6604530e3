"""``ganrun train data=...`` end to end on tiny files in the real formats, and bad data input:
exit code 2, one line, no traceback, and an earlier run folder left byte for byte as it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY
from tests.test_data import make_cifar, make_folder, make_mnist, make_tfd


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _mnist_bad_magic(root: Path) -> None:
    make_mnist(root)
    (root / "MNIST/raw/t10k-images-idx3-ubyte.gz").write_bytes(
        (root / "MNIST/raw/t10k-labels-idx1-ubyte.gz").read_bytes()
    )


def _mnist_missing(root: Path) -> None:
    make_mnist(root)
    (root / "MNIST/raw/train-labels-idx1-ubyte.gz").unlink()


def _cifar_truncated(root: Path) -> None:
    make_cifar(root)
    path = root / "cifar-10-batches-py/test_batch"
    path.write_bytes(path.read_bytes()[:100])


def _broken_image(root: Path) -> None:
    (root / "a.png").write_bytes(b"not a png")


# (id, data overrides, files to make under data.root, fragment of the one-line error)
CASES: list[tuple[str, list[str], Callable[[Path], None] | None, str]] = [
    (
        "mnist-missing-offline",
        ["data=mnist", "data.download=false"],
        _mnist_missing,
        "MNIST file train-labels-idx1-ubyte not found",
    ),
    (
        "mnist-bad-magic",
        ["data=mnist", "data.valid_size=10"],
        _mnist_bad_magic,
        "bad IDX magic number 00000801, expected 00000803",
    ),
    (
        "cifar-truncated",
        ["data=cifar10", "data.valid_size=5"],
        _cifar_truncated,
        "test_batch is corrupt",
    ),
    (
        "cifar-missing-offline",
        ["data=cifar10", "data.download=false"],
        None,
        "CIFAR-10 file data_batch_1 not found",
    ),
    ("tfd-missing", ["data=tfd"], None, "Toronto Face Database cannot be downloaded"),
    (
        "tfd-no-folds",
        ["data=tfd"],
        lambda r: make_tfd(r, n=20, drop=("folds",)),
        "lacks the key(s) folds",
    ),
    (
        "tfd-unknown-fold",
        ["data=tfd", "data.fold=7"],
        lambda r: make_tfd(r, n=20),
        "data.fold=7 does not exist",
    ),
    (
        "tfd-unknown-split",
        ["data=tfd", "data.train_split=labelled"],
        lambda r: make_tfd(r, n=20),
        "has no split 'labelled'; choose one of: unlabeled, train, valid, test",
    ),
    (
        "folder-empty",
        ["data=folder"],
        lambda r: (r / "readme.txt").write_text("hi"),
        "no images in",
    ),
    ("folder-broken-image", ["data=folder"], _broken_image, "a.png cannot be read as an image"),
    ("digits-unknown-split", ["data.train_split=unlabeled"], None, "has no split 'unlabeled'"),
    ("valid-size-negative", ["data.valid_size=-1"], None, "data.valid_size=-1"),
    (
        "valid-size-too-large",
        ["data=mnist", "data.valid_size=40"],
        make_mnist,
        "data.valid_size=40 leaves no MNIST training images",
    ),
    ("unknown-data-set", ["data.name=imagenet"], None, "unknown data set 'imagenet'"),
    ("ring-no-points", ["data=ring", "data.num_points=0"], None, "data.num_points=0"),
    ("grid-std-zero", ["data=grid", "data.std=0"], None, "data.std=0.0 must be positive"),
    ("workers-negative", ["data=folder", "data.num_workers=-2"], None, "data.num_workers=-2"),
    ("binarize-points", ["data=ring", "data.binarize=static"], None, "leave data.binarize=none"),
    ("framing-digits", ["data.framing=fitted"], None, "not data=digits; leave data.framing=native"),
    ("framing-unknown", ["data.framing=tight"], None, "data.framing='tight' is not one of"),
]


@pytest.mark.parametrize(
    ("name", "overrides", "make", "fragment"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_data_input(cli, tmp_path, name, overrides, make, fragment):
    previous = tmp_path / "outputs" / "earlier" / "run"
    (previous / "checkpoints").mkdir(parents=True)
    (previous / "checkpoints" / "last.pt").write_bytes(b"earlier checkpoint")
    root = tmp_path / "data"
    root.mkdir()
    if make is not None:
        make(root)
    before = _snapshot(tmp_path)

    code, out, err = cli("train", *TINY, f"data.root={root}", *overrides, cwd=tmp_path)

    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ganrun: error: "), err
    assert "Traceback" not in out + err
    assert fragment in lines[0], lines[0]
    assert _snapshot(tmp_path) == before
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["earlier"]


def _run_dir(tmp_path: Path) -> Path:
    (run,) = [p.parent for p in (tmp_path / "outputs").rglob("checkpoints")]
    return run


@pytest.mark.parametrize(
    ("overrides", "make", "shape"),
    [
        (["data=mnist", "data.valid_size=8"], make_mnist, (1, 28, 28)),
        (["data=cifar10", "data.valid_size=5"], make_cifar, (3, 32, 32)),
        (["data=tfd", "data.resolution=16"], lambda r: make_tfd(r, n=80), (1, 16, 16)),
        (
            ["data=folder", "data.resolution=16", "data.num_workers=1"],
            lambda r: make_folder(r, {"a": 10, "b": 10}, size=(20, 14)),
            (3, 16, 16),
        ),
    ],
    ids=["mnist", "cifar10", "tfd", "folder"],
)
def test_train_end_to_end(cli, tmp_path, overrides, make, shape):
    root = tmp_path / "data"
    make(root)
    code, out, err = cli("train", *TINY, f"data.root={root}", *overrides, cwd=tmp_path)
    assert code == 0, err
    run = _run_dir(tmp_path)
    assert (run / "samples" / "step_000006.png").is_file()
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 6
    assert ckpt["config"]["data"]["root"] == str(root)
    # The sampler's place was saved: 6 batches of 16, a new permutation whenever one runs out.
    sampler = ckpt["rng"]["data"]
    pos = 0
    for _ in range(6):
        pos = (0 if pos + 16 > len(sampler["order"]) else pos) + 16
    assert sampler["pos"] == pos
    first_layer = next(
        v for k, v in ckpt["networks"]["discriminator"].items() if k.endswith("weight")
    )
    assert first_layer.shape[1] == shape[0]  # D was built for the data's channel count


def test_train_on_shared_mnist_writes_nothing_there(cli, tmp_path, shared_data):
    before = _snapshot(shared_data / "MNIST")
    code, out, err = cli("train", *TINY, "data=mnist", f"data.root={shared_data}", cwd=tmp_path)
    assert code == 0, err
    (log,) = (tmp_path / "outputs").rglob("train.log")
    assert "data=mnist (50000 train images, 28x28)" in log.read_text()
    assert _snapshot(shared_data / "MNIST") == before
