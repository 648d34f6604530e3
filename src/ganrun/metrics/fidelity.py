"""IS, FID, KID and precision/recall through torch-fidelity.

ganrun only prepares inputs and caches: images go to torch-fidelity's feature extractors as uint8
(N, 3, H, W) tensors, and its own functions (``fid_features_to_statistics``,
``fid_statistics_to_metric``, ``kid_features_to_metric``, ``isc_features_to_metric``,
``prc_features_to_metric``) turn the features into numbers.

Images become uint8 through :func:`ganrun.images.to_uint8` (generator output in the data's
value range, rounded); real images are the uint8 pixels the data set holds after resizing to
``data.resolution``. Grayscale images are repeated to three identical channels (what PIL's
``convert("RGB")`` does). Inception then resizes to 299x299 inside torch-fidelity.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ganrun.errors import GanrunError
from ganrun.metrics.cache import file_sha256

log = logging.getLogger("ganrun")

# torch-fidelity's port of the 2015-12-05 Inception graph used by FID; torch hub names the file
# after the first 8 hex digits of its sha256, which is what torch hub itself checks.
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256_PREFIX = "6726825d"
INCEPTION_NAME = "inception-v3-compat"  # torch-fidelity's registry name
INCEPTION_IMPLS = ("fused", "torch-fidelity")  # eval.inception_impl


@dataclass
class Extractor:
    """A torch-fidelity feature extractor and what the results must record about it."""

    name: str  # torch-fidelity registry name
    label: str  # what results call it (e.g. inception-v3-compat, mnist_cnn)
    weights_sha256: str
    feature_layer: str  # features for FID, KID and precision/recall
    logits_layer: str  # features for IS
    feature_dim: int
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra constructor arguments
    extra: dict[str, Any] = field(default_factory=dict)  # recorded with the results
    # "fused": ganrun's rebuild of the network for speed (metrics/inception.py, same features to
    # ~2e-5); "torch-fidelity": the library's own module as it is
    implementation: str = "torch-fidelity"

    def protocol(self) -> dict[str, Any]:
        return {
            "feature_extractor": self.label,
            "feature_layer": self.feature_layer,
            "weights_sha256": self.weights_sha256,
            "feature_implementation": self.implementation,
            **self.extra,
        }


def library_info() -> dict[str, str]:
    import torch_fidelity

    return {
        "metric_library": "torch-fidelity",
        "metric_library_version": torch_fidelity.__version__,
    }


def _hub_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def resolve_inception_weights(cfg: Any) -> tuple[Path, str]:
    """``eval.inception_weights``, else the torch hub cache, else a download: (path, sha256).

    The official file is recognised by its sha256 prefix; any other file is accepted only when
    ``eval.inception_weights_sha256`` names its exact sha256, so a result never silently rests on
    different weights."""
    if cfg.inception_weights:
        path = Path(cfg.inception_weights).expanduser()
        if not path.is_file():
            raise GanrunError(f"eval.inception_weights={cfg.inception_weights} does not exist")
    else:
        path = _hub_path()
        if not path.is_file():
            if not cfg.download:
                raise GanrunError(
                    "no Inception weights: set eval.inception_weights to a copy of "
                    f"{INCEPTION_FILE} (downloads are off: eval.download=false)"
                )
            _download(path)
    sha = file_sha256(path)
    if sha.startswith(INCEPTION_SHA256_PREFIX):
        return path, sha
    expected = (cfg.inception_weights_sha256 or "").lower()
    if sha != expected:
        raise GanrunError(
            f"Inception weights {path} have sha256 {sha}, not the official file's "
            f"({INCEPTION_SHA256_PREFIX}...); to use this file anyway, set "
            f"eval.inception_weights_sha256={sha} (the results will record it)"
        )
    return path, sha


def _download(path: Path) -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading the Inception weights to %s", path)
    try:
        torch.hub.download_url_to_file(
            URL_INCEPTION_V3, str(path), hash_prefix=INCEPTION_SHA256_PREFIX, progress=False
        )
    except Exception as exc:  # offline: URLError, timeouts, proxies... all mean the same here
        raise GanrunError(
            f"no Inception weights and the download failed ({type(exc).__name__}); set "
            f"eval.inception_weights to a copy of {INCEPTION_FILE}"
        ) from exc


def inception_extractor(cfg: Any) -> Extractor:
    path, sha = resolve_inception_weights(cfg)
    return Extractor(
        name=INCEPTION_NAME,
        label=INCEPTION_NAME,
        weights_sha256=sha,
        feature_layer="2048",
        logits_layer="logits_unbiased",
        feature_dim=2048,
        kwargs={"feature_extractor_weights_path": str(path)},
        extra={"official_weights": sha.startswith(INCEPTION_SHA256_PREFIX)},
        implementation=cfg.inception_impl,
    )


_HAS_CLASSIFIER: dict[str, bool] = {}


def has_classifier(extractor: Extractor) -> bool:
    """False for weights whose classifier layer is zero-filled (pool3-only ports): IS is then
    exp(0) = 1 for any images, which is no score at all."""
    path = extractor.kwargs.get("feature_extractor_weights_path")
    if path is None:
        return True
    if extractor.weights_sha256 not in _HAS_CLASSIFIER:
        state = torch.load(path, map_location="cpu", weights_only=True)
        weight = state.get("fc.weight")
        _HAS_CLASSIFIER[extractor.weights_sha256] = weight is None or bool(weight.abs().sum() > 0)
    return _HAS_CLASSIFIER[extractor.weights_sha256]


# Built once per process and kept: `ganrun eval` on a sweep folder scores every run in one process,
# and rebuilding Inception (or reloading the classifier) per run would cost seconds each time.
_EXTRACTORS: dict[tuple[str, ...], torch.nn.Module] = {}


def _create(extractor: Extractor, device: torch.device) -> torch.nn.Module:
    from torch_fidelity.utils import create_feature_extractor

    key = (extractor.name, extractor.weights_sha256, extractor.implementation, str(device))
    if key not in _EXTRACTORS:
        layers = sorted({extractor.feature_layer, extractor.logits_layer})
        net = create_feature_extractor(
            extractor.name, layers, cuda=False, verbose=False, **extractor.kwargs
        )
        if extractor.implementation == "fused":
            from ganrun.metrics.inception import FusedInception

            net = FusedInception(net)
        _EXTRACTORS[key] = net.to(device)
    return _EXTRACTORS[key]


def _features(net: torch.nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    out = net(batch)
    return out if isinstance(out, dict) else net.convert_features_tuple_to_dict(out)


def extract(
    extractor: Extractor,
    images: torch.Tensor,
    device: torch.device,
    batch_size: int,
    what: str = "images",
) -> dict[str, torch.Tensor]:
    """uint8 (N, 3, H, W) images -> {layer: float features (N, D)} on the CPU.

    Inception on a CPU takes minutes per thousand images: a terminal shows a progress bar, and
    the log says what was extracted and how fast."""
    net = _create(extractor, device)
    n = images.shape[0]
    out: dict[str, list[torch.Tensor]] = {}
    started = perf_counter()
    bar = tqdm(
        total=n,
        desc=f"{extractor.label} features of {what}",
        unit="img",
        file=sys.stderr,
        leave=False,
        disable=not sys.stderr.isatty(),
    )
    with torch.no_grad(), bar:
        for begin in range(0, n, batch_size):
            batch = images[begin : begin + batch_size].to(device)
            for k, v in _features(net, batch).items():
                out.setdefault(k, []).append(v.cpu())
            bar.update(batch.shape[0])
    seconds = perf_counter() - started
    if seconds > 10:
        log.info(
            "%s features of %d %s in %.0f s (%.1f images/s on %s)",
            extractor.label,
            n,
            what,
            seconds,
            n / seconds,
            device.type,
        )
    return {k: torch.cat(v) for k, v in out.items()}


def fid_statistics(features: torch.Tensor) -> dict[str, np.ndarray]:
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(features.cpu())


def fid(stats_generated: dict[str, np.ndarray], stats_real: dict[str, np.ndarray]) -> float:
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    return float(fid_statistics_to_metric(stats_generated, stats_real, False)[KEY_METRIC_FID])


def kid(generated: torch.Tensor, real: torch.Tensor, cfg: Any) -> dict[str, float]:
    from torch_fidelity.metric_kid import (
        KEY_METRIC_KID_MEAN,
        KEY_METRIC_KID_STD,
        kid_features_to_metric,
    )

    out = kid_features_to_metric(
        generated,
        real,
        kid_subsets=cfg.kid_subsets,
        kid_subset_size=cfg.kid_subset_size,
        rng_seed=cfg.seed,
        verbose=False,
    )
    return {"mean": float(out[KEY_METRIC_KID_MEAN]), "std": float(out[KEY_METRIC_KID_STD])}


def inception_score(logits: torch.Tensor, cfg: Any) -> dict[str, float]:
    from torch_fidelity.metric_isc import (
        KEY_METRIC_ISC_MEAN,
        KEY_METRIC_ISC_STD,
        isc_features_to_metric,
    )

    out = isc_features_to_metric(logits, splits=cfg.isc_splits, shuffle=True, rng_seed=cfg.seed)
    return {"mean": float(out[KEY_METRIC_ISC_MEAN]), "std": float(out[KEY_METRIC_ISC_STD])}


def precision_recall(generated: torch.Tensor, real: torch.Tensor, cfg: Any) -> dict[str, float]:
    from torch_fidelity.metric_prc import (
        KEY_METRIC_PRECISION,
        KEY_METRIC_RECALL,
        prc_features_to_metric,
    )

    out = prc_features_to_metric(
        generated, real, prc_neighborhood=cfg.prc_neighborhood, save_cpu_ram=True, verbose=False
    )
    return {"precision": float(out[KEY_METRIC_PRECISION]), "recall": float(out[KEY_METRIC_RECALL])}
