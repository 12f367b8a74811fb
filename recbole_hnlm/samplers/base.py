"""What every negative sampler shares: the training positives to avoid, a seeded generator and model scoring."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from recbole.data.interaction import Interaction

from recbole_hnlm.errors import ConfigurationError, DataFormatError
from recbole_hnlm.model.adapters import ModelAdapter, candidate_scores, get_adapter, has_adapter, rows_of, scoring_mode
from recbole_hnlm.paths import properties_file
from recbole_hnlm.samplers.false_negatives import FalseHardNegativeMeter
from recbole_hnlm.samplers.text_filter import Screen, TextFilter, check_text_filter

# Up to this many (user, item) cells, positives are also kept as a bit set (1 bit a cell, at most 32 MiB):
# a look-up is then two array reads instead of a binary search, about 40x faster for a batch of DNS candidates.
# Larger catalogues keep the sorted keys only, so memory stays O(training interactions).
BITSET_MAX_CELLS = 1 << 28


class TrainingPositives:
    """Each user's training items, kept as sorted ``user * n_items + item`` keys for vectorised look-ups."""

    def __init__(self, user_ids: np.ndarray, item_ids: np.ndarray, n_users: int, n_items: int) -> None:
        self.n_users = n_users
        self.n_items = n_items
        self.keys = np.unique(user_ids.astype(np.int64) * n_items + item_ids.astype(np.int64))
        self.bits = None
        if n_users * n_items <= BITSET_MAX_CELLS:
            self.bits = np.zeros((n_users * n_items + 7) // 8, dtype=np.uint8)
            np.bitwise_or.at(self.bits, self.keys >> 3, (1 << (self.keys & 7)).astype(np.uint8))
        counts = np.bincount(user_ids, minlength=n_users)
        # Item 0 is RecBole's padding id, so a user can take at most n_items - 1 negatives' worth of items.
        full = np.flatnonzero(counts >= n_items - 1)
        if len(full):
            raise DataFormatError(
                f"User ids {full[:5].tolist()} interacted with every item in training, so no negative can be "
                "sampled for them. Fix: filter them out with user_inter_num_interval."
            )

    @classmethod
    def from_dataset(cls, dataset) -> TrainingPositives:
        """Collect the positives of a RecBole training dataset."""
        users = dataset.inter_feat[dataset.uid_field].numpy()
        items = dataset.inter_feat[dataset.iid_field].numpy()
        return cls(users, items, dataset.user_num, dataset.item_num)

    def contains(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Boolean mask: is (user, item) a training positive? Shapes broadcast."""
        query = np.asarray(user_ids, dtype=np.int64) * self.n_items + np.asarray(item_ids, dtype=np.int64)
        if self.bits is not None:
            return (self.bits[query >> 3] >> (query & 7).astype(np.uint8)) & 1 == 1
        position = np.searchsorted(self.keys, query)
        position[position == len(self.keys)] = 0
        return self.keys[position] == query


class NegativeSampler(ABC):
    """Picks ``num`` negative item ids for each (user, positive item) of a training batch.

    Subclasses set ``name`` (the value of ``--neg_sampler``) and implement ``sample``. Samplers that score
    candidates with the model being trained set ``requires_model``; the train dataloader hands it over.
    Samplers that synthesize negative embeddings (``samplers/mixing.py``) also add batch fields and replace the
    training loss, through ``extra_batch_fields`` and ``training_loss``.

    Every sampler measures the false-hard-negative rate of the negatives it picks (``false_negatives``, against the
    held-out splits that ``prepare`` hands over; a measurement only, never an input of a pick), in ``run_details``.
    """

    name: ClassVar[str]
    requires_model: ClassVar[bool] = False
    # A sampler that trains a model of its own around ``--model`` (e.g. ``hnlm`` trains ``HNLMRec``) names it here;
    # the Config then sets ``model`` to it and ``backbone`` to the model asked for.
    wrapper_model: ClassVar[str | None] = None
    # Whether the sampler picks among scored candidates, so that the text filter (``text_filter``) can screen them.
    filters_candidates: ClassVar[bool] = False

    def __init__(self, config, dataset) -> None:
        self.validate_config(config)
        self.positives = TrainingPositives.from_dataset(dataset)
        self.n_items = dataset.item_num
        self.uid_field = dataset.uid_field
        self.iid_field = dataset.iid_field
        self.rng = np.random.default_rng(config["seed"])
        self.false_negatives = FalseHardNegativeMeter(dataset.user_num, self.n_items)

    @classmethod
    def validate_config(cls, config) -> None:
        """Raise ConfigurationError for contradictory settings: here, a text filter the sampler cannot apply."""
        check_text_filter(config, cls.name, cls.filters_candidates)

    @classmethod
    def defaults_files(cls) -> list[Path]:
        """YAML files of this sampler's defaults, lowest first, merged by the Config under the user's settings.

        A sampler shipped with the plugin keeps them in ``properties/sampler/<name>.yaml``; a third-party sampler
        overrides this to point at its own files. Every file listed must exist.
        """
        own = properties_file("sampler", f"{cls.name}.yaml")
        return [own] if own.is_file() else []

    def prepare(self, held_out_datasets: list) -> None:
        """Called once the split is known, before training (e.g. to build a cache that needs the held-out splits).

        Here the held-out (validation, test) datasets become what the false-hard-negative rate is measured against.
        """
        self.false_negatives.set_held_out(held_out_datasets)

    def end_epoch(self) -> None:
        """Called by the trainer after each training epoch: closes the epoch's false-hard-negative counts."""
        self.false_negatives.end_epoch()

    def run_details(self) -> dict:
        """Entries this sampler adds to the run's results JSON: the false-hard-negative rate of its picks."""
        return self.false_negatives.details()

    @abstractmethod
    def sample(self, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int, model=None) -> torch.Tensor:
        """Return a LongTensor of shape (num, batch): row k holds the k-th negative of every positive."""

    def extra_batch_fields(self, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int) -> dict[str, torch.Tensor]:
        """Fields added to a training batch beside NEG_ITEM_ID, one row per (positive, negative) pair; none here."""
        return {}

    def training_loss(self, model) -> Callable[[Interaction], torch.Tensor] | None:
        """The loss to train ``model`` with instead of its ``calculate_loss``; None keeps the model's own."""
        return None

    def draw_uniform(self, user_ids: np.ndarray, count: int) -> np.ndarray:
        """Draw ``count`` items per user uniformly from items the user has no training interaction with."""
        items = self.uniform_items((count, len(user_ids)))
        return self._redraw_positives(user_ids, items, self.uniform_items)

    def uniform_items(self, size) -> np.ndarray:
        """Item ids drawn uniformly from the catalogue (never 0, RecBole's padding id)."""
        return self.rng.integers(1, self.n_items, size=size)

    def _redraw_positives(self, user_ids: np.ndarray, items: np.ndarray, draw) -> np.ndarray:
        """Replace every training positive in ``items`` (a shape ``user_ids`` broadcasts to) until none is left."""
        users = np.broadcast_to(user_ids, items.shape)
        bad = np.flatnonzero(self.positives.contains(users, items))
        if len(bad):
            flat = items.reshape(-1)  # a view: items is freshly drawn, hence contiguous
            bad_users = users.reshape(-1)[bad]
            while len(bad):
                flat[bad] = draw(len(bad))
                still = self.positives.contains(bad_users, flat[bad])
                bad, bad_users = bad[still], bad_users[still]
        return items


def score_items(model, uid_field: str, iid_field: str, user_ids: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Score ``items`` (rows, count) for ``user_ids`` (rows,) with ``model.predict``, in scoring mode.

    The path for models without an adapter. One ``predict`` call for the whole block: graph models propagate the
    whole graph per call, so chunking would repeat that work.
    """
    with scoring_mode(model):
        rows, count = items.shape
        interaction = Interaction(
            {
                uid_field: user_ids.repeat_interleave(count).to(model.device),
                iid_field: items.reshape(-1).to(model.device),
            }
        )
        scores = model.predict(interaction).reshape(rows, count)
    return scores.float().cpu()


def check_candidate_num(config, sampler_name: str) -> None:
    """Raise ConfigurationError unless ``candidate_num`` is a positive integer."""
    candidate_num = config["candidate_num"]
    if not isinstance(candidate_num, int) or candidate_num < 1:
        raise ConfigurationError(
            f"candidate_num={candidate_num!r} is invalid for neg_sampler={sampler_name}: it must be an integer "
            ">= 1. Fix: e.g. --candidate_num=16."
        )


class CandidatePoolSampler(NegativeSampler):
    """A sampler that works from ``candidate_num`` uniform candidates per negative.

    Samplers that hand the pool to the loss (as the ``neg_candidates`` batch field) draw it once per batch:
    ``sample_from_pool`` draws it and returns its first column as the uniform ``NEG_ITEM_ID``, and
    ``candidate_pool`` hands the same pool to ``extra_batch_fields``.
    """

    candidates_field: ClassVar[str] = "neg_candidates"

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        self.candidate_num = int(config["candidate_num"] or 0)
        self._pool: np.ndarray | None = None  # drawn by sample_from_pool for the batch being built
        self.text_filter = TextFilter.from_config(config, dataset) if self.filters_candidates else None

    @classmethod
    def validate_config(cls, config) -> None:
        """``candidate_num`` must be a positive integer."""
        super().validate_config(config)
        check_candidate_num(config, cls.name)

    def prepare(self, held_out_datasets: list) -> None:
        """The held-out splits for the false-hard-negative rate; the text filter's vectors (training split only)."""
        super().prepare(held_out_datasets)
        if self.text_filter is not None:
            self.text_filter.load()

    def run_details(self) -> dict:
        """The false-hard-negative rate of the picks, and what the text filter did."""
        details = super().run_details()
        if self.text_filter is not None:
            details["text_filter"] = self.text_filter.details()
        return details

    def screen(self, user_ids: torch.Tensor, candidates: torch.Tensor) -> Screen | None:
        """The text filter's verdict on the rows' candidates (rows, M), or None without a filter."""
        return None if self.text_filter is None else self.text_filter.screen(user_ids, candidates)

    def draw_pool(self, user_ids: np.ndarray, num: int) -> np.ndarray:
        """``candidate_num`` uniform candidates per row of RecBole's repeated batch, as ``(num * batch, M)``."""
        rows = np.tile(user_ids, num)[:, None]
        items = self.uniform_items((len(rows), self.candidate_num))
        return self._redraw_positives(rows, items, self.uniform_items)

    def sample_from_pool(self, user_ids: np.ndarray, num: int) -> torch.Tensor:
        """Draw the pool of the batch (``candidate_num`` per row); return its first column, shaped (num, batch)."""
        self._pool = self.draw_pool(user_ids, num)
        return torch.from_numpy(np.ascontiguousarray(self._pool[:, 0]).reshape(num, len(user_ids)))

    def candidate_pool(self, user_ids: np.ndarray, num: int) -> torch.Tensor:
        """The pool ``sample_from_pool`` drew for this batch, ``(num * batch, candidate_num)`` (drawn here if none)."""
        pool, self._pool = self._pool, None
        if pool is None or len(pool) != num * len(user_ids):
            pool = self.draw_pool(user_ids, num)
        return torch.from_numpy(pool)


class ModelScoredSampler(CandidatePoolSampler):
    """A sampler that draws ``candidate_num`` uniform candidates per negative and picks one by the model's scores.

    Subclasses implement the rule: ``preference`` (how much the rule wants each candidate) and, unless the most
    preferred one is picked, ``choose``. A text filter (``text_filter``) drops or lowers the preference of candidates
    too close to the user in text space before the choice. The pick runs on one of two paths, which pick the same
    negatives from the same candidates and weights:

    - a model with an adapter (``recbole_hnlm.model.adapters``): the pool travels in the batch (``neg_candidates``,
      with its first column as the uniform ``NEG_ITEM_ID``) and the pick happens inside the loss
      (``training_loss``), on the embeddings of that step's one propagation, as MixGCF's candidates are scored;
    - any other model: the candidates are scored with ``model.predict`` while the batch is built (one more
      propagation per batch for graph models) and ``NEG_ITEM_ID`` holds the pick.
    """

    requires_model = True
    filters_candidates = True
    # Whether ``pick`` needs the score of each row's positive too.
    uses_positive_score: ClassVar[bool] = False

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        self.scores_in_loss = has_adapter(config["model"])

    @abstractmethod
    def preference(self, scores: torch.Tensor, positive_scores: torch.Tensor | None) -> torch.Tensor:
        """How strongly the rule wants each candidate (rows, M), higher first, from candidate and positive scores."""

    def choose(self, preference: torch.Tensor) -> torch.Tensor:
        """The column (rows,) picked from the preferences: the most preferred."""
        return preference.argmax(dim=1)

    def pick(
        self, scores: torch.Tensor, positive_scores: torch.Tensor | None, screen: Screen | None = None
    ) -> torch.Tensor:
        """The column (rows,) of the picked candidate, from candidate scores (rows, M) and positive scores (rows,),
        after the text filter's ``screen`` (when given) dropped or lowered the candidates it flagged."""
        preference = self.preference(scores, positive_scores)
        if screen is not None:
            preference = screen.apply(preference)
        return self.choose(preference)

    def scoring_vectors(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The user and item vectors whose inner products ``pick`` compares; the pooled embeddings by default."""
        return users, items

    def sample(self, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int, model=None) -> torch.Tensor:
        """With an adapter, the pool's uniform first column (the loss picks); else the pick among scored candidates."""
        if self.scores_in_loss:
            return self.sample_from_pool(user_ids.numpy(), num)
        candidates, scores, positive = self.score_with_predict(model, user_ids, item_ids, num)
        row_users = user_ids.repeat(num)
        picked = candidates.gather(1, self.pick(scores, positive, self.screen(row_users, candidates)).unsqueeze(1))
        self.false_negatives.count(row_users, picked.squeeze(1))
        return picked.reshape(num, len(user_ids))

    def extra_batch_fields(self, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int) -> dict[str, torch.Tensor]:
        """With an adapter, the candidate pool, ``(num * batch, candidate_num)``; else none."""
        if not self.scores_in_loss:
            return {}
        return {self.candidates_field: self.candidate_pool(user_ids.numpy(), num)}

    def training_loss(self, model) -> Callable[[Interaction], torch.Tensor] | None:
        """With an adapter, the model's loss on the negatives picked on its own propagation; else the model's own."""
        return partial(self.scored_loss, get_adapter(model)) if self.scores_in_loss else None

    def scored_loss(self, adapter: ModelAdapter, interaction: Interaction) -> torch.Tensor:
        """Propagate once, pick each row's negative among its candidates, and return the model's loss on it.

        The item table is pooled once, with gradients: scoring reads it detached, and the loss may reuse it; so is the
        user table where the adapter's loss reads one (``ModelAdapter.pooled_layers``).
        """
        layers = adapter.pooled_layers()
        user_rows = adapter.scoring_rows(layers.users, interaction[self.uid_field], layers.user_table)
        negatives = self.pick_in_loss(adapter, interaction, layers.users, layers.item_table.detach(), user_rows)
        return adapter.item_negative_loss(
            interaction, layers.users, layers.items, negatives, layers.item_table, user_table=layers.user_table
        )

    def pick_in_loss(
        self,
        adapter: ModelAdapter,
        interaction: Interaction,
        user_layers: torch.Tensor,
        item_table: torch.Tensor,
        user_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Each row's picked candidate id (rows,), scored on pooled embeddings: the batch's users, ``item_table``.

        ``user_rows``, the batch users' pooled embeddings without gradients, spares pooling them again where the
        caller has them."""
        candidates = interaction[self.candidates_field]
        user_ids = interaction[self.uid_field]
        with torch.no_grad():
            users = adapter.scoring_rows(user_layers, user_ids) if user_rows is None else user_rows
            users, items = self.scoring_vectors(users, item_table)
            scores = candidate_scores(users, items, candidates)
            positive = None
            if self.uses_positive_score:
                positive = (users * rows_of(items, interaction[self.iid_field])).sum(dim=-1)
            column = self.pick(scores, positive, self.screen(user_ids, candidates))
            picked = candidates.gather(1, column.unsqueeze(1)).squeeze(1)
        self.false_negatives.count(user_ids, picked)
        return picked

    def score_with_predict(
        self, model, user_ids: torch.Tensor, item_ids: torch.Tensor, num: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Draw the pool and score it with ``model.predict``: candidates and scores (num * batch, M), positive scores.

        The pool is drawn as ``sample_from_pool`` draws it, so both paths see the same candidates for one seed; the
        positives (when ``pick`` uses them) are scored in the same ``predict`` call.
        """
        if model is None:
            raise ConfigurationError(
                f"neg_sampler={self.name} scores candidates with the model, but the train dataloader has none. "
                "Fix: train through recbole_hnlm (run_recbole_hnlm.py or quick_start.run), whose Trainer hands "
                "the model over, or call train_data.get_model(model) before iterating."
            )
        candidates = torch.from_numpy(self.draw_pool(user_ids.numpy(), num))
        block = candidates
        if self.uses_positive_score:
            block = torch.cat([candidates, item_ids.repeat(num).unsqueeze(1)], dim=1)
        scores = score_items(model, self.uid_field, self.iid_field, user_ids.repeat(num), block)
        positive = scores[:, -1] if self.uses_positive_score else None
        return candidates, scores[:, : self.candidate_num], positive
