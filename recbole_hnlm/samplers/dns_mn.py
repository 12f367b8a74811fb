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

    def preference(self, scores: torch.Tensor, positive_scores: torch.Tensor | None) -> torch.Tensor:
        """The harder the better: the score itself."""
        return scores

    def choose(self, preference: torch.Tensor) -> torch.Tensor:
        """Uniformly one of the ``dns_top_n`` most preferred (a seeded draw per row).

        Candidates the text filter dropped (preference -inf) are not drawn: a row with fewer than N left draws
        among those it has (at least one: the filter keeps one per row).
        """
        top = preference.topk(self.top_n, dim=1).indices  # (rows, N)
        high = self.top_n
        if self.text_filter is not None and self.text_filter.settings.mode == "drop":
            kept = (preference > float("-inf")).sum(dim=1, keepdim=True).clamp(min=1, max=self.top_n)
            high = kept.cpu().numpy()  # numpy draws the same numbers as with a scalar bound where all are N
        choice = torch.from_numpy(self.rng.integers(0, high, size=(len(preference), 1))).to(top.device)
        return top.gather(1, choice).squeeze(1)
