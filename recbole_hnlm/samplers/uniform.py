"""Uniform random negative sampling (RNS).

Reference: Steffen Rendle et al. "BPR: Bayesian Personalized Ranking from Implicit Feedback." in UAI 2009.
"""

from __future__ import annotations

import torch

from recbole_hnlm.samplers.base import NegativeSampler


class UniformSampler(NegativeSampler):
    """Every item the user has not trained on is equally likely."""

    name = "uniform"

    def sample(self, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int, model=None) -> torch.Tensor:
        """Draw ``num`` uniform negatives per positive."""
        negatives = torch.from_numpy(self.draw_uniform(user_ids.numpy(), num))
        self.false_negatives.count(user_ids, negatives.T)
        return negatives
