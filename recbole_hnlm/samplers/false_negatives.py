"""The false-hard-negative rate of the negatives a sampler picks: the share that are the user's held-out positives.

A measurement only. The validation and test interactions reach the sampler through ``prepare`` (quick_start calls
it once the split is known) and are read here and nowhere else: no pick ever depends on them. What counts as a
pick is each sampler's trained negative: a uniform or popularity draw, the candidate dns, dns_mn and ahns pick (in
the loss or through ``predict``), the hardest candidate of each layer that mixgcf and dins mix.

Counting is a vectorised membership test on the device of the picks (a binary search in the sorted held-out
``user * n_items + item`` keys); the counts stay there until an epoch ends, so no batch waits on a transfer.
"""

from __future__ import annotations

import numpy as np
import torch


def held_out_keys(held_out_datasets: list, n_items: int) -> torch.Tensor:
    """Sorted ``user * n_items + item`` keys of every interaction of the held-out (validation, test) datasets."""
    keys = [
        dataset.inter_feat[dataset.uid_field].numpy().astype(np.int64) * n_items
        + dataset.inter_feat[dataset.iid_field].numpy().astype(np.int64)
        for dataset in held_out_datasets
    ]
    return torch.from_numpy(np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64))


class FalseHardNegativeMeter:
    """Counts picked negatives, and those among them that are held-out positives of their user, per epoch."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.keys: torch.Tensor | None = None  # set by set_held_out; until then nothing is counted
        self._keys_on: dict[torch.device, torch.Tensor] = {}
        self._picks = 0
        self._held_out: torch.Tensor | int = 0
        self.epochs: list[tuple[int, int]] = []  # (picks, held-out picks) of each finished epoch

    def set_held_out(self, held_out_datasets: list) -> None:
        """Measure against the interactions of these datasets (validation and test)."""
        self.keys = held_out_keys(held_out_datasets, self.n_items)
        self._keys_on.clear()

    def is_held_out(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """Boolean mask: is (user, item) a held-out positive? Shapes broadcast; on the items' device."""
        device = item_ids.device
        if device not in self._keys_on:
            self._keys_on[device] = self.keys.to(device)
        keys = self._keys_on[device]
        query = user_ids.to(device).long() * self.n_items + item_ids.long()
        if not len(keys):
            return torch.zeros(query.shape, dtype=torch.bool, device=device)
        position = torch.searchsorted(keys, query.reshape(-1)).clamp(max=len(keys) - 1).reshape(query.shape)
        return keys[position] == query

    def count(self, user_ids: torch.Tensor, picked: torch.Tensor) -> None:
        """Count ``picked`` (rows, ...) negatives of the rows' users (rows,), when held-out data was given."""
        if self.keys is None:
            return
        users = user_ids.reshape(len(user_ids), *[1] * (picked.dim() - 1))
        with torch.no_grad():
            self._held_out = self._held_out + self.is_held_out(users, picked).sum()
        self._picks += picked.numel()

    def end_epoch(self) -> None:
        """Close the current epoch's counts (one transfer per epoch)."""
        if self._picks:
            self.epochs.append((self._picks, int(self._held_out)))
        self._picks, self._held_out = 0, 0

    def details(self) -> dict:
        """``false_hard_negative_rate`` (None when nothing was counted) and its counts, overall and per epoch."""
        epochs = [*self.epochs, (self._picks, int(self._held_out))] if self._picks else list(self.epochs)
        picks = sum(count for count, _ in epochs)
        held_out = sum(count for _, count in epochs)
        return {
            "false_hard_negative_rate": held_out / picks if picks else None,
            "false_hard_negatives": {
                "picks": picks,
                "held_out_positives": held_out,
                "per_epoch": [count / total for total, count in epochs],
            },
        }
