"""HNLMRec: a backbone CF model trained on sampled negatives mixed with projected LLM-derived semantic negatives.

Reference: Chu Zhao et al. "Can LLM-Driven Hard Negative Sampling Empower Collaborative Filtering? Findings and
Potentials." arXiv 2504.04726, 2025 (v2: "Hard Negative Sampling via Large Language Models for Recommendation").
Reference code: https://github.com/user683/HNLMRec

``--model=HNLMRec --backbone=LightGCN`` and ``--model=LightGCN --neg_sampler=hnlm`` build the same model: the
backbone (any model with an adapter, ``recbole_hnlm/model/adapters.py``: BPR, LightGCN, NGCF, SGL), a trainable
projector from the text-embedding space of the LLM cache into the backbone's scoring space, and this loss per
batch (the ``hnlm`` sampler, ``sampler.py`` beside this module, attaches the fields it reads):

1. One propagation through the backbone's adapter, as the backbone's own loss does.
2. The sampled negative, made by the run's base sampler (``hnlm_base_negative``, handed over by the hnlm sampler's
   ``training_loss``) with its own code on that same propagation: a model-scored base (dns, dns_mn, ahns) picks one
   of the row's ``neg_candidates`` (``pick_in_loss``), a mixing base (mixgcf, dins) picks its hardest candidate per
   layer (``hardest_layers``) and synthesizes the negative from it (``synthesize``), and any other base's negative
   is the batch's ``NEG_ITEM_ID`` (uniform, popularity; also ``calculate_loss``, which has no base sampler).
3. The semantic negative, a text-space vector: the LLM's description of a negative (``hnlm_negative_source:
   vector``), or the item profile of a grounded catalogue item (``neighbour``: items nearest the positive in
   profile space; ``generated``: items nearest the LLM's description; pairs without an LLM-written negative come with
   neighbour ids, the sampler's fallback). Grounded ids are filtered by the current model, since raw semantic
   neighbours are mostly false negatives (results/semantic-quality): of the row's ``hnlm_semantic_candidates`` ids,
   the highest-scored one that still scores below the positive; a row without a description vector where every
   candidate scores above its positive gets no semantic negative in that step. Only distinct picked ids are projected.
4. The negative fed to the backbone's loss, per layer: ``(1 - w) * sampled + w * projected semantic``
   with ``w = hnlm_mix_weight`` (0 where a row has no semantic negative). The projected vector is rescaled to the
   norm of the row's sampled negative, since the alignment below fixes only its direction. An id negative goes to
   the adapter's ``item_negative_loss`` with the semantic vector as a ``NegativeMix`` (LightGCN's mixes pooled scores
   and ego embeddings, the same loss as mixing every layer); a synthesized one is mixed layer by layer.
5. Plus ``hnlm_align_weight`` times a symmetric InfoNCE (temperature ``hnlm_temperature``) between the projected
   item-profile vectors and the pooled CF embeddings of the batch's distinct positives (at most
   ``ALIGNMENT_ITEMS`` of them), in-batch negatives (one table of exponentials for both directions,
   ``_SymmetricInfoNCE``).

The projector is a submodule, so its parameters are in the optimiser that RecBole's Trainer builds from
``model.parameters()``. It learns from the alignment term only, with the CF embeddings as a fixed target: the
ranking loss takes the projected negative as a constant (as DNS takes its picked id), because a projector trained
through the ranking loss lowers that loss by making its own negatives easy; and CF embeddings pulled towards the
text space lose most of their accuracy (results/semantic-quality). The semantic negative reaches the CF embeddings
through the ranking loss, where it pushes the user away from it.
``predict`` and ``full_sort_predict`` are the backbone's; epochs are selected on validation by RecBole's Trainer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.finetune.encode import open_text_vectors
from recbole_hnlm.model import get_model
from recbole_hnlm.model.adapters import NegativeMix, candidate_scores, get_adapter, rows_of, scoring_mode
from recbole_hnlm.model.wrapper import BackboneWrapper
from recbole_hnlm.samplers import MixingSampler, ModelScoredSampler, NegativeSampler

# Batch fields that the hnlm sampler attaches beside NEG_ITEM_ID and its base sampler's fields, one row per
# (positive, negative) pair.
SEMANTIC_IDS_FIELD = "hnlm_semantic_ids"
SEMANTIC_VECTORS_FIELD = "hnlm_semantic_vectors"
HAS_SEMANTIC_FIELD = "hnlm_has_semantic"

PROJECTOR_KINDS = ("linear", "mlp")
# The alignment InfoNCE's cost is quadratic in the items it contrasts: at most this many of a batch's distinct
# positives (a random subset) take part in each step.
ALIGNMENT_ITEMS = 512


class SemanticProjector(torch.nn.Module):
    """Maps text-embedding vectors into a CF scoring space: one linear layer, or a 2-layer MLP (GELU)."""

    def __init__(self, text_dim: int, cf_dim: int, kind: str) -> None:
        super().__init__()
        if kind not in PROJECTOR_KINDS:
            raise ConfigurationError(f"hnlm_projector={kind!r} is invalid. Valid: {', '.join(PROJECTOR_KINDS)}.")
        if kind == "linear":
            self.layers = torch.nn.Linear(text_dim, cf_dim)
        else:
            self.layers = torch.nn.Sequential(
                torch.nn.Linear(text_dim, text_dim), torch.nn.GELU(), torch.nn.Linear(text_dim, cf_dim)
            )

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """``(..., text_dim)`` -> ``(..., cf_dim)``."""
        return self.layers(vectors)


class HNLMRec(BackboneWrapper, GeneralRecommender):
    """A backbone model, a text-to-CF projector, and the mixed-negative and alignment loss described above."""

    input_type = InputType.PAIRWISE
    required_sampler = "hnlm"

    @classmethod
    def defaults_files(cls) -> list[Path]:
        """``HNLMRec.yaml`` beside this module: the default backbone and sampler."""
        return [Path(__file__).with_name("HNLMRec.yaml")]

    def __init__(self, config, dataset) -> None:
        if config["neg_sampler"] != self.required_sampler or not config["backbone"]:
            raise ConfigurationError(
                "HNLMRec trains on the batches of recbole-hnlm's hnlm sampler, which RecBole's own run_recbole and "
                "Trainer do not build. Fix: train it through the plugin's entry point, `python run_recbole_hnlm.py "
                "--model=HNLMRec --backbone=LightGCN` or recbole_hnlm.quick_start.run('HNLMRec', ...)."
            )
        super().__init__(config, dataset)
        # On the run's device before the layout's propagation: RecBole's graph models put their adjacency matrix on
        # config["device"] when built, their embeddings only when moved (a CPU table against a CUDA graph fails).
        self.backbone = get_model(config["backbone"])(config, dataset).to(self.device)
        self.adapter = get_adapter(self.backbone)
        cache = open_text_vectors(config, dataset, build=False)
        vectors = torch.from_numpy(np.array(cache.item_profile_vectors, dtype=np.float32))
        # Not saved in checkpoints: the vectors belong to the LLM cache, which a reload opens (and checks) again.
        self.register_buffer("item_profile_vectors", vectors.to(self.device), persistent=False)
        self.n_layers, scoring_dim = self._backbone_layout()
        self.projector = SemanticProjector(cache.dim, scoring_dim, config["hnlm_projector"]).to(self.device)
        self.mix_weight = float(config["hnlm_mix_weight"])
        self.align_weight = float(config["hnlm_align_weight"])
        self.temperature = float(config["hnlm_temperature"])

    def _backbone_layout(self) -> tuple[int, int]:
        """Layer count and scoring size of the backbone, from one propagation in eval mode (no dropout draws)."""
        with scoring_mode(self.backbone):
            _, item_layers = self.adapter.propagate()
            return item_layers.shape[1], self.adapter.pool(item_layers[:1]).shape[-1]

    def calculate_loss(self, interaction) -> torch.Tensor:
        """The loss with the batch's ``NEG_ITEM_ID`` as the sampled negative; training runs ``mixed_loss`` with the
        run's base sampler instead (the hnlm sampler's ``training_loss``)."""
        return self.mixed_loss(None, interaction)

    def mixed_loss(self, base: NegativeSampler | None, interaction) -> torch.Tensor:
        """The backbone's pairwise loss on the mixed negative, plus the weighted alignment term, on one propagation.

        The sampled negatives are chosen without gradients first. An id negative (any base but a mixing one) goes
        through the adapter's ``item_negative_loss`` with the semantic vector as its ``NegativeMix`` (LightGCN's
        computes it on pooled tables, without gathering every layer); a synthesized one is per layer already, so
        the batch's users, positives and hardest candidates are gathered from the propagation in one go
        (``Propagation.rows``) and the semantic vector is mixed into every layer.
        """
        if isinstance(base, MixingSampler):
            return self._synthesized_negative_loss(base, interaction)
        users, positives = interaction[self.USER_ID], interaction[self.ITEM_ID]
        # Pooled tables with gradients: the loss may reuse them, scoring reads them detached.
        layers = self.adapter.pooled_layers()
        item_scoring = layers.item_table.detach()
        user_scoring = self.adapter.scoring_rows(layers.users, users, layers.user_table)
        negatives = self.sampled_negatives(base, interaction, layers.users, item_scoring, user_scoring)
        mix = self.semantic_mix(interaction, user_scoring, item_scoring) if self.mix_weight > 0 else None
        loss = self.adapter.item_negative_loss(
            interaction, layers.users, layers.items, negatives, layers.item_table, mix, layers.user_table
        )
        return self._with_alignment(loss, item_scoring, positives)

    def sampled_negatives(
        self,
        base: NegativeSampler | None,
        interaction,
        user_layers: torch.Tensor,
        item_scoring: torch.Tensor,
        user_scoring: torch.Tensor,
    ) -> torch.Tensor:
        """Per row, the negative id (rows,) of an id base: a model-scored base (dns, dns_mn, ahns) picks one of the
        row's candidates on this propagation's pooled embeddings (``pick_in_loss``); any other base's negative is the
        batch's ``NEG_ITEM_ID``."""
        if isinstance(base, ModelScoredSampler) and base.scores_in_loss:
            return base.pick_in_loss(self.adapter, interaction, user_layers, item_scoring, user_scoring)
        return interaction[self.NEG_ITEM_ID]

    def _synthesized_negative_loss(self, base: MixingSampler, interaction) -> torch.Tensor:
        """``mixed_loss`` for a mixing base: its hardest candidate per layer (``hardest_layers``), synthesized with
        the positive as the base does (``synthesize``, in the adapter's ``synthesized_negative_loss``), with the
        semantic vector mixed into every layer."""
        propagation = self.adapter.propagation()
        users, positives = interaction[self.USER_ID], interaction[self.ITEM_ID]
        with torch.no_grad():
            item_scoring = self.adapter.pool(propagation.items)
        hardest = base.hardest_layers(self.adapter, interaction, propagation)
        mix = None
        if self.mix_weight > 0:  # the users' scoring rows (no gradients, shared with the pick) serve the semantic pick
            mix = self.semantic_mix(interaction, self.adapter.pool(propagation.user_rows(users)), item_scoring)
        loss = self.adapter.synthesized_negative_loss(
            interaction, propagation, hardest, base.synthesize, mix, base.mean_synthesis()
        )
        return self._with_alignment(loss, item_scoring, positives)

    def _with_alignment(self, loss: torch.Tensor, item_scoring: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """``loss`` plus the weighted alignment term (when its weight is above 0)."""
        if self.align_weight > 0:
            loss = loss + self.align_weight * self.alignment_loss(item_scoring, positives)
        return loss

    def semantic_directions(
        self, interaction, user_scoring: torch.Tensor, item_scoring: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected semantic negative of each row as a unit vector ``(rows, cf_dim)``, and whether the row has one.

        Grounded ids are filtered by the model: the highest-scored candidate that scores below the row's positive.
        Rows with a description vector (the ``vector`` source) use it; the others the picked id's profile.
        Without gradients: the ranking loss takes the projected negative as a constant.
        """
        ids = interaction[SEMANTIC_IDS_FIELD]
        with torch.no_grad():
            scores = candidate_scores(user_scoring, item_scoring, ids)
            positive = (user_scoring * rows_of(item_scoring, interaction[self.ITEM_ID])).sum(dim=-1)
            usable = (ids > 0) & (scores < positive.unsqueeze(1))
            picked = ids.gather(1, scores.masked_fill(~usable, -torch.inf).argmax(dim=1, keepdim=True)).squeeze(1)
            has_semantic = usable.any(dim=1)
            # Distinct picked ids only: a batch repeats popular items, and the projection is the costly part.
            distinct, inverse = torch.unique(picked, return_inverse=True)
            directions = F.normalize(self.projector(rows_of(self.item_profile_vectors, distinct)), dim=-1)[inverse]
            if SEMANTIC_VECTORS_FIELD in interaction:
                has_vector = interaction[HAS_SEMANTIC_FIELD]
                projected = self.projector(interaction[SEMANTIC_VECTORS_FIELD][has_vector])
                directions[has_vector] = F.normalize(projected, dim=-1)
                has_semantic = has_semantic | has_vector
            return directions, has_semantic

    def semantic_mix(self, interaction, user_scoring: torch.Tensor, item_scoring: torch.Tensor) -> NegativeMix:
        """Each row's projected semantic negative as the ``NegativeMix`` of weight ``w`` (0 on rows without one): its
        direction, mixed in at the norm of the row's sampled negative, since the alignment fixes only the direction."""
        direction, has_semantic = self.semantic_directions(interaction, user_scoring, item_scoring)
        return NegativeMix(direction, self.mix_weight * has_semantic.to(direction.dtype))

    def mix_semantic(
        self, interaction, user_scoring: torch.Tensor, item_scoring: torch.Tensor, sampled_e: torch.Tensor
    ) -> torch.Tensor:
        """``(1 - w) * sampled + w * projected semantic`` per layer; ``w`` is 0 on rows without a semantic negative."""
        return self.adapter.mix_layers(sampled_e, self.semantic_mix(interaction, user_scoring, item_scoring))

    def alignment_loss(self, item_scoring: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE between projected profiles and pooled CF embeddings of the batch's distinct positives.

        The CF embeddings are the target and get no gradient from it: pulled towards the text space they lose most of
        their accuracy (results/semantic-quality).
        """
        items = torch.unique(positives)
        if len(items) > ALIGNMENT_ITEMS:
            items = items[torch.randperm(len(items), device=items.device)[:ALIGNMENT_ITEMS]]
        cf = F.normalize(rows_of(item_scoring, items), dim=-1) / self.temperature
        text = F.normalize(self.projector(rows_of(self.item_profile_vectors, items)), dim=-1)
        if 2 / self.temperature <= SHARED_EXP_RANGE:
            return _SymmetricInfoNCE.apply(text, cf, 1 / self.temperature)
        logits = text @ cf.T
        # The mean of cross_entropy(logits, arange) and cross_entropy(logits.T, arange), as log-sum-exps over rows and
        # columns less the diagonal: the same value, without materialising two log-softmax tables (~20% faster).
        row_terms, column_terms = torch.logsumexp(logits, dim=1), torch.logsumexp(logits, dim=0)
        return (row_terms.mean() + column_terms.mean()) / 2 - logits.diagonal().mean()


# Unit vectors over a temperature T give logits within +-1/T. Up to this range (2/T, so T >= 0.025) every
# exp(logit - 1/T) is a normal float32 (exp(-80) ~ 2e-35), and the alignment term's rows and columns share one table
# of exponentials (``_SymmetricInfoNCE``); below it, two log-sum-exps (each with its own maximum) keep it finite.
SHARED_EXP_RANGE = 80.0


class _SymmetricInfoNCE(torch.autograd.Function):
    """The alignment InfoNCE from one table of exponentials, for ``logits = text @ targets.T`` (square, targets
    constant): ``(mean_i log sum_j e_ij + mean_j log sum_i e_ij) / 2 + bound - mean_i logits_ii`` with
    ``e = exp(logits - bound)``, ``bound`` an upper bound of the logits.

    Its gradient in the logits is ``(e / row sums + e / column sums) / 2n - I / n``: one exponential per entry where
    the two ``logsumexp`` calls and their backward passes take four (about 2x faster on a 512-item batch on the CPU).
    """

    @staticmethod
    def forward(ctx, text: torch.Tensor, targets: torch.Tensor, bound: float) -> torch.Tensor:
        logits = text @ targets.T
        diagonal = logits.diagonal().mean()
        exps = logits.sub_(bound).exp_()
        row_sums, column_sums = exps.sum(dim=1), exps.sum(dim=0)
        ctx.save_for_backward(exps, row_sums, column_sums, targets)
        return (row_sums.log().mean() + column_sums.log().mean()) / 2 + bound - diagonal

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        exps, row_sums, column_sums, targets = ctx.saved_tensors
        n = len(exps)
        logit_grad = exps * (row_sums.reciprocal().unsqueeze(1) + column_sums.reciprocal().unsqueeze(0))
        logit_grad.mul_(grad / (2 * n)).diagonal().sub_(grad / n)
        return logit_grad @ targets, None, None
