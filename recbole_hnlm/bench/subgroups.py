"""Test Recall@K and NDCG@K of a trained run overall, for sparse users and for long-tail items.

The ranking is RecBole's full-sort test evaluation, reproduced batch by batch on the test dataloader (so the
overall numbers equal the run's ``test_result``; tests/bench/test_subgroups.py checks it): every item is scored,
``[PAD]`` and the user's history as RecBole's test loader holds it (training and validation positives) are
masked, and the top K are kept (``torch.topk`` over the config's largest ``topk``, as RecBole's collector does).

Subgroups, both fixed from the training split only:

- sparse users: the lowest-activity quartile of the test users, by training interactions: the ``ceil(n / 4)``
  test users with the fewest training interactions (ties broken by internal user id, so the set is exactly a
  quarter). Their Recall@K and NDCG@K are the usual per-user metrics averaged over these users only.
- long-tail items: every item outside the head, the ``ceil(0.2 * n_items)`` items with the most training
  interactions (ties broken by internal item id; items never trained on are long-tail). Recall@K on long-tail
  items is, per user with at least one long-tail test positive, the long-tail test positives in the user's
  (unchanged, full) top K divided by the user's long-tail test positives, averaged over those users; NDCG@K
  likewise counts only long-tail positives as relevant (DCG of their ranks in the top K over the ideal DCG of
  ``min(long-tail positives, K)``). Head positives stay in the ranking; they just do not count.

Memory: one (users of a batch) x (items) score matrix at a time, as in RecBole's own evaluation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np
import torch

from recbole_hnlm.data.preparation import load_dataset
from recbole_hnlm.model.adapters import scoring_mode
from recbole_hnlm.quick_start import load_data_and_model

HEAD_SHARE = 0.2
SPARSE_SHARE = 0.25
SUBGROUPS = ("sparse_users", "long_tail")


def subgroup_columns(k: int = 20) -> list[str]:
    """The runs.csv columns that ``subgroup_metrics`` adds, e.g. ``recall@20_sparse_users``."""
    return [f"{metric}@{k}_{group}" for group in SUBGROUPS for metric in ("recall", "ndcg")]


def training_counts(dataset, field: str, size: int) -> np.ndarray:
    """Training interactions per internal id of ``field`` (user or item), ``size`` entries."""
    return np.bincount(dataset.inter_feat[field].numpy(), minlength=size)


def sparse_users(users: np.ndarray, train_counts: np.ndarray, share: float = SPARSE_SHARE) -> np.ndarray:
    """The ``ceil(share * len(users))`` of ``users`` with the fewest training interactions (ties: lower id first)."""
    users = np.unique(users)
    order = np.lexsort((users, train_counts[users]))
    return np.sort(users[order[: math.ceil(share * len(users))]])


def long_tail_items(train_counts: np.ndarray, share: float = HEAD_SHARE) -> np.ndarray:
    """Boolean mask over item ids: True outside the ``ceil(share * n)`` most-trained items; ``[PAD]`` (0) False."""
    items = np.arange(1, len(train_counts))
    order = np.lexsort((items, -train_counts[items]))
    head = items[order[: math.ceil(share * len(items))]]
    mask = np.ones(len(train_counts), dtype=bool)
    mask[0] = False
    mask[head] = False
    return mask


def _dcg_and_ideal(hits: torch.Tensor, relevant: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: DCG of the hit positions in the top k, and the ideal DCG of ``min(relevant, k)`` hits."""
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    dcg = (hits[:, :k].double() * discounts).sum(dim=1)
    ideal = torch.cumsum(discounts, 0)[(relevant.clamp(max=k) - 1).clamp(min=0)]
    return dcg, ideal


def per_user_metrics(model, test_data, long_tail: np.ndarray, k: int = 20) -> dict[str, np.ndarray]:
    """Per test user: id, recall@k and ndcg@k, and the same over long-tail positives (nan where it has none)."""
    config = test_data.config
    depth = max(k, *config["topk"])
    tail = torch.from_numpy(long_tail)
    columns: dict[str, list] = {name: [] for name in ("user", "recall", "ndcg", "tail_recall", "tail_ndcg")}
    with scoring_mode(model):
        for interaction, history_index, positive_u, positive_i in test_data:
            # RecBole's Trainer._full_sort_batch_eval and Collector.eval_batch_collect, on one batch of users.
            scores = model.full_sort_predict(interaction.to(config["device"])).view(-1, test_data._dataset.item_num)
            scores = scores.cpu()
            scores[:, 0] = -np.inf
            if history_index is not None:
                scores[history_index] = -np.inf
            _, top = torch.topk(scores, depth, dim=-1)
            positives = torch.zeros_like(scores, dtype=torch.bool)
            positives[positive_u, positive_i] = True
            hits = torch.gather(positives, 1, top)[:, :k]
            relevant = positives.sum(dim=1)
            tail_hits = hits & tail[top[:, :k]]
            tail_relevant = (positives & tail).sum(dim=1)
            dcg, ideal = _dcg_and_ideal(hits, relevant, k)
            tail_dcg, tail_ideal = _dcg_and_ideal(tail_hits, tail_relevant, k)
            has_tail = tail_relevant > 0
            nan = torch.full_like(dcg, float("nan"))
            columns["user"].append(interaction[test_data._dataset.uid_field].cpu().numpy())
            columns["recall"].append((hits.sum(dim=1) / relevant).numpy())
            columns["ndcg"].append((dcg / ideal).numpy())
            columns["tail_recall"].append(
                torch.where(has_tail, tail_hits.sum(dim=1) / tail_relevant.clamp(min=1), nan).numpy()
            )
            columns["tail_ndcg"].append(torch.where(has_tail, tail_dcg / tail_ideal, nan).numpy())
    return {name: np.concatenate(parts) for name, parts in columns.items()}


def subgroup_metrics(model, train_data, test_data, k: int = 20) -> dict:
    """Overall, sparse-user and long-tail Recall@k and NDCG@k on the test split, and the subgroups' sizes."""
    train = train_data._dataset
    user_counts = training_counts(train, train.uid_field, train.user_num)
    tail = long_tail_items(training_counts(train, train.iid_field, train.item_num))
    per_user = per_user_metrics(model, test_data, tail, k)
    sparse = np.isin(per_user["user"], sparse_users(per_user["user"], user_counts))
    with_tail = ~np.isnan(per_user["tail_recall"])
    return {
        f"recall@{k}": float(per_user["recall"].mean()),
        f"ndcg@{k}": float(per_user["ndcg"].mean()),
        f"recall@{k}_sparse_users": float(per_user["recall"][sparse].mean()),
        f"ndcg@{k}_sparse_users": float(per_user["ndcg"][sparse].mean()),
        f"recall@{k}_long_tail": float(per_user["tail_recall"][with_tail].mean()) if with_tail.any() else None,
        f"ndcg@{k}_long_tail": float(per_user["tail_ndcg"][with_tail].mean()) if with_tail.any() else None,
        "test_users": int(len(per_user["user"])),
        "sparse_users": int(sparse.sum()),
        "sparse_user_max_train_interactions": int(user_counts[per_user["user"][sparse]].max()),
        "long_tail_items": int(tail.sum()),
        "head_items": int(train.item_num - 1 - tail.sum()),
        "users_with_long_tail_positives": int(with_tail.sum()),
    }


def checkpoint_subgroup_metrics(
    checkpoint: str | os.PathLike, k: int = 20, dataset_loader: Callable = load_dataset
) -> dict:
    """``subgroup_metrics`` of a checkpoint written by ``quick_start.run`` (reloaded with its own config and split)."""
    _, model, _, train_data, _, test_data = load_data_and_model(checkpoint, dataset_loader)
    return subgroup_metrics(model, train_data, test_data, k)
