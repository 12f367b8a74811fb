"""benchmarks/tune_summary.py: which trial is chosen, where its settings go, and the command that ran the search."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import tune_summary as ts  # noqa: E402


def trial(valid: float | None, status: str = "finished", **config) -> dict:
    validations = 60 if status == "finished" else 30
    return {"config": config, "status": status, "valid_score": valid, "validations": validations, "checkpoint": "/x"}


def search(model: str, sampler: str, space: dict, trials: list[dict], **extra) -> dict:
    finished = [entry for entry in trials if entry["status"] == "finished"]
    best = max(finished, key=lambda entry: entry["valid_score"])
    return {
        "model": model,
        "dataset": "ml-100k",
        "neg_sampler": sampler,
        "space_file": "/somewhere/checkout/results/tune-claims/hnlm.yaml",
        "space": space,
        "cmd_args": ["--neg_sampler=" + sampler, "--epochs=60", "--data_path=/somewhere/checkout/dataset"],
        "metric": "recall@20",
        "search": {
            "name": "a-search",
            "num_samples": len(trials),
            "grace_period": 10,
            "reduction_factor": 3,
            "num_cpus": 1,
            "max_validations": 60,
        },
        "best_config": best["config"],
        "best_valid_score": best["valid_score"],
        "test_result": {"recall@20": 0.5},
        "trials": trials,
        "checkpoint": "/x/y.pth",
        **extra,
    }


FILTER_SPACE = {"text_filter": {"choice": ["none", "user"]}, "text_filter_quantile": {"uniform": [0.5, 0.95]}}


def test_a_filter_search_won_by_no_filter_keeps_the_best_trial_that_filters():
    trials = [
        trial(0.35, text_filter="none", text_filter_quantile=0.7),
        trial(0.33, text_filter="user", text_filter_quantile=0.9),
        trial(0.34, status="stopped early", text_filter="user", text_filter_quantile=0.6),  # ran less: not chosen
        trial(0.30, text_filter="user", text_filter_quantile=0.5),
    ]
    found = search("LightGCN", "mixgcf", FILTER_SPACE, trials)
    settings, how = ts.chosen(found)
    assert settings == {"text_filter": "user", "text_filter_quantile": 0.9}
    assert "the best trial overall has text_filter none (valid 0.3500)" in how
    assert ts.settings_file(found) == "text_filter"


def test_other_searches_choose_their_best_trial_and_name_their_file():
    hnlm_trials = [
        trial(0.4, hnlm_mix_weight=0.0),  # the best: no semantic negative
        trial(0.33, status="stopped early", hnlm_mix_weight=0.05),
        trial(0.31, status="stopped early", hnlm_mix_weight=0.1),
    ]
    hnlm = search("LightGCN", "hnlm", {"hnlm_mix_weight": {}}, hnlm_trials)
    assert ts.settings_file(hnlm) == "hnlm"
    settings, how = ts.chosen(hnlm)  # no trial with the method on finished: the best of those that ran furthest
    assert settings == {"hnlm_mix_weight": 0.05} and "stopped early after 30 validations" in how
    dns = search("LightGCN", "dns", {"candidate_num": {}}, [trial(0.3, candidate_num=8), trial(0.2, candidate_num=4)])
    assert ts.chosen(dns) == ({"candidate_num": 8}, "the best trial on validation")
    alpharec = search("AlphaRec", "uniform", {"n_layers": {}}, [trial(0.3, n_layers=2)])
    assert ts.settings_file(alpharec) == "AlphaRec"


def test_the_command_and_the_properties_file(tmp_path, monkeypatch):
    found = search("LightGCN", "hnlm", {"hnlm_mix_weight": {}}, [trial(0.3, hnlm_mix_weight=0.2)])
    command = ts.search_command(found)
    assert command.startswith("python run_recbole_hnlm.py --model=LightGCN --dataset=ml-100k --neg_sampler=hnlm")
    assert "--tune=results/tune-claims/hnlm.yaml" in command and "--data_path" not in command  # the checkout's own
    monkeypatch.setattr(ts, "properties_file", lambda *parts: tmp_path.joinpath(*parts))
    best_file = tmp_path / "best.json"
    best_file.write_text(json.dumps(found))
    ts.main([str(best_file), "--out", str(tmp_path / "out"), "--write_properties"])
    written = tmp_path / "dataset" / "ml-100k" / "hnlm.yaml"
    assert yaml.safe_load(written.read_text()) == {"hnlm_mix_weight": 0.2}
    assert command in written.read_text()
    copy = json.loads((tmp_path / "out" / "searches" / "a-search.json").read_text())
    assert "checkpoint" not in copy and "checkpoint" not in copy["trials"][0]
    assert copy["space_file"] == "results/tune-claims/hnlm.yaml"
    page = (tmp_path / "out" / "searches.md").read_text()
    assert "| **0.2** | finished | 60 | 0.3000 |" in page


def test_a_search_not_applied_writes_no_file_and_says_why(tmp_path, monkeypatch):
    found = search("AlphaRec", "uniform", {"n_layers": {}}, [trial(0.29, n_layers=3)])
    monkeypatch.setattr(ts, "properties_file", lambda *parts: tmp_path.joinpath(*parts))
    best_file = tmp_path / "best.json"
    best_file.write_text(json.dumps(found))
    why = "the published settings score 0.349 on validation"
    ts.main([str(best_file), "--out", str(tmp_path / "out"), "--write_properties", "--not_applied", why])
    assert not (tmp_path / "dataset").exists()
    assert f"**not applied**: {why}." in (tmp_path / "out" / "searches.md").read_text()
