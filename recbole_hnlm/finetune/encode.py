"""Encode item profiles and (user, positive) queries with the (un-tuned or fine-tuned) encoder, in the LLM cache layout.

The folder is what ``recbole_hnlm.llm.loader.SemanticCache`` opens, so the CF side trains on it unchanged
(``--neg_sampler=hnlm --hnlm_negative_source=vector --hnlm_encoder=finetuned``):

    manifest.json                       dataset, inputs and generator of the profile cache; the encoder (and adapter)
                                        as ``embedding`` and ``encoder``; ``stages.negatives`` = summary below
    vectors/item_profile_vectors.npy    float32 (n_items, dim): ``Item: <profile>``; row 0 ([PAD]) zeros
    vectors/user_profile_vectors.npy    float32 (n_users, dim): ``User: <profile>``
    negatives/pair_keys.npy             int64 (n_pairs,): every training pair, user * n_items + item, sorted
    negatives/neighbour_ids.npy         int32 (n_pairs, k): items nearest the positive in this encoder's space
    negatives/generated_units.npy       int64 (n_gen, 2): (user, positive) of each encoded query
    negatives/generated_vectors.npy     float32 (n_gen, dim): the query vectors, the hnlm ``vector`` source
    negatives/generated_ids.npy         int32 (n_gen, k): items nearest each query vector (never a training positive)
    negatives/pair_generated_unit.npy   int32 (n_pairs,): row of the pair's query in the arrays above, -1 if none
    negatives/summary.json              false hard negative rates of both kinds, beside the uniform baseline

Queries are encoded for ``finetune_encode_pairs`` pairs (0, the default: all) in the seeded round-robin order of the
mined pairs; with a budget, the hnlm sampler serves the other pairs from ``neighbour_ids`` (its fallback chain).
Every array is filled chunk by chunk and resumes where it stopped.
"""

from __future__ import annotations

import time
from logging import getLogger
from pathlib import Path

import numpy as np
import torch

from recbole_hnlm.errors import CacheMismatchError
from recbole_hnlm.finetune.encoder import TextEncoder, item_text, query_text, user_text
from recbole_hnlm.finetune.mining import profile_texts
from recbole_hnlm.finetune.paths import ChainPaths
from recbole_hnlm.finetune.settings import FinetuneSettings, encoder_mode
from recbole_hnlm.io import write_json_atomic
from recbole_hnlm.llm.cache import CACHE_FORMAT, CacheFolder, fill_array_in_chunks, mismatch_message, open_array
from recbole_hnlm.llm.catalogue import Catalogue
from recbole_hnlm.llm.loader import SemanticCache, input_differences, load_semantic_cache
from recbole_hnlm.llm.negatives import (
    false_hard_negative_rates,
    grounded_ids,
    negative_units,
    uniform_rate,
    write_neighbour_negatives,
)
from recbole_hnlm.llm.profiles import ITEM_VECTORS, USER_VECTORS
from recbole_hnlm.llm.settings import LLMSettings

logger = getLogger()


def encoded_identity(profiles_manifest: dict, encoder: TextEncoder, settings: FinetuneSettings, k: int) -> dict:
    """What must match for an encoded folder to be reused: profiles, split, encoder, adapter and recipe."""
    return {
        "format": CACHE_FORMAT,
        "dataset": profiles_manifest["dataset"],
        "generator": profiles_manifest["generator"],
        "inputs": profiles_manifest["inputs"],
        "encoder": encoder.describe(),
        "recipe": {"encode_pairs": settings.encode_pairs, "k": k, "seed": settings.seed},
    }


def build_encoded_cache(
    folder: Path,
    encoder: TextEncoder,
    catalogue: Catalogue,
    profiles: CacheFolder,
    llm_settings: LLMSettings,
    settings: FinetuneSettings,
) -> dict:
    """Encode into ``folder`` whatever is missing (see the module docstring); return the manifest."""
    out = CacheFolder(folder)
    k = llm_settings.negative_k
    identity = encoded_identity(profiles.read_manifest(), encoder, settings, k)
    manifest = out.read_manifest()
    if manifest and manifest.get("identity") != identity:
        raise CacheMismatchError(
            f"Encoded folder {folder} was made by another encoder, adapter or recipe. Fix: delete it to encode again."
        )
    if manifest.get("stages", {}).get("negatives_complete"):
        return manifest
    description = encoder.describe()
    adapter = description["adapter"]
    label = description["name"] + (f"+lora-{adapter['id']}-step{adapter['step']}" if adapter else "")
    manifest = {
        **{key: identity[key] for key in ("format", "dataset", "generator", "inputs")},
        "embedding": {"model": label, "dim": encoder.dim},
        "encoder": description,
        "identity": identity,
        "stages": {},
    }
    out.write_manifest(manifest)
    started = time.perf_counter()
    item_profiles, user_profiles = profile_texts(profiles, llm_settings, catalogue)
    chunk, batch = settings.encode_chunk, settings.encode_batch_size

    def texts_filler(texts: list[str]):
        def fill(start: int, end: int) -> np.ndarray:
            rows = np.zeros((end - start, encoder.dim), dtype=np.float32)
            first = max(start, 1)  # row 0 is [PAD]
            if first < end:
                rows[first - start :] = encoder.encode(texts[first:end], batch)
            return rows

        return fill

    items = [item_text(text) for text in item_profiles]
    users = [user_text(text) for text in user_profiles]
    fill_array_in_chunks(
        folder / ITEM_VECTORS, (len(items), encoder.dim), np.float32, chunk, texts_filler(items), "item vectors"
    )
    fill_array_in_chunks(
        folder / USER_VECTORS, (len(users), encoder.dim), np.float32, chunk, texts_filler(users), "user vectors"
    )
    item_vectors = torch.from_numpy(np.array(open_array(folder / ITEM_VECTORS)))

    negatives = folder / "negatives"
    keys = catalogue.train_pair_keys()
    pair_users = keys // catalogue.n_items
    write_neighbour_negatives(negatives, catalogue, keys, item_vectors, k, chunk)
    unit_users, unit_items = negative_units(catalogue, "pair", settings.seed)
    n_encoded = len(unit_users) if settings.encode_pairs == 0 else min(settings.encode_pairs, len(unit_users))
    units = np.stack([unit_users[:n_encoded], unit_items[:n_encoded]], axis=1).astype(np.int64)
    queries = [query_text(user_profiles[user], item_profiles[item]) for user, item in units]
    fill_array_in_chunks(
        negatives / "generated_units.npy", units.shape, np.int64, chunk, lambda s, e: units[s:e], "units"
    )

    def encode_queries(start: int, end: int) -> np.ndarray:
        return encoder.encode(queries[start:end], batch)

    fill_array_in_chunks(
        negatives / "generated_vectors.npy", (n_encoded, encoder.dim), np.float32, chunk, encode_queries, "queries"
    )
    query_vectors = open_array(negatives / "generated_vectors.npy")
    fill_array_in_chunks(
        negatives / "generated_ids.npy",
        (n_encoded, k),
        np.int32,
        chunk,
        lambda s, e: grounded_ids(query_vectors[s:e], units[s:e, 0], item_vectors, catalogue, k),
        "grounding",
    )
    unit_of_pair = np.full(len(keys), -1, dtype=np.int32)
    unit_of_pair[np.searchsorted(keys, units[:, 0] * catalogue.n_items + units[:, 1])] = np.arange(n_encoded)
    fill_array_in_chunks(
        negatives / "pair_generated_unit.npy", keys.shape, np.int32, chunk, lambda s, e: unit_of_pair[s:e], "pair units"
    )

    generated_ids = np.asarray(open_array(negatives / "generated_ids.npy"))
    summary = {
        "unit": "pair",
        "budget": int(n_encoded),
        "k": k,
        "pairs": int(len(keys)),
        "held_out_pairs": int(len(catalogue.held_out_items)),
        "uniform": {
            "false_hard_negative_rate_over_pairs": uniform_rate(pair_users, catalogue),
            "note": "expected share for a uniformly drawn non-training item",
        },
        "neighbour": false_hard_negative_rates(
            np.asarray(open_array(negatives / "neighbour_ids.npy")), pair_users, catalogue
        ),
        "generated": {
            "units_total": int(len(unit_users)),
            "units_in_budget": int(n_encoded),
            "ok": int(n_encoded),
            "failed": 0,
            "pairs_covered": int(n_encoded),
            "note": "query vectors of (user, positive) pairs, grounded to their nearest items",
            **false_hard_negative_rates(generated_ids, units[:, 0], catalogue),
            "uniform_rate_same_units": uniform_rate(units[:, 0], catalogue),
        },
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json_atomic(negatives / "summary.json", summary)
    manifest["stages"] = {"negatives": summary, "negatives_complete": True}
    out.write_manifest(manifest)
    logger.info(f"encoded {n_encoded} queries and {catalogue.n_items - 1} items into {folder}")
    return manifest


def open_encoded_cache(config, train_dataset, expected_dim: int | None = None):
    """The encoded cache that ``hnlm_encoder`` (untuned or finetuned) names for this config, checked against the split.

    Called by ``recbole_hnlm.hnlm.vectors.open_text_vectors`` in place of the LLM cache; it never builds: encoding
    is the chain's ``encode`` stage.
    """

    mode = encoder_mode(config)
    path = ChainPaths.from_config(config).encoded(mode == "finetuned")
    manifest = CacheFolder(path).read_manifest()
    dataset = config["dataset"]
    if not manifest.get("stages", {}).get("negatives_complete"):
        raise CacheMismatchError(
            f"No finished {mode} encoder vectors at {path} for hnlm_encoder={mode}. Fix: python -m "
            f"recbole_hnlm.finetune {'chain' if mode == 'finetuned' else 'encode --untuned'} --dataset={dataset} with "
            "this run's settings (llm_*, finetune_*, seed), or --hnlm_encoder=none."
        )
    differences = input_differences(manifest, dataset, train_dataset)
    if expected_dim is not None and manifest["embedding"]["dim"] != expected_dim:
        differences.append(f"vector size: cached {manifest['embedding']['dim']}, asked {expected_dim}")
    if differences:
        raise CacheMismatchError(mismatch_message(Path(path), differences))
    return SemanticCache(path)


def open_text_vectors(
    config, train_dataset, held_out_datasets: list | None = None, build: bool = True, expected_dim: int | None = None
) -> SemanticCache:
    """``hnlm_encoder: none`` opens (building when ``build`` and missing) the LLM cache of this training split;
    ``untuned|finetuned`` opens the chain's encoded folder (``python -m recbole_hnlm.finetune chain``), never built
    here. Both are refused, naming the difference, when made from other inputs."""
    if encoder_mode(config) != "none":
        return open_encoded_cache(config, train_dataset, expected_dim)
    return load_semantic_cache(config, train_dataset, held_out_datasets, build=build, expected_dim=expected_dim)
