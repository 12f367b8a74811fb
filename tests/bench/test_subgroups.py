"""Sparse-user and long-tail test metrics: equal to RecBole's overall, exact subgroups, the bench and the report."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_hnlm import quick_start
from recbole_hnlm.bench.__main__ import main as bench_main
from recbole_hnlm.bench.subgroups import (
    checkpoint_subgroup_metrics,
    long_tail_items,
    per_user_metrics,
    sparse_users,
    subgroup_columns,
    training_counts,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]

QUIET = {"state": "ERROR", "show_progress": False}
# One BPR epoch at a learning rate at which it moves; large batches keep the run to a few seconds.
FAST = {"epochs": 1, "learning_rate": 0.01, "train_batch_size": 4096, "torch_threads": 1}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real 1-epoch BPR + uniform run on ml-100k, its checkpoint kept."""
    root = tmp_path_factory.mktemp("subgroups")
    before = os.getcwd()
    os.chdir(root)  # RecBole's logger writes log/ under the working directory
    threads = torch.get_num_threads()
    try:
        yield quick_start.run(
            "BPR",
            "ml-100k",
            config_dict={**QUIET, **FAST, "neg_sampler": "uniform", "checkpoint_dir": str(root), "results_dir": None},
        )
    finally:
        torch.set_num_threads(threads)
        os.chdir(before)


def test_overall_metrics_equal_recboles_test_result_and_the_sparse_users_are_the_lowest_quartile(tiny_run):
    metrics = checkpoint_subgroup_metrics(tiny_run["checkpoint"])
    decimals = 4  # RecBole rounds its results to metric_decimal_place
    assert round(metrics["recall@20"], decimals) == tiny_run["test_result"]["recall@20"]
    assert round(metrics["ndcg@20"], decimals) == tiny_run["test_result"]["ndcg@20"]
    assert metrics["test_users"] == 943 and metrics["sparse_users"] == math.ceil(943 / 4)
    assert metrics["head_items"] == math.ceil(0.2 * 1682) and metrics["long_tail_items"] == 1682 - metrics["head_items"]
    assert 0 <= metrics["recall@20_long_tail"] < metrics["recall@20"]  # popular items dominate a BPR top 20

    _, _, _, train_data, _, test_data = quick_start.load_data_and_model(tiny_run["checkpoint"])
    train = train_data._dataset
    counts = training_counts(train, train.uid_field, train.user_num)
    users = np.asarray(test_data.uid_list)
    sparse = sparse_users(users, counts)
    rest = np.setdiff1d(users, sparse)
    assert len(sparse) == math.ceil(len(users) / 4)
    assert counts[sparse].max() <= counts[rest].min()  # nobody outside the quartile has fewer interactions
    assert counts[sparse].max() == metrics["sparse_user_max_train_interactions"]


def test_sparse_users_break_ties_by_id():
    counts = np.array([0, 5, 1, 1, 1, 9, 2, 7, 8])
    assert sparse_users(np.arange(1, 9), counts).tolist() == [2, 3]  # ceil(8 / 4) = 2 of the three with 1


class FixedScores(torch.nn.Module):
    """A model whose full-sort scores are given."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores

    def full_sort_predict(self, interaction):
        return self.scores[interaction["user_id"]].flatten()


class OneBatch:
    """What per_user_metrics reads of RecBole's FullSortEvalDataLoader, holding one batch."""

    class Dataset:
        item_num = 6
        uid_field = "user_id"

    def __init__(self, users: list[int], positives: dict[int, list[int]]) -> None:
        self.config = {"topk": [2], "device": "cpu"}
        self._dataset = self.Dataset()
        rows = [(row, item) for row, user in enumerate(users) for item in positives[user]]
        self.batch = (
            Interaction({"user_id": torch.tensor(users)}),
            None,
            torch.tensor([row for row, _ in rows]),
            torch.tensor([item for _, item in rows]),
        )

    def __iter__(self):
        return iter([self.batch])


def test_long_tail_recall_and_ndcg_on_a_hand_made_case():
    # Item 1 is the head (ceil(0.2 * 5) = 1 of items 1-5, the most trained); 2-5 are long-tail.
    tail = long_tail_items(np.array([0, 10, 5, 1, 1, 0]))
    assert tail.tolist() == [False, False, True, True, True, True]
    scores = torch.zeros(4, 6)
    scores[1] = torch.tensor([0.0, 5, 4, 3, 2, 1])  # top 2: items 1, 2
    scores[2] = torch.tensor([0.0, 4, 5, 3, 2, 1])  # top 2: items 2, 1
    scores[3] = torch.tensor([0.0, 5, 4, 3, 2, 1])
    positives = {1: [1, 3, 5], 2: [2, 4], 3: [1]}
    found = per_user_metrics(FixedScores(scores), OneBatch([1, 2, 3], positives), tail, k=2)
    assert found["user"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(found["recall"], [1 / 3, 1 / 2, 1])
    # User 1: its long-tail positives 3 and 5 are outside the top 2; user 2: item 2 at rank 1, item 4 missed;
    # user 3 has no long-tail positive, so it has no long-tail value.
    np.testing.assert_allclose(found["tail_recall"][:2], [0.0, 0.5])
    assert np.isnan(found["tail_recall"][2]) and np.isnan(found["tail_ndcg"][2])
    np.testing.assert_allclose(found["tail_ndcg"][:2], [0.0, 1 / (1 + 1 / math.log2(3))])
    assert float(np.nanmean(found["tail_recall"])) == pytest.approx(0.25)


def test_the_bench_adds_subgroup_columns_only_when_asked(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["--models=BPR", "--samplers=uniform", "--datasets=ml-100k", "--name=sub"]
    argv += [f"--{key}={value}" for key, value in FAST.items() if key != "torch_threads"]
    assert bench_main([*argv, "--subgroups"]) == 0
    out = tmp_path / "results" / "sub"
    with open(out / "runs.csv", newline="") as stream:
        (row,) = list(csv.DictReader(stream))
    # The same run as the fixture's (same settings and seed), so the same subgroup numbers.
    expected = checkpoint_subgroup_metrics(tiny_run["checkpoint"])
    for column in subgroup_columns():
        assert float(row[column]) == pytest.approx(expected[column])
    assert float(row["recall@20"]) == tiny_run["test_result"]["recall@20"]
    assert "recall@20_sparse_users" in (out / "table.md").read_text()
    assert json.loads((out / "manifest.json").read_text())["matrix"]["subgroups"] is True

    monkeypatch.setattr(quick_start, "run", lambda **kwargs: pytest.fail("a finished run was run again"))
    assert bench_main([*argv, "--subgroups"]) == 0
    assert "0 run(s) done, 1 skipped" in capsys.readouterr().out


def load_report_script():
    spec = importlib.util.spec_from_file_location("hnlmrec_report", PROJECT_ROOT / "benchmarks" / "hnlmrec_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_report_writes_its_table_json_and_plot_from_runs(tiny_run, tmp_path, monkeypatch, capsys):
    report = load_report_script()
    metrics = {**tiny_run["test_result"], **checkpoint_subgroup_metrics(tiny_run["checkpoint"])}

    def one_run_per_variant(label, variant, args, settings, chain_settings, out):
        """The tiny run's row for each seed, with hnlm-finetuned made better, instead of training five models."""
        rows = []
        for seed in (2020, 2021):
            row = {"model": args.model, "sampler": label, "dataset": "ml-100k", "seed": str(seed)}
            scale = 1.2 if label == "hnlm-finetuned" else 1.0 + 0.01 * (seed - 2020)
            row.update({metric: str(metrics[metric] * scale) for metric in report.METRICS})
            rows.append({**row, "seconds_per_epoch": "1.0", "config_hash": label, "status": "ok", "error": ""})
        return rows

    chain_calls = []

    def canned_chain(dataset, seed, chain_settings):
        chain_calls.append((dataset, seed, chain_settings["llm"], chain_settings["finetune_encoder"]))
        mined = {"false_hard_negative_rate": 0.02, "false_hard_negative_rate_unfiltered_top1": 0.2, "pairs": 9}
        untuned = {"generated": {"false_hard_negative_rate_at_1": 0.1, "false_hard_negative_rate_at_k": 0.08}}
        finetuned = {
            "k": 5,
            "generated": {
                "false_hard_negative_rate_at_1": 0.05,
                "false_hard_negative_rate_at_k": 0.04,
                "uniform_rate_same_units": 0.01,
                "units_in_budget": 500,
            },
        }
        return report.false_hard_negatives(mined, untuned, finetuned, {"losses": [2.0, 1.5]})

    monkeypatch.setattr(report, "run_variant", one_run_per_variant)
    monkeypatch.setattr(report, "prepare_chain", canned_chain)
    assert report.main(["--smoke", "--out", str(tmp_path), "--mixing", "dins"]) == 0
    assert chain_calls == [("ml-100k", 2020, "template", "minilm")]
    table = (tmp_path / "table.md").read_text()
    assert table in capsys.readouterr().out
    for label in ("uniform", "dns", "dins", "hnlm-untuned", "hnlm-finetuned"):
        assert f"| LightGCN | {label} | 2 |" in table
    assert "recall@20_long_tail" in table and "ndcg@20_sparse_users" in table
    assert "| ml-100k | 1 | 0.2000 | 0.0200 | 0.1000 | 0.0500 | 0.0800 | 0.0400 | 0.0100 | 500 |" in table
    assert "beats every traditional sampler on recall@20: **holds**" in table
    data = json.loads((tmp_path / "report.json").read_text())
    tuned = data["metrics"]["ml-100k"]["hnlm-finetuned"]["recall@20"]
    assert tuned["mean"] == pytest.approx(metrics["recall@20"] * 1.2)
    assert set(tuned["per_seed"]) == {"2020", "2021"} and tuned["p_vs_uniform"] is not None
    assert data["false_hard_negatives"]["ml-100k"]["2020"]["finetuned_at_1"] == 0.05
    assert data["settings"] == {"epochs": 2} and data["chain_settings"]["finetune_steps"] == 5
    assert (tmp_path / "recall_by_variant.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
