"""Evaluation costs: Parzen on 10k x 10k MNIST, Inception throughput, scoring with a warm cache.

* Parzen: 10,000 "generator samples" (MNIST training images stand in: the cost does not depend on
  where the samples come from) against the 10,000-image validation and test splits, 10 sigmas,
  exactly the 2014 protocol; seconds and peak resident memory of a fresh process. Then the speed-up
  over a direct per-sigma implementation (the paper's broadcasting code) on 10,000 samples and 50
  valid + 50 test points, with the chosen sigma and the log-likelihood compared.
* Inception: images/s of ganrun's fused feature extractor against torch-fidelity's own on the same
  28x28 MNIST digits (resized to 299 inside), their ratio and the largest feature difference;
  needs the FID Inception weights (``$GANRUN_SHARED_DATA/weights`` or ``../shared/data/weights``).
* Scoring a checkpoint with ``eval=fast`` (2,000 samples a side, data-set classifier), and an
  MNIST checkpoint with ``eval=paper``'s Inception protocol (10,000 a side): the first call trains
  the classifier and computes the reference features; the second finds both cached.

Real MNIST comes from ``$GANRUN_SHARED_DATA`` (or ``../shared/data``); without it, uniform noise
of the same shape is used and the rows say so.
"""

from __future__ import annotations

import gzip
import math
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.memory import peak_rss_mb

SHARED = Path(os.environ.get("GANRUN_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))
WEIGHTS = SHARED / "weights" / "pt_inception-2015-12-05-pool3-only.pth"


def _mnist(name: str) -> torch.Tensor | None:
    path = SHARED / "MNIST" / "raw" / name
    if not path.is_file():
        return None
    with gzip.open(path) as f:
        data = np.frombuffer(f.read(), np.uint8, offset=16)
    return torch.from_numpy(data.reshape(-1, 1, 28, 28).copy())


def _parzen_child(n: int, queue) -> None:
    from ganrun.metrics.parzen import parzen_evaluate, sigma_grid

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    train, test = _mnist("train-images-idx3-ubyte.gz"), _mnist("t10k-images-idx3-ubyte.gz")
    source = "mnist"
    if train is None or test is None:
        gen = torch.Generator().manual_seed(0)
        train = torch.randint(0, 256, (60000, 1, 28, 28), dtype=torch.uint8, generator=gen)
        test = train[:10000].clone()
        source = "synthetic"
    samples = train[:n].flatten(1).double() / 255
    valid = train[-n:].flatten(1).double() / 255
    test = test[:n].flatten(1).double() / 255
    before = peak_rss_mb()
    start = time.perf_counter()
    out = parzen_evaluate(samples, valid, test, sigma_grid(10), chunk=1000)
    seconds = time.perf_counter() - start
    queue.put(
        {
            "case": f"parzen {n}x{n} valid+test, 10 sigmas",
            "data": source,
            "seconds": seconds,
            "peak_rss_mb": peak_rss_mb(),
            "extra_rss_mb": peak_rss_mb() - before,
            "ll": out["ll"],
            "sigma": out["sigma"],
        }
    )


def _parzen_direct(samples: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The reference: one sigma at a time, (x - mu) / sigma expanded for a few rows of x at once,
    as the 2014 paper's Theano code did; float64."""
    n, d = samples.shape
    norm = math.log(n) + d * math.log(sigma * math.sqrt(2 * math.pi))
    rows = []
    for start in range(0, x.shape[0], 4):
        a = (x[start : start + 4, None, :] - samples[None, :, :]) / sigma
        rows.append(torch.logsumexp(-0.5 * a.square().sum(dim=2), dim=1) - norm)
    return torch.cat(rows)


def _parzen_ratio_child(n: int, m: int, queue) -> None:
    """ganrun against the direct implementation on the same workload: n samples, m valid and m
    test points (the direct one is too slow to run at 10k x 10k in a benchmark)."""
    from ganrun.metrics.parzen import parzen_evaluate, sigma_grid

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    train, test = _mnist("train-images-idx3-ubyte.gz"), _mnist("t10k-images-idx3-ubyte.gz")
    if train is None or test is None:
        gen = torch.Generator().manual_seed(0)
        train = torch.randint(0, 256, (60000, 1, 28, 28), dtype=torch.uint8, generator=gen)
        test = train[:10000].clone()
    samples = train[:n].flatten(1).double() / 255
    valid = train[-m:].flatten(1).double() / 255
    test = test[:m].flatten(1).double() / 255
    sigmas = sigma_grid(10)

    start = time.perf_counter()
    valid_ll = [float(_parzen_direct(samples, valid, float(s)).mean()) for s in sigmas]
    best = float(sigmas[int(np.argmax(valid_ll))])
    direct_ll = float(_parzen_direct(samples, test, best).mean())
    direct_s = time.perf_counter() - start

    start = time.perf_counter()
    out = parzen_evaluate(samples, valid, test, sigmas, chunk=1000)
    ganrun_s = time.perf_counter() - start
    queue.put(
        {
            "case": f"parzen {n} samples x {m}+{m} points, vs direct",
            "ganrun_s": ganrun_s,
            "direct_s": direct_s,
            "ratio": direct_s / ganrun_s,
            "sigma_equal": out["sigma"] == best,
            "ll_abs_diff": abs(out["ll"] - direct_ll),
        }
    )


def _in_child(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    row = queue.get()
    proc.join()
    return row


def _inception(n: int) -> dict:
    """ganrun's fused Inception against torch-fidelity's module on the same n digits, in
    alternating rounds (so a busy machine slows both alike): images/s, their ratio, the largest
    feature difference and the FID between the two halves of the images through each."""
    from omegaconf import OmegaConf

    from ganrun.config.schema import EvalConfig
    from ganrun.images import gray_to_rgb
    from ganrun.metrics import fidelity
    from ganrun.metrics.cache import file_sha256

    if not WEIGHTS.is_file():
        return {"case": "inception features (cpu)", "skipped": f"no weights at {WEIGHTS}"}
    images = _mnist("t10k-images-idx3-ubyte.gz")
    images = images[:n] if images is not None else torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    rgb = gray_to_rgb(images)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = EvalConfig.batch_size  # what ganrun eval hands the extractor
    extractors, seconds, features = {}, {}, {}
    for impl in ("torch-fidelity", "fused"):
        cfg = OmegaConf.merge(
            OmegaConf.structured(EvalConfig),
            {
                "inception_weights": str(WEIGHTS),
                "inception_weights_sha256": file_sha256(WEIGHTS),
                "inception_impl": impl,
            },
        )
        extractors[impl] = fidelity.inception_extractor(cfg)
        fidelity.extract(extractors[impl], rgb[:8], device, 8)  # build the network, warm up
        seconds[impl] = 0.0
    for _ in range(2):
        for impl, extractor in extractors.items():
            start = time.perf_counter()
            features[impl] = fidelity.extract(extractor, rgb, device, batch)["2048"]
            seconds[impl] += time.perf_counter() - start
    half = n // 2
    fids = {
        impl: fidelity.fid(
            fidelity.fid_statistics(f[:half].double()), fidelity.fid_statistics(f[half:].double())
        )
        for impl, f in features.items()
    }
    fused_rate, reference_rate = 2 * n / seconds["fused"], 2 * n / seconds["torch-fidelity"]
    return {
        "case": f"inception features, fused vs torch-fidelity ({device.type})",
        "images": n,
        "fused_images_per_s": fused_rate,
        "torch_fidelity_images_per_s": reference_rate,
        "ratio": fused_rate / reference_rate,
        "max_feature_diff": float((features["fused"] - features["torch-fidelity"]).abs().max()),
        "fid_halves": fids["torch-fidelity"],
        "fid_rel_diff": abs(fids["fused"] - fids["torch-fidelity"]) / fids["torch-fidelity"],
    }


def _score_twice(case: str, train: list[str], evaluation: list[str], metric: str) -> list[dict]:
    """Score an untrained checkpoint of ``train``'s config with ``evaluation`` twice: the first
    call trains any classifier and computes the reference features, the second finds both
    cached."""
    from hydra import compose, initialize_config_module

    import ganrun.config.schema  # noqa: F401
    from ganrun.metrics.scoring import plan, score
    from ganrun.models import all_families, build_model, family_of
    from ganrun.runs.checkpoint import restore, run_config, save_checkpoint

    all_families()  # their schemas, for composing

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GANRUN_CACHE_DIR"] = str(Path(tmp) / "cache")
        with initialize_config_module("ganrun.configs", version_base=None):
            train_cfg = compose(config_name="train", overrides=["device=cpu", *train])
            eval_cfg = compose(config_name="eval", overrides=["checkpoint=x", *evaluation]).eval
        from omegaconf import OmegaConf

        from ganrun.data import build_data

        family = family_of(train_cfg.model.name)
        data = build_data(train_cfg.data, family.value_range(train_cfg.model), torch.device("cpu"))
        model = build_model(train_cfg.model, data.info)
        path = Path(tmp) / "run" / "checkpoints" / "last.pt"
        save_checkpoint(
            {
                "config": OmegaConf.to_container(train_cfg, resolve=True),
                "step": 0,
                "family": family.name,
                "networks": {name: net.state_dict() for name, net in model.networks.items()},
            },
            path,
        )
        run_config({"config": OmegaConf.to_container(train_cfg, resolve=True)}, path)
        for label in ("cold cache", "warm cache"):
            start = time.perf_counter()
            restored = restore(path, torch.device("cpu"))
            record = score(plan(restored, eval_cfg, torch.device("cpu")), eval_cfg)
            rows.append(
                {
                    "case": f"{case}, {label}",
                    "samples": eval_cfg.num_samples,
                    "seconds": time.perf_counter() - start,
                    metric: record["metrics"][metric],
                }
            )
    return rows


def _score_paper(quick: bool) -> list[dict]:
    """``eval=paper``'s Inception protocol (10,000 generated against the 10,000 test digits) on
    an MNIST DCGAN checkpoint; FID and Parzen only, the metrics of the preset that a GAN has and
    these weights allow (IS needs the classifier layer the shared pool3-only file lacks)."""
    if not WEIGHTS.is_file() or _mnist("t10k-images-idx3-ubyte.gz") is None:
        return [
            {"case": "score mnist ckpt eval=paper", "skipped": f"no MNIST or weights in {SHARED}"}
        ]
    from ganrun.metrics.cache import file_sha256

    # quick: the fewest samples FID accepts (its feature dimension)
    size = ["eval.num_samples=2048", "eval.num_real=2048", "eval.parzen_samples=2048"]
    return _score_twice(
        "score mnist ckpt eval=paper [fid, parzen]",
        ["data=mnist", f"data.root={SHARED}", "data.download=false"],
        [
            "eval=paper",
            "eval.metrics=[fid,parzen]",
            *(size if quick else []),
            f"eval.inception_weights={WEIGHTS}",
            f"eval.inception_weights_sha256={file_sha256(WEIGHTS)}",
        ],
        "fid",
    )


def run(quick: bool) -> list[dict]:
    rows = [_in_child(_parzen_child, 1000 if quick else 10000)]
    rows.append(_in_child(_parzen_ratio_child, 1000 if quick else 10000, 20 if quick else 50))
    rows.append(_inception(32 if quick else 256))
    fast = ["eval=fast", *(["eval.num_samples=500"] if quick else [])]
    rows.extend(_score_twice("score digits ckpt eval=fast", [], fast, "fid_digits_cnn"))
    rows.extend(_score_paper(quick))
    return rows
