"""MixGCF and DINS on real ml-100k batches: candidate pools, synthesized negatives, gradients and training."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from recbole.utils import init_seed

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.dataloader import NegativeSamplingTrainDataLoader
from recbole_hnlm.data.preparation import load_dataset, prepare_data
from recbole_hnlm.errors import ConfigurationError, UnsupportedModelError
from recbole_hnlm.model import get_model
from recbole_hnlm.model.adapters import ModelAdapter, NegativeMix, get_adapter
from recbole_hnlm.quick_start import run
from recbole_hnlm.samplers import get_sampler_class
from recbole_hnlm.samplers.dins import dins_mean_pooled, dins_mixup, dins_negative_weights
from recbole_hnlm.samplers.mixing import MixingSampler, hardest_ids_per_layer
from recbole_hnlm.trainer import create_trainer

QUIET = {"state": "ERROR", "show_progress": False}
MIXING = ["mixgcf", "dins"]


def mixing_config(model: str, sampler: str, **settings) -> HNLMConfig:
    return HNLMConfig(model, "ml-100k", config_dict={**QUIET, "neg_sampler": sampler, **settings})


@pytest.fixture(scope="module")
def ml100k_train():
    """(train dataset, RecBole's train sampler) of ml-100k under the default split."""
    config = mixing_config("LightGCN", "mixgcf")
    train_data, _, _ = prepare_data(config, load_dataset(config))
    return train_data._dataset, train_data._sampler


def first_batch(config, ml100k_train):
    train_dataset, recbole_sampler = ml100k_train
    loader = NegativeSamplingTrainDataLoader(config, train_dataset, recbole_sampler, shuffle=True)
    return loader, next(iter(loader))


def build_model(config, train_dataset):
    init_seed(5, True)
    model = get_model(config["model"])(config, train_dataset)
    model.train()
    return model


def positive_pairs(dataset) -> set[tuple[int, int]]:
    users = dataset.inter_feat[dataset.uid_field].tolist()
    return set(zip(users, dataset.inter_feat[dataset.iid_field].tolist(), strict=True))


def nonzero_rows(gradient: torch.Tensor) -> set[int]:
    return set(torch.nonzero(gradient.abs().flatten(1).sum(dim=1)).flatten().tolist())


@pytest.mark.parametrize("sample_num", [1, 3])
def test_candidate_pools_follow_the_repeated_batch_and_avoid_positives(sample_num, ml100k_train):
    config = mixing_config("LightGCN", "mixgcf", candidate_num=8, sample_num=sample_num)
    _, batch = first_batch(config, ml100k_train)
    users = batch[config["USER_ID_FIELD"]]
    pools = batch[MixingSampler.candidates_field]
    negatives = batch[config["NEG_PREFIX"] + config["ITEM_ID_FIELD"]]
    assert pools.shape == (len(users), 8) and len(negatives) == len(users)
    # RecBole repeats the positives sample_num times, block by block; every row has its own pool.
    block = len(users) // sample_num
    assert torch.equal(users, users[:block].repeat(sample_num))
    positives = positive_pairs(ml100k_train[0])
    row_users = users.unsqueeze(1).expand_as(pools)
    pool_pairs = zip(row_users.flatten().tolist(), pools.flatten().tolist(), strict=True)
    assert not any(pair in positives for pair in pool_pairs)
    assert not any(pair in positives for pair in zip(users.tolist(), negatives.tolist(), strict=True))
    assert pools.min() >= 1 and pools.max() < ml100k_train[0].item_num


def hardest_per_layer(adapter, user_e, items, candidates):
    """The hardest candidate's embedding (rows, layers, dim) and id (rows, layers) of every layer."""
    picked = hardest_ids_per_layer(adapter, user_e, items, candidates)
    return items[picked, torch.arange(items.shape[1])], picked


def layer_scores(queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """The reference: scores (rows, M, layers) of ``candidates`` (rows, M, layers, dim) for ``queries`` per layer."""
    return (queries.unsqueeze(1) * candidates).sum(dim=-1)


@pytest.mark.parametrize("model_name", ["BPR", "LightGCN", "NGCF", "SGL"])
@pytest.mark.parametrize("sampler_name", MIXING)
def test_synthesized_negatives_have_one_embedding_per_layer(model_name, sampler_name, ml100k_train):
    config = mixing_config(model_name, sampler_name, sample_num=2)
    loader, batch = first_batch(config, ml100k_train)
    model = build_model(config, ml100k_train[0])
    adapter = get_adapter(model)
    users, items = adapter.propagate()
    user_e, pos_e = users[batch[model.USER_ID]], items[batch[model.ITEM_ID]]
    hard_e, _ = hardest_per_layer(adapter, user_e, items, batch[MixingSampler.candidates_field])
    negative = loader.negative_sampler.synthesize(adapter.layer_queries(user_e, expand=False), pos_e, hard_e)
    assert negative.shape == pos_e.shape == (len(batch), users.shape[1], 64)
    loss = loader.negative_sampler.training_loss(model)(batch)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert model.user_embedding.weight.grad.abs().sum() > 0


def test_hardest_candidate_is_the_top_scored_of_each_layer(ml100k_train):
    config = mixing_config("LightGCN", "dins")
    _, batch = first_batch(config, ml100k_train)
    adapter = get_adapter(build_model(config, ml100k_train[0]))
    with torch.no_grad():
        users, items = adapter.propagate()
        user_e = users[batch[config["USER_ID_FIELD"]]]
        candidates = batch[MixingSampler.candidates_field]
        hard_e, _ = hardest_per_layer(adapter, user_e, items, candidates)
        queries = adapter.layer_queries(user_e)
        best = layer_scores(queries, items[candidates]).max(dim=1).values  # (rows, layers)
        torch.testing.assert_close((queries * hard_e).sum(dim=-1), best)


def test_mixgcf_negative_is_the_hardest_positive_mixture(ml100k_train):
    """Scoring before mixing (the implementation) equals mixing every candidate, then scoring (the reference)."""
    config = mixing_config("LightGCN", "mixgcf")
    loader, batch = first_batch(config, ml100k_train)
    adapter = get_adapter(build_model(config, ml100k_train[0]))
    with torch.no_grad():
        users, items = adapter.propagate()
        user_e, pos_e = users[batch[config["USER_ID_FIELD"]]], items[batch[config["ITEM_ID_FIELD"]]]
        candidate_e = items[batch[MixingSampler.candidates_field]]  # (rows, M, layers, dim)
        hard_e, _ = hardest_per_layer(adapter, user_e, items, batch[MixingSampler.candidates_field])
        torch.manual_seed(3)
        negative = loader.negative_sampler.synthesize(adapter.layer_queries(user_e, expand=False), pos_e, hard_e)
        torch.manual_seed(3)
        alpha = torch.rand(len(batch), users.shape[1], 1)  # the same draw: per row and layer
        mixtures = alpha.unsqueeze(1) * pos_e.unsqueeze(1) + (1 - alpha.unsqueeze(1)) * candidate_e
        hardest = layer_scores(adapter.layer_queries(user_e), mixtures).argmax(dim=1)  # (rows, layers)
        index = hardest[:, None, :, None].expand(-1, 1, -1, mixtures.shape[-1])
        torch.testing.assert_close(negative, mixtures.gather(1, index).squeeze(1))


def test_dins_weights_follow_the_paper_on_a_hand_checked_case(ml100k_train):
    # One row, one layer, three dimensions; the query of a single-layer model is the user itself.
    query = torch.tensor([[[1.0, 0.0, -1.0]]])
    positive = torch.tensor([[[2.0, 1.0, 0.0]]])
    hard = torch.tensor([[[0.0, 3.0, 1.0]]])
    # w_d = exp(q_d h_d) / (alpha exp(q_d p_d) + exp(q_d h_d)) with alpha = 0.5:
    #   d=0: 1 / (0.5 e^2 + 1) = 0.213014;  d=1: 1 / (0.5 + 1) = 0.666667;  d=2: e^-1 / (0.5 + e^-1) = 0.423883
    expected_weights = torch.tensor([[[1 / (0.5 * math.e**2 + 1), 2 / 3, math.exp(-1) / (0.5 + math.exp(-1))]]])
    torch.testing.assert_close(expected_weights, torch.tensor([[[0.213014, 0.666667, 0.423883]]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(dins_negative_weights(query, hard - positive, alpha=0.5), expected_weights)
    # The negative mixes each dimension on its own: (1 - w_d) p_d + w_d h_d.
    config = mixing_config("BPR", "dins", dins_alpha=0.5)
    sampler = get_sampler_class("dins")(config, ml100k_train[0])
    negative = sampler.synthesize(query, positive, hard)
    torch.testing.assert_close(negative, torch.tensor([[[0.786986 * 2, 1 / 3 + 2, 0.423883]]]), atol=1e-5, rtol=0)
    # Scores far beyond exp's range still give weights in [0, 1].
    big = torch.full((1, 1, 1), 100.0)
    assert dins_negative_weights(big, big / 10, alpha=0.5).item() == 1.0


@pytest.mark.parametrize("query_layers", [1, 3])  # a pooled query shared by the layers (mean, sum); one per layer
def test_dins_mixup_has_the_values_and_gradients_of_the_composed_operations(query_layers):
    """The written-out backward of ``dins_mixup`` against autograd through p + w (h - p)."""
    generator = torch.Generator().manual_seed(7)
    shapes = {"queries": (5, query_layers, 4), "positive": (5, 3, 4), "hard": (5, 3, 4)}
    inputs = {name: torch.randn(*shape, generator=generator, dtype=torch.float64) for name, shape in shapes.items()}
    upstream = torch.randn(5, 3, 4, generator=generator, dtype=torch.float64)

    def values_and_gradients(mix):
        leaves = {name: tensor.clone().requires_grad_() for name, tensor in inputs.items()}
        negative = mix(leaves["queries"], leaves["positive"], leaves["hard"])
        (negative * upstream).sum().backward()
        return negative.detach(), *(leaves[name].grad for name in shapes)

    def composed(queries, positive, hard):
        difference = hard - positive
        return positive + dins_negative_weights(queries, difference, alpha=0.7) * difference

    fused = values_and_gradients(lambda queries, positive, hard: dins_mixup(queries, positive, hard, alpha=0.7))
    for got, expected in zip(fused, values_and_gradients(composed), strict=True):
        torch.testing.assert_close(got, expected)
    assert fused[1].shape == shapes["queries"]


@pytest.mark.parametrize("used", ["all", "negative"])  # every output in the loss; only the pooled negative
def test_dins_mean_pooled_has_the_values_and_gradients_of_gathering_mixing_and_pooling(used):
    """``dins_mean_pooled`` against autograd through gathered rows, ``dins_mixup`` and the mean, with rows read by
    several batch rows (users, positives and hard negatives share table rows) and unused outputs."""
    generator = torch.Generator().manual_seed(11)
    n_layers, dim = 3, 4
    table = torch.randn(6 * n_layers, dim, generator=generator, dtype=torch.float64)
    layer = torch.arange(n_layers)
    user_index = torch.tensor([0, 1, 0, 2]).unsqueeze(1) * n_layers + layer
    positive_index = torch.tensor([3, 4, 4, 1]).unsqueeze(1) * n_layers + layer
    hard_index = torch.tensor([[5, 3, 5], [2, 5, 4], [0, 0, 1], [3, 4, 5]]) * n_layers + layer
    upstream = torch.randn(6, 4, dim, generator=generator, dtype=torch.float64)

    def composed(table):
        user, positive, hard = (table[index] for index in (user_index, positive_index, hard_index))
        negative = dins_mixup(user.mean(dim=1, keepdim=True), positive, hard, alpha=0.7)
        means = [layers.mean(dim=1) for layers in (user, positive, negative)]
        return (*means, user[:, 0], positive[:, 0], negative[:, 0])

    def fused(table):
        queries = table.detach()[user_index].mean(dim=1)
        return dins_mean_pooled(table, queries, user_index, positive_index, hard_index, alpha=0.7)

    def values_and_gradient(outputs_of):
        leaf = table.clone().requires_grad_()
        outputs = outputs_of(leaf)
        terms = [(output * weight).sum() for output, weight in zip(outputs, upstream, strict=True)]
        loss = sum(terms) if used == "all" else terms[2]
        return [output.detach() for output in outputs], torch.autograd.grad(loss, leaf)[0]

    (fused_outputs, fused_gradient), (outputs, gradient) = values_and_gradient(fused), values_and_gradient(composed)
    for got, expected in zip(fused_outputs, outputs, strict=True):
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(fused_gradient, gradient)
    assert gradient[hard_index[:, 1:].reshape(-1)].abs().sum() > 0  # the hard rows of layers 1-2 take gradients too


def test_dins_hard_boundary_picks_the_candidate_the_user_scores_highest(ml100k_train):
    config = mixing_config("BPR", "dins")
    adapter = get_adapter(build_model(config, ml100k_train[0]))
    user = torch.tensor([[[1.0, 0.0, -1.0]]])
    items = torch.tensor([[[0.0, 0.0, 0.0]], [[0.0, 3.0, 1.0]], [[-5.0, 0.0, 5.0]], [[1.0, 1.0, 1.0]]])
    # Scores: item 1 -> -1, item 2 -> -10, item 3 -> 0: item 3 is the hardest.
    hard, _ = hardest_per_layer(adapter, user, items, torch.tensor([[1, 2, 3]]))
    torch.testing.assert_close(hard, items[3].unsqueeze(0))


@pytest.mark.parametrize("with_mix", [False, True])
@pytest.mark.parametrize("sampler_name", MIXING)
def test_lightgcn_synthesized_loss_is_the_per_layer_default(sampler_name, with_mix, ml100k_train):
    """LightGCN's cheaper synthesized_negative_loss (the user pooled once, regularisation on the ego tables; for DINS
    without a mix, ``dins_mean_pooled``) has the default's value and gradients, in float64, with and without a
    mixed-in vector."""
    config = mixing_config("LightGCN", sampler_name, reg_weight=0.5)  # a heavy weight: the ego terms weigh in
    loader, batch = first_batch(config, ml100k_train)
    model = build_model(config, ml100k_train[0]).double()
    model.norm_adj_matrix = model.norm_adj_matrix.double()
    adapter, sampler = get_adapter(model), loader.negative_sampler
    weights = [model.user_embedding.weight, model.item_embedding.weight]
    mix = None
    if with_mix:
        generator = torch.Generator().manual_seed(2)
        directions = torch.nn.functional.normalize(
            torch.randn(len(batch), 64, generator=generator, dtype=torch.float64)
        )
        mix = NegativeMix(directions, torch.rand(len(batch), generator=generator, dtype=torch.float64))
    results = []
    for loss_of in (adapter.synthesized_negative_loss, partial(ModelAdapter.synthesized_negative_loss, adapter)):
        propagation = adapter.propagation()
        hardest = sampler.hardest_layers(adapter, batch, propagation)
        torch.manual_seed(3)  # MixGCF's mixing coefficients: the same draw in both
        loss = loss_of(batch, propagation, hardest, sampler.synthesize, mix, sampler.mean_synthesis())
        results.append((loss, torch.autograd.grad(loss, weights)))
    (fast, fast_gradients), (default, default_gradients) = results
    torch.testing.assert_close(fast, default)
    for got, expected in zip(fast_gradients, default_gradients, strict=True):
        torch.testing.assert_close(got, expected)
        assert expected.abs().sum() > 0


@pytest.mark.parametrize("sampler_name", MIXING)
def test_gradients_reach_user_positive_and_picked_candidate_only(sampler_name, ml100k_train):
    """BPR has no propagation, so each gradient row is exactly one embedding that the loss used."""
    config = mixing_config("BPR", sampler_name)
    loader, batch = first_batch(config, ml100k_train)
    model = build_model(config, ml100k_train[0])
    users, positives = batch[model.USER_ID], batch[model.ITEM_ID]
    candidates = batch[MixingSampler.candidates_field]
    with torch.no_grad():
        scores = (model.user_embedding(users).unsqueeze(1) * model.item_embedding(candidates)).sum(dim=-1)
        picked = candidates.gather(1, scores.argmax(dim=1, keepdim=True)).flatten()
    loader.negative_sampler.training_loss(model)(batch).backward()
    assert nonzero_rows(model.user_embedding.weight.grad) == set(users.tolist())
    # Neither the uniform NEG_ITEM_ID nor the candidates left unpicked take part in the loss.
    assert nonzero_rows(model.item_embedding.weight.grad) == set(positives.tolist()) | set(picked.tolist())


@pytest.mark.parametrize("sampler_name", MIXING)
def test_gradients_reach_the_picked_candidate_of_each_layer(sampler_name, ml100k_train):
    config = mixing_config("LightGCN", sampler_name)
    loader, batch = first_batch(config, ml100k_train)
    adapter = get_adapter(build_model(config, ml100k_train[0]))
    propagation = adapter.propagation
    kept = []

    def propagate_and_keep_gradients():
        joint = propagation()
        joint.layers.retain_grad()
        kept.append(joint)
        return joint

    adapter.propagation = propagate_and_keep_gradients
    loader.negative_sampler.mixing_loss(adapter, batch).backward()
    (joint,) = kept
    users, items = joint.users.detach(), joint.items.detach()
    users.grad, items.grad = joint.layers.grad[: joint.n_users], joint.layers.grad[joint.n_users :]
    candidates = batch[MixingSampler.candidates_field]
    with torch.no_grad():
        queries = adapter.layer_queries(users[batch[config["USER_ID_FIELD"]]])
        picked = candidates.gather(1, layer_scores(queries, items[candidates]).argmax(dim=1))  # (rows, layers)
    assert nonzero_rows(users.grad) == set(batch[config["USER_ID_FIELD"]].tolist())
    positives = set(batch[config["ITEM_ID_FIELD"]].tolist())
    for layer in range(items.shape[1]):
        assert nonzero_rows(items.grad[:, layer]) == positives | set(picked[:, layer].tolist())


@pytest.mark.parametrize("sampler_name", MIXING)
def test_trainer_trains_mixing_samplers_through_their_own_loss(sampler_name, ml100k_train, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole's Trainer writes log_tensorboard/ under the working directory
    config = mixing_config("BPR", sampler_name, sample_num=2)
    loader, _ = first_batch(config, ml100k_train)
    model = build_model(config, ml100k_train[0])

    def calculate_loss(interaction):
        raise AssertionError("a mixing sampler's batches must not go through calculate_loss")

    model.calculate_loss = calculate_loss
    before = model.item_embedding.weight.detach().clone()
    loss = create_trainer(config, model)._train_epoch(loader, epoch_idx=0)
    assert np.isfinite(loss) and not torch.equal(before, model.item_embedding.weight)


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"neg_sampler": "mixgcf", "candidate_num": 0}, ConfigurationError),
        ({"neg_sampler": "dins", "dins_alpha": 0}, ConfigurationError),
        ({"neg_sampler": "dins", "dins_alpha": "high"}, ConfigurationError),
        ({"neg_sampler": "dins", "model": "SpectralCF"}, UnsupportedModelError),
    ],
)
def test_bad_settings_are_refused(settings, error):
    model = settings.pop("model", "LightGCN")
    with pytest.raises(error):
        HNLMConfig(model, "ml-100k", config_dict={**QUIET, **settings})


# Test Recall@20 after 1 epoch on ml-100k (seeds 2020 and 7): an untrained model scores 0.012 (BPR) and 0.013-0.014
# (LightGCN); mixgcf reaches 0.26 (BPR, learning_rate 0.01) and 0.12 (LightGCN), dins 0.29-0.30 and 0.14.
ONE_EPOCH = {"BPR": ({"learning_rate": 0.01}, 0.1), "LightGCN": ({}, 0.05)}


@pytest.mark.parametrize("model_name", ["BPR", "LightGCN"])
@pytest.mark.parametrize("sampler_name", MIXING)
def test_one_epoch_of_training_learns(model_name, sampler_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole's logger writes log/ under the working directory
    model_settings, min_recall = ONE_EPOCH[model_name]
    settings = {"neg_sampler": sampler_name, "epochs": 1, "checkpoint_dir": str(tmp_path), "results_dir": None}
    result = run(model_name, "ml-100k", config_dict={**settings, **model_settings, **QUIET})
    assert result["neg_sampler"] == sampler_name and result["candidate_num"] == 16
    assert result["test_result"]["recall@20"] > min_recall
