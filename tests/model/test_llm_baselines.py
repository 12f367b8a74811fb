"""RLMRec and AlphaRec on a small real slice of ml-100k with template profiles: losses, gradients, config, runs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from ml100k_slices import write_ml100k_slice
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import load_dataset, prepare_data
from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.llm_cf.alpharec import AlphaRec
from recbole_hnlm.llm_cf.rlmrec import RLMRec, first_rows
from recbole_hnlm.model import MODEL_ZOO, get_model, supported_models
from recbole_hnlm.model.adapters import get_adapter
from recbole_hnlm.quick_start import load_data_and_model, prepare_run_data, run
from recbole_hnlm.trainer import create_trainer

QUIET = {"state": "ERROR", "show_progress": False}
SLICE = "ml-100k-llmcf"


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> dict:
    """Data and LLM cache of the module: 50 real users of ml-100k over items 1-120, template profiles (built once)."""
    root = tmp_path_factory.mktemp("llmcf-data")
    write_ml100k_slice(root, SLICE, max_item=120, history=(8, 40), n_users=50)
    return {**QUIET, "data_path": str(root), "llm_cache_dir": str(tmp_path_factory.mktemp("llmcf-cache"))}


@pytest.fixture(scope="module")
def split(settings):
    """(config, train dataloader) of RLMRec around LightGCN on the slice; AlphaRec tests reuse the split."""
    config = HNLMConfig("RLMRec", SLICE, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = prepare_data(config, load_dataset(config))
    return config, train_data


def build(model: str, settings: dict, train_data, **overrides):
    config = HNLMConfig(model, SLICE, config_dict={**settings, **overrides})
    init_seed(3, True)
    recommender = get_model(config["model"])(config, train_data._dataset)
    recommender.train()
    return recommender


def first_batch(train_data) -> Interaction:
    init_seed(4, True)
    return next(iter(train_data))


def test_both_are_in_the_zoo_and_take_sampled_negatives():
    assert MODEL_ZOO["RLMRec"] is RLMRec and MODEL_ZOO["AlphaRec"] is AlphaRec
    assert {"RLMRec", "AlphaRec"} <= set(supported_models())


def test_alpharec_has_no_id_embedding_table(settings, split):
    model = build("AlphaRec", settings, split[1])
    assert not any(isinstance(module, torch.nn.Embedding) for module in model.modules())
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable and all(name.startswith("text_mlp.") for name in trainable)
    assert model.state_dict().keys() == {f"{name}" for name in trainable}  # text vectors come from the cache


@pytest.mark.parametrize("model", ["AlphaRec", "RLMRec"])
def test_both_read_the_profile_vectors_of_the_hnlm_samplers_cache(model, settings, split):
    config = HNLMConfig("LightGCN", SLICE, config_dict={**settings, "neg_sampler": "hnlm"})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = prepare_run_data(config, load_dataset(config))  # builds the negatives stage too
    cache = train_data.negative_sampler.cache
    recommender = build(model, settings, split[1])
    assert recommender.text_profiles == {
        "llm": "template",
        "llm_model": "rules-v1",
        "embedding_model": "all-MiniLM-L6-v2",
        "cache": str(cache.folder.path),
    }
    items = recommender.item_text_vectors if model == "AlphaRec" else recommender.item_profile_vectors
    assert torch.equal(items, torch.from_numpy(cache.item_profile_vectors.copy()))


def test_alpharec_user_text_is_the_mean_of_their_training_items(settings, split):
    model = build("AlphaRec", settings, split[1])
    dataset = split[1]._dataset
    users = dataset.inter_feat[dataset.uid_field]
    items = dataset.inter_feat[dataset.iid_field]
    user = int(users[0])
    expected = model.item_text_vectors[items[users == user].unique()].mean(dim=0)
    torch.testing.assert_close(model.user_text_vectors[user], expected)


def test_alpharec_loss_is_the_cosine_infonce_and_reaches_the_mlp(settings, split):
    model = build("AlphaRec", settings, split[1], alpharec_shared_negatives=0)
    batch = first_batch(split[1])
    loss = model.calculate_loss(batch)
    users, items = model.forward()
    user = users[batch[model.USER_ID]]
    margin = (user * items[batch[model.NEG_ITEM_ID]]).sum(-1) - (user * items[batch[model.ITEM_ID]]).sum(-1)
    # With one negative per positive, the InfoNCE is log(1 + e^((s- - s+) / t)).
    torch.testing.assert_close(loss, F.softplus(margin / model.temperature).mean())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in model.parameters())


def test_alpharec_contrasts_each_positive_with_all_its_sample_num_negatives(settings):
    config = HNLMConfig("AlphaRec", SLICE, config_dict={**settings, "sample_num": 3, "alpharec_shared_negatives": 0})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = prepare_data(config, load_dataset(config))
    model = get_model("AlphaRec")(config, train_data._dataset)
    batch = first_batch(train_data)
    users, items = model.forward()
    rows = len(batch) // 3
    expected = []
    for row in range(rows):
        copies = [row + k * rows for k in range(3)]  # RecBole's repeated batch: one copy of the positive per negative
        assert len({int(batch[model.ITEM_ID][copy]) for copy in copies}) == 1
        candidates = [int(batch[model.ITEM_ID][row])] + [int(batch[model.NEG_ITEM_ID][copy]) for copy in copies]
        logits = items[candidates] @ users[batch[model.USER_ID][row]] / model.temperature
        expected.append(torch.logsumexp(logits, dim=0) - logits[0])
    torch.testing.assert_close(model.calculate_loss(batch), torch.stack(expected).mean())


def test_alpharec_shared_negatives_add_terms_but_never_the_users_positives(settings, split):
    own_only = build("AlphaRec", settings, split[1], alpharec_shared_negatives=0)
    shared = build("AlphaRec", settings, split[1], alpharec_shared_negatives=64)
    batch = first_batch(split[1])
    assert shared.calculate_loss(batch) > own_only.calculate_loss(batch)  # more terms in each denominator
    dataset = split[1]._dataset
    users, items = dataset.inter_feat[dataset.uid_field], dataset.inter_feat[dataset.iid_field]
    mask = shared.is_training_pair(users[:50], items[:50])
    assert mask.diagonal().all()  # (user_k, item_k) is a training pair
    for row in range(0, 50, 7):
        for column in range(50):
            expected = bool(((users == users[row]) & (items == items[column])).any())
            assert bool(mask[row, column]) == expected


def test_rlmrec_without_its_term_is_the_backbone_and_with_it_reaches_the_mlp(settings, split):
    plain = build("RLMRec", settings, split[1], rlmrec_kd_weight=0.0)
    batch = first_batch(split[1])
    torch.testing.assert_close(plain.calculate_loss(batch), plain.backbone.calculate_loss(batch))
    model = build("RLMRec", settings, split[1])
    loss = model.calculate_loss(batch)
    backbone_loss = model.backbone.calculate_loss(batch)
    assert torch.isfinite(loss) and not torch.isclose(loss, backbone_loss)
    # The term is 0.01 * three InfoNCEs over at most a batch of distinct ids: positive, and at most 3 log(batch).
    assert 0 < (loss - backbone_loss).item() <= 0.01 * 3 * math.log(len(batch)) + 1e-6
    loss.backward()
    assert all(
        parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in model.text_mlp.parameters()
    )
    assert model.backbone.user_embedding.weight.grad.abs().sum() > 0


def test_rlmrec_contrasts_distinct_ids_so_repeated_rows_change_nothing(settings, split):
    assert first_rows(torch.tensor([5, 3, 5, 7, 3])).tolist() == [1, 0, 3]  # rows of 3, 5, 7
    model = build("RLMRec", settings, split[1])
    batch = first_batch(split[1])
    users, positives, negatives = (batch[field][:300] for field in (model.USER_ID, model.ITEM_ID, model.NEG_ITEM_ID))
    user_layers, item_layers = model.adapter.propagate()

    def term(repeat: int) -> torch.Tensor:
        ids = [each.repeat(repeat) for each in (users, positives, negatives)]
        pooled = [
            model.adapter.pool(layers[each])
            for layers, each in zip((user_layers, item_layers, item_layers), ids, strict=True)
        ]
        return model.contrastive_loss(*ids, *pooled)

    torch.testing.assert_close(term(2), term(1))


def test_rlmrec_takes_its_backbones_defaults(settings):
    rlmrec = HNLMConfig("RLMRec", SLICE, config_dict=settings)
    lightgcn = HNLMConfig("LightGCN", SLICE, config_dict=settings)
    assert (rlmrec["model"], rlmrec["backbone"]) == ("RLMRec", "LightGCN")
    assert all(rlmrec[key] == lightgcn[key] for key in ("n_layers", "reg_weight", "embedding_size", "require_pow"))
    assert (rlmrec["rlmrec_kd_weight"], rlmrec["rlmrec_kd_temperature"], rlmrec["llm"]) == (0.01, 0.2, "template")
    bpr = HNLMConfig("RLMRec", SLICE, config_dict={**settings, "backbone": "BPR"})
    assert bpr["backbone"] == "BPR" and bpr["n_layers"] is None


def test_rlmrec_refuses_the_hnlm_sampler(settings):
    with pytest.raises(ConfigurationError, match="but RLMRec wraps a backbone itself.*Fix:"):
        HNLMConfig("RLMRec", SLICE, config_dict={**settings, "neg_sampler": "hnlm"})


@pytest.mark.parametrize("model", ["AlphaRec", "RLMRec"])
def test_adapter_loss_on_a_given_negative_matches_the_models_own(model, settings, split):
    """mixgcf and dins train through the adapter: on an id negative its loss is the model's (RLMRec: less its
    negative's contrastive term, since a synthesized negative has no profile)."""
    recommender = build(model, settings, split[1], alpharec_shared_negatives=0, rlmrec_kd_weight=0.0)
    adapter = get_adapter(recommender)
    batch = first_batch(split[1])
    users, items = adapter.propagate()
    loss = adapter.pairwise_loss(
        batch,
        users[batch[recommender.USER_ID]],
        items[batch[recommender.ITEM_ID]],
        items[batch[recommender.NEG_ITEM_ID]],
    )
    torch.testing.assert_close(loss, recommender.calculate_loss(batch))


@pytest.mark.parametrize("sampler", ["uniform", "popularity", "dns", "dns_mn", "ahns", "mixgcf", "dins"])
@pytest.mark.parametrize("model", ["AlphaRec", "RLMRec"])
def test_one_epoch_trains_with_every_id_and_mixing_sampler(model, sampler, settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole's logger writes log/ under the working directory
    config_dict = {**settings, "results_dir": None, "neg_sampler": sampler, "epochs": 1}
    result = run(model, SLICE, config_dict=config_dict, saved=False)
    assert result["model"] == model and result["neg_sampler"] == sampler
    assert len(result["train_loss"]) == 1 and math.isfinite(result["train_loss"][0])
    assert result["test_result"]["recall@20"] > 0


@pytest.mark.parametrize("model", ["AlphaRec", "RLMRec"])
def test_a_saved_run_reloads_to_the_same_test_result(model, settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saved = {"checkpoint_dir": str(tmp_path / "saved"), "results_dir": str(tmp_path / "results")}
    result = run(model, SLICE, config_dict={**settings, **saved, "neg_sampler": "dns", "epochs": 2})
    config, reloaded, _, _, _, test_data = load_data_and_model(result["checkpoint"])
    assert type(reloaded).__name__ == model
    again = create_trainer(config, reloaded).evaluate(test_data, load_best_model=False)
    assert dict(again) == result["test_result"]


@pytest.mark.parametrize("model", ["AlphaRec", "RLMRec"])
def test_gradients_are_bitwise_repeatable_on_a_large_batch(model, settings, split):
    """Same seed, same run: no backward op may sum in a varying order (indexing's backward on CPU does)."""
    recommender = build(model, settings, split[1])
    generator = torch.Generator().manual_seed(5)
    rows = 4096
    batch = Interaction(
        {
            recommender.USER_ID: torch.randint(1, recommender.n_users, (rows,), generator=generator),
            recommender.ITEM_ID: torch.randint(1, recommender.n_items, (rows,), generator=generator),
            recommender.NEG_ITEM_ID: torch.randint(1, recommender.n_items, (rows,), generator=generator),
        }
    )

    def gradients() -> list[torch.Tensor]:
        recommender.zero_grad()
        torch.manual_seed(6)  # AlphaRec's shared negatives
        recommender.calculate_loss(batch).backward()
        return [parameter.grad.clone() for parameter in recommender.parameters()]

    first = gradients()
    for _ in range(5):
        assert all(torch.equal(a, b) for a, b in zip(first, gradients(), strict=True))
