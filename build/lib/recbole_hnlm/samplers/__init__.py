"""Negative samplers, one module each, selected by name with ``--neg_sampler``.

To add your own, subclass ``NegativeSampler`` and call ``register_sampler(MySampler)``; its ``name`` is then a
valid ``--neg_sampler`` value. Defaults for a sampler's knobs live in the YAML files its ``defaults_files`` lists
(``properties/sampler/<name>.yaml`` for the plugin's own). HNLMRec's ``hnlm`` registers itself the same way, from
``recbole_hnlm/hnlm``.
"""

from __future__ import annotations

from recbole_hnlm.errors import ConfigurationError, UnknownNameError
from recbole_hnlm.samplers.ahns import AdaptiveHardnessSampler
from recbole_hnlm.samplers.base import ModelScoredSampler, NegativeSampler, TrainingPositives
from recbole_hnlm.samplers.dins import DimensionIndependentMixupSampler
from recbole_hnlm.samplers.dns import DynamicNegativeSampler
from recbole_hnlm.samplers.dns_mn import TopNDynamicNegativeSampler
from recbole_hnlm.samplers.mixgcf import MixGCFSampler
from recbole_hnlm.samplers.mixing import MixingSampler
from recbole_hnlm.samplers.popularity import PopularitySampler
from recbole_hnlm.samplers.uniform import UniformSampler

SAMPLER_REGISTRY: dict[str, type[NegativeSampler]] = {}


def register_sampler(sampler_class: type[NegativeSampler], replace: bool = False) -> type[NegativeSampler]:
    """Make ``sampler_class`` selectable as ``--neg_sampler=<sampler_class.name>``; usable as a decorator."""
    if not (isinstance(sampler_class, type) and issubclass(sampler_class, NegativeSampler)):
        raise ConfigurationError(f"{sampler_class!r} is not a NegativeSampler subclass, so it cannot be registered.")
    name = getattr(sampler_class, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{sampler_class.__name__} needs a class attribute `name`, the --neg_sampler value.")
    if name in SAMPLER_REGISTRY and SAMPLER_REGISTRY[name] is not sampler_class and not replace:
        raise ConfigurationError(
            f"A sampler named '{name}' is already registered ({SAMPLER_REGISTRY[name].__name__}). "
            "Fix: choose another name, or pass replace=True."
        )
    SAMPLER_REGISTRY[name] = sampler_class
    return sampler_class


def get_sampler_class(name: str) -> type[NegativeSampler]:
    """The sampler class registered under ``name``."""
    try:
        return SAMPLER_REGISTRY[name]
    except KeyError:
        raise UnknownNameError(
            "sampler", str(name), list(SAMPLER_REGISTRY), "Register your own with register_sampler()."
        ) from None


for _sampler in (
    UniformSampler,
    PopularitySampler,
    DynamicNegativeSampler,
    TopNDynamicNegativeSampler,
    AdaptiveHardnessSampler,
    MixGCFSampler,
    DimensionIndependentMixupSampler,
):
    register_sampler(_sampler)

__all__ = [
    "SAMPLER_REGISTRY",
    "AdaptiveHardnessSampler",
    "DimensionIndependentMixupSampler",
    "DynamicNegativeSampler",
    "MixGCFSampler",
    "MixingSampler",
    "ModelScoredSampler",
    "NegativeSampler",
    "PopularitySampler",
    "TopNDynamicNegativeSampler",
    "TrainingPositives",
    "UniformSampler",
    "get_sampler_class",
    "register_sampler",
]
