"""The hnlm sampler on real ml-100k with template profiles: batch fields, row order, config resolution and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recbole.utils import init_seed

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import load_dataset
from recbole_hnlm.errors import ConfigurationError, UnsupportedModelError
from recbole_hnlm.hnlm import SemanticNegativeSampler
from recbole_hnlm.hnlm.model import SEMANTIC_IDS_FIELD
from recbole_hnlm.quick_start import prepare_run_data

CANDIDATES_FIELD = "neg_candidates"
QUIET = {"state": "ERROR", "show_progress": False}


@pytest.fixture(scope="session")
def hnlm_cache_dir(tmp_path_factory) -> str:
    """One LLM cache root for the session; tests/model/test_hnlmrec.py names the same one, so it is built once."""
    return str(tmp_path_factory.getbasetemp() / "hnlm-llm-cache")


def hnlm_config(cache_dir: str, model: str = "LightGCN", **settings) -> HNLMConfig:
    return HNLMConfig(
        model, "ml-100k", config_dict={**QUIET, "neg_sampler": "hnlm", "llm_cache_dir": cache_dir, **settings}
    )


def prepared(config):
    """Dataloaders split as quick_start.run splits them, with the LLM cache built or opened."""
    init_seed(config["seed"], config["reproducibility"])
    return prepare_run_data(config, load_dataset(config))


def test_batches_carry_semantic_ids_and_candidates_in_repeated_row_order(hnlm_cache_dir):
    config = hnlm_config(hnlm_cache_dir, sample_num=2, hnlm_semantic_candidates=5, candidate_num=4)
    train_data, _, _ = prepared(config)
    sampler = train_data.negative_sampler
    assert isinstance(sampler, SemanticNegativeSampler) and sampler.cache is not None
    batch = next(iter(train_data))
    users, items = batch[config["USER_ID_FIELD"]], batch[config["ITEM_ID_FIELD"]]
    rows = len(users)
    half = rows // 2
    # RecBole repeats the positives once per negative: rows k * half .. (k + 1) * half - 1 hold the k-th negative.
    assert torch.equal(users[:half], users[half:]) and torch.equal(items[:half], items[half:])
    semantic = batch[SEMANTIC_IDS_FIELD]
    assert semantic.shape == (rows, 5) and semantic.dtype == torch.int64
    expected = sampler.cache.lookup(users[:half].numpy(), items[:half].numpy()).neighbour_ids[:, :5]
    assert np.array_equal(semantic[:half].numpy(), expected) and torch.equal(semantic[:half], semantic[half:])
    candidates = batch[CANDIDATES_FIELD]
    assert candidates.shape == (rows, 4)
    positives = sampler.positives
    for ids in (candidates, semantic, batch[config["NEG_PREFIX"] + config["ITEM_ID_FIELD"]].unsqueeze(1)):
        real = ids > 0
        assert not positives.contains(users.unsqueeze(1).expand_as(ids)[real].numpy(), ids[real].numpy()).any()
    assert (semantic > 0).float().mean() > 0.99  # the cache pads with 0 only where too few items qualify


def test_uniform_base_attaches_no_candidates(hnlm_cache_dir):
    train_data, _, _ = prepared(hnlm_config(hnlm_cache_dir, hnlm_base_negative="uniform"))
    batch = next(iter(train_data))
    assert CANDIDATES_FIELD not in batch and SEMANTIC_IDS_FIELD in batch


def test_model_with_neg_sampler_hnlm_is_hnlmrec_around_it():
    by_sampler = HNLMConfig("LightGCN", "ml-100k", cmd_args=["--neg_sampler=hnlm"])
    by_name = HNLMConfig("HNLMRec", "ml-100k", cmd_args=["--backbone=LightGCN"])
    assert by_sampler.final_config_dict == by_name.final_config_dict
    assert (by_sampler["model"], by_sampler["backbone"], by_sampler["neg_sampler"]) == ("HNLMRec", "LightGCN", "hnlm")
    plain = HNLMConfig("LightGCN", "ml-100k").final_config_dict
    # The backbone's own defaults (RecBole's LightGCN.yaml) are those of a plain LightGCN run.
    assert all(by_sampler[key] == plain[key] for key in ("n_layers", "reg_weight", "embedding_size", "require_pow"))
    sgl = HNLMConfig("HNLMRec", "ml-100k", config_dict={"backbone": "SGL"})
    assert (sgl["n_layers"], sgl["ssl_weight"], sgl["llm"]) == (3, 0.05, "template")


@pytest.mark.parametrize(
    ("model", "settings", "message"),
    [
        ("LightGCN", {"hnlm_negative_source": "random"}, "hnlm_negative_source='random' is invalid"),
        ("LightGCN", {"hnlm_base_negative": "hnlm"}, "hnlm_base_negative='hnlm' is invalid"),
        ("LightGCN", {"hnlm_base_negative": "dns_mn", "dns_top_n": 40}, "dns_top_n=40 is invalid"),
        ("LightGCN", {"hnlm_base_negative": "dins", "dins_alpha": 0}, "dins_alpha=0 is invalid"),
        ("LightGCN", {"hnlm_projector": "cnn"}, "hnlm_projector='cnn' is invalid"),
        ("LightGCN", {"hnlm_mix_weight": 1.5}, "hnlm_mix_weight=1.5 is invalid"),
        ("LightGCN", {"hnlm_align_weight": -0.1}, "hnlm_align_weight=-0.1 is invalid"),
        ("LightGCN", {"hnlm_temperature": 0}, "hnlm_temperature=0 is invalid"),
        ("LightGCN", {"hnlm_semantic_candidates": 21}, "from 1 to llm_negative_k=20"),
        ("LightGCN", {"hnlm_base_negative": "dns", "candidate_num": 0}, "candidate_num=0 is invalid"),
        ("LightGCN", {"hnlm_negative_source": "vector"}, "llm=template writes none"),
        ("LightGCN", {"hnlm_negative_source": "generated"}, "--hnlm_negative_source=neighbour"),
        ("LightGCN", {"backbone": "BPR"}, "--model=HNLMRec --backbone=BPR"),
        ("HNLMRec", {"neg_sampler": "dns"}, "not neg_sampler=dns"),
        ("HNLMRec", {"backbone": "HNLMRec"}, "HNLMRec needs a model to wrap"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(model, settings, message):
    config_dict = {"neg_sampler": "hnlm", **settings} if model != "HNLMRec" else settings
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[").replace("+", r"\+")):
        HNLMConfig(model, "ml-100k", config_dict={**QUIET, **config_dict})


def test_backbone_without_adapter_is_refused():
    with pytest.raises(UnsupportedModelError, match="has no model adapter"):
        HNLMConfig("SimpleX", "ml-100k", config_dict={**QUIET, "neg_sampler": "hnlm"})
