"""Shared fixtures: real ml-100k from the repo's dataset/ folder, loaded once per session."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import torch

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import load_dataset, prepare_data
from recbole_hnlm.paths import default_data_path

DEFAULT_DATA_PATH = default_data_path()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The suite runs on the CPU, also where a GPU is visible: its tests build models and samplers without moving them to
# config["device"], which RecBole's Config would make cuda. CUDA is initialised here with no device visible, which
# holds for the whole process, whatever CUDA_VISIBLE_DEVICES RecBole's Config writes later (it writes gpu_id there).
# GPU paths are checked by running the product on a GPU (docs/gpu.md).
os.environ["CUDA_VISIBLE_DEVICES"] = ""
torch.cuda.is_available()

QUIET = {"state": "ERROR", "show_progress": False}


@pytest.fixture
def run_settings(tmp_path, monkeypatch) -> dict:
    """Settings for a real run that writes its checkpoint, results and RecBole logs under tmp_path."""
    monkeypatch.chdir(tmp_path)  # RecBole's logger writes log/ and log_tensorboard/ under the working directory
    return {"checkpoint_dir": str(tmp_path / "saved"), "results_dir": str(tmp_path / "results"), **QUIET}


@pytest.fixture(scope="session")
def ml100k():
    """(config, dataset, train_dataloader) for BPR on the full ml-100k with the default split."""
    config = HNLMConfig("BPR", "ml-100k", config_dict={**QUIET})
    dataset = load_dataset(config)
    train_data, _, _ = prepare_data(config, dataset)
    return config, dataset, train_data


@pytest.fixture(scope="session")
def ml100k_slice(tmp_path_factory) -> str:
    """A data_path holding 'ml-100k-slice': every real ml-100k interaction of users 1-120 (for slow models)."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "ml-100k-slice"
    folder.mkdir()
    inter = pd.read_csv(DEFAULT_DATA_PATH / "ml-100k" / "ml-100k.inter", sep="\t", dtype=str)
    inter = inter[inter["user_id:token"].astype(int) <= 120]
    inter.to_csv(folder / "ml-100k-slice.inter", sep="\t", index=False)
    return str(root)
