"""Seconds per training epoch of every sampler, as a ratio to the plugin's ``uniform``, variants interleaved.

Usage: python benchmarks/sampler_speed.py [--datasets ml-100k beauty-dens] [--models LightGCN NGCF] [--rounds 5]
       [--threads 1] [--candidate_num 16] [--samplers uniform dns mixgcf ...] [--tag NAME] [--out DIR]

Each (dataset, model) pair is one interleaved run: every variant trains one epoch per round, in turn, so that load
from other processes on the machine falls on all of them alike; the first round is a warm-up and is dropped. The
table reports the median seconds per epoch, the ratio to ``uniform`` of the same run, and the issue's targets
(``dns``, ``dns_mn``, ``ahns`` at most 1.15x; ``mixgcf``, ``dins``, ``hnlm`` at most 1.3x). ``recbole uniform`` and
``recbole dns`` (RecBole's own loaders) can be added with ``--samplers``. ``hnlm`` trains on template profiles (its
LLM cache is built on first use). Writes ``<out>/<tag>.csv`` (every measured epoch) and ``<out>/<tag>.md`` (the
table and the command), by default under results/sampler-speed/.
"""

from __future__ import annotations

import argparse
import csv
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from recbole.data import data_preparation
from recbole.utils import init_seed
from tqdm import tqdm

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import load_dataset
from recbole_hnlm.model import get_model
from recbole_hnlm.quick_start import prepare_run_data
from recbole_hnlm.trainer import create_trainer

PROJECT_ROOT = Path(__file__).resolve().parents[1]

QUIET = {"state": "ERROR", "show_progress": False, "results_dir": None}
# RecBole's own train loaders, by label: their train_neg_sample_args.
RECBOLE_VARIANTS = {
    "recbole uniform": {"distribution": "uniform", "dynamic": False},
    "recbole dns": {"distribution": "uniform", "dynamic": True},
}
PLUGIN_SAMPLERS = ["uniform", "popularity", "dns", "dns_mn", "ahns", "mixgcf", "dins", "hnlm"]
BASELINE = "uniform"
# The targets: at most this many times uniform's seconds per epoch.
TARGETS = {"dns": 1.15, "dns_mn": 1.15, "ahns": 1.15, "mixgcf": 1.3, "dins": 1.3, "hnlm": 1.3}
CSV_FIELDS = ["dataset", "model", "sampler", "threads", "round", "train_seconds", "cpu_seconds", "sampling_seconds"]


@dataclass
class Variant:
    """One sampler of one interleaved run, ready to train an epoch."""

    label: str
    trainer: object
    train_data: object


def build_variant(label: str, dataset: str, model: str, candidate_num: int) -> Variant:
    """A trainer and train loader for ``label``, all variants sharing the model settings and the seed."""
    recbole_args = RECBOLE_VARIANTS.get(label)
    settings = {**QUIET, "neg_sampler": "uniform" if recbole_args else label}
    if label in TARGETS or (recbole_args and recbole_args["dynamic"]):
        settings["candidate_num"] = candidate_num
    config = HNLMConfig(model, dataset, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    data = load_dataset(config)
    if recbole_args:
        dynamic = recbole_args["dynamic"]
        config["train_neg_sample_args"] = {
            "sample_num": 1,
            "alpha": 1.0,
            "candidate_num": candidate_num if dynamic else 0,
            **recbole_args,
        }
        train_data, _, _ = data_preparation(config, data)
    else:
        train_data, _, _ = prepare_run_data(config, data)
    init_seed(config["seed"], config["reproducibility"])
    recommender = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = create_trainer(config, recommender)
    train_data.get_model(recommender)
    return Variant(label, trainer, train_data)


def measure(dataset: str, model: str, args, threads: int) -> list[dict]:
    """One row per measured epoch of every variant (warm-up round dropped), the variants interleaved."""
    torch.set_num_threads(threads)
    variants = [build_variant(label, dataset, model, args.candidate_num) for label in args.samplers]
    rows = []
    for round_index in tqdm(range(args.rounds + 1), desc=f"{model} on {dataset}, {threads} thread(s)"):
        for variant in variants:
            trainer = variant.trainer
            cpu_started = time.process_time()
            trainer._train_epoch(variant.train_data, round_index)
            cpu_seconds = time.process_time() - cpu_started
            if round_index == 0:
                continue
            rows.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "sampler": variant.label,
                    "threads": threads,
                    "round": round_index,
                    "train_seconds": round(trainer.epoch_train_seconds[-1], 4),
                    "cpu_seconds": round(cpu_seconds, 4),
                    "sampling_seconds": round(trainer.epoch_sampling_seconds[-1], 4),
                }
            )
    return rows


def summary_table(rows: list[dict]) -> str:
    """Markdown: per run and sampler, median wall and CPU seconds per epoch, their ratios to uniform, the target.

    A target counts as met when both ratios are within it. On a machine shared with other jobs wall time swings with
    their load, the process's CPU time (1 thread) much less, so its ratio is the steadier one there; on a quiet
    machine the two agree.
    """
    lines = [
        "| dataset | model | threads | sampler | s/epoch | ratio | CPU s/epoch | CPU ratio | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = dict.fromkeys((row["dataset"], row["model"], row["threads"]) for row in rows)
    for run in runs:
        wall: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for row in rows:
            if (row["dataset"], row["model"], row["threads"]) == run:
                wall.setdefault(row["sampler"], []).append(float(row["train_seconds"]))
                cpu.setdefault(row["sampler"], []).append(float(row["cpu_seconds"]))
        for label in wall:
            seconds, cpu_seconds = statistics.median(wall[label]), statistics.median(cpu[label])
            ratio = seconds / statistics.median(wall[BASELINE])
            cpu_ratio = cpu_seconds / statistics.median(cpu[BASELINE])
            target = TARGETS.get(label)
            met = "" if target is None else ("yes" if max(ratio, cpu_ratio) <= target else "no")
            lines.append(
                f"| {' | '.join(map(str, run))} | {label} | {seconds:.3f} | {ratio:.2f}x | {cpu_seconds:.3f} | "
                f"{cpu_ratio:.2f}x | {f'<= {target}x' if target else ''} | {met} |"
            )
    return "\n".join(lines)


def main() -> None:
    """Measure every (dataset, model) pair, then write the CSV and the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k"])
    parser.add_argument("--models", nargs="+", default=["LightGCN"])
    parser.add_argument("--rounds", type=int, default=5, help="measured epochs per variant (after one warm-up)")
    parser.add_argument("--candidate_num", type=int, default=16, help="M for every candidate-based sampler")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch.set_num_threads values")
    parser.add_argument(
        "--samplers",
        nargs="+",
        default=PLUGIN_SAMPLERS,
        help=f"variants to run, in this order; plugin samplers or {', '.join(map(repr, RECBOLE_VARIANTS))}",
    )
    parser.add_argument("--tag", default=None, help="file name of the results (default: <datasets>-<models>)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "sampler-speed")
    parser.add_argument("--note", default="", help="a line about the machine and its load, written into the .md")
    args = parser.parse_args()
    if BASELINE not in args.samplers:
        parser.error(f"--samplers must include {BASELINE}: the ratios are to it.")

    rows = []
    for dataset in args.datasets:
        for model in args.models:
            for threads in args.threads:
                rows.extend(measure(dataset, model, args, threads))

    args.out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or f"{'+'.join(args.datasets)}-{'+'.join(args.models)}"
    with open(args.out / f"{tag}.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    table = summary_table(rows)
    command = shlex.join(["python", "benchmarks/sampler_speed.py", *sys.argv[1:]])
    text = (
        f"# Sampler speed: {tag}\n\n"
        f"Command: `{command}`\n\n"
        f"{args.rounds} measured epochs per variant after one warm-up, variants interleaved, candidate_num "
        f"{args.candidate_num}; torch {torch.__version__}, {platform.processor() or platform.machine()}. "
        f"{args.note}\n\n{table}\n\nEvery epoch: `{tag}.csv`.\n"
    )
    (args.out / f"{tag}.md").write_text(text)
    print(table)


if __name__ == "__main__":
    main()
