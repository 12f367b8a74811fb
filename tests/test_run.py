"""Real training runs on ml-100k: every sampler, the supported models, epoch selection, seeds, reloading."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recbole_hnlm.compat import load_recbole_checkpoint
from recbole_hnlm.config import LATER_SETTINGS, HNLMConfig, config_fingerprint
from recbole_hnlm.quick_start import load_data_and_model, run
from recbole_hnlm.samplers import SAMPLER_REGISTRY, NegativeSampler, register_sampler
from recbole_hnlm.trainer import create_trainer

REPO = Path(__file__).resolve().parents[1]
BUILT_IN = ["uniform", "popularity", "dns", "dns_mn", "ahns"]
METRICS = {f"{metric}@{k}" for metric in ("recall", "ndcg", "mrr", "hit") for k in (10, 20)}
# Test Recall@20 of an untrained model on ml-100k is about 0.01; one epoch must clearly beat it.
TRAINED_RECALL = {"BPR": 0.05, "LightGCN": 0.12}


@pytest.mark.parametrize("model", ["BPR", "LightGCN"])
@pytest.mark.parametrize("sampler", BUILT_IN)
def test_every_sampler_trains_bpr_and_lightgcn(model, sampler, run_settings):
    settings = {**run_settings, "epochs": 1, "neg_sampler": sampler}
    if model == "BPR":
        settings["learning_rate"] = 0.01  # BPR at RecBole's 1e-3 barely moves in one epoch
    result = run(model, "ml-100k", config_dict=settings)
    assert set(result["test_result"]) == METRICS
    assert result["test_result"]["recall@20"] > TRAINED_RECALL[model]
    assert result["neg_sampler"] == sampler and result["best_epoch"] == 0
    saved = json.loads(Path(result["results_file"]).read_text())
    assert saved["test_result"] == result["test_result"]


@pytest.mark.parametrize("model", ["NGCF", "SGL", "SimpleX", "DGCF", "LINE", "SpectralCF"])
def test_pairwise_models_train_with_a_model_scored_sampler(model, run_settings, ml100k_slice):
    settings = {**run_settings, "epochs": 2, "neg_sampler": "dns", "candidate_num": 8, "data_path": ml100k_slice}
    if model == "SimpleX":
        settings["sample_num"] = 3  # SimpleX reshapes its negatives by sample_num
    if model == "DGCF":
        settings["train_batch_size"] = 512  # DGCF samples max(users, items) / batches users: needs many batches
    result = run(model, "ml-100k-slice", config_dict=settings)
    assert set(result["test_result"]) == METRICS
    assert len(result["train_loss"]) == 2 and result["train_loss"][1] < result["train_loss"][0]


def test_epoch_is_selected_on_validation_and_test_uses_that_checkpoint(run_settings):
    settings = {**run_settings, "epochs": 4, "neg_sampler": "dns", "learning_rate": 0.01}
    result = run("BPR", "ml-100k", config_dict=settings)
    config, model, _, _, valid_data, test_data = load_data_and_model(result["checkpoint"])
    trainer = create_trainer(config, model)
    valid_again = trainer.evaluate(valid_data, load_best_model=False)
    test_again = trainer.evaluate(test_data, load_best_model=False)
    assert dict(valid_again) == result["valid_result"]
    assert dict(test_again) == result["test_result"]
    assert result["best_valid_score"] == result["valid_result"]["recall@20"]


def test_a_checkpoint_trained_on_a_gpu_reloads_where_there_is_none(run_settings):
    result = run("LightGCN", "ml-100k", config_dict={**run_settings, "epochs": 1})
    checkpoint = load_recbole_checkpoint(result["checkpoint"])
    assert checkpoint["other_parameter"]["restore_user_e"] is not None  # the cached tables travel in the checkpoint
    checkpoint["config"]["device"] = torch.device("cuda")  # as RecBole's Config sets it on a GPU machine
    torch.save(checkpoint, result["checkpoint"])
    config, model, _, _, _, test_data = load_data_and_model(result["checkpoint"])
    here = "cuda" if torch.cuda.is_available() else "cpu"
    assert config["device"].type == here and model.restore_user_e.device.type == here
    assert next(model.parameters()).device.type == here
    assert dict(create_trainer(config, model).evaluate(test_data, load_best_model=False)) == result["test_result"]


def test_same_seed_gives_identical_runs(run_settings):
    settings = {**run_settings, "epochs": 2, "neg_sampler": "ahns", "results_dir": None}
    first = run("LightGCN", "ml-100k", config_dict=settings)
    second = run("LightGCN", "ml-100k", config_dict=settings)
    assert first["test_result"] == second["test_result"] and first["train_loss"] == second["train_loss"]
    a = load_recbole_checkpoint(first["checkpoint"])["state_dict"]
    b = load_recbole_checkpoint(second["checkpoint"])["state_dict"]
    # Multi-threaded sparse propagation may sum in another order: equal up to float rounding, not bitwise.
    assert all(torch.allclose(a[key], b[key], rtol=0, atol=1e-6) for key in a)
    third = run("LightGCN", "ml-100k", config_dict={**settings, "seed": 7})
    assert third["train_loss"] != first["train_loss"]


def test_a_user_registered_sampler_is_selected_by_its_name(run_settings, ml100k_slice):
    class FirstUnseenSampler(NegativeSampler):
        """Always the lowest-numbered item the user has not trained on."""

        name = "first_unseen"

        def sample(self, user_ids, item_ids, num, model=None):
            users = user_ids.numpy()
            picked = torch.ones(num, len(users), dtype=torch.long)
            while True:
                clash = torch.from_numpy(self.positives.contains(users, picked.numpy()))
                if not clash.any():
                    return picked
                picked[clash] += 1

    register_sampler(FirstUnseenSampler)
    try:
        result = run(
            "BPR",
            "ml-100k-slice",
            config_dict={**run_settings, "epochs": 1, "neg_sampler": "first_unseen", "data_path": ml100k_slice},
        )
    finally:
        del SAMPLER_REGISTRY["first_unseen"]
    assert result["neg_sampler"] == "first_unseen"


def test_run_script_trains_and_prints_test_metrics(tmp_path):
    command = [
        sys.executable,
        str(REPO / "run_recbole_hnlm.py"),
        "--model=LightGCN",
        "--dataset=ml-100k",
        "--neg_sampler=dns",
        "--epochs=1",
        "--candidate_num=8",
        "--state=ERROR",
        f"--checkpoint_dir={tmp_path / 'saved'}",
        f"--results_dir={tmp_path / 'results'}",
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LightGCN + dns on ml-100k" in done.stdout and "test recall@20" in done.stdout
    saved = json.loads(next((tmp_path / "results").glob("*.json")).read_text())
    assert saved["candidate_num"] == 8 and saved["epochs"] == 1


def test_docs_sampler_example_runs_as_written(run_settings, ml100k_slice, monkeypatch):
    extending = (REPO / "docs" / "extending.md").read_text()
    start = extending.index("```python\nimport numpy as np")
    snippet = extending[start + len("```python\n") : extending.index("```", start + 10)]
    import recbole_hnlm.quick_start as quick_start

    real_run = quick_start.run

    def small_run(model, dataset, config_dict):
        # Same call as docs/extending.md's, on the ml-100k slice with one epoch to keep the suite fast.
        return real_run(
            model, "ml-100k-slice", config_dict={**config_dict, **run_settings, "epochs": 1, "data_path": ml100k_slice}
        )

    monkeypatch.setattr(quick_start, "run", small_run)
    namespace: dict = {}
    try:
        exec(compile(snippet, "docs/extending.md", "exec"), namespace)
    finally:
        SAMPLER_REGISTRY.pop("least_popular", None)
    assert namespace["result"]["neg_sampler"] == "least_popular"


@pytest.mark.parametrize(
    ("key", "other_value", "base"),
    [
        ("refit_with_valid", True, {}),
        ("ahns_similarity", "cos", {}),
        ("text_filter", "user", {}),
        ("text_filter_quantile", 0.5, {"text_filter": "user"}),  # a knob matters only with the filter on
    ],
)
def test_a_setting_added_later_keeps_old_config_hashes_at_its_old_behaviour(key, other_value, base):
    settings = {"state": "ERROR", "neg_sampler": "ahns", **base}
    config = HNLMConfig("LightGCN", "ml-100k", config_dict={**settings, key: LATER_SETTINGS[key]})
    fingerprint = config_fingerprint(config)
    del config.final_config_dict[key]  # as a config made before the setting existed
    assert config_fingerprint(config) == fingerprint
    changed = HNLMConfig("LightGCN", "ml-100k", config_dict={**settings, key: other_value})
    assert config_fingerprint(changed) != fingerprint


def test_the_filters_knobs_are_out_of_the_hash_while_the_filter_is_off():
    """A run without the filter hashes the same at any knob value (the default quantile moved 0.75 -> 0.93 without
    orphaning finished runs); with the filter on, the new default is a different run from the old one."""
    settings = {"state": "ERROR", "neg_sampler": "dns"}
    off = HNLMConfig("LightGCN", "ml-100k", config_dict=settings)
    assert off["text_filter"] == "none" and off["text_filter_quantile"] == 0.93
    knobs = {"text_filter_quantile": 0.5, "text_filter_mode": "downweight", "text_filter_weight": 0.9}
    assert config_fingerprint(HNLMConfig("LightGCN", "ml-100k", config_dict={**settings, **knobs})) == (
        config_fingerprint(off)
    )
    on = {**settings, "text_filter": "user"}
    old_default = HNLMConfig("LightGCN", "ml-100k", config_dict={**on, "text_filter_quantile": 0.75})
    assert config_fingerprint(HNLMConfig("LightGCN", "ml-100k", config_dict=on)) != config_fingerprint(old_default)


def test_a_dataset_can_set_one_samplers_defaults_and_the_user_still_wins():
    # properties/dataset/beauty-dens/dns.yaml: the DENS code's 6 candidates for DNS on its split, not for DINS
    dns = HNLMConfig("LightGCN", "beauty-dens", config_dict={"state": "ERROR", "neg_sampler": "dns"})
    assert dns["candidate_num"] == 6
    assert dns["n_layers"] == 3  # properties/dataset/beauty-dens.yaml still applies
    dins = HNLMConfig("LightGCN", "beauty-dens", config_dict={"state": "ERROR", "neg_sampler": "dins"})
    assert dins["candidate_num"] == 16
    elsewhere = HNLMConfig("LightGCN", "ml-100k", config_dict={"state": "ERROR", "neg_sampler": "dns"})
    assert elsewhere["candidate_num"] == 16
    asked = HNLMConfig(
        "LightGCN", "beauty-dens", config_dict={"state": "ERROR", "neg_sampler": "dns"}, cmd_args=["--candidate_num=16"]
    )
    assert asked["candidate_num"] == 16
