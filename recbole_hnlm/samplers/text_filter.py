"""A false-negative filter from text: candidates too close to the user in text space are dropped or down-weighted.

A hard negative mined by the model is often an item the user would like but has not met yet (a false negative).
LLMHNI (AAAI 2026) and DTL-NS (2026) screen hard-negative candidates with LLM or text relevance; this filter does
the same with the text vectors the plugin already has, for every sampler that picks among scored candidates
(dns, dns_mn, ahns: the pick; mixgcf, dins: the hardest candidate of each layer). Before the pick, each candidate's
closeness to the row's user is measured:

- ``text_filter: user``: the cosine between the candidate's and the user's profile vectors;
- ``text_filter: nearest_item``: the highest cosine between the candidate and the user's training items.

A candidate is flagged when its closeness is above ``text_filter_quantile``, that quantile of its row's
closenesses, or, with ``text_filter_threshold`` set, above that cosine. A row whose candidates are all flagged
keeps its least close one unflagged, so every row still has a negative. Flagged candidates are then
(``text_filter_mode``):

- ``drop``: never picked (their preference becomes -inf);
- ``downweight``: lowered by ``text_filter_weight`` times the row's preference range (max - min over its
  candidates): 0 changes nothing, 1 ranks a flagged candidate at or below every unflagged one.

The vectors are the LLM cache's profile vectors (template or LLM profiles, embedded by ``llm_embedding_model``),
or with ``hnlm_encoder: untuned|finetuned`` the fine-tuning chain's (``load_profile_vectors``). They describe the
training split only: the held-out splits never drive a pick.
"""

from __future__ import annotations

from dataclasses import dataclass
from logging import getLogger

import torch
import torch.nn.functional as F

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.llm_cf.text_profiles import load_profile_vectors
from recbole_hnlm.model.adapters import candidate_scores, rows_of

TARGETS = ("none", "user", "nearest_item")
MODES = ("drop", "downweight")
# Up to this many cells (users x items, and items x items), the nearest-item closeness of every (user, item) is
# computed once (float32, at most 128 MiB); above it, per batch from each row's training items.
NEAREST_TABLE_MAX_CELLS = 1 << 25
# Rows of (row, training item) pairs scored at a time on the per-batch path.
PAIR_BLOCK = 1 << 16

logger = getLogger()


@dataclass(frozen=True)
class TextFilterSettings:
    """The ``text_filter*`` settings of a run, checked."""

    target: str
    threshold: float | None
    quantile: float
    mode: str
    weight: float

    @classmethod
    def from_config(cls, config) -> TextFilterSettings:
        """Read and check the settings; ConfigurationError names a wrong one."""
        target = config["text_filter"] or "none"
        if target not in TARGETS:
            raise ConfigurationError(f"text_filter={target!r} is invalid. Valid: {', '.join(TARGETS)}.")
        if target == "none":  # the other knobs are not read
            return cls("none", None, 1.0, "drop", 0.0)
        mode = config["text_filter_mode"]
        if mode not in MODES:
            raise ConfigurationError(f"text_filter_mode={mode!r} is invalid. Valid: {', '.join(MODES)}.")
        threshold = config["text_filter_threshold"]
        if threshold is not None:
            threshold = _number(config, "text_filter_threshold", -1.0, 1.0, "a cosine in [-1, 1], e.g. 0.7")
        quantile = _number(config, "text_filter_quantile", 0.0, 1.0, "a number in [0, 1), e.g. 0.75")
        if threshold is None and quantile == 1.0:
            raise ConfigurationError(
                "text_filter_quantile=1 flags nothing (no closeness is above its row's maximum). "
                "Fix: a quantile below 1, e.g. 0.75, or a cosine threshold, e.g. --text_filter_threshold=0.7."
            )
        weight = _number(config, "text_filter_weight", 0.0, None, "a number >= 0, e.g. 0.5")
        return cls(target, threshold, quantile, mode, weight)

    @property
    def active(self) -> bool:
        """Whether candidates are screened at all."""
        return self.target != "none"


def _number(config, key: str, low: float, high: float | None, expected: str) -> float:
    value = config[key]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < low
        or (high is not None and value > high)
    ):
        raise ConfigurationError(f"{key}={value!r} is invalid: it must be {expected}. Fix: --{key}=<value>.")
    return float(value)


def check_text_filter(config, sampler_name: str, filters_candidates: bool) -> None:
    """Refuse wrong ``text_filter*`` settings, and a filter asked of a sampler that has no candidates to screen."""
    settings = TextFilterSettings.from_config(config)
    if not settings.active:
        return
    if not filters_candidates:
        raise ConfigurationError(
            f"text_filter={settings.target} screens scored candidates, but neg_sampler={sampler_name} scores none. "
            "Fix: --neg_sampler=dns (or dns_mn, ahns, mixgcf, dins), or --text_filter=none."
        )
    if config["refit_with_valid"]:
        raise ConfigurationError(
            f"text_filter={settings.target} reads text vectors of the training split, which a refit on train + "
            "validation does not match. Fix: --refit_with_valid=False, or --text_filter=none."
        )


@dataclass(frozen=True)
class Screen:
    """The filter's verdict on one batch of candidates: which are flagged (rows, M), and what happens to them."""

    flags: torch.Tensor
    mode: str
    weight: float

    def apply(self, preference: torch.Tensor) -> torch.Tensor:
        """``preference`` (rows, [layers,] M), higher picked first, with the flagged candidates dropped or lowered."""
        flags = self.flags.reshape(len(self.flags), *[1] * (preference.dim() - 2), self.flags.shape[-1])
        if self.mode == "drop":
            return preference.masked_fill(flags, float("-inf"))
        spread = preference.amax(dim=-1, keepdim=True) - preference.amin(dim=-1, keepdim=True)
        return preference - flags * (self.weight * spread)


class TextFilter:
    """Flags candidates too close to their row's user in text space; see the module docstring.

    The text vectors are read on ``load`` (``prepare`` calls it) or on first use, normalised, and kept on each
    device that asks for them. ``flagged_share`` counts how many screened candidates were flagged.
    """

    def __init__(self, settings: TextFilterSettings, config, train_dataset) -> None:
        self.settings = settings
        self.config = config
        self.train_dataset = train_dataset
        self.vectors_description: dict = {}
        self._user_vectors: torch.Tensor | None = None
        self._item_vectors: torch.Tensor | None = None
        self._nearest_table: torch.Tensor | None = None
        self._history: tuple[torch.Tensor, torch.Tensor] | None = None  # CSR: (indptr, items) of training items
        self._on_device: dict[tuple[str, torch.device], torch.Tensor] = {}
        self._screened = 0
        self._flagged: torch.Tensor | int = 0

    @classmethod
    def from_config(cls, config, train_dataset) -> TextFilter | None:
        """The filter the settings ask for, or None for ``text_filter: none``."""
        settings = TextFilterSettings.from_config(config)
        return cls(settings, config, train_dataset) if settings.active else None

    def load(self) -> None:
        """Read the profile vectors of the training split (building the profile stage of the LLM cache if missing)."""
        if self._item_vectors is not None:
            return
        profiles = load_profile_vectors(self.config, self.train_dataset)
        self.vectors_description = profiles.describe()
        self.set_vectors(profiles.user_vectors, profiles.item_vectors)
        settings = self.settings
        cut = f"cosine > {settings.threshold}" if settings.threshold is not None else f"above q{settings.quantile}"
        logger.info(f"text filter: {settings.target}, {cut}, {settings.mode}; vectors {profiles.folder}")

    def set_vectors(self, user_vectors: torch.Tensor, item_vectors: torch.Tensor) -> None:
        """Use these text vectors ((n_users, dim), (n_items, dim), rows in RecBole's internal ids); normalised here."""
        dataset = self.train_dataset
        if len(user_vectors) != dataset.user_num or len(item_vectors) != dataset.item_num:
            raise ConfigurationError(
                f"Text vectors of {len(user_vectors)} users and {len(item_vectors)} items do not match the training "
                f"split ({dataset.user_num} users, {dataset.item_num} items, padding included). Fix: rebuild the "
                "LLM cache for this dataset and split."
            )
        self._user_vectors = F.normalize(user_vectors.float(), dim=-1)
        self._item_vectors = F.normalize(item_vectors.float(), dim=-1)
        self._on_device.clear()
        self._nearest_table = None
        if self.settings.target == "nearest_item":
            self._prepare_nearest_item()

    def _prepare_nearest_item(self) -> None:
        dataset = self.train_dataset
        users = dataset.inter_feat[dataset.uid_field].long()
        items = dataset.inter_feat[dataset.iid_field].long()
        n_users, n_items = dataset.user_num, dataset.item_num
        if max(n_users, n_items) * n_items <= NEAREST_TABLE_MAX_CELLS:
            self._nearest_table = nearest_item_table(self._item_vectors, users, items, n_users)
            return
        order = torch.argsort(users, stable=True)
        indptr = torch.zeros(n_users + 1, dtype=torch.long)
        indptr[1:] = torch.cumsum(torch.bincount(users, minlength=n_users), dim=0)
        self._history = (indptr, items[order])

    def _device_copy(self, name: str, tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        key = (name, device)
        if key not in self._on_device:
            self._on_device[key] = tensor.to(device)
        return self._on_device[key]

    def closeness(self, user_ids: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """The cosine (rows, M) between each candidate and its row's user (profile or nearest training item)."""
        self.load()
        device = candidates.device
        user_ids = user_ids.to(device)
        items = self._device_copy("items", self._item_vectors, device)
        if self.settings.target == "user":
            users = rows_of(self._device_copy("users", self._user_vectors, device), user_ids)
            return candidate_scores(users, items, candidates)
        if self._nearest_table is not None:
            table = self._device_copy("nearest", self._nearest_table, device)
            return table[user_ids.unsqueeze(1), candidates]
        return self._nearest_in_batch(user_ids, candidates, items)

    def _nearest_in_batch(self, user_ids: torch.Tensor, candidates: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Nearest-item closeness from each row's training items, ``PAIR_BLOCK`` (row, item) pairs at a time."""
        device = candidates.device
        indptr = self._device_copy("indptr", self._history[0], device)
        history = self._device_copy("history", self._history[1], device)
        starts, lengths = indptr[user_ids], indptr[user_ids + 1] - indptr[user_ids]
        pair_rows = torch.repeat_interleave(torch.arange(len(user_ids), device=device), lengths)
        first_pair = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        offsets = torch.arange(len(pair_rows), device=device) - first_pair  # position within the row's items
        pair_items = history[torch.repeat_interleave(starts, lengths) + offsets]
        best = torch.full(candidates.shape, float("-inf"), device=device)
        for start in range(0, len(pair_rows), PAIR_BLOCK):
            rows = pair_rows[start : start + PAIR_BLOCK]
            scores = candidate_scores(rows_of(items, pair_items[start : start + PAIR_BLOCK]), items, candidates[rows])
            best.scatter_reduce_(0, rows.unsqueeze(1).expand_as(scores), scores, reduce="amax")
        return best

    def flags(self, closeness: torch.Tensor) -> torch.Tensor:
        """Which candidates (rows, M) are too close; a row with all of them flagged keeps its least close one."""
        if self.settings.threshold is not None:
            cut = self.settings.threshold
        else:
            cut = torch.quantile(closeness, self.settings.quantile, dim=1, keepdim=True)
        flags = closeness > cut
        every = flags.all(dim=1)
        if every.any():
            rows = torch.nonzero(every).squeeze(1)
            flags[rows, closeness[rows].argmin(dim=1)] = False
        return flags

    def screen(self, user_ids: torch.Tensor, candidates: torch.Tensor) -> Screen:
        """The verdict on ``candidates`` (rows, M) of the rows' users (rows,); counted for ``details``."""
        with torch.no_grad():
            flags = self.flags(self.closeness(user_ids, candidates))
        self._screened += flags.numel()
        self._flagged = self._flagged + flags.sum()
        return Screen(flags, self.settings.mode, self.settings.weight)

    def details(self) -> dict:
        """The filter's settings, its vectors and the share of screened candidates it flagged, for the results."""
        flagged = int(self._flagged)
        return {
            "target": self.settings.target,
            "threshold": self.settings.threshold,
            "quantile": None if self.settings.threshold is not None else self.settings.quantile,
            "mode": self.settings.mode,
            "weight": self.settings.weight if self.settings.mode == "downweight" else None,
            "vectors": self.vectors_description,
            "screened_candidates": self._screened,
            "flagged_share": flagged / self._screened if self._screened else None,
        }


def nearest_item_table(
    item_vectors: torch.Tensor, users: torch.Tensor, items: torch.Tensor, n_users: int
) -> torch.Tensor:
    """(n_users, n_items): per user and item, the highest cosine between the item and the user's training items.

    ``item_vectors`` are unit rows; the item x item cosines are computed once and reduced over each user's items.
    A user without training items gets -inf everywhere.
    """
    similarity = item_vectors @ item_vectors.T
    table = torch.full((n_users, len(item_vectors)), float("-inf"))
    step = max(1, NEAREST_TABLE_MAX_CELLS // len(item_vectors))
    for start in range(0, len(users), step):
        rows = similarity.index_select(0, items[start : start + step])
        index = users[start : start + step].unsqueeze(1).expand_as(rows)
        table.scatter_reduce_(0, index, rows, reduce="amax")
    return table
