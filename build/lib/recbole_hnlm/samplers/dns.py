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

    def sample(self, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int, model=None) -> torch.Tensor:
        """Pick the hardest of ``candidate_num`` candidates, ``num`` times per positive."""
        candidates, scores, _ = self.score_candidates(model, user_ids, num)
        best = scores.argmax(dim=1, keepdim=True)
        return candidates.gather(1, best).squeeze(1)
