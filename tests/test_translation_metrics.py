"""Translation metrics (metrics/translation.py) and ``ganrun sample input=`` for model=cyclegan,
on MNIST fixtures in the real format beside scikit-learn's digits (data=mnist_digits)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from ganrun.cli import main
from ganrun.config.schema import EvalConfig
from ganrun.images import gray_to_rgb, to_uint8
from ganrun.metrics import scoring
from ganrun.metrics.fidelity import extract
from ganrun.runs.checkpoint import restore
from tests.conftest import TINY, assert_one_line_error
from tests.test_data import make_mnist

CPU = torch.device("cpu")
TRAIN = [
    "model=cyclegan",
    "data=mnist_digits",
    "data.resolution=16",
    "data.framing=fitted",
    "model.width=4",
    "model.blocks=1",
    "model.d_width=4",
    "train.batch_size=4",
    "train.steps=4",
    "train.sample_every=4",
    "train.checkpoint_every=4",
    "device=cpu",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A cyclegan checkpoint of four steps: MNIST fixtures (200 test images, fitted to the
    frame as the digits are) against digits."""
    root = tmp_path_factory.mktemp("translation")
    make_mnist(root / "data", n_train=200, n_test=200, margin=4)
    run = root / "run"
    assert main(["train", *TRAIN, f"data.root={root / 'data'}", f"hydra.run.dir={run}"]) == 0
    return run / "checkpoints" / "last.pt"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch) -> None:
    # One cache for the module: each domain's classifier is trained once.
    monkeypatch.setenv("GANRUN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "tcache"))


def _eval_config(**overrides: object) -> OmegaConf:
    base = OmegaConf.structured(EvalConfig)
    settings = {"metrics": ["translation_acc", "translation_fid", "cycle_error"]}
    return OmegaConf.merge(base, {**settings, **overrides})


def test_scores_both_directions_against_the_identity_baseline(cli, tmp_path, trained):
    args = [f"checkpoint={trained}", "eval=translation", "device=cpu"]
    code, _, err = cli("eval", *args, cwd=tmp_path)
    assert code == 0, err
    record = json.loads((trained.parent.parent / "eval/last/metrics.json").read_text())
    values = record["results"]["translation"]["metrics"]
    protocol = record["results"]["translation"]["protocol"]
    # The record says which images the floors were measured on.
    options = record["results"]["translation"]["data_options"]
    assert (options["name"], options["resolution"], options["framing"]) == (
        "mnist_digits",
        16,
        "fitted",
    )
    for direction in ("ab", "ba"):
        for name in (f"translation_acc_{direction}", f"translation_acc_{direction}_identity"):
            assert 0 <= values[name] <= 1
        assert values[f"translation_fid_{direction}"] > 0
    acc = protocol["translation_acc"]
    assert acc["classifier_a"] == "mnist_digits_cnn"
    assert acc["classifier_b"] == "mnist_digits_b_cnn"
    assert (acc["num_ab"], acc["num_ba"]) == (200, 150)  # every test image of both domains
    assert acc["classifier_b_test_accuracy"] > 0.8  # sklearn's digits are real handwriting

    # The figures again, by hand: the digits classifier on G_ab's translations of MNIST, A's
    # classifier on the untranslated digits, and the round trip A -> B -> A.
    snapshot = restore(trained, CPU)
    job = scoring.plan(snapshot, _eval_config(), CPU)
    a, a_labels = snapshot.data.split("test").all()
    b, b_labels = snapshot.data.split("test_b").all()
    model, ctx = snapshot.model, job.ctx

    def logits_of(images: torch.Tensor, domain: str) -> torch.Tensor:
        pixels = gray_to_rgb(to_uint8(images, snapshot.data.info.value_range))
        return extract(ctx.extractor("cnn", domain), pixels, CPU, 64)["logits"]

    logits = logits_of(model.translate(a, "ab"), "b")
    assert values["translation_acc_ab"] == pytest.approx(
        float((logits.argmax(1) == a_labels).float().mean())
    )
    logits = logits_of(b, "a")
    assert values["translation_acc_ba_identity"] == pytest.approx(
        float((logits.argmax(1) == b_labels).float().mean())
    )
    round_trip = model.translate(model.translate(a, "ab"), "ba")
    assert values["cycle_error_a"] == pytest.approx(float((round_trip - a).abs().mean() / 2))


def test_a_model_that_changes_nothing_scores_its_baseline(trained):
    snapshot = restore(trained, CPU)
    snapshot.model.translate = lambda x, direction: x  # type: ignore[method-assign]
    record = scoring.score(scoring.plan(snapshot, _eval_config(), CPU), _eval_config())
    values = record["metrics"]
    for direction in ("ab", "ba"):
        for metric in ("translation_acc", "translation_fid"):
            assert values[f"{metric}_{direction}"] == values[f"{metric}_{direction}_identity"]
    assert values["cycle_error_a"] == values["cycle_error_b"] == 0


def test_test_examples_draws_a_seeded_subset(trained):
    snapshot = restore(trained, CPU)
    cfg = _eval_config(metrics=["translation_acc", "cycle_error"], test_examples=40)
    first = scoring.score(scoring.plan(snapshot, cfg, CPU), cfg)
    again = scoring.score(scoring.plan(snapshot, cfg, CPU), cfg)
    assert first["metrics"] == again["metrics"]
    assert first["protocol"]["translation_acc"]["num_ab"] == 40
    assert first["protocol"]["cycle_error"]["num_b"] == 40


def test_too_few_images_for_fid_is_a_one_line_error(cli, tmp_path, trained):
    args = [f"checkpoint={trained}", "eval=translation", "eval.test_examples=50"]
    assert_one_line_error(
        cli("eval", *args, "device=cpu", cwd=tmp_path), "translation_fid needs at least 128"
    )
    gan = [*TINY, "data=digits", "hydra.run.dir=g"]
    assert cli("train", *gan, cwd=tmp_path)[0] == 0
    result = cli("eval", "checkpoint=g/checkpoints/last.pt", "eval=translation", cwd=tmp_path)
    assert_one_line_error(result, "none of eval.metrics", "generators translating")


def test_sample_input_translates_a_folder_one_file_each(cli, tmp_path, trained):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8)).save(mine / "x.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(mine / "sub/y.jpg")
    ckpt = f"checkpoint={trained}"
    code, out, err = cli("sample", ckpt, f"input={mine}", "out=o", cwd=tmp_path)
    assert code == 0, err
    assert "2 image(s)" in out and "from MNIST to scikit-learn digits at 16x16" in out
    written = sorted(p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*"))
    assert written == ["sub", "sub/y.png", "x.png"]
    image = Image.open(tmp_path / "o/x.png")
    assert image.size == (16, 16) and image.mode == "L"  # the model's resolution and channels

    # The same image, translated B -> A this time, through the model directly.
    code, _, err = cli(
        "sample", ckpt, f"input={mine / 'x.png'}", "sample.direction=ba", "out=o2", cwd=tmp_path
    )
    assert code == 0, err
    snapshot = restore(trained, CPU)
    from ganrun.data.folder import load_image
    from ganrun.images import to_uint8

    split = snapshot.data.split("test_b")
    x = split.scaled(load_image(mine / "x.png", 16, "L")[None])
    expected = to_uint8(snapshot.model.translate(x, "ba"), (-1.0, 1.0))[0, 0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o2/x.png")), expected.numpy())

    before = (tmp_path / "o/x.png").read_bytes()
    result = cli("sample", ckpt, f"input={mine}", "out=o", cwd=tmp_path)
    assert_one_line_error(result, "already holds", "nothing is overwritten")
    assert (tmp_path / "o/x.png").read_bytes() == before


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["input=nowhere"], ["input=nowhere does not exist"]),
        (["input=.", "sample.direction=up"], ["sample.direction=up"]),
        (["input=.", "sample.reconstruct=true"], ["drop sample.reconstruct"]),
    ],
)
def test_sample_input_refusals(cli, tmp_path, trained, overrides, fragments):
    result = cli("sample", f"checkpoint={trained}", *overrides, cwd=tmp_path)
    assert_one_line_error(result, *fragments)


def test_sample_input_needs_a_translation_model(cli, tmp_path):
    assert cli("train", *TINY, "data=digits", "hydra.run.dir=g", cwd=tmp_path)[0] == 0
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "x.png")
    result = cli("sample", "checkpoint=g/checkpoints/last.pt", "input=x.png", cwd=tmp_path)
    assert_one_line_error(result, "neither translates nor upscales images")
    assert not (tmp_path / "g/generated").exists()
