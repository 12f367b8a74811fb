"""Ray Tune searches: a real local 2-trial search on ml-100k, and bad input refused before Ray starts."""

from __future__ import annotations

import importlib.util
import json
import socket
import time
from pathlib import Path

import pytest
import torch

from recbole_hnlm import compat
from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.errors import ClusterUnreachableError, ConfigurationError
from recbole_hnlm.paths import PROPERTIES_DIR
from recbole_hnlm.ray_cluster import check_ray_address
from recbole_hnlm.tuning.search import SearchSettings, run_search, trial_base

REPO = Path(__file__).resolve().parents[2]
SPACES = PROPERTIES_DIR / "tune"
ray = pytest.importorskip("ray")

_script = importlib.util.spec_from_file_location("run_recbole_hnlm", REPO / "run_recbole_hnlm.py")
run_recbole_hnlm = importlib.util.module_from_spec(_script)
_script.loader.exec_module(run_recbole_hnlm)


def closed_loopback_address() -> str:
    """host:port on this machine where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


def test_a_real_local_search_runs_two_one_epoch_trials_and_saves_the_best(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [
        "--model=BPR",
        "--dataset=ml-100k",
        "--neg_sampler=uniform",
        f"--tune={SPACES / 'uniform.yaml'}",
        "--num_samples=2",
        "--num_cpus=2",
        "--epochs=1",
        "--train_batch_size=4096",
        "--name=two-trials",
    ]
    assert run_recbole_hnlm.main(argv) == 0
    assert not ray.is_initialized()  # the search shut down the Ray it started
    printed = capsys.readouterr().out
    assert "BPR + uniform on ml-100k: best of 2 trials" in printed and "test recall@20" in printed
    best = json.loads((tmp_path / "results" / "tune" / "two-trials" / "best.json").read_text())
    assert best["metric"] == "recall@20" and best["mode"] == "max" and len(best["trials"]) == 2
    assert set(best["best_config"]) == {"learning_rate"} and 1e-4 <= best["best_config"]["learning_rate"] <= 1e-2
    assert 0 < best["test_result"]["recall@20"] <= 1 and best["best_epoch"] == 0
    finished = [trial for trial in best["trials"] if trial["status"] == "finished"]
    assert finished and all(trial["validations"] == 1 and trial["test_result"] for trial in finished)
    assert best["best_valid_score"] == max(trial["valid_score"] for trial in finished)
    assert best["search"]["gpus_per_trial"] == (1 if torch.cuda.is_available() else 0)  # none asked where none is
    assert best["search"]["scheduler"] == "ASHA"
    assert Path(best["ray_results"]).is_dir() and Path(best["checkpoint"]).is_file()


def test_trials_get_the_data_and_the_llm_cache_as_absolute_paths(tmp_path, monkeypatch):
    """Ray runs a trial in its own folder: a relative llm_cache_dir there would be a fresh, empty cache per trial."""
    monkeypatch.chdir(tmp_path)
    cmd_args = ["--llm_cache_dir=shared-cache", "--epochs=2", f"--data_path={REPO / 'dataset'}"]
    config = HNLMConfig("BPR", "ml-100k", config_dict={"state": "ERROR"}, cmd_args=cmd_args)
    base = trial_base("BPR", "ml-100k", config, [], cmd_args, threads=1)
    assert base["config_dict"]["llm_cache_dir"] == str(tmp_path / "shared-cache")
    assert Path(base["config_dict"]["data_path"]).is_absolute()
    assert base["cmd_args"] == ["--epochs=2"]  # the paths travel resolved, not as the user wrote them
    trial = HNLMConfig("BPR", "ml-100k", config_dict=base["config_dict"], cmd_args=base["cmd_args"])
    monkeypatch.chdir(tmp_path.parent)
    assert trial["llm_cache_dir"] == str(tmp_path / "shared-cache") and trial["epochs"] == 2
    # Without the LLM side the search's own config has no llm_cache_dir; a trial that filters by text opens the default.
    monkeypatch.chdir(tmp_path)
    plain = HNLMConfig("BPR", "ml-100k", config_dict={"state": "ERROR"}, cmd_args=["--neg_sampler=dns"])
    assert plain["llm_cache_dir"] is None
    base = trial_base("BPR", "ml-100k", plain, [], ["--neg_sampler=dns"], threads=1)
    filtering = HNLMConfig(
        "BPR", "ml-100k", config_dict={**base["config_dict"], "text_filter": "user"}, cmd_args=base["cmd_args"]
    )
    assert filtering["llm_cache_dir"] == str(tmp_path / "cache")


def test_an_unreachable_ray_address_fails_fast_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    address = closed_loopback_address()
    started = time.perf_counter()
    argv = ["--model=BPR", f"--tune={SPACES / 'dns.yaml'}", f"--ray_address={address}", "--neg_sampler=dns"]
    assert run_recbole_hnlm.main(argv) == 2
    assert time.perf_counter() - started < 15
    assert f"No Ray cluster answers at {address}" in capsys.readouterr().err
    assert not ray.is_initialized()
    with pytest.raises(ClusterUnreachableError, match="ray://127.0.0.1"):
        check_ray_address(f"ray://{address}", timeout_s=2)
    with pytest.raises(ConfigurationError, match="is not host:port"):
        check_ray_address("my-cluster", timeout_s=2)


def test_ray_address_without_tune_is_refused(capsys):
    assert run_recbole_hnlm.main(["--ray_address=auto"]) == 2
    assert "add --tune=<space.yaml>" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("space", "cmd_args", "settings", "message"),
    [
        ("ahns_alfa: {uniform: [0.1, 2.0]}", [], {}, "unknown parameter(s) 'ahns_alfa' (did you mean ahns_alpha"),
        ("ahns_alpha: {uniform: [2.0, 0.1]}", [], {}, "empty range"),
        ("learning_rate: {loguniform: [1e-4, 1e-2]}", ["--learning_rate=0.01"], {}, "--learning_rate is given on"),
        ("learning_rate: {loguniform: [1e-4, 1e-2]}", ["--epochs=1"], {"grace_period": 2}, "fewer than ASHA's grace"),
        ("learning_rate: {loguniform: [1e-4, 1e-2]}", [], {"num_samples": 0}, "--num_samples=0 runs no trial"),
        ("learning_rate: {loguniform: [1e-4, 1e-2]}", [], {"ray_address": "nowhere"}, "is not host:port"),
    ],
)
def test_bad_searches_are_refused_before_ray_starts(space, cmd_args, settings, message, tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(space)
    with pytest.raises(ConfigurationError) as caught:
        run_search(
            "LightGCN",
            "ml-100k",
            str(path),
            cmd_args=["--neg_sampler=ahns", *cmd_args],
            settings=SearchSettings(**settings),
        )
    assert message in str(caught.value)
    assert not ray.is_initialized()


def test_a_trial_keeps_the_gpus_ray_gave_it(monkeypatch):
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [2, 3])
    assert compat.ray_trial_gpu_id() == "2,3"
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])
    assert compat.ray_trial_gpu_id() == ""  # RecBole then runs on CPU
