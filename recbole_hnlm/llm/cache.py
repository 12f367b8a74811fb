"""The cache folder of one (dataset, backend, model, prompts): manifest, shard files and memory-mapped vectors.

Layout of ``<llm_cache_dir>/<dataset>/<backend>-<model>-<profile prompts' hash>/split-<training split hash>/``
(``template-rules-v1`` for the template backend; one folder per training split, since RecBole's random splits
follow the seed, and a new split's folder copies the item profiles of a sibling made with the same settings)::

    manifest.json                what made the cache, from what input, with which settings; stage summaries
    item_tokens.txt              RecBole item token of each internal id (row i of every item array is id i)
    user_tokens.txt              the same for users
    profiles/items/shard-<first>-<end>.jsonl   one JSON record per item: status, answer, text embedded
    profiles/users/shard-<first>-<end>.jsonl   the same per user
    vectors/item_profile_vectors.npy           float32 (n_items, dim), unit length, row 0 ([PAD]) zeros
    vectors/user_profile_vectors.npy           float32 (n_users, dim)
    vectors/<array>.chunks/rows-<first>-<end>.npy   rows embedded by Ray workers, until the array is assembled
    negatives/generated-<unit>-<negative prompt hash>/shard-*.jsonl   LLM-written negatives, one per unit
    negatives/recipe.json        unit, budget, k, negative prompt hash and embedding the arrays below were built with
    negatives/*.npy, negatives/summary.json    grounded ids, vectors and false-hard-negative rates (see negatives.py)

Every file is written to a temporary name and renamed into place, so a reader or a resumed run never sees a
half-written file. Work is saved shard by shard (text) and chunk by chunk (vectors); a rerun skips what exists.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from logging import getLogger
from pathlib import Path

import numpy as np
from tqdm import tqdm

from recbole_hnlm.errors import CacheMismatchError
from recbole_hnlm.io import atomic_binary_stream, write_json_atomic, write_jsonl_atomic

MANIFEST = "manifest.json"
CACHE_FORMAT = 1
# Manifest sections that must match for a cache to be reused; any difference is refused, naming the keys.
IDENTITY_SECTIONS = ("format", "dataset", "generator", "prompts", "inputs", "generation")
# Sub-folders where the stages save their work; a folder with none of it holds no answers.
WORK_FOLDERS = ("profiles", "vectors", "negatives")
# Written from the catalogue before any stage runs.
TOKEN_FILES = ("item_tokens.txt", "user_tokens.txt")
_SHARD = re.compile(r"shard-(\d+)-(\d+)\.jsonl$")

logger = getLogger()


def safe_name(text: str) -> str:
    """``text`` with every character outside letters, digits, '.', '_' and '-' replaced, for folder names."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file."""
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


class ShardedRecords:
    """Records of units ``0..n-1`` saved in shard files of ``shard_size`` units, each written whole."""

    def __init__(self, folder: Path, shard_size: int) -> None:
        self.folder = folder
        self.shard_size = shard_size

    def shard_path(self, first: int, end: int) -> Path:
        """The file of units ``first..end-1``."""
        return self.folder / f"shard-{first:09d}-{end:09d}.jsonl"

    def ranges(self, n_units: int) -> list[tuple[int, int]]:
        """The (first, end) unit range of each shard covering ``n_units`` units."""
        return [(first, min(first + self.shard_size, n_units)) for first in range(0, n_units, self.shard_size)]

    def saved(self) -> dict[int, dict]:
        """Every saved record by unit, from all shard files present (also those of an earlier, smaller budget)."""
        records: dict[int, dict] = {}
        for path in sorted(self.folder.glob("shard-*.jsonl")):
            if _SHARD.search(path.name):
                records.update((record["unit"], record) for record in read_jsonl(path))
        return records

    def missing_ranges(self, n_units: int) -> list[tuple[int, int]]:
        """The shard ranges among the first ``n_units`` units that have no file yet."""
        return [(first, end) for first, end in self.ranges(n_units) if not self.shard_path(first, end).is_file()]

    def read(self, n_units: int) -> list[dict]:
        """The records of units ``0..n_units-1`` in order; every one must have been saved."""
        saved = self.saved()
        missing = [unit for unit in range(n_units) if unit not in saved]
        if missing:
            raise CacheMismatchError(f"{self.folder} lacks records of {len(missing)} units (e.g. {missing[:3]}).")
        return [saved[unit] for unit in range(n_units)]

    def write(self, first: int, end: int, records: list[dict]) -> None:
        """Save the records of units ``first..end-1`` as one shard."""
        write_jsonl_atomic(self.shard_path(first, end), records)


def fill_array_in_chunks(
    path: Path, shape: tuple[int, ...], dtype, chunk_rows: int, fill: Callable[[int, int], np.ndarray], desc: str
) -> None:
    """Write the .npy at ``path`` chunk of rows by chunk, resuming an interrupted fill; the file appears whole.

    Rows go into ``<name>.partial.npy`` (a memory map, so the array never has to fit in RAM); a progress file
    lists the finished chunks and is replaced after each one; the finished array is renamed to ``path``.
    """
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.npy")
    progress = path.with_name(path.stem + ".progress.json")
    done = finished_chunks(path, shape, dtype)
    if done:
        array = np.lib.format.open_memmap(partial, mode="r+")
    else:
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=shape)
    starts = range(0, shape[0], chunk_rows)
    for chunk, start in enumerate(tqdm(starts, desc=desc, unit="chunk", disable=len(starts) < 2)):
        if chunk in done:
            continue
        end = min(start + chunk_rows, shape[0])
        array[start:end] = fill(start, end)
        array.flush()
        done.add(chunk)
        write_json_atomic(progress, {"shape": list(shape), "dtype": np.dtype(dtype).str, "chunks": sorted(done)})
    del array
    os.replace(partial, path)
    progress.unlink(missing_ok=True)


def finished_chunks(path: Path, shape: tuple[int, ...], dtype) -> set[int]:
    """The chunks that an interrupted ``fill_array_in_chunks`` of this array already wrote."""
    partial = path.with_name(path.stem + ".partial.npy")
    progress = path.with_name(path.stem + ".progress.json")
    if not (partial.is_file() and progress.is_file()):
        return set()
    recorded = json.loads(progress.read_text(encoding="utf-8"))
    if recorded.get("shape") == list(shape) and recorded.get("dtype") == np.dtype(dtype).str:
        return set(recorded["chunks"])
    return set()


def write_array_atomic(path: Path, array: np.ndarray) -> None:
    """Save ``array`` as a .npy file under a temporary name and rename it into place."""
    with atomic_binary_stream(path) as stream:
        np.save(stream, array)


def open_array(path: Path) -> np.ndarray:
    """A read-only memory map of a finished .npy file."""
    return np.load(path, mmap_mode="r")


class CacheFolder:
    """One cache folder and its manifest."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        """Where the manifest lives."""
        return self.path / MANIFEST

    def read_manifest(self) -> dict:
        """The manifest, or an empty dict for a new folder."""
        if not self.manifest_path.is_file():
            return {}
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def write_manifest(self, manifest: dict) -> None:
        """Replace the manifest atomically."""
        write_json_atomic(self.manifest_path, manifest)

    def claim(self, identity: dict) -> dict:
        """Open the folder for ``identity`` (new or matching); refuse a folder made from other inputs or settings.

        A folder that holds no answers yet (a first try that failed, e.g. against a wrong endpoint) claims nothing:
        its manifest is replaced by one for ``identity``.
        """
        manifest = self.read_manifest()
        differences = identity_differences(manifest, identity) if manifest else []
        if differences and self.holds_answers():
            raise CacheMismatchError(mismatch_message(self.path, differences))
        if differences:
            logger.warning(
                f"cache folder {self.path} holds no answers yet: its manifest is replaced ({differences[0]})"
            )
            for name in TOKEN_FILES:
                (self.path / name).unlink(missing_ok=True)
        if not manifest or differences:
            manifest = {**identity, "stages": {}}
            self.write_manifest(manifest)
        return manifest

    def holds_answers(self) -> bool:
        """Whether any stage saved work here: profile or negative shards, vectors."""
        return any(path.is_file() for part in WORK_FOLDERS for path in (self.path / part).rglob("*"))

    def check_embedding(self, manifest: dict, model: str, dim: int | None = None) -> None:
        """Refuse vectors made by another embedding model than ``model``, or (when given) of another size."""
        recorded = manifest.get("embedding")
        if not recorded or (recorded["model"] == model and dim in (None, recorded["dim"])):
            return
        asked = f"{model!r}" + (f" ({dim}-d)" if dim is not None else "")
        raise CacheMismatchError(
            f"Cache folder {self.path} holds vectors from embedding model {recorded['model']!r} "
            f"({recorded['dim']}-d), but this run asks for {asked} (llm_embedding_model). Fix: delete "
            f"{self.path / 'vectors'} and {self.path / 'negatives'} to re-embed the cached profiles with the new "
            "model (the LLM's text is kept), set llm_embedding_model back, or use another llm_cache_dir."
        )


def identity_differences(manifest: dict, identity: dict) -> list[str]:
    """Every identity key whose value in ``manifest`` differs from the one in ``identity``, as text."""
    differences = []
    for section in IDENTITY_SECTIONS:
        recorded, wanted = manifest.get(section), identity.get(section)
        if isinstance(recorded, dict) and isinstance(wanted, dict):
            for key in sorted(set(recorded) | set(wanted)):
                if recorded.get(key) != wanted.get(key):
                    differences.append(f"{section}.{key}: cached {recorded.get(key)!r}, asked {wanted.get(key)!r}")
        elif recorded != wanted:
            differences.append(f"{section}: cached {recorded!r}, asked {wanted!r}")
    return differences


def mismatch_message(path: Path, differences: list[str]) -> str:
    """The message of a refused cache folder: what differs and how to fix it."""
    listed = "; ".join(differences[:6]) + ("; ..." if len(differences) > 6 else "")
    return (
        f"Cache folder {path} was made from other inputs or settings than asked for ({listed}). Fix: run with the "
        "settings it was made with, point llm_cache_dir at another folder, or delete that folder to rebuild it."
    )
