"""model=cyclegan (models/families/cyclegan.py) on two-domain fixtures in MNIST's real format."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganrun.models.families.cyclegan import generator_losses, lsgan
from ganrun.runs.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import assert_one_line_error, checkpoint_tensors
from tests.test_data import make_mnist

SMALL = [
    "model=cyclegan",
    "data=mnist_color",
    "data.resolution=16",
    "model.width=4",
    "model.blocks=1",
    "model.d_width=4",
    "train.batch_size=4",
    "train.log_every=2",
    "train.sample_every=3",
    "train.checkpoint_every=3",
    "device=cpu",
]


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    make_mnist(tmp_path / "data", n_train=40, n_test=20)
    return tmp_path / "data"


def _run(root: Path, steps: int, *extra: str) -> list[str]:
    return [*SMALL, f"data.root={root}", f"train.steps={steps}", *extra]


def test_the_losses_are_the_releases_formulas():
    """Hand-computed on maps whose values are known: G_ab adds 0.5, G_ba halves, and each D
    scores an image by its pixels."""

    class Shift(torch.nn.Module):
        def forward(self, x):
            return x + 0.5

    class Half(torch.nn.Module):
        def forward(self, x):
            return x / 2

    nets = {"g_ab": Shift(), "g_ba": Half(), "d_a": torch.nn.Identity(), "d_b": torch.nn.Identity()}
    a, b = torch.full((1, 1, 2, 2), 0.2), torch.full((1, 1, 2, 2), -0.4)
    fake_b, fake_a = nets["g_ab"](a), nets["g_ba"](b)  # 0.7, -0.2
    adversarial, cycle, identity = generator_losses(a, b, fake_a, fake_b, nets, True)
    # D_b(0.7) against 1, D_a(-0.2) against 1
    assert adversarial.item() == pytest.approx(0.3**2 + 1.2**2)
    # G_ba(0.7) = 0.35 against 0.2; G_ab(-0.2) = 0.3 against -0.4
    assert cycle.item() == pytest.approx(0.15 + 0.7)
    # G_ab(b) = 0.1 against -0.4; G_ba(a) = 0.1 against 0.2
    assert identity.item() == pytest.approx(0.5 + 0.1)
    assert generator_losses(a, b, fake_a, fake_b, nets, False)[2].item() == 0
    assert lsgan(torch.tensor([0.25, 1.0]), False).item() == pytest.approx((0.0625 + 1) / 2)


def test_trains_resumes_bit_for_bit_and_shows_both_directions(cli, tmp_path, mnist_root):
    # The decay is pinned: by default it follows train.steps, which the shorter run changes.
    pinned = ["optim.decay_from=3", "optim.decay_to=6"]
    code, _, err = cli("train", *_run(mnist_root, 6, *pinned), "hydra.run.dir=full", cwd=tmp_path)
    assert code == 0, err
    full = tmp_path / "full"
    with (full / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "step", "loss_g", "cycle", "identity", "loss_d_a", "loss_d_b", "sec_per_step"
    ]  # fmt: skip
    assert len(rows) == 6 and all(float(r["cycle"]) > 0 for r in rows)
    # Six rows of the first 8 test images: A, A->B, A->B->A, B, B->A, B->A->B.
    grid = Image.open(full / "samples/step_000006.png")
    assert grid.size[0] * 6 // 8 == pytest.approx(grid.size[1], abs=6)

    part = [o for o in _run(mnist_root, 3, *pinned)]
    assert cli("train", *part, "hydra.run.dir=part", cwd=tmp_path)[0] == 0
    resumed = _run(mnist_root, 6, *pinned, "resume=auto")
    code, _, err = cli("train", *resumed, "hydra.run.dir=part", cwd=tmp_path)
    assert code == 0, err
    a = checkpoint_tensors(full / "checkpoints/last.pt")
    b = checkpoint_tensors(tmp_path / "part/checkpoints/last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pools = [load_checkpoint(p / "checkpoints/last.pt")["extra"] for p in (full, tmp_path / "part")]
    for side in ("a", "b"):
        assert torch.equal(pools[0][side]["images"], pools[1][side]["images"])
        assert pools[0][side]["images"].shape[0] == min(50, 6 * 4)
    ckpt = f"checkpoint={full / 'checkpoints/last.pt'}"
    code, out, err = cli("sample", ckpt, "n=4", "sample.format=npz", "out=t.npz", cwd=tmp_path)
    assert code == 0, err
    assert "4 test images of each domain above their translations and back" in out
    with np.load(tmp_path / "t.npz") as saved:
        chains = {k: saved[k] for k in saved.files}
    assert set(chains) == {"a", "a_to_b", "a_to_b_to_a", "b", "b_to_a", "b_to_a_to_b", "samples"}
    assert all(
        v.shape == (4, 16, 16, 3) and v.dtype == np.uint8
        for k, v in chains.items()
        if k != "samples"
    )
    assert chains["samples"].shape == (24, 16, 16, 3)  # six rows of the four
    code, _, err = cli("sample", ckpt, "n=4", "sample.reconstruct=true", cwd=tmp_path)
    assert_one_line_error((code, "", err), "does not reconstruct")

    group = load_checkpoint(full / "checkpoints/last.pt")["optimizers"]["generators"]
    # The last update (0-based 5) is two thirds into the decay from update 3 to 6.
    assert group["param_groups"][0]["lr"] == pytest.approx(2e-4 * (1 - (5 - 3) / 3))


def test_moving_device_kinds_reseeds_domain_b_and_says_so(cli, tmp_path, mnist_root):
    # Domain B's batches draw from a generator of their own, kept in the checkpoint's extra
    # state. One written on a GPU (Philox, 16 bytes) cannot go into a CPU generator: it is seeded
    # afresh like the trainer's own streams, and train.log names it with them.
    assert cli("train", *_run(mnist_root, 3), "hydra.run.dir=run", cwd=tmp_path)[0] == 0
    last = tmp_path / "run/checkpoints/last.pt"
    ckpt = load_checkpoint(last)
    cuda_state = torch.zeros(16, dtype=torch.uint8)
    ckpt["rng"]["noise"] = cuda_state
    ckpt["rng"]["data"]["generator"] = cuda_state.clone()
    ckpt["extra"]["batches_b"]["generator"] = cuda_state.clone()
    save_checkpoint(ckpt, last)
    code, _, err = cli(
        "train", *_run(mnist_root, 4, "resume=auto"), "hydra.run.dir=run", cwd=tmp_path
    )
    assert code == 0, err
    log = (tmp_path / "run/train.log").read_text()
    streams = "its training noise, data order and domain B's data order continue from fresh seeds"
    assert streams in log
    assert load_checkpoint(last)["extra"]["batches_b"]["generator"].numel() > 16


def test_the_default_schedule_halves_the_run(cli, tmp_path, mnist_root):
    code, _, err = cli("train", *_run(mnist_root, 4), "hydra.run.dir=r", cwd=tmp_path)
    assert code == 0, err
    saved = load_checkpoint(tmp_path / "r/checkpoints/last.pt")
    assert saved["config"]["optim"]["decay_from"] == 2
    assert saved["config"]["optim"]["decay_to"] == 4
    # Update 4 of 4 (step 3, 0-based) ran at 2e-4 * (1 - (3 - 2) / 2).
    lr = saved["optimizers"]["discriminators"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(1e-4)


def test_the_cycle_error_falls(cli, tmp_path, mnist_root):
    """Real learning on the fixture (random pixels, the hardest images to reconstruct): the
    summed cycle error of the last steps is clearly below the first steps' (0.61 -> 0.45 when
    written)."""
    run = _run(mnist_root, 60, "train.log_every=1", "train.sample_every=60")
    code, _, err = cli("train", *run, "model.width=8", "hydra.run.dir=r", cwd=tmp_path)
    assert code == 0, err
    with (tmp_path / "r/metrics.csv").open(newline="") as f:
        cycle = [float(r["cycle"]) for r in csv.DictReader(f)]
    first, last = sum(cycle[:5]) / 5, sum(cycle[-5:]) / 5
    assert last < 0.85 * first, (first, last)


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["data=digits"], ["two domains", "data=mnist_color"]),
        (["data.train_split=train_b"], ["data.train_split=train_b"]),
        (["data.resolution=18"], ["divisible by 4"]),
        (["model.d_layers=3"], ["model.d_layers=2 or fewer"]),
        (["model.ema_decay=0.9"], ["model.ema_decay"]),
        (["model.pool_size=-1"], ["model.pool_size"]),
    ],
)
def test_bad_settings_are_one_line_errors(cli, tmp_path, mnist_root, overrides, fragments):
    result = cli("train", *_run(mnist_root, 2), *overrides, "hydra.run.dir=r", cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "r/checkpoints").exists()
