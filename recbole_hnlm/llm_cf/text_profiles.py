"""The text side of the LLM-enhanced CF models: profile vectors from the LLM cache, and the MLP that maps them.

RLMRec and AlphaRec read the same cache folder as the ``hnlm`` sampler (``recbole_hnlm.llm``: template or LLM
profiles, embedded with ``llm_embedding_model``), but only its profile stage: when that stage is missing for this
training split it is built here (template profiles of ml-100k take about a minute on a CPU). The negatives stage is
left to the ``hnlm`` sampler, which builds it with the validation and test splits that measure its false negatives.
With ``hnlm_encoder: untuned|finetuned`` the vectors come from the fine-tuning chain's encoded folder instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from logging import getLogger
from pathlib import Path

import numpy as np
import torch

from recbole_hnlm.errors import CacheMismatchError
from recbole_hnlm.finetune.encode import open_text_vectors
from recbole_hnlm.finetune.settings import encoder_mode
from recbole_hnlm.llm.backends import embedding_model_name
from recbole_hnlm.llm.cache import CacheFolder, mismatch_message, open_array
from recbole_hnlm.llm.loader import input_differences, split_sha256_of
from recbole_hnlm.llm.pipeline import build_semantic_cache, cache_folder_path, generator_identity
from recbole_hnlm.llm.profiles import ITEM_VECTORS, USER_VECTORS
from recbole_hnlm.llm.settings import LLMSettings

logger = getLogger()


@dataclass(frozen=True)
class ProfileVectors:
    """Profile vectors ``(n_users, dim)`` and ``(n_items, dim)``, row i of each being RecBole's internal id i."""

    user_vectors: torch.Tensor
    item_vectors: torch.Tensor
    folder: Path
    manifest: dict

    @property
    def dim(self) -> int:
        """Size of the text vectors."""
        return int(self.item_vectors.shape[1])

    def describe(self) -> dict:
        """Which profiles and embeddings these are, in the terms the hnlm sampler records them."""
        generator = self.manifest.get("generator", {})
        return {
            "llm": generator.get("backend"),
            "llm_model": generator.get("model"),
            "embedding_model": self.manifest.get("embedding", {}).get("model"),
            "cache": str(self.folder),
        }


def load_profile_vectors(config, train_dataset) -> ProfileVectors:
    """The profile vectors of this config's LLM cache for this training split; its profile stage built if missing."""
    if encoder_mode(config) != "none":
        cache = open_text_vectors(config, train_dataset, build=False)
        users, items = cache.user_profile_vectors, cache.item_profile_vectors
        folder, manifest = cache.folder, cache.manifest
    else:
        settings = LLMSettings.from_config(config)
        split_sha = split_sha256_of(train_dataset)
        folder = CacheFolder(cache_folder_path(settings, config["dataset"], generator_identity(settings), split_sha))
        if not folder.read_manifest().get("stages", {}).get("profiles_complete"):
            started = time.perf_counter()
            # Profiles never read the held-out splits; the negatives stage, which does, is not built here.
            build_semantic_cache(config, train_dataset, [], stages=("profiles",))
            logger.info(f"profile vectors built in {time.perf_counter() - started:.1f}s: {folder.path}")
        manifest = folder.read_manifest()
        differences = input_differences(manifest, config["dataset"], train_dataset, split_sha)
        if differences:
            raise CacheMismatchError(mismatch_message(folder.path, differences))
        folder.check_embedding(manifest, embedding_model_name(settings))
        users, items = open_array(folder.path / USER_VECTORS), open_array(folder.path / ITEM_VECTORS)
    profiles = ProfileVectors(
        torch.from_numpy(np.array(users, dtype=np.float32)),
        torch.from_numpy(np.array(items, dtype=np.float32)),
        folder.path,
        manifest,
    )
    logger.info(f"text profiles: {profiles.describe()}")
    return profiles


class TextMLP(torch.nn.Module):
    """Linear, LeakyReLU, Linear: frozen text vectors ``(..., text_dim)`` to ``(..., out_dim)``, Xavier-initialised."""

    def __init__(self, text_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(text_dim, hidden_dim), torch.nn.LeakyReLU(), torch.nn.Linear(hidden_dim, out_dim)
        )
        for layer in self.layers:
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(layer.weight)
                torch.nn.init.zeros_(layer.bias)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """Map ``vectors`` into the output space."""
        return self.layers(vectors)
