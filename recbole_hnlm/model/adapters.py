"""Model adapters: the view of a RecBole model that samplers scoring or synthesizing negatives in the loss need.

MixGCF and DINS build a negative *embedding* instead of picking an item id, so they cannot train through
``model.calculate_loss``, which looks negatives up by id; DNS, DNS(M, N) and AHNS pick an id, but score their
candidates on the embeddings of the loss's own propagation instead of spending a second one in ``model.predict``.
An adapter exposes, for one model class:

- ``propagate()``: user and item embeddings per propagation layer, ``(n_users, n_layers, dim)`` and
  ``(n_items, n_layers, dim)``. Layer 0 is the ego (free) embedding; a model without propagation has one layer.
- ``pool(layers)``: how the model turns its layers into the embedding it scores with (mean, sum or concat).
- ``layer_queries(user_layers)``: per layer, the user vector that an item's layer embedding is scored against
  (MixGCF's f_Q(u, l)): the pooled user for mean and sum pooling, the user's own layer for concat pooling.
- ``pairwise_loss(interaction, user_e, pos_e, neg_e)``: the model's own training loss, its ranking loss,
  regularisation and auxiliary terms (SGL's contrastive loss), for per-layer embeddings of a batch.
- ``item_negative_loss(interaction, user_layers, item_layers, negative_ids, ...)``: the same loss for negatives given
  as item ids, optionally with a constant vector mixed into each (``NegativeMix``, HNLMRec's semantic negative); an
  adapter may compute it more cheaply than by gathering every layer (LightGCN's does, on the pooled tables of
  ``pooled_layers()``); ``synthesized_negative_loss`` likewise for negatives a mixing sampler synthesizes per layer
  (LightGCN's uses a sampler's ``MeanSynthesis``, its synthesis fused with mean pooling, where one is offered).

This module also holds what every scorer of candidates shares: ``scoring_mode`` (the one eval-mode, no-gradient
switch), ``rows_of`` (the one gather) and ``candidate_scores`` (the one way to score candidate ids on embeddings).

Adding a model is one small class, e.g. for a LightGCN-like model (a model with another propagation subclasses
``ModelAdapter`` and implements ``propagate``)::

    @register_adapter("MyGCN")
    class MyGCNAdapter(LinearGraphAdapter):
        pooling = "mean"
        graph_attribute = "norm_adj_matrix"

        def regularisation(self, user_e, pos_e, neg_e):
            model = self.model
            return model.reg_weight * model.reg_loss(user_e[:, 0], pos_e[:, 0], neg_e[:, 0])
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction
from recbole.model.loss import BPRLoss

from recbole_hnlm.errors import ConfigurationError, UnsupportedModelError

_BPR_LOSS = BPRLoss()
_POOLINGS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda layers: layers.mean(dim=-2),
    "sum": lambda layers: layers.sum(dim=-2),
    "concat": lambda layers: layers.flatten(start_dim=-2),
}


def spread_over_layers(pooled: torch.Tensor, n_layers: int, pooling: str) -> torch.Tensor:
    """Per-layer embeddings ``(..., n_layers, dim)`` that ``pooling`` turns back into ``pooled`` (a view for mean)."""
    if pooling == "concat":
        return pooled.unflatten(-1, (n_layers, -1))
    layers = pooled.unsqueeze(-2).expand(*pooled.shape[:-1], n_layers, pooled.shape[-1])
    return layers / n_layers if pooling == "sum" else layers


@dataclass(frozen=True)
class NegativeMix:
    """A constant vector mixed into each row's negative, ``(1 - weight) * negative + weight * vector`` on every layer.

    The vector is the row's unit ``directions`` (rows, scoring dim) scaled to the norm of the row's pooled negative
    (taken without gradients), in the pooled scoring space, and spread over the layers (``spread_over_layers``), so
    that the mixed negative pools to the same mix of the pooled negative and the vector. ``weights`` (rows,) may be 0
    for rows that have no vector. Neither carries gradients.
    """

    directions: torch.Tensor
    weights: torch.Tensor

    def vectors(self, pooled_negatives: torch.Tensor) -> torch.Tensor:
        """The vectors mixed in, for the rows' pooled negatives (rows, scoring dim)."""
        return self.directions * pooled_negatives.detach().norm(dim=-1, keepdim=True)


class PooledLayers(NamedTuple):
    """One propagation's layers, ``(n_users, layers, dim)`` and ``(n_items, layers, dim)``, and their pooled tables,
    all with gradients (``ModelAdapter.pooled_layers``): scoring reads the tables detached and the loss reuses them.
    ``user_table`` is None where the adapter's loss reads no pooled user table."""

    users: torch.Tensor
    items: torch.Tensor
    user_table: torch.Tensor | None
    item_table: torch.Tensor


class MeanPooledRows(NamedTuple):
    """What a mean-pooling model's loss reads of a batch with synthesized negatives, each (rows, dim) with gradients:
    the pooled user, positive and negative, and their ego (layer-0) embeddings."""

    user: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    user_ego: torch.Tensor
    positive_ego: torch.Tensor
    negative_ego: torch.Tensor


# A mixing sampler's synthesis fused with mean pooling (``MixingSampler.mean_synthesis``): from the flat per-layer
# table (nodes x layers, dim) with gradients, the users' pooled rows (no gradients; they are the users' query) and the
# table rows (rows, layers) of each row's user, positive and hardest candidate per layer, the ``MeanPooledRows`` that
# gathering those rows, ``synthesize`` and mean pooling would give, with the same gradients.
MeanSynthesis = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], MeanPooledRows]


# Off the CPU, candidates are scored this many embedding values at a time (16 MiB of float32): the gathered
# candidate rows of a large batch are never allocated at once.
SCORING_BLOCK = 1 << 22


@contextmanager
def scoring_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no gradients while ``model`` scores; its training flag is restored after.

    ``nn.Module.train``, not ``model.train``/``model.eval``: some RecBole models override train() with side effects
    (SGL rebuilds its augmented graphs on every call), which scoring must not trigger.
    """
    was_training = model.training
    torch.nn.Module.train(model, False)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.nn.Module.train(model, was_training)


def rows_of(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]`` through index_select, whose backward (index_add) is faster on CPU than indexing's."""
    return table.index_select(0, ids.reshape(-1)).unflatten(0, ids.shape)


class _SharedRows(torch.autograd.Function):
    """Several gathers from one table, whose backward fills one zero gradient and adds every gather's rows into it.

    Autograd would give each gather its own zero-filled table gradient and then sum them, or, for one gather split
    into parts, concatenate the parts' gradients first; both cost a whole-table or whole-batch copy per batch.
    ``index_add_`` on the CPU is deterministic, as index_select's own backward is.
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, *indices: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.save_for_backward(*indices)
        ctx.table_shape = table.shape
        return tuple(table.index_select(0, index) for index in indices)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        indices = ctx.saved_tensors
        table_grad = None
        if ctx.needs_input_grad[0]:
            table_grad = grads[0].new_zeros(ctx.table_shape)
            for index, grad in zip(indices, grads, strict=True):
                if grad is not None:
                    table_grad.index_add_(0, index, grad)
        return (table_grad, *[None] * len(indices))


def shared_rows(table: torch.Tensor, *ids: torch.Tensor) -> list[torch.Tensor]:
    """``[rows_of(table, i) for i in ids]``, with one table gradient in the backward pass (``_SharedRows``)."""
    gathered = _SharedRows.apply(table, *(i.reshape(-1) for i in ids))
    return [rows.unflatten(0, i.shape) for rows, i in zip(gathered, ids, strict=True)]


def candidate_scores(queries: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Inner products of each row's query with the embeddings of its candidate ``ids`` (rows, M), without autograd.

    ``table`` (n_items, dim) gives scores (rows, M) for ``queries`` (rows, dim). A per-layer ``table``
    (n_items, layers, dim) gives scores (rows, layers, M), for one query per row shared by every layer
    (rows, dim) or one per layer (rows, layers, dim); candidates come last, so that picking one is a reduction
    over contiguous memory.

    On the CPU the products are taken in place (a sampled matrix product), 4-20x faster than gathering the
    candidates' embeddings first (measured on ml-100k batches); elsewhere the candidates are gathered and multiplied.
    """
    with torch.no_grad():
        if table.device.type == "cpu":
            return _sampled_scores(queries, table, ids)
        return _gathered_scores(queries, table, ids)


def _sampled_scores(queries: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``candidate_scores`` as ``torch.sparse.sampled_addmm``: queries x table^T, at the candidates' positions only.

    The pattern has a row per query (per row, or per row and layer) and a column per item (and layer). A row can hold
    the same candidate twice, which CSR's sorted-and-distinct invariant forbids; torch's CPU kernel computes every
    stored entry on its own, so the invariant is waived (tests/model/test_adapters.py checks repeats against the
    gathered scores). cuSPARSE may rely on it, hence the gathered path off the CPU.
    """
    rows, count = ids.shape
    layers = table.shape[1] if table.dim() == 3 else 1
    dim = table.shape[-1]
    layer = torch.arange(layers, device=ids.device).reshape(1, layers, 1)
    columns = ids.unsqueeze(1) * layers + layer  # (rows, layers, M): item-major, layer-minor columns
    if queries.dim() == 3:  # one query per layer: a pattern row per (row, layer), holding M columns
        queries = queries.reshape(rows * layers, dim)
    per_row = columns.numel() // len(queries)
    crow = torch.arange(0, columns.numel() + 1, per_row, device=ids.device)
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(
            crow,
            columns.reshape(-1),
            torch.zeros(columns.numel(), dtype=queries.dtype, device=ids.device),  # beta * NaN would be NaN
            size=(len(queries), table.shape[0] * layers),
            check_invariants=False,
        )
        values = torch.sparse.sampled_addmm(pattern, queries, table.reshape(-1, dim).T, beta=0.0).values()
    return values.reshape(rows, layers, count) if table.dim() == 3 else values.reshape(rows, count)


def _gathered_scores(queries: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``candidate_scores`` by gathering the candidates' embeddings, ``SCORING_BLOCK`` values at a time."""
    rows, count = ids.shape
    step = max(1, SCORING_BLOCK // (count * table[0].numel()))
    blocks = []
    for start in range(0, rows, step):
        query = queries[start : start + step]
        candidates = rows_of(table, ids[start : start + step])  # (block, M, [layers,] dim)
        if query.dim() == 2:  # one query for all of a row's vectors: a batched matrix-vector product
            flat = candidates.reshape(len(query), -1, candidates.shape[-1])
            scores = torch.bmm(flat, query.unsqueeze(-1)).reshape(candidates.shape[:-1])
        else:
            scores = (candidates * query.unsqueeze(1)).sum(dim=-1)
        blocks.append(scores.transpose(1, 2) if table.dim() == 3 else scores)
    return torch.cat(blocks)


def linear_layers(
    user_embedding: torch.Tensor, item_embedding: torch.Tensor, graph: torch.Tensor, n_layers: int
) -> torch.Tensor:
    """Layers 0..n_layers of ``E <- graph @ E`` on the joint user-item graph: (n_users + n_items, layers, dim)."""
    embeddings = torch.cat([user_embedding, item_embedding])
    layers = [embeddings]
    for _ in range(n_layers):
        embeddings = torch.sparse.mm(graph, embeddings)
        layers.append(embeddings)
    return torch.stack(layers, dim=1)


def linear_propagation(
    user_embedding: torch.Tensor, item_embedding: torch.Tensor, graph: torch.Tensor, n_layers: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Layers 0..n_layers of ``E <- graph @ E`` on the joint user-item graph, as (users, items) stacks."""
    return linear_layers(user_embedding, item_embedding, graph, n_layers).split(
        [len(user_embedding), len(item_embedding)]
    )


class Propagation:
    """One propagation's layers of every node, users first, ``(n_users + n_items, layers, dim)``, with gradients.

    ``rows`` gathers all of a batch's embeddings (users, positives, negatives) with one gradient of the stack in the
    backward pass (``shared_rows``). Gathering them one table at a time cost the backward pass a zero-filled gradient
    of the whole ``(nodes, layers, dim)`` stack per gather, their sum, and the concatenation that undoes the user/item
    split: on beauty-dens (18.6k nodes, 4 layers) that was most of MixGCF's extra backward time (results/sampler-speed).
    """

    def __init__(self, layers: torch.Tensor, n_users: int) -> None:
        self.layers = layers
        self.n_users = n_users
        self._user_rows: tuple[torch.Tensor, torch.Tensor] | None = None

    def split(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users, items) layers for gradient-carrying use: ``split``'s backward is one concatenation, where the
        slices ``users`` and ``items`` would each fill a zero gradient of the whole stack."""
        users, items = self.layers.split([self.n_users, len(self.layers) - self.n_users])
        return users, items

    @property
    def users(self) -> torch.Tensor:
        """Every user's layers (n_users, layers, dim): a view, for scoring (without gradients; see ``split``)."""
        return self.layers[: self.n_users]

    @property
    def items(self) -> torch.Tensor:
        """Every item's layers (n_items, layers, dim): a view, for scoring (without gradients; see ``split``)."""
        return self.layers[self.n_users :]

    @property
    def flat(self) -> torch.Tensor:
        """The layers as one table of rows (nodes x layers, dim), node-major: ``index`` gives the rows to read."""
        n_nodes, n_layers, dim = self.layers.shape
        return self.layers.reshape(n_nodes * n_layers, dim)

    def index(self, user_ids: torch.Tensor, *item_ids: torch.Tensor) -> list[torch.Tensor]:
        """The rows of ``flat`` (rows, layers) holding every layer of ``user_ids`` (rows,) and of each ``item_ids``.

        An item id tensor of shape (rows,) gives every layer of that item; one of shape (rows, layers) gives, per
        layer, that layer of its own item (the hardest candidate of each layer, as MixGCF and DINS pick them).
        """
        n_layers = self.layers.shape[1]
        layer = torch.arange(n_layers, device=user_ids.device)
        index = [user_ids.unsqueeze(1) * n_layers + layer]
        for ids in item_ids:
            ids = ids.unsqueeze(1) if ids.dim() == 1 else ids
            index.append((ids + self.n_users) * n_layers + layer)
        return index

    def rows(self, user_ids: torch.Tensor, *item_ids: torch.Tensor) -> list[torch.Tensor]:
        """The layers (rows, layers, dim) of ``user_ids`` (rows,) and of each ``item_ids`` (see ``index``), from one
        table."""
        return shared_rows(self.flat, *self.index(user_ids, *item_ids))

    def user_rows(self, user_ids: torch.Tensor) -> torch.Tensor:
        """The layers of ``user_ids`` without gradients (rows, layers, dim), gathered once per ids tensor: a batch's
        pick and its loss both read them."""
        if self._user_rows is None or self._user_rows[0] is not user_ids:
            with torch.no_grad():
                self._user_rows = (user_ids, rows_of(self.users, user_ids))
        return self._user_rows[1]


class ModelAdapter(ABC):
    """Per-layer embeddings, pooling and pairwise loss of one RecBole model class.

    Embedding arguments are per layer, ``(batch, n_layers, dim)``, as gathered from ``propagate()``. A
    subclass implements ``propagate``, sets ``pooling``, and overrides the loss parts its model has.
    """

    pooling: ClassVar[str] = "mean"

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    @classmethod  # noqa: B027 - an optional hook: most models need no check
    def validate_config(cls, config) -> None:
        """Raise ConfigurationError for model settings the adapter cannot serve; none by default."""

    @abstractmethod
    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """User and item embeddings per layer, in training mode, with gradients."""

    def propagation(self) -> Propagation:
        """``propagate()``'s layers as one ``Propagation``; adapters of models that propagate users and items
        together override it to skip the concatenation."""
        users, items = self.propagate()
        return Propagation(torch.cat([users, items]), len(users))

    def pool(self, layers: torch.Tensor) -> torch.Tensor:
        """Combine ``(..., n_layers, dim)`` into the embedding the model scores with."""
        return _POOLINGS[self.pooling](layers)

    def layer_queries(self, user_layers: torch.Tensor, expand: bool = True) -> torch.Tensor:
        """Per layer, the user vector that item layer embeddings are scored against, ``(..., n_layers, dim)``.

        With these, the sum over layers of ``<query_l, item_l>`` is the model's score up to a positive factor,
        so the hardest item of a layer is the one contributing most to the final score. ``expand=False`` leaves a
        query shared by every layer as ``(..., 1, dim)``, which broadcasts the same.
        """
        if self.pooling == "concat":
            return user_layers
        query = self.pool(user_layers).unsqueeze(-2)
        return query.expand_as(user_layers) if expand else query

    def mix_layers(self, negative_layers: torch.Tensor, mix: NegativeMix) -> torch.Tensor:
        """``negative_layers`` (rows, n_layers, dim) with ``mix`` mixed into every layer, in one fused operation."""
        vectors = mix.vectors(self.pool(negative_layers.detach()))
        spread = spread_over_layers(vectors, negative_layers.shape[-2], self.pooling)
        return torch.lerp(negative_layers, spread, mix.weights.reshape(-1, 1, 1))

    def candidate_layer_scores(
        self, user_e: torch.Tensor, item_layers: torch.Tensor, candidate_ids: torch.Tensor
    ) -> torch.Tensor:
        """Per layer, the scores (rows, n_layers, M) of the candidates against the rows' ``layer_queries``."""
        queries = user_e if self.pooling == "concat" else self.pool(user_e)  # the same query for every layer
        return candidate_scores(queries, item_layers, candidate_ids)

    def pooled_layers(self) -> PooledLayers:
        """``propagate()``'s layers and the pooled item table; the pooled user table only where ``item_negative_loss``
        reads the batch's users from one (LightGCN's), since pooling every user is work the default loss does not do.
        """
        users, items = self.propagate()
        return PooledLayers(users, items, None, self.pool(items))

    def scoring_rows(
        self, user_layers: torch.Tensor, user_ids: torch.Tensor, user_table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The pooled embeddings of ``user_ids`` without gradients (rows, scoring dim), read from ``user_table`` (see
        ``pooled_layers``) when given."""
        with torch.no_grad():
            if user_table is not None:
                return rows_of(user_table.detach(), user_ids)
            return self.pool(rows_of(user_layers, user_ids))

    def ranking_loss(self, pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
        """The model's pairwise ranking loss on scores; RecBole's BPRLoss (a batch mean) by default."""
        return _BPR_LOSS(pos_scores, neg_scores)

    def regularisation(self, user_e: torch.Tensor, pos_e: torch.Tensor, neg_e: torch.Tensor) -> torch.Tensor | float:
        """The model's weighted regularisation of the batch embeddings; none by default."""
        return 0.0

    def auxiliary_loss(self, interaction: Interaction) -> torch.Tensor | float:
        """Loss terms of the model that do not involve the negative (e.g. SGL's contrastive loss); none by default."""
        return 0.0

    def pairwise_loss(
        self, interaction: Interaction, user_e: torch.Tensor, pos_e: torch.Tensor, neg_e: torch.Tensor
    ) -> torch.Tensor:
        """The model's training loss with the negative given as per-layer embeddings instead of an item id."""
        self.invalidate_cached_embeddings()
        user, positive, negative = self.pool(user_e), self.pool(pos_e), self.pool(neg_e)
        loss = self.ranking_loss((user * positive).sum(dim=-1), (user * negative).sum(dim=-1))
        return loss + self.regularisation(user_e, pos_e, neg_e) + self.auxiliary_loss(interaction)

    def item_negative_loss(
        self,
        interaction: Interaction,
        user_layers: torch.Tensor,
        item_layers: torch.Tensor,
        negative_ids: torch.Tensor,
        item_table: torch.Tensor | None = None,
        mix: NegativeMix | None = None,
        user_table: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The model's training loss with ``negative_ids`` (rows,) as the negatives, on one propagation's layers,
        with ``mix`` (when given) mixed into each negative on every layer (``mix_layers``).

        By default the batch's rows are gathered per layer for ``pairwise_loss``; an adapter may compute its model's
        own loss more cheaply, as long as it stays the same loss. ``item_table``, ``pool(item_layers)`` with
        gradients, is passed where the caller has pooled already, and so is ``user_table`` (see ``pooled_layers``).
        """
        model = self.model
        user_e = rows_of(user_layers, interaction[model.USER_ID])
        pos_e = rows_of(item_layers, interaction[model.ITEM_ID])
        neg_e = rows_of(item_layers, negative_ids)
        return self.pairwise_loss(interaction, user_e, pos_e, neg_e if mix is None else self.mix_layers(neg_e, mix))

    def synthesized_negative_loss(
        self,
        interaction: Interaction,
        propagation: Propagation,
        hardest_ids: torch.Tensor,
        synthesize: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        mix: NegativeMix | None = None,
        mean_synthesis: MeanSynthesis | None = None,
    ) -> torch.Tensor:
        """The model's training loss with each row's negative synthesized per layer (MixGCF, DINS).

        ``synthesize(queries, pos_e, hard_e)`` makes the negative's layers from the rows' ``layer_queries`` (with
        gradients) and the layers of the positive and of each layer's hardest candidate (``hardest_ids``, rows x
        layers); ``mix``, when given, is then mixed into every layer (``mix_layers``). By default the batch's rows are
        gathered per layer in one go (``Propagation.rows``) for ``pairwise_loss``; an adapter may compute the same
        loss more cheaply, e.g. with ``mean_synthesis``, the same synthesis fused with mean pooling, when the sampler
        offers one (``MixingSampler.mean_synthesis``; LightGCN's does, without a mix).
        """
        model = self.model
        users, positives = interaction[model.USER_ID], interaction[model.ITEM_ID]
        user_e, pos_e, hard_e = propagation.rows(users, positives, hardest_ids)
        neg_e = synthesize(self.layer_queries(user_e, expand=False), pos_e, hard_e)
        if mix is not None:
            neg_e = self.mix_layers(neg_e, mix)
        return self.pairwise_loss(interaction, user_e, pos_e, neg_e)

    def invalidate_cached_embeddings(self) -> None:
        """Drop the model's cached evaluation embeddings, as every RecBole graph model's calculate_loss does."""
        for cache in ("restore_user_e", "restore_item_e"):
            if getattr(self.model, cache, None) is not None:
                setattr(self.model, cache, None)


ADAPTER_REGISTRY: dict[str, type[ModelAdapter]] = {}


def register_adapter(model_name: str, replace: bool = False) -> Callable[[type[ModelAdapter]], type[ModelAdapter]]:
    """Class decorator: use the decorated ModelAdapter for the model class called ``model_name``."""

    def register(adapter_class: type[ModelAdapter]) -> type[ModelAdapter]:
        if not (isinstance(adapter_class, type) and issubclass(adapter_class, ModelAdapter)):
            raise ConfigurationError(f"{adapter_class!r} is not a ModelAdapter subclass, so it cannot be registered.")
        if adapter_class.pooling not in _POOLINGS:
            raise ConfigurationError(
                f"{adapter_class.__name__}.pooling={adapter_class.pooling!r} is invalid. Valid: {', '.join(_POOLINGS)}"
                "; for another pooling, override pool() and layer_queries()."
            )
        known = ADAPTER_REGISTRY.get(model_name)
        if known is not None and known is not adapter_class and not replace:
            raise ConfigurationError(
                f"Model '{model_name}' already has an adapter ({known.__name__}). Fix: pass replace=True."
            )
        ADAPTER_REGISTRY[model_name] = adapter_class
        return adapter_class

    return register


def adapter_class_for(model_name: str) -> type[ModelAdapter]:
    """The adapter class registered for ``model_name``; UnsupportedModelError if there is none."""
    try:
        return ADAPTER_REGISTRY[model_name]
    except KeyError:
        raise UnsupportedModelError(
            f"Model '{model_name}' has no model adapter, which samplers that synthesize negative embeddings "
            "(e.g. mixgcf, dins) or compare cosines (ahns_similarity: cos) need. Models with one: "
            f"{', '.join(sorted(ADAPTER_REGISTRY))}. Fix: pick one of those, or register an adapter for your model "
            "with recbole_hnlm.model.adapters.register_adapter."
        ) from None


def has_adapter(model_name: str) -> bool:
    """Whether an adapter is registered for the model class called ``model_name``."""
    return model_name in ADAPTER_REGISTRY


def get_adapter(model: torch.nn.Module) -> ModelAdapter:
    """An adapter around ``model``, chosen by its class name."""
    return adapter_class_for(type(model).__name__)(model)


@register_adapter("BPR")
class BPRAdapter(ModelAdapter):
    """Matrix factorisation: one layer, the free embeddings; RecBole's BPR has no regularisation term."""

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding tables as single-layer stacks."""
        return self.model.user_embedding.weight.unsqueeze(1), self.model.item_embedding.weight.unsqueeze(1)


class LinearGraphAdapter(ModelAdapter):
    """A model that propagates its free user and item embeddings linearly over one joint graph (LightGCN, SGL):
    layers 0..``n_layers`` of ``E <- graph @ E``, users and items in one stack. ``graph_attribute`` names the graph."""

    graph_attribute: ClassVar[str]

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The layers, split into users and items."""
        return self.propagation().split()

    def propagation(self) -> Propagation:
        """The layers of every node in one stack."""
        model = self.model
        graph = getattr(model, self.graph_attribute)
        layers = linear_layers(model.user_embedding.weight, model.item_embedding.weight, graph, model.n_layers)
        return Propagation(layers, model.n_users)


@register_adapter("LightGCN")
class LightGCNAdapter(LinearGraphAdapter):
    """Mean of layers 0..n_layers on the normalised adjacency matrix; EmbLoss on the ego (layer-0) embeddings, with
    the model's require_pow."""

    graph_attribute = "norm_adj_matrix"

    def ranking_loss(self, pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
        """The model's BPRLoss."""
        return self.model.mf_loss(pos_scores, neg_scores)

    def pooled_layers(self) -> PooledLayers:
        """Both pooled tables, split from one pooling of the propagation's stack (``item_negative_loss`` reads the
        batch's users from the user table): pooling the halves apart made the backward pass join their gradients
        into a copy of the whole stack (about 0.2 ms a batch on ml-100k, CPU)."""
        propagation = self.propagation()
        user_table, item_table = self.pool(propagation.layers).split([propagation.n_users, len(propagation.items)])
        return PooledLayers(*propagation.split(), user_table, item_table)

    def regularisation(self, user_e: torch.Tensor, pos_e: torch.Tensor, neg_e: torch.Tensor) -> torch.Tensor:
        """reg_weight * EmbLoss of the layer-0 embeddings (for a synthesized negative: its layer-0 mix)."""
        model = self.model
        penalty = model.reg_loss(user_e[:, 0], pos_e[:, 0], neg_e[:, 0], require_pow=model.require_pow)
        return model.reg_weight * penalty

    def item_negative_loss(
        self,
        interaction: Interaction,
        user_layers: torch.Tensor,
        item_layers: torch.Tensor,
        negative_ids: torch.Tensor,
        item_table: torch.Tensor | None = None,
        mix: NegativeMix | None = None,
        user_table: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """LightGCN.calculate_loss on the given layers: pooled tables, then the batch's rows (not every layer's).

        Pooling and scores are linear, so a ``mix`` is mixed into the negative's score and, for the regularisation,
        into its ego embedding (layer 0 of the spread vector): the per-layer default's value without gathering every
        layer."""
        model = self.model
        self.invalidate_cached_embeddings()
        users, positives = interaction[model.USER_ID], interaction[model.ITEM_ID]
        item_table = self.pool(item_layers) if item_table is None else item_table
        user = rows_of(self.pool(user_layers) if user_table is None else user_table, users)
        items = rows_of(item_table, torch.stack([positives, negative_ids], dim=1))
        scores = (user.unsqueeze(1) * items).sum(dim=-1)
        positive_scores, negative_scores = scores[:, 0], scores[:, 1]
        negative_ego = model.item_embedding(negative_ids)
        if mix is not None:  # scores are linear in the negative: the mixed negative's score is the mix of scores
            vectors = mix.vectors(items[:, 1])
            negative_scores = torch.lerp(negative_scores, (user * vectors).sum(dim=-1), mix.weights)
            layer_zero = spread_over_layers(vectors, item_layers.shape[-2], self.pooling)[:, 0]
            negative_ego = torch.lerp(negative_ego, layer_zero, mix.weights.unsqueeze(-1))
        return self._loss_on_scores(self._ego_rows(users, positives, negative_ego), positive_scores, negative_scores)

    def synthesized_negative_loss(
        self,
        interaction: Interaction,
        propagation: Propagation,
        hardest_ids: torch.Tensor,
        synthesize: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        mix: NegativeMix | None = None,
        mean_synthesis: MeanSynthesis | None = None,
    ) -> torch.Tensor:
        """The default's loss with the user pooled once (the layer query and the score share it) and the user's and
        positive's regularisation read from their ego embeddings (layer 0 of the propagation is the ego table): the
        same loss, without a second pooling and without the gradients of layer-0 slices of the gathered rows.

        With ``mean_synthesis`` and no mix, the sampler's synthesis fused with the mean pooling reads the rows from
        the propagation's table itself, its query being the users' pooled rows the pick scored with
        (``Propagation.user_rows``); the ego embeddings are its layer-0 rows."""
        model = self.model
        self.invalidate_cached_embeddings()
        users, positives = interaction[model.USER_ID], interaction[model.ITEM_ID]
        if mean_synthesis is not None and mix is None:
            queries = self.pool(propagation.user_rows(users))
            rows = mean_synthesis(propagation.flat, queries, *propagation.index(users, positives, hardest_ids))
            ego = (rows.user_ego, rows.positive_ego, rows.negative_ego)
            return self._loss_on_scores(
                ego, (rows.user * rows.positive).sum(dim=-1), (rows.user * rows.negative).sum(dim=-1)
            )
        user_e, pos_e, hard_e = propagation.rows(users, positives, hardest_ids)
        user = self.pool(user_e)
        neg_e = synthesize(user.unsqueeze(-2), pos_e, hard_e)  # layer_queries(user_e, expand=False) for mean pooling
        if mix is not None:
            neg_e = self.mix_layers(neg_e, mix)
        positive_scores = (user * self.pool(pos_e)).sum(dim=-1)
        negative_scores = (user * self.pool(neg_e)).sum(dim=-1)
        return self._loss_on_scores(self._ego_rows(users, positives, neg_e[:, 0]), positive_scores, negative_scores)

    def _ego_rows(
        self, users: torch.Tensor, positives: torch.Tensor, negative_ego: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch's ego embeddings: the users' and positives' read from the tables, the negatives' (rows x dim) as
        the caller made them."""
        model = self.model
        return model.user_embedding(users), model.item_embedding(positives), negative_ego

    def _loss_on_scores(
        self,
        ego: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        positive_scores: torch.Tensor,
        negative_scores: torch.Tensor,
    ) -> torch.Tensor:
        """BPR on the scores plus reg_weight * EmbLoss of the (user, positive, negative) ego embeddings ``ego``."""
        model = self.model
        penalty = model.reg_loss(*ego, require_pow=model.require_pow)
        return self.ranking_loss(positive_scores, negative_scores) + model.reg_weight * penalty


@register_adapter("SGL")
class SGLAdapter(LinearGraphAdapter):
    """LightGCN's propagation on the full training graph (the augmented views only enter the SSL loss), a summed BPR
    loss, and the model's contrastive (SSL) loss."""

    graph_attribute = "train_graph"

    def ranking_loss(self, pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
        """SGL sums, rather than averages, -log sigmoid over the batch."""
        return -F.logsigmoid(pos_scores - neg_scores).sum()

    def regularisation(self, user_e: torch.Tensor, pos_e: torch.Tensor, neg_e: torch.Tensor) -> torch.Tensor:
        """reg_weight * EmbLoss of the layer-0 embeddings."""
        model = self.model
        return model.reg_weight * model.reg_loss(user_e[:, 0], pos_e[:, 0], neg_e[:, 0])

    def auxiliary_loss(self, interaction: Interaction) -> torch.Tensor:
        """The model's contrastive loss between its two augmented views (rebuilt by its train())."""
        model = self.model
        user_view1, item_view1 = model.forward(model.sub_graph1)
        user_view2, item_view2 = model.forward(model.sub_graph2)
        return model.calc_ssl_loss(
            interaction[model.USER_ID], interaction[model.ITEM_ID], user_view1, user_view2, item_view1, item_view2
        )


@register_adapter("NGCF")
class NGCFAdapter(ModelAdapter):
    """Concatenated layers; EmbLoss on the final (concatenated) embeddings, as NGCF regularises them."""

    pooling = "concat"

    def __init__(self, model: torch.nn.Module) -> None:
        self._check_layer_sizes(model.hidden_size_list[0], model.hidden_size_list[1:])
        super().__init__(model)

    @classmethod
    def validate_config(cls, config) -> None:
        """Mixing happens layer by layer, so every GNN layer must keep the embedding size."""
        cls._check_layer_sizes(config["embedding_size"], config["hidden_size_list"])

    @staticmethod
    def _check_layer_sizes(embedding_size: int, hidden_sizes: list[int]) -> None:
        if any(size != embedding_size for size in hidden_sizes):
            raise ConfigurationError(
                f"NGCF with hidden_size_list={list(hidden_sizes)} and embedding_size={embedding_size} cannot be "
                "trained with a sampler that mixes embeddings layer by layer: every layer must have the embedding "
                f"size. Fix: --hidden_size_list=[{embedding_size},{embedding_size},{embedding_size}]."
            )

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's own forward pass (node and message dropout included), split back into its layers."""
        users, items = self.model.forward()
        n_layers = len(self.model.hidden_size_list)
        return users.unflatten(-1, (n_layers, -1)), items.unflatten(-1, (n_layers, -1))

    def ranking_loss(self, pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
        """The model's BPRLoss."""
        return self.model.mf_loss(pos_scores, neg_scores)

    def regularisation(self, user_e: torch.Tensor, pos_e: torch.Tensor, neg_e: torch.Tensor) -> torch.Tensor:
        """reg_weight * EmbLoss of the concatenated embeddings."""
        model = self.model
        return model.reg_weight * model.reg_loss(self.pool(user_e), self.pool(pos_e), self.pool(neg_e))
