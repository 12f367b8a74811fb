"""Every built-in sampler on real ml-100k batches: what it picks, and what it never picks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recbole.utils import init_seed

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.dataloader import NegativeSamplingTrainDataLoader
from recbole_hnlm.errors import ConfigurationError, UnknownNameError, UnsupportedModelError
from recbole_hnlm.model import get_model
from recbole_hnlm.samplers import SAMPLER_REGISTRY, NegativeSampler, TrainingPositives, register_sampler
from recbole_hnlm.samplers import base as sampler_base

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
    """Records what the samplers scored, delegating to the real scoring."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.real = sampler_base.score_items

    def __call__(self, model, uid_field, iid_field, user_ids, items):
        scores = self.real(model, uid_field, iid_field, user_ids, items)
        self.calls.append((items.clone(), scores.clone()))
        return scores


def sample_with_spy(name, ml100k, model, monkeypatch, **settings):
    spy = ScoreSpy()
    monkeypatch.setattr(sampler_base, "score_items", spy)
    config = sampler_config(name, **settings)
    sampler = SAMPLER_REGISTRY[name](config, ml100k[2]._dataset)
    inter = ml100k[2]._dataset.inter_feat
    users = inter[config["USER_ID_FIELD"]][:512]
    items = inter[config["ITEM_ID_FIELD"]][:512]
    picked = sampler.sample(users, items, settings.get("sample_num", 1), model=model)
    assert len(spy.calls) == 1, "candidates must be scored in one predict call"
    scored_items, scores = spy.calls[0]
    return sampler, users, items, picked, scored_items, scores


def test_dns_picks_the_top_scored_candidate(ml100k, bpr_model, monkeypatch):
    sampler, _, _, picked, candidates, scores = sample_with_spy(
        "dns", ml100k, bpr_model, monkeypatch, candidate_num=8, sample_num=2
    )
    candidates = candidates.reshape(2, 8, -1)
    scores = scores.reshape(2, 8, -1)
    expected = candidates.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)
    assert torch.equal(picked, expected)
    picked_scores = scores.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)
    assert (picked_scores >= scores.max(1).values).all()


def test_dns_mn_picks_among_the_top_n(ml100k, bpr_model, monkeypatch):
    _, _, _, picked, candidates, scores = sample_with_spy(
        "dns_mn", ml100k, bpr_model, monkeypatch, candidate_num=10, dns_top_n=3
    )
    candidates = candidates.reshape(10, -1)
    scores = scores.reshape(10, -1)
    top = candidates.gather(0, scores.topk(3, dim=0).indices)
    assert (top == picked.reshape(1, -1)).any(0).all()
    # Not always the best one: with N = 3 about two thirds of the picks are not the top candidate.
    best = candidates.gather(0, scores.argmax(0, keepdim=True))
    assert (picked != best).float().mean() > 0.4


def test_ahns_picks_the_score_closest_to_its_adaptive_target(ml100k, bpr_model, monkeypatch):
    _, _, items, picked, scored, scores = sample_with_spy(
        "ahns", ml100k, bpr_model, monkeypatch, candidate_num=12, ahns_alpha=1.0, ahns_beta=0.1, ahns_p=-2
    )
    assert torch.equal(scored[-1], items), "the positive is scored in the same call, last"
    positive_scores = scores[-1]
    candidates, candidate_scores = scored[:-1], scores[:-1]
    target = 0.1 * (positive_scores + 1.0) ** -1
    distance = (candidate_scores - target).abs()
    expected = candidates.gather(0, distance.argmin(0, keepdim=True)).squeeze(0)
    assert torch.equal(picked.reshape(-1), expected)


def test_ahns_with_cosines_picks_the_cosine_closest_to_its_target(ml100k, bpr_model, monkeypatch):
    _, users, _, picked, scored, scores = sample_with_spy(
        "ahns", ml100k, bpr_model, monkeypatch, candidate_num=12, ahns_similarity="cos"
    )
    user_norm = bpr_model.user_embedding.weight.detach().norm(dim=1)
    item_norm = bpr_model.item_embedding.weight.detach().norm(dim=1)
    cosines = scores / (user_norm[users] * item_norm[scored])
    target = 0.1 * (cosines[-1] + 1.0) ** -1
    expected = scored[:-1].gather(0, (cosines[:-1] - target).abs().argmin(0, keepdim=True)).squeeze(0)
    assert torch.equal(picked.reshape(-1), expected)
    by_inner_product = (
        scored[:-1].gather(0, (scores[:-1] - 0.1 * (scores[-1] + 1.0) ** -1).abs().argmin(0, keepdim=True)).squeeze(0)
    )
    assert (by_inner_product != expected).float().mean() > 0.1  # a different rule, not a rename


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


def test_same_seed_same_negatives(ml100k, bpr_model):
    inter = ml100k[2]._dataset.inter_feat
    users, items = inter["user_id"][:256], inter["item_id"][:256]
    runs = [
        SAMPLER_REGISTRY["dns"](sampler_config("dns"), ml100k[2]._dataset).sample(users, items, 2, bpr_model)
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    other = SAMPLER_REGISTRY["dns"](sampler_config("dns", seed=99), ml100k[2]._dataset).sample(
        users, items, 2, bpr_model
    )
    assert not torch.equal(runs[0], other)


def test_model_scored_sampler_without_model_says_how_to_fix(ml100k):
    sampler = SAMPLER_REGISTRY["dns"](sampler_config("dns"), ml100k[2]._dataset)
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
