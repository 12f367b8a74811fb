"""What MixGCF and DINS share: a pool of uniform candidates per positive, and a loss on synthesized negatives.

How a mixing sampler hooks into RecBole's training without forking it:

1. The train dataloader fills RecBole's ``NEG_ITEM_ID`` as usual (with a uniform negative, so that the batch
   stays valid for any code that reads it) and adds the field ``neg_candidates``: ``(rows, candidate_num)``
   uniform item ids per (positive, negative) row, never a training positive of the row's user.
2. The trainer passes ``training_loss(model)`` as RecBole's ``Trainer._train_epoch(loss_func=...)``: per batch,
   one propagation through the model's adapter; per row and layer the hardest candidate (the highest score
   against the adapter's layer query, once a text filter, when set, dropped or lowered the candidates too close to
   the user in text space: ``samplers/text_filter.py``); one negative synthesized per row from it and the positive
   (``synthesize``); and the model's own pairwise loss on it, regularisation and auxiliary terms included.

The candidates are scored inside the loss, on the same propagation that the loss differentiates, as the
reference implementations do, so no extra forward pass is spent on sampling. Scoring holds at most
O(rows x candidate_num x layers x dim) values (in fact blocks of ``SCORING_BLOCK``), never a user x item matrix.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from functools import partial

import torch
from recbole.data.interaction import Interaction

from recbole_hnlm.model.adapters import MeanSynthesis, ModelAdapter, Propagation, adapter_class_for, get_adapter
from recbole_hnlm.samplers.base import CandidatePoolSampler
from recbole_hnlm.samplers.text_filter import Screen


def hardest_ids_per_layer(
    adapter: ModelAdapter,
    user_e: torch.Tensor,
    item_layers: torch.Tensor,
    candidate_ids: torch.Tensor,
    screen: Screen | None = None,
) -> torch.Tensor:
    """Per row and layer, the id of the candidate scored highest on that layer (rows, layers), without autograd.

    A text filter's ``screen`` drops or lowers the candidates it flagged first. No (rows, M, layers, dim) array is
    built: the scores are taken in place (``candidate_scores``).
    """
    with torch.no_grad():
        scores = adapter.candidate_layer_scores(user_e, item_layers, candidate_ids)  # (rows, layers, M)
        if screen is not None:
            scores = screen.apply(scores)
        # max's indices, not argmax: the same first-maximum index, about 1.5x faster over short rows on the CPU.
        return candidate_ids.gather(1, scores.max(dim=-1).indices)


class MixingSampler(CandidatePoolSampler):
    """A sampler that synthesizes each negative's embedding from ``candidate_num`` uniform candidates.

    Subclasses implement ``synthesize``. The model must have an adapter (``recbole_hnlm.model.adapters``).
    """

    filters_candidates = True

    @classmethod
    def validate_config(cls, config) -> None:
        """``candidate_num`` must be a positive integer and the model must have an adapter that accepts it."""
        super().validate_config(config)
        adapter_class_for(config["model"]).validate_config(config)

    def sample(self, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int, model=None) -> torch.Tensor:
        """Uniform negatives for ``NEG_ITEM_ID`` (the pool's first column); training uses the synthesized ones."""
        return self.sample_from_pool(user_ids.numpy(), num)

    def extra_batch_fields(self, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int) -> dict[str, torch.Tensor]:
        """The candidate pool, ``(num * batch, candidate_num)``, rows in the order of RecBole's repeated batch."""
        return {self.candidates_field: self.candidate_pool(user_ids.numpy(), num)}

    def training_loss(self, model) -> Callable[[Interaction], torch.Tensor]:
        """The model's pairwise loss, on negatives synthesized from each row's candidates."""
        return partial(self.mixing_loss, get_adapter(model))

    def mixing_loss(self, adapter: ModelAdapter, interaction: Interaction) -> torch.Tensor:
        """Propagate once, pick each row's hardest candidate per layer, and return the model's loss on the negatives
        synthesized from them (``ModelAdapter.synthesized_negative_loss``, which gathers the batch's layers in one
        go and calls ``synthesize``)."""
        propagation = adapter.propagation()
        hardest = self.hardest_layers(adapter, interaction, propagation)
        return adapter.synthesized_negative_loss(
            interaction, propagation, hardest, self.synthesize, mean_synthesis=self.mean_synthesis()
        )

    def hardest_layers(self, adapter: ModelAdapter, interaction: Interaction, propagation: Propagation) -> torch.Tensor:
        """Per row and layer, the id of the hardest candidate (rows, layers), on ``propagation``'s embeddings.

        The text filter screens the candidates before the hardest is chosen, and the hardest are counted against the
        held-out positives (a measurement only)."""
        user_ids, candidates = interaction[self.uid_field], interaction[self.candidates_field]
        user_e = propagation.user_rows(user_ids)
        hardest = hardest_ids_per_layer(
            adapter, user_e, propagation.items, candidates, self.screen(user_ids, candidates)
        )
        self.false_negatives.count(user_ids, hardest)
        return hardest

    def mean_synthesis(self) -> MeanSynthesis | None:
        """``synthesize`` fused with mean pooling (``MeanSynthesis``), which an adapter of a mean-pooling model may use
        instead of gathering every layer; None (the default) offers none."""
        return None

    @abstractmethod
    def synthesize(self, queries: torch.Tensor, pos_e: torch.Tensor, hard_e: torch.Tensor) -> torch.Tensor:
        """The negative (rows, layers, dim) from the rows' layer queries (``ModelAdapter.layer_queries(user_e,
        expand=False)``: (rows, 1, dim) when one pooled query serves every layer, else (rows, layers, dim)) and the
        layers of the positive and of each layer's hardest candidate (rows, layers, dim)."""
