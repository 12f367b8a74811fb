"""The LLM side's settings: a typed view of the run's Config.

The Config merges ``properties/llm.yaml`` for every run that uses the LLM side (the sampler or model lists it in
its ``defaults_files``), so those settings are in the run's fingerprint and results file. Code that reads settings
from a plain dict (tests, the cache's own tools) gets the same file's defaults for keys it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

import yaml

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.paths import PROMPTS_DIR, properties_file

LLM_DEFAULTS_FILE = properties_file("llm.yaml")
DEFAULT_PROMPT_DIR = PROMPTS_DIR
BACKEND_FORMS = "template, smollm2, hf:<model folder or .gguf file>, openai:<base_url>"
NEGATIVE_UNITS = ("user", "pair")
USER_PROFILE_SCOPES = ("all", "budget")
RECBOLE_DEFAULT_SEED = 2020


def config_key(field_name: str) -> str:
    """The Config key of an ``LLMSettings`` field: ``llm`` (backend), ``seed`` (seed), else ``llm_<name>``."""
    if field_name == "backend":
        return "llm"
    return field_name if field_name == "seed" else f"llm_{field_name}"


@cache
def llm_defaults() -> dict:
    """The defaults in ``properties/llm.yaml``."""
    with open(LLM_DEFAULTS_FILE, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


@dataclass(frozen=True)
class LLMSettings:
    """Every knob of the LLM side, each read from the Config key that ``config_key`` names."""

    backend: str
    model: str | None
    embedding_model: str
    device: str
    torch_threads: int | None
    batch_size: int
    embedding_batch_size: int
    max_new_tokens: int
    max_attempts: int
    retry_temperature: float
    repetition_penalty: float
    request_timeout: float
    request_retries: int
    retry_backoff: float
    api_key_env: str
    prompt_dir: str | None
    history_len: int
    user_profile_scope: str
    description_chars: int
    item_fields: dict
    user_ignore_fields: list
    negative_unit: str
    negative_budget: int
    negative_k: int
    cache_dir: str
    shard_size: int
    vector_chunk: int
    seed: int

    @classmethod
    def from_config(cls, config) -> LLMSettings:
        """Read the settings from a RecBole Config (or a dict of Config keys), falling back to ``llm.yaml``."""
        given = getattr(config, "final_config_dict", config)
        values = {field.name: given[config_key(field.name)] for field in fields(cls) if config_key(field.name) in given}
        if given.get("split_seed") is not None:
            # The LLM cache belongs to a training split: with the split fixed, so are its retries and budget order,
            # and runs over several training seeds share one cache.
            values["seed"] = given["split_seed"]
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict) -> LLMSettings:
        """Build and check settings from field names; missing fields take ``properties/llm.yaml``'s defaults."""
        defaults = {**llm_defaults(), "seed": RECBOLE_DEFAULT_SEED}
        settings = cls(
            **{field.name: values.get(field.name, defaults.get(config_key(field.name))) for field in fields(cls)}
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse values that cannot work, naming the key and the fix."""
        kind = backend_kind(self.backend)
        if kind in ("hf", "openai") and not self.backend.split(":", 1)[1]:
            raise ConfigurationError(
                f"llm={self.backend} names no {kind} target. Fix: e.g. --llm={kind}:<path or url>."
            )
        positive = {
            "llm_batch_size": self.batch_size,
            "llm_embedding_batch_size": self.embedding_batch_size,
            "llm_max_new_tokens": self.max_new_tokens,
            "llm_max_attempts": self.max_attempts,
            "llm_request_retries": self.request_retries,
            "llm_negative_k": self.negative_k,
            "llm_shard_size": self.shard_size,
            "llm_vector_chunk": self.vector_chunk,
            "llm_history_len": self.history_len,
        }
        for key, number in positive.items():
            if not isinstance(number, int) or number < 1:
                raise ConfigurationError(f"{key}={number!r} is invalid: it must be an integer >= 1.")
        if not isinstance(self.negative_budget, int) or self.negative_budget < 0:
            raise ConfigurationError(f"llm_negative_budget={self.negative_budget!r} must be an integer >= 0.")
        if self.negative_unit not in NEGATIVE_UNITS:
            raise ConfigurationError(
                f"llm_negative_unit={self.negative_unit!r} is invalid. Valid units: {', '.join(NEGATIVE_UNITS)}."
            )
        if self.user_profile_scope not in USER_PROFILE_SCOPES:
            raise ConfigurationError(
                f"llm_user_profile_scope={self.user_profile_scope!r} is invalid. Valid scopes: "
                f"{', '.join(USER_PROFILE_SCOPES)}."
            )
        existing = Path(self.cache_dir).resolve()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise ConfigurationError(
                f"llm_cache_dir={self.cache_dir}: {existing} is a file, so the cache folder cannot be made there. "
                "Fix: --llm_cache_dir=<a folder>, e.g. --llm_cache_dir=cache."
            )
        if self.torch_threads is not None and (not isinstance(self.torch_threads, int) or self.torch_threads < 1):
            raise ConfigurationError(f"llm_torch_threads={self.torch_threads!r} must be an integer >= 1 or ~.")

    @property
    def prompt_folder(self) -> Path:
        """The folder of the prompt files in use."""
        return Path(self.prompt_dir) if self.prompt_dir else DEFAULT_PROMPT_DIR

    @property
    def cache_root(self) -> Path:
        """The cache root; a relative ``llm_cache_dir`` is taken from the working directory."""
        return Path(self.cache_dir).resolve()


def backend_kind(backend: str) -> str:
    """``template``, ``smollm2``, ``hf`` or ``openai`` for an ``llm`` value; anything else is refused."""
    if backend in ("template", "smollm2"):
        return backend
    prefix, sep, _ = str(backend).partition(":")
    if sep and prefix in ("hf", "openai"):
        return prefix
    raise ConfigurationError(f"Unknown llm backend '{backend}'. Valid forms: {BACKEND_FORMS}.")
