"""Tests for the dataset importers, on the real data copied into dataset/raw/ and on small malformed files."""

from __future__ import annotations

import csv
import json
import logging
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recbole_hnlm.data.importers import (
    ITEM_TEXT_FIELDS,
    REPO_ROOT,
    import_amazon_json,
    import_presplit,
    read_item_text,
    read_presplit,
)
from recbole_hnlm.errors import ConfigurationError, DataFormatError, DatasetNotFoundError

RAW = REPO_ROOT / "dataset" / "raw"
COMMITTED = REPO_ROOT / "dataset"
OFFICE_INTER = RAW / "amazon-office" / "Office.inter.json"
OFFICE_ITEMS = RAW / "amazon-office" / "Office.item.json"

# users, items, train.txt interactions, test.txt interactions (shared/data/README.md)
DENS_COUNTS = {"beauty-dens": (7670, 10887, 63601, 18696), "toy-dens": (4626, 10083, 44124, 8666)}


def read_inter(path: Path) -> dict[str, list[str]]:
    """Read a written ``.inter`` file back into ``{user: [items in row order]}``, checking its header."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows[0] == ["user_id:token", "item_id:token"]
    sequences: dict[str, list[str]] = {}
    for user, item in rows[1:]:
        sequences.setdefault(user, []).append(item)
    return sequences


def read_splits(folder: Path, name: str) -> dict[str, dict[str, list[str]]]:
    """The three split files of an imported dataset."""
    return {split: read_inter(folder / f"{name}.{split}.inter") for split in ("train", "valid", "test")}


def import_dens(name: str, out_dir: Path, **settings: object) -> Path:
    """Import one of the DENS splits from the repository's raw copy."""
    return import_presplit(RAW / name / "train.txt", RAW / name / "test.txt", name, out_dir, **settings)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every dataset imported once with the default settings, as committed under dataset/."""
    out_dir = tmp_path_factory.mktemp("imported")
    folders = {name: import_dens(name, out_dir) for name in DENS_COUNTS}
    folders["amazon-office"] = import_amazon_json(OFFICE_INTER, OFFICE_ITEMS, "amazon-office", out_dir)
    return folders


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` and return the path."""
    path.write_text(text, encoding="utf-8")
    return path


def is_subsequence(part: list[str], whole: list[str]) -> bool:
    """Whether ``part`` occurs in ``whole`` in the same order."""
    remaining = iter(whole)
    return all(item in remaining for item in part)


@pytest.mark.parametrize("name", sorted(DENS_COUNTS))
def test_presplit_round_trip_is_exact(imported: dict[str, Path], name: str) -> None:
    users, items, train_total, test_total = DENS_COUNTS[name]
    source_train = read_presplit(RAW / name / "train.txt")
    source_test = read_presplit(RAW / name / "test.txt")
    splits = read_splits(imported[name], name)

    assert len(source_train) == users
    assert sum(map(len, source_train.values())) == train_total
    assert sum(map(len, source_test.values())) == test_total
    rejoined = {user: splits["train"][user] + splits["valid"].get(user, []) for user in splits["train"]}
    assert rejoined == source_train
    assert list(rejoined) == list(source_train)
    assert splits["test"] == source_test
    assert list(splits["test"]) == list(source_test)

    manifest = json.loads((imported[name] / f"{name}.manifest.json").read_text())
    counts = manifest["counts"]
    assert (counts["users"], counts["items"]) == (users, items)
    assert counts["train"] + counts["valid"] == train_total
    assert counts["test"] == test_total


def expected_valid_count(length: int, ratio: float = 0.1) -> int:
    """The carve size before any row goes back to train: round(ratio * n), at least 1, leaving 1."""
    return 0 if length == 1 else min(max(round(ratio * length), 1), length - 1)


def test_latest_carve_takes_each_users_last_items(imported: dict[str, Path]) -> None:
    source = read_presplit(RAW / "beauty-dens" / "train.txt")
    splits = read_splits(imported["beauty-dens"], "beauty-dens")
    shortfall = 0
    for user, items in source.items():
        valid = splits["valid"].get(user, [])
        assert items[len(items) - len(valid) :] == valid
        assert len(valid) <= expected_valid_count(len(items))
        shortfall += expected_valid_count(len(items)) - len(valid)
    manifest = json.loads((imported["beauty-dens"] / "beauty-dens.manifest.json").read_text())
    assert shortfall == manifest["counts"]["returned_to_train"]
    assert shortfall < 0.1 * manifest["counts"]["valid"]


@pytest.mark.parametrize("name", ["beauty-dens", "toy-dens", "amazon-office"])
def test_every_held_out_user_and_item_occurs_in_train(imported: dict[str, Path], name: str) -> None:
    splits = read_splits(imported[name], name)
    train_items = {item for items in splits["train"].values() for item in items}
    for split in ("valid", "test"):
        assert set(splits[split]) <= set(splits["train"])
        assert {item for items in splits[split].values() for item in items} <= train_items


def test_carve_counts_on_small_input(tmp_path: Path) -> None:
    lengths = {"one": 1, "two": 2, "five": 5, "fifteen": 15, "twenty": 20}
    # "all" holds every item early in its line, so no carved item loses its last train row.
    train = "all " + " ".join(f"i{k}" for k in reversed(range(20))) + "\n"
    train += "".join(f"{user} " + " ".join(f"i{k}" for k in range(n)) + "\n" for user, n in lengths.items())
    write(tmp_path / "train.txt", train)
    write(tmp_path / "test.txt", "twenty i0\n")
    folder = import_presplit(tmp_path / "train.txt", tmp_path / "test.txt", "small", tmp_path / "out")
    valid = read_inter(folder / "small.valid.inter")
    assert {user: len(items) for user, items in valid.items()} == {
        "all": 2,
        "two": 1,
        "five": 1,
        "fifteen": 2,
        "twenty": 2,
    }
    assert valid["fifteen"] == ["i13", "i14"]


def test_latest_carve_returns_rows_so_no_item_leaves_train(tmp_path: Path) -> None:
    # u1 would give s and t, u2 would give a; t occurs nowhere else, so u1 keeps t and the s before it.
    write(tmp_path / "train.txt", "u1 a b s t\nu2 s a\n")
    write(tmp_path / "test.txt", "u1 t\n")
    folder = import_presplit(tmp_path / "train.txt", tmp_path / "test.txt", "small", tmp_path / "out", 0.5)
    assert read_inter(folder / "small.train.inter") == {"u1": ["a", "b", "s", "t"], "u2": ["s"]}
    assert read_inter(folder / "small.valid.inter") == {"u2": ["a"]}
    assert json.loads((folder / "small.manifest.json").read_text())["counts"]["returned_to_train"] == 2


def test_random_carve_is_seeded_and_round_trips_as_sets(tmp_path: Path) -> None:
    name = "toy-dens"
    first = import_dens(name, tmp_path / "a", carve="random", seed=7)
    again = import_dens(name, tmp_path / "b", carve="random", seed=7)
    other = import_dens(name, tmp_path / "c", carve="random", seed=8)
    for split in ("train", "valid", "test"):
        filename = f"{name}.{split}.inter"
        assert (first / filename).read_bytes() == (again / filename).read_bytes()
    assert (first / f"{name}.valid.inter").read_bytes() != (other / f"{name}.valid.inter").read_bytes()

    source = read_presplit(RAW / name / "train.txt")
    splits = read_splits(first, name)
    train_items = {item for items in splits["train"].values() for item in items}
    for user, items in source.items():
        train, valid = splits["train"][user], splits["valid"].get(user, [])
        assert sorted(train + valid) == sorted(items)
        assert is_subsequence(train, items) and is_subsequence(valid, items)
        assert len(valid) <= expected_valid_count(len(items))
        assert set(valid) <= train_items


@pytest.mark.parametrize("name", ["beauty-dens", "toy-dens", "amazon-office"])
def test_regenerated_files_equal_committed_ones(imported: dict[str, Path], name: str) -> None:
    committed = sorted(path.name for path in (COMMITTED / name).iterdir())
    regenerated = sorted(path.name for path in imported[name].iterdir())
    assert regenerated == committed
    for filename in committed:
        assert (imported[name] / filename).read_bytes() == (COMMITTED / name / filename).read_bytes(), filename


@pytest.mark.parametrize("name", ["beauty-dens", "amazon-office"])
def test_yaml_reads_the_fixed_split_and_only_ids(imported: dict[str, Path], name: str) -> None:
    settings = yaml.safe_load((imported[name] / f"{name}.yaml").read_text())
    assert settings["benchmark_filename"] == ["train", "valid", "test"]
    assert settings["load_col"] == {"inter": ["user_id", "item_id"]}
    assert settings["user_inter_num_interval"] is None and settings["item_inter_num_interval"] is None
    assert settings["rm_dup_inter"] is None and settings["filter_inter_by_user_or_item"] is False


def test_amazon_office_counts_and_latest_carve(imported: dict[str, Path]) -> None:
    source = json.loads(OFFICE_INTER.read_text())
    splits = read_splits(imported["amazon-office"], "amazon-office")
    users = {user for sequences in splits.values() for user in sequences}
    items = {item for sequences in splits.values() for seq in sequences.values() for item in seq}
    assert (len(users), len(items)) == (4905, 2420)
    assert sum(len(seq) for sequences in splits.values() for seq in sequences.values()) == 53258
    for user, raw_items in source.items():
        train, valid, test = (splits[split].get(user, []) for split in ("train", "valid", "test"))
        assert train + valid + test == [str(item) for item in raw_items]
        assert train
    # Every user has at least 5 items, so all give test and valid rows but for the few returned to train.
    returned = json.loads((imported["amazon-office"] / "amazon-office.manifest.json").read_text())["counts"]
    assert len(source) - len(splits["test"]) <= returned["returned_to_train"]
    assert len(source) - len(splits["valid"]) <= returned["returned_to_train"]


def test_amazon_item_text_reads_back(imported: dict[str, Path]) -> None:
    source = json.loads(OFFICE_ITEMS.read_text())
    text = read_item_text(imported["amazon-office"], "amazon-office")
    assert len(text) == 2420
    # Items with "N/A", a leading quote or newlines in a field, plus a seeded sample of the rest.
    sample = {"2183", "2234", "2297", *random.Random(0).sample(sorted(source), 100)}
    for item in sample:
        expected = {field: " ".join(source[item][field].split()) for field in ITEM_TEXT_FIELDS}
        assert text[item] == expected, item


BAD_PRESPLIT = {
    "empty train file": ("", "u1 a\n", "train.txt is empty"),
    "blank line": ("u1 a b\n\nu2 c\n", "u1 a\n", "train.txt: line 2 is blank"),
    "train user without items": ("u1 a b\nu2\n", "u1 a\n", "train.txt: line 2: user 'u2' has no items"),
    "missing-value id": ("u1 a NA\n", "u1 a\n", "train.txt: line 1: id 'NA'"),
    "duplicate user in train": (
        "u1 a\nu2 b\nu1 c\n",
        "u2 b\n",
        "train.txt: line 3 repeats user 'u1' of line 1",
    ),
    "duplicate user in test": ("u1 a b\n", "u1 a\nu1 b\n", "test.txt: line 2 repeats user 'u1'"),
    "test user unknown": ("u1 a b\n", "u1 a\nu9 b\n", "test.txt: line 2: user 'u9' does not occur"),
    "test item unseen": (
        "u1 a b\nu2 c\n",
        "u2 a\nu1 zz\n",
        "test.txt: line 2: item 'zz' of user 'u1' never occurs",
    ),
    "empty test file": ("u1 a\n", "", "test.txt is empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_PRESPLIT))
def test_bad_presplit_input_is_refused_with_file_and_line(tmp_path: Path, case: str) -> None:
    train, test, message = BAD_PRESPLIT[case]
    write(tmp_path / "train.txt", train)
    write(tmp_path / "test.txt", test)
    with pytest.raises(DataFormatError) as raised:
        import_presplit(tmp_path / "train.txt", tmp_path / "test.txt", "bad", tmp_path / "out")
    assert message in str(raised.value)


def test_missing_presplit_file_is_named(tmp_path: Path) -> None:
    write(tmp_path / "train.txt", "u1 a\n")
    with pytest.raises(DatasetNotFoundError, match="nowhere.txt"):
        import_presplit(tmp_path / "train.txt", tmp_path / "nowhere.txt", "bad", tmp_path / "out")


def test_repeated_items_in_a_line_keep_the_first_and_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "train.txt", "u1 a b a c b\nu2 d\n")
    write(tmp_path / "test.txt", "u1 d\n")
    with caplog.at_level(logging.WARNING):
        folder = import_presplit(tmp_path / "train.txt", tmp_path / "test.txt", "dup", tmp_path / "out", valid_ratio=0)
    assert read_inter(folder / "dup.train.inter") == {"u1": ["a", "b", "c"], "u2": ["d"]}
    assert read_inter(folder / "dup.valid.inter") == {}
    assert any("dropped 2 repeated" in record.getMessage() for record in caplog.records)


def test_unknown_carve_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="carve"):
        import_dens("toy-dens", tmp_path, carve="oldest")


def test_malformed_json_names_file_and_position(tmp_path: Path) -> None:
    inter = write(tmp_path / "inter.json", '{"u1": [1, 2,\n  ]}')
    items = write(tmp_path / "items.json", '{"1": {"title": "a"}, "2": {"title": "b"}}')
    with pytest.raises(DataFormatError) as raised:
        import_amazon_json(inter, items, "bad", tmp_path / "out")
    assert "inter.json" in str(raised.value) and "line 2 column 3" in str(raised.value)


def test_item_missing_from_item_json_is_named(tmp_path: Path) -> None:
    inter = write(tmp_path / "inter.json", '{"u1": [1, 2, 3]}')
    items = write(tmp_path / "items.json", '{"1": {"title": "a"}, "2": {"title": "b"}}')
    with pytest.raises(DataFormatError, match=r"item '3' has no entry in .*items\.json"):
        import_amazon_json(inter, items, "bad", tmp_path / "out")


def test_cli_reports_missing_file_without_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "absent" / "train.txt"
    command = [sys.executable, "-m", "recbole_hnlm.data.import_dataset", "presplit"]
    command += [
        "--train",
        str(missing),
        "--test",
        str(missing),
        "--name",
        "x",
        "--out",
        str(tmp_path / "out"),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and str(missing) in result.stderr
    assert "Traceback" not in result.stderr
