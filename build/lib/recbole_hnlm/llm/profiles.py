"""Stage 1: item and user profiles (LLM-written or by rule) and their text-embedding vectors.

Item unit ``u`` is item id ``u + 1`` and user unit ``u`` is user id ``u + 1`` (id 0 is RecBole's ``[PAD]``).
The embedded text always starts from the item's metadata, so an LLM's weak or wrong prose adds to the facts
and never replaces them; a failed answer leaves the facts alone, marked failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recbole_hnlm.llm.backends import TextEmbedder, TextGenerator
from recbole_hnlm.llm.cache import CacheFolder, ShardedRecords, fill_array_in_chunks
from recbole_hnlm.llm.catalogue import Catalogue, negative_units
from recbole_hnlm.llm.generation import generate_records, record_stage
from recbole_hnlm.llm.prompts import PromptTemplate
from recbole_hnlm.llm.settings import LLMSettings

if TYPE_CHECKING:
    from recbole_hnlm.llm.distributed import ShardWorkers

ITEM_VECTORS = "vectors/item_profile_vectors.npy"
USER_VECTORS = "vectors/user_profile_vectors.npy"


def item_store(folder: CacheFolder, settings: LLMSettings) -> ShardedRecords:
    """The shard files of item profiles."""
    return ShardedRecords(folder.path / "profiles" / "items", settings.shard_size)


def user_store(folder: CacheFolder, settings: LLMSettings) -> ShardedRecords:
    """The shard files of user profiles."""
    return ShardedRecords(folder.path / "profiles" / "users", settings.shard_size)


def item_profile_text(catalogue: Catalogue, item: int, answer: dict | None) -> str:
    """What is embedded for an item: its facts, then the LLM's summary and keywords when there is an answer."""
    text = catalogue.item_facts[item]
    if answer:
        text += f" {answer['summary']}"
        if answer.get("keywords"):
            text += f" Keywords: {', '.join(answer['keywords'])}."
    return text


def user_profile_text(catalogue: Catalogue, user: int, answer: dict | None, settings: LLMSettings) -> str:
    """What is embedded for a user: the LLM's summary and likes first (embedders truncate), then the facts."""
    facts = catalogue.user_facts(user, settings.history_len)
    if not answer:
        return facts
    likes = f" Likes: {', '.join(answer['likes'])}." if answer.get("likes") else ""
    return f"{answer['summary']}{likes} {facts}"


def budget_users(catalogue: Catalogue, settings: LLMSettings) -> set[int]:
    """The users whose negatives the LLM writes under ``llm_negative_budget`` (their profiles feed its prompts)."""

    unit_users, _ = negative_units(catalogue, settings.negative_unit, settings.seed)
    return {int(user) for user in unit_users[: settings.negative_budget]}


def build_profiles(
    folder: CacheFolder,
    manifest: dict,
    catalogue: Catalogue,
    settings: LLMSettings,
    prompts: dict[str, PromptTemplate],
    generator: Callable[[], TextGenerator | None],
    embedder: Callable[[], TextEmbedder],
    uses_llm: bool,
    workers: ShardWorkers | None = None,
) -> None:
    """Write (or finish) the item and user profiles and their vectors; record counts and timings in the manifest.

    With ``workers`` the missing shards and vector chunks are made by Ray workers (``recbole_hnlm.llm.distributed``).
    """
    stages = manifest.setdefault("stages", {})
    started = time.perf_counter()
    counts = generate_records(
        item_store(folder, settings),
        catalogue.n_items - 1,
        lambda unit: {"unit": unit, "id": unit + 1, "token": str(catalogue.item_tokens[unit + 1])},
        (lambda unit: prompts["item_profile"].render(item=catalogue.item_facts[unit + 1])) if uses_llm else None,
        "item_profile",
        lambda unit, answer: item_profile_text(catalogue, unit + 1, answer),
        generator,
        settings,
        "item profiles",
        workers,
    )
    record_stage(stages, "item_profiles", counts, time.perf_counter() - started)
    folder.write_manifest(manifest)

    llm_users = budget_users(catalogue, settings) if settings.user_profile_scope == "budget" else None

    def user_prompt(unit: int):
        user = unit + 1
        if llm_users is not None and user not in llm_users:
            return None  # outside the negatives' budget: written by rule (status template)
        history = "\n".join(
            f"- {catalogue.item_labels[item]}" for item in catalogue.recent_history(user, settings.history_len)
        )
        return prompts["user_profile"].render(
            demographics=catalogue.user_demographics[user] or "unknown", history=history or "- (nothing yet)"
        )

    started = time.perf_counter()
    counts = generate_records(
        user_store(folder, settings),
        catalogue.n_users - 1,
        lambda unit: {"unit": unit, "id": unit + 1, "token": str(catalogue.user_tokens[unit + 1])},
        user_prompt if uses_llm else None,
        "user_profile",
        lambda unit, answer: user_profile_text(catalogue, unit + 1, answer, settings),
        generator,
        settings,
        "user profiles",
        workers,
    )
    record_stage(stages, "user_profiles", counts, time.perf_counter() - started)
    folder.write_manifest(manifest)

    item_texts = [""] + [record["text"] for record in item_store(folder, settings).read(catalogue.n_items - 1)]
    user_texts = [""] + [record["text"] for record in user_store(folder, settings).read(catalogue.n_users - 1)]
    for relative, texts, desc in (
        (ITEM_VECTORS, item_texts, "item vectors"),
        (USER_VECTORS, user_texts, "user vectors"),
    ):
        path = folder.path / relative
        if path.is_file():
            continue
        model = embedder()
        manifest["embedding"] = model.describe()
        folder.write_manifest(manifest)
        fill_vectors(path, len(texts), embedder, partial(_embed_rows, texts=texts), settings, desc, workers)
    manifest["stages"]["profiles_complete"] = True
    folder.write_manifest(manifest)


def fill_vectors(
    path: Path,
    n_rows: int,
    embedder: Callable[[], TextEmbedder],
    rows_of: Callable[[TextEmbedder], Callable[[int, int], np.ndarray]],
    settings: LLMSettings,
    desc: str,
    workers: ShardWorkers | None = None,
) -> None:
    """Write (or finish) the vectors at ``path``, chunk by chunk ``rows_of(model)(start, end)``, here or on workers.

    A finished file is left alone without loading the embedder.
    """
    if path.is_file():
        return
    model = embedder()
    shape = (n_rows, model.dim)
    if workers is None:
        fill_array_in_chunks(path, shape, np.float32, settings.vector_chunk, rows_of(model), desc)
    else:
        workers.fill_vectors(path, shape, settings.vector_chunk, rows_of, desc)


def _embed_rows(model: TextEmbedder, texts: list[str]) -> Callable[[int, int], np.ndarray]:
    """Rows ``start..end-1`` of the vectors of ``texts``; row 0 (``[PAD]``) stays zero."""

    def fill(start: int, end: int) -> np.ndarray:
        rows = np.zeros((end - start, model.dim), dtype=np.float32)
        first = max(start, 1)
        if first < end:
            rows[first - start :] = model.encode(texts[first:end])
        return rows

    return fill
