"""What a metric function sees: one model at one step (a restored checkpoint, or the model in
training), the eval config, and work shared between metrics.

Generated samples and their features are computed once per checkpoint and shared by the metrics
that need them (FID, KID and IS use one feature pass). Real-side features are computed once per
(data set, split, sample count, feature extractor, weights) and kept in the on-disk cache and in
memory, so scoring N checkpoints pays for the real side once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ganrun.data.external import ImageSet, read_image_set
from ganrun.errors import GanrunError
from ganrun.images import gray_to_rgb, to_uint8
from ganrun.metrics import cache
from ganrun.metrics.classifier import classifier_extractor, data_key
from ganrun.metrics.fidelity import Extractor, extract, fid_statistics, inception_extractor
from ganrun.runs.checkpoint import Snapshot
from ganrun.runs.layout import checkpoint_name

# Shared across checkpoints (and runs of a sweep) within one process.
_EXTRACTOR_MEMO: dict[str, Extractor] = {}
_REAL_MEMO: dict[str, dict[str, Any]] = {}


class EvalContext:
    def __init__(self, snapshot: Snapshot, cfg: Any, device: torch.device) -> None:
        self.snapshot = snapshot
        self.model = snapshot.model
        self.run_config = snapshot.config
        self.cfg = cfg
        self.device = device
        self.data = snapshot.data
        self.info = snapshot.data.info
        self._samples: torch.Tensor | None = None
        self._reference: ImageSet | None = None
        self._untrained: Any = None
        self._gen_features: dict[str, dict[str, torch.Tensor]] = {}
        self._shared: dict[str, Any] = {}

    # ------------------------------------------------------------------------- generated side
    def samples(self, n: int) -> torch.Tensor:
        """The first ``n`` generated samples of this checkpoint (one seeded stream, so a metric
        asking for fewer samples gets a prefix of what another one got)."""
        if self._samples is None or self._samples.shape[0] < n:
            self._samples = self.model.generate(n, self.cfg.seed, self.cfg.batch_size)
        return self._samples[:n]

    def generated_features(self, which: str) -> dict[str, torch.Tensor]:
        extractor = self.extractor(which)
        if which not in self._gen_features:
            samples = self.samples(self.cfg.num_samples)
            images = gray_to_rgb(to_uint8(samples, self.info.value_range))
            self._gen_features[which] = extract(
                extractor, images, self.device, self.cfg.batch_size, "generated images"
            )
        return self._gen_features[which]

    # ------------------------------------------------------------------------------ real side
    def split(self, name: str) -> Any:
        return self.data.split(name)

    def test_count(self, split: str) -> int:
        """How many of a split's images :meth:`test_images` gives."""
        available, n = len(self.split(split)), self.cfg.test_examples
        return available if n == 0 else min(n, available)

    def test_images(self, split: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A split's images for the image-to-image metrics: all, or ``eval.test_examples`` of
        them drawn by ``eval.seed``; scaled as the model sees them, on the CPU, with their
        labels (None where the split has none)."""
        data = self.split(split)
        n, index = self.test_count(split), None
        if n < len(data):
            gen = torch.Generator().manual_seed(self.cfg.seed)
            index = torch.randperm(len(data), generator=gen)[:n].sort().values
        x = data.scaled(data.pixels(index)).float().cpu()
        labels = data.labels
        if labels is not None:
            labels = labels.cpu() if index is None else labels.cpu()[index]
        return x, labels

    def reference_set(self) -> ImageSet | None:
        """``eval.reference``'s images, read and checked once; None: the data set's
        ``eval.reference_split`` is the reference."""
        if self.cfg.get("reference") is None:
            return None
        if self._reference is None:
            images = read_image_set(Path(self.cfg.reference))
            info = self.info
            if not images.fits(info):
                _, c, h, w = images.pixels.shape
                shape = f"{info.resolution}x{info.resolution} with {info.channels} channel(s)"
                raise GanrunError(
                    f"eval.reference={self.cfg.reference} holds {h}x{w} images with {c} "
                    f"channel(s); data={info.name} is "
                    + (shape if info.kind == "image" else "not images")
                    + ": give a reference set of the data's kind"
                )
            self._reference = images
        return self._reference

    def reference_name(self) -> str:
        """What the reference is, for messages: the split, or the file."""
        ref = self.reference_set()
        return f"the {self.cfg.reference_split} split" if ref is None else f"{ref.path}"

    def reference_protocol(self) -> dict[str, Any]:
        """What a record says of the reference: the split, or the file and its sha256."""
        ref = self.reference_set()
        if ref is None:
            return {"reference_split": self.cfg.reference_split}
        return {"reference_file": str(ref.path), "reference_sha256": ref.sha256}

    def _reference_key(self) -> dict[str, Any]:
        ref = self.reference_set()
        if ref is None:
            return {"data": data_key(self.run_config.data), "split": self.cfg.reference_split}
        return {"reference_sha256": ref.sha256}

    def _reference_pixels(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """The reference images (all, or those at ``index``), uint8 (N, C, H, W) on the CPU."""
        ref = self.reference_set()
        if ref is None:
            return self.split(self.cfg.reference_split).pixels(index)
        return ref.pixels if index is None else ref.pixels[index]

    def _reference_count(self) -> int:
        ref = self.reference_set()
        return len(self.split(self.cfg.reference_split)) if ref is None else ref.pixels.shape[0]

    def num_real(self) -> int:
        available = self._reference_count()
        return available if self.cfg.num_real == 0 else min(self.cfg.num_real, available)

    def real_index(self) -> torch.Tensor | None:
        """A seeded subset of the reference when num_real is smaller than it."""
        available = self._reference_count()
        n = self.num_real()
        if n == available:
            return None
        gen = torch.Generator().manual_seed(self.cfg.seed)
        return torch.randperm(available, generator=gen)[:n].sort().values

    def extractor(self, which: str, domain: str | None = None) -> Extractor:
        """``inception`` or ``cnn`` (the data-set classifier, trained on first use). On
        two-domain data the classifier is domain ``"a"``'s or ``"b"``'s; None: the domain the
        run trained on."""
        run_data = self.run_config.data
        cfg = self.cfg
        if domain is None:
            domain = "b" if run_data.get("train_split") == "train_b" else "a"
        if which == "inception":
            memo_key = repr((which, cfg.inception_weights, cfg.inception_weights_sha256))
        else:
            memo_key = repr(
                (which, data_key(run_data), cfg.classifier_epochs, cfg.seed, cfg.cache_dir, domain)
            )
        if memo_key not in _EXTRACTOR_MEMO:
            if which == "inception":
                _EXTRACTOR_MEMO[memo_key] = inception_extractor(self.cfg)
            else:
                _EXTRACTOR_MEMO[memo_key] = classifier_extractor(
                    self.data, run_data, self.cfg, self.device, domain
                )
        return _EXTRACTOR_MEMO[memo_key]

    def classifier_outputs(
        self, key: str, pixels: torch.Tensor, domain: str | None = None
    ) -> dict[str, torch.Tensor]:
        """The data-set classifier's features and logits (by layer) of uint8 images
        (N, C, H, W), once per checkpoint for the images named ``key``: accuracy metrics read
        the logits, FID metrics the features of the same images. ``domain`` as for
        :meth:`extractor`."""

        def compute() -> dict[str, torch.Tensor]:
            extractor = self.extractor("cnn", domain)
            return extract(extractor, gray_to_rgb(pixels), self.device, self.cfg.batch_size)

        return self.shared(f"classifier_outputs:{domain}:{key}", compute)

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per checkpoint: work several metrics use (a translation model's
        translated test images)."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    def real_reference(self, which: str) -> dict[str, Any]:
        """{"features": (n, D) tensor, "stats": FID statistics, "cached": bool}."""
        extractor = self.extractor(which)
        key = {
            **self._reference_key(),
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
            images = gray_to_rgb(self._reference_pixels(self.real_index()))
            what = "reference images"
            features = extract(extractor, images, self.device, self.cfg.batch_size, what)[
                extractor.feature_layer
            ]
            stats = fid_statistics(features)
            return {
                "features": features,
                "mu": torch.from_numpy(stats["mu"]),
                "sigma": torch.from_numpy(stats["sigma"]),
            }

        payload, cached = cache.load_or_compute(path, compute, key, ("features", "mu", "sigma"))
        entry = {
            "features": payload["features"],
            "stats": {"mu": payload["mu"].numpy(), "sigma": payload["sigma"].numpy()},
            "cache_file": str(path),
        }
        _REAL_MEMO[memo_key] = entry
        return {**entry, "cached": cached}

    def floor_size(self) -> int:
        """Images on each side of the real-against-real floor: as many as the score compares
        (``eval.num_samples`` against ``eval.num_real``), where the reference holds two
        disjoint sets of that size, else half of it."""
        return min(self.cfg.num_samples, self.num_real(), self._reference_count() // 2)

    def real_halves(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of two disjoint, seeded sets of :meth:`floor_size` reference images: the same
        metric between them is what a model drawing exactly the data would score at this sample
        size (cached like the reference)."""
        extractor = self.extractor(which)
        n = self.floor_size()
        key = {
            **self._reference_key(),
            "num_per_side": n,
            "seed": self.cfg.seed,
            "extractor": extractor.label,
            "layer": extractor.feature_layer,
            "weights_sha256": extractor.weights_sha256,
        }
        path = cache.entry_path(self.cfg.cache_dir, "floor", key)
        if str(path) in _REAL_MEMO:
            entry = _REAL_MEMO[str(path)]
            return entry["a"], entry["b"]

        def compute() -> dict[str, Any]:
            # A stream of its own, apart from real_index's: the halves are no subset of it.
            gen = torch.Generator().manual_seed(self.cfg.seed + 1)
            order = torch.randperm(self._reference_count(), generator=gen)
            sides = {}
            for side, index in (("a", order[:n]), ("b", order[n : 2 * n])):
                images = gray_to_rgb(self._reference_pixels(index.sort().values))
                sides[side] = extract(
                    extractor, images, self.device, self.cfg.batch_size, "reference images"
                )[extractor.feature_layer]
            return sides

        payload, _ = cache.load_or_compute(path, compute, key, ("a", "b"))
        _REAL_MEMO[str(path)] = payload
        return payload["a"], payload["b"]

    @contextlib.contextmanager
    def seeded(self) -> Iterator[None]:
        """torch's global random state seeded with ``eval.seed`` for a metric whose model draws
        from it (the VAE's bounds), and put back after: the same checkpoint gets the same score
        whether scored by ``ganrun eval`` or during training, and training's stream is untouched."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.cfg.seed)
            yield

    def untrained_model(self) -> Any:
        """The run's model as it was before any training: built from its config with
        ``eval.seed`` (the floor the representation metrics read a trained model against)."""
        if self._untrained is None:
            from ganrun.models import build_model

            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.cfg.seed)
                self._untrained = build_model(self.run_config.model, self.info).to(self.device)
        return self._untrained

    # ---------------------------------------------------------------------------- for checks
    def require_split(self, name: str, why: str) -> Any:
        if name not in self.data.splits:
            raise GanrunError(
                f"{why} needs the {name!r} split, which data={self.info.name} of "
                f"{checkpoint_name(self.snapshot.path)} does not have (it has: "
                f"{', '.join(self.data.splits)})"
            )
        return self.data.splits[name]


def as_unit_interval(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    lo, hi = value_range
    return (x.double() - lo) / (hi - lo)
