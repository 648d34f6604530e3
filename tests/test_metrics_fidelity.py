"""Feature metrics through torch-fidelity: FID formula, image conversion, weights policy."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import scipy.linalg
import torch
from omegaconf import OmegaConf

from ganrun.config.schema import EvalConfig
from ganrun.errors import GanrunError
from ganrun.metrics import fidelity
from ganrun.metrics.cache import entry_path, file_sha256, load_entry, load_or_compute, save_entry


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The usual sqrtm formula (as in pytorch-fid), in float64."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def eval_cfg(**kw):
    return OmegaConf.merge(OmegaConf.structured(EvalConfig), kw)


def test_fid_of_features_against_themselves_is_zero() -> None:
    features = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    stats = fidelity.fid_statistics(features)
    assert abs(fidelity.fid(stats, stats)) < 1e-6


def test_fid_equals_scipy_sqrtm_formula() -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(800, 24, generator=gen, dtype=torch.float64)
    b = torch.randn(700, 24, generator=gen, dtype=torch.float64) * 1.3 + 0.4
    ours = fidelity.fid(fidelity.fid_statistics(a), fidelity.fid_statistics(b))
    expected = scipy_fid(a.numpy(), b.numpy())
    assert ours == pytest.approx(expected, rel=1e-9)
    assert ours > 1.0


def test_unofficial_weights_need_their_sha256(tmp_path) -> None:
    weights = tmp_path / "other.pth"
    weights.write_bytes(b"not the official file")
    sha = file_sha256(weights)
    with pytest.raises(GanrunError, match=f"eval.inception_weights_sha256={sha}"):
        fidelity.resolve_inception_weights(eval_cfg(inception_weights=str(weights)))
    path, got = fidelity.resolve_inception_weights(
        eval_cfg(inception_weights=str(weights), inception_weights_sha256=sha.upper())
    )
    assert path == weights and got == sha
    with pytest.raises(GanrunError, match="eval.inception_weights=.* does not exist"):
        fidelity.resolve_inception_weights(eval_cfg(inception_weights=str(tmp_path / "no")))


def test_offline_without_weights_names_the_setting(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(GanrunError, match="eval.inception_weights"):
        fidelity.resolve_inception_weights(eval_cfg(download=False))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(GanrunError, match="download failed.*eval.inception_weights"):
        fidelity.resolve_inception_weights(eval_cfg())


def test_kid_and_prc_run_through_torch_fidelity() -> None:
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(300, 8, generator=gen)
    cfg = eval_cfg(kid_subsets=10, kid_subset_size=100)
    same = fidelity.kid(a, a.clone(), cfg)
    other = fidelity.kid(a, torch.randn(300, 8, generator=gen) + 2.0, cfg)
    assert other["mean"] > 1.0 and abs(same["mean"]) < 0.1 * other["mean"]
    prc = fidelity.precision_recall(a, a.clone(), cfg)
    assert prc["precision"] == 1.0 and prc["recall"] == 1.0
    logits = torch.zeros(100, 10)
    assert fidelity.inception_score(logits, eval_cfg())["mean"] == pytest.approx(1.0)


def test_cache_entries_roundtrip_and_tolerate_damage(tmp_path) -> None:
    path = entry_path(tmp_path, "reference", {"a": 1})
    assert path != entry_path(tmp_path, "reference", {"a": 2})
    assert load_entry(path) is None
    save_entry(path, {"x": torch.arange(3)})
    assert torch.equal(load_entry(path)["x"], torch.arange(3))
    path.write_bytes(b"torn")
    assert load_entry(path) is None


def test_concurrent_misses_compute_a_cache_entry_once(tmp_path) -> None:
    # Parallel sweep jobs evaluating at the same time must not each extract the test set.
    path = entry_path(tmp_path, "reference", {"a": 1})
    calls, results = [], []

    def compute() -> dict:
        calls.append(1)
        time.sleep(0.3)  # long enough for the other thread to reach the lock
        return {"x": torch.arange(3)}

    threads = [
        threading.Thread(target=lambda: results.append(load_or_compute(path, compute)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(cached for _, cached in results) == [False, True]
    assert all(torch.equal(payload["x"], torch.arange(3)) for payload, _ in results)


def test_data_key_names_what_changes_the_images() -> None:
    # Where the data lives does not change its statistics; binarized pixels do. The default,
    # binarize=none, stays out of the key so statistics cached before the option existed are
    # still found.
    from ganrun.metrics.classifier import data_key

    base = {"name": "mnist", "resolution": 28, "root": "/a", "download": True}
    assert data_key({**base, "binarize": "none"}) == {"name": "mnist", "resolution": 28}
    assert data_key({**base, "root": "/b", "binarize": "none"}) == data_key(base)
    assert data_key({**base, "binarize": "static"})["binarize"] == "static"
