"""The bad-input corpus (tests/data/bad_input/): each file either stops with one line naming file, line and fix,
or gives the correct result. None may load quietly into a wrong dataset.

The files are small variants of one tiny dataset: 5 users, 6 items, 20 interactions (``good.inter``), with item
titles in ``good.item``; the comment beside each case names the line at fault.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.importers import import_amazon_json, import_presplit, read_presplit
from recbole_hnlm.data.preparation import input_counts, load_dataset, prepare_data
from recbole_hnlm.data.reader import read_atomic
from recbole_hnlm.errors import DataFormatError
from recbole_hnlm.llm import LLMSettings
from recbole_hnlm.llm.catalogue import Catalogue

CORPUS = Path(__file__).resolve().parent / "bad_input"
REPO = Path(__file__).resolve().parents[2]
QUIET = {"state": "ERROR", "show_progress": False}
GOOD_SHAPE = (6, 7, 20)  # RecBole's user_num and item_num (with [PAD]) and the interactions of good.inter
TITLES = ["Toy Story", "GoldenEye", "Four Rooms", "Get Shorty", "Copycat", "Twelve Monkeys"]


def dataset_folder(root: Path, *files: str, name: str = "case") -> Path:
    """A data_path holding dataset ``name`` made of corpus files, each renamed to ``name`` plus its suffixes."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        stem, _, suffixes = file.partition(".")
        shutil.copy(CORPUS / file, folder / f"{name}.{suffixes}")
    return root


def load(root: Path, name: str = "case", **settings):
    """RecBole's dataset through the plugin's load_dataset, which validates the files first."""
    return load_dataset(HNLMConfig("BPR", name, config_dict={**QUIET, "data_path": str(root), **settings}))


def assert_one_line_error(error: pytest.ExceptionInfo, file: str, line: int | None, *phrases: str) -> None:
    """The message is one line naming the file (and line), saying what is wrong and how to fix it."""
    message = str(error.value)
    assert "\n" not in message and "Fix" in message, message
    assert f"{file}:{line}:" in message if line else f"{file}:" in message, message
    for phrase in phrases:
        assert phrase in message, message


def shape(dataset) -> tuple[int, int, int]:
    return dataset.user_num, dataset.item_num, dataset.inter_num


# Files RecBole reads itself: refused by the check that runs before RecBole touches them.
REFUSED_INTER = {
    "repeated_header.inter": (5, "header line is repeated"),
    "comma_separated.inter": (1, "comma-separated; RecBole atomic files are tab-separated"),
    "bom.inter": (1, "byte-order mark"),
    "fewer_fields.inter": (4, "3 tab-separated fields but the header has 4"),
    "non_numeric_rating.inter": (7, "'five' in column rating:float is not a number"),
    "empty_user_id.inter": (3, "user_id is empty"),
    "missing_value_item_id.inter": (3, "'NA' is read by pandas as a missing value"),
    "no_item_id_column.inter": (1, "has no item_id column"),
    "space_separated_row.inter": (5, "space-separated"),
    "stray_quote_id.inter": (3, "unbalanced quote"),
}


@pytest.mark.parametrize("file", sorted(REFUSED_INTER))
def test_bad_inter_file_is_refused_before_recbole_reads_it(tmp_path, file):
    line, phrase = REFUSED_INTER[file]
    with pytest.raises(DataFormatError) as error:
        load(dataset_folder(tmp_path, file))
    assert_one_line_error(error, "case.inter", line, phrase)


def test_empty_user_id_in_a_presplit_inter_is_refused(tmp_path):
    files = [f"presplit_empty_user.{part}.inter" for part in ("train", "valid", "test")]
    with pytest.raises(DataFormatError) as error:
        load(dataset_folder(tmp_path, *files), benchmark_filename=["train", "valid", "test"])
    assert_one_line_error(error, "case.train.inter", 3, "user_id is empty")


@pytest.mark.parametrize("file", ["crlf.inter", "trailing_empty_lines.inter"])
def test_crlf_and_trailing_empty_lines_load_the_same_dataset(tmp_path, file):
    good = load(dataset_folder(tmp_path / "good", "good.inter"))
    other = load(dataset_folder(tmp_path / "other", file))
    assert shape(other) == shape(good) == GOOD_SHAPE
    assert input_counts(other)["case.inter"]["blank_lines"] == (2 if "trailing" in file else 0)


def test_duplicate_rows_are_counted_and_kept_as_recbole_keeps_them(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = load(dataset_folder(tmp_path, "duplicate_rows.inter"), rm_dup_inter=None)
    assert input_counts(dataset)["case.inter"] == {"rows": 21, "blank_lines": 0, "duplicate_rows": 1}
    assert dataset.inter_num == 21
    assert any("1 rows repeat an earlier row" in record.getMessage() for record in caplog.records)


def test_the_command_line_exits_2_with_the_error_as_its_last_line(tmp_path):
    dataset_folder(tmp_path, "repeated_header.inter")
    command = [sys.executable, "run_recbole_hnlm.py", "--model=BPR", "--dataset=case", f"--data_path={tmp_path}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "case.inter:5:" in last and "Traceback" not in result.stderr


# .item files, read by the plugin to write item profiles.
@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    """(config, train dataset, held-out datasets) of good.inter; each test puts its own case.item beside it."""
    root = dataset_folder(tmp_path_factory.mktemp("items"), "good.inter")
    config = HNLMConfig("BPR", "case", config_dict={**QUIET, "data_path": str(root), "llm": "template"})
    train, valid, test = prepare_data(config, load_dataset(config))
    return config, train._dataset, [valid._dataset, test._dataset]


def catalogue_with(tiny_split, item_file: str) -> Catalogue:
    config, train, held_out = tiny_split
    shutil.copy(CORPUS / item_file, Path(config["data_path"]) / "case.item")
    return Catalogue.from_split(config, train, held_out, LLMSettings.from_config(config))


def titles_by_token(catalogue: Catalogue) -> dict[str, str]:
    return {
        str(token): title for token, title in zip(catalogue.item_tokens[1:], catalogue.item_titles[1:], strict=True)
    }


REFUSED_ITEM = {
    "item_header_only.item": (None, "header but no items"),
    "item_comma_separated.item": (1, "comma-separated; RecBole atomic files are tab-separated"),
    "item_stray_quote.item": (3, "unbalanced quote"),
    "item_unclosed_quote_at_end.item": (7, "unbalanced quote"),
    "item_unquoted_tab_in_title.item": (3, "4 tab-separated fields but the header has 3"),
    "item_no_text_column.item": (1, "no column gives item text"),
    "item_ids_match_none.item": (None, "none of the dataset's 6 items has a row"),
    "item_conflicting_duplicate.item": (6, "item_id '2' repeats line 3 with other values"),
}


@pytest.mark.parametrize("file", sorted(REFUSED_ITEM))
def test_bad_item_file_is_refused_before_profiles_are_written(tiny_split, file):
    line, phrase = REFUSED_ITEM[file]
    with pytest.raises(DataFormatError) as error:
        catalogue_with(tiny_split, file)
    assert_one_line_error(error, "case.item", line, phrase)


@pytest.mark.parametrize(
    "file", ["good.item", "item_id_not_first.item", "item_bom.item", "item_crlf.item", "item_exact_duplicate.item"]
)
def test_item_file_variants_give_every_item_its_title(tiny_split, file):
    catalogue = catalogue_with(tiny_split, file)
    assert titles_by_token(catalogue) == {str(item): title for item, title in enumerate(TITLES, start=1)}
    assert catalogue.item_text_counts["items_without_text"] == 0
    assert catalogue.item_text_counts["item_file_duplicate_rows"] == (1 if "duplicate" in file else 0)


def test_a_quoted_tab_in_a_title_is_part_of_the_title(tiny_split):
    catalogue = catalogue_with(tiny_split, "item_quoted_tab_in_title.item")
    assert titles_by_token(catalogue)["2"] == "Golden Eye"
    assert read_atomic(CORPUS / "item_quoted_tab_in_title.item").rows[1] == ["2", "Golden\tEye", "Action"]


# Pre-split text and JSON, read by the importers.
def test_presplit_text_with_bom_crlf_and_trailing_blank_lines_reads_as_the_plain_file():
    assert read_presplit(CORPUS / "presplit_bom_crlf.train.txt") == read_presplit(CORPUS / "presplit_good.train.txt")


def test_comma_separated_presplit_text_is_refused(tmp_path):
    with pytest.raises(DataFormatError) as error:
        import_presplit(CORPUS / "presplit_comma.train.txt", CORPUS / "presplit_good.test.txt", "x", tmp_path)
    message = str(error.value)
    assert "presplit_comma.train.txt: line 1" in message and "separate ids by spaces" in message and "Fix" in message


def test_amazon_json_with_a_bom_imports(tmp_path):
    inter = tmp_path / "inter.json"
    items = tmp_path / "items.json"
    inter.write_bytes(b'\xef\xbb\xbf{"u1": [1, 2, 3], "u2": [2, 3, 1]}')
    items.write_bytes(b'\xef\xbb\xbf{"1": {"title": "a"}, "2": {"title": "b"}, "3": {"title": "c"}}')
    folder = import_amazon_json(inter, items, "bom", tmp_path / "out", valid_ratio=0, test_ratio=0)
    assert (folder / "bom.train.inter").read_text().splitlines()[1] == "u1\t1"


def test_unseen_test_items_are_refused_by_default_and_dropped_and_counted_on_request(tmp_path, capsys):
    train, test = CORPUS / "presplit_good.train.txt", CORPUS / "presplit_unseen.test.txt"
    with pytest.raises(DataFormatError, match="item 'zz' of user 'u1' never occurs.*--drop_unseen_items"):
        import_presplit(train, test, "unseen", tmp_path / "refused")
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "recbole_hnlm.data.import_dataset", "presplit", "--train", str(train)]
    command += ["--test", str(test), "--name", "unseen", "--out", str(out), "--valid_ratio=0", "--drop_unseen_items"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "dropped_test_rows_of_unseen_items 3, dropped_unseen_test_items 2" in result.stdout
    folder = out / "unseen"
    assert (folder / "unseen.test.inter").read_text() == "user_id:token\titem_id:token\nu1\td\nu2\ta\n"
    manifest = (folder / "unseen.manifest.json").read_text()
    assert '"drop_unseen_items": true' in manifest and '"dropped_test_rows_of_unseen_items": 3' in manifest
    assert "dropped_unseen_test_items 2" in (folder / "unseen.yaml").read_text()
