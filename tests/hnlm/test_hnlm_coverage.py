"""hnlm on real ml-100k with template profiles: the semantic fallback chain and its coverage count, and any
registered sampler as the base (its own picks and syntheses, on HNLMRec's propagation)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from recbole.utils import init_seed

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import load_dataset
from recbole_hnlm.hnlm.model import HAS_SEMANTIC_FIELD, SEMANTIC_IDS_FIELD, SEMANTIC_VECTORS_FIELD
from recbole_hnlm.model import get_model
from recbole_hnlm.quick_start import prepare_run_data, run
from recbole_hnlm.samplers import get_sampler_class

QUIET = {"state": "ERROR", "show_progress": False}


@pytest.fixture(scope="session")
def hnlm_cache_dir(tmp_path_factory) -> str:
    """One LLM cache root for the session; the other hnlm test modules name the same one, so it is built once."""
    return str(tmp_path_factory.getbasetemp() / "hnlm-llm-cache")


def hnlm_config(cache_dir: str, **settings) -> HNLMConfig:
    return HNLMConfig(
        "LightGCN", "ml-100k", config_dict={**QUIET, "neg_sampler": "hnlm", "llm_cache_dir": cache_dir, **settings}
    )


def prepared_train_data(config):
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = prepare_run_data(config, load_dataset(config))
    return train_data


@pytest.fixture(scope="module")
def neighbour_train_data(hnlm_cache_dir):
    return prepared_train_data(hnlm_config(hnlm_cache_dir))


@pytest.fixture
def llm_negatives_on_every_third_pair(neighbour_train_data, monkeypatch):
    """The cache of the module's sampler, given stand-in LLM negatives (ids and vectors) on every third pair."""
    cache = neighbour_train_data.negative_sampler.cache
    units = np.full(len(cache.pair_keys), -1, dtype=np.int64)
    covered_rows = np.arange(0, len(units), 3)
    units[covered_rows] = np.arange(len(covered_rows))
    rng = np.random.default_rng(0)
    generated = rng.integers(1, cache.n_items, (len(covered_rows), cache.neighbour_ids.shape[1])).astype(np.int32)
    vectors = rng.standard_normal((len(covered_rows), cache.dim)).astype(np.float32)
    monkeypatch.setattr(cache, "pair_generated_unit", units)
    monkeypatch.setattr(cache, "generated_ids", generated)
    monkeypatch.setattr(cache, "generated_vectors", vectors)
    return cache, units, generated, vectors


def use_source(sampler, source: str, monkeypatch) -> None:
    monkeypatch.setattr(sampler, "source", source)
    monkeypatch.setattr(sampler, "table", sampler.cache.negative_table(source, sampler.semantic_candidates))
    monkeypatch.setattr(sampler, "served", np.zeros_like(sampler.served))


def test_a_pair_without_a_generated_negative_gets_the_neighbour_one_and_is_counted_so(
    neighbour_train_data, llm_negatives_on_every_third_pair, monkeypatch
):
    cache, units, generated, _ = llm_negatives_on_every_third_pair
    sampler = neighbour_train_data.negative_sampler
    use_source(sampler, "generated", monkeypatch)
    batch = next(iter(neighbour_train_data))
    users, items = batch[sampler.uid_field].numpy(), batch[sampler.iid_field].numpy()
    rows = cache.pair_rows(users, items)
    covered = units[rows] >= 0
    assert covered.any() and (~covered).any()
    ids, k = batch[SEMANTIC_IDS_FIELD].numpy(), sampler.semantic_candidates
    assert np.array_equal(ids[covered], generated[units[rows[covered]], :k])
    assert np.array_equal(ids[~covered], np.asarray(cache.neighbour_ids)[rows[~covered], :k])
    assert (ids > 0).any(axis=1).all()  # every pair has a semantic negative
    share = round(float(covered.mean()), 4)
    assert sampler.semantic_coverage() == {"generated": share, "neighbour": round(1 - float(covered.mean()), 4)}
    details = sampler.run_details()
    assert details["semantic_coverage"] == sampler.semantic_coverage()
    assert details["semantic_negatives"]["fallback"] == ["neighbour"]


def test_a_pair_without_a_description_vector_gets_the_neighbour_ids(
    neighbour_train_data, llm_negatives_on_every_third_pair, monkeypatch
):
    cache, units, _, vectors = llm_negatives_on_every_third_pair
    sampler = neighbour_train_data.negative_sampler
    use_source(sampler, "vector", monkeypatch)
    batch = next(iter(neighbour_train_data))
    rows = cache.pair_rows(batch[sampler.uid_field].numpy(), batch[sampler.iid_field].numpy())
    has_vector = batch[HAS_SEMANTIC_FIELD].numpy()
    assert np.array_equal(has_vector, units[rows] >= 0) and has_vector.any() and not has_vector.all()
    assert np.array_equal(batch[SEMANTIC_VECTORS_FIELD].numpy()[has_vector], vectors[units[rows[has_vector]]])
    assert not batch[SEMANTIC_VECTORS_FIELD].numpy()[~has_vector].any()
    neighbours = np.asarray(cache.neighbour_ids)[rows, : sampler.semantic_candidates]
    assert np.array_equal(batch[SEMANTIC_IDS_FIELD].numpy(), neighbours)
    assert set(sampler.semantic_coverage()) == {"vector", "neighbour"}
    assert sum(sampler.semantic_coverage().values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("base", ["dns_mn", "mixgcf"])
def test_the_base_samplers_own_code_makes_the_sampled_negative(hnlm_cache_dir, base):
    config = hnlm_config(hnlm_cache_dir, hnlm_base_negative=base, hnlm_mix_weight=0.0, hnlm_align_weight=0.0)
    train_data = prepared_train_data(config)
    sampler = train_data.negative_sampler
    assert type(sampler.base) is get_sampler_class(base)
    batch = next(iter(train_data))
    assert sampler.base.candidates_field in batch
    init_seed(3, True)
    model = get_model(config["model"])(config, train_data._dataset)
    plain = HNLMConfig("LightGCN", "ml-100k", config_dict={**QUIET, "neg_sampler": base})
    own = get_sampler_class(base)(plain, train_data._dataset)  # the base as its own run would build it
    own.rng = copy.deepcopy(sampler.base.rng)
    torch.manual_seed(5)
    loss = model.mixed_loss(sampler.base, batch)
    torch.manual_seed(5)
    expected = own.training_loss(model.backbone)(batch)
    # Without the semantic part and the alignment, HNLMRec is the base sampler's own training of the backbone.
    torch.testing.assert_close(loss, expected)
    if base == "dns_mn":  # the same candidates and the same draw: the same pick, one of the N best candidates
        with torch.no_grad():
            user_layers, item_layers = model.adapter.propagate()
            table = model.adapter.pool(item_layers)
            own.rng = copy.deepcopy(sampler.base.rng)
            picks = own.pick_in_loss(model.adapter, batch, user_layers, table)
            users = model.adapter.pool(user_layers[batch[model.USER_ID]])
            negatives = model.sampled_negatives(sampler.base, batch, user_layers, table, users)
            candidates = batch[own.candidates_field]
            best = candidates.gather(1, (users.unsqueeze(1) * table[candidates]).sum(-1).topk(own.top_n).indices)
        assert torch.equal(negatives, picks)
        assert (best == picks.unsqueeze(1)).any(dim=1).all()


@pytest.mark.parametrize("base", ["dns_mn", "mixgcf"])
def test_hnlm_over_another_base_trains_one_epoch(hnlm_cache_dir, run_settings, base):
    result = run(
        "LightGCN",
        "ml-100k",
        config_dict={
            **run_settings,
            "neg_sampler": "hnlm",
            "hnlm_base_negative": base,
            "epochs": 1,
            "llm_cache_dir": hnlm_cache_dir,
        },
    )
    assert result["semantic_negatives"]["base_sampler"] == base
    assert result["semantic_coverage"] == {"neighbour": 1.0}
    assert result["test_result"]["recall@20"] > 0.05  # an untrained model scores about 0.01
