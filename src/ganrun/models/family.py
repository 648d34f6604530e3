"""What a model family is: everything ganrun knows about one kind of model, in one place.

A :class:`Family` is the registry entry behind ``model=<name>``: its config schema and checks,
and a builder of :class:`Model` objects. A :class:`Model` holds one run's networks and everything
done with them: optimizers and the training step, the named state a checkpoint keeps, how samples
are drawn and shown, and what scoring may ask of it (:attr:`Model.provides`). The trainer, the
checkpoint format, evaluation and the commands work through these two classes and never name a
model.

Writing a family: subclass both, declare the schema as a dataclass deriving from
:class:`ModelConfig`, and register an instance (see :mod:`ganrun.models`). The GANs
(:mod:`ganrun.models.families.gan`) and the VAE (:mod:`ganrun.models.families.vae`) are complete
examples; :class:`~ganrun.models.latent.LatentModel` supplies sampling for any family whose
samples come from a network applied to latent codes.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from omegaconf import MISSING, DictConfig
from torch import nn

from ganrun.errors import GanrunError
from ganrun.models.ema import EMA
from ganrun.models.optim import build_optimizer

if TYPE_CHECKING:
    from ganrun.data import Data
    from ganrun.data.base import DataInfo
    from ganrun.images import Figure


@dataclass
class ModelConfig:
    """The fields every family's schema starts with."""

    name: str = MISSING  # the model= option (one of a family's `models`)
    # Exponential moving average of the weights that samples come from (Yazici et al. 2019),
    # used for sample grids, `ganrun sample` and `ganrun eval`; 0 = off.
    ema_decay: float = 0.0


@dataclass(frozen=True)
class Statistic:
    """A value a family's training step returns every step (a column of metrics.csv)."""

    name: str
    meaning: str
    panel: str = "losses"  # the `ganrun report` figure that plots it: losses | d_outputs
    higher: bool = False  # a larger value is better (a log-likelihood): the report ranks so


@dataclass
class Drawn:
    """What ``ganrun sample`` writes: images in the data's value range, the arrays an npz file
    keeps beside them (latent codes, labels), and images per row of the PNG grid."""

    images: torch.Tensor
    arrays: dict[str, torch.Tensor]
    per_row: int
    description: str


def output_range(output: str) -> tuple[float, float]:
    """The value range of an output layer (``model.output``): what the data is scaled to."""
    return (0.0, 1.0) if output == "sigmoid" else (-1.0, 1.0)


class Model(ABC):
    """One run's networks and what is done with them; built by :meth:`Family.build`.

    ``networks`` are the named modules a checkpoint holds (their names are its keys), built on
    the CPU from the model config and the data description. Training adds ``optimizers`` (by name)
    and ``averages`` (EMA copies, by the name of the network they follow) in
    :meth:`configure_training`; scoring and sampling never do.
    """

    #: Networks that ``model.ema_decay`` keeps an average of.
    averaged: ClassVar[tuple[str, ...]] = ()
    #: How many different samples the model can give (images made elsewhere: as many as there
    #: are); None: any number.
    sample_limit: int | None = None
    #: What metrics may ask of this model (``ganrun.metrics`` names its needs the same way):
    #: "samples" (:meth:`generate`), "elbo" and "iw_ll" (likelihood bounds), "log_likelihood"
    #: (``log_likelihood(x)``: exact, nats per example), "reconstruct" (``reconstruct(x)``:
    #: decode(encode(x)) in the data's range), "discriminator" (``discriminate(x)``: D(x) as a
    #: probability), "features" (``features(x, layer)``: (N, F) features a classifier could use,
    #: from one of :attr:`feature_layers`), "classifier" (``classify(x)``: logits of the data's
    #: classes), "translate" (``translate(x, direction)``: images of one domain of two-domain
    #: data in the other, direction "ab" or "ba"; ``round_trips(a, b, batch_size)``: the
    #: :class:`Drawn` of images of both domains, translated and back), "upscale"
    #: (``upscale(lr)``: low-resolution images ``scale`` times larger; ``low_resolution(hr)``,
    #: ``comparisons(hr, batch_size)``: the :class:`Drawn` of inputs, baseline, output, original).
    provides: ClassVar[frozenset[str]] = frozenset()
    #: "features": the layers ``features`` offers (``eval.features``), each with what it is; the
    #: first is the default. "output": the model's own representation (a code, E(x));
    #: "penultimate": the hidden layer before it (a GAN's D has only this one).
    feature_layers: ClassVar[dict[str, str]] = {}
    #: ``trainer.channels_last=auto`` on a CPU: whether these networks train faster in
    #: channels_last (measured per model: docs/PERFORMANCE.md); CUDA uses it for every
    #: convolutional network.
    channels_last_on_cpu: bool = False

    def __init__(self, cfg: DictConfig, info: DataInfo, networks: dict[str, nn.Module]) -> None:
        self.cfg = cfg  # the model config (its family's schema)
        self.info = info
        self.networks = networks
        self.averages: dict[str, EMA] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.lr_scales: dict[str, float] = {}  # each optimizer's share of optim.lr
        # Averages gradients across torchrun processes in steps DDP's hooks cannot follow; set
        # by the DDP setup, a no-op in one process.
        self.sync_gradients: Callable[..., None] = lambda *modules: None

    # ------------------------------------------------------------------------------- training
    @property
    def device(self) -> torch.device:
        for net in self.networks.values():
            for p in net.parameters():
                return p.device
        return torch.device("cpu")

    def to(self, device: torch.device) -> Model:
        for net in self.networks.values():
            net.to(device)
        for average in self.averages.values():
            average.model.to(device)
        return self

    def keep_averages(self, decay: float) -> None:
        """Start the EMA copies (``model.ema_decay``) from the current weights."""
        if decay > 0:
            self.averages = {name: EMA(self.networks[name], decay) for name in self.averaged}

    def keep_averages_from(self, states: dict[str, dict[str, torch.Tensor]]) -> None:
        """EMA copies holding saved averages, for using a checkpoint (not training it on)."""
        for name, state in states.items():
            average = EMA(self.networks[name], decay=0.0)
            average.load_state_dict(state)
            self.averages[name] = average

    def update_averages(self) -> None:
        """Move each EMA copy towards its network; every training step ends with it."""
        for name, average in self.averages.items():
            average.update(self.networks[name])

    def add_optimizer(
        self,
        name: str,
        params: Any,
        optim: DictConfig,
        fused: bool,
        lr_scale: float = 1.0,
    ) -> torch.optim.Optimizer:
        """An ``optim=`` optimizer over ``params`` at ``optim.lr * lr_scale``, kept by ``name``
        (the key its state has in checkpoints). Steps look it up there each time: holding it
        elsewhere would keep its state alive after :meth:`release_training_state`."""
        opt = build_optimizer(optim, params, fused=fused, lr_scale=lr_scale)
        self.optimizers[name] = opt
        self.lr_scales[name] = lr_scale
        return opt

    def configure_training(self, cfg: DictConfig, fused: bool) -> None:
        """Get ready to train under the whole run config ``cfg``: families extend this to build
        their optimizers (:meth:`add_optimizer`; ``fused`` says whether Adam may run fused on
        this device), loss and step settings."""
        self.run_cfg = cfg

    def init_source(self) -> str | None:
        """The checkpoint whose networks training starts from (handed to :meth:`start_from`),
        where the family's config names one (super-resolution: ``model.init_from``); None
        for a fresh start."""
        return None

    def start_from(self, networks: dict[str, dict[str, torch.Tensor]], source: str) -> None:
        """Take the weights of another run's ``networks`` (the checkpoint :meth:`init_source`
        names, by network name) before training starts."""
        raise GanrunError(f"model={self.cfg.name} cannot start from another run's weights")

    def use_data(self, data: Data) -> None:  # noqa: B027 (most models need only their batches)
        """Before training starts, with every split: a model that trains on more than the
        training split's batches (a semi-supervised model's labelled examples, a data-dependent
        initialisation) takes what it needs here."""

    @abstractmethod
    def training_step(self, batches: Any, noise: torch.Generator) -> dict[str, torch.Tensor]:
        """One training step (of every player). ``batches.batch(n)`` draws (images, labels)
        from the training split; latent codes come from ``noise``, other randomness (dropout,
        penalties) from torch's global state; checkpoints keep both. Returns the family's
        statistics as 0-d tensors on the device: they are read in windows, so the step never
        waits for the device."""

    @property
    def uses_ddp(self) -> bool:
        """Whether DistributedDataParallel can follow this model's steps (its hooks see one
        forward and one backward per network). Otherwise the step calls
        :attr:`sync_gradients` itself."""
        return False

    @property
    def converged(self) -> bool:
        """Whether training has nothing left to gain (EM's log-likelihood stopped rising): the
        run then ends before ``train.steps``, with its checkpoint, as at the last step."""
        return False

    def extra_state(self) -> dict[str, Any]:
        """State beyond networks, averages and optimizers that a checkpoint must keep (tensors,
        numbers, strings and containers only)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state:
            raise GanrunError(f"this model keeps no extra state, but the checkpoint has {state}")

    def reseeded_streams(self) -> list[str]:
        """Random streams of the family's own that :meth:`load_extra_state` had to seed afresh,
        their state being of another device kind; the trainer reports them with its own."""
        return []

    def release_training_state(self) -> None:
        """Drop what only training needs (optimizer states, gradients), before scoring at the
        end."""
        self.optimizers.clear()
        for net in self.networks.values():
            net.zero_grad(set_to_none=True)

    # ----------------------------------------------------------------------------- using it
    def network(self, name: str) -> nn.Module:
        """The weights samples and scores use: the EMA copy where one is kept, else the
        network itself. The one place that decides."""
        average = self.averages.get(name)
        return average.model if average is not None else self.networks[name]

    @property
    def weights(self) -> str:
        """What evaluation records and ``ganrun sample`` report as the weights used."""
        return "ema" if self.averages else "generator"

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Every network in eval mode (BatchNorm's running statistics, no dropout), and back to
        the modes they were in."""
        modes = {name: net.training for name, net in self.networks.items()}
        try:
            for net in self.networks.values():
                net.eval()
            yield
        finally:
            for name, net in self.networks.items():
                net.train(modes[name])

    def generate(self, n: int, seed: int, batch_size: int) -> torch.Tensor:
        """``n`` samples in the data's value range, on the CPU, the same for the same seed
        (metrics score these)."""
        raise GanrunError(f"model={self.cfg.name} does not draw samples")

    def sample(self, n: int, seed: int, batch_size: int) -> Drawn:
        """``ganrun sample``'s grid of ``n``."""
        raise GanrunError(f"model={self.cfg.name} does not draw samples")

    def interpolate(self, n: int, steps: int, seed: int, batch_size: int) -> Drawn:
        """``ganrun sample sample.interpolate=true``: strips of ``steps`` samples."""
        raise GanrunError(
            f"model={self.cfg.name} has no latent space to walk; drop sample.interpolate=true"
        )

    def use_prior(self, name: str) -> None:
        """Draw samples (:meth:`generate`, :meth:`sample`, :meth:`interpolate`) from the prior
        ``name`` from now on, rather than the one the model config chose: ``ganrun sample
        sample.prior=<name>``. Families whose models have several priors override this and
        refuse names they do not have; by default there is one prior and nothing to choose."""
        raise GanrunError(f"model={self.cfg.name} draws from one prior only; drop sample.prior")

    def figures(self, step: int, data: Data) -> list[Figure]:
        """What the run's samples/ folder shows at ``step``; the first is the main grid."""
        return []


class Family(ABC):
    """The registry entry for one kind of model (see the module docs)."""

    #: Registry key; checkpoints record it.
    name: ClassVar[str]
    #: The model= options it serves (``model.name`` values), each with a YAML in configs/model/.
    models: ClassVar[tuple[str, ...]]
    #: Dataclass deriving from ModelConfig: the `model` group's fields, types and defaults.
    schema: ClassVar[type]
    #: What the training step returns, in order: the columns of metrics.csv.
    statistics: ClassVar[tuple[Statistic, ...]]
    #: Model settings that change how long training goes or how samples are drawn, not what
    #: the weights mean (``max_iter`` of an EM fit): a run may continue under other values.
    adjustable: ClassVar[tuple[str, ...]] = ()
    #: Whether ``train.simultaneous=true`` (the 2014 code's joint update) applies.
    simultaneous: ClassVar[bool] = False
    #: Whether it trains on a labelled subset beside unlabelled data (``data.labels_per_class``).
    semi_supervised: ClassVar[bool] = False

    def check(self, cfg: DictConfig) -> None:  # noqa: B027 (a family may have nothing to check)
        """Refuse settings of the whole run config that cannot work, with one-line errors,
        before any data is loaded or file written."""

    def check_data(self, cfg: DictConfig, data: Data) -> None:  # noqa: B027
        """Refuse a loaded data set the run cannot train on (labels, splits)."""

    def data_kinds(self, model: str) -> tuple[str, ...]:
        """The kinds of data (``DataInfo.kind``) ``model=<model>`` trains on."""
        return ("image",)

    def value_range(self, cfg: DictConfig) -> tuple[float, float]:
        """The range the model's samples live in; the data is scaled to it. By default that of
        its ``model.output`` layer (tanh where it has none)."""
        return output_range(cfg.get("output", "tanh"))

    def arch(self, cfg: DictConfig) -> str | None:
        """The networks, where the model offers a choice (``model.arch``), for logs and records."""
        return None

    @abstractmethod
    def build(self, cfg: DictConfig, info: DataInfo) -> Model:
        """The networks of model config ``cfg`` for data described by ``info``, initialised
        from torch's global random state; a GanrunError where they cannot be built."""
