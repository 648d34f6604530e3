"""Training throughput: ganrun's trainer against a plain PyTorch loop of the same networks.

The reference loop is written the way pytorch/examples' dcgan/main.py is: a shuffling DataLoader
over a host tensor, each batch moved to the device and scaled there, separate real/fake D
passes, ``.item()`` on the losses every step, torch's default (per-tensor) Adam. Both sides use
the same networks (built by ganrun from the same config), optimizer settings, batch size and
number of steps, and start from the same initial weights; ganrun's Adam runs fused. Both loops
are timed in one process, alternating; each one's peak memory is measured in a fresh process of
its own.
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

import benchmarks
from benchmarks.memory import peak_rss_mb

# (case, model, resolution, channels, extra overrides, CPU steps per timing)
CASES = [
    ("gan mnist-shaped", "gan", 28, 1, [], 300),
    ("dcgan 28x28", "dcgan", 28, 1, [], 60),
    ("dcgan 64x64", "dcgan", 64, 3, [], 12),
    ("wgan_gp 32x32", "wgan_gp", 32, 3, [], 15),
    ("infogan 28x28", "dcgan", 28, 1, ["model.arch=infogan", "model.latent_dim=64"], 20),
]
REPEATS = 3  # each side is timed this many times in its process; the fastest counts


def _compose(model: str, resolution: int, channels: int, extra: list[str], device: str):
    from hydra import compose, initialize_config_module

    import ganrun.config.schema  # noqa: F401
    from ganrun.models import all_families

    all_families()  # their schemas, for composing

    overrides = [
        f"model={model}",
        f"data.resolution={resolution}",
        f"data.channels={channels}",
        f"device={device}",
        "train.batch_size=64",
        *extra,
    ]
    with initialize_config_module("ganrun.configs", version_base=None):
        return compose(config_name="train", overrides=overrides)


def _synthetic_data(cfg, n: int, device: torch.device):
    from ganrun.data import Data
    from ganrun.data.base import DataInfo
    from ganrun.data.resident import ResidentSplit
    from ganrun.models import family_of

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(
        0,
        256,
        (n, cfg.data.channels, cfg.data.resolution, cfg.data.resolution),
        dtype=torch.uint8,
        generator=gen,
    )
    vr = family_of(cfg.model.name).value_range(cfg.model)
    info = DataInfo("synthetic", cfg.data.channels, cfg.data.resolution, 0, vr)
    return images, Data(info, {"train": ResidentSplit(images, None, vr, device)})


def _setup(cfg, data, device, fused: bool):
    from ganrun.models import build_model, family_of
    from ganrun.training.accelerate import accelerate
    from ganrun.training.setup import Setup

    torch.manual_seed(0)
    model = build_model(cfg.model, data.info).to(device)
    networks = list(model.networks.values())
    channels_last = accelerate(networks, cfg.trainer, device, model.channels_last_on_cpu)
    model.configure_training(cfg, fused=fused)
    family = family_of(cfg.model.name)
    return Setup(cfg, device, data, data.train, family, model, channels_last)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_ganrun(cfg, images, data, device, steps: int) -> float:
    from ganrun.models.optim import fused_for
    from ganrun.training.loop import Trainer

    setup = _setup(cfg, data, device, fused_for(device))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(setup, Path(tmp))
        cfg.train.steps = steps
        cfg.train.sample_every = cfg.train.checkpoint_every = 10**9  # only the final ones
        cfg.train.log_every = 50
        _sync(device)
        start = time.perf_counter()
        trainer.fit()
        _sync(device)
        return time.perf_counter() - start


def run_plain(cfg, images, data, device, steps: int) -> float:
    """The pytorch/examples style loop, on the same networks and optimizer settings."""
    from torch.utils.data import DataLoader, TensorDataset

    from ganrun.models.losses import LOSSES, gradient_penalty

    setup = _setup(cfg, data, device, fused=False)  # torch's default Adam, as the examples
    nets, opts = setup.model.networks, setup.model.optimizers
    G, D = nets["generator"], nets["discriminator"]
    opt_g, opt_d = opts["generator"], opts["discriminator"]
    loss = LOSSES[cfg.loss.name]
    lo, hi = data.info.value_range
    bs, k, gp, clip = (
        cfg.train.batch_size,
        cfg.train.d_steps,
        cfg.model.gp_weight,
        cfg.model.clip_value,
    )
    loader = DataLoader(TensorDataset(images), batch_size=bs, shuffle=True, drop_last=True)
    batches = iter(loader)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        for _ in range(k):
            try:
                (x,) = next(batches)
            except StopIteration:
                batches = iter(loader)
                (x,) = next(batches)
            real = x.to(device).float() * ((hi - lo) / 255.0) + lo
            noise = torch.randn(bs, cfg.model.latent_dim, device=device)
            if cfg.model.noise == "uniform":
                noise = torch.rand(bs, cfg.model.latent_dim, device=device) * 2 - 1
            fake = G(noise)
            D.zero_grad()
            err_d = loss.d(D(real), D(fake.detach()))
            if gp > 0:
                err_d = err_d + gp * gradient_penalty(D, real, fake)
            err_d.backward()
            opt_d.step()
            if clip > 0:
                for p in D.parameters():
                    p.data.clamp_(-clip, clip)
        G.zero_grad()
        err_g = loss.g(D(fake))
        err_g.backward()
        opt_g.step()
        err_d.item(), err_g.item()
    _sync(device)
    return time.perf_counter() - start


def _case(
    queue, which: str, model: str, res: int, ch: int, extra: list[str], device: str, steps: int
) -> None:
    """``which`` = "timing": both loops, alternating, best of REPEATS each (load on a shared
    machine only ever makes a timing slower, and alternating spreads it over both sides).
    ``which`` = "plain" or "ganrun": that loop alone, for its peak memory."""
    from ganrun.devices import configure_threads

    configure_threads()
    dev = torch.device(device)
    cfg = _compose(model, res, ch, extra, device)
    images, data = _synthetic_data(cfg, 60000 if res <= 32 else 20000, dev)
    loops = {"plain": run_plain, "ganrun": run_ganrun}
    if which != "timing":
        loops = {which: loops[which]}
    for fn in loops.values():
        fn(cfg, images, data, dev, 3)  # warm-up: allocator, cuDNN autotuning, lazy init
    if which != "timing":
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        loops[which](cfg, images, data, dev, min(steps, 10))
        cuda = dev.type == "cuda"
        queue.put(torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb())
        return
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(REPEATS):
        for name, fn in loops.items():
            times[name].append(fn(cfg, images, data, dev, steps))
    queue.put({name: min(t) for name, t in times.items()})


def _measure(which, model, res, ch, extra, device, steps):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_case, args=(queue, which, model, res, ch, extra, device, steps))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def run(quick: bool = False, devices: list[str] | None = None) -> Iterator[dict]:
    from ganrun.models import model_names

    for device in devices or benchmarks.devices():
        for case, model, res, ch, extra, cpu_steps in CASES:
            if model not in model_names():
                yield {"case": f"{case} [{device}]", "skipped": f"model {model} missing"}
                continue
            steps = cpu_steps if device == "cpu" else 200
            if quick:
                steps = max(3, steps // 10)
            bs = 64
            t = _measure("timing", model, res, ch, extra, device, steps)
            mem = {w: _measure(w, model, res, ch, extra, device, steps) for w in t}
            yield {
                "case": f"{case} [{device}]",
                "steps": steps,
                "ganrun_img_per_s": steps * bs / t["ganrun"],
                "plain_img_per_s": steps * bs / t["plain"],
                "ratio": t["plain"] / t["ganrun"],
                "ganrun_peak_mb": mem["ganrun"],
                "plain_peak_mb": mem["plain"],
            }
