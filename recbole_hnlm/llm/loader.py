"""What the CF side reads: item-profile vectors and semantic negatives, aligned to RecBole's internal ids.

    cache = load_semantic_cache(config, train_data._dataset, [valid_data._dataset, test_data._dataset])
    cache.item_profile_vectors           # (n_items, dim) float32 memory map; row i is internal item id i
    found = cache.lookup(users, items)   # users, items: internal ids of training pairs (numpy or torch)
    found.neighbour_ids                  # (B, k) items nearest the positive; 0 pads
    found.generated_ids                  # (B, k) items grounded from the LLM's negative description
    found.generated_vectors              # (B, dim) that description's embedding
    found.has_generated                  # (B,) False where no usable LLM negative covers the pair

Arrays stay memory-mapped; ``lookup`` reads only the rows asked for, so a dataset with millions of
interactions never needs them all in RAM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recbole_hnlm.errors import CacheMismatchError
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

    def pair_rows(self, users, items) -> np.ndarray:
        """Row of each (user, item) training pair in the per-pair arrays; a pair outside training is refused."""
        keys = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        rows = np.searchsorted(self.pair_keys, keys).clip(max=len(self.pair_keys) - 1)
        missing = self.pair_keys[rows] != keys
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
