"""finetune_seed: CF runs of several seeds read the one chain that finetune_seed names."""

from __future__ import annotations

from recbole_hnlm.finetune.chain import ChainRun
from recbole_hnlm.finetune.paths import ChainPaths
from recbole_hnlm.finetune.settings import FinetuneSettings, finetune_defaults
from recbole_hnlm.llm.settings import LLMSettings

LLM = LLMSettings.from_config({"llm": "template"})


def encoded_folder(config: dict) -> str:
    return str(ChainPaths("ml-100k", LLM, FinetuneSettings.from_config(config)).encoded(finetuned=True))


def test_the_default_keys_the_chain_by_the_runs_seed():
    assert finetune_defaults()["finetune_seed"] is None
    assert FinetuneSettings.from_config({"seed": 2021, "finetune_seed": None}).seed == 2021
    assert encoded_folder({"seed": 2020}) != encoded_folder({"seed": 2021})


def test_finetune_seed_gives_every_cf_seed_the_chains_folder():
    chain = encoded_folder({"seed": 2020})
    for seed in (2020, 2021, 2022):
        assert encoded_folder({"seed": seed, "finetune_seed": 2020}) == chain
    assert encoded_folder({"seed": 2020, "finetune_seed": 2021}) != chain


def test_a_chain_named_by_finetune_seed_runs_with_that_seed():
    assert ChainRun("ml-100k", {"seed": 2022, "finetune_seed": 2020}).config_dict["seed"] == 2020
    assert ChainRun("ml-100k", {"seed": 2022}).config_dict["seed"] == 2022
