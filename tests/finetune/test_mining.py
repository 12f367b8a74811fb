"""Mining on real data: negatives are never training positives, and each filter removes exactly what it claims."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recbole_hnlm.finetune.chain import mine, train_cf
from recbole_hnlm.finetune.encoder import item_text, query_text
from recbole_hnlm.finetune.mining import FILTERS, cf_scoring, mine_pairs, profile_texts, read_mined
from recbole_hnlm.llm.cache import open_array
from recbole_hnlm.llm.negatives import negative_units
from recbole_hnlm.llm.profiles import ITEM_VECTORS
from recbole_hnlm.quick_start import load_data_and_model


@pytest.fixture(scope="module")
def mining_inputs(tiny_chain):
    """(user scoring, item scoring, item-profile vectors, catalogue) of the tiny chain's trained CF model."""
    _, model, _, train_data, valid_data, test_data = load_data_and_model(train_cf(tiny_chain))
    train, held_out = train_data._dataset, [valid_data._dataset, test_data._dataset]
    profiles = tiny_chain.profiles(train, held_out)
    semantic = torch.from_numpy(np.array(open_array(profiles.path / ITEM_VECTORS)))
    return (*cf_scoring(model), semantic, tiny_chain.catalogue(train, held_out))


def test_mined_dataset_never_holds_a_training_positive_as_negative(tiny_chain):
    manifest = mine(tiny_chain)
    records = read_mined(tiny_chain.paths.mined)
    catalogue = tiny_chain.catalogue()
    item_profiles, user_profiles = profile_texts(tiny_chain.profiles(), tiny_chain.llm_settings, catalogue)
    assert records and manifest["counts"]["pairs"] == len(records)
    for record in records:
        trained = set(catalogue.train_items_of(record["user"]).tolist())
        assert record["positive"] in trained
        assert record["hard_negative"] not in trained and record["easy_negative"] not in trained
        assert record["hard_negative"] > 0 and record["easy_negative"] > 0
        assert record["hard_negative"] != record["easy_negative"]
        assert record["query"] == query_text(user_profiles[record["user"]], item_profiles[record["positive"]])
        assert record["hard_negative_text"] == item_text(item_profiles[record["hard_negative"]])
        assert record["user_token"] == str(catalogue.user_tokens[record["user"]])
    on_disk = json.loads((tiny_chain.paths.mined / "manifest.json").read_text())
    assert on_disk["complete"] and on_disk["counts"] == manifest["counts"]


def reference_filters(user_scoring, item_scoring, semantic, catalogue, settings):
    """What each filter should remove, recomputed pair by pair with plain numpy (in the documented order)."""
    users, items = negative_units(catalogue, "pair", settings.seed)
    removed = dict.fromkeys(FILTERS, 0)
    allowed = {}
    thresholds = {
        "score_quantile": settings.score_quantile,
        "cf_similarity": settings.cf_similarity,
        "semantic_similarity": settings.semantic_similarity,
    }
    for user in users[: settings.max_pairs]:
        positives = catalogue.train_items_of(int(user))
        scores = item_scoring.numpy() @ user_scoring[user].numpy()
        candidates = [item for item in np.argsort(-scores, kind="stable") if item > 0 and item not in positives]
        kept = []
        for item in candidates[: settings.mining_pool]:
            checks = {
                "score_quantile": scores[item] > np.quantile(scores[positives], thresholds["score_quantile"] or 0),
                "cf_similarity": max_cosine(item_scoring.numpy(), item, positives) > (thresholds["cf_similarity"] or 0),
                "semantic_similarity": max_cosine(semantic.numpy(), item, positives)
                > (thresholds["semantic_similarity"] or 0),
            }
            failed = next((name for name in FILTERS if thresholds[name] is not None and checks[name]), None)
            if failed:
                removed[failed] += 1
            else:
                kept.append(item)
        allowed[int(user)] = set(kept[: settings.hard_top_k])
    return removed, allowed


def max_cosine(vectors: np.ndarray, item: int, positives: np.ndarray) -> float:
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return float((unit[positives] @ unit[item]).max())


@pytest.mark.parametrize(
    "thresholds",
    [
        {"score_quantile": 0.5, "cf_similarity": 0.6, "semantic_similarity": 0.6},
        {"score_quantile": None, "cf_similarity": 0.3, "semantic_similarity": None},
        {"score_quantile": None, "cf_similarity": None, "semantic_similarity": 0.5},
    ],
)
def test_each_filter_removes_what_it_claims(tiny_chain, mining_inputs, thresholds):
    settings = tiny_chain.settings.replace(**thresholds)
    user_scoring, item_scoring, semantic, catalogue = mining_inputs
    mined = mine_pairs(user_scoring, item_scoring, semantic, catalogue, settings)
    expected, allowed = reference_filters(user_scoring, item_scoring, semantic, catalogue, settings)
    for name in FILTERS:
        assert mined.counts[f"removed_by_{name}"] == expected[name], name
        if thresholds[name] is None:
            assert expected[name] == 0
    assert sum(expected.values()) > 0  # the thresholds above do remove something on this data
    removed = sum(mined.counts[f"removed_by_{name}"] for name in FILTERS)
    assert mined.counts["kept_candidates"] == mined.counts["candidates_examined"] - removed
    for user, hard in zip(mined.users, mined.hard_negatives, strict=True):
        assert int(hard) in allowed[int(user)]


def test_filters_off_keep_every_candidate_and_strict_filters_drop_every_pair(tiny_chain, mining_inputs):
    user_scoring, item_scoring, semantic, catalogue = mining_inputs
    off = tiny_chain.settings.replace(score_quantile=None, cf_similarity=None, semantic_similarity=None)
    mined = mine_pairs(user_scoring, item_scoring, semantic, catalogue, off)
    assert mined.counts["kept_candidates"] == mined.counts["candidates_examined"] > 0
    assert len(mined.users) == mined.counts["pairs_in_budget"]
    strict = off.replace(cf_similarity=-1.0)  # every cosine exceeds -1: every candidate is removed
    mined = mine_pairs(user_scoring, item_scoring, semantic, catalogue, strict)
    assert mined.counts["removed_by_cf_similarity"] == mined.counts["candidates_examined"]
    assert len(mined.users) == 0 and mined.counts["pairs_without_hard_negative"] == mined.counts["pairs_in_budget"]
