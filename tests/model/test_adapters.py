"""Model adapters on real ml-100k batches: the same embeddings, scores and loss as the models themselves."""

from __future__ import annotations

import pytest
import torch
from recbole.utils import init_seed

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import load_dataset, prepare_data
from recbole_hnlm.errors import ConfigurationError, UnsupportedModelError
from recbole_hnlm.model import adapters, get_model
from recbole_hnlm.model.adapters import (
    BPRAdapter,
    ModelAdapter,
    adapter_class_for,
    candidate_scores,
    get_adapter,
    register_adapter,
    scoring_mode,
)

QUIET = {"state": "ERROR", "show_progress": False}
ADAPTED = ["BPR", "LightGCN", "NGCF", "SGL"]
# Layers 0..L under RecBole's defaults: BPR has none to propagate, LightGCN 2, NGCF 3 ([64, 64, 64]), SGL 3.
EXPECTED_LAYERS = {"BPR": 1, "LightGCN": 3, "NGCF": 4, "SGL": 4}


@pytest.fixture(scope="module")
def ml100k_train():
    """(train dataset, one real training batch of 2048 rows with uniform negatives)."""
    config = HNLMConfig("BPR", "ml-100k", config_dict=QUIET)
    train_data, _, _ = prepare_data(config, load_dataset(config))
    init_seed(config["seed"], True)
    return train_data._dataset, next(iter(train_data))


def build_model(name: str, train_dataset, **settings):
    config = HNLMConfig(name, "ml-100k", config_dict={**QUIET, **settings})
    init_seed(11, True)
    model = get_model(name)(config, train_dataset)
    model.train()  # SGL builds its augmented views here
    return model


def batch_layers(adapter: ModelAdapter, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    model = adapter.model
    users, items = adapter.propagate()
    return users[batch[model.USER_ID]], items[batch[model.ITEM_ID]], items[batch[model.NEG_ITEM_ID]]


@pytest.mark.parametrize("name", ADAPTED)
def test_pooled_layers_score_like_the_model(name, ml100k_train):
    train_dataset, batch = ml100k_train
    model = build_model(name, train_dataset)
    torch.nn.Module.train(model, False)  # no dropout, so propagate() and predict() see the same graph
    adapter = get_adapter(model)
    users, items = adapter.propagate()
    assert users.shape == (train_dataset.user_num, EXPECTED_LAYERS[name], 64)
    assert items.shape == (train_dataset.item_num, EXPECTED_LAYERS[name], 64)
    user_e, pos_e, _ = batch_layers(adapter, batch)
    scores = (adapter.pool(user_e) * adapter.pool(pos_e)).sum(dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(scores.detach(), model.predict(batch), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ADAPTED)
def test_pairwise_loss_on_item_negatives_is_the_models_own_loss(name, ml100k_train):
    train_dataset, batch = ml100k_train
    model = build_model(name, train_dataset)
    adapter = get_adapter(model)
    torch.manual_seed(0)  # NGCF's message dropout draws the same masks in both passes
    expected = model.calculate_loss(batch)
    torch.manual_seed(0)
    actual = adapter.pairwise_loss(batch, *batch_layers(adapter, batch))
    torch.testing.assert_close(actual.reshape(()), expected.reshape(()), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooled", [False, True])  # the tables pooled by the loss; handed over by pooled_layers
@pytest.mark.parametrize("name", ADAPTED)
def test_loss_on_item_negatives_is_the_models_own_loss(name, pooled, ml100k_train):
    """item_negative_loss (LightGCN's own, cheaper form; the per-layer default elsewhere) is calculate_loss, also on
    the pooled tables of ``pooled_layers`` (LightGCN's split from one pooling of the stack)."""
    train_dataset, batch = ml100k_train
    model = build_model(name, train_dataset)
    adapter = get_adapter(model)
    weights = model.user_embedding.weight
    torch.manual_seed(0)  # NGCF's message dropout draws the same masks in both passes
    expected = model.calculate_loss(batch)
    expected_gradient = torch.autograd.grad(expected, weights)[0]
    torch.manual_seed(0)
    if pooled:
        layers = adapter.pooled_layers()
        actual = adapter.item_negative_loss(
            batch, layers.users, layers.items, batch[model.NEG_ITEM_ID], layers.item_table, None, layers.user_table
        )
        assert (layers.user_table is not None) == (name == "LightGCN")
    else:
        actual = adapter.item_negative_loss(batch, *adapter.propagate(), batch[model.NEG_ITEM_ID])
    torch.testing.assert_close(actual.reshape(()), expected.reshape(()), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.autograd.grad(actual, weights)[0], expected_gradient, rtol=1e-4, atol=1e-7)
    assert expected_gradient.abs().sum() > 0


def test_lightgcn_regularisation_follows_require_pow(ml100k_train):
    train_dataset, batch = ml100k_train
    model = build_model("LightGCN", train_dataset, require_pow=True, reg_weight=0.5)
    adapter = get_adapter(model)
    expected = model.calculate_loss(batch)
    torch.testing.assert_close(adapter.pairwise_loss(batch, *batch_layers(adapter, batch)), expected)


def test_sgl_loss_keeps_its_contrastive_term(ml100k_train):
    train_dataset, batch = ml100k_train
    model = build_model("SGL", train_dataset)
    adapter = get_adapter(model)
    user_e, pos_e, neg_e = batch_layers(adapter, batch)
    with_ssl = adapter.pairwise_loss(batch, user_e, pos_e, neg_e)
    model.ssl_weight = 0.0
    without_ssl = adapter.pairwise_loss(batch, user_e, pos_e, neg_e)
    assert with_ssl > without_ssl


@pytest.mark.parametrize("name", ADAPTED)
def test_layer_queries_split_the_score_over_layers(name, ml100k_train):
    train_dataset, batch = ml100k_train
    model = build_model(name, train_dataset)
    torch.nn.Module.train(model, False)
    adapter = get_adapter(model)
    with torch.no_grad():
        user_e, pos_e, _ = batch_layers(adapter, batch)
        per_layer = (adapter.layer_queries(user_e) * pos_e).sum(dim=-1)  # (batch, layers)
        score = (adapter.pool(user_e) * adapter.pool(pos_e)).sum(dim=-1)
    # Mean pooling: each layer is scored against the pooled user, so the layers sum to n_layers * score.
    factor = 1 if adapter.pooling == "concat" else EXPECTED_LAYERS[name]
    torch.testing.assert_close(per_layer.sum(dim=1), factor * score, rtol=1e-4, atol=1e-5)


def test_model_without_adapter_is_refused_with_the_models_that_have_one():
    with pytest.raises(UnsupportedModelError, match="SpectralCF") as error:
        adapter_class_for("SpectralCF")
    assert "AlphaRec, BPR, LightGCN, NGCF, RLMRec, SGL" in str(error.value)
    with pytest.raises(UnsupportedModelError, match="AlphaRec, BPR, LightGCN, NGCF, RLMRec, SGL"):
        HNLMConfig("SpectralCF", "ml-100k", config_dict={**QUIET, "neg_sampler": "mixgcf"})


def test_ngcf_with_layers_of_other_sizes_is_refused():
    with pytest.raises(ConfigurationError, match="hidden_size_list"):
        HNLMConfig("NGCF", "ml-100k", config_dict={**QUIET, "neg_sampler": "dins", "hidden_size_list": [64, 32]})


def test_register_adapter_checks_what_it_registers(monkeypatch):
    monkeypatch.setattr(adapters, "ADAPTER_REGISTRY", dict(adapters.ADAPTER_REGISTRY))

    @register_adapter("TinyMF")
    class TinyMFAdapter(BPRAdapter):
        pooling = "sum"

    assert adapter_class_for("TinyMF") is TinyMFAdapter
    with pytest.raises(ConfigurationError, match="already has an adapter"):
        register_adapter("TinyMF")(BPRAdapter)
    assert register_adapter("TinyMF", replace=True)(BPRAdapter) is BPRAdapter
    with pytest.raises(ConfigurationError, match="pooling"):

        @register_adapter("OddMF")
        class OddAdapter(BPRAdapter):
            pooling = "max"

    with pytest.raises(ConfigurationError, match="not a ModelAdapter"):
        register_adapter("NotAnAdapter")(object)


@pytest.mark.parametrize(
    ("table_shape", "query_shape"),
    [((50, 8), (6, 8)), ((50, 3, 8), (6, 8)), ((50, 3, 8), (6, 3, 8))],
    ids=["pooled", "layers-shared-query", "layers-own-query"],
)
def test_candidate_scores_are_the_inner_products_on_both_paths(table_shape, query_shape):
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(table_shape, generator=generator)
    queries = torch.randn(query_shape, generator=generator)
    ids = torch.randint(0, 50, (6, 7), generator=generator)
    ids[:, 3] = ids[:, 1]  # every row holds a candidate twice: a sampled product's pattern then repeats a column
    if len(table_shape) == 2:
        expected = (table[ids] * queries.unsqueeze(1)).sum(-1)  # (rows, M)
    else:
        per_layer = queries if len(query_shape) == 3 else queries.unsqueeze(1).expand(6, table.shape[1], 8)
        expected = (table[ids] * per_layer.unsqueeze(1)).sum(-1).transpose(1, 2)  # (rows, layers, M)
    torch.testing.assert_close(candidate_scores(queries, table, ids), expected)  # the CPU's sampled product
    torch.testing.assert_close(adapters._gathered_scores(queries, table, ids), expected)  # the path off the CPU
    assert not candidate_scores(queries.requires_grad_(), table, ids).requires_grad


def test_scoring_mode_restores_the_training_flag_without_calling_train(ml100k_train):
    model = build_model("SGL", ml100k_train[0])
    views = model.sub_graph1
    with scoring_mode(model):
        assert not model.training and not torch.is_grad_enabled()
    assert model.training and torch.is_grad_enabled()
    assert model.sub_graph1 is views, "SGL's train() rebuilds its augmented graphs; scoring must not call it"


def test_candidate_scores_never_read_uninitialised_memory():
    """A sampled product adds beta * its pattern's values, and 0 * NaN is NaN: the pattern must hold zeros."""
    generator = torch.Generator().manual_seed(1)
    table, queries = torch.randn(40, 3, 8, generator=generator), torch.randn(64, 8, generator=generator)
    ids = torch.randint(0, 40, (64, 5), generator=generator)
    for _ in range(50):
        junk = torch.full((64 * 3 * 5,), float("nan"))
        del junk  # its freed block is what an uninitialised allocation of that size would hold
        assert torch.isfinite(candidate_scores(queries, table, ids)).all()
