"""``ganrun eval samples=<file.npz|folder> data=<name>``: images made elsewhere, scored like a
checkpoint's samples."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganrun.data.external import read_image_set
from ganrun.errors import GanrunError
from ganrun.metrics import classifier
from tests.conftest import FAST, assert_one_line_error, composed

SCORE = [*FAST, "data=digits", "eval.metrics=[fid_cnn,kid_cnn]"]


@pytest.fixture
def cache(tmp_path_factory, monkeypatch) -> Path:
    path = tmp_path_factory.mktemp("eval-samples-cache") / "cache"  # empty for each test
    monkeypatch.setenv("GANRUN_CACHE_DIR", str(path))
    monkeypatch.setattr(classifier, "MIN_STEPS", 30)
    return path


@pytest.fixture
def digits() -> np.ndarray:
    """300 real digits at the data set's 16x16, uint8 N x H x W x 1: someone's "samples"."""
    from ganrun.data import build_data

    with composed(["data=digits"]) as cfg:
        data = build_data(cfg.data, (0.0, 1.0), torch.device("cpu"))
    return data.split("train").pixels()[:300].permute(0, 2, 3, 1).numpy()


def _record(folder: Path, name: str) -> dict:
    return json.loads((folder / "eval" / name / "metrics.json").read_text())["results"]["fast"]


def test_npz_and_folder_of_the_same_images_score_the_same(cli, cache, digits, tmp_path):
    np.savez(tmp_path / "mine.npz", samples=digits)
    code, out, err = cli("eval", "samples=mine.npz", *SCORE, cwd=tmp_path)
    assert code == 0, err
    assert "ganrun: scoring mine.npz (eval=fast: fid_cnn, kid_cnn)" in out
    record = _record(tmp_path, "mine")  # beside the samples by default
    sha = hashlib.sha256((tmp_path / "mine.npz").read_bytes()).hexdigest()
    assert record["protocol"]["fid_cnn"]["samples_sha256"] == sha
    assert record["protocol"]["kid_cnn"]["samples_file"].endswith("mine.npz")
    assert (record["model"], record["weights"], record["checkpoint"]) == (
        "samples",
        "samples",
        "mine.npz",
    )
    assert record["metrics"]["fid_digits_cnn"] > 0
    assert (tmp_path / "eval.csv").is_file()

    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(digits):
        Image.fromarray(image[:, :, 0]).save(folder / f"{i:04d}.png")
    code, out, err = cli("eval", f"samples={folder}", "out=results", *SCORE, cwd=tmp_path)
    assert code == 0, err
    again = _record(tmp_path / "results", "pngs")  # out= names the folder
    assert again["protocol"]["fid_cnn"]["samples_sha256"] != sha  # another file, same pixels
    assert again["metrics"] == record["metrics"]


def test_the_pixels_read_are_the_pixels_stored(digits, tmp_path):
    np.savez(tmp_path / "a.npz", samples=digits, z=np.zeros(3))
    images = read_image_set(tmp_path / "a.npz")
    assert images.pixels.shape == (300, 1, 16, 16) and images.pixels.dtype == torch.uint8
    assert np.array_equal(images.pixels.permute(0, 2, 3, 1).numpy(), digits)
    rgb = np.stack([digits[:4, :, :, 0]] * 3, axis=-1)
    (tmp_path / "f" / "sub").mkdir(parents=True)  # sub-folders are read too, in name order
    for i, image in enumerate(rgb):
        Image.fromarray(image).save(tmp_path / "f" / ("sub" if i == 3 else "") / f"{i}.png")
    folder = read_image_set(tmp_path / "f")
    assert folder.pixels.shape == (4, 3, 16, 16)
    assert np.array_equal(folder.pixels.permute(0, 2, 3, 1).numpy(), rgb)


def _folder_of_two_sizes(tmp_path: Path) -> str:
    (tmp_path / "two").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "two" / "a.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "two" / "b.png")
    return "samples=two"


@pytest.mark.parametrize(
    ("make", "args", "fragment"),
    [
        (
            lambda p, d: np.savez(p / "s.npz", samples=d.astype(np.float32)),
            ["samples=s.npz"],
            "samples is float32, not uint8",
        ),
        (
            lambda p, d: np.savez(p / "s.npz", images=d),
            ["samples=s.npz"],
            "has no array named 'samples' (it has: images)",
        ),
        (
            lambda p, d: np.savez(p / "s.npz", samples=d[:, :, :, 0]),
            ["samples=s.npz"],
            "has the shape (300, 16, 16), not uint8 N x H x W x C",
        ),
        (
            lambda p, d: np.savez(p / "s.npz", samples=d[:100]),
            ["samples=s.npz"],
            "fid_cnn scores eval.num_samples=200 samples, but s.npz holds 100",
        ),
        (
            lambda p, d: (p / "s.npz").write_text("no zip"),
            ["samples=s.npz"],
            "cannot be read as an .npz file",
        ),
        (
            lambda p, d: (p / "s.txt").write_text(""),
            ["samples=s.txt"],
            "is neither an .npz file nor a folder of images",
        ),
        (lambda p, d: None, ["samples=none.npz"], "samples=none.npz does not exist"),
        (lambda p, d: (p / "empty").mkdir(), ["samples=empty"], "samples=empty holds no images"),
        (lambda p, d: _folder_of_two_sizes(p), ["samples=two"], "is 20x20 grayscale but"),
        (
            lambda p, d: np.savez(p / "s.npz", samples=d),
            ["samples=s.npz", "data.resolution=28"],
            "are 16x16 with 1 channel(s), data=digits is 28x28 with 1",
        ),
    ],
)
def test_bad_samples_are_one_line_errors_before_any_work(
    cli, cache, digits, tmp_path, make, args, fragment
):
    make(tmp_path, digits)
    before = sorted(tmp_path.rglob("*"))
    result = cli("eval", *args, *SCORE, cwd=tmp_path)
    assert_one_line_error(result, fragment)
    assert sorted(tmp_path.rglob("*")) == before
    assert not cache.exists()  # no classifier trained, no feature computed


def test_samples_and_checkpoints_do_not_mix(cli, digits, tmp_path):
    np.savez(tmp_path / "s.npz", samples=digits)
    no_data = [o for o in SCORE if o != "data=digits"]
    assert_one_line_error(cli("eval", "samples=s.npz", *no_data, cwd=tmp_path), "needs data=<name>")
    assert_one_line_error(
        cli("eval", "samples=s.npz", "checkpoint=c.pt", *SCORE, cwd=tmp_path),
        "exactly one of checkpoint=<file>, run=<run folder>, sweep=<multirun folder> or samples=",
    )
    assert_one_line_error(
        cli("eval", "checkpoint=c.pt", *SCORE, cwd=tmp_path), "data= applies to samples= only"
    )
    with pytest.raises(GanrunError, match="cannot be trained"):
        from ganrun.data.base import DataInfo
        from ganrun.metrics.given import GivenSamples

        images = read_image_set(tmp_path / "s.npz")
        GivenSamples(images, DataInfo("digits", 1, 16, 10, (0.0, 1.0))).training_step(None, None)


def test_a_reference_set_of_ones_own_replaces_the_split(cli, cache, digits, tmp_path):
    from ganrun.data import build_data

    with composed(["data=digits"]) as cfg:
        data = build_data(cfg.data, (0.0, 1.0), torch.device("cpu"))
    test = data.split("test").pixels().permute(0, 2, 3, 1).numpy()
    np.savez(tmp_path / "ref.npz", samples=test)  # the test split itself, in its own order
    np.savez(tmp_path / "mine.npz", samples=digits)
    assert cli("eval", "samples=mine.npz", *SCORE, cwd=tmp_path)[0] == 0
    split = _record(tmp_path, "mine")
    code, _, err = cli("eval", "samples=mine.npz", "eval.reference=ref.npz", *SCORE, cwd=tmp_path)
    assert code == 0, err
    own = _record(tmp_path, "mine")
    assert own["metrics"] == split["metrics"]  # the same pixels: the same scores
    protocol = own["protocol"]["fid_cnn"]
    assert (
        protocol["reference_sha256"]
        == hashlib.sha256((tmp_path / "ref.npz").read_bytes()).hexdigest()
    )
    assert (
        "reference_split" not in protocol
        and split["protocol"]["fid_cnn"]["reference_split"] == "test"
    )


def test_a_reference_set_of_another_kind_is_refused_up_front(cli, cache, digits, tmp_path):
    np.savez(tmp_path / "mine.npz", samples=digits)
    np.savez(tmp_path / "small.npz", samples=digits[:, :8, :8])
    result = cli("eval", "samples=mine.npz", "eval.reference=small.npz", *SCORE, cwd=tmp_path)
    assert_one_line_error(result, "eval.reference=small.npz holds 8x8 images with 1 channel(s)")
    assert not cache.exists() and not (tmp_path / "eval").exists()


def test_kid_matches_torch_fidelity_on_the_same_two_arrays(
    cli, cache, shared_data, digits, tmp_path
):
    """ganrun's KID of samples= against eval.reference= is torch-fidelity's own on the same
    arrays (Inception pool3 from ../shared/data/weights; skipped without it)."""
    import torch_fidelity

    from ganrun.metrics.cache import file_sha256

    weights = shared_data / "weights" / "pt_inception-2015-12-05-pool3-only.pth"
    if not weights.is_file():
        pytest.skip(f"no Inception weights at {weights}")
    rgb = np.repeat(digits, 3, axis=-1)  # data.channels=3: RGB, as Inception reads
    a, b = rgb[:60], rgb[100:160]
    np.savez(tmp_path / "a.npz", samples=a)
    np.savez(tmp_path / "b.npz", samples=b)
    kid = ["eval.kid_subsets=10", "eval.kid_subset_size=30", "eval.num_samples=60"]
    code, _, err = cli(
        "eval",
        "samples=a.npz",
        "eval.reference=b.npz",
        "data=digits",
        "data.channels=3",
        "eval=fast",
        "eval.metrics=[kid]",
        *kid,
        f"eval.inception_weights={weights}",
        f"eval.inception_weights_sha256={file_sha256(weights)}",
        "device=cpu",
        cwd=tmp_path,
    )
    assert code == 0, err
    ours = _record(tmp_path, "a")["metrics"]

    class Images(torch.utils.data.Dataset):
        def __init__(self, array: np.ndarray) -> None:
            self.images = torch.from_numpy(array).permute(0, 3, 1, 2)

        def __len__(self) -> int:
            return len(self.images)

        def __getitem__(self, i: int) -> torch.Tensor:
            return self.images[i]

    theirs = torch_fidelity.calculate_metrics(
        input1=Images(a),
        input2=Images(b),
        kid=True,
        kid_subsets=10,
        kid_subset_size=30,
        rng_seed=0,
        save_cpu_ram=True,  # no DataLoader workers: the arrays are in memory already
        feature_extractor_weights_path=str(weights),
        cuda=False,
        verbose=False,
    )
    assert ours["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert ours["kid_std"] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-3)
