"""Stage 2: grounded semantic negatives never include a training positive; the loader the CF side reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llm_testdata import SMOLLM2, load_split

from recbole_hnlm.errors import CacheMismatchError
from recbole_hnlm.llm import LLMSettings, load_semantic_cache
from recbole_hnlm.llm.catalogue import Catalogue
from recbole_hnlm.llm.negatives import grounded_ids, negative_units


def training_keys(train) -> np.ndarray:
    users = train.inter_feat[train.uid_field].numpy().astype(np.int64)
    return np.unique(users * train.item_num + train.inter_feat[train.iid_field].numpy())


def assert_no_training_positive(ids: np.ndarray, users: np.ndarray, train) -> None:
    keys = users[:, None].astype(np.int64) * train.item_num + ids
    assert not np.isin(keys, training_keys(train)).any()


@pytest.fixture(scope="module")
def ml100k_template(tmp_path_factory):
    """Template profiles and neighbour negatives of the full ml-100k, with the split a training run uses."""
    cache_dir = str(tmp_path_factory.mktemp("c"))
    # Short user histories keep the user-profile embedding (the slow part on CPU) small.
    config, train, held_out = load_split("ml-100k", llm="template", llm_cache_dir=cache_dir, llm_history_len=3)
    cache = load_semantic_cache(config, train, held_out)
    return config, train, held_out, cache


def test_grounding_never_returns_a_training_positive_on_ml100k(ml100k_template):
    config, train, held_out, cache = ml100k_template
    users = cache.pair_keys // train.item_num
    assert len(cache.pair_keys) == len(training_keys(train)) and (cache.neighbour_ids > 0).all()
    assert_no_training_positive(np.asarray(cache.neighbour_ids), users, train)
    # Any query, here each user's own profile vector (the nearest items are the ones they chose), is grounded
    # to items outside the user's training positives.
    catalogue = Catalogue.from_split(config, train, held_out, LLMSettings.from_config(config))
    all_users = np.arange(1, train.user_num)
    vectors = torch.from_numpy(np.array(cache.item_profile_vectors))
    ids = grounded_ids(np.asarray(cache.user_profile_vectors[1:]), all_users, vectors, catalogue, 50)
    assert (ids > 0).all()
    assert_no_training_positive(ids, all_users, train)
    summary = cache.summary
    assert summary["pairs"] == len(cache.pair_keys) and summary["generated"] is None
    rates = summary["neighbour"]
    assert 0 <= rates["false_hard_negative_rate_at_k"] <= rates["false_hard_negative_rate_at_1"] <= 1
    assert 0 < summary["uniform"]["false_hard_negative_rate_over_pairs"] < 0.1


def test_loader_lookup_is_aligned_to_recbole_ids(ml100k_template, monkeypatch):
    config, train, held_out, cache = ml100k_template
    users = train.inter_feat[train.uid_field].numpy()[:5]
    items = train.inter_feat[train.iid_field].numpy()[:5]
    found = cache.lookup(users, items)
    assert found.neighbour_ids.shape == (5, 20) and not found.has_generated.any()
    assert found.generated_vectors.shape == (5, 384) and not found.generated_vectors.any()
    assert cache.item_profile_vectors.shape == (train.item_num, cache.dim)
    toy_story = train.field2token_id[train.iid_field]["1"]
    assert cache.item_profile_vectors[toy_story] @ cache.item_profile_vectors[toy_story] == pytest.approx(1.0)
    outside = np.setdiff1d(np.arange(1, train.item_num), items[users == users[0]])[:1]
    with pytest.raises(CacheMismatchError, match="are not training pairs of cache"):
        cache.lookup(users[:1], outside)
    with pytest.raises(
        CacheMismatchError, match=r"'all-MiniLM-L6-v2' \(384-d\), but this run asks for 'all-MiniLM-L6-v2' \(768-d\)"
    ):
        load_semantic_cache(config, train, held_out, expected_dim=768)
    monkeypatch.setitem(config.final_config_dict, "llm_negative_k", 5)
    with pytest.raises(
        CacheMismatchError, match="'k': 20.*but this run asks for.*'k': 5.*Fix: python -m recbole_hnlm.llm"
    ):
        load_semantic_cache(config, train, held_out, build=False)


def test_pair_units_spread_over_users_before_repeating(tiny_split):
    config, train, held_out = tiny_split
    catalogue = Catalogue.from_split(config, train, held_out, LLMSettings.from_config(config))
    users, items = negative_units(catalogue, "pair", seed=2020)
    active = np.unique(train.inter_feat[train.uid_field].numpy())
    assert len(set(users[: len(active)].tolist())) == len(active)
    assert np.array_equal(np.sort(users * catalogue.n_items + items), catalogue.train_pair_keys())
    again, _ = negative_units(catalogue, "pair", seed=2020)
    assert np.array_equal(users, again)
    per_user, anchor = negative_units(catalogue, "user", seed=2020)
    assert sorted(per_user.tolist()) == active.tolist() and (anchor == -1).all()


@pytest.mark.parametrize("unit", ["user", "pair"])
def test_smollm2_negatives_under_a_budget(unit, tiny_config, tiny_split, reuse_smollm2, smollm2_cache_dir):
    settings = {"llm_negative_unit": unit, "llm_negative_budget": 3, "llm_cache_dir": smollm2_cache_dir}
    config = tiny_config(**SMOLLM2, **settings)
    _, train, held_out = tiny_split
    cache = load_semantic_cache(config, train, held_out)
    generated = cache.summary["generated"]
    assert generated["units_in_budget"] == 3 and generated["ok"] + generated["failed"] == 3
    assert generated["units_total"] == (generated["users_total"] if unit == "user" else len(cache.pair_keys))
    units = np.load(cache.folder.path / "negatives" / "generated_units.npy")
    ok_rows = np.flatnonzero(np.asarray(cache.generated_ids)[:, 0] > 0)
    assert len(ok_rows) == generated["ok"]
    assert_no_training_positive(np.asarray(cache.generated_ids)[ok_rows], units[ok_rows, 0], train)
    users, items = np.divmod(np.asarray(cache.pair_keys), train.item_num)
    found = cache.lookup(users, items)
    assert found.has_generated.sum() == generated["pairs_covered"]
    covered_users = set(units[ok_rows, 0].tolist())
    assert set(users[found.has_generated].tolist()) <= covered_users
    assert np.abs(np.linalg.norm(found.generated_vectors[found.has_generated], axis=1) - 1).max() < 1e-5
    if unit == "pair":
        assert generated["pairs_covered"] == generated["ok"]
