"""Adaptive hardness negative sampling (AHNS).

Reference: Riwei Lai et al. "Adaptive Hardness Negative Sampling for Collaborative Filtering." in AAAI 2024.
Reference code: https://github.com/Riwei-HEU/AHNS
"""

from __future__ import annotations

import torch

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.model.adapters import adapter_class_for, get_adapter
from recbole_hnlm.samplers.base import ModelScoredSampler, scoring_mode

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

    def sample(self, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int, model=None) -> torch.Tensor:
        """Pick, ``num`` times per positive, the candidate of the adaptive hardness."""
        candidates, scores, positive = self.score_candidates(model, user_ids, num, also_score=item_ids)
        if self.similarity == "cos":
            user_norm, item_norm = embedding_norms(model)
            scores = scores / (user_norm[user_ids] * item_norm[candidates]).clamp_min(1e-12)
            positive = positive / (user_norm[user_ids] * item_norm[item_ids]).clamp_min(1e-12)
        target = self.target(positive)  # (batch,)
        closest = (scores - target).abs().argmin(dim=1, keepdim=True)
        return candidates.gather(1, closest).squeeze(1)


def embedding_norms(model) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 norms of every user's and item's pooled embedding (the vectors the model scores with), in eval mode."""
    adapter = get_adapter(model)
    with scoring_mode(model):
        users, items = adapter.propagate()
        return adapter.pool(users).norm(dim=-1).cpu(), adapter.pool(items).norm(dim=-1).cpu()
