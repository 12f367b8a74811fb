"""split_seed fixes RecBole's random split of ml-100k whatever the training seed is."""

from __future__ import annotations

import numpy as np

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import load_dataset, prepare_data

QUIET = {"state": "ERROR", "show_progress": False}


def training_pairs(seed: int, **settings) -> np.ndarray:
    config = HNLMConfig("BPR", "ml-100k", config_dict={**QUIET, "seed": seed, **settings})
    train = prepare_data(config, load_dataset(config))[0]._dataset
    users = train.inter_feat[train.uid_field].numpy().astype(np.int64)
    return np.sort(users * train.item_num + train.inter_feat[train.iid_field].numpy())


def test_split_seed_fixes_the_split_and_seed_alone_moves_it(run_settings):
    assert not np.array_equal(training_pairs(2020), training_pairs(2021))
    fixed = training_pairs(2021, split_seed=2020)
    assert np.array_equal(fixed, training_pairs(2022, split_seed=2020))
    assert not np.array_equal(fixed, training_pairs(2021))


def test_the_llm_sides_seed_follows_split_seed_so_seeds_share_one_cache():
    from recbole_hnlm.llm import LLMSettings

    assert LLMSettings.from_config({"seed": 2021, "split_seed": 2020}).seed == 2020
    assert LLMSettings.from_config({"seed": 2021, "split_seed": None}).seed == 2021
