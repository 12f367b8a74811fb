"""AlphaRec: collaborative filtering on language representations alone, with no ID embeddings.

Reference: Leheng Sheng et al. "Language Representations Can be What Recommenders Need: Findings and Potentials."
in ICLR 2025. Reference code: https://github.com/LehengTHU/AlphaRec (``models/General/AlphaRec.py``).

``--model=AlphaRec``. The item text vectors are the item profile vectors of the LLM cache the ``hnlm`` sampler reads
(``recbole_hnlm/model/text_profiles.py``), frozen. A user's text vector is the mean of their training items' vectors.
Both go through one trainable MLP (Linear, LeakyReLU, Linear; hidden width ``alpharec_mlp_hidden``) into a
``embedding_size`` space, then through ``n_layers`` of LightGCN propagation on the training graph (normalised
adjacency, mean over layers 0..n_layers). The model holds no embedding table: its only parameters are the MLP's.
Scores are cosines, in training and in evaluation (the reference's ``--train_norm --pred_norm``).

The loss per positive is an InfoNCE with temperature ``alpharec_temperature``:
``-log(exp(s(u,i)/t) / (exp(s(u,i)/t) + sum over negatives j of exp(s(u,j)/t)))``. Its negatives are the
positive's ``sample_num`` negatives from the sampler (``NEG_ITEM_ID``: uniform, popularity, dns, dns_mn, ahns; dns
scores its candidates with ``predict``), plus ``alpharec_shared_negatives`` drawn from the other rows' negatives of
the batch, minus the user's training positives. The reference draws 256 uniform negatives per positive; RecBole's
dataloader shrinks a batch's positives by ``sample_num``, so they are shared in-batch instead. With the
embedding-mixing samplers (mixgcf, dins) the model trains through ``AlphaRecAdapter`` below: the same cosine
InfoNCE on the synthesized negative alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.llm_cf.text_profiles import TextMLP, load_profile_vectors
from recbole_hnlm.model.adapters import ModelAdapter, linear_propagation, register_adapter, rows_of
from recbole_hnlm.paths import properties_file


def normalised_adjacency(dataset, n_users: int, n_items: int) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the joint user-item training graph, a sparse ``(n_users + n_items)``-square tensor."""
    inter = dataset.inter_matrix(form="coo").astype(np.float32)
    size = n_users + n_items
    rows = np.concatenate([inter.row, inter.col + n_users])
    cols = np.concatenate([inter.col + n_users, inter.row])
    adjacency = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(size, size)).tocsr()
    adjacency.data[:] = 1.0  # a repeated (user, item) interaction is one edge
    degree = np.asarray(adjacency.sum(axis=1)).ravel() + 1e-7
    scale = sp.diags(np.power(degree, -0.5).astype(np.float32))
    graph = (scale @ adjacency @ scale).tocoo()
    indices = torch.from_numpy(np.vstack([graph.row, graph.col]).astype(np.int64))
    values = torch.from_numpy(graph.data)
    return torch.sparse_coo_tensor(indices, values, (size, size), check_invariants=True).coalesce()


def mean_item_vectors(dataset, item_vectors: torch.Tensor) -> torch.Tensor:
    """Per user, the mean of their training items' vectors ``(n_users, dim)``; zeros for a user with none."""
    inter = dataset.inter_matrix(form="csr").astype(np.float32)
    inter.data[:] = 1.0
    counts = np.asarray(inter.sum(axis=1)).ravel()
    weights = sp.diags(1.0 / np.maximum(counts, 1.0)).astype(np.float32) @ inter
    return torch.from_numpy(np.asarray(weights @ item_vectors.numpy(), dtype=np.float32))


class AlphaRec(GeneralRecommender):
    """An MLP over frozen text vectors, LightGCN propagation, cosine scores and a sampled-softmax loss."""

    input_type = InputType.PAIRWISE

    @classmethod
    def defaults_files(cls) -> list[Path]:
        """The LLM side's defaults (the profiles it reads), then ``AlphaRec.yaml`` beside this module."""
        return [properties_file("llm.yaml"), Path(__file__).with_name("AlphaRec.yaml")]

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        self.n_layers = int(config["n_layers"])
        self.temperature = float(config["alpharec_temperature"])
        self.shared_negatives = config["alpharec_shared_negatives"]
        self.sample_num = int(config["sample_num"])
        if self.temperature <= 0 or not isinstance(self.shared_negatives, int) or self.shared_negatives < 0:
            raise ConfigurationError(
                f"alpharec_temperature={config['alpharec_temperature']!r} and alpharec_shared_negatives="
                f"{self.shared_negatives!r} are invalid: the temperature must be > 0 and the count an integer >= 0. "
                "Fix: e.g. --alpharec_temperature=0.15 --alpharec_shared_negatives=256."
            )
        profiles = load_profile_vectors(config, dataset)
        self.text_profiles = profiles.describe()  # for the run's records
        # Not saved in checkpoints: the vectors belong to the LLM cache, which a reload opens (and checks) again.
        self.register_buffer("item_text_vectors", profiles.item_vectors.to(self.device), persistent=False)
        user_text = mean_item_vectors(dataset, profiles.item_vectors)
        self.register_buffer("user_text_vectors", user_text.to(self.device), persistent=False)
        graph = normalised_adjacency(dataset, self.n_users, self.n_items)
        self.register_buffer("graph", graph.to(self.device), persistent=False)
        # Sorted user * n_items + item keys of the training pairs: shared negatives that are the user's are dropped.
        inter = dataset.inter_matrix(form="coo")
        keys = np.unique(inter.row.astype(np.int64) * self.n_items + inter.col.astype(np.int64))
        self.register_buffer("training_keys", torch.from_numpy(keys).to(self.device), persistent=False)
        self.text_mlp = TextMLP(profiles.dim, int(config["alpharec_mlp_hidden"]), int(config["embedding_size"]))
        self.restore_user_e = None
        self.restore_item_e = None
        self.other_parameter_name = ["restore_user_e", "restore_item_e"]

    def layers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """User and item representations per propagation layer, ``(n, n_layers + 1, embedding_size)``."""
        return linear_propagation(
            self.text_mlp(self.user_text_vectors), self.text_mlp(self.item_text_vectors), self.graph, self.n_layers
        )

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-length user and item representations: the mean over layers, normalised."""
        users, items = self.layers()
        return F.normalize(users.mean(dim=1), dim=-1), F.normalize(items.mean(dim=1), dim=-1)

    def calculate_loss(self, interaction) -> torch.Tensor:
        """Mean InfoNCE over the batch's positives, each against its own and the shared negatives."""
        self.restore_user_e, self.restore_item_e = None, None
        users_all, items_all = self.forward()
        # RecBole repeats the batch once per negative: rows k * batch .. (k + 1) * batch - 1 hold the k-th negatives.
        batch = len(interaction) // self.sample_num
        users = interaction[self.USER_ID][:batch]
        positives = interaction[self.ITEM_ID][:batch]
        negatives = interaction[self.NEG_ITEM_ID].reshape(self.sample_num, batch).T
        # rows_of, not indexing: index_select's backward is deterministic on CPU, indexing's (index_put) is not.
        user_e = rows_of(users_all, users)
        positive_logits = (user_e * rows_of(items_all, positives)).sum(dim=-1, keepdim=True)
        own_logits = torch.bmm(rows_of(items_all, negatives), user_e.unsqueeze(-1)).squeeze(-1)
        logits = [positive_logits, own_logits]
        if self.shared_negatives:
            shared = self.draw_shared(interaction[self.NEG_ITEM_ID])
            shared_logits = user_e @ rows_of(items_all, shared).T
            logits.append(shared_logits.masked_fill(self.is_training_pair(users, shared), -torch.inf))
        logits = torch.cat(logits, dim=1) / self.temperature
        return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()

    def draw_shared(self, negatives: torch.Tensor) -> torch.Tensor:
        """Up to ``alpharec_shared_negatives`` of the batch's negatives, drawn without replacement."""
        if len(negatives) <= self.shared_negatives:
            return negatives
        return negatives[torch.randperm(len(negatives), device=negatives.device)[: self.shared_negatives]]

    def is_training_pair(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``(len(users), len(items))`` mask: is item j a training positive of user i?"""
        keys = users.unsqueeze(1) * self.n_items + items.unsqueeze(0)
        position = torch.searchsorted(self.training_keys, keys).clamp(max=len(self.training_keys) - 1)
        return self.training_keys[position] == keys

    def predict(self, interaction) -> torch.Tensor:
        """Cosine of each (user, item) row, on a fresh propagation (samplers score with it while training)."""
        users_all, items_all = self.forward()
        return (users_all[interaction[self.USER_ID]] * items_all[interaction[self.ITEM_ID]]).sum(dim=-1)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        """Cosines of the batch's users with every item, from representations cached until the next training step."""
        if self.restore_user_e is None or self.restore_item_e is None:
            self.restore_user_e, self.restore_item_e = self.forward()
        return (self.restore_user_e[interaction[self.USER_ID]] @ self.restore_item_e.T).view(-1)


@register_adapter("AlphaRec")
class AlphaRecAdapter(ModelAdapter):
    """AlphaRec's layers (the MLP's output propagated) and its cosine InfoNCE on one negative per row."""

    pooling = "mean"

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Layers 0..n_layers of the MLP-mapped text vectors."""
        return self.model.layers()

    def pairwise_loss(
        self, interaction, user_e: torch.Tensor, pos_e: torch.Tensor, neg_e: torch.Tensor
    ) -> torch.Tensor:
        """``-log(e^(s+/t) / (e^(s+/t) + e^(s-/t)))`` on cosines of the pooled embeddings, a batch mean."""
        model = self.model
        model.restore_user_e, model.restore_item_e = None, None
        user, positive, negative = (F.normalize(self.pool(each), dim=-1) for each in (user_e, pos_e, neg_e))
        margin = ((user * negative).sum(dim=-1) - (user * positive).sum(dim=-1)) / model.temperature
        return F.softplus(margin).mean()
