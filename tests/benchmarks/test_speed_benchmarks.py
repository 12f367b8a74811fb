"""The speed and scale benchmarks as a user runs them: their files, their caps, and a clear exit without data."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / name), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=600)


@pytest.mark.parametrize(
    ("data", "message"),
    [("missing", "is not a folder"), ("empty", "needs its source files ml-1m-ahns/train.txt")],
)
def test_scale_without_the_data_exits_2_and_says_how_to_fix(data, message, tmp_path):
    folder = tmp_path / data
    if data == "empty":
        folder.mkdir()
    result = run_script(
        "scale.py", "--datasets", "ml-1m-ahns", "--data", str(folder), "--dataset_dir", str(tmp_path / "imported")
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "--data" in result.stderr
    assert not (tmp_path / "imported").exists()


def test_scale_smoke_run_writes_csv_table_and_plot_with_capped_epochs(tmp_path):
    result = run_script(
        "scale.py",
        "--datasets",
        "ml-100k",
        "--samplers",
        "uniform",
        "dns",
        "--epochs",
        "2",
        "--max_batches",
        "2",
        "--batch_sizes",
        "4096",
        "--out",
        str(tmp_path),
        "--tag",
        "smoke",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / "smoke.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["sampler"], row["train_batch_size"]) for row in rows] == [
        ("uniform", "2048"),
        ("dns", "2048"),
        ("uniform", "4096"),
    ]
    for row in rows:
        assert row["measured_batches"] == "2" and row["extrapolated"] == "True"
        assert int(row["batches_per_epoch"]) > 2 and float(row["seconds_per_epoch"]) > 0
        assert float(row["peak_rss_mib"]) > 100  # torch alone takes more
    table = (tmp_path / "smoke.md").read_text()
    assert "python benchmarks/scale.py --datasets ml-100k" in table and "(est.)" in table
    assert (tmp_path / "smoke.png").stat().st_size > 0


def test_sampler_speed_writes_every_epoch_and_the_ratio_table(tmp_path):
    result = run_script(
        "sampler_speed.py", "--rounds", "1", "--samplers", "uniform", "dns", "--out", str(tmp_path), "--tag", "smoke"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / "smoke.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["sampler"] for row in rows] == ["uniform", "dns"]  # one measured round, the warm-up dropped
    assert all(float(row["train_seconds"]) > 0 and float(row["cpu_seconds"]) > 0 for row in rows)
    table = (tmp_path / "smoke.md").read_text()
    assert "| ml-100k | LightGCN | 1 | uniform |" in table and "| 1.00x |" in table and "<= 1.15x" in table
