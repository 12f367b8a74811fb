"""The results JSON is strict JSON and says which epoch's model its test metrics measure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ml100k_slices import write_ml100k_slice

from recbole_hnlm.quick_start import run

DATASET = "ml-100k-results"


@pytest.fixture
def tiny_run(tmp_path, run_settings):
    write_ml100k_slice(tmp_path / "data", DATASET, max_item=20, history=(6, 12), n_users=8)
    settings = {**run_settings, "data_path": str(tmp_path / "data"), "epochs": 2, "embedding_size": 8}
    return lambda saved, **overrides: run("BPR", DATASET, config_dict={**settings, **overrides}, saved=saved)


def strict_json(path: str) -> dict:
    def refuse(constant: str):
        raise AssertionError(f"{path} holds {constant}, which strict JSON readers reject")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


def test_saved_false_says_it_tests_the_last_epoch(tiny_run):
    assert tiny_run(saved=True)["tested_epoch"] == "best"
    result = tiny_run(saved=False)
    assert result["tested_epoch"] == "last" and strict_json(result["results_file"])["tested_epoch"] == "last"
