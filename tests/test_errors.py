"""Bad input stops with one readable message naming the input and the fix, never a deep traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recbole_hnlm import compat
from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.errors import (
    ConfigurationError,
    DataFormatError,
    DatasetNotFoundError,
    UnknownNameError,
    UnsupportedModelError,
)
from recbole_hnlm.paths import default_data_path
from recbole_hnlm.quick_start import run

DEFAULT_DATA_PATH = default_data_path()

REPO = Path(__file__).resolve().parents[1]
QUIET = {"state": "ERROR", "show_progress": False}


def copy_ml100k(tmp_path: Path, name: str = "broken") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(DEFAULT_DATA_PATH / "ml-100k" / "ml-100k.inter", folder / f"{name}.inter")
    return folder / f"{name}.inter"


def rewrite_line(path: Path, line_number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_unknown_model_lists_the_supported_ones():
    with pytest.raises(UnknownNameError) as error:
        HNLMConfig("LightGCNN", "ml-100k", config_dict=QUIET)
    message = str(error.value)
    assert "LightGCNN" in message and "LightGCN" in message and "SGL" in message and "NeuMF" not in message


@pytest.mark.parametrize("model", ["NeuMF", "Pop", "MultiVAE", "EASE"])
def test_models_that_cannot_take_sampled_negatives_are_refused(model):
    with pytest.raises(UnsupportedModelError) as error:
        HNLMConfig(model, "ml-100k", config_dict=QUIET)
    assert model in str(error.value) and "Models that can: " in str(error.value) and "BPR" in str(error.value)


def test_unknown_dataset_lists_the_available_ones():
    with pytest.raises(DatasetNotFoundError) as error:
        HNLMConfig("BPR", "ml-1m", config_dict=QUIET)
    message = str(error.value)
    assert "ml-1m" in message and "ml-100k" in message and "beauty-dens" in message and "import_dataset" in message


@pytest.mark.parametrize(
    ("line_number", "text", "expected"),
    [
        (1, "user_id\titem_id:token\trating:float\ttimestamp:float", r"broken\.inter:1: header column 'user_id'"),
        (5, "196\t242\t3", r"broken\.inter:5: 3 tab-separated fields but the header has 4"),
        (7, "196\t242\tthree\t881250949", r"broken\.inter:7: 'three' in column rating:float is not a number"),
    ],
)
def test_malformed_atomic_files_name_the_file_and_line(tmp_path, line_number, text, expected):
    inter = copy_ml100k(tmp_path)
    rewrite_line(inter, line_number, text)
    with pytest.raises(DataFormatError, match=expected):
        run("BPR", "broken", config_dict={**QUIET, "data_path": str(tmp_path), "epochs": 1})


def test_an_empty_dataset_is_refused(tmp_path):
    inter = copy_ml100k(tmp_path)
    inter.write_text(inter.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataFormatError, match="header but no interactions"):
        run("BPR", "broken", config_dict={**QUIET, "data_path": str(tmp_path)})


def test_a_dataset_emptied_by_filtering_is_refused(tmp_path):
    copy_ml100k(tmp_path)
    everything_above_5 = {"load_col": {"inter": ["user_id", "item_id", "rating"]}, "val_interval": {"rating": "[6,10]"}}
    with pytest.raises(DataFormatError, match="feat is empty.*val_interval"):
        run("BPR", "broken", config_dict={**QUIET, "data_path": str(tmp_path), **everything_above_5})


def write_presplit(folder: Path, name: str, test_rows: list[str]) -> None:
    folder.mkdir(parents=True)
    header = "user_id:token\titem_id:token\n"
    train = [f"{user}\t{item}" for user in range(1, 30) for item in range(1, 40) if (user + item) % 3]
    valid = [f"{user}\t{item}" for user in range(1, 30) for item in range(1, 40) if (user + item) % 3 == 0][:40]
    for part, rows in (("train", train), ("valid", valid), ("test", test_rows)):
        (folder / f"{name}.{part}.inter").write_text(header + "\n".join(rows) + "\n")
    (folder / f"{name}.yaml").write_text(
        "load_col: {inter: [user_id, item_id]}\nbenchmark_filename: [train, valid, test]\n"
    )


@pytest.mark.parametrize(("row", "field"), [("999\t3", "user_id"), ("2\t777", "item_id")])
def test_held_out_ids_absent_from_train_are_refused(tmp_path, row, field):
    write_presplit(tmp_path / "tiny", "tiny", ["1\t3", row])
    with pytest.raises(DataFormatError) as error:
        run("BPR", "tiny", config_dict={**QUIET, "data_path": str(tmp_path), "epochs": 1})
    message = str(error.value)
    assert (
        "tiny.test.inter" in message and field in message and row.split("\t")[0 if field == "user_id" else 1] in message
    )


def test_command_line_arguments_must_be_key_value():
    with pytest.raises(ConfigurationError, match="--key=value"):
        HNLMConfig("BPR", "ml-100k", config_dict=QUIET, cmd_args=["--epochs", "5"])


def test_recbole_neg_sample_args_are_refused_with_the_plugin_equivalent():
    with pytest.raises(ConfigurationError, match="--neg_sampler=dns"):
        HNLMConfig("BPR", "ml-100k", config_dict={**QUIET, "train_neg_sample_args": {"distribution": "uniform"}})


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigurationError, match="nowhere.yaml"):
        HNLMConfig("BPR", "ml-100k", config_file_list=[str(tmp_path / "nowhere.yaml")])


def test_unsupported_dependency_versions_name_the_pin(monkeypatch):
    real = compat.version
    monkeypatch.setattr(compat, "version", lambda package: "2.1.0" if package == "numpy" else real(package))
    with pytest.raises(ConfigurationError, match="numpy<2"):
        compat.check_dependency_versions()


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--model=NoSuchModel"], "Unknown model 'NoSuchModel'"),
        (["--neg_sampler=nope"], "Unknown sampler 'nope'"),
        (["--dataset=nope"], "Dataset 'nope' not found"),
        (["--neg_sampler=dns_mn", "--candidate_num=2", "--dns_top_n=3"], "1 <= N <= M"),
    ],
)
def test_run_script_prints_one_error_line_and_exits_2(tmp_path, arguments, expected):
    done = subprocess.run(
        [sys.executable, str(REPO / "run_recbole_hnlm.py"), *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and expected in done.stderr
    assert "Traceback" not in done.stderr
