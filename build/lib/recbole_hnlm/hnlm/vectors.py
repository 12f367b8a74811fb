"""The text vectors an HNLMRec run trains on: the LLM cache, or the fine-tuning chain's encoded folder."""

from __future__ import annotations

from recbole_hnlm.finetune.encode import open_encoded_cache
from recbole_hnlm.finetune.settings import encoder_mode
from recbole_hnlm.llm.loader import SemanticCache, load_semantic_cache


def open_text_vectors(
    config, train_dataset, held_out_datasets: list | None = None, build: bool = True, expected_dim: int | None = None
) -> SemanticCache:
    """``hnlm_encoder: none`` opens (building when ``build`` and missing) the LLM cache of this training split;
    ``untuned|finetuned`` opens the chain's encoded folder (``python -m recbole_hnlm.finetune chain``), never built
    here. Both are refused, naming the difference, when made from other inputs."""
    if encoder_mode(config) != "none":
        return open_encoded_cache(config, train_dataset, expected_dim)
    return load_semantic_cache(config, train_dataset, held_out_datasets, build=build, expected_dim=expected_dim)
