"""The one Config: every setting merged in one order, fingerprinted, and checked before any work."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import recbole_hnlm.config as config_module
from recbole_hnlm.config import HNLMConfig, config_fingerprint, recorded_settings, run_settings
from recbole_hnlm.errors import ConfigurationError, UnknownSettingError
from recbole_hnlm.hnlm import SemanticNegativeSampler
from recbole_hnlm.paths import PROPERTIES_DIR, properties_file

REPO = Path(__file__).resolve().parents[1]
QUIET = {"state": "ERROR", "show_progress": False}


def test_a_typo_is_refused_with_the_closest_setting():
    with pytest.raises(UnknownSettingError, match="'negsampler'.*did you mean neg_sampler"):
        HNLMConfig("BPR", "ml-100k", config_dict=QUIET, cmd_args=["--negsampler=dns"])


def test_settings_of_recbole_the_plugin_and_the_model_are_accepted():
    config = HNLMConfig(
        "LightGCN",
        "ml-100k",
        config_dict=QUIET,
        cmd_args=["--n_layers=2", "--stopping_step=5", "--candidate_num=8", "--hnlm_mix_weight=0.2", "--nproc=1"],
    )
    assert config["n_layers"] == 2 and config["stopping_step"] == 5


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("--epochs=0", "epochs=0 is invalid: it must be an integer >= 1"),
        ("--epochs=-3", "epochs=-3 is invalid"),
        ("--epochs=abc", "epochs='abc' is invalid: it must be an integer"),
        ("--epochs=2.0", "epochs=2.0 is invalid: it must be an integer"),
        ("--eval_step=0", "eval_step=0 is invalid"),
        ("--seed=abc", "seed='abc' is invalid: it must be an integer"),
        ("--learning_rate=0", "learning_rate=0 is invalid"),
        ("--learning_rate=fast", "learning_rate='fast' is invalid: it must be a number"),
        ("--topk=[10]", r"valid_metric=Recall@20 needs k=20 in topk=\[10\]"),
        ("--show_progress=maybe", "show_progress='maybe' is invalid: it must be True or False"),
    ],
)
def test_bad_values_are_refused_before_any_work(argument, message):
    with pytest.raises(ConfigurationError, match=message):
        HNLMConfig("BPR", "ml-100k", config_dict=QUIET, cmd_args=[argument])


def test_a_validation_metric_the_run_does_not_compute_is_refused():
    with pytest.raises(ConfigurationError, match="metrics=.*has no Precision"):
        HNLMConfig("BPR", "ml-100k", config_dict={**QUIET, "valid_metric": "Precision@20"})


def test_the_command_line_exits_2_before_loading_data():
    for argument, name in (("--negsampler=dns", "neg_sampler"), ("--epochs=0", "epochs"), ("--seed=abc", "seed")):
        done = subprocess.run(
            [sys.executable, str(REPO / "run_recbole_hnlm.py"), "--model=BPR", argument],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error:") and name in last
        assert "Loading" not in done.stdout + done.stderr and "epoch" not in done.stdout  # nothing loaded or trained


def test_the_llm_settings_are_merged_fingerprinted_and_recorded(tmp_path, monkeypatch):
    config = HNLMConfig("LightGCN", "ml-100k", config_dict={**QUIET, "neg_sampler": "hnlm"})
    assert config["model"] == "HNLMRec" and config["backbone"] == "LightGCN"
    assert config["llm_negative_k"] == 20 and config["finetune_lora_rank"] is not None
    assert "llm_negative_k" in recorded_settings(config) and "llm_negative_k" in run_settings(config)
    assert run_settings(config)["refit_with_valid"] is False  # recorded even where the fingerprint leaves it out

    changed = tmp_path / "llm.yaml"
    defaults = yaml.safe_load(properties_file("llm.yaml").read_text())
    changed.write_text(yaml.safe_dump({**defaults, "llm_negative_k": 30}))
    files = SemanticNegativeSampler.defaults_files()
    monkeypatch.setattr(SemanticNegativeSampler, "defaults_files", classmethod(lambda cls: [changed, *files[1:]]))
    other = HNLMConfig("LightGCN", "ml-100k", config_dict={**QUIET, "neg_sampler": "hnlm"})
    assert other["llm_negative_k"] == 30
    assert config_fingerprint(other) != config_fingerprint(config)


def test_a_plain_run_does_not_carry_the_llm_settings():
    config = HNLMConfig("BPR", "ml-100k", config_dict=QUIET)
    assert "llm_negative_k" not in config.final_config_dict


def test_the_wrapper_needs_its_sampler():
    with pytest.raises(ConfigurationError, match="model=HNLMRec trains on the batches of neg_sampler=hnlm"):
        HNLMConfig("HNLMRec", "ml-100k", config_dict={**QUIET, "neg_sampler": "dns"})


@pytest.mark.parametrize(
    ("command", "argv", "name"),
    [
        (
            "recbole_hnlm.llm.__main__",
            ["profiles", "--dataset=ml-100k", "--llm=template", "--llm_batchsize=3"],
            "llm_batch_size",
        ),
        ("recbole_hnlm.finetune.__main__", ["mine", "--dataset=ml-100k", "--finetune_step=3"], "finetune_steps"),
        ("recbole_hnlm.tuning.cli", ["--model=BPR", "--tune=dns", "--negsampler=dns"], "neg_sampler"),
    ],
)
def test_every_command_refuses_a_typo(command, argv, name, capsys):
    module = __import__(command, fromlist=["main"])
    assert module.main(argv) == 2
    assert f"did you mean {name}" in capsys.readouterr().err


def test_an_llm_cache_dir_that_is_a_file_is_refused_before_any_work(tmp_path):
    a_file = tmp_path / "cache"
    a_file.write_text("not a folder")
    with pytest.raises(ConfigurationError, match="is a file, so the cache folder cannot be made there.*Fix:"):
        HNLMConfig("BPR", "ml-100k", config_dict={**QUIET, "neg_sampler": "hnlm", "llm_cache_dir": str(a_file)})


def test_recboles_multi_gpu_mode_is_refused_by_the_config():
    with pytest.raises(ConfigurationError, match="multi-GPU mode \\(nproc=2\\).*Fix:"):
        HNLMConfig("BPR", "ml-100k", config_dict=QUIET, cmd_args=["--nproc=2"])


def test_settings_chosen_for_a_model_or_sampler_on_a_dataset_apply_there_only(tmp_path, monkeypatch):
    """properties/dataset/<dataset>/<Model>.yaml and <neg_sampler>.yaml (e.g. a Tune search's choice) reach the runs
    of that model or sampler on that dataset, and no other run."""
    properties = tmp_path / "properties"
    shutil.copytree(PROPERTIES_DIR, properties)
    chosen = properties / "dataset" / "ml-100k"
    chosen.mkdir(parents=True, exist_ok=True)
    (chosen / "BPR.yaml").write_text("learning_rate: 0.0123\n")
    (chosen / "dns.yaml").write_text("candidate_num: 7\n")
    monkeypatch.setattr(config_module, "PROPERTIES_DIR", properties)

    def config(model, sampler, dataset="ml-100k"):
        return HNLMConfig(model, dataset, config_dict={"neg_sampler": sampler, "state": "ERROR"})

    both = config("BPR", "dns")
    assert (both["learning_rate"], both["candidate_num"]) == (0.0123, 7)
    other_model = config("LightGCN", "dns")
    assert other_model["learning_rate"] != 0.0123 and other_model["candidate_num"] == 7
    other_sampler = config("BPR", "mixgcf")
    assert other_sampler["learning_rate"] == 0.0123 and other_sampler["candidate_num"] != 7
    # The command line still wins over a chosen setting.
    given = HNLMConfig("BPR", "ml-100k", config_dict={"neg_sampler": "dns", "state": "ERROR", "learning_rate": 0.5})
    assert given["learning_rate"] == 0.5
