"""The metric registry declares each metric's columns and directions once; whatever ranks scores
(the report, checkpoints/best.pt) reads them from there."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ganrun.config.schema import EvalConfig
from ganrun.errors import GanrunError
from ganrun.metrics import HIGHER, LOWER, METRICS, direction
from ganrun.training.best import BestCheckpoint


@pytest.mark.parametrize(
    ("column", "better"),
    [
        ("fid", LOWER),
        ("fid_mnist_cnn", LOWER),
        ("kid_mean", LOWER),
        ("kid_digits_cnn_mean", LOWER),
        ("is_mean", HIGHER),
        ("is_cifar10_cnn_mean", HIGHER),
        ("precision", HIGHER),
        ("recall", HIGHER),
        ("parzen_ll", HIGHER),
        ("elbo", HIGHER),
        ("iw_ll", HIGHER),
        ("modes_covered", HIGHER),
        ("high_quality", HIGHER),
        ("mode_kl", LOWER),
        # spreads, chosen settings, counts, training values and unknown names rank nothing
        ("kid_std", None),
        ("is_digits_cnn_std", None),
        ("parzen_ll_se", None),
        ("parzen_sigma", None),
        ("num_modes", None),
        ("loss_g", None),
        ("fid.num_real", None),
        ("is_mean_std", None),
    ],
)
def test_direction(column, better):
    assert direction(column) == better


def test_every_metric_declares_distinct_columns():
    names = [n for m in METRICS.values() for n in m.column_names("digits")]
    assert len(names) == len(set(names))
    assert all(m.columns for m in METRICS.values())


def _best(**settings) -> BestCheckpoint:
    return BestCheckpoint(OmegaConf.merge(OmegaConf.structured(EvalConfig), settings))


def _record(**metrics) -> dict:
    return {"metrics": metrics}


def test_best_checkpoint_follows_the_metrics_direction():
    where = Path("checkpoints/step_000003.pt")
    best = _best()  # best_mode=auto, the first ranked value
    assert best.update(_record(elbo_se=0.1, elbo=-90.0), 3, where)  # elbo_se ranks nothing
    assert best.state == {"metric": "elbo", "value": -90.0, "step": 3}
    assert not best.update(_record(elbo_se=0.1, elbo=-95.0), 6, where)  # lower: worse
    assert best.update(_record(elbo_se=0.1, elbo=-80.0), 9, where)
    fid = _best(best_metric="fid_digits_cnn")
    assert fid.update(_record(fid_digits_cnn=30.0), 3, where)
    assert fid.update(_record(fid_digits_cnn=20.0), 6, where)
    assert not fid.update(_record(fid_digits_cnn=25.0), 9, where)
    forced = _best(best_metric="fid_digits_cnn", best_mode="max")  # an explicit mode wins
    assert forced.update(_record(fid_digits_cnn=30.0), 3, where)
    assert forced.update(_record(fid_digits_cnn=40.0), 6, where)


def test_best_checkpoint_refusals_name_the_fix():
    where = Path("checkpoints/step_000003.pt")
    with pytest.raises(GanrunError, match="eval.best_metric=fid is not a score.*elbo"):
        _best(best_metric="fid").update(_record(elbo=-90.0), 3, where)
    with pytest.raises(GanrunError, match="has no direction.*eval.best_mode=min"):
        _best(best_metric="parzen_sigma").update(_record(parzen_sigma=0.2), 3, where)
