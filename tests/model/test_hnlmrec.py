"""HNLMRec on real ml-100k with template profiles: its loss, the projector's training, real runs and reloading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import load_dataset
from recbole_hnlm.hnlm.model import (
    HAS_SEMANTIC_FIELD,
    SEMANTIC_IDS_FIELD,
    SEMANTIC_VECTORS_FIELD,
    HNLMRec,
)
from recbole_hnlm.model import MODEL_ZOO, get_model
from recbole_hnlm.model.adapters import ModelAdapter, spread_over_layers
from recbole_hnlm.quick_start import load_data_and_model, prepare_run_data, run
from recbole_hnlm.trainer import create_trainer

CANDIDATES_FIELD = "neg_candidates"
QUIET = {"state": "ERROR", "show_progress": False}
# Test Recall@20 of an untrained model on ml-100k is about 0.01 (tests/test_run.py); one epoch must clearly beat it.
TRAINED_RECALL = {"BPR": 0.05, "LightGCN": 0.12}


@pytest.fixture(scope="session")
def hnlm_cache_dir(tmp_path_factory) -> str:
    """One LLM cache root for the session; tests/samplers/test_hnlm_sampler.py names the same one (built once)."""
    return str(tmp_path_factory.getbasetemp() / "hnlm-llm-cache")


@pytest.fixture(scope="module")
def lightgcn_data(hnlm_cache_dir):
    """(config, train dataloader) of LightGCN + hnlm on ml-100k, split as quick_start.run splits it."""
    config = HNLMConfig(
        "LightGCN", "ml-100k", config_dict={**QUIET, "neg_sampler": "hnlm", "llm_cache_dir": hnlm_cache_dir}
    )
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = prepare_run_data(config, load_dataset(config))
    return config, train_data


def build(config, train_data, **settings) -> HNLMRec:
    for key, value in settings.items():
        config.final_config_dict[key] = value
    init_seed(3, True)
    model = get_model(config["model"])(config, train_data._dataset)
    model.train()
    return model


@pytest.fixture
def fresh_config(lightgcn_data):
    """The module's config, with any setting a test changes restored afterwards."""
    config, train_data = lightgcn_data
    saved = dict(config.final_config_dict)
    yield config, train_data
    config.final_config_dict.clear()
    config.final_config_dict.update(saved)


def in_float64(model: HNLMRec) -> HNLMRec:
    """``model`` in float64, its backbone's graph too (a plain attribute, which ``double()`` leaves alone)."""
    model = model.double()
    model.backbone.norm_adj_matrix = model.backbone.norm_adj_matrix.double()
    return model


def first_batch(train_data) -> Interaction:
    init_seed(4, True)
    return next(iter(train_data))


def test_hnlmrec_is_in_the_plugin_zoo():
    assert MODEL_ZOO["HNLMRec"] is HNLMRec and get_model("HNLMRec") is HNLMRec
    assert get_model("LightGCN").__module__.startswith("recbole.")  # built-in names fall back to RecBole


@pytest.mark.parametrize("pooling", ["mean", "sum", "concat"])
def test_semantic_vector_spreads_over_layers_so_that_pooling_gives_it_back(pooling):
    vector = torch.randn(5, 12 if pooling == "concat" else 4)
    layers = spread_over_layers(vector, 3, pooling)
    pooled = {"mean": layers.mean(dim=-2), "sum": layers.sum(dim=-2), "concat": layers.flatten(start_dim=-2)}[pooling]
    torch.testing.assert_close(pooled, vector)


def test_without_semantics_the_loss_is_the_backbones_own(fresh_config):
    config, train_data = fresh_config
    model = build(config, train_data, hnlm_mix_weight=0.0, hnlm_align_weight=0.0)
    batch = first_batch(train_data)
    base = train_data.negative_sampler.base  # dns: the hardest candidate, picked on the loss's propagation
    with torch.no_grad():
        user_layers, item_layers = model.adapter.propagate()
        hardest = base.pick_in_loss(model.adapter, batch, user_layers, model.adapter.pool(item_layers))
    assert torch.equal(hardest, dns_pick(model, batch))
    with_hardest = Interaction({**batch.interaction, model.NEG_ITEM_ID: hardest})
    torch.testing.assert_close(model.mixed_loss(base, batch), model.backbone.calculate_loss(with_hardest))
    # Without a base sampler the batch's NEG_ITEM_ID is the sampled negative.
    torch.testing.assert_close(model.calculate_loss(batch), model.backbone.calculate_loss(batch))


def scoring(model: HNLMRec, batch) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        user_layers, item_layers = model.adapter.propagate()
        return model.adapter.pool(user_layers[batch[model.USER_ID]]), model.adapter.pool(item_layers)


def dns_pick(model: HNLMRec, batch) -> torch.Tensor:
    """The top-scored candidate of each row, by the backbone's own predict."""
    candidates = batch[CANDIDATES_FIELD]
    with torch.no_grad():
        users = batch[model.USER_ID].repeat_interleave(candidates.shape[1])
        scores = model.backbone.predict(Interaction({model.USER_ID: users, model.ITEM_ID: candidates.reshape(-1)}))
    return candidates.gather(1, scores.reshape(candidates.shape).argmax(dim=1, keepdim=True)).squeeze(1)


def test_semantic_candidate_is_the_highest_scored_below_the_positive(fresh_config):
    config, train_data = fresh_config
    model = build(config, train_data)
    batch = first_batch(train_data)
    user_scoring, item_scoring = scoring(model, batch)
    directions, has_semantic = model.semantic_directions(batch, user_scoring, item_scoring)
    ids = batch[SEMANTIC_IDS_FIELD]
    scores = (user_scoring.unsqueeze(1) * item_scoring[ids]).sum(dim=-1)
    positive = (user_scoring * item_scoring[batch[model.ITEM_ID]]).sum(dim=-1)
    checked = 0
    for row in range(0, len(ids), 97):
        below = [
            (score, item)
            for score, item in zip(scores[row].tolist(), ids[row].tolist(), strict=True)
            if item > 0 and score < positive[row]
        ]
        assert bool(has_semantic[row]) == bool(below)
        if below:
            with torch.no_grad():
                expected = F.normalize(model.projector(model.item_profile_vectors[max(below)[1]]), dim=-1)
            torch.testing.assert_close(directions[row], expected)
            checked += 1
    assert checked > 0


def test_alignment_is_the_symmetric_info_nce_of_projected_profiles_and_cf_embeddings(fresh_config):
    """The log-sum-exp form equals the mean of the two cross-entropies (text -> CF and CF -> text) it replaces."""
    config, train_data = fresh_config
    model = build(config, train_data)
    batch = first_batch(train_data)
    with torch.no_grad():
        _, item_layers = model.adapter.propagate()
        table = model.adapter.pool(item_layers)
    positives = batch[model.ITEM_ID][:400]
    items = torch.unique(positives)
    assert 100 < len(items) <= 512  # every distinct positive enters (no random subset), so the reference sees the same
    cf = F.normalize(table[items], dim=-1)
    text = F.normalize(model.projector(model.item_profile_vectors[items]), dim=-1)
    logits = text @ cf.T / model.temperature
    targets = torch.arange(len(items))
    expected = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    torch.testing.assert_close(model.alignment_loss(table, positives), expected)


@pytest.mark.parametrize("temperature", [0.2, 0.05, 0.01])
def test_alignment_value_and_gradient_match_the_two_cross_entropies(fresh_config, temperature):
    """Above temperature 0.025 the term shares one table of exponentials (a hand-written backward); below, two
    log-sum-exps: both give the cross-entropies' value and the projector the same gradient, in float64."""
    config, train_data = fresh_config
    model = in_float64(build(config, train_data, hnlm_temperature=temperature))
    batch = first_batch(train_data)
    with torch.no_grad():
        table = model.adapter.pool(model.adapter.propagate()[1])
    positives = batch[model.ITEM_ID][:300]
    items = torch.unique(positives)
    weight = model.projector.layers.weight
    # Train-like spread: the projected profiles correlated with the CF table, so some logits reach near +-1/T.
    with torch.no_grad():
        weight.add_(torch.randn_like(weight) * 0.1)
    actual = model.alignment_loss(table, positives)
    actual_gradient = torch.autograd.grad(actual, weight)[0]
    cf = F.normalize(table[items], dim=-1)
    text = F.normalize(model.projector(model.item_profile_vectors[items]), dim=-1)
    logits = text @ cf.T / temperature
    targets = torch.arange(len(items))
    expected = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    torch.testing.assert_close(actual, expected)
    torch.testing.assert_close(actual_gradient, torch.autograd.grad(expected, weight)[0])
    assert actual_gradient.abs().sum() > 0


@pytest.mark.parametrize("base", ["dns", "uniform"])
def test_id_base_mixed_loss_equals_the_per_layer_mix(fresh_config, base):
    """An id base's negative mixed on pooled tables (LightGCN's item_negative_loss) is the per-layer mix: the same
    loss and the same gradients of every embedding and of the projector."""
    config, train_data = fresh_config
    # A heavy regularisation weight, so that the mixed negative's layer-0 (ego) part weighs in the comparison.
    model = in_float64(build(config, train_data, hnlm_base_negative=base, hnlm_mix_weight=0.3, reg_weight=0.5))
    batch = first_batch(train_data)
    sampler = train_data.negative_sampler.base if base == "dns" else None
    parameters = [
        model.backbone.user_embedding.weight,
        model.backbone.item_embedding.weight,
        *model.projector.parameters(),
    ]
    init_seed(5, True)  # the alignment term's random subset of items, the same in both
    actual = model.mixed_loss(sampler, batch)
    actual_gradients = torch.autograd.grad(actual, parameters)

    adapter = model.adapter
    user_layers, item_layers = adapter.propagate()
    users, positives = batch[model.USER_ID], batch[model.ITEM_ID]
    with torch.no_grad():
        user_scoring, item_scoring = adapter.pool(user_layers[users]), adapter.pool(item_layers)
    negatives = batch[model.NEG_ITEM_ID]
    if sampler is not None:
        negatives = sampler.pick_in_loss(adapter, batch, user_layers, item_scoring)
    neg_e = model.mix_semantic(batch, user_scoring, item_scoring, item_layers[negatives])
    init_seed(5, True)
    expected = adapter.pairwise_loss(batch, user_layers[users], item_layers[positives], neg_e)
    expected = expected + model.align_weight * model.alignment_loss(item_scoring, positives)
    torch.testing.assert_close(actual, expected)
    for got, want in zip(actual_gradients, torch.autograd.grad(expected, parameters), strict=True):
        torch.testing.assert_close(got, want)
    # The mix changed the loss: without it the loss is the backbone's own on the same negatives.
    assert not torch.isclose(
        actual,
        ModelAdapter.item_negative_loss(adapter, batch, user_layers, item_layers, negatives)
        + model.align_weight * model.alignment_loss(item_scoring, positives),
    )


def test_llm_vectors_reach_the_loss_and_the_projector_gets_gradients(fresh_config):
    config, train_data = fresh_config
    model = build(config, train_data)
    batch = first_batch(train_data)
    loss = model.calculate_loss(batch)
    loss.backward()
    assert all(
        parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in model.projector.parameters()
    )
    user_gradient = model.backbone.user_embedding.weight.grad.clone()
    model.zero_grad()
    profiles = model.item_profile_vectors.clone()
    model.item_profile_vectors.zero_()
    try:
        zeroed = model.calculate_loss(batch)
        zeroed.backward()
    finally:
        model.item_profile_vectors.copy_(profiles)
    assert not torch.isclose(loss, zeroed)
    # The semantic negatives move the CF embeddings: the user gradient changes when the vectors do.
    assert not torch.allclose(user_gradient, model.backbone.user_embedding.weight.grad)


def test_vector_source_projects_the_description_vectors(fresh_config):
    config, train_data = fresh_config
    model = build(config, train_data, hnlm_align_weight=0.0)
    batch = first_batch(train_data)
    rows = len(batch)
    # Stand-ins for LLM-written descriptions (a template cache has none): real item-profile vectors.
    described = model.item_profile_vectors[torch.randint(1, model.n_items, (rows,))]
    # No usable grounded ids: rows without a description vector then have no semantic negative at all.
    fields = {**batch.interaction, SEMANTIC_IDS_FIELD: torch.zeros_like(batch[SEMANTIC_IDS_FIELD])}
    losses, negatives = [], []
    for vectors, present in (
        (described, torch.ones(rows, dtype=torch.bool)),
        (described, torch.zeros(rows, dtype=torch.bool)),
        (torch.zeros_like(described), torch.ones(rows, dtype=torch.bool)),
    ):
        vector_batch = Interaction({**fields, SEMANTIC_VECTORS_FIELD: vectors, HAS_SEMANTIC_FIELD: present})
        with torch.no_grad():
            sampled_e = model.adapter.propagate()[1][vector_batch[model.NEG_ITEM_ID]]
            negatives.append(model.mix_semantic(vector_batch, *scoring(model, batch), sampled_e))
            losses.append(model.calculate_loss(vector_batch).item())
    with_vectors, without_any, zero_vectors = negatives
    torch.testing.assert_close(without_any, sampled_e)
    assert not torch.allclose(with_vectors, without_any) and not torch.allclose(with_vectors, zero_vectors)
    # At initialisation every score is near 0, so the loss moves only slightly, but it moves.
    assert losses[0] != losses[1] and losses[0] != losses[2]
    without_semantics = build(config, train_data, hnlm_mix_weight=0.0, hnlm_align_weight=0.0)
    with torch.no_grad():
        assert without_semantics.calculate_loss(batch).item() == pytest.approx(losses[1], rel=1e-6)


@pytest.mark.parametrize("projector", ["linear", "mlp"])
def test_projector_is_in_the_trainers_optimizer_and_changes_during_training(fresh_config, tmp_path, projector):
    config, train_data = fresh_config
    model = build(config, train_data, hnlm_projector=projector, checkpoint_dir=str(tmp_path))
    trainer = create_trainer(config, model)
    optimised = {id(parameter) for group in trainer.optimizer.param_groups for parameter in group["params"]}
    projector_parameters = list(model.projector.parameters())
    assert projector_parameters and all(id(parameter) in optimised for parameter in projector_parameters)
    before = [parameter.detach().clone() for parameter in projector_parameters]
    init_seed(4, True)
    for _, batch in zip(range(3), train_data, strict=False):  # the Trainer's own steps, on three batches
        trainer.optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        trainer.optimizer.step()
    assert all(not torch.equal(old, new) for old, new in zip(before, projector_parameters, strict=True))


@pytest.mark.parametrize("backbone", ["NGCF", "SGL"])
def test_other_adapted_backbones_train_one_batch(hnlm_cache_dir, lightgcn_data, backbone):
    _, train_data = lightgcn_data
    config = HNLMConfig(
        "HNLMRec", "ml-100k", config_dict={**QUIET, "backbone": backbone, "llm_cache_dir": hnlm_cache_dir}
    )
    model = build(config, train_data)
    loss = model.calculate_loss(first_batch(train_data))
    loss.backward()
    assert torch.isfinite(loss) and all(parameter.grad is not None for parameter in model.projector.parameters())


@pytest.mark.parametrize(
    ("model", "settings"),
    [("LightGCN", {"neg_sampler": "hnlm"}), ("HNLMRec", {"backbone": "BPR", "learning_rate": 0.01})],
)
def test_one_epoch_trains_and_the_checkpoint_reloads(model, settings, run_settings, hnlm_cache_dir):
    result = run(
        model, "ml-100k", config_dict={**run_settings, "epochs": 1, "llm_cache_dir": hnlm_cache_dir, **settings}
    )
    backbone = settings.get("backbone", model)
    assert (result["model"], result["backbone"], result["neg_sampler"]) == ("HNLMRec", backbone, "hnlm")
    assert result["test_result"]["recall@20"] > TRAINED_RECALL[backbone]
    assert result["semantic_negatives"]["llm"] == "template"
    config, reloaded, _, _, _, test_data = load_data_and_model(result["checkpoint"])
    assert isinstance(reloaded, HNLMRec) and type(reloaded.backbone).__name__ == backbone
    again = create_trainer(config, reloaded).evaluate(test_data, load_best_model=False)
    assert dict(again) == result["test_result"]
