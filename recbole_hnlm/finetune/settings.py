"""The fine-tuning chain's settings: a typed view of the run's Config.

As for the LLM side (``recbole_hnlm.llm.settings``), the Config merges ``properties/finetune.yaml`` for the runs
that use it (``hnlm`` lists it), so its settings are in the fingerprint; dict readers get the same defaults.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from functools import cache

import yaml

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.llm.settings import RECBOLE_DEFAULT_SEED
from recbole_hnlm.paths import properties_file

FINETUNE_DEFAULTS_FILE = properties_file("finetune.yaml")
ENCODER_MODES = ("none", "untuned", "finetuned")
POOLINGS = ("last", "mean")


def config_key(field_name: str) -> str:
    """The Config key of a ``FinetuneSettings`` field: ``hnlm_encoder`` (mode), ``seed``, else ``finetune_<name>``.

    ``seed`` is the run's seed unless ``finetune_seed`` names the chain's (``FinetuneSettings.from_config``)."""
    if field_name == "mode":
        return "hnlm_encoder"
    return field_name if field_name == "seed" else f"finetune_{field_name}"


@cache
def finetune_defaults() -> dict:
    """The defaults in ``properties/finetune.yaml``."""
    with open(FINETUNE_DEFAULTS_FILE, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def recipe_hash(recipe: dict) -> str:
    """A short hash of a JSON-able recipe, naming the folder of what it makes."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class FinetuneSettings:
    """Every knob of the chain, each read from the Config key that ``config_key`` names."""

    mode: str
    encoder: str
    pooling: str | None
    max_length: int
    device: str
    torch_threads: int | None
    cf_model: str
    cf_sampler: str
    cf_epochs: int
    cf_checkpoint: str | None
    max_pairs: int
    mining_pool: int
    hard_top_k: int
    score_quantile: float | None
    cf_similarity: float | None
    semantic_similarity: float | None
    lora_rank: int
    lora_alpha: int
    lora_dropout: float
    steps: int
    batch_size: int
    learning_rate: float
    temperature: float
    checkpoint_every: int
    encode_batch_size: int
    encode_pairs: int
    encode_chunk: int
    seed: int

    @classmethod
    def from_config(cls, config) -> FinetuneSettings:
        """Read the settings from a RecBole Config (or a dict of Config keys), falling back to ``finetune.yaml``."""
        given = getattr(config, "final_config_dict", config)
        # A key set to ~ (None) keeps its None: ~ is how a filter is disabled or torch's thread default kept.
        values = {field.name: given[config_key(field.name)] for field in fields(cls) if config_key(field.name) in given}
        if given.get("finetune_seed") is not None:  # the chain's seed: CF runs of several seeds share one chain
            values["seed"] = given["finetune_seed"]
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict) -> FinetuneSettings:
        """Build and check settings from field names; missing fields take ``properties/finetune.yaml``'s defaults."""
        defaults = {**finetune_defaults(), "seed": RECBOLE_DEFAULT_SEED}
        settings = cls(
            **{field.name: values.get(field.name, defaults.get(config_key(field.name))) for field in fields(cls)}
        )
        settings.check()
        return settings

    def replace(self, **changes) -> FinetuneSettings:
        """A checked copy with ``changes`` (field names)."""
        return FinetuneSettings.from_dict({**asdict(self), **changes})

    def check(self) -> None:
        """Refuse values that cannot work, naming the key and the fix."""
        if self.mode not in ENCODER_MODES:
            raise ConfigurationError(
                f"hnlm_encoder={self.mode!r} is invalid. Valid: {', '.join(ENCODER_MODES)} (properties/finetune.yaml)."
            )
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise ConfigurationError(
                f"finetune_pooling={self.pooling!r} is invalid. Valid: {', '.join(POOLINGS)}, or ~ for the model's own."
            )
        at_least_one = {
            "max_length": self.max_length,
            "cf_epochs": self.cf_epochs,
            "max_pairs": self.max_pairs,
            "mining_pool": self.mining_pool,
            "hard_top_k": self.hard_top_k,
            "lora_rank": self.lora_rank,
            "lora_alpha": self.lora_alpha,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "checkpoint_every": self.checkpoint_every,
            "encode_batch_size": self.encode_batch_size,
            "encode_chunk": self.encode_chunk,
        }
        for name, number in at_least_one.items():
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ConfigurationError(f"{config_key(name)}={number!r} is invalid: it must be an integer >= 1.")
        if isinstance(self.encode_pairs, bool) or not isinstance(self.encode_pairs, int) or self.encode_pairs < 0:
            raise ConfigurationError(
                f"finetune_encode_pairs={self.encode_pairs!r} is invalid: an integer >= 0 (0 encodes every pair)."
            )
        for name in ("score_quantile", "cf_similarity", "semantic_similarity"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ConfigurationError(f"{config_key(name)}={value!r} is invalid: a number, or ~ to disable it.")
        if self.score_quantile is not None and not 0 <= self.score_quantile <= 1:
            raise ConfigurationError(
                f"finetune_score_quantile={self.score_quantile!r} is invalid: a number in [0, 1], or ~ to disable it."
            )
        for name in ("learning_rate", "temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(f"{config_key(name)}={value!r} is invalid: it must be a number > 0.")
        if not isinstance(self.lora_dropout, int | float) or not 0 <= self.lora_dropout < 1:
            raise ConfigurationError(f"finetune_lora_dropout={self.lora_dropout!r} is invalid: a number in [0, 1).")
        if self.torch_threads is not None and (not isinstance(self.torch_threads, int) or self.torch_threads < 1):
            raise ConfigurationError(f"finetune_torch_threads={self.torch_threads!r} must be an integer >= 1 or ~.")

    def mining_recipe(self) -> dict:
        """The settings the mined dataset depends on (beside the profiles and the CF model)."""
        keys = (
            "max_pairs",
            "mining_pool",
            "hard_top_k",
            "score_quantile",
            "cf_similarity",
            "semantic_similarity",
            "seed",
        )
        return {key: getattr(self, key) for key in keys}

    def cf_recipe(self) -> dict:
        """The settings the mining CF model depends on."""
        if self.cf_checkpoint:
            return {"checkpoint": self.cf_checkpoint}
        return {"model": self.cf_model, "sampler": self.cf_sampler, "epochs": self.cf_epochs, "seed": self.seed}

    def training_recipe(self) -> dict:
        """The settings an adapter depends on, except ``steps``: a longer run resumes a shorter one's checkpoints."""
        keys = (
            "pooling",
            "max_length",
            "lora_rank",
            "lora_alpha",
            "lora_dropout",
            "batch_size",
            "learning_rate",
            "temperature",
            "seed",
        )
        return {key: getattr(self, key) for key in keys}


def encoder_mode(config) -> str:
    """``hnlm_encoder`` of a Config (``none`` when unset), checked."""
    given = getattr(config, "final_config_dict", config)
    mode = given.get("hnlm_encoder") or finetune_defaults().get("hnlm_encoder", "none")
    if mode not in ENCODER_MODES:
        raise ConfigurationError(
            f"hnlm_encoder={mode!r} is invalid. Valid: {', '.join(ENCODER_MODES)} (properties/finetune.yaml)."
        )
    return mode
