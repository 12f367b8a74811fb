"""Stage 2: semantic hard negatives, grounded to real catalogue items, and their false-negative rate.

Two kinds, both excluding every training positive of the user (never returned, whatever the similarity):

- neighbour: for each training (user, positive) pair, the ``k`` items nearest to the positive in item-profile
  space. No generation; computed for every pair.
- generated: the LLM describes an item the user would *not* choose although it resembles their taste (per user,
  or per (user, positive) pair); the description is embedded and grounded to its ``k`` nearest items. Units are
  taken in a seeded order (users shuffled; pairs round-robin over users) up to ``llm_negative_budget`` calls.

A grounded negative that is one of the user's validation or test positives is a false hard negative: the CF
model would be pushed away from an item the user does choose. Its share is measured for both kinds, beside
what a uniformly drawn non-training item would give, and written to ``negatives/summary.json``.

Files under ``negatives/`` (row ``r`` of the pair arrays is the r-th training pair in ``pair_keys`` order)::

    pair_keys.npy            int64 (n_pairs,)      user * n_items + item, sorted
    neighbour_ids.npy        int32 (n_pairs, k)    nearest first; 0 ([PAD]) where fewer than k items qualify
    generated_units.npy      int64 (n_gen, 2)      (user, positive item or -1 for per-user units)
    generated_vectors.npy    float32 (n_gen, dim)  embedding of the LLM's description; zeros when it failed
    generated_ids.npy        int32 (n_gen, k)      grounded items; 0 when the answer failed
    pair_generated_unit.npy  int32 (n_pairs,)      generated unit covering the pair, -1 when none (or it failed)
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from functools import partial
from logging import getLogger
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from recbole_hnlm.io import strict_json, write_json_atomic, write_text_atomic
from recbole_hnlm.llm.backends import TextEmbedder, TextGenerator
from recbole_hnlm.llm.cache import CacheFolder, ShardedRecords, fill_array_in_chunks, open_array
from recbole_hnlm.llm.catalogue import Catalogue, negative_units
from recbole_hnlm.llm.generation import generate_records, record_stage
from recbole_hnlm.llm.profiles import ITEM_VECTORS, fill_vectors, user_store
from recbole_hnlm.llm.prompts import PromptTemplate, prompt_hash
from recbole_hnlm.llm.settings import LLMSettings

if TYPE_CHECKING:
    from recbole_hnlm.llm.distributed import ShardWorkers

logger = getLogger()

# Similarity scores held at once while grounding (rows x items), about 64 MB of float32.
_SCORE_BLOCK = 2**24
_ANCHOR_ITEMS = 3


def grounded_ids(
    queries: np.ndarray, users: np.ndarray, item_vectors: torch.Tensor, catalogue: Catalogue, k: int
) -> np.ndarray:
    """The ``k`` items nearest to each query vector (cosine), never ``[PAD]`` nor a training positive of its user."""
    n_items = item_vectors.shape[0]
    ids = np.zeros((len(queries), k), dtype=np.int32)
    rows_per_block = max(1, _SCORE_BLOCK // n_items)
    for start in range(0, len(queries), rows_per_block):
        block_users = users[start : start + rows_per_block]
        scores = torch.from_numpy(np.array(queries[start : start + rows_per_block], dtype=np.float32)) @ item_vectors.T
        scores[:, 0] = -torch.inf
        rows, columns = training_positions(block_users, catalogue)
        scores[torch.from_numpy(rows), torch.from_numpy(columns)] = -torch.inf
        values, top = torch.topk(scores, min(k, n_items), dim=1)
        top[torch.isinf(values)] = 0
        ids[start : start + len(block_users), : top.shape[1]] = top.numpy()
    return ids


def training_positions(users: np.ndarray, catalogue: Catalogue) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) of every training positive of ``users[row]``, for masking a score matrix."""
    starts = catalogue.train_indptr[users]
    counts = catalogue.train_indptr[users + 1] - starts
    rows = np.repeat(np.arange(len(users)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return rows, catalogue.train_items[np.repeat(starts, counts) + offsets]


def false_hard_negative_rates(ids: np.ndarray, users: np.ndarray, catalogue: Catalogue) -> dict:
    """Share of grounded ids that are validation/test positives of the row's user: at rank 1 and over all k."""
    held_out_keys = held_out_pair_keys(catalogue)
    valid = ids > 0
    keys = users[:, None].astype(np.int64) * catalogue.n_items + ids
    position = np.searchsorted(held_out_keys, keys).clip(max=max(len(held_out_keys) - 1, 0))
    hit = (held_out_keys[position] == keys) & valid if len(held_out_keys) else np.zeros_like(valid)
    first = valid[:, 0]
    return {
        "rows": int(len(ids)),
        "false_hard_negative_rate_at_1": float(hit[first, 0].mean()) if first.any() else None,
        "false_hard_negative_rate_at_k": float(hit[valid].mean()) if valid.any() else None,
        "distinct_items_at_1": int(len(np.unique(ids[first, 0]))),
    }


def held_out_pair_keys(catalogue: Catalogue) -> np.ndarray:
    """Every validation/test (user, item) as ``user * n_items + item``, sorted."""
    users = np.repeat(np.arange(catalogue.n_users, dtype=np.int64), np.diff(catalogue.held_out_indptr))
    return np.unique(users * catalogue.n_items + catalogue.held_out_items)


def uniform_rate(users: np.ndarray, catalogue: Catalogue) -> float | None:
    """Expected false-hard-negative share of a uniformly drawn non-training item, averaged over ``users`` rows."""
    if not len(users):
        return None
    held_out = np.diff(catalogue.held_out_indptr)[users]
    candidates = catalogue.n_items - 1 - np.diff(catalogue.train_indptr)[users]
    return float(np.mean(held_out / np.maximum(candidates, 1)))


def write_neighbour_negatives(
    out: Path, catalogue: Catalogue, keys: np.ndarray, item_vectors: torch.Tensor, k: int, chunk: int
) -> None:
    """``pair_keys.npy`` (``keys``: ``catalogue.train_pair_keys()``) and ``neighbour_ids.npy`` (the ``k`` items nearest
    each pair's positive in ``item_vectors``, never the user's training positives) in ``out``, chunk by chunk."""
    pair_users = keys // catalogue.n_items
    fill_array_in_chunks(out / "pair_keys.npy", keys.shape, np.int64, chunk, lambda s, e: keys[s:e], "pair keys")
    fill_array_in_chunks(
        out / "neighbour_ids.npy",
        (len(keys), k),
        np.int32,
        chunk,
        lambda s, e: grounded_ids(
            item_vectors[keys[s:e] % catalogue.n_items].numpy(), pair_users[s:e], item_vectors, catalogue, k
        ),
        "neighbour negatives",
    )


def build_negatives(
    folder: CacheFolder,
    manifest: dict,
    catalogue: Catalogue,
    settings: LLMSettings,
    prompts: dict[str, PromptTemplate],
    generator: Callable[[], TextGenerator | None],
    embedder: Callable[[], TextEmbedder],
    uses_llm: bool,
    workers: ShardWorkers | None = None,
) -> dict:
    """Build (or finish) both kinds of negatives and the false-hard-negative summary; return the summary.

    With ``workers`` the LLM calls and the embedding of their answers run on Ray workers; grounding stays here.
    """
    out = folder.path / "negatives"
    recipe = negatives_recipe(settings, manifest["embedding"], uses_llm)
    if read_recipe(folder) != recipe:
        _start_fresh(folder, manifest, recipe)
    k, n_items = settings.negative_k, catalogue.n_items
    item_vectors = torch.from_numpy(np.array(open_array(folder.path / ITEM_VECTORS)))
    keys = catalogue.train_pair_keys()
    pair_users = keys // n_items
    chunk = settings.vector_chunk
    write_neighbour_negatives(out, catalogue, keys, item_vectors, k, chunk)

    unit_users, unit_items = negative_units(catalogue, settings.negative_unit, settings.seed)
    n_generated = min(recipe["budget"], len(unit_users))
    user_records = {record["id"]: record for record in user_store(folder, settings).read(catalogue.n_users - 1)}

    def prompt_of(unit: int):
        user, item = int(unit_users[unit]), int(unit_items[unit])
        anchor = (
            catalogue.item_facts[item]
            if item >= 0
            else "; ".join(catalogue.item_labels[i] for i in catalogue.recent_history(user, _ANCHOR_ITEMS)[::-1])
        )
        return prompts["negative"].render(
            user_profile=_profile_for_prompt(user_records[user], catalogue, user), anchor=anchor
        )

    started = time.perf_counter()
    generated_folder = f"generated-{settings.negative_unit}-{recipe['negative_prompt_hash']}"
    store = ShardedRecords(out / generated_folder, settings.shard_size)
    counts = generate_records(
        store,
        n_generated,
        lambda unit: {"unit": unit, "user": int(unit_users[unit]), "item": int(unit_items[unit])},
        prompt_of,
        "negative",
        lambda unit, answer: f"{answer.get('title', '')}. {answer['description']}".lstrip(". ") if answer else "",
        generator,
        settings,
        "negative descriptions",
        workers,
    )
    record_stage(manifest["stages"], "negative_generation", counts, time.perf_counter() - started)
    folder.write_manifest(manifest)
    records = store.read(n_generated)
    ok = np.array([record["status"] == "ok" for record in records], dtype=bool)
    units = np.stack([unit_users[:n_generated], unit_items[:n_generated]], axis=1).astype(np.int64)
    fill_array_in_chunks(out / "generated_units.npy", units.shape, np.int64, chunk, lambda s, e: units[s:e], "units")
    if n_generated:
        texts = [record["text"] for record in records]
        rows_of = partial(_embed_usable_rows, texts=texts, ok=ok)
        path = out / "generated_vectors.npy"
        fill_vectors(path, n_generated, embedder, rows_of, settings, "negative vectors", workers)
    else:
        dim = manifest["embedding"]["dim"]
        fill_array_in_chunks(
            out / "generated_vectors.npy",
            (0, dim),
            np.float32,
            chunk,
            lambda s, e: np.zeros((e - s, dim), dtype=np.float32),
            "negative vectors",
        )
    vectors = open_array(out / "generated_vectors.npy")

    def ground(start: int, end: int) -> np.ndarray:
        ids = grounded_ids(vectors[start:end], units[start:end, 0], item_vectors, catalogue, k)
        ids[~ok[start:end]] = 0
        return ids

    fill_array_in_chunks(out / "generated_ids.npy", (n_generated, k), np.int32, chunk, ground, "grounding")
    unit_of_pair = _unit_of_pair(keys, unit_users, unit_items, n_generated, ok, catalogue, settings.negative_unit)
    fill_array_in_chunks(
        out / "pair_generated_unit.npy", keys.shape, np.int32, chunk, lambda s, e: unit_of_pair[s:e], "pair units"
    )

    summary = _summary(out, keys, pair_users, units, ok, unit_of_pair, catalogue, recipe, uses_llm, len(unit_users))
    write_json_atomic(out / "summary.json", summary)
    manifest["stages"]["negatives"] = summary
    manifest["stages"]["negatives_complete"] = True
    folder.write_manifest(manifest)
    return summary


def _embed_usable_rows(model: TextEmbedder, texts: list[str], ok: np.ndarray) -> Callable[[int, int], np.ndarray]:
    """Rows ``start..end-1`` of the vectors of the LLM's descriptions; zeros where the answer failed."""

    def fill(start: int, end: int) -> np.ndarray:
        rows = np.zeros((end - start, model.dim), dtype=np.float32)
        chosen = np.flatnonzero(ok[start:end])
        rows[chosen] = model.encode([texts[start + row] for row in chosen])
        return rows

    return fill


def _profile_for_prompt(record: dict, catalogue: Catalogue, user: int) -> str:
    """The user's profile as the negative prompt shows it: the LLM's answer, else demographics and categories."""
    answer = record.get("answer")
    if not answer:
        return catalogue.user_facts(user, 0)
    text = answer["summary"]
    if answer.get("likes"):
        text += f" Likes: {', '.join(answer['likes'])}."
    if answer.get("dislikes"):
        text += f" Dislikes: {', '.join(answer['dislikes'])}."
    return text


def _unit_of_pair(
    keys: np.ndarray,
    unit_users: np.ndarray,
    unit_items: np.ndarray,
    n_generated: int,
    ok: np.ndarray,
    catalogue: Catalogue,
    unit: str,
) -> np.ndarray:
    """For each training pair, the generated unit that covers it (and whose answer was usable), else -1."""
    unit_index = np.full(len(keys), -1, dtype=np.int64)
    if unit == "user":
        of_user = np.full(catalogue.n_users, -1, dtype=np.int64)
        of_user[unit_users] = np.arange(len(unit_users))
        unit_index = of_user[keys // catalogue.n_items]
    else:
        unit_keys = unit_users * catalogue.n_items + unit_items
        unit_index[np.searchsorted(keys, unit_keys)] = np.arange(len(unit_keys))
    covered = (unit_index >= 0) & (unit_index < n_generated)
    covered[covered] &= ok[unit_index[covered]]
    return np.where(covered, unit_index, -1).astype(np.int32)


def _summary(out, keys, pair_users, units, ok, unit_of_pair, catalogue, recipe, uses_llm, n_units_total) -> dict:
    """What the stage made and its false-hard-negative rates, beside the uniform baseline."""
    neighbour = false_hard_negative_rates(np.asarray(open_array(out / "neighbour_ids.npy")), pair_users, catalogue)
    summary = {
        **{key: recipe[key] for key in ("unit", "budget", "k")},
        "pairs": int(len(keys)),
        "held_out_pairs": int(len(catalogue.held_out_items)),
        "uniform": {
            "false_hard_negative_rate_over_pairs": uniform_rate(pair_users, catalogue),
            "note": "expected share for a uniformly drawn non-training item",
        },
        "neighbour": neighbour,
        "generated": None,
    }
    if uses_llm:
        generated_ids = np.asarray(open_array(out / "generated_ids.npy"))
        covered_users = np.unique(units[ok, 0]) if len(units) else np.zeros(0, dtype=np.int64)
        summary["generated"] = {
            "units_total": int(n_units_total),
            "units_in_budget": int(len(units)),
            "ok": int(ok.sum()),
            "failed": int((~ok).sum()),
            "pairs_covered": int((unit_of_pair >= 0).sum()),
            "users_covered": int(len(covered_users)),
            "users_total": int((np.diff(catalogue.train_indptr) > 0).sum()),
            **false_hard_negative_rates(generated_ids[ok], units[ok, 0], catalogue),
            "uniform_rate_same_units": uniform_rate(units[ok, 0], catalogue),
        }
    return summary


def negatives_recipe(settings: LLMSettings, embedding: dict, uses_llm: bool) -> dict:
    """The settings the assembled negatives depend on (the LLM's shard files depend only on prompt and unit)."""
    return {
        "negative_prompt_hash": prompt_hash(settings.prompt_folder, ("negative",)) if uses_llm else None,
        "unit": settings.negative_unit,
        "budget": settings.negative_budget if uses_llm else 0,
        "k": settings.negative_k,
        "embedding": embedding,
    }


def read_recipe(folder: CacheFolder) -> dict | None:
    """The recipe the negatives in ``folder`` were (or are being) built with, or None."""
    path = folder.path / "negatives" / "recipe.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _start_fresh(folder: CacheFolder, manifest: dict, recipe: dict) -> None:
    """Drop the assembled arrays of another recipe (the LLM's shard files are kept) and record the new one."""
    out = folder.path / "negatives"
    manifest["stages"]["negatives_complete"] = False
    folder.write_manifest(manifest)
    for path in [*out.glob("*.npy"), *out.glob("*.progress.json"), out / "summary.json"]:
        path.unlink(missing_ok=True)
    for chunks in out.glob("*.chunks"):
        shutil.rmtree(chunks)
    write_text_atomic(out / "recipe.json", strict_json(recipe, sort_keys=True))
    logger.info(f"negatives: building {out} for {recipe}")
