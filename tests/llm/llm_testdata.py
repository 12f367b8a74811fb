"""Data and settings shared by the LLM-side tests: a tiny real slice of ml-100k and small smollm2 settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
from recbole.utils import init_seed

from recbole_hnlm.config import DEFAULT_DATA_PATH, HNLMConfig
from recbole_hnlm.data.preparation import load_dataset, prepare_data

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUIET = {"state": "ERROR", "show_progress": False}
TINY = "ml-100k-tiny"
# Kept small so that every smollm2 call in the tests takes seconds.
SMOLLM2 = {"llm": "smollm2", "llm_max_new_tokens": 16, "llm_batch_size": 8, "llm_max_attempts": 2}
RUN_FIELDS = ("seconds_last_run", "units_answered_last_run", "units_per_minute_last_run")


def write_tiny_ml100k(root: Path, name: str = TINY) -> Path:
    """Real ml-100k rows of items 1-20 and 8 users with 6-12 of them, with the items' and users' real features."""
    source = DEFAULT_DATA_PATH / "ml-100k"
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    inter = pd.read_csv(source / "ml-100k.inter", sep="\t", dtype=str)
    inter = inter[inter["item_id:token"].astype(int) <= 20]
    counts = inter.groupby("user_id:token").size()
    users = sorted(counts[(counts >= 6) & (counts <= 12)].index, key=int)[:8]
    inter[inter["user_id:token"].isin(users)].to_csv(folder / f"{name}.inter", sep="\t", index=False)
    items = pd.read_csv(source / "ml-100k.item", sep="\t", dtype=str, keep_default_na=False)
    items[items["item_id:token"].astype(int) <= 20].to_csv(folder / f"{name}.item", sep="\t", index=False)
    people = pd.read_csv(source / "ml-100k.user", sep="\t", dtype=str, keep_default_na=False)
    people[people["user_id:token"].isin(users)].to_csv(folder / f"{name}.user", sep="\t", index=False)
    return folder


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
