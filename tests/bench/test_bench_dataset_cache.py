"""Reusing a loaded dataset: one load per loading settings, a private copy per run, each run's own config."""

from __future__ import annotations

from recbole_hnlm.bench.dataset_cache import LoadedDatasetCache, loading_key
from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import prepare_data

QUIET = {"state": "ERROR"}


def test_one_load_per_loading_settings_and_a_private_copy_per_run():
    cache = LoadedDatasetCache()
    bpr = HNLMConfig("BPR", "ml-100k", config_dict={**QUIET, "neg_sampler": "uniform"})
    lightgcn = HNLMConfig("LightGCN", "ml-100k", config_dict={**QUIET, "neg_sampler": "dns", "seed": 7})
    filtered = HNLMConfig("BPR", "ml-100k", config_dict={**QUIET, "user_inter_num_interval": "[30,inf)"})
    assert loading_key(bpr) == loading_key(lightgcn) != loading_key(filtered)

    first = cache(bpr)
    prepare_data(bpr, first)  # build() changes the dataset it splits
    second = cache(lightgcn)
    assert second is not first and second.config is lightgcn and second.config["seed"] == 7
    train, valid, test = prepare_data(lightgcn, second)  # a copy of the data as loaded, not as built
    assert len(train.dataset) + len(valid.dataset) + len(test.dataset) == 100_000
    assert (cache.loads, cache.reuses) == (1, 1)

    assert cache(filtered).user_num < first.user_num
    assert cache.loads == 2
