"""RLMRec-Con: a backbone CF model whose embeddings are contrasted with MLP-mapped text profiles of users and items.

Reference: Xubin Ren et al. "Representation Learning with Large Language Models for Recommendation." in WWW 2024.
Reference code: https://github.com/HKUDS/RLMRec (``encoder/models/general_cf/lightgcn_plus.py``, the "-Con" variant).

``--model=RLMRec --backbone=LightGCN`` (LightGCN by default; any model with an adapter in
``recbole_hnlm/model/adapters.py``: BPR, LightGCN, NGCF, SGL). The user and item profile vectors are those of the
LLM cache the ``hnlm`` sampler reads (``recbole_hnlm/model/text_profiles.py``), frozen; a trainable MLP (Linear,
LeakyReLU, Linear; hidden width the mean of the text and CF sizes, as in the reference) maps them into the backbone's
scoring space. The loss per batch, on one propagation through the backbone's adapter:

    backbone's own pairwise loss (its ranking loss, regularisation and auxiliary terms)
    + rlmrec_kd_weight * (InfoNCE(users) + InfoNCE(positives) + InfoNCE(negatives))

Each InfoNCE (temperature ``rlmrec_kd_temperature``, cosine similarity) contrasts an entity's pooled CF embedding
with the MLP view of its own profile against the MLP views of the batch's other entities of its kind, one row per
distinct id. The reference contrasts a user against every user's profile and repeats ids in the denominator; here
every term is in-batch and over distinct ids, so memory is O(batch^2) on any dataset and an id is never its own
negative. Both views get gradients: the text pulls the CF embeddings, as in the reference. Defaults (weight 0.01,
temperature 0.2) are the reference's for LightGCN on its Amazon and Yelp data.

The negative is whatever the sampler put in ``NEG_ITEM_ID`` (uniform, popularity, dns, dns_mn, ahns). With the
embedding-mixing samplers (mixgcf, dins) the model trains through ``RLMRecAdapter`` below: the backbone's loss on the
synthesized negative plus the user and positive terms (a synthesized negative has no profile).
``predict`` and ``full_sort_predict`` are the backbone's.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.llm_cf.text_profiles import TextMLP, load_profile_vectors
from recbole_hnlm.model import get_model
from recbole_hnlm.model.adapters import ModelAdapter, adapter_class_for, get_adapter, register_adapter, rows_of
from recbole_hnlm.model.wrapper import BackboneWrapper
from recbole_hnlm.paths import properties_file


def info_nce(cf: torch.Tensor, text: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean InfoNCE of row i's CF vector against every row's text vector, row i's being its positive (cosines)."""
    logits = F.normalize(cf, dim=-1) @ F.normalize(text, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def first_rows(ids: torch.Tensor) -> torch.Tensor:
    """For each distinct value of ``ids``, the index of the first row holding it."""
    distinct, inverse = torch.unique(ids, return_inverse=True)
    rows = torch.arange(len(ids), device=ids.device)
    first = torch.full((len(distinct),), len(ids), dtype=rows.dtype, device=ids.device)
    return first.scatter_reduce(0, inverse, rows, reduce="amin")


class RLMRec(BackboneWrapper, GeneralRecommender):
    """A backbone model, an MLP from profile vectors to its scoring space, and the contrastive term above."""

    input_type = InputType.PAIRWISE

    @classmethod
    def defaults_files(cls) -> list[Path]:
        """The LLM side's defaults (the profiles it reads), then ``RLMRec.yaml`` beside this module."""
        return [properties_file("llm.yaml"), Path(__file__).with_name("RLMRec.yaml")]

    # The Config reads these: the model trains a backbone named by ``backbone`` and takes that backbone's defaults.
    default_backbone: ClassVar[str] = "LightGCN"

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        backbone_class = self.backbone_class(config)
        # On the run's device before the first propagation, as HNLMRec does: RecBole's graph models put their
        # adjacency matrix on config["device"] when built, their embeddings only when moved.
        self.backbone = backbone_class(config, dataset).to(self.device)
        self.adapter = get_adapter(self.backbone)
        profiles = load_profile_vectors(config, dataset)
        self.text_profiles = profiles.describe()  # for the run's records
        # Not saved in checkpoints: the vectors belong to the LLM cache, which a reload opens (and checks) again.
        self.register_buffer("user_profile_vectors", profiles.user_vectors.to(self.device), persistent=False)
        self.register_buffer("item_profile_vectors", profiles.item_vectors.to(self.device), persistent=False)
        cf_dim = self._scoring_dim()
        self.text_mlp = TextMLP(profiles.dim, (profiles.dim + cf_dim) // 2, cf_dim).to(self.device)
        self.kd_weight = float(config["rlmrec_kd_weight"])
        self.kd_temperature = float(config["rlmrec_kd_temperature"])
        if self.kd_weight < 0 or self.kd_temperature <= 0:
            raise ConfigurationError(
                f"rlmrec_kd_weight={config['rlmrec_kd_weight']!r} and rlmrec_kd_temperature="
                f"{config['rlmrec_kd_temperature']!r} are invalid: the weight must be >= 0 and the temperature > 0. "
                "Fix: e.g. --rlmrec_kd_weight=0.01 --rlmrec_kd_temperature=0.2 (the reference's)."
            )

    @classmethod
    def backbone_class(cls, config) -> type:
        """The model class that ``backbone`` names; ConfigurationError for one that wraps a backbone itself."""
        name = config["backbone"] or cls.default_backbone
        backbone_class = get_model(name)
        if getattr(backbone_class, "wraps_backbone", False):
            raise ConfigurationError(
                f"RLMRec cannot wrap {name}, which wraps a backbone itself (neg_sampler=hnlm wraps --model in "
                "HNLMRec, so it cannot train RLMRec). Fix: --model=RLMRec --backbone=LightGCN with another sampler "
                "(uniform, popularity, dns, dns_mn, ahns, mixgcf, dins)."
            )
        return backbone_class

    def _scoring_dim(self) -> int:
        """Size of the backbone's pooled embeddings, from one propagation in eval mode (no dropout draws)."""
        was_training = self.backbone.training
        torch.nn.Module.train(self.backbone, False)
        try:
            with torch.no_grad():
                _, item_layers = self.adapter.propagate()
                return int(self.adapter.pool(item_layers[:1]).shape[-1])
        finally:
            torch.nn.Module.train(self.backbone, was_training)

    def calculate_loss(self, interaction) -> torch.Tensor:
        """The backbone's pairwise loss plus the weighted contrastive term, on one propagation."""
        user_layers, item_layers = self.adapter.propagate()
        users, positives = interaction[self.USER_ID], interaction[self.ITEM_ID]
        negatives = interaction[self.NEG_ITEM_ID]
        # rows_of, not indexing: index_select's backward is deterministic on CPU, indexing's (index_put) is not.
        user_e = rows_of(user_layers, users)
        pos_e, neg_e = rows_of(item_layers, positives), rows_of(item_layers, negatives)
        loss = self.adapter.pairwise_loss(interaction, user_e, pos_e, neg_e)
        if self.kd_weight == 0:
            return loss
        pooled = [self.adapter.pool(layers) for layers in (user_e, pos_e, neg_e)]
        return loss + self.kd_weight * self.contrastive_loss(users, positives, negatives, *pooled)

    def contrastive_loss(
        self,
        users: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor | None,
        user_cf: torch.Tensor,
        pos_cf: torch.Tensor,
        neg_cf: torch.Tensor | None,
    ) -> torch.Tensor:
        """InfoNCE between CF and text views of the batch's users, positives and (when given) negatives."""
        views = [(users, user_cf, self.user_profile_vectors), (positives, pos_cf, self.item_profile_vectors)]
        if negatives is not None:
            views.append((negatives, neg_cf, self.item_profile_vectors))
        loss = 0.0
        for ids, cf, profiles in views:
            rows = first_rows(ids)  # one row per distinct id: an id is never its own negative
            text = self.text_mlp(profiles[ids[rows]])
            loss = loss + info_nce(rows_of(cf, rows), text, self.kd_temperature)
        return loss


@register_adapter("RLMRec")
class RLMRecAdapter(ModelAdapter):
    """The backbone's adapter, plus RLMRec's user and positive contrastive terms in the pairwise loss."""

    def __init__(self, model: RLMRec) -> None:
        super().__init__(model)
        self.backbone_adapter = model.adapter
        self.pooling = self.backbone_adapter.pooling

    @classmethod
    def validate_config(cls, config) -> None:
        """The backbone's adapter decides (e.g. NGCF's layer sizes)."""
        adapter_class_for(RLMRec.backbone_class(config).__name__).validate_config(config)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbone's layers."""
        return self.backbone_adapter.propagate()

    def pool(self, layers: torch.Tensor) -> torch.Tensor:
        """The backbone's pooling."""
        return self.backbone_adapter.pool(layers)

    def layer_queries(self, user_layers: torch.Tensor, expand: bool = True) -> torch.Tensor:
        """The backbone's per-layer queries."""
        return self.backbone_adapter.layer_queries(user_layers, expand)

    def pairwise_loss(
        self, interaction, user_e: torch.Tensor, pos_e: torch.Tensor, neg_e: torch.Tensor
    ) -> torch.Tensor:
        """The backbone's loss on the given negative, plus the contrastive terms of users and positives."""
        model = self.model
        loss = self.backbone_adapter.pairwise_loss(interaction, user_e, pos_e, neg_e)
        if model.kd_weight == 0:
            return loss
        users, positives = interaction[model.USER_ID], interaction[model.ITEM_ID]
        extra = model.contrastive_loss(users, positives, None, self.pool(user_e), self.pool(pos_e), None)
        return loss + model.kd_weight * extra
