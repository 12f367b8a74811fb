"""Supervision mined from a trained CF model: per training (user, positive), a filtered hard and an easy negative.

For each pair in the budget (``finetune_max_pairs`` pairs, round-robin over users in a seeded order, the order of
``recbole_hnlm.llm.negatives.negative_units``), the user's candidates are the ``finetune_mining_pool``
top-scored items that are not training positives of the user (never ``[PAD]``, never a training positive). Three
false-negative filters then run in this order, each counted on what the earlier ones kept:

1. score quantile: drop a candidate scored above the ``finetune_score_quantile`` quantile of the scores of the
   user's own training positives: the model ranks it like the items the user chose, so it is more likely an
   unobserved positive than a negative;
2. CF similarity: drop a candidate whose cosine (pooled CF item embeddings) to any training positive of the user
   exceeds ``finetune_cf_similarity``;
3. semantic similarity: the same on the item-profile vectors of the LLM cache (``finetune_semantic_similarity``).

The hard negative is drawn uniformly (seeded) from the ``finetune_hard_top_k`` top-scored survivors; a pair whose
user has no survivor is dropped and counted. The easy negative is uniform over the user's non-training items
other than the hard one. ``dataset.jsonl`` holds one record per kept pair: ids, tokens, and the texts in the one
prompt format of ``recbole_hnlm.finetune.encoder`` (query = positive item's profile + user's profile).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from logging import getLogger
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from recbole_hnlm.errors import CacheMismatchError
from recbole_hnlm.finetune.encoder import formats_hash, item_text, query_text
from recbole_hnlm.finetune.settings import FinetuneSettings
from recbole_hnlm.io import write_jsonl_atomic
from recbole_hnlm.llm.cache import CacheFolder, open_array, read_jsonl
from recbole_hnlm.llm.catalogue import Catalogue, negative_units
from recbole_hnlm.llm.negatives import held_out_pair_keys
from recbole_hnlm.llm.profiles import ITEM_VECTORS, item_store, user_store
from recbole_hnlm.llm.settings import LLMSettings
from recbole_hnlm.model.adapters import get_adapter, scoring_mode

DATASET_FILE = "dataset.jsonl"
FILTERS = ("score_quantile", "cf_similarity", "semantic_similarity")

logger = getLogger()


@dataclass
class MinedPairs:
    """The mined supervision as arrays (one row per kept pair) and what each filter removed."""

    users: np.ndarray
    positives: np.ndarray
    hard_negatives: np.ndarray
    easy_negatives: np.ndarray
    counts: dict


def cf_scoring(model) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled user and item embeddings of a trained CF model (their inner product is its score)."""
    adapter = get_adapter(model)
    with scoring_mode(model):
        user_layers, item_layers = adapter.propagate()
        return adapter.pool(user_layers).float().cpu(), adapter.pool(item_layers).float().cpu()


def similar_to_positives(vectors: torch.Tensor, candidates: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Largest cosine of each candidate's vector to any of ``positives``' vectors."""
    unit = F.normalize(vectors[torch.from_numpy(np.concatenate([candidates, positives]))], dim=-1)
    return (unit[: len(candidates)] @ unit[len(candidates) :].T).max(dim=1).values.numpy()


def flagged_by(
    name: str,
    threshold: float,
    pool: np.ndarray,
    positives: np.ndarray,
    scores: np.ndarray,
    vectors: torch.Tensor | None,
) -> np.ndarray:
    """Which of the ``pool`` candidates the filter ``name`` takes for likely false negatives (see the module)."""
    if name == "score_quantile":
        return scores[pool] > np.quantile(scores[positives], threshold)
    return similar_to_positives(vectors, pool, positives) > threshold


def mine_pairs(
    user_scoring: torch.Tensor,
    item_scoring: torch.Tensor,
    semantic_vectors: torch.Tensor,
    catalogue: Catalogue,
    settings: FinetuneSettings,
) -> MinedPairs:
    """Hard and easy negatives of the budget's pairs, with the counts of what each filter removed (see module)."""
    unit_users, unit_items = negative_units(catalogue, "pair", settings.seed)
    unit_users, unit_items = unit_users[: settings.max_pairs], unit_items[: settings.max_pairs]
    rng = np.random.default_rng(settings.seed)
    held_out = held_out_pair_keys(catalogue)
    thresholds = {
        "score_quantile": settings.score_quantile,
        "cf_similarity": settings.cf_similarity,
        "semantic_similarity": settings.semantic_similarity,
    }
    counts = {"pairs_in_budget": int(len(unit_users)), "candidates_examined": 0, "kept_candidates": 0}
    counts.update({f"removed_by_{name}": 0 for name in FILTERS})
    counts.update({"pairs_without_hard_negative": 0, "unfiltered_top1_held_out": 0, "hard_negative_held_out": 0})
    vectors = {"score_quantile": None, "cf_similarity": item_scoring, "semantic_similarity": semantic_vectors}
    rows: list[tuple[int, int, int, int]] = []
    for user in np.unique(unit_users):
        pair_items = unit_items[unit_users == user]
        positives = catalogue.train_items_of(int(user))
        scores = (item_scoring @ user_scoring[user]).numpy()
        eligible = np.ones(catalogue.n_items, dtype=bool)
        eligible[0] = False
        eligible[positives] = False
        candidates = np.flatnonzero(eligible)
        pool = candidates[np.argsort(-scores[candidates], kind="stable")[: settings.mining_pool]]
        keep = np.ones(len(pool), dtype=bool)
        for name in FILTERS:
            if thresholds[name] is not None and len(pool):
                removed = keep & flagged_by(name, thresholds[name], pool, positives, scores, vectors[name])
                counts[f"removed_by_{name}"] += int(removed.sum()) * len(pair_items)
                keep &= ~removed
        survivors = pool[keep]
        counts["candidates_examined"] += len(pool) * len(pair_items)
        counts["kept_candidates"] += len(survivors) * len(pair_items)
        if len(pool):
            top1_key = int(user) * catalogue.n_items + int(pool[0])
            counts["unfiltered_top1_held_out"] += int(_contains(held_out, top1_key)) * len(pair_items)
        if not len(survivors):
            counts["pairs_without_hard_negative"] += len(pair_items)
            continue
        for item in pair_items:
            hard = int(survivors[rng.integers(min(settings.hard_top_k, len(survivors)))])
            easy_pool = candidates[candidates != hard]
            easy = int(easy_pool[rng.integers(len(easy_pool))]) if len(easy_pool) else hard
            counts["hard_negative_held_out"] += int(_contains(held_out, int(user) * catalogue.n_items + hard))
            rows.append((int(user), int(item), hard, easy))
    mined = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    counts["pairs"] = int(len(mined))
    counts["false_hard_negative_rate_unfiltered_top1"] = counts["unfiltered_top1_held_out"] / max(
        counts["pairs_in_budget"], 1
    )
    counts["false_hard_negative_rate"] = counts["hard_negative_held_out"] / max(len(mined), 1)
    return MinedPairs(mined[:, 0], mined[:, 1], mined[:, 2], mined[:, 3], counts)


def _contains(sorted_keys: np.ndarray, key: int) -> bool:
    position = int(np.searchsorted(sorted_keys, key))
    return position < len(sorted_keys) and int(sorted_keys[position]) == key


def profile_texts(profiles: CacheFolder, llm_settings: LLMSettings, catalogue: Catalogue) -> tuple[list, list]:
    """Item and user profile texts of the LLM cache, by internal id (index 0, ``[PAD]``, is '')."""
    items = [""] + [record["text"] for record in item_store(profiles, llm_settings).read(catalogue.n_items - 1)]
    users = [""] + [record["text"] for record in user_store(profiles, llm_settings).read(catalogue.n_users - 1)]
    return items, users


def mined_records(mined: MinedPairs, catalogue: Catalogue, item_profiles: list, user_profiles: list) -> list[dict]:
    """One record per mined pair: ids, tokens, query, hard and easy negative texts."""
    records = []
    for row, (user, positive, hard, easy) in enumerate(
        zip(mined.users, mined.positives, mined.hard_negatives, mined.easy_negatives, strict=True)
    ):
        records.append(
            {
                "row": row,
                "user": int(user),
                "positive": int(positive),
                "hard_negative": int(hard),
                "easy_negative": int(easy),
                "user_token": str(catalogue.user_tokens[user]),
                "positive_token": str(catalogue.item_tokens[positive]),
                "hard_negative_token": str(catalogue.item_tokens[hard]),
                "easy_negative_token": str(catalogue.item_tokens[easy]),
                "query": query_text(user_profiles[user], item_profiles[positive]),
                "hard_negative_text": item_text(item_profiles[hard]),
                "easy_negative_text": item_text(item_profiles[easy]),
            }
        )
    return records


def build_mined_dataset(
    folder: Path,
    model,
    catalogue: Catalogue,
    profiles: CacheFolder,
    llm_settings: LLMSettings,
    settings: FinetuneSettings,
    identity: dict,
) -> dict:
    """Mine with ``model`` and save ``dataset.jsonl`` and the manifest in ``folder`` (kept when already complete)."""
    out = CacheFolder(folder)
    manifest = out.read_manifest()
    if manifest.get("complete") and (folder / DATASET_FILE).is_file():
        _check_same(out, manifest, identity)
        return manifest
    started = time.perf_counter()
    user_scoring, item_scoring = cf_scoring(model)
    if len(item_scoring) != catalogue.n_items or len(user_scoring) != catalogue.n_users:
        raise CacheMismatchError(
            f"The CF model scores {len(user_scoring)} users and {len(item_scoring)} items, but the split has "
            f"{catalogue.n_users} and {catalogue.n_items}. Fix: mine with a checkpoint of this dataset and split."
        )
    semantic = torch.from_numpy(np.array(open_array(profiles.path / ITEM_VECTORS), dtype=np.float32))
    mined = mine_pairs(user_scoring, item_scoring, semantic, catalogue, settings)
    item_profiles, user_profiles = profile_texts(profiles, llm_settings, catalogue)
    write_jsonl_atomic(folder / DATASET_FILE, mined_records(mined, catalogue, item_profiles, user_profiles))
    manifest = {**identity, "formats": formats_hash(), "counts": mined.counts, "complete": True}
    manifest["seconds"] = round(time.perf_counter() - started, 2)
    out.write_manifest(manifest)
    logger.info(f"mined {mined.counts['pairs']} pairs into {folder}: {json.dumps(mined.counts)}")
    return manifest


def _check_same(out: CacheFolder, manifest: dict, identity: dict) -> None:
    differences = [
        f"{key}: saved {manifest.get(key)!r}, asked {value!r}"
        for key, value in identity.items()
        if manifest.get(key) != value
    ]
    if differences:
        raise CacheMismatchError(
            f"Mined dataset {out.path} was made from other inputs ({'; '.join(differences)}). Fix: delete that folder "
            "to mine again, or run with the settings it was made with."
        )


def read_mined(folder: Path) -> list[dict]:
    """The records of a finished mined dataset."""
    path = Path(folder) / DATASET_FILE
    if not path.is_file():
        raise CacheMismatchError(
            f"No mined dataset at {path}. Fix: python -m recbole_hnlm.finetune mine (same settings) first."
        )
    return read_jsonl(path)
