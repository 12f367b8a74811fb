"""The benchmark command on real ml-100k: files written, resume, failures recorded, Ctrl-C, bad input."""

from __future__ import annotations

import csv
import json

import pytest

from recbole_hnlm import quick_start
from recbole_hnlm.bench.__main__ import main
from recbole_hnlm.bench.matrix import FIRST_SEED, MatrixSpec
from recbole_hnlm.bench.runs_file import RunsFile, claim_run
from recbole_hnlm.config import HNLMConfig, config_fingerprint
from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.samplers import SAMPLER_REGISTRY, UniformSampler

METRICS = [f"{metric}@{k}" for metric in ("recall", "ndcg", "mrr", "hit") for k in (10, 20)]
# One epoch at a learning rate at which BPR moves; large batches keep each run to a few seconds.
FAST = ["--epochs=1", "--learning_rate=0.01", "--train_batch_size=4096"]


def read_rows(folder) -> list[dict]:
    with open(folder / "runs.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def refuse_to_run(**kwargs):
    raise AssertionError(f"a run started: {kwargs['model']} {kwargs['config_dict']['neg_sampler']}")


def test_matrix_writes_runs_table_and_plots_then_resumes_without_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["--models=BPR", "--samplers=uniform,dns", "--datasets=ml-100k", "--n_seeds=2", "--name=small", *FAST]
    assert main(argv) == 0
    out = tmp_path / "results" / "small"
    rows = read_rows(out)
    assert [(row["sampler"], int(row["seed"])) for row in rows] == [
        ("uniform", FIRST_SEED),
        ("dns", FIRST_SEED),
        ("uniform", FIRST_SEED + 1),
        ("dns", FIRST_SEED + 1),
    ]
    assert all(row["status"] == "ok" and not row["error"] for row in rows)
    for row in rows:
        assert all(0 < float(row[metric]) <= 1 for metric in METRICS)
        assert row["best_epoch"] == "0" and row["epochs_run"] == "1"
        assert float(row["seconds_per_epoch"]) > 0 and float(row["peak_rss_mb"]) > 100
        split = sum(
            float(row[column]) for column in ("load_seconds", "sampling_seconds", "train_seconds", "eval_seconds")
        )
        assert split <= float(row["total_seconds"])
    assert float(rows[1]["sampling_seconds"]) > float(rows[0]["sampling_seconds"])  # DNS scores its candidates

    table = (out / "table.md").read_text()
    assert "| BPR | uniform | 2 |" in table and "| BPR | dns | 2 |" in table
    assert "p vs uniform (recall@20)" in table and "ttest_rel" in table and "**" in table
    assert "Where the time went" in table and "| **total** (4 runs)" in table
    for plot in ("metric_by_sampler.png", "time_vs_metric.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["made_by"] == "recbole_hnlm.bench" and len(manifest["runs"]) == 4
    assert len(list((out / "runs").glob("*.json"))) == 4
    captured = capsys.readouterr()
    assert "4 run(s) done, 0 skipped" in captured.out
    # The bar shows each run's epochs and validation as they come (RecBole's own log stays quiet).
    (result_file,) = (out / "runs").glob(f"BPR-dns-ml-100k-seed{FIRST_SEED + 1}-*.json")
    valid = json.loads(result_file.read_text())["best_valid_score"]
    label = f"BPR + dns on ml-100k, seed {FIRST_SEED + 1}"
    assert f"{label}: 1/1 epochs]" in captured.err  # trained, not yet validated
    assert f"{label}: 1/1 epochs, valid recall@20 {valid:.4f}, best {valid:.4f} after 1]" in captured.err

    # Runs after the first reused the loaded dataset; a fresh load gives the same numbers and config hash.
    fresh = quick_start.run(
        "BPR",
        "ml-100k",
        config_dict={"neg_sampler": "dns", "seed": FIRST_SEED + 1, "results_dir": None, "torch_threads": 1},
        cmd_args=FAST,
    )
    assert fresh["config_hash"] == rows[3]["config_hash"]
    assert {metric: float(rows[3][metric]) for metric in METRICS} == fresh["test_result"]

    monkeypatch.setattr(quick_start, "run", refuse_to_run)
    assert main(argv) == 0
    assert read_rows(out) == rows
    assert "0 run(s) done, 4 skipped as finished" in capsys.readouterr().out

    # --report_only on a larger matrix (a third seed not run yet) writes the table of what finished, runs nothing.
    (out / "table.md").unlink()
    manifest = (out / "manifest.json").read_text()
    assert main([arg.replace("--n_seeds=2", "--n_seeds=3") for arg in argv] + ["--report_only"]) == 0
    assert (out / "table.md").read_text() == table and read_rows(out) == rows
    assert (out / "manifest.json").read_text() == manifest  # the running matrix's own files are left alone
    assert "report of 4 finished run(s), 2 not run yet, none failed" in capsys.readouterr().out


class ExplodingSampler(UniformSampler):
    """Fails on the first batch, as a bug in a sampler would."""

    name = "exploding_for_test"

    def sample(self, user_ids, item_ids, num, model=None):
        raise RuntimeError("sampler blew up")


def test_a_failing_run_is_recorded_and_the_others_finish_and_it_is_retried(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(SAMPLER_REGISTRY, ExplodingSampler.name, ExplodingSampler)
    argv = ["--models=BPR", f"--samplers={ExplodingSampler.name},uniform", "--datasets=ml-100k", "--name=broken", *FAST]
    assert main(argv) == 1
    out = tmp_path / "results" / "broken"
    failed, finished = read_rows(out)
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: sampler blew up"
    assert failed["recall@20"] == "" and failed["config_hash"]
    assert finished["status"] == "ok" and float(finished["recall@20"]) > 0
    assert "sampler blew up" in (out / "errors.log").read_text()
    assert "| BPR | uniform | 1 |" in (out / "table.md").read_text()
    assert "1 failed (see errors.log)" in capsys.readouterr().out

    started = []
    real_run = quick_start.run
    monkeypatch.setattr(quick_start, "run", lambda **kwargs: started.append(kwargs) or real_run(**kwargs))
    assert main(argv) == 1
    assert [kwargs["config_dict"]["neg_sampler"] for kwargs in started] == [ExplodingSampler.name]
    assert len(read_rows(out)) == 2


def test_ctrl_c_leaves_a_whole_runs_file_and_the_command_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    calls = []

    def first_finishes_then_ctrl_c(**kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise KeyboardInterrupt
        config = HNLMConfig(
            kwargs["model"], kwargs["dataset"], kwargs["config_file_list"], kwargs["config_dict"], kwargs["cmd_args"]
        )
        seconds = {"load": 0.1, "prepare": 0.1, "sampling": 0.1, "train": 0.5, "valid": 0.1, "test": 0.1}
        return {
            "test_result": {"recall@20": 0.25},
            "best_epoch": 0,
            "epoch_train_seconds": [0.6],
            "total_seconds": 1.2,
            "seconds": seconds,
            "config_hash": config_fingerprint(config),
        }

    monkeypatch.setattr(quick_start, "run", first_finishes_then_ctrl_c)
    argv = ["--models=BPR", "--samplers=uniform,dns", "--datasets=ml-100k", "--name=stopped", "--epochs=1"]
    assert main(argv) == 130
    assert "the same command resumes" in capsys.readouterr().err
    out = tmp_path / "results" / "stopped"
    (row,) = read_rows(out)
    assert row["sampler"] == "uniform" and row["recall@20"] == "0.25"
    assert not list(out.glob("*.tmp"))

    calls.clear()
    assert main(argv) == 0  # the interrupted run (now the first call) runs again; the finished one is skipped
    assert [kwargs["config_dict"]["neg_sampler"] for kwargs in calls] == ["dns"]
    assert [row["sampler"] for row in read_rows(out)] == ["uniform", "dns"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models=BPR", "--samplers=uniform,nope"], "Unknown sampler 'nope'. Valid samplers: ahns,"),
        (["--models=BPR,NoSuchModel", "--samplers=uniform"], "Unknown model 'NoSuchModel'"),
        (["--models=Pop", "--samplers=uniform"], "Model 'Pop' cannot be trained with a negative sampler"),
        (["--models=BPR", "--samplers=uniform", "--datasets=ml-100k,ml-1m"], "Dataset 'ml-1m' not found"),
        (["--models=BPR", "--samplers=uniform,dns_mn", "--dns_top_n=99"], "dns_top_n=99 is invalid"),
        (
            ["--models=BPR", "--samplers=uniform", "--seed=3"],
            "sets 'seed', which the matrix sets per run. Fix: use --seeds",
        ),
        (["--models=BPR", "--samplers=uniform", "--n_seeds=0"], "n_seeds=0 must be a count"),
        (["--models=BPR"], "no samplers given"),
        (["--models=BPR", "--samplers=uniform", "--reuse=results/nowhere"], "results/nowhere holds no runs.csv"),
    ],
)
def test_bad_matrices_are_refused_before_any_run(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(quick_start, "run", refuse_to_run)
    if not any(arg.startswith("--datasets=") for arg in argv):
        argv = [*argv, "--datasets=ml-100k"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_matrix_reuses_the_matching_runs_of_another_and_runs_only_the_rest(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--models=BPR", "--samplers=uniform", "--datasets=ml-100k", "--name=first", *FAST]) == 0
    first = read_rows(tmp_path / "results" / "first")
    calls = []
    real_run = quick_start.run

    def recording_run(**kwargs):
        calls.append(kwargs["config_dict"]["neg_sampler"])
        return real_run(**kwargs)

    monkeypatch.setattr(quick_start, "run", recording_run)
    # A different learning rate gives uniform another config hash: that run is not reused.
    other = ["--models=BPR", "--samplers=uniform,dns", "--datasets=ml-100k", "--reuse=results/first"]
    assert main([*other, "--name=second", *FAST]) == 0
    assert calls == ["dns"]
    second = read_rows(tmp_path / "results" / "second")
    assert second[0] == first[0] and [row["sampler"] for row in second] == ["uniform", "dns"]
    manifest = json.loads((tmp_path / "results" / "second" / "manifest.json").read_text())
    assert manifest["reused"] == {f"BPR + uniform on ml-100k, seed {FIRST_SEED}": "results/first"}
    # The reused run's results JSON came along, so reports that read runs/*.json see it as a run made here.
    copied = [json.loads(path.read_text()) for path in (tmp_path / "results" / "second" / "runs").glob("*.json")]
    by_sampler = {result["neg_sampler"]: result for result in copied}
    assert sorted(by_sampler) == ["dns", "uniform"] and len(copied) == 2
    assert by_sampler["uniform"]["config_hash"] == first[0]["config_hash"]
    assert by_sampler["uniform"]["test_result"]["recall@20"] == float(first[0]["recall@20"])
    calls.clear()
    assert main([*other, "--name=third", *FAST[:1], "--learning_rate=0.02", *FAST[2:]]) == 0
    assert calls == ["uniform", "dns"]
    # Reused runs are recorded before the ones run here; the table still follows the order asked for.
    calls.clear()
    asked = ["--samplers=popularity,uniform,dns", "--reuse=results/third", "--name=fourth"]
    assert main(["--models=BPR", "--datasets=ml-100k", *asked, *FAST[:1], "--learning_rate=0.02", *FAST[2:]]) == 0
    recorded = [row["sampler"] for row in read_rows(tmp_path / "results" / "fourth")]
    assert calls == ["popularity"] and sorted(recorded[:2]) == ["dns", "uniform"] and recorded[2] == "popularity"
    table = (tmp_path / "results" / "fourth" / "table.md").read_text()
    assert table.index("| BPR | popularity |") < table.index("| BPR | uniform |") < table.index("| BPR | dns |")
    # --report_only counts a reused folder's runs in its table (one in place of a run that failed here) but copies
    # nothing, so it can run beside that matrix.
    monkeypatch.setattr(quick_start, "run", refuse_to_run)
    capsys.readouterr()
    fifth = tmp_path / "results" / "fifth"
    failed = {**read_rows(tmp_path / "results" / "fourth")[0], "status": "failed", "error": "RuntimeError: boom"}
    RunsFile(fifth / "runs.csv").record(failed)
    runs_file = (fifth / "runs.csv").read_text()
    asked = ["--samplers=popularity,uniform,dns,dins", "--reuse=results/fourth", "--name=fifth", "--report_only"]
    assert main(["--models=BPR", "--datasets=ml-100k", *asked, *FAST[:1], "--learning_rate=0.02", *FAST[2:]]) == 0
    assert (fifth / "table.md").read_text() == table
    assert (fifth / "runs.csv").read_text() == runs_file and not (fifth / "manifest.json").exists()
    assert "report of 3 finished run(s), 1 not run yet, none failed" in capsys.readouterr().out


def test_a_matrix_yaml_lists_the_same_as_the_command_line(tmp_path):
    matrix = tmp_path / "paper.yaml"
    matrix.write_text(
        "models: [BPR, LightGCN]\nsamplers: [uniform, dns]\ndatasets: [ml-100k]\nn_seeds: 3\n"
        "settings: {epochs: 5, learning_rate: 1e-3}\n"
    )
    spec = MatrixSpec.from_sources(str(matrix))
    assert spec.name == "paper" and spec.seeds == [FIRST_SEED, FIRST_SEED + 1, FIRST_SEED + 2]
    assert spec.settings == {"epochs": 5, "learning_rate": 0.001}  # read as RecBole reads its YAML
    cli = MatrixSpec.from_sources(models="BPR,LightGCN", samplers="uniform,dns", datasets="ml-100k", n_seeds="3")
    assert spec.cells() == cli.cells() and len(cli.cells()) == 12
    assert MatrixSpec.from_sources(str(matrix), seeds="1,5").seeds == [1, 5]
    assert MatrixSpec.from_sources(str(matrix), seeds="2022,").seeds == [2022]
    assert MatrixSpec.from_sources(str(matrix), seeds="2021").seeds == [2021]  # a seed, never a count of 2021
    with pytest.raises(ConfigurationError, match="seeds and n_seeds are both given"):
        MatrixSpec.from_sources(models="BPR", samplers="uniform", datasets="ml-100k", seeds="1", n_seeds="2")
    with pytest.raises(ConfigurationError, match="must list seeds"):
        MatrixSpec.from_sources(models="BPR", samplers="uniform", datasets="ml-100k", seeds="three")
    matrix.write_text("models: [BPR]\nsamplers: [uniform]\ndatasets: [ml-100k]\nepochs: 5\n")
    with pytest.raises(ConfigurationError, match="unknown key\\(s\\) epochs.*settings:"):
        MatrixSpec.from_sources(str(matrix))


def test_a_matrix_of_hundreds_of_runs_asks_for_yes(tmp_path, capsys):
    argv = ["--models=BPR", "--samplers=uniform,dns", "--datasets=ml-100k", "--n_seeds=151", f"--out={tmp_path}"]
    assert main(argv) == 2
    assert "This matrix has 302 runs" in capsys.readouterr().err and not (tmp_path / "runs.csv").exists()


def test_a_setting_the_bench_does_not_know_is_refused_before_any_run(tmp_path, capsys):
    argv = ["--models=BPR", "--samplers=uniform", "--datasets=ml-100k", "--output=x", f"--out={tmp_path}"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "'output' is not a setting" in error and "--out?" in error and not (tmp_path / "runs.csv").exists()


def test_two_processes_recording_into_one_runs_file_keep_each_others_rows(tmp_path):
    """Each RunsFile read the file before the other wrote: recording merges into the file as it is on disk."""
    path = tmp_path / "runs.csv"
    first, second = RunsFile(path), RunsFile(path)
    row = {"model": "BPR", "dataset": "ml-100k", "status": "ok", "recall@20": "0.1"}
    first.record({**row, "sampler": "uniform", "seed": "1", "config_hash": "a"})
    second.record({**row, "sampler": "dns", "seed": "1", "config_hash": "b"})
    assert [(r["sampler"], r["config_hash"]) for r in read_rows(tmp_path)] == [("uniform", "a"), ("dns", "b")]


def test_a_run_another_process_is_training_is_left_to_it(tmp_path, monkeypatch, capsys):
    """Two commands on one matrix folder (e.g. started in two terminals) never train the same run twice."""
    monkeypatch.chdir(tmp_path)
    argv = ["--models=BPR", "--samplers=uniform,dns", "--datasets=ml-100k", "--n_seeds=1", "--name=shared", *FAST]
    out = tmp_path / "results" / "shared"
    busy = HNLMConfig("BPR", "ml-100k", config_dict={"neg_sampler": "dns", "seed": FIRST_SEED}, cmd_args=FAST)
    trained = []
    real_run = quick_start.run
    monkeypatch.setattr(quick_start, "run", lambda **kwargs: trained.append(kwargs) or real_run(**kwargs))
    with claim_run(out, config_fingerprint(busy), FIRST_SEED) as claimed:  # as the other process would hold it
        assert claimed
        with claim_run(out, config_fingerprint(busy), FIRST_SEED) as again:
            assert not again  # one holder at a time
        assert main(argv) == 0
    assert [kwargs["config_dict"]["neg_sampler"] for kwargs in trained] == ["uniform"]
    assert [row["sampler"] for row in read_rows(out)] == ["uniform"]
    assert "1 run(s) done, 0 skipped as finished, 1 left to another process" in capsys.readouterr().out
    # Released (the other process finished or died): the next command trains it.
    assert main(argv) == 0
    assert [kwargs["config_dict"]["neg_sampler"] for kwargs in trained] == ["uniform", "dns"]
