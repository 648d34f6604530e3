"""Table-driven bad input: every case exits 2 with one line, no traceback, and touches nothing.

Cases cover command-line overrides, config files, data files and checkpoints. Each runs with an
earlier run folder in place whose files must come through byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from ganrun.runs.checkpoint import FORMAT_VERSION, save_checkpoint
from tests.conftest import TINY


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path("PWNED"),))


def _experiment(body: str) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        (tmp / "conf/experiment").mkdir(parents=True, exist_ok=True)
        (tmp / "conf/experiment/bad.yaml").write_text("# @package _global_\n" + body)
        return ["--config-dir", str(tmp / "conf"), "experiment=bad"]

    return setup


def _checkpoint(make: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        path = tmp / "bad.pt"
        make(path)
        return [f"resume={path}"]

    return setup


def _truncated(path: Path) -> None:
    save_checkpoint({"step": 1}, path)
    path.write_bytes(path.read_bytes()[:64])


def _other_model(path: Path) -> None:
    save_checkpoint(
        {
            "step": 1,
            "family": "gan",
            "networks": {"generator": {"net.0.weight": torch.zeros(3)}, "discriminator": {}},
            "averages": {},
            "optimizers": {},
            "rng": {},
        },
        path,
    )


def _other_model_format1(path: Path) -> None:
    torch.save(
        {
            "format_version": 1,
            "step": 1,
            "kind": "gan",
            "generator": {"net.0.weight": torch.zeros(3)},
            "discriminator": {},
            "opt_g": {},
            "opt_d": {},
            "rng": {},
        },
        path,
    )


def _wrong_kind(path: Path) -> None:
    save_checkpoint({"step": 1, "family": "vae"}, path)


def _wrong_kind_format1(path: Path) -> None:
    torch.save({"format_version": 1, "step": 1, "kind": "vae"}, path)


def _args(*args: str) -> Callable[[Path], list[str]]:
    return lambda tmp: list(args)


CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    # command-line overrides
    ("steps-not-int", _args("train.steps=abc"), "train.steps=abc"),
    ("steps-float", _args("train.log_every=1.5"), "train.log_every=1.5"),
    ("steps-zero", _args("train.steps=0"), "train.steps=0"),
    ("d-steps-zero", _args("train.d_steps=0"), "train.d_steps=0"),
    ("batch-negative", _args("train.batch_size=-4"), "train.batch_size=-4"),
    ("batch-too-large", _args("train.batch_size=100000"), "larger than the 1497"),
    ("lr-zero", _args("optim.lr=0"), "optim.lr"),
    ("lr-negative", _args("optim.lr=-0.1"), "optim.lr"),
    ("betas-short", _args("optim.betas=[0.5]"), "optim.betas"),
    ("betas-range", _args("optim.betas=[0.5,1.5]"), "optim.betas"),
    ("seed-negative", _args("seed=-1"), "seed=-1"),
    ("unknown-key", _args("train.nope=1"), "train.nope"),
    ("unknown-group-key", _args("model.betas=1"), "model.betas"),
    ("unknown-model", _args("model=nope"), "model/nope"),
    ("unknown-model-name", _args("model.name=nope"), "unknown model 'nope'"),
    ("model-name-of-another-family", _args("model=vae", "model.name=dcgan"), "the gan family"),
    ("key-of-another-family", _args("model=vae", "model.critic=true"), "model.critic"),
    ("unknown-optim", _args("optim=adamw"), "optim/adamw"),
    ("unknown-device", _args("device.type=tpu"), "unknown device 'tpu'"),
    ("cuda-missing", _args("device=cuda"), "CUDA is not available"),
    ("bad-syntax", _args("train.steps=[1"), "train.steps=[1"),
    ("resolution-unbuildable", _args("data.resolution=36"), "data.resolution=36"),
    ("resolution-tiny", _args("data.resolution=7"), "data.resolution=7"),
    ("latent-zero", _args("model.latent_dim=0"), "model.latent_dim=0"),
    ("critic-loss-on-sigmoid-d", _args("loss=wasserstein"), "needs a critic"),
    ("gp-without-critic", _args("model.gp_weight=10"), "needs a critic"),
    ("bad-noise", _args("model.noise=cauchy"), "model.noise"),
    ("ema-out-of-range", _args("model.ema_decay=1.0"), "model.ema_decay"),
    ("channels", _args("data.channels=2"), "data.channels=2"),
    # config files
    ("file-unknown-key", _experiment("train:\n  stepz: 3\n"), "stepz"),
    ("file-wrong-type", _experiment("train:\n  steps: many\n"), "many"),
    ("file-yaml-syntax", _experiment("train: [\n"), "bad.yaml"),
    ("file-out-of-range", _experiment("optim:\n  lr: -3\n"), "optim.lr"),
    ("config-dir-missing", _args("--config-dir", "/nonexistent/conf"), "/nonexistent/conf"),
    # checkpoints
    ("ckpt-missing", _args("resume=/nonexistent/last.pt"), "does not exist"),
    (
        "ckpt-pickle-payload",
        _checkpoint(lambda p: torch.save({"format_version": 1, "x": _Evil()}, p)),
        "refusing to load",
    ),
    ("ckpt-truncated", _checkpoint(_truncated), "truncated or corrupt"),
    (
        "ckpt-not-ganrun",
        _checkpoint(lambda p: torch.save({"state_dict": {}}, p)),
        "not a ganrun checkpoint",
    ),
    (
        "ckpt-newer-format",
        _checkpoint(lambda p: torch.save({"format_version": FORMAT_VERSION + 1}, p)),
        "newer than this ganrun",
    ),
    ("ckpt-other-model", _checkpoint(_other_model), "does not fit this model"),
    ("ckpt-other-model-format1", _checkpoint(_other_model_format1), "does not fit this model"),
    ("ckpt-other-kind", _checkpoint(_wrong_kind), "holds a vae model"),
    ("ckpt-other-kind-format1", _checkpoint(_wrong_kind_format1), "holds a vae model"),
    ("ckpt-text-file", _checkpoint(lambda p: p.write_text("hello")), "truncated or corrupt"),
]


@pytest.mark.parametrize(("name", "setup", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(cli, tmp_path, name, setup, fragment):
    previous = tmp_path / "outputs" / "earlier" / "run"
    (previous / "checkpoints").mkdir(parents=True)
    (previous / "checkpoints" / "last.pt").write_bytes(b"earlier checkpoint")
    (previous / "metrics.csv").write_text("step,loss_d\n1,0.5\n")
    extra = setup(tmp_path)
    before = _snapshot(tmp_path)

    # Flags (--config-dir DIR) go before the overrides; overrides after TINY, so they win.
    flags = extra[:2] if extra and extra[0].startswith("--") else []
    code, out, err = cli("train", *flags, *TINY, *extra[len(flags) :], cwd=tmp_path)

    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ganrun: error: "), err
    assert "Traceback" not in out + err
    assert fragment in lines[0], lines[0]
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / "PWNED").exists()


def test_at_least_thirty_cases():
    assert len(CASES) >= 30
