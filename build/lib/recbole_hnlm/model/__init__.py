"""The plugin's model zoo and the model lookup: the plugin's own models first, then RecBole's.

``register_model`` adds a class to the zoo and to RecBole's own ``recbole.utils.get_model``, so that RecBole code
finds it by name too. ``HNLMRec`` (``recbole_hnlm/hnlm``) registers itself through it.

A model that wraps another (``HNLMRec``, ``RLMRec``) sets ``wraps_backbone = True``: the Config then reads
``backbone`` (default in its YAML) and gives the run the backbone's own defaults under the wrapper's. A model that
trains only on one sampler's batches names it in ``required_sampler``. A model's defaults are the YAML files its
``defaults_files()`` lists, or else ``properties/model/<name>.yaml`` when the plugin ships one.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import pkgutil
import sys
import types
from functools import cache
from pathlib import Path

import recbole.model.general_recommender as recbole_general
from recbole.data.dataloader import TrainDataLoader
from recbole.data.utils import get_dataloader
from recbole.utils import InputType, ModelType
from recbole.utils import get_model as recbole_get_model

from recbole_hnlm.errors import UnknownNameError, UnsupportedModelError
from recbole_hnlm.paths import properties_file

MODEL_ZOO: dict[str, type] = {}


def register_model(model_class: type) -> type:
    """Add a model class to the plugin's zoo and to RecBole's lookup, under its class name; usable as a decorator."""
    MODEL_ZOO[model_class.__name__] = model_class
    _expose_to_recbole(model_class)
    return model_class


def _expose_to_recbole(model_class: type) -> None:
    """Make ``recbole.utils.get_model(<name>)`` return ``model_class``.

    RecBole looks a model up as the module ``recbole.model.general_recommender.<name lower-cased>`` and the class of
    that name in it; a module object under that name in ``sys.modules`` is what it finds. A name RecBole already
    has is left to RecBole.
    """
    module_name = f"{recbole_general.__name__}.{model_class.__name__.lower()}"
    existing = sys.modules.get(module_name)
    if existing is None and importlib.util.find_spec(module_name) is not None:
        return
    if existing is not None and not getattr(existing, "__recbole_hnlm__", False):
        return
    module = types.ModuleType(module_name, f"{model_class.__name__}, registered by recbole-hnlm.")
    module.__spec__ = importlib.machinery.ModuleSpec(module_name, loader=None)
    module.__recbole_hnlm__ = True
    setattr(module, model_class.__name__, model_class)
    sys.modules[module_name] = module
    setattr(recbole_general, model_class.__name__.lower(), module)


def model_defaults_files(model_class: type) -> list[Path]:
    """The plugin's YAML defaults of ``model_class``, lowest first."""
    hook = getattr(model_class, "defaults_files", None)
    if hook is not None:
        return list(hook())
    own = properties_file("model", f"{model_class.__name__}.yaml")
    return [own] if own.is_file() else []


def wraps_backbone(model_class: type) -> bool:
    """True for models that wrap a backbone model named by ``backbone``."""
    return bool(getattr(model_class, "wraps_backbone", False))


def takes_sampled_negatives(model_class: type) -> bool:
    """True for general models trained on (user, positive, sampled negative) triples through NEG_ITEM_ID."""
    if getattr(model_class, "type", None) != ModelType.GENERAL:
        return False
    if getattr(model_class, "input_type", None) != InputType.PAIRWISE:
        return False
    # Some pairwise models (the VAEs) train on whole user rows; RecBole gives them another dataloader.
    probe = {"model": model_class.__name__, "MODEL_TYPE": ModelType.GENERAL}
    return get_dataloader(probe, "train") is TrainDataLoader


@cache
def _recbole_general_models() -> dict[str, type]:
    models = {}
    for module_info in pkgutil.iter_modules(recbole_general.__path__):
        module = importlib.import_module(f"{recbole_general.__name__}.{module_info.name}")
        for name, value in vars(module).items():
            if isinstance(value, type) and name.lower() == module_info.name:
                models[name] = value
    return models


def supported_models() -> list[str]:
    """Names of every model that trains with the plugin's negative samplers."""
    candidates = {**_recbole_general_models(), **MODEL_ZOO}
    return sorted(name for name, cls in candidates.items() if takes_sampled_negatives(cls))


def get_model(name: str) -> type:
    """The model class called ``name``: the plugin's zoo first, then RecBole's models."""
    if name in MODEL_ZOO:
        return MODEL_ZOO[name]
    try:
        return recbole_get_model(name)
    except (ValueError, AttributeError, ImportError):  # RecBole imports optional libraries while looking
        raise UnknownNameError(
            "model", name, supported_models(), "(Names are case-sensitive, as in RecBole.)"
        ) from None


def check_model_supported(model_class: type) -> None:
    """Raise UnsupportedModelError unless ``model_class`` takes sampled negatives."""
    if not takes_sampled_negatives(model_class):
        raise UnsupportedModelError(
            f"Model '{model_class.__name__}' cannot be trained with a negative sampler: it is not a pairwise "
            f"general model fed sampled negatives (input_type={getattr(model_class, 'input_type', None)}, "
            f"type={getattr(model_class, 'type', None)}). Models that can: {', '.join(supported_models())}."
        )
