"""Convert pre-split text files and Amazon JSON into RecBole atomic files with a fixed train/valid/test split.

Each importer writes one folder ``<out_dir>/<name>/`` holding ``<name>.{train,valid,test}.inter``, a
``<name>.yaml`` with the settings under which RecBole reads those three files as they are (no re-split, no
filtering), and a ``<name>.manifest.json`` recording the importer, the sources' sha256 and the settings. The
output depends only on the inputs and the settings, so re-running an import reproduces the files byte for byte.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from recbole_hnlm.data.reader import load_json_object, read_atomic, require_file, text_lines, token_problem
from recbole_hnlm.errors import ConfigurationError, DataFormatError
from recbole_hnlm.io import atomic_write, strict_json, write_text_atomic

# Bump when the files written for the same inputs and settings change, so that old outputs can be told apart.
IMPORTER_VERSION = 1

REPO_ROOT = Path(__file__).resolve().parents[2]

CARVES = ("latest", "random")
SPLITS = ("train", "valid", "test")
INTER_HEADER = ("user_id:token", "item_id:token")
ITEM_TEXT_FIELDS = ("title", "brand", "categories", "description")
ITEM_HEADER = ("item_id:token", *(f"{field}:token_seq" for field in ITEM_TEXT_FIELDS))

logger = logging.getLogger()

Sequences = dict[str, list[str]]


def _display_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it, so manifests do not depend on the checkout."""
    resolved = path.resolve()
    if resolved.is_relative_to(REPO_ROOT):
        return resolved.relative_to(REPO_ROOT).as_posix()
    return resolved.as_posix()


def _sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_settings(carve: str, ratios: dict[str, float]) -> None:
    """Refuse an unknown carve or a ratio outside [0, 1)."""
    if carve not in CARVES:
        raise ConfigurationError(f"Unknown carve '{carve}'. Valid carves: {', '.join(CARVES)}.")
    for option, ratio in ratios.items():
        if not 0.0 <= ratio < 1.0:
            raise ConfigurationError(f"{option} must be in [0, 1), got {ratio}.")


def _parse_presplit(path: Path, allow_empty_users: bool) -> tuple[Sequences, dict[str, int], dict[str, int]]:
    """Parse a ``user item item ...`` file into per-user item lists, each user's 1-based line, and what was dropped.

    Blank lines at the end of the file and repeated items within a line are dropped and counted.
    """
    require_file(path, "Pre-split")
    lines = text_lines(path)
    trailing_blank = 0
    while lines and not lines[-1].strip():
        lines.pop()
        trailing_blank += 1
    sequences: Sequences = {}
    line_of_user: dict[str, int] = {}
    duplicates = 0
    for line_number, line in enumerate(lines, start=1):
        where = f"{path}: line {line_number}"
        fields = line.split()
        if not fields:
            raise DataFormatError(f"{where} is blank; remove it (every line must be 'user item item ...').")
        for token in fields:
            separator = next((char for char in ",;|" if char in token), "")
            if separator:
                raise DataFormatError(
                    f"{where}: id '{token}' holds '{separator}'; pre-split files separate ids by spaces. "
                    f"Fix: replace each '{separator}' between ids with a space."
                )
            problem = token_problem(token)
            if problem:
                raise DataFormatError(f"{where}: id '{token}' {problem}; rename it to a plain token.")
        user, items = fields[0], fields[1:]
        if user in sequences:
            raise DataFormatError(
                f"{where} repeats user '{user}' of line {line_of_user[user]}; "
                "merge the two lines into one, keeping the items in order."
            )
        if not items and not allow_empty_users:
            raise DataFormatError(
                f"{where}: user '{user}' has no items; remove the line or add the user's items after the id."
            )
        unique_items = list(dict.fromkeys(items))
        duplicates += len(items) - len(unique_items)
        sequences[user] = unique_items
        line_of_user[user] = line_number
    if not sequences:
        raise DataFormatError(f"{path} is empty; it needs one 'user item item ...' line per user.")
    if duplicates:
        logger.warning(f"{path}: dropped {duplicates} repeated (user, item) pairs within lines, keeping the first.")
    if trailing_blank:
        logger.info(f"{path}: skipped {trailing_blank} blank lines at the end.")
    return sequences, line_of_user, {"repeated_pairs": duplicates, "trailing_blank_lines": trailing_blank}


def read_presplit(path: Path | str) -> Sequences:
    """Read a ``user item item ...`` file into ``{user: [items in file order]}``, validating it."""
    sequences, _, _ = _parse_presplit(Path(path), allow_empty_users=True)
    return sequences


def _carve_count(length: int, ratio: float, keep: int) -> int:
    """How many of a user's ``length`` items to carve: ``round(ratio * length)``, at least 1, leaving ``keep``.

    Users with at most ``keep`` items, and every user when ``ratio`` is 0, give nothing. ``round`` is Python's,
    so exact halves go to the even side.
    """
    if length <= keep or ratio == 0:
        return 0
    return min(max(round(ratio * length), 1), length - keep)


def _carve(
    sequences: Sequences,
    labels: dict[str, list[str]],
    split: str,
    ratio: float,
    keep: int,
    carve: str,
    rng: np.random.Generator,
) -> None:
    """Relabel ``_carve_count`` of each user's positions still labelled train as ``split``, in place."""
    for user in sequences:
        positions = [position for position, label in enumerate(labels[user]) if label == "train"]
        count = _carve_count(len(positions), ratio, keep)
        if count == 0:
            continue
        if carve == "latest":
            chosen = positions[-count:]
        else:
            chosen = [positions[index] for index in rng.choice(len(positions), size=count, replace=False)]
        for position in chosen:
            labels[user][position] = split


def _keep_every_item_in_train(sequences: Sequences, labels: dict[str, list[str]], carve: str) -> int:
    """Return carved rows to train until every item has a train row; return how many rows moved.

    A model learns nothing about an item that occurs only in validation or test (the plugin's loader refuses
    such held-out ids), yet a carve can take an item's last train rows. For each such item, in order of first
    appearance, the occurrence that is cheapest to return goes back to train, the first in file order on a tie.
    Under the latest carve the user's held-out rows before it go back too, so that every user's held-out rows
    stay their latest ones and train + valid + test still concatenate to the source sequence.
    """
    train_rows = Counter(
        item
        for user, items in sequences.items()
        for item, label in zip(items, labels[user], strict=True)
        if label == "train"
    )
    occurrences: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for user, items in sequences.items():
        for position, item in enumerate(items):
            occurrences[item].append((user, position))

    def held_out_up_to(place: tuple[str, int]) -> list[int]:
        user, position = place
        span = range(position + 1) if carve == "latest" else (position,)
        return [index for index in span if labels[user][index] != "train"]

    moved = 0
    for item, places in occurrences.items():
        if train_rows[item]:
            continue
        user, position = min(places, key=lambda place: len(held_out_up_to(place)))
        for index in held_out_up_to((user, position)):
            labels[user][index] = "train"
            train_rows[sequences[user][index]] += 1
            moved += 1
    return moved


def _split_by_labels(sequences: Sequences, labels: dict[str, list[str]]) -> dict[str, Sequences]:
    """Per split, each user's items that carry its label, in the original order; users without any are left out."""
    splits: dict[str, Sequences] = {split: {} for split in SPLITS}
    for user, items in sequences.items():
        for item, label in zip(items, labels[user], strict=True):
            splits[label].setdefault(user, []).append(item)
    return splits


def _carve_splits(
    sequences: Sequences, carves: list[tuple[str, float, int]], carve: str, seed: int, source: Path
) -> tuple[dict[str, Sequences], int]:
    """Carve ``(split, ratio, keep)`` in turn from each user's train rows, then keep every item in train.

    Returns the splits and the number of carved rows returned to train.
    """
    labels = {user: ["train"] * len(items) for user, items in sequences.items()}
    rng = np.random.default_rng(seed)
    for split, ratio, keep in carves:
        _carve(sequences, labels, split, ratio, keep, carve, rng)
    moved = _keep_every_item_in_train(sequences, labels, carve)
    if moved:
        logger.info(f"{source}: returned {moved} carved rows to train so that every item keeps a train row.")
    return _split_by_labels(sequences, labels), moved


def _write_tsv(path: Path, header: Iterable[str], rows: Iterable[Iterable[str]]) -> None:
    """Write a tab-separated atomic file; fields holding a quote are quoted so pandas reads them back exactly."""

    def write(handle) -> None:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(header)
        writer.writerows(rows)

    atomic_write(path, write)


def _write_inter(path: Path, sequences: Sequences) -> int:
    """Write one ``.inter`` file, one row per (user, item) in order; return the row count."""
    rows = [(user, item) for user, items in sequences.items() for item in items]
    _write_tsv(path, INTER_HEADER, rows)
    return len(rows)


def _dataset_yaml(name: str, has_item_file: bool, dropped: dict[str, int]) -> str:
    """The RecBole settings that read the three ``.inter`` files of ``name`` as the exact split."""
    dropped_note = (
        "# Left out of the sources on import (see the manifest's counts): "
        + ", ".join(f"{key} {value}" for key, value in dropped.items())
        + ".\n"
        if dropped
        else ""
    )
    item_note = (
        f"# {name}.item holds item text for the semantic side; RecBole does not load it because load_col names\n"
        "# only the inter columns. Add `item: [item_id, title, ...]` to load_col to use it as features.\n"
        if has_item_file
        else ""
    )
    return (
        f"# Written by recbole_hnlm.data.importers (version {IMPORTER_VERSION}); see {name}.manifest.json.\n"
        f"# RecBole reads {name}.train/.valid/.test.inter as the train, valid and test sets as they are.\n"
        f"{dropped_note}"
        "USER_ID_FIELD: user_id\n"
        "ITEM_ID_FIELD: item_id\n"
        "load_col:\n"
        "  inter: [user_id, item_id]\n"
        f"{item_note}"
        "# With benchmark_filename RecBole concatenates the files in this order and cuts them back apart;\n"
        "# eval_args.split and eval_args.order are then ignored.\n"
        "benchmark_filename: [train, valid, test]\n"
        "# RecBole 1.2.1 skips its filters for benchmark files; they are switched off here as well so that no\n"
        "# inherited default (such as a k-core interval) can drop rows should that change.\n"
        "rm_dup_inter: ~\n"
        "val_interval: ~\n"
        "filter_inter_by_user_or_item: False\n"
        "user_inter_num_interval: ~\n"
        "item_inter_num_interval: ~\n"
        "threshold: ~\n"
    )


def _write_outputs(
    out_dir: Path,
    name: str,
    splits: dict[str, Sequences],
    returned_to_train: int,
    manifest: dict[str, object],
    has_item_file: bool,
    dropped: dict[str, int] | None = None,
) -> None:
    """Write the three ``.inter`` files, the yaml, and the manifest completed with the counts.

    ``dropped`` counts source rows left out on purpose; its non-zero entries join the counts and the yaml's
    comments (zeros are left out, so that a source with nothing to drop gives the same files as before).
    """
    dropped = {key: value for key, value in (dropped or {}).items() if value}
    counts = {
        "users": len({user for sequences in splits.values() for user in sequences}),
        "items": len({item for sequences in splits.values() for items in sequences.values() for item in items}),
    }
    for split in SPLITS:
        counts[split] = _write_inter(out_dir / f"{name}.{split}.inter", splits[split])
    counts["returned_to_train"] = returned_to_train
    counts.update(dropped)
    write_text_atomic(out_dir / f"{name}.yaml", _dataset_yaml(name, has_item_file, dropped))
    manifest["counts"] = counts
    write_text_atomic(out_dir / f"{name}.manifest.json", strict_json(manifest) + "\n")
    logger.info(f"Imported {name} into {out_dir}: {counts}")


def _manifest(importer: str, name: str, sources: dict[str, Path], settings: dict[str, object]) -> dict[str, object]:
    """The manifest's fixed part: no output paths or times, so that a re-import reproduces it byte for byte."""
    return {
        "importer": f"recbole_hnlm.data.importers.{importer}",
        "importer_version": IMPORTER_VERSION,
        "dataset": name,
        "sources": {role: {"path": _display_path(path), "sha256": _sha256(path)} for role, path in sources.items()},
        "settings": settings,
    }


def _warn_train_test_overlap(train: Sequences, test: Sequences, source: Path) -> None:
    """Log (user, item) pairs in both train and test: RecBole ranks them as test positives already trained on."""
    overlap = sum(len(set(train.get(user, ())) & set(items)) for user, items in test.items())
    if overlap:
        logger.warning(f"{source}: {overlap} test (user, item) pairs also occur in train; they inflate test metrics.")


def import_presplit(
    train_path: Path | str,
    test_path: Path | str,
    name: str,
    out_dir: Path | str,
    valid_ratio: float = 0.1,
    carve: str = "latest",
    seed: int = 2020,
    drop_unseen_items: bool = False,
) -> Path:
    """Import a pre-split ``train.txt``/``test.txt`` pair, carving validation out of train; return the folder.

    ``carve="latest"`` is the default because the DENS splits are temporal: train holds each user's items before
    a cut-off date in time order and test the later ones, so a user's last train items are the validation that
    resembles the test. A random carve selects epochs on a different task; on beauty-dens it hides DNS's gain
    over uniform sampling (see shared/data/README.md). Each user with ``n >= 2`` train items gives
    ``round(valid_ratio * n)`` of them, at least one, and keeps at least one; ``carve="random"`` draws them with
    ``numpy.random.default_rng(seed)``. Rows that would leave an item without any train row stay in train
    (see ``_keep_every_item_in_train``). test.txt is written as it is, except that ``drop_unseen_items`` drops
    its rows of items that never occur in train (such as 29 rows of 26 items in the AHNS ml-1m split), counted
    in the manifest and the yaml, instead of refusing them.
    """
    _check_settings(carve, {"valid_ratio": valid_ratio})
    train_path, test_path = Path(train_path), Path(test_path)
    train, _, train_dropped = _parse_presplit(train_path, allow_empty_users=False)
    test, test_lines, test_dropped = _parse_presplit(test_path, allow_empty_users=True)
    train_items = {item for items in train.values() for item in items}
    unseen_rows, unseen_items = _drop_unseen_items(test, train_items) if drop_unseen_items else (0, 0)
    if unseen_rows:
        logger.warning(
            f"{test_path}: dropped {unseen_rows} test rows of {unseen_items} items that never occur in {train_path}."
        )
    for user, items in test.items():
        where = f"{test_path}: line {test_lines[user]}"
        if user not in train:
            raise DataFormatError(
                f"{where}: user '{user}' does not occur in {train_path}; RecBole cannot rank for a user without "
                "training data. Remove the line or add the user's train items."
            )
        unseen = [item for item in items if item not in train_items]
        if unseen:
            raise DataFormatError(
                f"{where}: item '{unseen[0]}' of user '{user}' never occurs in {train_path}; a model cannot learn "
                "an item it never trains on. Fix: remove the item from the test file or fix its id, or pass "
                "--drop_unseen_items (drop_unseen_items=True) to drop such rows and count them."
            )
    users_without_test = sum(1 for items in test.values() if not items)
    if users_without_test:
        logger.info(f"{test_path}: {users_without_test} lines name a user without items; they add no test rows.")
    _warn_train_test_overlap(train, test, test_path)

    splits, returned = _carve_splits(train, [("valid", valid_ratio, 1)], carve, seed, train_path)
    splits["test"] = {user: items for user, items in test.items() if items}
    target = Path(out_dir) / name
    target.mkdir(parents=True, exist_ok=True)
    settings: dict[str, object] = {"carve": carve, "valid_ratio": valid_ratio, "seed": seed}
    if drop_unseen_items:  # only when set, so that the manifests of earlier imports stay byte for byte the same
        settings["drop_unseen_items"] = True
    manifest = _manifest("import_presplit", name, {"train": train_path, "test": test_path}, settings)
    dropped = {
        "dropped_train_repeated_pairs": train_dropped["repeated_pairs"],
        "dropped_test_repeated_pairs": test_dropped["repeated_pairs"],
        "dropped_test_rows_of_unseen_items": unseen_rows,
        "dropped_unseen_test_items": unseen_items,
    }
    _write_outputs(target, name, splits, returned, manifest, has_item_file=False, dropped=dropped)
    return target


def _drop_unseen_items(test: Sequences, train_items: set[str]) -> tuple[int, int]:
    """Drop, in place, every test item that never occurs in train; return (rows dropped, distinct items)."""
    rows, items = 0, set()
    for user, user_items in test.items():
        unseen = [item for item in user_items if item not in train_items]
        if unseen:
            rows += len(unseen)
            items.update(unseen)
            test[user] = [item for item in user_items if item in train_items]
    return rows, len(items)


def _json_id(value: object, path: Path, context: str) -> str:
    """A JSON user or item id (string or integer) as a RecBole token."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataFormatError(f"{path}: {context} is {value!r}; ids must be strings or integers.")
    token = str(value)
    problem = token_problem(token)
    if problem:
        raise DataFormatError(f"{path}: {context} '{token}' {problem}; rename it to a plain token.")
    return token


def _read_amazon_inter(path: Path) -> tuple[Sequences, int]:
    """Read ``{user: [items...]}`` into per-user item lists, dropping repeated items after their first; count them."""
    data = load_json_object(path)
    if not data:
        raise DataFormatError(f"{path} is empty; it needs one 'user: [items...]' entry per user.")
    sequences: Sequences = {}
    duplicates = 0
    for raw_user, raw_items in data.items():
        user = _json_id(raw_user, path, "user id")
        if not isinstance(raw_items, list) or not raw_items:
            raise DataFormatError(
                f"{path}: user '{user}' maps to {raw_items!r}; each user needs a non-empty list of item ids."
            )
        items = [_json_id(item, path, f"an item of user '{user}'") for item in raw_items]
        unique_items = list(dict.fromkeys(items))
        duplicates += len(items) - len(unique_items)
        sequences[user] = unique_items
    if duplicates:
        logger.warning(f"{path}: dropped {duplicates} repeated (user, item) pairs, keeping the first.")
    return sequences, duplicates


def _clean_text(value: str) -> str:
    """Collapse every run of whitespace (tabs, newlines, carriage returns) into one space and strip the ends."""
    return " ".join(value.split())


def _read_amazon_items(path: Path) -> dict[str, dict[str, str]]:
    """Read ``{item: {title, description, brand, categories}}`` with each text cleaned; missing fields are empty."""
    items: dict[str, dict[str, str]] = {}
    for raw_item, record in load_json_object(path).items():
        item = _json_id(raw_item, path, "item id")
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}: item '{item}' maps to {record!r}; it must be an object of text fields.")
        text = {}
        for field in ITEM_TEXT_FIELDS:
            value = record.get(field, "")
            if not isinstance(value, str):
                raise DataFormatError(f"{path}: item '{item}' field '{field}' is {value!r}; it must be a string.")
            text[field] = _clean_text(value)
        items[item] = text
    return items


def import_amazon_json(
    inter_json: Path | str,
    item_json: Path | str,
    name: str,
    out_dir: Path | str,
    valid_ratio: float = 0.1,
    test_ratio: float = 0.1,
    carve: str = "latest",
    seed: int = 2020,
) -> Path:
    """Import Amazon ``{user: [items]}`` and ``{item: {text}}`` JSON, carving test then valid; return the folder.

    The lists are taken as time-ordered, so ``carve="latest"`` makes each user's last items the test and the
    ones before them the validation, as in the DENS splits. Test takes ``round(test_ratio * n)`` items, at
    least one when the user has 3 or more; validation then takes ``round(valid_ratio * m)`` of the ``m`` left,
    at least one when ``m >= 2``; train always keeps at least one, and rows that would leave an item without
    any train row stay in train (see ``_keep_every_item_in_train``). ``carve="random"`` draws both with one
    ``numpy.random.default_rng(seed)``. Item text goes to ``<name>.item``, which the yaml does not load.
    """
    _check_settings(carve, {"valid_ratio": valid_ratio, "test_ratio": test_ratio})
    inter_json, item_json = Path(inter_json), Path(item_json)
    sequences, repeated_pairs = _read_amazon_inter(inter_json)
    item_text = _read_amazon_items(item_json)
    used_items = dict.fromkeys(item for items in sequences.values() for item in items)
    for item in used_items:
        if item not in item_text:
            raise DataFormatError(
                f"{inter_json}: item '{item}' has no entry in {item_json}; add its text there (empty strings are "
                "fine) or remove it from the interactions."
            )
    unused = len(item_text) - len(used_items)
    if unused:
        logger.info(f"{item_json}: {unused} items without interactions are left out of {name}.item.")

    splits, returned = _carve_splits(
        sequences, [("test", test_ratio, 2), ("valid", valid_ratio, 1)], carve, seed, inter_json
    )
    target = Path(out_dir) / name
    target.mkdir(parents=True, exist_ok=True)
    # Items in the order of the item JSON, limited to those with interactions, so the file matches RecBole's ids.
    rows = [
        (item, *(text[field] for field in ITEM_TEXT_FIELDS)) for item, text in item_text.items() if item in used_items
    ]
    _write_tsv(target / f"{name}.item", ITEM_HEADER, rows)
    manifest = _manifest(
        "import_amazon_json",
        name,
        {"inter": inter_json, "items": item_json},
        {"carve": carve, "valid_ratio": valid_ratio, "test_ratio": test_ratio, "seed": seed},
    )
    _write_outputs(
        target, name, splits, returned, manifest, has_item_file=True, dropped={"dropped_repeated_pairs": repeated_pairs}
    )
    return target


def read_item_text(dataset_dir: Path | str, name: str) -> dict[str, dict[str, str]]:
    """Read ``<dataset_dir>/<name>.item`` into ``{item: {title, brand, categories, description}}`` without RecBole.

    ``dataset_dir`` is the dataset's own folder (what the importers return), as in RecBole's ``data_path/name``.
    """
    path = Path(dataset_dir) / f"{name}.item"
    require_file(path, "Item text")
    table = read_atomic(path, "\t", required_ids=("item_id",), unique_id="item_id")
    header = [f"{name}:{kind}" for name, kind in zip(table.names, table.types, strict=True)]
    if header != list(ITEM_HEADER):
        raise DataFormatError(f"{path}:1: header is {header}, expected {list(ITEM_HEADER)}. Fix: re-run the import.")
    return {row["item_id"]: {field: row[field] for field in ITEM_TEXT_FIELDS} for row in table.records()}
