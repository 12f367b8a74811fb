"""DNS(M, N): uniformly one of the N top-scored of M uniform candidates.

Reference: Wentao Shi et al. "On the Theories Behind Hard Negative Sampling for Recommendation." in
WWW 2023. Reference code: https://github.com/Riwei-HEU/AHNS (``dns_mn``).
"""

from __future__ import annotations

import torch

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.samplers.base import ModelScoredSampler


class TopNDynamicNegativeSampler(ModelScoredSampler):
    """Softens DNS: draws among the ``dns_top_n`` best of ``candidate_num`` candidates instead of the best."""

    name = "dns_mn"

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        self.top_n = int(config["dns_top_n"])

    @classmethod
    def validate_config(cls, config) -> None:
        """N must be an integer in [1, M]."""
        super().validate_config(config)
        top_n, candidate_num = config["dns_top_n"], config["candidate_num"]
        if not isinstance(top_n, int) or not 1 <= top_n <= candidate_num:
            raise ConfigurationError(
                f"dns_top_n={top_n!r} is invalid with candidate_num={candidate_num}: DNS(M, N) picks among the "
                "N best of M candidates, so 1 <= N <= M. Fix: lower --dns_top_n or raise --candidate_num."
            )

    def pick(self, scores: torch.Tensor, positive_scores: torch.Tensor | None) -> torch.Tensor:
        """Uniformly one of the ``dns_top_n`` highest scores (a seeded draw per row)."""
        top = scores.topk(self.top_n, dim=1).indices  # (rows, N)
        choice = torch.from_numpy(self.rng.integers(0, self.top_n, size=(len(scores), 1))).to(top.device)
        return top.gather(1, choice).squeeze(1)
