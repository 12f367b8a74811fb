"""Dynamic negative sampling (DNS): the highest-scored of ``candidate_num`` uniform candidates.

Reference: Weinan Zhang et al. "Optimizing Top-N Collaborative Filtering via Dynamic Negative Item
Sampling." in SIGIR 2013.
"""

from __future__ import annotations

import torch

from recbole_hnlm.samplers.base import ModelScoredSampler


class DynamicNegativeSampler(ModelScoredSampler):
    """Scores M uniform candidates with the current model and keeps the top-scored one."""

    name = "dns"

    def preference(self, scores: torch.Tensor, positive_scores: torch.Tensor | None) -> torch.Tensor:
        """The hardest candidate first: the score itself (``choose`` keeps the highest)."""
        return scores
