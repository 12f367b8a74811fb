"""Data and settings shared by the LLM-side tests: a tiny real slice of ml-100k and small smollm2 settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ml100k_slices import write_ml100k_slice
from recbole.utils import init_seed

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import load_dataset, prepare_data

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUIET = {"state": "ERROR", "show_progress": False}
TINY = "ml-100k-tiny"
# Kept small so that every smollm2 call in the tests takes seconds.
SMOLLM2 = {"llm": "smollm2", "llm_max_new_tokens": 16, "llm_batch_size": 8, "llm_max_attempts": 2}
RUN_FIELDS = ("seconds_last_run", "units_answered_last_run", "units_per_minute_last_run")


def write_tiny_ml100k(root: Path, name: str = TINY) -> Path:
    """Real ml-100k rows of items 1-20 and 8 users with 6-12 of them, with the items' and users' real features."""
    return write_ml100k_slice(root, name, max_item=20, history=(6, 12), n_users=8)


def load_split(dataset: str, **settings):
    """(config, train dataset, [valid, test] datasets) of ``dataset``, split as a training run splits it."""
    config = HNLMConfig("BPR", dataset, config_dict={**QUIET, **settings})
    init_seed(config["seed"], config["reproducibility"])  # the random split depends on it, as in a run
    train, valid, test = prepare_data(config, load_dataset(config))
    return config, train._dataset, [valid._dataset, test._dataset]


def cache_files(folder: Path) -> dict[str, bytes]:
    """Every file of a cache folder by relative path; the manifest without what differs between runs."""
    files = {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    manifest = json.loads(files.pop("manifest.json"))
    for stage in manifest["stages"].values():
        if isinstance(stage, dict):
            for field in RUN_FIELDS:
                stage.pop(field, None)
    files["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return files
