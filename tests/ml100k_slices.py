"""Tiny real slices of the bundled ml-100k for tests that run real models on a handful of users and items."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recbole_hnlm.paths import default_data_path

DEFAULT_DATA_PATH = default_data_path()


def write_ml100k_slice(root: Path, name: str, max_item: int, history: tuple[int, int], n_users: int) -> Path:
    """Items 1..``max_item`` and the first ``n_users`` users with ``history`` (min, max) of them, real features.

    Writes ``<root>/<name>/<name>.{inter,item,user}`` from the bundled ml-100k rows as they are.
    """
    source = DEFAULT_DATA_PATH / "ml-100k"
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    inter = pd.read_csv(source / "ml-100k.inter", sep="\t", dtype=str)
    inter = inter[inter["item_id:token"].astype(int) <= max_item]
    counts = inter.groupby("user_id:token").size()
    low, high = history
    users = sorted(counts[(counts >= low) & (counts <= high)].index, key=int)[:n_users]
    inter[inter["user_id:token"].isin(users)].to_csv(folder / f"{name}.inter", sep="\t", index=False)
    items = pd.read_csv(source / "ml-100k.item", sep="\t", dtype=str, keep_default_na=False)
    items[items["item_id:token"].astype(int) <= max_item].to_csv(folder / f"{name}.item", sep="\t", index=False)
    people = pd.read_csv(source / "ml-100k.user", sep="\t", dtype=str, keep_default_na=False)
    people[people["user_id:token"].isin(users)].to_csv(folder / f"{name}.user", sep="\t", index=False)
    return folder
