"""Adaptive hardness negative sampling (AHNS).

Reference: Riwei Lai et al. "Adaptive Hardness Negative Sampling for Collaborative Filtering." in AAAI 2024.
Reference code: https://github.com/Riwei-HEU/AHNS
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.model.adapters import adapter_class_for
from recbole_hnlm.samplers.base import ModelScoredSampler

SIMILARITIES = ("ip", "cos")


class AdaptiveHardnessSampler(ModelScoredSampler):
    """Picks the candidate whose score is closest to ``beta * (s(u, i) + alpha) ** (p + 1)``.

    With the paper's p = -2 the target falls as the positive's score rises: positives the model already
    ranks high get easier negatives, poorly ranked positives get harder ones. Scores are the model's own (``ip``,
    as in the authors' code by default) or, with ``ahns_similarity: cos``, cosines of the pooled embeddings
    (the authors' code's ``--simi cos``), which keeps the target on one scale however large the embeddings grow;
    cosines need a model adapter.
    """

    name = "ahns"
    uses_positive_score = True

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        self.alpha = float(config["ahns_alpha"])
        self.beta = float(config["ahns_beta"])
        self.power = int(config["ahns_p"]) + 1
        self.similarity = config["ahns_similarity"]

    @classmethod
    def validate_config(cls, config) -> None:
        """``ahns_p`` must be an integer (a fractional power of a negative score is undefined)."""
        super().validate_config(config)
        power = config["ahns_p"]
        if not isinstance(power, int):
            raise ConfigurationError(
                f"ahns_p={power!r} is invalid: it must be an integer, since s(u,i) + alpha can be negative and "
                "a fractional power of it is undefined. Fix: e.g. --ahns_p=-2 (the paper's default)."
            )
        for key in ("ahns_alpha", "ahns_beta"):
            if not isinstance(config[key], (int, float)):
                raise ConfigurationError(f"{key}={config[key]!r} is invalid: it must be a number.")
        similarity = config["ahns_similarity"]
        if similarity not in SIMILARITIES:
            raise ConfigurationError(f"ahns_similarity={similarity!r} is invalid. Valid: {', '.join(SIMILARITIES)}.")
        if similarity == "cos":
            adapter_class_for(config["model"])  # cosines need the model's embeddings

    def target(self, positive: torch.Tensor) -> torch.Tensor:
        """The score the picked candidate should be closest to, for positives scored ``positive``."""
        return self.beta * (positive + self.alpha).pow(self.power)

    def scoring_vectors(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled embeddings, or for ``ahns_similarity: cos`` their unit vectors (inner products are cosines)."""
        if self.similarity == "cos":
            return F.normalize(users, dim=-1), F.normalize(items, dim=-1)
        return users, items

    def preference(self, scores: torch.Tensor, positive_scores: torch.Tensor | None) -> torch.Tensor:
        """The closer a candidate's score to the target of the row's positive, the better: minus the distance."""
        return -(scores - self.target(positive_scores).unsqueeze(1)).abs()
