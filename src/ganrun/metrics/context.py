"""What a metric function sees: one restored checkpoint, the eval config, and shared work.

Generated samples and their features are computed once per checkpoint and shared by the metrics
that need them (FID, KID and IS use one feature pass). Real-side features are computed once per
(data set, split, sample count, feature extractor, weights) and kept in the on-disk cache and in
memory, so scoring N checkpoints pays for the real side once.
"""

from __future__ import annotations

from typing import Any

import torch

from ganrun.errors import GanrunError
from ganrun.metrics import cache
from ganrun.metrics.classifier import classifier_extractor, data_key
from ganrun.metrics.fidelity import (
    Extractor,
    extract,
    fid_statistics,
    gray_to_rgb,
    inception_extractor,
    to_uint8_rgb,
)
from ganrun.metrics.images import real_uint8
from ganrun.restore import Restored, generate

# Shared across checkpoints (and runs of a sweep) within one process.
_EXTRACTOR_MEMO: dict[str, Extractor] = {}
_REAL_MEMO: dict[str, dict[str, Any]] = {}


class EvalContext:
    def __init__(self, restored: Restored, cfg: Any, device: torch.device) -> None:
        self.restored = restored
        self.cfg = cfg
        self.device = device
        self.data = restored.data
        self.info = restored.data.info
        self._samples: torch.Tensor | None = None
        self._gen_features: dict[str, dict[str, torch.Tensor]] = {}

    # ------------------------------------------------------------------------- generated side
    def samples(self, n: int) -> torch.Tensor:
        """The first ``n`` generated samples of this checkpoint (one seeded stream, so a metric
        asking for fewer samples gets a prefix of what another one got)."""
        if self._samples is None or self._samples.shape[0] < n:
            self._samples = generate(self.restored, n, self.cfg.batch_size, self.cfg.seed)
        return self._samples[:n]

    def generated_features(self, which: str) -> dict[str, torch.Tensor]:
        extractor = self.extractor(which)
        if which not in self._gen_features:
            images = to_uint8_rgb(self.samples(self.cfg.num_samples), self.info.value_range)
            self._gen_features[which] = extract(
                extractor, images, self.device, self.cfg.batch_size, "generated images"
            )
        return self._gen_features[which]

    # ------------------------------------------------------------------------------ real side
    def split(self, name: str) -> Any:
        return self.data.split(name)

    def num_real(self) -> int:
        available = len(self.split(self.cfg.reference_split))
        return available if self.cfg.num_real == 0 else min(self.cfg.num_real, available)

    def real_index(self) -> torch.Tensor | None:
        """A seeded subset of the reference split when num_real is smaller than it."""
        available = len(self.split(self.cfg.reference_split))
        n = self.num_real()
        if n == available:
            return None
        gen = torch.Generator().manual_seed(self.cfg.seed)
        return torch.randperm(available, generator=gen)[:n].sort().values

    def extractor(self, which: str) -> Extractor:
        """``inception`` or ``cnn`` (the data-set classifier, trained on first use)."""
        run_data = self.restored.config.data
        cfg = self.cfg
        if which == "inception":
            memo_key = repr((which, cfg.inception_weights, cfg.inception_weights_sha256))
        else:
            memo_key = repr(
                (which, data_key(run_data), cfg.classifier_epochs, cfg.seed, cfg.cache_dir)
            )
        if memo_key not in _EXTRACTOR_MEMO:
            if which == "inception":
                _EXTRACTOR_MEMO[memo_key] = inception_extractor(self.cfg)
            else:
                _EXTRACTOR_MEMO[memo_key] = classifier_extractor(
                    self.data, run_data, self.cfg, self.device
                )
        return _EXTRACTOR_MEMO[memo_key]

    def real_reference(self, which: str) -> dict[str, Any]:
        """{"features": (n, D) tensor, "stats": FID statistics, "cached": bool}."""
        extractor = self.extractor(which)
        key = {
            "data": data_key(self.restored.config.data),
            "split": self.cfg.reference_split,
            "num": self.num_real(),
            "seed": self.cfg.seed if self.real_index() is not None else None,
            "extractor": extractor.label,
            "layer": extractor.feature_layer,
            "weights_sha256": extractor.weights_sha256,
        }
        path = cache.entry_path(self.cfg.cache_dir, "reference", key)
        memo_key = str(path)
        if memo_key in _REAL_MEMO:
            return {**_REAL_MEMO[memo_key], "cached": True}

        def compute() -> dict[str, Any]:
            images = gray_to_rgb(
                real_uint8(self.split(self.cfg.reference_split), self.real_index())
            )
            what = f"{self.cfg.reference_split} images"
            features = extract(extractor, images, self.device, self.cfg.batch_size, what)[
                extractor.feature_layer
            ]
            stats = fid_statistics(features)
            return {
                "features": features,
                "mu": torch.from_numpy(stats["mu"]),
                "sigma": torch.from_numpy(stats["sigma"]),
                "key": repr(key),
            }

        payload, cached = cache.load_or_compute(path, compute)
        entry = {
            "features": payload["features"],
            "stats": {"mu": payload["mu"].numpy(), "sigma": payload["sigma"].numpy()},
            "cache_file": str(path),
        }
        _REAL_MEMO[memo_key] = entry
        return {**entry, "cached": cached}

    # ---------------------------------------------------------------------------- for checks
    def require_split(self, name: str, why: str) -> Any:
        if name not in self.data.splits:
            raise GanrunError(
                f"{why} needs the {name!r} split, which data={self.info.name} of "
                f"{self.restored.path} does not have (it has: {', '.join(self.data.splits)})"
            )
        return self.data.splits[name]


def as_unit_interval(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    lo, hi = value_range
    return (x.double() - lo) / (hi - lo)
