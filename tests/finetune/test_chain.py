"""The chain end to end on a tiny real slice of ml-100k, through the command line, and the CF side reading it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.errors import CacheMismatchError, ConfigurationError
from recbole_hnlm.finetune.__main__ import main, parse_settings
from recbole_hnlm.finetune.chain import ChainRun, train_recommender
from recbole_hnlm.finetune.encode import open_text_vectors
from recbole_hnlm.finetune.encoder import query_text
from recbole_hnlm.finetune.mining import profile_texts
from recbole_hnlm.finetune.train import checkpoint_folder
from recbole_hnlm.llm.loader import SemanticCache


def command_line(chain: ChainRun) -> list[str]:
    """The chain's settings as ``--key=value`` arguments (None as ~)."""
    return [f"--{key}={'~' if value is None else value}" for key, value in chain.config_dict.items()]


def test_chain_runs_end_to_end_and_the_cf_run_trains_on_the_finetuned_vectors(tiny_chain):
    assert main(["chain", "--dataset", tiny_chain.dataset, "--compare", *command_line(tiny_chain)]) == 0
    paths = tiny_chain.paths
    summary = json.loads((paths.root / "chain-summary.json").read_text())
    tuned, untuned = paths.encoded(finetuned=True), paths.encoded(finetuned=False)
    assert summary["finetuned_result"]["semantic_negatives"]["cache"] == str(tuned)
    assert summary["untuned_result"]["semantic_negatives"]["cache"] == str(untuned)
    assert "recall@20" in summary["finetuned_result"]["test_result"]
    assert summary["mined"]["pairs"] > 0 and summary["training"]["steps"] == tiny_chain.settings.steps
    assert checkpoint_folder(paths.adapter, tiny_chain.settings.steps).is_dir()

    cache = SemanticCache(tuned)
    assert cache.manifest["embedding"]["model"].startswith("all-MiniLM-L6-v2+lora-")
    assert cache.manifest["encoder"]["adapter"] == {"id": paths.adapter_id, "step": tiny_chain.settings.steps}
    assert (np.asarray(cache.pair_generated_unit) >= 0).all()  # finetune_encode_pairs=0: every pair has a query
    assert not np.allclose(cache.generated_vectors, SemanticCache(untuned).generated_vectors)

    # The stored query vector is the fine-tuned encoder's vector of the same prompt, encoded anew.
    encoder = tiny_chain.encoder()
    encoder.load_adapter(checkpoint_folder(paths.adapter, tiny_chain.settings.steps), {"id": "check", "step": 0})
    catalogue = tiny_chain.catalogue()
    item_profiles, user_profiles = profile_texts(tiny_chain.profiles(), tiny_chain.llm_settings, catalogue)
    user, item = (int(value) for value in np.load(tuned / "negatives" / "generated_units.npy")[0])
    fresh = encoder.encode([query_text(user_profiles[user], item_profiles[item])], 1)[0]
    found = cache.lookup(np.array([user]), np.array([item]))
    np.testing.assert_allclose(found.generated_vectors[0], fresh, atol=2e-5)
    assert found.has_generated[0]


def test_a_rerun_reuses_every_stage(tiny_chain):
    main(["chain", "--dataset", tiny_chain.dataset, *command_line(tiny_chain)])
    summary = json.loads((tiny_chain.paths.root / "chain-summary.json").read_text())
    assert summary["training"]["resumed_from"] == tiny_chain.settings.steps
    assert summary["seconds"]["encode_finetuned"] < 1.0 and summary["seconds"]["mine"] < 1.0


def test_cf_side_refuses_missing_vectors_and_bad_encoder_modes(tiny_chain):
    missing = ChainRun(tiny_chain.dataset, {**tiny_chain.config_dict, "finetune_steps": 99})
    with pytest.raises(CacheMismatchError, match="python -m recbole_hnlm.finetune chain"):
        train_recommender(missing, "finetuned")
    config = HNLMConfig("BPR", tiny_chain.dataset, config_dict={**tiny_chain.config_dict, "hnlm_encoder": "finetuned"})
    with pytest.raises(CacheMismatchError, match="finetune_steps|No finished"):
        open_text_vectors({**config.final_config_dict, "finetune_steps": 99}, tiny_chain.split[0], build=False)
    with pytest.raises(ConfigurationError, match="hnlm_encoder='tuned' is invalid"):
        train_recommender(tiny_chain, "tuned")


def test_tilde_disables_a_filter_instead_of_falling_back_to_its_default(tiny_chain):
    # ~ on the command line is None; the settings once dropped None values and so took finetune.yaml's 0.9 again.
    disabled = {"finetune_semantic_similarity": None, "finetune_score_quantile": None, "finetune_torch_threads": None}
    chain = ChainRun(tiny_chain.dataset, {**tiny_chain.config_dict, **disabled})
    settings = chain.settings
    assert (settings.semantic_similarity, settings.score_quantile, settings.torch_threads) == (None, None, None)
    assert settings.cf_similarity == tiny_chain.settings.cf_similarity is not None
    assert chain.paths.mined_id != tiny_chain.paths.mined_id


def test_command_line_values_and_bad_input(tiny_chain, capsys):
    assert parse_settings(["--finetune_learning_rate=1e-4", "--finetune_pooling=~", "--llm=template"]) == {
        "finetune_learning_rate": 1e-4,
        "finetune_pooling": None,
        "llm": "template",
    }
    assert main(["mine", "--dataset", tiny_chain.dataset, *command_line(tiny_chain), "--finetune_max_pairs=0"]) == 2
    assert "finetune_max_pairs=0 is invalid" in capsys.readouterr().err
