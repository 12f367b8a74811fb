"""The plugin's model zoo and the model lookup: the plugin's own models first, then RecBole's.

The zoo holds ``HNLMRec`` (``hnlmrec.py``) and ``RLMRec`` (``rlmrec.py``), which wrap a backbone looked up with
``get_model``, and ``AlphaRec`` (``alpharec.py``).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

import recbole.model.general_recommender as recbole_general
from recbole.data.dataloader import TrainDataLoader
from recbole.data.utils import get_dataloader
from recbole.utils import InputType, ModelType
from recbole.utils import get_model as recbole_get_model

from recbole_hnlm.errors import UnknownNameError, UnsupportedModelError

MODEL_ZOO: dict[str, type] = {}


def register_model(model_class: type) -> type:
    """Add a model class to the plugin's zoo under its class name; usable as a decorator."""
    MODEL_ZOO[model_class.__name__] = model_class
    return model_class


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


# Below get_model, which HNLMRec and RLMRec import to look up their backbone.
from recbole_hnlm.model.alpharec import AlphaRec  # noqa: E402
from recbole_hnlm.model.hnlmrec import HNLMRec  # noqa: E402
from recbole_hnlm.model.rlmrec import RLMRec  # noqa: E402

for _model in (HNLMRec, RLMRec, AlphaRec):
    register_model(_model)
