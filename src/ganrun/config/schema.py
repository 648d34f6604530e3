"""Typed schemas behind every config group, registered in Hydra's ConfigStore.

The YAML files under ``configs/`` fill these dataclasses; OmegaConf rejects unknown keys and
values of the wrong type while composing, before any run starts. The ``model`` group has no
schema here: each model family brings its own (:mod:`ganrun.models`), which the option's YAML
names in its defaults list. Checks that need more than a type (ranges, combinations) live in
:mod:`ganrun.config.checks` and in each family.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

DATA_DIR_ENV = "GANRUN_DATA_DIR"


def default_data_root() -> str:
    """``$GANRUN_DATA_DIR``, else a per-user cache folder (``$XDG_CACHE_HOME/ganrun/data``)."""
    if os.environ.get(DATA_DIR_ENV):
        return os.environ[DATA_DIR_ENV]
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(cache) / "ganrun" / "data")


def flat_settings(config: Any) -> dict[str, Any]:
    """A plain (resolved) config as ``{"optim.lr": 0.0002, ...}``: one entry per leaf; lists are
    leaves."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = node

    walk(config, "")
    return out


if not OmegaConf.has_resolver("ganrun_data_root"):
    OmegaConf.register_new_resolver("ganrun_data_root", default_data_root)
# Presets that fix a data budget in discriminator batches (Lucic et al. count epochs of D's
# batches) divide it by ``train.d_steps`` to get generator steps: ``${ganrun_floordiv:15600,...}``.
if not OmegaConf.has_resolver("ganrun_floordiv"):
    OmegaConf.register_new_resolver("ganrun_floordiv", lambda a, b: int(a) // int(b))


def required(key: str, why: str) -> None:
    """``${ganrun_required:<key>,<why>}``: a setting a preset cannot fill in for the user (the
    checkpoint it starts from). OmegaConf's own ``???`` cannot say so: merging it onto a default
    keeps the default. Read only when the command line left the interpolation in place."""
    from ganrun.errors import GanrunError

    raise GanrunError(f"{why}: set {key}=...")


if not OmegaConf.has_resolver("ganrun_required"):
    OmegaConf.register_new_resolver("ganrun_required", required)


@dataclass
class TrainConfig:
    steps: int = 2000  # generator (or, for a VAE, optimizer) steps
    batch_size: int = 64
    d_steps: int = 1  # discriminator/critic steps per generator step (k of Algorithm 1)
    # G and D update together from one forward pass (the 2014 released code) instead of D first
    # and then G through the updated D (Algorithm 1); needs d_steps=1.
    simultaneous: bool = False
    sample_every: int = 200
    checkpoint_every: int = 500
    log_every: int = 25
    num_samples: int = 64  # images in each sample grid, drawn from one fixed noise batch
    # Sample grids narrower than this are written enlarged by a whole factor (nearest
    # neighbour) to at least this many pixels wide; 0 writes them at native size.
    grid_min_width: int = 512


@dataclass
class TrainerConfig:
    """How steps run on the hardware; none of these change what is computed (beyond rounding)."""

    precision: str = "fp32"  # fp32 | bf16 (autocast of the forward passes) | fp16
    compile: bool = False  # torch.compile the networks' forward passes
    # auto (on for CUDA; on a CPU where the model measured faster) | on | off, for convolutions
    channels_last: str = "auto"
    cudnn_benchmark: bool = True


@dataclass
class LossConfig:
    name: str = MISSING  # key in ganrun.models.losses.LOSSES


@dataclass
class OptimConfig:
    name: str = MISSING  # adam | sgd | rmsprop
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    momentum: float = 0.0
    weight_decay: float = 0.0
    eps: float = 1e-8
    # adam: divide by sqrt(v_hat + eps), as Theano-era releases did (improved-gan), instead of
    # torch's sqrt(v_hat) + eps
    eps_in_sqrt: bool = False
    # D's learning rate is lr * d_lr_scale (separate rates as in TTUR; 0.5 is the 2014 code,
    # whose D objective was half the summed cross-entropies).
    d_lr_scale: float = 1.0
    # Per-step schedules of the 2014 GAN code (pylearn2's ExponentialDecay, MomentumAdjustor):
    lr_decay: float = 1.0  # lr is divided by this after every update (1 = constant lr) ...
    min_lr: float = 0.0  # ... but never falls below min_lr
    final_momentum: float = 0.0  # sgd/rmsprop: momentum moves linearly to this value ...
    momentum_ramp_steps: int = 0  # ... over this many steps (0 = constant momentum)
    # A decay over the end of training: lr is constant until update decay_from, then falls to
    # lr * decay_final at update decay_to (and stays there), linearly (CycleGAN's release, to 0)
    # or exponentially (decay_shape=exponential: the BiGAN release, to 0.01); decay_to=0: off.
    decay_from: int = 0
    decay_to: int = 0
    decay_shape: str = "linear"  # linear | exponential
    decay_final: float = 0.0


@dataclass
class DataConfig:
    name: str = MISSING  # key in ganrun.data.DATASETS
    root: str = "${ganrun_data_root:}"
    resolution: int = 32  # images are resized (and folder images centre-cropped) to this
    channels: int = 1  # 1 (grayscale) or 3 (RGB); images are converted; points: the dimension
    download: bool = True  # mnist/cifar10: fetch missing files into data.root (needs internet)
    train_split: str = "train"  # the split training draws from (tfd: unlabeled)
    valid_size: int = 0  # valid split size (mnist, cifar10, digits, folder; ring/grid: + test)
    fold: int = 0  # tfd: which of its 5 folds defines train/valid/test
    num_points: int = 0  # ring/grid: training points
    std: float = 0.0  # ring/grid: standard deviation of every mode
    scale: float = 0.0  # ring: circle radius; grid: distance between neighbouring modes
    # gauss1d: the 1-D mixture's modes: means, standard deviations (one, or one per mode) and
    # weights (empty: equal)
    means: list[float] = field(default_factory=list)
    stds: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    num_workers: int = 2  # folder: DataLoader worker processes decoding images (0 = in-process)
    # Bernoulli pixels (probability = intensity), the binarized MNIST of the VAE literature:
    # none | static (every split drawn once) | dynamic (training batches drawn afresh each time,
    # Burda et al. 2016; other splits drawn once). Draws that are made once are the same every run.
    binarize: str = "none"
    # Semi-supervised training (model=ssgan): keep the labels of this many training images per
    # class, balanced and drawn by label_seed, and use every training image unlabelled; 0: every
    # label is kept.
    labels_per_class: int = 0
    label_seed: int = 0
    # How label_seed orders the training split: torch | numpy (numpy.random.RandomState's
    # permutation, as openai/improved-gan draws its labels: seed K = its --seed_data K)
    label_rng: str = "torch"
    # MNIST (data=mnist, mnist_digits, mnist_color): native (MNIST's own 20x20 box in 28x28) |
    # fitted (each digit's ink box scaled to fill the frame, as scikit-learn's digits are)
    framing: str = "native"


@dataclass
class DeviceConfig:
    type: str = "auto"  # auto | cpu | cuda | mps


CACHE_DIR_ENV = "GANRUN_CACHE_DIR"


def default_cache_dir() -> str:
    """``$GANRUN_CACHE_DIR``, else ``$XDG_CACHE_HOME/ganrun`` (``~/.cache/ganrun``)."""
    if os.environ.get(CACHE_DIR_ENV):
        return os.environ[CACHE_DIR_ENV]
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(cache) / "ganrun")


if not OmegaConf.has_resolver("ganrun_cache_dir"):
    OmegaConf.register_new_resolver("ganrun_cache_dir", default_cache_dir)


@dataclass
class LoggerConfig:
    name: str = "csv"  # csv (metrics.csv only) | tensorboard (also <run>/tensorboard/)


@dataclass
class EvalConfig:
    """An evaluation protocol (``eval=<preset>``); metric names are keys of
    ``ganrun.metrics.METRICS``. Sample counts are per side: generated and real."""

    name: str = "none"
    at_end: bool = False  # ganrun train: score the final checkpoint when training ends
    every: int = 0  # ganrun train: also score the latest weights every N steps (0 = never)
    best_metric: str | None = None  # keeps checkpoints/best.pt by this metric (default: first)
    best_mode: str = "auto"  # auto (the metric's own direction) | min | max
    metrics: list[str] = field(default_factory=list)
    num_samples: int = 2000  # generated samples for the feature-based metrics
    num_real: int = 0  # real samples from reference_split; 0 = the whole split
    reference_split: str = "test"
    # A reference set of one's own in place of reference_split: an .npz (uint8 `samples`,
    # N x H x W x C) or a folder of images, at the data's resolution and channels.
    reference: str | None = None
    batch_size: int = 100
    seed: int = 0  # noise, labels, real subsets, KID subsets and IS splits
    cache_dir: str = "${ganrun_cache_dir:}"  # reference statistics and data-set classifiers
    inception_weights: str | None = None  # pt_inception-2015-12-05-6726825d.pth (FID port)
    inception_weights_sha256: str | None = None  # accept a file that is not the official one
    download: bool = True  # fetch the official Inception weights when missing (needs internet)
    # fused: ganrun's rebuild of torch-fidelity's Inception (BatchNorm folded, channels_last),
    # the same features to ~2e-5 at about twice the speed on a CPU; torch-fidelity: its own module
    inception_impl: str = "fused"
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prc_neighborhood: int = 3
    isc_splits: int = 10
    classifier_epochs: int = 3  # training epochs of the data-set classifier (cnn metrics)
    parzen_samples: int = 10000  # generator samples forming the Parzen mixture
    parzen_sigmas: int = 10  # sigma grid: logspace(-1, 0, parzen_sigmas)
    parzen_chunk: int = 1000  # rows per distance block; bounds memory to chunk x samples doubles
    iw_samples: int = 5000  # VAE importance samples k per test example
    likelihood_examples: int = 0  # VAE: test examples scored; 0 = the whole split
    # knn_acc / linear_acc: training images whose features are the memory (a seeded subset);
    # 0 = the whole training split
    representation_examples: int = 0
    # knn_acc / linear_acc: what is classified: test (the test split) or heldout (the training
    # images left out of that memory, as the BiGAN release queries the 10,000 of MNIST's 60,000
    # it holds out of a 50,000-image memory); heldout needs 0 < representation_examples < the
    # training split's size
    representation_queries: str = "test"
    # knn_acc / linear_acc: the model's layer to classify with, one of its feature layers
    # (output: its code or E(x); penultimate: the hidden layer before it); auto: the model's own
    # choice, the first it offers
    features: str = "auto"
    # The image-to-image metrics (translation_*, cycle_error; psnr, ssim, sr_*): test images
    # scored (of each domain), drawn by eval.seed; 0 = every test image
    test_examples: int = 0
    # psnr / ssim: a folder of high-resolution images (Set5, Set14, BSD100, ...) scored at their
    # own sizes in place of the test split, each cropped to a multiple of model.scale
    sr_images: str | None = None


@dataclass
class EvalCommandConfig:
    """The whole ``ganrun eval`` configuration: what to score (one of checkpoint, run, sweep)
    and how (the ``eval`` preset); models and data come from each checkpoint's saved config."""

    checkpoint: str | None = None  # one checkpoint file
    run: str | None = None  # a run folder: every checkpoints/step_*.pt (and last.pt)
    sweep: str | None = None  # a multirun folder: every run's checkpoints/<pick>.pt
    # Images made elsewhere: an .npz (uint8 `samples`, N x H x W x C) or a folder of images,
    # scored against data=<name>; results go to out= (default: beside them).
    samples: str | None = None
    out: str | None = None
    data: DataConfig | None = None  # samples= only: the data set they are scored against
    pick: str = "last"  # sweep=: score each run's last.pt, or its best.pt (kept by eval.every)
    data_root: str | None = None  # where the data lives now, if not the run's data.root
    device: DeviceConfig = field(default_factory=DeviceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class RunConfig:
    """The whole ``ganrun train`` configuration."""

    seed: int = 0
    resume: str | None = None  # auto | path to a checkpoint
    train: TrainConfig = field(default_factory=TrainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # A model family's schema (ganrun.models), chosen by the model= option's YAML.
    model: Any = MISSING
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    # What the train task returns to Hydra (the Optuna sweeper's objective): a final training
    # value (a metrics.csv column) or, with eval.at_end=true, an evaluated metric (eval.csv name).
    objective: str = "loss_g"


@dataclass
class SampleOptions:
    seed: int = 0  # noise and labels; the same seed draws the same samples
    format: str = "png"  # png (a grid) | npz (raw uint8 NHWC samples, z, labels)
    interpolate: bool = False  # strips of sample.steps images between random latent points
    # Rows of held-out images (test split, else valid, else train), each above its
    # reconstruction, for models that reconstruct (vae, ae, bigan: G(E(x))).
    reconstruct: bool = False
    steps: int = 10  # images per interpolation strip
    batch_size: int = 256  # generator batch size
    # Another of the model's priors to draw from (those its family offers); None: the one its
    # config chose. Models with one prior refuse it.
    prior: str | None = None
    # A PNG grid narrower than this is enlarged by a whole factor (nearest neighbour) to at least
    # this many pixels wide; 0: native size. npz samples are never resized.
    grid_min_width: int = 512
    # With input=: which way a translation model (model=cyclegan) takes the images, ab (domain A
    # to B) or ba.
    direction: str = "ab"


@dataclass
class SampleCommandConfig:
    """The whole ``ganrun sample`` configuration; the model comes from the checkpoint."""

    checkpoint: str | None = None
    n: int = 64  # samples (conditional models: rounded up to whole rows, one class per row)
    # Output file; default <run>/generated/<checkpoint>_n<n>_seed<s>.<fmt> (with sample.prior:
    # <checkpoint>_n<n>_prior-<prior>_seed<s>.<fmt>)
    out: str | None = None
    # A folder of one's own images (or one image file) to translate (model=cyclegan, in
    # sample.direction): each is brought to the model's resolution and channels as data=folder
    # brings images, and its translation is written to the folder out= (default
    # <run>/generated/<checkpoint>_<direction>_<input name>/) as <same relative name>.png.
    input: str | None = None
    data_root: str | None = None  # where the data lives now, if not the run's data.root
    device: DeviceConfig = field(default_factory=DeviceConfig)
    sample: SampleOptions = field(default_factory=SampleOptions)


@dataclass
class ReportCommandConfig:
    """The whole ``ganrun report`` configuration: one of sweep= or run=."""

    sweep: str | None = None  # a multirun folder: every run below it
    run: str | None = None  # one run folder
    sort_by: str | None = None  # a column; default: the runs' objective, else a best_ metric
    descending: bool | None = None  # default: by the metric (IS, precision, ... high first)
    out: str | None = None  # default <sweep or run>/report
    plots: bool = True


def register() -> None:
    """Make the command schemas available to the defaults lists in ``configs/`` (the model
    families register theirs when :mod:`ganrun.models` loads them)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=RunConfig)
    cs.store(name="eval_schema", node=EvalCommandConfig)
    cs.store(name="sample_schema", node=SampleCommandConfig)
    cs.store(name="report_schema", node=ReportCommandConfig)


register()
