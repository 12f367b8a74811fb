"""What the CF side reads: item-profile vectors and semantic negatives, aligned to RecBole's internal ids.

    cache = load_semantic_cache(config, train_data._dataset, [valid_data._dataset, test_data._dataset])
    cache.item_profile_vectors           # (n_items, dim) float32 memory map; row i is internal item id i
    found = cache.lookup(users, items)   # users, items: internal ids of training pairs (numpy or torch)
    found.neighbour_ids                  # (B, k) items nearest the positive; 0 pads
    found.generated_ids                  # (B, k) items grounded from the LLM's negative description
    found.generated_vectors              # (B, dim) that description's embedding
    found.has_generated                  # (B,) False where no usable LLM negative covers the pair
    table = cache.negative_table("generated", k=10)  # built once: every pair's ids, the fallback applied
    batch = table.lookup(users, items)   # batch.ids (B, k), batch.served_by (B,): which source served each pair

Arrays stay memory-mapped; ``lookup`` reads only the rows asked for, so a dataset with millions of
interactions never needs them all in RAM. ``negative_table`` keeps the pair keys and k ids per training pair in RAM
(12 + 4k bytes a pair) so that a training batch costs one search and a few row reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recbole_hnlm.errors import CacheMismatchError, ConfigurationError
from recbole_hnlm.llm.backends import embedding_model_name
from recbole_hnlm.llm.cache import CacheFolder, mismatch_message, open_array
from recbole_hnlm.llm.negatives import negatives_recipe, read_recipe
from recbole_hnlm.llm.pipeline import build_semantic_cache, cache_folder_path, generator_identity
from recbole_hnlm.llm.profiles import ITEM_VECTORS, USER_VECTORS
from recbole_hnlm.llm.settings import LLMSettings
from recbole_hnlm.split_fingerprint import split_sha256_of, tokens_sha256


@dataclass(frozen=True)
class SemanticNegatives:
    """The semantic negatives of a batch of (user, positive) pairs."""

    neighbour_ids: np.ndarray
    generated_ids: np.ndarray
    generated_vectors: np.ndarray
    has_generated: np.ndarray


# The sources a pair's semantic negative can come from, in the order of ``PairNegatives.served_by``'s codes.
SERVING_SOURCES = ("generated", "vector", "neighbour")
NEGATIVE_SOURCES = ("neighbour", "generated", "vector")


@dataclass(frozen=True)
class PairNegatives:
    """The semantic negatives of a batch of training pairs after the fallback: ``ids`` (B, k) grounded item ids
    (0 pads), ``served_by`` (B,) codes into ``SERVING_SOURCES``, and for the ``vector`` source ``vectors`` (B, dim)
    with ``has_vector`` (B,) (rows without one hold zeros and use ``ids``)."""

    ids: np.ndarray
    served_by: np.ndarray
    vectors: np.ndarray | None = None
    has_vector: np.ndarray | None = None


class SemanticNegativeTable:
    """Every training pair's semantic negative ids with the fallback chain applied, built once per run.

    ``neighbour``: the items nearest the positive's profile. ``generated``: the items grounded from the LLM's negative
    description of the pair, and the neighbours where the pair has none. ``vector``: the description's embedding, and
    the neighbours where the pair has none (a pair has grounded ids exactly when it has a description, so grounding
    adds no coverage to this chain).
    """

    def __init__(self, cache: SemanticCache, source: str, k: int) -> None:
        if source not in NEGATIVE_SOURCES:
            raise ConfigurationError(
                f"hnlm_negative_source={source!r} is invalid. Valid: {', '.join(NEGATIVE_SOURCES)}. Fix: e.g. "
                "--hnlm_negative_source=neighbour."
            )
        self.cache = cache
        self.source = source
        self.keys = np.array(cache.pair_keys, dtype=np.int64)
        self.ids = np.array(cache.neighbour_ids[:, :k], dtype=np.int32)
        self.units = np.asarray(cache.pair_generated_unit, dtype=np.int64)
        covered = self.units >= 0
        self.served_by = np.full(len(self.keys), SERVING_SOURCES.index("neighbour"), dtype=np.uint8)
        if source != "neighbour":
            self.served_by[covered] = SERVING_SOURCES.index(source)
        if source == "generated" and covered.any():
            self.ids[covered] = cache.generated_ids[self.units[covered], :k]

    def lookup(self, users, items) -> PairNegatives:
        """The negatives of each (user, positive) training pair; a pair outside training is refused."""
        rows = self.cache.pair_rows(users, items, self.keys)
        served_by = self.served_by[rows]
        if self.source != "vector":
            return PairNegatives(self.ids[rows], served_by)
        units = self.units[rows]
        has_vector = units >= 0
        vectors = np.zeros((len(rows), self.cache.dim), dtype=np.float32)
        if has_vector.any():
            vectors[has_vector] = self.cache.generated_vectors[units[has_vector]]
        return PairNegatives(self.ids[rows], served_by, vectors, has_vector)


class SemanticCache:
    """A finished cache folder, read through memory maps (``load_semantic_cache`` checks it before opening)."""

    def __init__(self, folder: Path) -> None:
        self.folder = CacheFolder(folder)
        self.manifest = self.folder.read_manifest()
        path = self.folder.path
        self.n_items = self.manifest["inputs"]["n_items"]
        self.item_profile_vectors = open_array(path / ITEM_VECTORS)
        self.user_profile_vectors = open_array(path / USER_VECTORS)
        self.pair_keys = open_array(path / "negatives" / "pair_keys.npy")
        self.neighbour_ids = open_array(path / "negatives" / "neighbour_ids.npy")
        self.generated_ids = open_array(path / "negatives" / "generated_ids.npy")
        self.generated_vectors = open_array(path / "negatives" / "generated_vectors.npy")
        self.pair_generated_unit = open_array(path / "negatives" / "pair_generated_unit.npy")
        self.summary = self.manifest["stages"]["negatives"]

    @property
    def dim(self) -> int:
        """Size of the text-embedding vectors."""
        return int(self.item_profile_vectors.shape[1])

    def pair_rows(self, users, items, pair_keys: np.ndarray | None = None) -> np.ndarray:
        """Row of each (user, item) training pair in the per-pair arrays; a pair outside training is refused.

        ``pair_keys``, the cache's keys read into RAM, spares the search its memory-mapped reads.
        """
        pair_keys = self.pair_keys if pair_keys is None else pair_keys
        keys = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        rows = np.searchsorted(pair_keys, keys).clip(max=len(pair_keys) - 1)
        missing = pair_keys[rows] != keys
        if missing.any():
            raise CacheMismatchError(
                f"{int(missing.sum())} (user, item) pairs are not training pairs of cache {self.folder.path}, e.g. "
                f"internal ids {int(keys[missing][0]) // self.n_items}, {int(keys[missing][0]) % self.n_items}. "
                "Fix: look up training pairs only, from the split the cache was built for."
            )
        return rows

    def lookup(self, users, items) -> SemanticNegatives:
        """Neighbour and LLM-generated negatives of each (user, positive) training pair."""
        rows = self.pair_rows(users, items)
        units = np.asarray(self.pair_generated_unit[rows], dtype=np.int64)
        has_generated = units >= 0
        generated_ids = np.zeros((len(rows), self.generated_ids.shape[1]), dtype=np.int32)
        generated_vectors = np.zeros((len(rows), self.dim), dtype=np.float32)
        if has_generated.any():
            generated_ids[has_generated] = self.generated_ids[units[has_generated]]
            generated_vectors[has_generated] = self.generated_vectors[units[has_generated]]
        return SemanticNegatives(np.asarray(self.neighbour_ids[rows]), generated_ids, generated_vectors, has_generated)

    def negative_table(self, source: str, k: int) -> SemanticNegativeTable:
        """The first ``k`` semantic negative ids of every training pair for ``source``, the fallback applied."""
        return SemanticNegativeTable(self, source, k)


def load_semantic_cache(
    config, train_dataset, held_out_datasets: list | None = None, build: bool = True, expected_dim: int | None = None
) -> SemanticCache:
    """The cache for this config's LLM settings and this training split, built first when ``build`` and missing.

    Refused (CacheMismatchError) when the folder was made for another dataset, item ids or training split, when
    its vectors are not ``expected_dim``-d, or (without ``build``) when its negatives were built with another
    unit, budget, k or negative prompt than the config asks for.
    """
    settings = LLMSettings.from_config(config)
    generator = generator_identity(settings)
    split_sha = split_sha256_of(train_dataset)
    folder = CacheFolder(cache_folder_path(settings, config["dataset"], generator, split_sha))
    manifest = folder.read_manifest()
    wanted = negatives_recipe(settings, manifest.get("embedding"), generator["backend"] != "template")
    if build and not (manifest.get("stages", {}).get("negatives_complete") and read_recipe(folder) == wanted):
        build_semantic_cache(config, train_dataset, held_out_datasets or [])
    return open_checked(folder.path, config["dataset"], train_dataset, settings, expected_dim, split_sha)


def input_differences(manifest: dict, dataset: str, train_dataset, split_sha: str | None = None) -> list[str]:
    """What differs between the inputs a cache manifest records and ``dataset`` with this training split.

    ``split_sha`` is ``split_sha256_of(train_dataset)`` when the caller has it already.
    """
    item_tokens = np.asarray(train_dataset.field2id_token[train_dataset.iid_field])
    inputs = manifest.get("inputs", {})
    differences = []
    if manifest.get("dataset") != dataset:
        differences.append(f"dataset: cached {manifest.get('dataset')!r}, asked {dataset!r}")
    if inputs.get("item_tokens_sha256") != tokens_sha256(item_tokens):
        differences.append("item ids (RecBole's token-to-id map differs)")
    elif inputs.get("train_split_sha256") != (split_sha or split_sha256_of(train_dataset)):
        differences.append("training split (other eval_args, seed or filtering)")
    return differences


def open_checked(
    path: Path,
    dataset: str,
    train_dataset,
    settings: LLMSettings,
    expected_dim: int | None = None,
    split_sha: str | None = None,
) -> SemanticCache:
    """Open the cache at ``path`` after checking it against ``dataset``, this training split and ``settings``."""
    if not (Path(path) / "manifest.json").is_file():
        raise CacheMismatchError(
            f"No LLM cache at {path}. Fix: python -m recbole_hnlm.llm all --dataset={dataset} (with the same llm "
            "settings), or let the run build it."
        )
    folder = CacheFolder(path)
    manifest = folder.read_manifest()
    differences = input_differences(manifest, dataset, train_dataset, split_sha)
    if differences:
        raise CacheMismatchError(mismatch_message(Path(path), differences))
    folder.check_embedding(manifest, embedding_model_name(settings), expected_dim)
    uses_llm = manifest["generator"]["backend"] != "template"
    wanted = negatives_recipe(settings, manifest.get("embedding"), uses_llm)
    if not manifest["stages"].get("negatives_complete") or read_recipe(folder) != wanted:
        raise CacheMismatchError(
            f"The negatives in {path} are unfinished or were built with {read_recipe(folder)}, but this run asks for "
            f"{wanted}. Fix: python -m recbole_hnlm.llm negatives --dataset={dataset} with this run's settings (LLM "
            "answers already cached are reused), or load with build=True."
        )
    return SemanticCache(path)
