"""The benchmark table: mean ± std, best in bold, the paired test against uniform and its n/a, the time split."""

from __future__ import annotations

import pytest
from scipy.stats import ttest_rel

from recbole_hnlm.bench.report import (
    _frame,
    markdown_table,
    paired_p_values,
    plot_recall_per_label,
    time_split_table,
    write_report,
)

UNIFORM = [0.20, 0.22, 0.21]
DNS = [0.25, 0.28, 0.26]  # better on every seed
POP = [0.21, 0.20, 0.23]  # no consistent difference


def rows(sampler: str, recalls: list[float], model: str = "BPR", seconds: float = 1.0) -> list[dict]:
    return [
        {
            "model": model,
            "sampler": sampler,
            "dataset": "ml-100k",
            "seed": str(2020 + index),
            "recall@20": str(recall),
            "ndcg@20": str(recall / 2),
            "seconds_per_epoch": str(seconds),
            "total_seconds": "10",
            "load_seconds": "1",
            "sampling_seconds": "2",
            "train_seconds": "4",
            "eval_seconds": "2",
            "config_hash": f"{model}-{sampler}",
            "status": "ok",
            "error": "",
        }
        for index, recall in enumerate(recalls)
    ]


def test_the_paired_test_matches_scipy_and_marks_significant_cells():
    frame = _frame(rows("uniform", UNIFORM, seconds=1.0) + rows("dns", DNS, seconds=3.0) + rows("popularity", POP))
    p_values = paired_p_values(frame, "recall@20")
    assert p_values["ml-100k", "BPR", "dns"] == pytest.approx(ttest_rel(DNS, UNIFORM).pvalue)
    assert p_values["ml-100k", "BPR", "popularity"] == pytest.approx(ttest_rel(POP, UNIFORM).pvalue)
    table = markdown_table(frame, "recall@20")
    lines = {line.split(" | ")[1]: line for line in table.splitlines() if line.startswith("| BPR |")}
    assert "| **0.2633 ± 0.0153** † |" in lines["dns"]  # best and significant
    assert "†" not in lines["popularity"]
    assert lines["uniform"].endswith("| **1.00 ± 0.00** | — |")  # the fastest epoch in bold, no test against itself
    assert lines["dns"].endswith(f"| {ttest_rel(DNS, UNIFORM).pvalue:.3g} |")
    assert "paired t-test over seeds, scipy.stats.ttest_rel" in table and "(ml-100k: 3 seed(s))" in table


def test_fewer_than_two_paired_seeds_say_n_a():
    frame = _frame(rows("uniform", UNIFORM[:1]) + rows("dns", DNS[:1]) + rows("dns", DNS, model="LightGCN"))
    table = markdown_table(frame, "recall@20")
    bpr_dns = next(line for line in table.splitlines() if line.startswith("| BPR | dns |"))
    assert bpr_dns.endswith("| n/a |") and "| **0.2500** |" in bpr_dns  # one seed: no std, no test
    lightgcn = next(line for line in table.splitlines() if line.startswith("| LightGCN | dns |"))
    assert lightgcn.endswith("| n/a |")  # no uniform run for LightGCN
    assert "**" not in lightgcn  # nothing to compare with within LightGCN


def test_the_time_split_adds_up_and_failed_runs_stay_out(tmp_path):
    failed = {**rows("dns", [0.3])[0], "status": "failed", "recall@20": "", "error": "RuntimeError: x"}
    outcome = write_report(rows("uniform", UNIFORM) + [failed], tmp_path, "recall@20")
    split = time_split_table(_frame(rows("uniform", UNIFORM)))
    assert "| data loading (read, split, dataloaders) | 3.0 | 10.0% |" in split
    assert "| other (configs, model set-up, checkpoints, logging) | 3.0 | 10.0% |" in split
    assert "| **total** (3 runs) | 30.0 | 100% |" in split
    assert "| BPR | dns |" not in outcome["markdown"]
    assert (tmp_path / "metric_by_sampler.png").is_file() and (tmp_path / "time_vs_metric.png").is_file()


def test_recall_bars_mark_a_reference_only_where_there_is_one(tmp_path):
    summary = [
        {"dataset": "beauty-dens", "sampler": "uniform", "recall@20": 0.034, "recall@20_std": 0.001, "ref": 0.0385},
        {"dataset": "beauty-dens", "sampler": "ahns", "recall@20": 0.039, "recall@20_std": 0.002, "ref": None},
        {"dataset": "toy-dens", "sampler": "uniform", "recall@20": 0.041, "recall@20_std": 0.0, "ref": None},
    ]
    plot_recall_per_label(summary, "sampler", tmp_path / "with.png", reference_key="ref")
    plot_recall_per_label(summary, "sampler", tmp_path / "without.png")
    for name in ("with.png", "without.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "with.png").read_bytes() != (tmp_path / "without.png").read_bytes()


def test_a_half_written_last_row_is_dropped_and_its_run_recorded_once(tmp_path):
    import os

    from recbole_hnlm.bench.runs_file import RunsFile

    path = tmp_path / "runs.csv"
    header = "model,sampler,dataset,seed,recall@20,config_hash,status,error"
    path.write_text(f"{header}\nBPR,uniform,ml-100k,2020,0.2,aaa,ok,\nBPR,dns,ml-100k,2020,0.21\n")
    runs = RunsFile(path)
    assert runs.dropped_rows == 1 and [row["sampler"] for row in runs.rows] == ["uniform"]
    runs.record(
        {
            "model": "BPR",
            "sampler": "dns",
            "dataset": "ml-100k",
            "seed": 2020,
            "recall@20": 0.21,
            "config_hash": "bbb",
            "status": "ok",
            "error": "",
        }
    )
    again = RunsFile(path)
    assert again.dropped_rows == 0 and sorted(row["sampler"] for row in again.rows) == ["dns", "uniform"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the user's umask, not mkstemp's 0600
