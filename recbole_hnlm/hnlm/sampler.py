"""HNLMRec's semantic hard negatives, read from the LLM cache and attached to each training batch.

Reference: Chu Zhao et al. "Can LLM-Driven Hard Negative Sampling Empower Collaborative Filtering? Findings and
Potentials." arXiv 2504.04726, 2025. Reference code: https://github.com/user683/HNLMRec

``--neg_sampler=hnlm`` trains ``HNLMRec`` (``model.py`` beside this module) around the model named by
``--model``: the sampler names it in ``wrapper_model``, and the Config makes that switch. This sampler is the
data side. Per batch it fills:

- ``NEG_ITEM_ID`` with uniform negatives, so that the batch stays valid for any code that reads it;
- ``neg_candidates`` with ``candidate_num`` uniform candidates per row when ``hnlm_base_negative`` is ``dns``
  (HNLMRec scores them on the propagation of its own loss, so no second forward pass is spent on sampling);
- the semantic negatives of each (user, positive) training pair from ``SemanticCache.lookup``:
  ``hnlm_semantic_ids``, the ``hnlm_semantic_candidates`` nearest grounded ids (0 pads), for the ``neighbour``
  and ``generated`` sources; ``hnlm_semantic_vectors`` and ``hnlm_has_semantic`` for the ``vector`` source.

Rows follow RecBole's repeated batch when ``sample_num`` > 1 (the k-th block of rows holds the k-th negative).
``training_loss`` stays None: HNLMRec's own ``calculate_loss`` mixes and aligns, so the model trains, saves and
reloads through RecBole's Trainer like any other.
"""

from __future__ import annotations

import time
from logging import getLogger
from pathlib import Path

import numpy as np
import torch

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.finetune.encode import open_text_vectors
from recbole_hnlm.finetune.settings import encoder_mode
from recbole_hnlm.hnlm.model import (
    CANDIDATES_FIELD,
    HAS_SEMANTIC_FIELD,
    PROJECTOR_KINDS,
    SEMANTIC_IDS_FIELD,
    SEMANTIC_VECTORS_FIELD,
)
from recbole_hnlm.llm.loader import SemanticCache
from recbole_hnlm.llm.settings import LLMSettings, backend_kind
from recbole_hnlm.model.adapters import adapter_class_for
from recbole_hnlm.paths import properties_file
from recbole_hnlm.samplers.base import CandidatePoolSampler, check_candidate_num

NEGATIVE_SOURCES = ("neighbour", "generated", "vector")
BASE_NEGATIVES = ("uniform", "dns")

logger = getLogger()


class SemanticNegativeSampler(CandidatePoolSampler):
    """Uniform ``NEG_ITEM_ID``, optional DNS candidates, and the pair's semantic negatives from the LLM cache.

    The cache is opened by ``open_cache``, which ``quick_start`` calls once the split is known (building the cache
    when missing needs the validation and test splits, to measure false hard negatives); a sampler used without
    it opens an existing cache on its first batch.
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
        self.base_negative = config["hnlm_base_negative"]
        self.semantic_candidates = int(config["hnlm_semantic_candidates"])
        self.cache: SemanticCache | None = None

    @classmethod
    def validate_config(cls, config) -> None:
        """Refuse unknown sources, projectors and bases, weights out of range, sources the LLM cannot serve, and a
        refit on train + validation (the LLM cache belongs to the training split)."""
        if config["refit_with_valid"]:
            raise ConfigurationError(
                f"refit_with_valid does not work with neg_sampler={config['neg_sampler']}: its LLM cache is built for "
                "the training split, not for train + validation. Fix: --refit_with_valid=False."
            )

        choices = {
            "hnlm_negative_source": NEGATIVE_SOURCES,
            "hnlm_base_negative": BASE_NEGATIVES,
            "hnlm_projector": PROJECTOR_KINDS,
        }
        for key, valid in choices.items():
            if config[key] not in valid:
                raise ConfigurationError(f"{key}={config[key]!r} is invalid. Valid: {', '.join(valid)}.")
        if config["hnlm_base_negative"] == "dns":
            check_candidate_num(config, cls.name)
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
        covered = int((np.asarray(self.cache.pair_generated_unit) >= 0).sum())
        if self.source != "neighbour" and covered == 0:
            raise ConfigurationError(
                f"hnlm_negative_source={self.source} needs LLM-written negatives, but the cache "
                f"{self.cache.folder.path} has none that parsed. Fix: raise llm_negative_budget, check the LLM's "
                "answers (negatives/summary.json), or --hnlm_negative_source=neighbour."
            )
        manifest = self.cache.manifest
        logger.info(
            f"hnlm: {manifest['generator']['backend']} profiles ({manifest['generator']['model']}), "
            f"{manifest['embedding']['model']} embeddings (dim {self.cache.dim}), negative source {self.source}, "
            f"LLM-written negatives for {covered} of {len(self.cache.pair_keys)} training pairs; "
            f"cache {self.cache.folder.path} ready in {time.perf_counter() - started:.1f}s"
        )
        return self.cache

    def prepare(self, held_out_datasets: list) -> None:
        """Build or open the cache once the split is known: building it measures false hard negatives on the
        held-out splits."""
        self.open_cache(held_out_datasets)

    def run_details(self) -> dict:
        """Which profiles and negatives this run trains on, for its results file."""
        cache = self.semantic_cache()
        return {
            "semantic_negatives": {
                "llm": cache.manifest["generator"]["backend"],
                "llm_model": cache.manifest["generator"]["model"],
                "embedding_model": cache.manifest["embedding"]["model"],
                "negative_source": self.source,
                "cache": str(cache.folder.path),
            }
        }

    def semantic_cache(self) -> SemanticCache:
        """The opened cache; an existing one is opened (not built) if ``open_cache`` was not called."""
        if self.cache is None:
            self.open_cache(build=False)
        return self.cache

    def sample(self, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int, model=None) -> torch.Tensor:
        """Uniform negatives for ``NEG_ITEM_ID``; HNLMRec trains on the fields below instead.

        With a DNS base the candidate pool of the batch is drawn here and its first column serves as
        ``NEG_ITEM_ID`` (a uniform draw like any other), so a batch costs one draw instead of two.
        """
        users = user_ids.numpy()
        if self.base_negative != "dns":
            return torch.from_numpy(self.draw_uniform(users, num))
        return self.sample_from_pool(users, num)

    def extra_batch_fields(self, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int) -> dict[str, torch.Tensor]:
        """DNS candidates and semantic negatives, ``num * batch`` rows in the order of RecBole's repeated batch."""
        users = user_ids.numpy()
        fields = {}
        if self.base_negative == "dns":
            fields[CANDIDATES_FIELD] = self.candidate_pool(users, num)
        found = self.semantic_cache().lookup(users, item_ids.numpy())
        if self.source == "vector":
            fields[SEMANTIC_VECTORS_FIELD] = torch.from_numpy(np.tile(found.generated_vectors, (num, 1)))
            fields[HAS_SEMANTIC_FIELD] = torch.from_numpy(np.tile(found.has_generated, num))
        else:
            ids = found.neighbour_ids if self.source == "neighbour" else found.generated_ids
            ids = ids[:, : self.semantic_candidates].astype(np.int64)
            if self.source == "generated":
                ids[~found.has_generated] = 0
            fields[SEMANTIC_IDS_FIELD] = torch.from_numpy(np.tile(ids, (num, 1)))
        return fields


def _check_number(config, key: str, low: float, high: float | None, expected: str) -> None:
    value = config[key]
    valid = not isinstance(value, bool) and isinstance(value, int | float) and value >= low
    if not valid or (high is not None and value > high):
        raise ConfigurationError(f"{key}={value!r} is invalid: it must be {expected}.")
