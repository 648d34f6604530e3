"""Model families: ``model=<name>`` picks the :class:`~ganrun.models.family.Family` that serves it.

The registry fills itself on first use: every module in :mod:`ganrun.models.families` that
defines ``FAMILY``, then every entry point in the ``ganrun.families`` group (families shipped by
other packages), and any family passed to :func:`register` (a module of one's own, or a test).
Registering also stores the family's schema in Hydra's ConfigStore as ``model_schema_<family>``,
which the model options' YAML files name in their defaults lists
(``- /model_schema_gan@model``).
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError
from ganrun.models.family import Family, Model

ENTRY_POINTS = "ganrun.families"  # group of entry points that name families of other packages
SCHEMA_PREFIX = "model_schema_"  # family schemas in Hydra's ConfigStore: model_schema_<family>

_FAMILIES: dict[str, Family] = {}  # family name -> family
_MODELS: dict[str, Family] = {}  # model= option -> family
_loaded = False


def register(family: Family) -> Family:
    """Add ``family`` (an instance) to the registry and its schema to Hydra's ConfigStore."""
    for model in family.models:
        owner = _MODELS.get(model)
        if owner is not None and owner is not family and owner.name != family.name:
            raise GanrunError(
                f"model={model} is served by family {owner.name!r} already; family "
                f"{family.name!r} cannot take it too"
            )
    old = _FAMILIES.get(family.name)
    if old is not None:  # registered again (a module reloaded): the newer one replaces it
        for model in old.models:
            _MODELS.pop(model, None)
    _FAMILIES[family.name] = family
    for model in family.models:
        _MODELS[model] = family
    # A config of its own, not a group: `--help` lists groups as choices, and this is none.
    ConfigStore.instance().store(name=f"{SCHEMA_PREFIX}{family.name}", node=family.schema)
    return family


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module(f"{__name__}.families")
    for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        family = getattr(importlib.import_module(info.name), "FAMILY", None)
        if family is not None:
            register(family)
    for entry in entry_points(group=ENTRY_POINTS):
        try:
            loaded = entry.load()
        except Exception as exc:  # a broken plugin must not take the built-in models down
            raise GanrunError(
                f"the model family {entry.name!r} of entry point {entry.value!r} failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        register(loaded() if isinstance(loaded, type) else loaded)


def all_families() -> list[Family]:
    """Every registered family."""
    _load()
    return list(_FAMILIES.values())


def model_names() -> list[str]:
    """Every model= option of every family."""
    _load()
    return list(_MODELS)


def family_of(name: str) -> Family:
    """The family that serves ``model=<name>``."""
    _load()
    if name not in _MODELS:
        raise GanrunError(f"unknown model {name!r}; choose model= one of: {', '.join(_MODELS)}")
    return _MODELS[name]


def family_named(name: str) -> Family:
    """The family registered as ``name`` (what checkpoints record)."""
    _load()
    if name not in _FAMILIES:
        raise GanrunError(
            f"no model family {name!r} is installed (have: {', '.join(_FAMILIES)}); install the "
            "package that provides it"
        )
    return _FAMILIES[name]


def build_model(cfg: DictConfig, info: DataInfo) -> Model:
    """The networks of model config ``cfg`` for the data ``info`` describes, on the CPU."""
    family = family_of(cfg.name)
    kinds = family.data_kinds(cfg.name)
    if info.kind not in kinds:
        serving = [m for f in all_families() for m in f.models if info.kind in f.data_kinds(m)]
        shape = f"{info.channels}-D points" if info.kind == "points" else f"{info.kind} data"
        hint = f"; use model={' or model='.join(serving)}" if serving else ""
        raise GanrunError(
            f"model={cfg.name} needs {' or '.join(kinds)} data, but data={info.name} is "
            f"{shape}{hint}"
        )
    return family.build(cfg, info)


__all__ = [
    "Family",
    "Model",
    "build_model",
    "all_families",
    "family_named",
    "family_of",
    "model_names",
    "register",
]
