"""Every built-in sampler on real ml-100k batches: what it picks, and what it never picks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.dataloader import NegativeSamplingTrainDataLoader
from recbole_hnlm.errors import ConfigurationError, UnknownNameError, UnsupportedModelError
from recbole_hnlm.model import adapters, get_model
from recbole_hnlm.model.adapters import get_adapter
from recbole_hnlm.samplers import SAMPLER_REGISTRY, NegativeSampler, TrainingPositives, register_sampler
from recbole_hnlm.samplers import base as sampler_base
from recbole_hnlm.trainer import create_trainer

BUILT_IN = ["uniform", "popularity", "dns", "dns_mn", "ahns"]
QUIET = {"state": "ERROR", "show_progress": False}


def sampler_config(name: str, **settings) -> HNLMConfig:
    return HNLMConfig("BPR", "ml-100k", config_dict={**QUIET, "neg_sampler": name, **settings})


def train_positive_sets(dataset) -> list[set[int]]:
    users = dataset.inter_feat[dataset.uid_field].numpy()
    items = dataset.inter_feat[dataset.iid_field].numpy()
    sets = [set() for _ in range(dataset.user_num)]
    for user, item in zip(users, items, strict=True):
        sets[user].add(int(item))
    return sets


@pytest.fixture(scope="module")
def bpr_model(ml100k):
    config, _, train_data = ml100k
    init_seed(7, True)
    return get_model("BPR")(config, train_data._dataset)


def test_built_in_samplers_are_registered():
    assert set(BUILT_IN) <= set(SAMPLER_REGISTRY)


@pytest.mark.parametrize("name", BUILT_IN)
@pytest.mark.parametrize("sample_num", [1, 3])
def test_negatives_are_never_training_positives(name, sample_num, ml100k, bpr_model):
    config = sampler_config(name, sample_num=sample_num)
    train_dataset = ml100k[2]._dataset
    loader = NegativeSamplingTrainDataLoader(config, train_dataset, ml100k[2]._sampler, shuffle=True)
    loader.get_model(bpr_model)
    positives = train_positive_sets(train_dataset)
    neg_field = config["NEG_PREFIX"] + config["ITEM_ID_FIELD"]
    for batch_index, batch in enumerate(loader):
        users = batch[config["USER_ID_FIELD"]].numpy()
        negatives = batch[neg_field].numpy()
        assert len(negatives) == len(users)
        assert negatives.min() >= 1 and negatives.max() < train_dataset.item_num
        assert not any(int(item) in positives[user] for user, item in zip(users, negatives, strict=True))
        for column in batch["neg_candidates"].T if "neg_candidates" in batch else []:  # the pool of in-loss picks
            assert not any(int(item) in positives[user] for user, item in zip(users, column.numpy(), strict=True))
        # sample_num negatives per positive: the positives repeat sample_num times, block by block.
        block = len(users) // sample_num
        assert np.array_equal(users[:block], users[block : 2 * block]) or sample_num == 1
        if batch_index == 3:
            break


@pytest.mark.parametrize("bitset", [True, False], ids=["bitset", "sorted-keys"])
def test_training_positives_lookup_matches_python_sets(ml100k, monkeypatch, bitset):
    # Small catalogues are looked up in a bit set, large ones by binary search over sorted keys: both must agree.
    monkeypatch.setattr(sampler_base, "BITSET_MAX_CELLS", 1 << 28 if bitset else 0)
    train_dataset = ml100k[2]._dataset
    positives = TrainingPositives.from_dataset(train_dataset)
    assert (positives.bits is not None) == bitset
    sets = train_positive_sets(train_dataset)
    rng = np.random.default_rng(0)
    users = rng.integers(1, train_dataset.user_num, 5000)
    items = rng.integers(1, train_dataset.item_num, 5000)
    expected = np.array([int(item) in sets[user] for user, item in zip(users, items, strict=True)])
    assert expected.any()
    assert np.array_equal(positives.contains(users, items), expected)
    some_user = int(users[0])
    known = np.array(sorted(sets[some_user]))
    assert positives.contains(np.full(len(known), some_user), known).all()


class ScoreSpy:
    """Records what the samplers scored with ``model.predict``, delegating to the real scoring."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.real = sampler_base.score_items

    def __call__(self, model, uid_field, iid_field, user_ids, items):
        scores = self.real(model, uid_field, iid_field, user_ids, items)
        self.calls.append((items.clone(), scores.clone()))
        return scores


@pytest.fixture(scope="module")
def line_model(ml100k):
    """LINE has no model adapter: model-scored samplers score its candidates with predict()."""
    init_seed(7, True)
    return get_model("LINE")(HNLMConfig("LINE", "ml-100k", config_dict=QUIET), ml100k[2]._dataset)


def first_rows(ml100k, count: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    inter = ml100k[2]._dataset.inter_feat
    return inter["user_id"][:count], inter["item_id"][:count]


def sample_with_spy(name, ml100k, model, monkeypatch, **settings):
    """The predict path: ``name`` on LINE, with each scoring call recorded; candidates and scores are (rows, M[+1])."""
    spy = ScoreSpy()
    monkeypatch.setattr(sampler_base, "score_items", spy)
    config = HNLMConfig("LINE", "ml-100k", config_dict={**QUIET, "neg_sampler": name, **settings})
    sampler = SAMPLER_REGISTRY[name](config, ml100k[2]._dataset)
    assert not sampler.scores_in_loss and sampler.training_loss(model) is None
    users, items = first_rows(ml100k)
    picked = sampler.sample(users, items, settings.get("sample_num", 1), model=model)
    assert sampler.extra_batch_fields(users, items, settings.get("sample_num", 1)) == {}
    assert len(spy.calls) == 1, "candidates must be scored in one predict call"
    scored_items, scores = spy.calls[0]
    return sampler, users, items, picked, scored_items, scores


def test_dns_picks_the_top_scored_candidate(ml100k, line_model, monkeypatch):
    _, users, _, picked, candidates, scores = sample_with_spy(
        "dns", ml100k, line_model, monkeypatch, candidate_num=8, sample_num=2
    )
    assert candidates.shape == scores.shape == (2 * len(users), 8)
    expected = candidates.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)
    assert torch.equal(picked.reshape(-1), expected)
    assert (picked.reshape(-1) != candidates[:, 0]).float().mean() > 0.5, "the pick, not the first candidate"


def test_dns_mn_picks_among_the_top_n(ml100k, line_model, monkeypatch):
    _, _, _, picked, candidates, scores = sample_with_spy(
        "dns_mn", ml100k, line_model, monkeypatch, candidate_num=10, dns_top_n=3
    )
    top = candidates.gather(1, scores.topk(3, dim=1).indices)
    assert (top == picked.reshape(-1, 1)).any(1).all()
    # Not always the best one: with N = 3 about two thirds of the picks are not the top candidate.
    best = candidates.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)
    assert (picked.reshape(-1) != best).float().mean() > 0.4


def test_ahns_picks_the_score_closest_to_its_adaptive_target(ml100k, line_model, monkeypatch):
    _, _, items, picked, scored, scores = sample_with_spy(
        "ahns", ml100k, line_model, monkeypatch, candidate_num=12, ahns_alpha=1.0, ahns_beta=0.1, ahns_p=-2
    )
    assert torch.equal(scored[:, -1], items), "the positive is scored in the same call, last"
    target = 0.1 * (scores[:, -1] + 1.0) ** -1
    distance = (scores[:, :-1] - target.unsqueeze(1)).abs()
    expected = scored[:, :-1].gather(1, distance.argmin(1, keepdim=True)).squeeze(1)
    assert torch.equal(picked.reshape(-1), expected)


def in_loss_batch(sampler, users, items, num: int) -> Interaction:
    """A training batch as the dataloader builds it for a sampler that picks in the loss."""
    first = sampler.sample(users, items, num)
    fields = {"user_id": users.repeat(num), "item_id": items.repeat(num), "neg_item_id": first.reshape(-1)}
    return Interaction({**fields, **sampler.extra_batch_fields(users, items, num)})


def pick_on_propagation(sampler, adapter, batch) -> torch.Tensor:
    """The sampler's in-loss pick on one propagation of the adapter's model."""
    user_layers, item_layers = adapter.propagate()
    return sampler.pick_in_loss(adapter, batch, user_layers, adapter.pool(item_layers).detach())


def pick_in_loss(name, ml100k, model, **settings) -> tuple[Interaction, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The in-loss path on BPR: (batch, picked ids, user embeddings, item embeddings)."""
    config = sampler_config(name, **settings)
    sampler = SAMPLER_REGISTRY[name](config, ml100k[2]._dataset)
    assert sampler.scores_in_loss
    users, items = first_rows(ml100k)
    batch = in_loss_batch(sampler, users, items, settings.get("sample_num", 1))
    adapter = get_adapter(model)
    picked = pick_on_propagation(sampler, adapter, batch)
    return batch, picked, model.user_embedding.weight.detach(), model.item_embedding.weight.detach()


def test_dns_in_the_loss_picks_the_top_scored_candidate(ml100k, bpr_model):
    batch, picked, user_table, item_table = pick_in_loss("dns", ml100k, bpr_model, candidate_num=8, sample_num=2)
    candidates = batch["neg_candidates"]
    assert candidates.shape == (len(batch), 8)
    assert torch.equal(batch["neg_item_id"], candidates[:, 0]), "NEG_ITEM_ID is the pool's uniform first column"
    scores = (user_table[batch["user_id"]].unsqueeze(1) * item_table[candidates]).sum(-1)
    assert torch.equal(picked, candidates.gather(1, scores.argmax(1, keepdim=True)).squeeze(1))


def test_ahns_with_cosines_picks_the_cosine_closest_to_its_target(ml100k, bpr_model):
    batch, picked, user_table, item_table = pick_in_loss(
        "ahns", ml100k, bpr_model, candidate_num=12, ahns_similarity="cos"
    )
    candidates = batch["neg_candidates"]
    user = torch.nn.functional.normalize(user_table[batch["user_id"]], dim=-1)
    items = torch.nn.functional.normalize(item_table, dim=-1)
    cosines = (user.unsqueeze(1) * items[candidates]).sum(-1)
    target = 0.1 * ((user * items[batch["item_id"]]).sum(-1) + 1.0) ** -1
    expected = candidates.gather(1, (cosines - target.unsqueeze(1)).abs().argmin(1, keepdim=True)).squeeze(1)
    assert torch.equal(picked, expected)
    inner = (user_table[batch["user_id"]].unsqueeze(1) * item_table[candidates]).sum(-1)
    positive = (user_table[batch["user_id"]] * item_table[batch["item_id"]]).sum(-1)
    by_inner_product = candidates.gather(1, (inner - 0.1 * (positive + 1.0).unsqueeze(1) ** -1).abs().argmin(1, True))
    assert (by_inner_product.squeeze(1) != expected).float().mean() > 0.1  # a different rule, not a rename


@pytest.fixture(scope="module")
def lightgcn(ml100k):
    config = HNLMConfig("LightGCN", "ml-100k", config_dict=QUIET)
    init_seed(5, True)
    return get_model("LightGCN")(config, ml100k[2]._dataset)


@pytest.mark.parametrize(
    ("name", "settings"),
    [("dns", {}), ("dns_mn", {"dns_top_n": 4}), ("ahns", {}), ("ahns", {"ahns_alpha": 0.5, "ahns_p": -3})],
)
def test_both_paths_pick_the_same_negatives_from_the_same_candidates_and_weights(
    name, settings, ml100k, lightgcn, monkeypatch
):
    """LightGCN with its adapter picks in the loss, without it (removed here) through predict(): the same picks."""
    settings = {**QUIET, "neg_sampler": name, "candidate_num": 8, "sample_num": 2, **settings}
    config = HNLMConfig("LightGCN", "ml-100k", config_dict=settings)
    train_dataset = ml100k[2]._dataset
    in_loss = SAMPLER_REGISTRY[name](config, train_dataset)
    with monkeypatch.context() as patch:
        patch.delitem(adapters.ADAPTER_REGISTRY, "LightGCN")
        by_predict = SAMPLER_REGISTRY[name](config, train_dataset)
    assert in_loss.scores_in_loss and not by_predict.scores_in_loss
    adapter = get_adapter(lightgcn)
    for start in (0, 512):  # two batches: the generators stay in step across batches
        users, items = (field[start : start + 512] for field in first_rows(ml100k, 1024))
        expected = by_predict.sample(users, items, 2, model=lightgcn).reshape(-1)
        batch = in_loss_batch(in_loss, users, items, 2)
        with torch.no_grad():
            picked = pick_on_propagation(in_loss, adapter, batch)
        assert torch.equal(picked, expected)
        assert (picked != batch["neg_candidates"][:, 0]).float().mean() > 0.3, "a pick, not the uniform column"


@pytest.mark.parametrize("name", ["dns", "dns_mn", "ahns"])
def test_in_loss_training_is_the_models_loss_on_the_picked_negatives_in_one_propagation(
    name, ml100k, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # RecBole's Trainer writes log_tensorboard/ under the working directory
    config = HNLMConfig("LightGCN", "ml-100k", config_dict={**QUIET, "neg_sampler": name})
    train_dataset = ml100k[2]._dataset
    loader = NegativeSamplingTrainDataLoader(config, train_dataset, ml100k[2]._sampler, shuffle=True)
    init_seed(5, True)
    model = get_model("LightGCN")(config, train_dataset)
    sampler = loader.negative_sampler
    batch = next(iter(loader))
    picks = []
    pick_in_loss = sampler.pick_in_loss
    monkeypatch.setattr(sampler, "pick_in_loss", lambda *args: picks.append(pick_in_loss(*args)) or picks[-1])
    loss = sampler.training_loss(model)(batch)
    batch.update(Interaction({"neg_item_id": picks[0]}))
    torch.testing.assert_close(loss, model.calculate_loss(batch))

    def no_second_pass(*args):
        raise AssertionError("a sampler that picks in the loss must not propagate again through the model")

    monkeypatch.setattr(model, "predict", no_second_pass)
    monkeypatch.setattr(model, "forward", no_second_pass)
    monkeypatch.setattr(model, "calculate_loss", no_second_pass)
    before = model.item_embedding.weight.detach().clone()
    assert np.isfinite(create_trainer(config, model)._train_epoch(loader, epoch_idx=0))
    assert not torch.equal(before, model.item_embedding.weight)


def test_ahns_cosines_need_a_model_adapter():
    with pytest.raises(UnsupportedModelError, match="Models with one: AlphaRec, BPR"):
        HNLMConfig("SimpleX", "ml-100k", config_dict={**QUIET, "neg_sampler": "ahns", "ahns_similarity": "cos"})


def test_popularity_follows_training_counts(ml100k):
    config = sampler_config("popularity", popularity_alpha=1.0)
    train_dataset = ml100k[2]._dataset
    sampler = SAMPLER_REGISTRY["popularity"](config, train_dataset)
    users = torch.full((20000,), 1, dtype=torch.long)  # one user: the shares are easy to state exactly
    picked = sampler.sample(users, users, 5).reshape(-1).numpy()
    counts = np.bincount(train_dataset.inter_feat[train_dataset.iid_field].numpy(), minlength=train_dataset.item_num)
    positives = train_positive_sets(train_dataset)[1]
    allowed = counts.astype(float)
    allowed[list(positives)] = 0
    expected_share = allowed / allowed.sum()
    observed_share = np.bincount(picked, minlength=train_dataset.item_num) / len(picked)
    top = np.argsort(-expected_share)[:20]
    assert np.allclose(observed_share[top], expected_share[top], atol=0.004)
    assert observed_share[counts == 0].sum() == 0


def test_uniform_is_uniform_over_non_positives(ml100k):
    config = sampler_config("uniform")
    train_dataset = ml100k[2]._dataset
    sampler = SAMPLER_REGISTRY["uniform"](config, train_dataset)
    users = torch.full((30000,), 1, dtype=torch.long)
    picked = sampler.sample(users, users, 4).reshape(-1).numpy()
    allowed = train_dataset.item_num - 1 - len(train_positive_sets(train_dataset)[1])
    observed = np.bincount(picked, minlength=train_dataset.item_num)
    assert (observed > 0).sum() == allowed
    assert observed.max() < 3 * len(picked) / allowed


@pytest.mark.parametrize("model_name", ["LINE", "BPR"], ids=["predict", "in-loss"])
def test_same_seed_same_negatives(model_name, ml100k, line_model, bpr_model):
    model = line_model if model_name == "LINE" else bpr_model
    users, items = first_rows(ml100k, 256)

    def picks(seed: int) -> torch.Tensor:
        config = HNLMConfig(model_name, "ml-100k", config_dict={**QUIET, "neg_sampler": "dns", "seed": seed})
        sampler = SAMPLER_REGISTRY["dns"](config, ml100k[2]._dataset)
        if not sampler.scores_in_loss:
            return sampler.sample(users, items, 2, model)
        batch = in_loss_batch(sampler, users, items, 2)
        adapter = get_adapter(model)
        with torch.no_grad():
            return pick_on_propagation(sampler, adapter, batch)

    assert torch.equal(picks(2020), picks(2020))
    assert not torch.equal(picks(2020), picks(99))


def test_model_scored_sampler_without_model_says_how_to_fix(ml100k):
    config = HNLMConfig("LINE", "ml-100k", config_dict={**QUIET, "neg_sampler": "dns"})
    sampler = SAMPLER_REGISTRY["dns"](config, ml100k[2]._dataset)
    users = ml100k[2]._dataset.inter_feat["user_id"][:4]
    with pytest.raises(ConfigurationError, match="get_model"):
        sampler.sample(users, users, 1, model=None)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"neg_sampler": "dns_mn", "candidate_num": 4, "dns_top_n": 5}, "1 <= N <= M"),
        ({"neg_sampler": "dns", "candidate_num": 0}, "candidate_num=0"),
        ({"neg_sampler": "ahns", "ahns_p": -1.5}, "ahns_p=-1.5"),
        ({"neg_sampler": "ahns", "ahns_similarity": "dot"}, "ahns_similarity='dot' is invalid. Valid: ip, cos"),
        ({"neg_sampler": "popularity", "popularity_alpha": -1}, "popularity_alpha=-1"),
        ({"neg_sampler": "uniform", "sample_num": 0}, "sample_num=0"),
        ({"neg_sampler": "dns", "worker": 2}, "--worker=0"),
    ],
)
def test_contradictory_sampler_settings_are_refused(settings, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        HNLMConfig("BPR", "ml-100k", config_dict={**QUIET, **settings})


def test_unknown_sampler_lists_the_valid_ones():
    with pytest.raises(UnknownNameError) as error:
        HNLMConfig("BPR", "ml-100k", config_dict={**QUIET, "neg_sampler": "hardest"})
    assert "hardest" in str(error.value) and "dns_mn" in str(error.value) and "register_sampler" in str(error.value)


def test_registry_refuses_bad_registrations():
    class Nameless(NegativeSampler):
        def sample(self, user_ids, item_ids, num, model=None):
            return torch.zeros(num, len(user_ids), dtype=torch.long)

    with pytest.raises(ConfigurationError, match="name"):
        register_sampler(Nameless)
    with pytest.raises(ConfigurationError, match="not a NegativeSampler"):
        register_sampler(dict)

    class Clash(Nameless):
        name = "dns"

    with pytest.raises(ConfigurationError, match="already registered"):
        register_sampler(Clash)
