"""``ganrun eval`` end to end on tiny digits runs, with the data-set classifier (CPU-cheap)."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from ganrun.metrics import classifier, fidelity
from tests.conftest import FAST, TINY


@pytest.fixture
def cache(tmp_path_factory, monkeypatch) -> Path:
    """One evaluation cache for the module's runs, and a classifier trained for few steps."""
    path = tmp_path_factory.getbasetemp() / "eval-cache"
    monkeypatch.setenv("GANRUN_CACHE_DIR", str(path))
    monkeypatch.setattr(classifier, "MIN_STEPS", 30)
    return path


@pytest.fixture
def trained(cli, tmp_path_factory) -> Path:
    """A tiny finished digits run (checkpoints at steps 3 and 6), copied per test."""
    base = tmp_path_factory.getbasetemp() / "eval-run"
    if not (base / "checkpoints" / "last.pt").is_file():
        code, out, err = cli("train", *TINY, f"hydra.run.dir={base}", cwd=base.parent)
        assert code == 0, err
    return base


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_run_scores_every_checkpoint_and_records_protocol(cli, cache, trained, tmp_path) -> None:
    run = copy_run(trained, tmp_path / "run")
    code, out, err = cli("eval", f"run={run}", *FAST, cwd=tmp_path)
    assert code == 0, err
    rows = list(csv.DictReader((run / "eval.csv").open()))
    assert [r["checkpoint"] for r in rows] == [
        "checkpoints/step_000003.pt",
        "checkpoints/step_000006.pt",
    ]  # last.pt == step 6
    assert [r["step"] for r in rows] == ["3", "6"]
    record = json.loads((run / "eval/step_000006/metrics.json").read_text())["results"]["fast"]
    values = record["metrics"]
    assert set(values) == {
        "fid_digits_cnn",
        "fid_digits_cnn_floor",
        "kid_digits_cnn_mean",
        "kid_digits_cnn_std",
        "kid_digits_cnn_floor",
        "is_digits_cnn_mean",
        "is_digits_cnn_std",
    }
    assert values["fid_digits_cnn"] > 0 and values["is_digits_cnn_mean"] >= 1.0
    # The floors compare two disjoint sets of test images, 75 a side of digits' 150: enough for
    # KID's subsets of 50, fewer than FID's 128 features. The record says why FID has none.
    assert values["fid_digits_cnn_floor"] is None
    assert 0 <= abs(values["kid_digits_cnn_floor"]) < values["kid_digits_cnn_mean"]
    assert record["protocol"]["fid_cnn"]["floor_num_per_side"] == 75
    assert "fewer than the 128 features" in record["protocol"]["fid_cnn"]["floor"]
    fid = record["protocol"]["fid_cnn"]
    assert fid["metric_library"] == "torch-fidelity" and fid["metric_library_version"]
    assert fid["feature_extractor"] == "digits_cnn" and len(fid["weights_sha256"]) == 64
    assert 0.0 <= fid["classifier_test_accuracy"] <= 1.0
    assert (fid["num_generated"], fid["num_real"], fid["reference_split"]) == (200, 150, "test")
    assert fid["seed"] == 0 and record["wall_time_s"] > 0
    assert (record["model"], record["arch"], record["data"]) == ("dcgan", "conv", "digits")
    assert fid["reference_cached"] is True  # step 3 computed the real side; step 6 reused it
    assert set(record["skipped"]) == {
        "elbo",
        "iw_ll",
        "test_ll",
        "recon_mse",
        "modes",
        "jsd",
        "d_gap",
    }
    assert rows[1]["fid_digits_cnn"] == repr(values["fid_digits_cnn"])
    assert "fid_cnn.weights_sha256" in rows[0]
    assert "eval done (2 checkpoint(s)" in out
    # no terminal, so no progress bar: each checkpoint says it has begun, naming what applies
    begun = "ganrun: scoring checkpoints/step_000003.pt (eval=fast: fid_cnn, kid_cnn, is_cnn)"
    assert out.index(begun) < out.index("ganrun: checkpoints/step_000003.pt (step 3)")
    assert out.index("ganrun: scoring checkpoints/step_000006.pt") > out.index(begun)


def test_classifier_floor_is_the_metric_between_two_sets_of_real_images(
    cli, cache, trained, tmp_path
) -> None:
    run = copy_run(trained, tmp_path / "run")
    # The training split has room for two disjoint sets of 200: the score's own sample size.
    args = [f"checkpoint={run}/checkpoints/last.pt", *FAST, "eval.metrics=[fid_cnn,kid_cnn]"]
    args += ["eval.num_real=200", "eval.reference_split=train"]
    assert cli("eval", *args, cwd=tmp_path)[0] == 0
    record = json.loads((run / "eval/last/metrics.json").read_text())["results"]["fast"]
    values, protocol = record["metrics"], record["protocol"]["fid_cnn"]
    assert protocol["floor_num_per_side"] == 200 and protocol["floor"].endswith("computed")
    assert 0 < values["fid_digits_cnn_floor"] < values["fid_digits_cnn"]
    assert abs(values["kid_digits_cnn_floor"]) < values["kid_digits_cnn_mean"]
    # Scored again: the same floor, from the cache.
    assert cli("eval", *args, "eval.name=again", cwd=tmp_path)[0] == 0
    again = json.loads((run / "eval/last/metrics.json").read_text())["results"]["again"]
    assert again["metrics"]["fid_digits_cnn_floor"] == values["fid_digits_cnn_floor"]


def test_scores_are_reproducible_and_rescoring_replaces_rows(cli, cache, trained, tmp_path) -> None:
    run = copy_run(trained, tmp_path / "run")
    ckpt = run / "checkpoints" / "last.pt"
    args = [f"checkpoint={ckpt}", *FAST, "eval.metrics=[fid_cnn]"]
    code, out, _ = cli("eval", *args, cwd=tmp_path)
    assert code == 0 and "ganrun: scoring checkpoints/last.pt (eval=fast: fid_cnn)\n" in out
    first = json.loads((run / "eval/last/metrics.json").read_text())["results"]["fast"]
    assert cli("eval", *args, cwd=tmp_path)[0] == 0
    assert cli("eval", *args, "eval.name=other", cwd=tmp_path)[0] == 0
    stored = json.loads((run / "eval/last/metrics.json").read_text())["results"]
    assert set(stored) == {"fast", "other"}
    assert stored["fast"]["metrics"] == first["metrics"]
    rows = list(csv.DictReader((run / "eval.csv").open()))
    assert [(r["checkpoint"], r["preset"]) for r in rows] == [
        ("checkpoints/last.pt", "fast"),
        ("checkpoints/last.pt", "other"),
    ]


def test_sweep_scores_each_runs_last_checkpoint(cli, cache, trained, tmp_path) -> None:
    sweep = tmp_path / "multirun" / "2026-01-01" / "00-00-00"
    for job in ("0", "1", "10"):
        copy_run(trained, sweep / job)
    code, out, err = cli(
        "eval", f"sweep={sweep}", *FAST, "eval.metrics=[fid_cnn,modes]", cwd=tmp_path
    )
    assert code == 0, err
    for job in ("0", "1", "10"):
        rows = list(csv.DictReader((sweep / job / "eval.csv").open()))
        assert [r["checkpoint"] for r in rows] == ["checkpoints/last.pt"]
    assert out.index("/0/eval.csv") < out.index("/1/eval.csv") < out.index("/10/eval.csv")


def test_sweep_pick_best_scores_each_runs_best_checkpoint(cli, cache, trained, tmp_path) -> None:
    sweep = tmp_path / "multirun"
    for job in ("0", "1"):
        run = copy_run(trained, sweep / job)
        shutil.copy(run / "checkpoints/step_000003.pt", run / "checkpoints/best.pt")
    code, out, err = cli(
        "eval", f"sweep={sweep}", "pick=best", *FAST, "eval.metrics=[fid_cnn]", cwd=tmp_path
    )
    assert code == 0, err
    for job in ("0", "1"):
        rows = list(csv.DictReader((sweep / job / "eval.csv").open()))
        assert [(r["checkpoint"], r["step"]) for r in rows] == [("checkpoints/best.pt", "3")]

    (sweep / "1/checkpoints/best.pt").unlink()
    code, _, err = cli("eval", f"sweep={sweep}", "pick=best", *FAST, cwd=tmp_path)
    assert code == 2 and err.count("\n") == 1, err
    assert "1/checkpoints/best.pt does not exist (1 of 2 runs" in err and "pick=last" in err


def test_parzen_end_to_end(cli, cache, trained, tmp_path) -> None:
    run = copy_run(trained, tmp_path / "run")
    code, out, err = cli(
        "eval",
        f"checkpoint={run}/checkpoints/last.pt",
        *FAST,
        "eval=paper",
        "eval.metrics=[parzen]",
        "eval.parzen_samples=300",
        "eval.parzen_chunk=64",
        cwd=tmp_path,
    )
    assert code == 0, err
    record = json.loads((run / "eval/last/metrics.json").read_text())["results"]["paper"]
    values, protocol = record["metrics"], record["protocol"]["parzen"]
    assert values["parzen_sigma"] in protocol["sigma_grid"] and len(protocol["sigma_grid"]) == 10
    assert values["parzen_ll_se"] > 0 and protocol["num_generated"] == 300
    assert protocol["sigma_split"] == "valid" and protocol["reference_split"] == "test"


@pytest.mark.parametrize(
    "args, fragment",
    [
        ([], "exactly one of checkpoint="),
        (["run=nowhere"], "run=nowhere is not a folder"),
        (["checkpoint=nowhere.pt"], "checkpoint=nowhere.pt does not exist"),
        (["eval.metrics=[fid_cnn,bogus]"], "unknown metric(s) in eval.metrics: bogus"),
        (["eval.kid_subset_size=151"], "eval.kid_subset_size=151 is larger than the 150 samples"),
        (["eval.num_samples=100"], "fid_digits_cnn needs at least 128 generated samples"),
        (["eval.metrics=[fid]", "eval.download=false"], "eval.inception_weights"),
        (["eval.metrics=[elbo]"], "none of eval.metrics (elbo) applies"),
        (["eval.reference_split=nope"], "has no split 'nope'"),
        (["eval.num_samples=0"], "eval.num_samples=0 must be at least 1"),
        (["pick=best"], "pick=best applies to sweep= only"),
        (["pick=first"], "pick=first must be last or best"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    cli, cache, trained, tmp_path, args, fragment
) -> None:
    run = copy_run(trained, tmp_path / "run")
    target = (
        [] if args and args[0].startswith(("run=", "checkpoint=")) or not args else [f"run={run}"]
    )
    code, out, err = cli("eval", *target, *FAST, *args, cwd=tmp_path)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganrun: error: "), err
    assert fragment in lines[0]
    assert not (run / "eval").exists() and not (run / "eval.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_train_eval_at_end_scores_the_final_checkpoint(cli, cache, tmp_path) -> None:
    code, out, err = cli(
        "train",
        *TINY,
        "hydra.run.dir=r",
        "eval=fast",
        "eval.at_end=true",
        *FAST[1:-1],
        cwd=tmp_path,
    )
    assert code == 0, err
    # the wait after "done" is announced, so it does not read as a hang
    assert out.index("ganrun: done.") < out.index("ganrun: scoring checkpoints/last.pt (eval=fast")
    assert out.index("ganrun: scoring") < out.index("ganrun: checkpoints/last.pt (step 6)")
    rows = list(csv.DictReader((tmp_path / "r" / "eval.csv").open()))
    assert [(r["checkpoint"], r["step"]) for r in rows] == [("checkpoints/last.pt", "6")]
    assert float(rows[0]["fid_digits_cnn"]) > 0


def test_train_refuses_unusable_at_end_protocol_before_writing(cli, cache, tmp_path) -> None:
    code, out, err = cli(
        "train",
        *TINY,
        "hydra.run.dir=r",
        "eval=fast",
        "eval.at_end=true",
        "eval.kid_subset_size=1000",
        cwd=tmp_path,
    )
    assert code == 2 and "eval.kid_subset_size=1000" in err
    assert not (tmp_path / "r").exists()
    code, out, err = cli("train", *TINY, "hydra.run.dir=r", "eval.at_end=true", cwd=tmp_path)
    assert code == 2 and "has no metrics" in err


def test_ema_weights_are_preferred(cache, trained, tmp_path) -> None:
    from ganrun.runs.checkpoint import restore

    run = copy_run(trained, tmp_path / "run")
    path = run / "checkpoints" / "last.pt"
    payload = torch.load(path, weights_only=True)
    generator = payload["networks"]["generator"]
    payload["averages"] = {"generator": {k: torch.zeros_like(v) for k, v in generator.items()}}
    torch.save(payload, path)
    restored = restore(path, torch.device("cpu"))
    assert restored.weights == "ema"
    sampler = restored.model.network("generator")
    assert all(float(p.abs().sum()) == 0 for p in sampler.parameters())
    # and what it draws comes from those weights
    samples = restored.model.generate(4, seed=0, batch_size=4)
    assert torch.equal(samples, sampler(restored.model.noise(4, torch.Generator().manual_seed(0))))


def test_classifier_is_a_torch_fidelity_feature_extractor(
    cache, trained, monkeypatch, caplog
) -> None:
    from omegaconf import OmegaConf
    from torch_fidelity.utils import create_feature_extractor

    from ganrun.config.schema import EvalConfig
    from ganrun.metrics.context import EvalContext
    from ganrun.runs.checkpoint import restore

    cfg = OmegaConf.merge(
        OmegaConf.structured(EvalConfig), {"classifier_epochs": 1, "cache_dir": str(cache)}
    )
    restored = restore(trained / "checkpoints" / "last.pt", torch.device("cpu"))
    extractor = EvalContext(restored, cfg, torch.device("cpu")).extractor("cnn")
    assert extractor.label == "digits_cnn" and extractor.feature_dim == 128
    net = create_feature_extractor(
        classifier.NAME, ["128", "logits"], cuda=False, verbose=False, **extractor.kwargs
    )
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    features, logits = net(images)
    assert features.shape == (5, 128) and logits.shape == (5, 10)
    # ganrun's batched extraction gives the same features and logs a slow one with its rate.
    clock = iter(range(0, 1000, 30))
    monkeypatch.setattr(fidelity, "perf_counter", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="ganrun"):
        out = fidelity.extract(extractor, images, torch.device("cpu"), 2, "test images")
    torch.testing.assert_close(out["128"], features)
    assert "digits_cnn features of 5 test images in 30 s (0.2 images/s on cpu)" in caplog.text
    payload = torch.load(extractor.kwargs["classifier_path"], weights_only=True)
    assert payload["test_accuracy"] == extractor.extra["classifier_test_accuracy"]
    assert payload["test_accuracy"] > 0.3  # 30 Adam steps on digits already beat chance (0.1)


@pytest.mark.parametrize("binarize", ["none", "dynamic"])
def test_vae_likelihoods_end_to_end(cli, cache, tmp_path, binarize) -> None:
    code, out, err = cli(
        "train", *TINY, "model=vae", f"data.binarize={binarize}", "hydra.run.dir=v", cwd=tmp_path
    )
    assert code == 0, err
    code, out, err = cli(
        "eval",
        "run=v",
        *FAST,
        "eval.metrics=[elbo,iw_ll,fid_cnn]",
        "eval.iw_samples=8",
        "eval.likelihood_examples=40",
        cwd=tmp_path,
    )
    assert code == 0, err
    record = json.loads((tmp_path / "v/eval/step_000006/metrics.json").read_text())
    values = record["results"]["fast"]["metrics"]
    assert values["elbo"] < 0 and values["iw_ll"] < 0
    assert values["iw_ll"] >= values["elbo"] - 5 * (values["elbo_se"] + values["iw_ll_se"])
    assert record["results"]["fast"]["protocol"]["iw_ll"]["k"] == 8
    assert record["results"]["fast"]["protocol"]["iw_ll"]["num_real"] == 40
    assert record["results"]["fast"]["protocol"]["elbo"]["binarize"] == binarize


def test_ring_modes_end_to_end(cli, cache, tmp_path) -> None:
    code, out, err = cli(
        "train",
        *TINY,
        "data=ring",
        "model=gan",
        "model.g_hidden=[32,32]",
        "model.d_hidden=[32,32]",
        "data.num_points=500",
        "data.valid_size=100",
        "hydra.run.dir=g",
        cwd=tmp_path,
    )
    assert code == 0, err
    code, out, err = cli("eval", "checkpoint=g/checkpoints/last.pt", *FAST, cwd=tmp_path)
    assert code == 0, err
    record = json.loads((tmp_path / "g/eval/last/metrics.json").read_text())["results"]["fast"]
    assert (record["model"], record["arch"]) == ("gan", None)  # the MLP GAN has one network
    assert record["metrics"]["num_modes"] == 8
    assert 0 <= record["metrics"]["modes_covered"] <= 8
    assert 0.0 <= record["metrics"]["high_quality"] <= 1.0
    assert set(record["skipped"]) == {
        "fid_cnn",
        "kid_cnn",
        "is_cnn",
        "elbo",
        "iw_ll",
        "test_ll",
        "recon_mse",
    }
    # The ring's density is known: the theory's values, the estimator's floor, and D's gap.
    assert record["metrics"]["v_dstar"] == pytest.approx(record["metrics"]["c_g"], abs=1e-4)
    assert 0 < record["metrics"]["jsd_floor"] < 0.1 and 0 <= record["metrics"]["d_gap"] <= 1


def test_inception_metrics_refused_up_front(cli, cache, trained, tmp_path) -> None:
    """FID below 2,048 samples a side, and IS from weights without a classifier layer."""
    from ganrun.metrics.cache import file_sha256

    run = copy_run(trained, tmp_path / "run")
    weights = tmp_path / "pool3-only.pth"
    torch.save({"fc.weight": torch.zeros(4, 2), "fc.bias": torch.zeros(4)}, weights)
    accept = [
        f"eval.inception_weights={weights}",
        f"eval.inception_weights_sha256={file_sha256(weights)}",
    ]
    code, out, err = cli(
        "eval",
        f"run={run}",
        *FAST,
        *accept,
        "eval.metrics=[fid]",
        "eval.num_samples=2048",
        cwd=tmp_path,
    )
    assert code == 2 and "fid needs at least 2048 real samples" in err, err
    assert "the test split has 150" in err
    code, out, err = cli("eval", f"run={run}", *FAST, *accept, "eval.metrics=[is]", cwd=tmp_path)
    assert code == 2 and "Inception Score cannot be computed" in err, err
    assert not (run / "eval").exists() and not (run / "eval.csv").exists()


def test_multirun_jobs_let_go_of_training_before_scoring_and_the_next_job(
    cli, cache, tmp_path, monkeypatch
) -> None:
    """The basic launcher runs every job in this one process: a job's trainer and optimizer state
    must be freed by the time it scores its final weights (in memory, with the data already
    loaded), and everything of it by the time the next job starts, not left to the cyclic garbage
    collector (disabled here, so a reference cycle would show)."""
    import gc

    from ganrun.training.loop import Trainer
    from ganrun.training.scoring import Scorer
    from ganrun.training.setup import Setup

    seen = []
    init, at_end = Trainer.__init__, Scorer.__call__

    def live(kind, new=None) -> int:
        # type(), not isinstance(): isinstance reads __class__ of every object in the heap,
        # which trips torch's deprecation warnings on its lazily deprecated module attributes
        return sum(type(o) is kind and o is not new for o in gc.get_objects())

    def counting_init(self, setup, *args, **kwargs):
        seen.append(("train", live(Trainer, new=self), live(Setup, new=setup)))
        init(self, setup, *args, **kwargs)

    def counting_at_end(self, *args, **kwargs):
        seen.append(("eval", live(Trainer), live(torch.optim.Adam)))
        return at_end(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "__init__", counting_init)
    monkeypatch.setattr(Scorer, "__call__", counting_at_end)
    gc.collect()
    gc.disable()
    try:
        code, out, err = cli(
            "train",
            "-m",
            "seed=0,1",
            *TINY,
            "hydra.sweep.dir=s",
            "eval.at_end=true",
            *FAST,
            cwd=tmp_path,
        )
    finally:
        gc.enable()
    assert code == 0, err
    assert seen == [("train", 0, 0), ("eval", 0, 0), ("train", 0, 0), ("eval", 0, 0)]
    assert all((tmp_path / "s" / job / "eval.csv").is_file() for job in ("0", "1"))


@pytest.mark.parametrize(
    "model",
    [["model.ema_decay=0.9", "eval.metrics=[fid_cnn]"], ["model=vae", "eval.metrics=[elbo,iw_ll]"]],
    ids=["dcgan-ema", "vae"],
)
def test_scoring_in_training_equals_scoring_the_checkpoint(cli, cache, tmp_path, model) -> None:
    """eval.at_end scores the model in memory; ganrun eval rebuilds it from last.pt: the same
    numbers, to the last bit."""
    settings = [*FAST, "eval.iw_samples=8", "eval.likelihood_examples=40", *model]
    code, out, err = cli(
        "train", *TINY, *settings, "eval.at_end=true", "hydra.run.dir=r", cwd=tmp_path
    )
    assert code == 0, err
    in_training = json.loads((tmp_path / "r/eval/last/metrics.json").read_text())["results"]
    scoring = [s for s in settings if s.startswith(("eval", "device"))]
    code, out, err = cli("eval", "checkpoint=r/checkpoints/last.pt", *scoring, cwd=tmp_path)
    assert code == 0, err
    rebuilt = json.loads((tmp_path / "r/eval/last/metrics.json").read_text())["results"]
    assert in_training["fast"]["metrics"] == rebuilt["fast"]["metrics"]
    assert in_training["fast"]["weights"] == rebuilt["fast"]["weights"]


def test_scoring_during_training_leaves_training_as_it_was(cli, cache, tmp_path) -> None:
    """eval.every scores at steps 2 and 4 in the middle of training: the run ends with exactly
    the weights of a run that never scored (the VAE draws from torch's global random state)."""
    from ganrun.runs.checkpoint import load_checkpoint

    vae = ["model=vae", "model.g_hidden=[32]", "train.log_every=1"]
    scored = ["eval=fast", "eval.metrics=[elbo]", "eval.every=2", "eval.likelihood_examples=20"]
    assert cli("train", *TINY, *vae, *scored, "hydra.run.dir=a", cwd=tmp_path)[0] == 0
    assert cli("train", *TINY, *vae, "hydra.run.dir=b", cwd=tmp_path)[0] == 0
    a = load_checkpoint(tmp_path / "a/checkpoints/last.pt")["networks"]["vae"]
    b = load_checkpoint(tmp_path / "b/checkpoints/last.pt")["networks"]["vae"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = list(csv.DictReader((tmp_path / "a/eval.csv").open()))
    assert [r["step"] for r in rows] == ["2", "4", "6"]
