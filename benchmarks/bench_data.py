"""Batch throughput: ganrun's resident sampler against a torch DataLoader on MNIST-sized data.

Both draw shuffled batches of 64 from the same 60000x1x28x28 uint8 tensor and scale them to
float32 in [-1, 1] on the training device. The DataLoader is the usual one (TensorDataset,
shuffle=True, drop_last=True, the main process), with each batch copied to the device and scaled
there; the resident sampler holds the tensor on the device and indexes it. The streaming folder
sampler is timed too, on PNG files of the same size, with the DataLoader workers it uses.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

import benchmarks

BATCH = 64
SHAPE = (60000, 1, 28, 28)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _images() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, SHAPE, dtype=torch.uint8, generator=gen)


def resident(images: torch.Tensor, device: torch.device, batches: int) -> float:
    from ganrun.data.resident import ResidentSplit

    split = ResidentSplit(images, None, (-1.0, 1.0), device)
    split.batch(BATCH)  # the first permutation
    _sync(device)
    start = time.perf_counter()
    for _ in range(batches):
        x, _ = split.batch(BATCH)
    _sync(device)
    return batches / (time.perf_counter() - start)


def dataloader(images: torch.Tensor, device: torch.device, batches: int) -> float:
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(
        TensorDataset(images),
        batch_size=BATCH,
        shuffle=True,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )
    it = iter(loader)
    next(it)
    _sync(device)
    start = time.perf_counter()
    for _ in range(batches):
        try:
            (x,) = next(it)
        except StopIteration:
            it = iter(loader)
            (x,) = next(it)
        x = x.to(device, non_blocking=True).float().mul_(2 / 255).sub_(1)
    _sync(device)
    return batches / (time.perf_counter() - start)


def folder(device: torch.device, files: int, batches: int, workers: int) -> float:
    from PIL import Image

    from ganrun.config.schema import DataConfig
    from ganrun.data import build_data

    with tempfile.TemporaryDirectory() as tmp:
        gen = torch.Generator().manual_seed(0)
        pixels = torch.randint(0, 256, (files, 28, 28), dtype=torch.uint8, generator=gen)
        for i in range(files):
            Image.fromarray(pixels[i].numpy()).save(Path(tmp) / f"{i:05d}.png")
        cfg = DataConfig(name="folder", root=tmp, resolution=28, channels=1, num_workers=workers)
        split = build_data(cfg, (-1.0, 1.0), device).train
        split.batch(BATCH)  # workers started
        _sync(device)
        start = time.perf_counter()
        for _ in range(batches):
            split.batch(BATCH)
        _sync(device)
        return batches / (time.perf_counter() - start)


def run(quick: bool = False, devices: list[str] | None = None) -> list[dict]:
    images = _images()
    names = devices or benchmarks.devices()
    batches = 300 if quick else 3000
    rows = []
    for device in map(torch.device, names):
        ours = resident(images, device, batches)
        theirs = dataloader(images, device, batches)
        rows.append(
            {
                "case": f"mnist-sized batches of {BATCH} [{device.type}]",
                "batches": batches,
                "resident_batches_per_s": ours,
                "dataloader_batches_per_s": theirs,
                "ratio": ours / theirs,
            }
        )
    if "cpu" not in names:
        return rows
    files, fbatches = (512, 20) if quick else (4096, 100)
    rows.append(
        {
            "case": "folder of 28x28 PNGs, 2 workers [cpu]",
            "batches": fbatches,
            "folder_batches_per_s": folder(torch.device("cpu"), files, fbatches, workers=2),
        }
    )
    return rows
