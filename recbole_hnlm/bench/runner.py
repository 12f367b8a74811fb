"""Run a benchmark matrix: validate every cell, skip finished runs, record each run as it ends."""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from importlib.metadata import version
from logging import getLogger
from pathlib import Path
from time import perf_counter, strftime

import torch
from tqdm import tqdm

import recbole_hnlm.quick_start as quick_start
from recbole_hnlm.bench.dataset_cache import LoadedDatasetCache
from recbole_hnlm.bench.matrix import BenchCell, MatrixSpec
from recbole_hnlm.bench.memory import peak_memory
from recbole_hnlm.bench.report import write_report
from recbole_hnlm.bench.runs_file import RunsFile, claim_run
from recbole_hnlm.bench.subgroups import checkpoint_subgroup_metrics, subgroup_columns
from recbole_hnlm.config import config_fingerprint
from recbole_hnlm.io import write_json_atomic


def _run_row(cell: BenchCell, result: dict, memory: dict) -> dict:
    seconds = result["seconds"]
    epochs = result["epoch_train_seconds"]
    return {
        "model": cell.model,
        "sampler": cell.sampler,
        "dataset": cell.dataset,
        "seed": cell.seed,
        **result["test_result"],
        **result.get("subgroup_metrics", {}),
        "false_hard_negative_rate": result.get("false_hard_negative_rate"),
        "best_epoch": result["best_epoch"],
        "epochs_run": len(epochs),
        "seconds_per_epoch": round(statistics.fmean(epochs), 4) if epochs else None,
        "total_seconds": round(result["total_seconds"], 3),
        "load_seconds": round(seconds["load"] + seconds["prepare"], 3),
        "sampling_seconds": round(seconds["sampling"], 3),
        "train_seconds": round(seconds["train"], 3),
        "eval_seconds": round(seconds["valid"] + seconds["test"], 3),
        **memory,
        "config_hash": result["config_hash"],
        "status": "ok",
        "error": "",
    }


def _failed_row(cell: BenchCell, config_hash: str, error: Exception, memory: dict) -> dict:
    message = " ".join(str(error).split())  # one line, so that the CSV stays one row per run
    return {
        "model": cell.model,
        "sampler": cell.sampler,
        "dataset": cell.dataset,
        "seed": cell.seed,
        **memory,
        "config_hash": config_hash,
        "status": "failed",
        "error": f"{type(error).__name__}: {message}",
    }


def matrix_defaults(out_dir: Path, verbose: bool = False) -> dict:
    """The settings a matrix in ``out_dir`` puts under every run's own: ``spec.configs(matrix_defaults(...))`` are
    the configs (and config hashes) of its runs."""
    return {
        "results_dir": str(Path(out_dir) / "runs"),
        "show_progress": False,
        "state": "INFO" if verbose else "ERROR",
        # One torch thread unless overridden: the same for every run, so seconds per epoch compare, and spared
        # oversubscription of a busy machine (results/sampler-speed-before-in-loss-picks). The thread count is not
        # in the config hash.
        "torch_threads": 1,
    }


def run_matrix(
    spec: MatrixSpec, out_dir: Path | None = None, verbose: bool = False, command: str = "", report_only: bool = False
) -> dict:
    """Run every cell of ``spec`` not yet finished in ``out_dir`` and write runs.csv, table.md and plots there.

    Every cell's config is built first, so that a bad name or setting stops the matrix before any run. A run
    that fails is recorded with its error and the others go on; Ctrl-C leaves runs.csv whole. With ``report_only``
    nothing runs and nothing but table.md and the plots is written: they cover the runs finished so far (a matrix
    stopped part-way, or one still running in another process).
    """
    out_dir = Path(out_dir or Path("results") / spec.name)
    defaults = matrix_defaults(out_dir, verbose)
    threads = torch.get_num_threads()
    try:
        return _run_matrix(spec, out_dir, defaults, verbose, command, report_only)
    finally:
        torch.set_num_threads(threads)  # runs set it process-wide


def _run_matrix(
    spec: MatrixSpec, out_dir: Path, defaults: dict, verbose: bool, command: str, report_only: bool
) -> dict:
    with warnings.catch_warnings():
        if not verbose:  # RecBole 1.2.1 warns about pandas and torch deprecations in every run
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="recbole")
        configs = spec.configs(defaults)
        hashes = {cell: config_fingerprint(config) for cell, config in configs.items()}
        runs = RunsFile(out_dir / "runs.csv")
        required = tuple(subgroup_columns()) if spec.subgroups else ()
        if report_only:
            # A report copies nothing in and writes no runs.csv or manifest, so that it can run beside a running
            # matrix (or beside the one it reuses); the reused folders' matching runs count in its table all the same.
            reusable = {key: row for _, key, row in _reusable_runs(spec.reuse, runs, hashes, required)}
            rows = [row for row in runs.rows if runs.key(row["config_hash"], row["seed"]) not in reusable]
            rows += reusable.values()  # a reused run stands in for a failed one here, as it would once copied
            finished = runs.finished(required) | reusable.keys()
            missing = sum(runs.key(config_hash, cell.seed) not in finished for cell, config_hash in hashes.items())
            return {
                "out_dir": out_dir,
                "runs_file": runs.path,
                "ran": 0,
                "skipped": len(hashes) - missing,
                "missing": missing,
                **_report(rows, hashes, configs, out_dir),
            }
        reused = _reuse_runs(spec.reuse, runs, hashes, required, out_dir / "runs")
        finished = runs.finished(required)
        todo = [cell for cell, config_hash in hashes.items() if runs.key(config_hash, cell.seed) not in finished]
        write_json_atomic(out_dir / "manifest.json", {**_manifest(spec, hashes, command), "reused": reused})
        cache = LoadedDatasetCache()
        started = perf_counter()
        with (
            tempfile.TemporaryDirectory(prefix="bench-checkpoints-") as checkpoints,
            tqdm(
                total=len(hashes), initial=len(hashes) - len(todo), desc=spec.name, unit="run", file=sys.stderr
            ) as progress,
        ):
            settings = {**defaults, "checkpoint_dir": checkpoints}
            ran, elsewhere = 0, []
            for cell in todo:
                progress.set_postfix_str(cell.label)

                def show(text: str, label: str = cell.label) -> None:
                    progress.set_postfix_str(f"{label}: {text}")

                # Another process on this folder may be training the run, or may have finished it meanwhile.
                with claim_run(out_dir, hashes[cell], cell.seed) as claimed:
                    if claimed:
                        runs.reload()
                    if claimed and runs.key(hashes[cell], cell.seed) not in runs.finished(required):
                        runs.record(_run_cell(spec, cell, hashes[cell], settings, cache, out_dir, show))
                        ran += 1
                    else:
                        elsewhere.append(cell.label)
                progress.update()
        if elsewhere:
            getLogger().warning(
                f"{len(elsewhere)} run(s) left to another process running this matrix ({', '.join(elsewhere[:3])}"
                f"{', ...' if len(elsewhere) > 3 else ''}); its results join runs.csv when it finishes them"
            )
        getLogger().info(
            f"{spec.name}: {ran} run(s) in {perf_counter() - started:.1f} s, {len(hashes) - len(todo)} skipped "
            f"as finished, {len(elsewhere)} run by another process; datasets loaded {cache.loads} time(s), reused "
            f"{cache.reuses} time(s)"
        )
        runs.reload()
        files = _report(runs.rows, hashes, configs, out_dir)
    return {
        "out_dir": out_dir,
        "runs_file": runs.path,
        "ran": ran,
        "skipped": len(hashes) - len(todo),
        "elsewhere": len(elsewhere),
        "dataset_loads": cache.loads,
        **files,
    }


def _report(recorded: list[dict], hashes: dict[BenchCell, str], configs: dict, out_dir: Path) -> dict:
    """table.md and the plots over the matrix's ``recorded`` runs (older config hashes left out), in the matrix's own
    order whatever order they were recorded in (reused runs come first); how many failed."""
    order = {RunsFile.key(config_hash, cell.seed): index for index, (cell, config_hash) in enumerate(hashes.items())}
    rows = [row for row in recorded if RunsFile.key(row["config_hash"], row["seed"]) in order]
    rows.sort(key=lambda row: order[RunsFile.key(row["config_hash"], row["seed"])])
    # The test counterpart of the metric that epochs are selected on, e.g. recall@20.
    headline = next(iter(configs.values()))["valid_metric"].lower()
    return {"failed": sum(row["status"] != "ok" for row in rows), **write_report(rows, out_dir, headline)}


def _reuse_runs(
    folders: list[str], runs: RunsFile, hashes: dict[BenchCell, str], required: tuple, results_dir: Path
) -> dict:
    """Copy into ``runs`` the finished runs of other results ``folders`` that match a cell's config hash and seed,
    with each run's results JSON (into ``results_dir``, where it has one), so the copy reads like a run made here.

    Returns {cell label: folder} for the runs copied now; a run this matrix already finished is left alone.
    """
    reused = {}
    wanted = {runs.key(config_hash, cell.seed): cell for cell, config_hash in hashes.items()}
    found = _reusable_runs(folders, runs, hashes, required)
    files = {}  # each run comes from one folder only, so the folders' files merge without clashes
    for folder in dict.fromkeys(folder for folder, _, _ in found):
        keys = {key for other, key, _ in found if other == folder}
        files.update(result_files(Path(folder) / "runs", keys))
    for folder, key, row in found:
        if key in files:
            results_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(files[key], results_dir / files[key].name)
        runs.record(row)
        reused[wanted[key].label] = folder
    if reused:
        getLogger().warning(f"reused {len(reused)} finished run(s) from {', '.join(folders)}")
    return reused


def _reusable_runs(
    folders: list[str], runs: RunsFile, hashes: dict[BenchCell, str], required: tuple
) -> list[tuple[str, tuple[str, str], dict]]:
    """(folder, run key, row) for each finished run of the other results ``folders`` that matches a cell's config
    hash and seed and that ``runs`` has not finished, in key order; where several folders hold a run, the first
    named wins."""
    found = []
    finished = runs.finished(required)
    wanted = {runs.key(config_hash, cell.seed) for cell, config_hash in hashes.items()}
    for folder in folders:
        other = RunsFile(Path(folder) / "runs.csv")
        rows = {other.key(row["config_hash"], row["seed"]): row for row in other.rows}
        keys = sorted((other.finished(required) & wanted) - finished)
        found += [(str(folder), key, rows[key]) for key in keys]
        finished.update(keys)
    return found


def result_files(folder: Path, keys: set) -> dict:
    """{run key: its results JSON in ``folder``} for the runs in ``keys`` (the newest file where a run has several)."""
    found = {}
    for path in sorted(folder.glob("*.json")):
        try:
            result = json.loads(path.read_text())
            key = RunsFile.key(result["config_hash"], result["seed"])
        except (ValueError, KeyError, TypeError):
            continue  # not a run's results file
        if key in keys:
            found[key] = path
    return found


def _run_cell(
    spec: MatrixSpec,
    cell: BenchCell,
    config_hash: str,
    defaults: dict,
    cache: LoadedDatasetCache,
    out_dir: Path,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """One run, as a row of runs.csv; an exception becomes a failed row (Ctrl-C is not caught).

    ``progress`` gets the run's epoch status (``quick_start.run``'s), shown on the matrix's bar.
    """
    with peak_memory() as memory:
        try:
            result = quick_start.run(**spec.run_arguments(cell, defaults), dataset_loader=cache, progress=progress)
            if spec.subgroups:
                metrics = checkpoint_subgroup_metrics(result["checkpoint"], dataset_loader=cache)
                result["subgroup_metrics"] = {column: metrics[column] for column in subgroup_columns()}
        except Exception as error:  # a failed run must not stop the others; its traceback goes to errors.log
            failure = error
            with open(out_dir / "errors.log", "a", encoding="utf-8") as log:
                log.write(f"--- {strftime('%Y-%m-%d %H:%M:%S')} {cell.label} ({config_hash})\n")
                log.write(traceback.format_exc())
        else:
            failure = None
    if failure is not None:
        getLogger().error(f"{cell.label} failed: {failure}")
        return _failed_row(cell, config_hash, failure, memory)
    return _run_row(cell, result, memory)


def _manifest(spec: MatrixSpec, hashes: dict[BenchCell, str], command: str) -> dict:
    return {
        "made_by": "recbole_hnlm.bench",
        "command": command,
        "updated": strftime("%Y-%m-%dT%H:%M:%S"),
        "matrix": spec.to_dict(),
        "runs": [{"cell": cell.label, "config_hash": config_hash} for cell, config_hash in hashes.items()],
        "versions": {package: version(package) for package in ("recbole", "torch", "recbole-hnlm")},
    }
