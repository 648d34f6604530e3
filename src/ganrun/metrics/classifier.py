"""A data-set classifier as a CPU-cheap feature extractor for FID, KID and IS.

Inception on CPU costs seconds per hundred images; this small CNN, trained by ganrun on the data
set's training split (and cached), scores thousands per second. It is registered with
torch-fidelity as ``ganrun-data-cnn``, so the very same FID/KID/IS code runs on its 128-d
penultimate features (FID, KID) and class logits (IS). The numbers are not comparable with
Inception ones, which is why they are reported as ``fid_<data set>_cnn`` etc. with the
classifier's test accuracy beside them.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from ganrun.errors import GanrunError
from ganrun.images import gray_to_rgb
from ganrun.metrics import cache
from ganrun.metrics.fidelity import Extractor

log = logging.getLogger("ganrun")

NAME = "ganrun-data-cnn"  # torch-fidelity registry name
FEATURES = "128"
LOGITS = "logits"
ARCH_VERSION = 1  # bump when DataCNN changes, so cached classifiers are retrained
MIN_STEPS = 500  # optimizer steps at least, whatever eval.classifier_epochs says


class DataCNN(nn.Module):
    """Two conv blocks, a 4x4 adaptive pool (any resolution >= 4) and two linear layers."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(32 * 16, int(FEATURES)),
            nn.ReLU(),
        )
        self.head = nn.Linear(int(FEATURES), num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, 3, H, W) -> (features, logits)."""
        features = self.body(x.float().div(255.0))
        return features, self.head(features)


class DataCNNFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity's interface around :class:`DataCNN` weights stored in the ganrun cache."""

    def __init__(
        self, name: str, features_list: list[str], classifier_path: str = "", **kwargs: Any
    ) -> None:
        super().__init__(name, features_list)
        payload = cache.load_entry(cache.Path(classifier_path))
        if payload is None:
            raise GanrunError(f"cannot read the data-set classifier {classifier_path}")
        self.net = DataCNN(int(payload["num_classes"]))
        self.net.load_state_dict(payload["state_dict"])
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, str]:
        return FEATURES, LOGITS

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": LOGITS, "fid": FEATURES, "kid": FEATURES, "prc": FEATURES}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features, logits = self.net(x)
        found = {FEATURES: features, LOGITS: logits}
        return tuple(found[name] for name in self.features_list)


def register() -> None:
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(NAME, DataCNNFeatureExtractor)


register()


# Data options added after caches were written, with the value that leaves the data as it was:
# at that value they stay out of the key, so cached statistics and classifiers stay valid.
_ADDED_OPTIONS = {"binarize": "none", "framing": "native", "label_rng": "torch"}


def data_key(data_cfg: Any) -> dict[str, Any]:
    """What a data set's content depends on (not where it lives or how it is loaded)."""
    skip = {"root", "download", "num_workers"}
    return {
        k: v
        for k, v in dict(data_cfg).items()
        if k not in skip and not (k in _ADDED_OPTIONS and v == _ADDED_OPTIONS[k])
    }


def _labeled(split: Any, what: str, data_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if split.labels is None:
        raise GanrunError(
            f"the data-set classifier needs class labels, but the {what!r} split of data="
            f"{data_name} has none; use Inception metrics (eval.metrics=[fid,kid]) instead"
        )
    return gray_to_rgb(split.pixels()), split.labels.cpu()


# The (training, test) splits of each domain of two-domain data: A is the usual pair.
DOMAIN_SPLITS = {"a": ("train", "test"), "b": ("train_b", "test_b")}


def classifier_extractor(
    data: Any, data_cfg: Any, cfg: Any, device: torch.device, domain: str = "a"
) -> Extractor:
    """Train (or load from the cache) the classifier for this data set, or for its domain B
    (``domain="b"``, two-domain data); its Extractor."""
    key = {
        "arch": ARCH_VERSION,
        "data": data_key(data_cfg),
        "epochs": cfg.classifier_epochs,
        "seed": cfg.seed,
    }
    if domain != "a":  # domain A keeps the key it always had, and so its cached classifiers
        key["domain"] = domain
    path = cache.entry_path(cfg.cache_dir, "classifiers", key)
    name = data_cfg.name if domain == "a" else f"{data_cfg.name}_{domain}"
    payload, _ = cache.load_or_compute(
        path,
        lambda: train_classifier(
            data, name, cfg.classifier_epochs, cfg.seed, device, DOMAIN_SPLITS[domain]
        ),
        key,
        ("state_dict", "num_classes", "test_accuracy", "epochs"),
    )
    label = f"{name}_cnn"
    return Extractor(
        name=NAME,
        label=label,
        weights_sha256=cache.file_sha256(path),
        feature_layer=FEATURES,
        logits_layer=LOGITS,
        feature_dim=int(FEATURES),
        kwargs={"classifier_path": str(path)},
        extra={
            "classifier_test_accuracy": float(payload["test_accuracy"]),
            "classifier_epochs": int(payload["epochs"]),
        },
    )


def train_classifier(
    data: Any,
    data_name: str,
    epochs: int,
    seed: int,
    device: torch.device,
    splits: tuple[str, str] = DOMAIN_SPLITS["a"],
    batch_size: int = 128,
) -> dict[str, Any]:
    """Adam on the training split (``splits[0]``) for ``epochs`` epochs; accuracy on the test
    split (``splits[1]``) measured after."""
    train_name, test_name = splits
    images, labels = _labeled(data.splits[train_name], train_name, data_name)
    test_split = data.splits.get(test_name)
    if test_split is None:
        raise GanrunError(f"data={data_name} has no {test_name} split to measure the classifier on")
    test_images, test_labels = _labeled(test_split, test_name, data_name)
    num_classes = int(max(labels.max(), test_labels.max())) + 1
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DataCNN(num_classes).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    n = images.shape[0]
    # Small data sets (digits: 12 batches an epoch) would see too few steps to learn anything.
    epochs = max(epochs, math.ceil(MIN_STEPS / math.ceil(n / batch_size)))
    log.info(
        "training the %s classifier for cnn metrics (%d images, %d epochs; cached after)",
        data_name,
        n,
        epochs,
    )
    net.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            _, logits = net(images[index].to(device))
            loss = F.cross_entropy(logits, labels[index].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, test_images.shape[0], 512):
            _, logits = net(test_images[start : start + 512].to(device))
            correct += int((logits.argmax(1).cpu() == test_labels[start : start + 512]).sum())
    accuracy = correct / max(1, test_images.shape[0])
    log.info("%s classifier: test accuracy %.4f", data_name, accuracy)
    if not math.isfinite(accuracy):
        raise GanrunError(f"the {data_name} classifier could not be evaluated")
    return {
        "state_dict": {k: v.cpu() for k, v in net.state_dict().items()},
        "num_classes": num_classes,
        "test_accuracy": accuracy,
        "epochs": epochs,
        "arch_version": ARCH_VERSION,
    }
