"""The text filter (samplers/text_filter.py) and the false-hard-negative rate of picks (samplers/false_negatives.py).

Text vectors are set by hand: users and "hot" items point one way, every other item the other, so the cosine to the
user is 1 for a hot item and 0 otherwise and a threshold of 0.5 flags exactly the hot items.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.model import adapters, get_model
from recbole_hnlm.model.adapters import get_adapter
from recbole_hnlm.quick_start import run
from recbole_hnlm.samplers import false_negatives, get_sampler_class
from recbole_hnlm.samplers import text_filter as text_filter_module
from recbole_hnlm.samplers.false_negatives import FalseHardNegativeMeter
from recbole_hnlm.samplers.text_filter import Screen, TextFilter

QUIET = {"state": "ERROR", "show_progress": False}
USER_FILTER = {"text_filter": "user", "text_filter_threshold": 0.5}


def make_config(name: str, model: str = "BPR", **settings) -> HNLMConfig:
    return HNLMConfig(model, "ml-100k", config_dict={**QUIET, "neg_sampler": name, "candidate_num": 8, **settings})


def hot_vectors(dataset, hot: set[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Users along x; hot items along x (cosine 1), the others along y (cosine 0); the padding item is zero."""
    users = torch.tensor([[1.0, 0.0]]).repeat(dataset.user_num, 1)
    items = torch.tensor([[0.0, 1.0]]).repeat(dataset.item_num, 1)
    items[sorted(hot)] = torch.tensor([1.0, 0.0])
    items[0] = 0.0
    return users, items


def make_sampler(name: str, dataset, hot: set[int] | None = None, model: str = "BPR", **settings):
    sampler = get_sampler_class(name)(make_config(name, model, **settings), dataset)
    if hot is not None:
        sampler.text_filter.set_vectors(*hot_vectors(dataset, hot))
    return sampler


def in_loss_batch(sampler, users: torch.Tensor, items: torch.Tensor) -> Interaction:
    first = sampler.sample(users, items, 1)
    fields = {"user_id": users, "item_id": items, "neg_item_id": first.reshape(-1)}
    return Interaction({**fields, **sampler.extra_batch_fields(users, items, 1)})


def pick_in_loss(sampler, model, batch) -> torch.Tensor:
    adapter = get_adapter(model)
    user_layers, item_layers = adapter.propagate()
    return sampler.pick_in_loss(adapter, batch, user_layers, adapter.pool(item_layers).detach())


@pytest.fixture(scope="module")
def train_dataset(ml100k):
    return ml100k[2]._dataset


@pytest.fixture(scope="module")
def rows(train_dataset) -> tuple[torch.Tensor, torch.Tensor]:
    inter = train_dataset.inter_feat
    return inter["user_id"][:1024], inter["item_id"][:1024]


@pytest.fixture(scope="module")
def bpr(ml100k, train_dataset):
    init_seed(7, True)
    return get_model("BPR")(ml100k[0], train_dataset)


@pytest.fixture(scope="module")
def hot(train_dataset, rows, bpr) -> set[int]:
    """The items unfiltered DNS picks most on these rows: a filter that flags them must change many picks."""
    with torch.no_grad():
        picked = pick_in_loss(
            make_sampler("dns", train_dataset), bpr, in_loss_batch(make_sampler("dns", train_dataset), *rows)
        )
    counts = np.bincount(picked.numpy())
    return set(np.argsort(counts)[::-1][:60].tolist())


def outside_hot(picked: torch.Tensor, candidates: torch.Tensor, hot: set[int]) -> None:
    """No pick is hot, except in a row whose candidates are all hot (which keeps its least close: the first)."""
    is_hot = torch.isin(candidates, torch.tensor(sorted(hot)))
    all_hot = is_hot.all(dim=1)
    picked_hot = torch.isin(picked, torch.tensor(sorted(hot)))
    assert not picked_hot[~all_hot].any()
    assert torch.equal(picked[all_hot], candidates[all_hot, 0])


@pytest.mark.parametrize("name", ["dns", "dns_mn", "ahns"])
def test_a_dropped_candidate_is_never_picked_in_the_loss(name, train_dataset, rows, bpr, hot):
    plain, filtered = make_sampler(name, train_dataset), make_sampler(name, train_dataset, hot, **USER_FILTER)
    with torch.no_grad():
        before = pick_in_loss(plain, bpr, in_loss_batch(plain, *rows))
        batch = in_loss_batch(filtered, *rows)
        after = pick_in_loss(filtered, bpr, batch)
    assert torch.equal(
        batch["neg_candidates"], in_loss_batch(make_sampler(name, train_dataset), *rows)["neg_candidates"]
    )
    outside_hot(after, batch["neg_candidates"], hot)
    if name == "dns":  # the hot items are what DNS picked: a large share of the picks moves
        assert torch.isin(before, torch.tensor(sorted(hot))).float().mean() > 0.2
    assert filtered.text_filter.details()["flagged_share"] > 0


def test_a_dropped_candidate_is_never_picked_through_predict(train_dataset, rows, bpr, hot, monkeypatch):
    with monkeypatch.context() as patch:
        patch.delitem(adapters.ADAPTER_REGISTRY, "BPR")
        plain = make_sampler("dns", train_dataset)
        filtered = make_sampler("dns", train_dataset, hot, **USER_FILTER)
    assert not filtered.scores_in_loss
    before = plain.sample(*rows, 2, model=bpr).reshape(-1)
    after = filtered.sample(*rows, 2, model=bpr).reshape(-1)
    candidates = torch.from_numpy(make_sampler("dns", train_dataset).draw_pool(rows[0].numpy(), 2))
    assert torch.isin(before, torch.tensor(sorted(hot))).float().mean() > 0.1
    outside_hot(after, candidates, hot)


@pytest.mark.parametrize("name", ["mixgcf", "dins"])
def test_the_hardest_candidate_of_a_mixing_sampler_is_never_a_dropped_one(name, train_dataset, rows, bpr, hot):
    sampler = make_sampler(name, train_dataset, hot, **USER_FILTER)
    hardest = []
    sampler.false_negatives.count = lambda users, picked: hardest.append(picked)
    batch = in_loss_batch(sampler, *rows)
    loss = sampler.training_loss(bpr)(batch)
    assert torch.isfinite(loss)
    (picked,) = hardest
    assert picked.shape == (len(batch), 1)  # BPR: one layer
    outside_hot(picked.squeeze(1), batch["neg_candidates"], hot)


def test_downweight_moves_picks_away_from_flagged_candidates_as_the_weight_grows(train_dataset, rows, bpr, hot):
    hot_ids = torch.tensor(sorted(hot))
    shares, picks = [], []
    for weight in (0.0, 0.05, 0.3, 1.0):
        sampler = make_sampler(
            "dns", train_dataset, hot, text_filter_mode="downweight", text_filter_weight=weight, **USER_FILTER
        )
        with torch.no_grad():
            picks.append(pick_in_loss(sampler, bpr, in_loss_batch(sampler, *rows)))
        shares.append(torch.isin(picks[-1], hot_ids).float().mean().item())
    plain = make_sampler("dns", train_dataset)
    with torch.no_grad():
        assert torch.equal(picks[0], pick_in_loss(plain, bpr, in_loss_batch(plain, *rows)))
    assert shares[0] > shares[1] > shares[2] > shares[3]
    # Weight 1 puts a flagged candidate at or below every other: only all-hot rows (and exact ties) keep one.
    assert shares[3] < 0.01


def test_a_row_with_every_candidate_flagged_keeps_its_least_close_one(train_dataset):
    sampler = make_sampler("dns", train_dataset, **USER_FILTER)
    closeness = torch.tensor([[0.9, 0.7, 0.95], [0.2, 0.9, 0.1], [0.6, 0.8, 0.55]])
    flags = sampler.text_filter.flags(closeness)
    assert flags.tolist() == [[True, False, True], [False, True, False], [True, True, False]]
    scores = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0], [4.0, 9.0, -1.0]])
    dropped = Screen(flags, "drop", 0.0).apply(scores)
    assert sampler.choose(dropped).tolist() == [1, 2, 2]


def test_dns_mn_draws_only_among_the_candidates_left(train_dataset):
    sampler = make_sampler("dns_mn", train_dataset, dns_top_n=4, **USER_FILTER)
    scores = torch.arange(8.0).repeat(3000, 1)  # the top 4 are columns 7, 6, 5, 4
    flags = torch.zeros(3000, 8, dtype=torch.bool)
    flags[:, 6:] = True  # the two best are dropped: the draw is among columns 5 and 4, then 3 and 2
    picked = sampler.pick(scores, None, Screen(flags, "drop", 0.0))
    assert set(picked.tolist()) == {2, 3, 4, 5}
    flags[:] = True
    flags[:, 3] = False  # one candidate left: always it
    assert sampler.pick(scores, None, Screen(flags, "drop", 0.0)).eq(3).all()


@pytest.mark.parametrize("name", ["dns", "dns_mn", "ahns"])
def test_without_the_filter_the_picks_are_the_rules_own(name, train_dataset, rows, bpr):
    """Filter off: the picks of the rule as it was written before the filter existed (bit for bit)."""
    sampler, twin = make_sampler(name, train_dataset, dns_top_n=3), make_sampler(name, train_dataset, dns_top_n=3)
    assert sampler.text_filter is None
    adapter = get_adapter(bpr)
    with torch.no_grad():
        batch = in_loss_batch(sampler, *rows)
        picked = pick_in_loss(sampler, bpr, batch)
        in_loss_batch(twin, *rows)  # keeps the twin's generator in step
        users, items = adapter.model.user_embedding.weight, adapter.model.item_embedding.weight
        scores = (users[batch["user_id"]].unsqueeze(1) * items[batch["neg_candidates"]]).sum(-1)
        positive = (users[batch["user_id"]] * items[batch["item_id"]]).sum(-1)
    if name == "dns":
        column = scores.argmax(dim=1)
    elif name == "dns_mn":
        top = scores.topk(3, dim=1).indices
        column = top.gather(1, torch.from_numpy(twin.rng.integers(0, 3, size=(len(scores), 1)))).squeeze(1)
    else:
        column = (scores - twin.target(positive).unsqueeze(1)).abs().argmin(dim=1)
    assert torch.equal(picked, batch["neg_candidates"].gather(1, column.unsqueeze(1)).squeeze(1))


def test_a_filter_that_flags_nothing_changes_no_pick(train_dataset, rows, bpr, hot):
    for name in ("dns_mn", "mixgcf"):
        plain = make_sampler(name, train_dataset)
        quiet = make_sampler(name, train_dataset, hot, text_filter="user", text_filter_threshold=1.0)
        recorded = []
        for sampler in (plain, quiet):
            sampler.false_negatives.count = lambda users, picked, store=recorded: store.append(picked)
            with torch.no_grad():
                if name == "dns_mn":
                    pick_in_loss(sampler, bpr, in_loss_batch(sampler, *rows))
                else:
                    sampler.training_loss(bpr)(in_loss_batch(sampler, *rows))
        assert torch.equal(recorded[0], recorded[1])


def test_nearest_item_closeness_per_batch_equals_the_precomputed_table(train_dataset, rows, monkeypatch):
    generator = torch.Generator().manual_seed(3)
    users = torch.randn(train_dataset.user_num, 16, generator=generator)
    items = torch.randn(train_dataset.item_num, 16, generator=generator)
    config = make_config("dns", text_filter="nearest_item")
    table_filter = TextFilter.from_config(config, train_dataset)
    table_filter.set_vectors(users, items)
    monkeypatch.setattr(text_filter_module, "NEAREST_TABLE_MAX_CELLS", 0)
    monkeypatch.setattr(text_filter_module, "PAIR_BLOCK", 1000)  # several blocks
    batch_filter = TextFilter.from_config(config, train_dataset)
    batch_filter.set_vectors(users, items)
    assert table_filter._nearest_table is not None and batch_filter._nearest_table is None
    candidates = torch.randint(1, train_dataset.item_num, (64, 8), generator=generator)
    row_users = rows[0][:64]
    by_table = table_filter.closeness(row_users, candidates)
    torch.testing.assert_close(batch_filter.closeness(row_users, candidates), by_table)
    # The reference: the best cosine over the user's training items, one row at a time.
    unit = torch.nn.functional.normalize(items, dim=-1)
    inter = train_dataset.inter_feat
    for row in (0, 17, 63):
        history = inter["item_id"][inter["user_id"] == row_users[row]]
        expected = (unit[candidates[row]] @ unit[history].T).amax(dim=1)
        torch.testing.assert_close(by_table[row], expected)


def held_out(users: list[int], items: list[int]) -> SimpleNamespace:
    """A stand-in for a held-out RecBole dataset: its interactions and field names."""
    inter = {"user_id": torch.tensor(users), "item_id": torch.tensor(items)}
    return SimpleNamespace(inter_feat=inter, uid_field="user_id", iid_field="item_id")


def test_the_meter_counts_a_picked_held_out_positive(train_dataset, rows, bpr):
    with torch.no_grad():
        probe = make_sampler("dns", train_dataset)
        picked = pick_in_loss(probe, bpr, in_loss_batch(probe, *rows))
    users = rows[0]
    # Held out: the pick of every third row, and items nobody picked.
    chosen = torch.arange(0, len(users), 3)
    unpicked = [item for item in range(1, train_dataset.item_num) if item not in set(picked.tolist())][:5]
    held = held_out(users[chosen].tolist() + [1] * len(unpicked), picked[chosen].tolist() + unpicked)
    sampler = make_sampler("dns", train_dataset)
    sampler.prepare([held])
    with torch.no_grad():
        again = pick_in_loss(sampler, bpr, in_loss_batch(sampler, *rows))
    assert torch.equal(again, picked)
    pairs = set(zip(users[chosen].tolist(), picked[chosen].tolist(), strict=True))
    expected = sum((user, item) in pairs for user, item in zip(users.tolist(), picked.tolist(), strict=True))
    sampler.end_epoch()
    details = sampler.run_details()
    assert details["false_hard_negatives"]["held_out_positives"] == expected >= len(chosen)
    assert details["false_hard_negative_rate"] == expected / len(users)
    assert details["false_hard_negatives"]["per_epoch"] == [expected / len(users)]


def test_uniform_draws_are_counted_against_the_held_out_split(train_dataset, rows):
    sampler = make_sampler("uniform", train_dataset)
    assert sampler.run_details()["false_hard_negative_rate"] is None  # nothing counted without held-out data
    users = rows[0]
    # Every item that is not a training positive of the batch's first five users is held out: their draws all count.
    chosen = users.unique()[:5].tolist()
    inter = train_dataset.inter_feat
    positives = set(zip(inter["user_id"].tolist(), inter["item_id"].tolist(), strict=True))
    pairs = [(u, i) for u in chosen for i in range(1, train_dataset.item_num) if (u, i) not in positives]
    sampler.prepare([held_out(*map(list, zip(*pairs, strict=True)))])
    sampler.sample(users, rows[1], 2)
    expected = int(torch.isin(users, torch.tensor(chosen)).sum()) * 2
    assert 0 < expected < 2 * len(users)
    counts = sampler.run_details()["false_hard_negatives"]
    assert counts["held_out_positives"] == expected and counts["picks"] == 2 * len(users)


@pytest.mark.parametrize("bitset", [True, False])
def test_the_meter_broadcasts_users_over_layers(bitset, monkeypatch):
    monkeypatch.setattr(false_negatives, "BITSET_MAX_CELLS", 1 << 28 if bitset else 0)
    meter = FalseHardNegativeMeter(n_users=3, n_items=10)
    meter.set_held_out([held_out([1, 2, 2], [3, 4, 9])])
    assert (meter.bits is not None) == bitset
    meter.count(torch.tensor([1, 2, 1]), torch.tensor([[3, 5], [4, 4], [4, 3]]))
    meter.count(torch.tensor([2, 0]), torch.tensor([9, 0]))  # the last key, and one below the first
    assert meter.details()["false_hard_negatives"] == {"picks": 8, "held_out_positives": 5, "per_epoch": [5 / 8]}


@pytest.mark.parametrize("pending", [1, 4, 7, 1 << 20])  # all at once; some at once; buffer full; at the epoch's end
def test_the_meter_counts_picks_it_holds_back_and_copies_them(pending, monkeypatch):
    """Picks wait in a buffer of ``PENDING_PICKS`` for one test: every epoch's counts are the same whether they were
    tested at once, when the buffer filled or at the epoch's end, and a caller changing its tensors after ``count``
    changes nothing."""
    monkeypatch.setattr(false_negatives, "PENDING_PICKS", pending)
    meter = FalseHardNegativeMeter(n_users=3, n_items=10)
    meter.set_held_out([held_out([1, 2, 2], [3, 4, 9])])
    users, picked = torch.tensor([1, 2, 1]), torch.tensor([[3, 5], [4, 4], [4, 3]])
    meter.count(users, picked)
    picked.fill_(0)  # the caller reuses its buffers: the counted picks were copied
    users.fill_(0)
    meter.count(torch.tensor([2, 0]), torch.tensor([9, 0]))
    meter.end_epoch()
    meter.count(torch.tensor([2]), torch.tensor([[4, 9, 1]]))
    counts = meter.details()["false_hard_negatives"]
    assert counts == {"picks": 11, "held_out_positives": 7, "per_epoch": [5 / 8, 2 / 3]}


def test_settings_are_checked():

    with pytest.raises(ConfigurationError, match="neg_sampler=uniform scores none"):
        make_config("uniform", text_filter="user")
    with pytest.raises(ConfigurationError, match="refit"):
        make_config("dns", text_filter="user", refit_with_valid=True)
    with pytest.raises(ConfigurationError, match="text_filter_mode='soft' is invalid"):
        make_config("dns", text_filter="user", text_filter_mode="soft")
    with pytest.raises(ConfigurationError, match="text_filter_quantile=1 flags nothing"):
        make_config("mixgcf", text_filter="nearest_item", text_filter_quantile=1.0)
    assert make_config("uniform", text_filter_mode="soft")["text_filter"] == "none"  # off: the knobs are not read


def test_a_run_reports_the_rate_of_its_picks_per_epoch(run_settings):
    result = run("BPR", "ml-100k", config_dict={**run_settings, "neg_sampler": "uniform", "epochs": 2})
    counts = result["false_hard_negatives"]
    assert len(counts["per_epoch"]) == 2 and counts["picks"] > 2 * 70_000  # every training pair, each epoch
    # Uniform draws hit a held-out positive about as often as held-out pairs fill the cells left: ~1% on ml-100k.
    assert 0.005 < result["false_hard_negative_rate"] < 0.03
