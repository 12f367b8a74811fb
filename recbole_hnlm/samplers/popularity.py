"""Popularity-biased negative sampling: P(item) proportional to its training frequency to the power alpha.

Reference: Tomas Mikolov et al. "Distributed Representations of Words and Phrases and their
Compositionality." in NeurIPS 2013 (the unigram^alpha noise distribution); used for CF by RecBole.
"""

from __future__ import annotations

import numpy as np
import torch

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.samplers.base import NegativeSampler


class PopularitySampler(NegativeSampler):
    """Negatives drawn in proportion to ``count(item) ** popularity_alpha`` over the training split only.

    RecBole's own popularity sampler counts validation and test interactions too; this one does not, so the
    held-out data cannot leak into training through the sampling distribution.
    """

    name = "popularity"

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        counts = np.bincount(dataset.inter_feat[dataset.iid_field].numpy(), minlength=self.n_items)
        weights = counts.astype(np.float64) ** float(config["popularity_alpha"])
        weights[0] = 0.0  # padding id
        weights[counts == 0] = 0.0  # 0 ** 0 would give never-seen items weight 1
        self.cumulative = np.cumsum(weights) / weights.sum()

    @classmethod
    def validate_config(cls, config) -> None:
        """``popularity_alpha`` must be a non-negative number."""
        super().validate_config(config)
        alpha = config["popularity_alpha"]
        if not isinstance(alpha, (int, float)) or alpha < 0:
            raise ConfigurationError(
                f"popularity_alpha={alpha!r} is invalid: it must be a number >= 0 (0 = uniform over trained "
                "items, 1 = proportional to frequency). Fix: e.g. --popularity_alpha=0.75."
            )

    def _draw(self, size) -> np.ndarray:
        draws = np.searchsorted(self.cumulative, self.rng.random(size), side="right")
        return np.minimum(draws, self.n_items - 1)

    def sample(self, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int, model=None) -> torch.Tensor:
        """Draw ``num`` popularity-weighted negatives per positive."""
        users = user_ids.numpy()
        items = self._draw((num, len(users)))
        negatives = torch.from_numpy(self._redraw_positives(users, items, self._draw))
        self.false_negatives.count(user_ids, negatives.T)
        return negatives
