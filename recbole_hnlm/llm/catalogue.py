"""What the LLM side knows about a dataset: item and user texts, and the training split the CF model uses.

Everything is indexed by RecBole's internal ids (row 0 is the ``[PAD]`` id), so vectors computed from it line
up with the CF model's embedding tables. User histories come from the training split only: the validation and
test positives are kept apart and used only to measure false hard negatives.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recbole_hnlm.data.reader import AtomicTable, read_atomic
from recbole_hnlm.errors import DataFormatError
from recbole_hnlm.llm.settings import LLMSettings
from recbole_hnlm.split_fingerprint import tokens_sha256, train_split_sha256


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, or '' when there is no such file."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


logger = logging.getLogger()


def _split_categories(text: str, separator: str) -> list[str]:
    """Categories of a token_seq cell: comma-separated when it has commas, else RecBole's seq_separator."""
    parts = text.split(",") if "," in text else text.split(separator or " ")
    return [part.strip() for part in parts if part.strip()]


@dataclass
class Catalogue:
    """Item and user texts and the training split of one dataset, by RecBole internal id."""

    dataset: str
    item_tokens: np.ndarray
    user_tokens: np.ndarray
    item_titles: list[str]
    item_labels: list[str]
    item_facts: list[str]
    item_categories: list[list[str]]
    user_demographics: list[str]
    train_indptr: np.ndarray
    train_items: np.ndarray
    history_indptr: np.ndarray
    history_items: np.ndarray
    held_out_indptr: np.ndarray
    held_out_items: np.ndarray
    input_fingerprint: dict
    item_text_counts: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        """Number of item ids, ``[PAD]`` included (RecBole's ``item_num``)."""
        return len(self.item_tokens)

    @property
    def n_users(self) -> int:
        """Number of user ids, ``[PAD]`` included (RecBole's ``user_num``)."""
        return len(self.user_tokens)

    def train_items_of(self, user: int) -> np.ndarray:
        """The user's training positives, sorted by id."""
        return self.train_items[self.train_indptr[user] : self.train_indptr[user + 1]]

    def held_out_items_of(self, user: int) -> np.ndarray:
        """The user's validation and test positives, sorted by id."""
        return self.held_out_items[self.held_out_indptr[user] : self.held_out_indptr[user + 1]]

    def recent_history(self, user: int, length: int) -> np.ndarray:
        """The user's ``length`` most recent training items, oldest first."""
        start, end = self.history_indptr[user], self.history_indptr[user + 1]
        return self.history_items[max(start, end - length) : end]

    def train_pair_keys(self) -> np.ndarray:
        """Every training (user, item) pair as ``user * n_items + item``, sorted and unique."""
        users = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.train_indptr))
        return users * self.n_items + self.train_items.astype(np.int64)

    def user_facts(self, user: int, length: int) -> str:
        """A rule-written user profile: demographics, most chosen categories, recent training items."""
        history = self.recent_history(user, length)
        counts = Counter(category for item in self.train_items_of(user) for category in self.item_categories[item])
        parts = []
        if self.user_demographics[user]:
            parts.append(f"User: {self.user_demographics[user]}.")
        if counts:
            top = ", ".join(f"{category} ({count})" for category, count in counts.most_common(5))
            parts.append(f"Most chosen categories: {top}.")
        if len(history):
            titles = "; ".join(self.item_titles[item] for item in history[::-1])
            parts.append(f"Recent items: {titles}.")
        return " ".join(parts) or "A user with no training history."

    @classmethod
    def from_split(cls, config, train_dataset, held_out_datasets: list, settings: LLMSettings) -> Catalogue:
        """Build from RecBole's training dataset and its validation/test datasets (for measurements only)."""
        iid, uid = train_dataset.iid_field, train_dataset.uid_field
        item_tokens = np.asarray(train_dataset.field2id_token[iid])
        user_tokens = np.asarray(train_dataset.field2id_token[uid])
        folder = Path(config["data_path"])
        name = config["dataset"]
        separator = config["field_separator"]
        item_file, user_file = folder / f"{name}.item", folder / f"{name}.user"
        if not item_file.is_file():
            raise DataFormatError(
                f"Dataset '{name}' has no item text ({item_file} does not exist), so there is nothing to write item "
                "profiles from. Fix: add an .item atomic file with titles (the Amazon importer writes one)."
            )
        titles, labels, facts, categories, item_text_counts = _item_texts(
            item_file, separator, config["seq_separator"], item_tokens, iid, settings
        )
        demographics = _user_demographics(user_file, separator, user_tokens, uid, settings)

        users = train_dataset.inter_feat[uid].numpy()
        items = train_dataset.inter_feat[iid].numpy()
        time_field = train_dataset.time_field
        order_key = (
            train_dataset.inter_feat[time_field].numpy()
            if time_field and time_field in train_dataset.inter_feat
            else np.arange(len(users))
        )
        recency = np.lexsort((items, order_key, users))
        history_indptr, history_items = _csr(users[recency], items[recency], len(user_tokens), keep_order=True)
        train_indptr, train_items = _csr(users, items, len(user_tokens))
        held_users = np.concatenate([part.inter_feat[uid].numpy() for part in held_out_datasets] or [np.zeros(0, int)])
        held_items = np.concatenate([part.inter_feat[iid].numpy() for part in held_out_datasets] or [np.zeros(0, int)])
        held_out_indptr, held_out_items = _csr(held_users, held_items, len(user_tokens))

        catalogue = cls(
            dataset=name,
            item_tokens=item_tokens,
            user_tokens=user_tokens,
            item_titles=titles,
            item_labels=labels,
            item_facts=facts,
            item_categories=categories,
            user_demographics=demographics,
            train_indptr=train_indptr,
            train_items=train_items,
            history_indptr=history_indptr,
            history_items=history_items,
            held_out_indptr=held_out_indptr,
            held_out_items=held_out_items,
            input_fingerprint={},
            item_text_counts=item_text_counts,
        )
        catalogue.input_fingerprint = {
            "dataset": name,
            "item_file_sha256": file_sha256(item_file),
            "user_file_sha256": file_sha256(user_file),
            "item_tokens_sha256": tokens_sha256(item_tokens),
            "train_split_sha256": train_split_sha256(item_tokens, user_tokens, catalogue.train_pair_keys()),
            "n_items": len(item_tokens),
            "n_users": len(user_tokens),
            "n_train_pairs": int(len(train_items)),
        }
        return catalogue


def _csr(users: np.ndarray, items: np.ndarray, n_users: int, keep_order: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, items) of each user's items: unique and sorted by id, or in the given order when ``keep_order``."""
    if keep_order:
        grouped = items.astype(np.int64)
        row_users = users
    else:
        keys = np.unique(users.astype(np.int64) * (int(items.max(initial=0)) + 1) + items)
        row_users, grouped = np.divmod(keys, int(items.max(initial=0)) + 1)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.add.at(indptr, row_users + 1, 1)
    return np.cumsum(indptr), grouped.astype(np.int64)


def _item_rows(
    path: Path, separator: str, item_tokens: np.ndarray, iid: str, settings: LLMSettings
) -> tuple[dict[str, dict[str, str]], dict[str, str | None], dict[str, int]]:
    """The checked ``.item`` rows by item token, which column plays each text role, and what was left out.

    The id column is found by name (``ITEM_ID_FIELD``), wherever it stands. A file with no text column that
    ``llm_item_fields`` knows, or whose ids match none of the dataset's items, is refused: every profile would
    otherwise be a bare ``Item <token>.``.
    """
    table: AtomicTable = read_atomic(path, separator, required_ids=(iid,), unique_id=iid)
    roles = {
        role: next((c for c in candidates if c in table.names), None)
        for role, candidates in settings.item_fields.items()
    }
    if not any(roles.values()):
        looked_for = sorted({c for candidates in settings.item_fields.values() for c in candidates})
        raise DataFormatError(
            f"{path}:1: no column gives item text: the header has {table.names}, llm_item_fields looks for "
            f"{looked_for}. Fix: rename a text column (e.g. title:token_seq) or add its name to llm_item_fields."
        )
    rows = {row[iid]: row for row in table.records()}
    dataset_items = {str(token) for token in item_tokens[1:]}
    covered = dataset_items.intersection(rows)
    if dataset_items and not covered:
        raise DataFormatError(
            f"{path}: none of the dataset's {len(dataset_items)} items has a row (column {iid} holds e.g. "
            f"'{next(iter(rows))}', the dataset e.g. '{sorted(dataset_items)[0]}'). Fix: write the dataset's item "
            "ids in that column."
        )
    counts = {
        **{f"item_file_{key}": value for key, value in table.counts.items()},
        "items_without_text": len(dataset_items) - len(covered),
        "item_rows_not_in_dataset": len(rows) - len(covered),
    }
    if counts["items_without_text"]:
        logger.warning(f"{path}: {counts['items_without_text']} items have no row; their profiles say 'Item <id>'.")
    if counts["item_rows_not_in_dataset"]:
        logger.info(f"{path}: left out {counts['item_rows_not_in_dataset']} rows of items the dataset does not use.")
    return rows, roles, counts


def _item_texts(
    path: Path, separator: str, seq_separator: str, item_tokens: np.ndarray, iid: str, settings: LLMSettings
) -> tuple[list[str], list[str], list[str], list[list[str]], dict[str, int]]:
    """Per internal item id: title (with year), label (title and categories), full facts, and categories; counts."""
    rows, roles, counts = _item_rows(path, separator, item_tokens, iid, settings)
    titles, labels, facts, categories = [""], [""], [""], [[]]
    for token in item_tokens[1:]:
        row = rows.get(str(token), {})

        def text(role: str, row=row) -> str:
            column = roles.get(role)
            return " ".join(str(row.get(column, "")).split()) if column else ""

        title = text("title") or f"Item {token}"
        year = text("year")
        head = f"{title} ({year})" if year and year != "0" else title
        item_categories = _split_categories(text("categories"), seq_separator)
        label = head + (f". Categories: {', '.join(item_categories)}" if item_categories else "") + "."
        extra = []
        if text("brand"):
            extra.append(f"Brand: {text('brand')}.")
        description = text("description")[: settings.description_chars].strip()
        if description:
            extra.append(f"Description: {description}")
        titles.append(head)
        labels.append(label)
        facts.append(" ".join([label, *extra]))
        categories.append(item_categories)
    return titles, labels, facts, categories, counts


def _user_demographics(
    path: Path, separator: str, user_tokens: np.ndarray, uid: str, settings: LLMSettings
) -> list[str]:
    """Per internal user id: ``age 24, gender M, occupation technician`` from the .user file, or ''."""
    if not path.is_file():
        return [""] * len(user_tokens)
    table = read_atomic(path, separator, required_ids=(uid,), unique_id=uid)
    columns = [c for c in table.names if c != uid and c not in settings.user_ignore_fields]
    rows = {row[uid]: row for row in table.records()}
    texts = []
    for token in user_tokens:
        row = rows.get(str(token))
        values = [f"{column.replace('_', ' ')} {row[column]}" for column in columns if row and row[column].strip()]
        texts.append(", ".join(values))
    return texts


def negative_units(catalogue: Catalogue, unit: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(user, positive item or -1) of every generation unit, in the order a budget takes them.

    Per user: every user with training data, shuffled. Per pair: round-robin over users (shuffled once), each
    user's positives shuffled, so any budget spreads over users before it repeats one. The order does not depend
    on the budget, so a larger budget later extends the work already cached.
    """
    rng = np.random.default_rng(seed)
    keys = catalogue.train_pair_keys()
    users, items = np.divmod(keys, catalogue.n_items)
    if unit == "user":
        order = rng.permutation(np.unique(users))
        return order, np.full(len(order), -1, dtype=np.int64)
    user_rank = np.empty(catalogue.n_users, dtype=np.int64)
    user_rank[rng.permutation(catalogue.n_users)] = np.arange(catalogue.n_users)
    by_user = np.lexsort((rng.random(len(keys)), users))
    round_of_pair = np.empty(len(keys), dtype=np.int64)
    round_of_pair[by_user] = np.arange(len(keys)) - catalogue.train_indptr[users[by_user]]
    order = np.lexsort((user_rank[users], round_of_pair))
    return users[order], items[order]
