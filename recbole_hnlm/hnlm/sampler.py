"""HNLMRec's semantic hard negatives, read from the LLM cache and attached to each training batch.

Reference: Chu Zhao et al. "Can LLM-Driven Hard Negative Sampling Empower Collaborative Filtering? Findings and
Potentials." arXiv 2504.04726, 2025. Reference code: https://github.com/user683/HNLMRec

``--neg_sampler=hnlm`` trains ``HNLMRec`` (``model.py`` beside this module) around the model named by
``--model``: the sampler names it in ``wrapper_model``, and the Config makes that switch. This sampler is the
data side. Per batch it fills:

- ``NEG_ITEM_ID`` and any fields of its own (e.g. the ``neg_candidates`` pool) from the base sampler,
  ``hnlm_base_negative``: an instance of any registered id or mixing sampler (uniform, popularity, dns, dns_mn, ahns,
  mixgcf, dins), built on the backbone (``model`` = the backbone, its knobs from the run's config or else its own
  defaults files). ``training_loss`` hands that instance to HNLMRec's loss, which picks among the candidates
  (``ModelScoredSampler.pick_in_loss``) or synthesizes the negative (``MixingSampler.hardest_layers``, then
  ``synthesize``) on its own one propagation, with the base's own code;
- the semantic negatives of each (user, positive) training pair, from the cache's ``SemanticNegativeTable`` (built
  once): ``hnlm_semantic_ids``, ``hnlm_semantic_candidates`` grounded ids per row (0 pads), and for the ``vector``
  source ``hnlm_semantic_vectors`` with ``hnlm_has_semantic`` (whether the row has a description vector).

Every training pair gets a semantic negative; where the configured source has none for a pair, the next source of its
fallback chain serves it:

- ``neighbour``: the items nearest the positive's profile (every pair has them);
- ``generated``: the items grounded from the LLM's negative description -> ``neighbour``;
- ``vector``: the description's embedding -> ``neighbour`` (a pair has grounded ids exactly when it has a
  description, so the grounded item's profile adds no coverage to this chain).

The rows each source served are counted over the run, logged after it and saved in the results file as
``semantic_coverage`` (shares of rows per source, e.g. ``{"generated": 0.0996, "neighbour": 0.9004}``). The model
still drops a row's semantic negative in a step where every one of its ids scores above the positive (``model.py``).

Rows follow RecBole's repeated batch when ``sample_num`` > 1 (the k-th block of rows holds the k-th negative).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from logging import getLogger
from pathlib import Path

import numpy as np
import torch
from recbole.data.interaction import Interaction

from recbole_hnlm.config import read_defaults
from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.finetune.encode import open_text_vectors
from recbole_hnlm.finetune.settings import encoder_mode
from recbole_hnlm.hnlm.model import (
    HAS_SEMANTIC_FIELD,
    PROJECTOR_KINDS,
    SEMANTIC_IDS_FIELD,
    SEMANTIC_VECTORS_FIELD,
)
from recbole_hnlm.llm.loader import NEGATIVE_SOURCES, SERVING_SOURCES, SemanticCache, SemanticNegativeTable
from recbole_hnlm.llm.settings import LLMSettings, backend_kind
from recbole_hnlm.model.adapters import adapter_class_for
from recbole_hnlm.paths import properties_file
from recbole_hnlm.samplers import SAMPLER_REGISTRY, ModelScoredSampler, NegativeSampler, get_sampler_class

logger = getLogger()


def base_sampler_names() -> list[str]:
    """Registered samplers that can serve as ``hnlm_base_negative``: all but those that train a model of their own."""
    return [name for name, sampler in SAMPLER_REGISTRY.items() if sampler.wrapper_model is None]


class BaseSamplerConfig:
    """The run's config as the base sampler sees it: ``model`` is the backbone, ``neg_sampler`` the base, and a knob
    the run's config lacks (e.g. ``dns_top_n``, which only ``dns_mn``'s defaults name) comes from the base's own
    defaults files."""

    def __init__(self, config, base_class: type[NegativeSampler]) -> None:
        self.config = config
        self.overrides = {"model": config["backbone"], "neg_sampler": base_class.name}
        self.defaults: dict = {}
        for file in base_class.defaults_files():
            self.defaults.update(read_defaults(file))

    def __getitem__(self, key: str):
        if key in self.overrides:
            return self.overrides[key]
        return self.config[key] if key in self.config else self.defaults.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.overrides or key in self.config or key in self.defaults

    def base_settings(self) -> dict:
        """The base's own knobs (those its defaults files name) as the base reads them, for the results file."""
        return {key: self[key] for key in sorted(self.defaults) if key != "neg_sampler"}


class SemanticNegativeSampler(NegativeSampler):
    """The base sampler's negatives, and each pair's semantic negatives from the LLM cache, with a fallback chain.

    The cache is opened by ``open_cache``, which ``prepare`` calls once the split is known (building the cache when
    missing needs the validation and test splits, to measure false hard negatives); a sampler used without it opens
    an existing cache on its first batch.
    """

    name = "hnlm"
    wrapper_model = "HNLMRec"

    @classmethod
    def defaults_files(cls) -> list[Path]:
        """The LLM side's and the fine-tuning chain's defaults, then ``hnlm.yaml`` beside this module."""
        return [properties_file("llm.yaml"), properties_file("finetune.yaml"), Path(__file__).with_name("hnlm.yaml")]

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        self.config = config
        self.train_dataset = dataset
        self.source = config["hnlm_negative_source"]
        self.semantic_candidates = int(config["hnlm_semantic_candidates"])
        self.base_config = BaseSamplerConfig(config, get_sampler_class(config["hnlm_base_negative"]))
        self.base = get_sampler_class(config["hnlm_base_negative"])(self.base_config, dataset)
        self.cache: SemanticCache | None = None
        self.table: SemanticNegativeTable | None = None
        self.served = np.zeros(len(SERVING_SOURCES), dtype=np.int64)  # rows served per source, over the run

    @classmethod
    def validate_config(cls, config) -> None:
        """Refuse unknown sources, projectors and bases, base settings the base refuses, weights out of range, sources
        the LLM cannot serve, and a refit on train + validation (the LLM cache belongs to the training split)."""
        if config["refit_with_valid"]:
            raise ConfigurationError(
                f"refit_with_valid does not work with neg_sampler={config['neg_sampler']}: its LLM cache is built for "
                "the training split, not for train + validation. Fix: --refit_with_valid=False."
            )

        choices = {
            "hnlm_negative_source": NEGATIVE_SOURCES,
            "hnlm_base_negative": base_sampler_names(),
            "hnlm_projector": PROJECTOR_KINDS,
        }
        for key, valid in choices.items():
            if config[key] not in valid:
                raise ConfigurationError(
                    f"{key}={config[key]!r} is invalid. Valid: {', '.join(valid)}. Fix: e.g. --{key}={valid[0]}."
                )
        base_class = get_sampler_class(config["hnlm_base_negative"])
        if base_class.requires_model and not issubclass(base_class, ModelScoredSampler):
            raise ConfigurationError(
                f"hnlm_base_negative={base_class.name} scores candidates with model.predict while the batch is built, "
                "which HNLMRec's one-propagation loss cannot host. Fix: a base that picks in the loss (dns, dns_mn, "
                "ahns), synthesizes there (mixgcf, dins) or needs no model (uniform, popularity)."
            )
        base_class.validate_config(BaseSamplerConfig(config, base_class))
        _check_number(config, "hnlm_mix_weight", 0.0, 1.0, "a number in [0, 1], e.g. 0.1")
        _check_number(config, "hnlm_align_weight", 0.0, None, "a number >= 0, e.g. 0.1")
        temperature = config["hnlm_temperature"]
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or temperature <= 0:
            raise ConfigurationError(f"hnlm_temperature={temperature!r} is invalid: it must be a number > 0, e.g. 0.2.")
        settings = LLMSettings.from_config(config)
        semantic_candidates = config["hnlm_semantic_candidates"]
        if (
            isinstance(semantic_candidates, bool)
            or not isinstance(semantic_candidates, int)
            or not 1 <= semantic_candidates <= settings.negative_k
        ):
            raise ConfigurationError(
                f"hnlm_semantic_candidates={semantic_candidates!r} is invalid: it must be an integer from 1 to "
                f"llm_negative_k={settings.negative_k} (the grounded ids the cache keeps per negative). Fix: e.g. "
                f"--hnlm_semantic_candidates={min(10, settings.negative_k)}."
            )
        # hnlm_encoder=untuned|finetuned serves these sources from encoded (user, positive) queries, whatever llm is.
        writes_none = backend_kind(settings.backend) == "template" and encoder_mode(config) == "none"
        if config["hnlm_negative_source"] != "neighbour" and writes_none:
            raise ConfigurationError(
                f"hnlm_negative_source={config['hnlm_negative_source']} needs LLM-written negatives, but llm=template "
                "writes none. Fix: --llm=smollm2 (or another LLM backend), --hnlm_encoder=untuned|finetuned (vectors "
                "of python -m recbole_hnlm.finetune chain), or --hnlm_negative_source=neighbour."
            )
        adapter_class_for(config["backbone"]).validate_config(config)

    def open_cache(self, held_out_datasets: list | None = None, build: bool = True) -> SemanticCache:
        """Build (when ``build`` and missing) and open the LLM cache of this training split; log what it holds."""
        started = time.perf_counter()  # building restores torch's thread count itself (llm_torch_threads)
        self.cache = open_text_vectors(self.config, self.train_dataset, held_out_datasets, build=build)
        self.table = self.cache.negative_table(self.source, self.semantic_candidates)
        covered = int((self.table.units >= 0).sum())
        if self.source != "neighbour" and covered == 0:
            raise ConfigurationError(
                f"hnlm_negative_source={self.source} needs LLM-written negatives, but the cache "
                f"{self.cache.folder.path} has none that parsed. Fix: raise llm_negative_budget, check the LLM's "
                "answers (negatives/summary.json), or --hnlm_negative_source=neighbour."
            )
        manifest = self.cache.manifest
        pairs = len(self.table.keys)
        fallback = "" if self.source == "neighbour" else f"; the other {pairs - covered} fall back to neighbours"
        logger.info(
            f"hnlm: {manifest['generator']['backend']} profiles ({manifest['generator']['model']}), "
            f"{manifest['embedding']['model']} embeddings (dim {self.cache.dim}), negative source {self.source}, "
            f"LLM-written negatives for {covered} of {pairs} training pairs{fallback}; base sampler "
            f"{self.base.name}; cache {self.cache.folder.path} ready in {time.perf_counter() - started:.1f}s"
        )
        return self.cache

    def prepare(self, held_out_datasets: list) -> None:
        """Prepare this sampler and its base, then build or open the cache once the split is known: building it
        measures false hard negatives on the held-out splits."""
        super().prepare(held_out_datasets)
        self.base.prepare(held_out_datasets)
        self.open_cache(held_out_datasets)

    def end_epoch(self) -> None:
        """Close the epoch's counts here and in the base, which picks the sampled negatives."""
        super().end_epoch()
        self.base.end_epoch()

    def semantic_coverage(self) -> dict[str, float]:
        """The share of training rows each source served so far (sources that served none left out)."""
        total = int(self.served.sum())
        return {
            source: round(int(count) / total, 4)
            for source, count in zip(SERVING_SOURCES, self.served, strict=True)
            if count and total
        }

    def run_details(self) -> dict:
        """The base's entries, which profiles and negatives this run trains on, and the coverage of each source."""
        cache = self.semantic_cache()
        coverage = self.semantic_coverage()
        rows = int(self.served.sum())
        shares = ", ".join(f"{source} {share:.2%}" for source, share in coverage.items())
        logger.info(f"hnlm semantic coverage over {rows} training rows: {shares or 'no rows sampled'}")
        return {
            **super().run_details(),
            **self.base.run_details(),  # the base picks the sampled negatives: its counts are the run's
            "semantic_negatives": {
                "llm": cache.manifest["generator"]["backend"],
                "llm_model": cache.manifest["generator"]["model"],
                "embedding_model": cache.manifest["embedding"]["model"],
                "negative_source": self.source,
                "fallback": [] if self.source == "neighbour" else ["neighbour"],
                "base_sampler": self.base.name,
                "base_settings": self.base_config.base_settings(),
                "cache": str(cache.folder.path),
            },
            "semantic_coverage": coverage,
        }

    def semantic_cache(self) -> SemanticCache:
        """The opened cache; an existing one is opened (not built) if ``open_cache`` was not called."""
        if self.cache is None:
            self.open_cache(build=False)
        return self.cache

    def sample(self, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int, model=None) -> torch.Tensor:
        """The base sampler's ``NEG_ITEM_ID``; HNLMRec trains on what its loss makes of the base's fields."""
        return self.base.sample(user_ids, item_ids, num, model=model)

    def extra_batch_fields(self, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int) -> dict[str, torch.Tensor]:
        """The base's fields and the semantic negatives, ``num * batch`` rows in the order of RecBole's repeated
        batch; counts the rows each source served."""
        fields = self.base.extra_batch_fields(user_ids, item_ids, num)
        self.semantic_cache()
        found = self.table.lookup(user_ids.numpy(), item_ids.numpy())
        self.served += np.bincount(found.served_by, minlength=len(SERVING_SOURCES)) * num
        fields[SEMANTIC_IDS_FIELD] = _repeated_rows(found.ids.astype(np.int64), num)
        if found.vectors is not None:
            fields[SEMANTIC_VECTORS_FIELD] = _repeated_rows(found.vectors, num)
            fields[HAS_SEMANTIC_FIELD] = _repeated_rows(found.has_vector, num)
        return fields

    def training_loss(self, model) -> Callable[[Interaction], torch.Tensor]:
        """HNLMRec's loss with this run's base sampler: its picks or syntheses on the loss's own propagation."""
        return partial(model.mixed_loss, self.base)


def _repeated_rows(rows: np.ndarray, num: int) -> torch.Tensor:
    """``rows`` once per negative, in the order of RecBole's repeated batch (no copy for one negative)."""
    return torch.from_numpy(rows if num == 1 else np.concatenate([rows] * num))


def _check_number(config, key: str, low: float, high: float | None, expected: str) -> None:
    value = config[key]
    valid = not isinstance(value, bool) and isinstance(value, int | float) and value >= low
    if not valid or (high is not None and value > high):
        raise ConfigurationError(f"{key}={value!r} is invalid: it must be {expected}.")
