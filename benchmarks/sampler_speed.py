"""Seconds per training epoch of every sampler, beside RecBole's own uniform, popularity and dynamic DNS.

Usage: python benchmarks/sampler_speed.py [--model LightGCN] [--dataset ml-100k] [--rounds 7]
       [--candidate_num 16] [--threads 1 2] [--samplers uniform mixgcf dins hnlm]

The variants run interleaved, one epoch each per round, so that load from other processes on the machine
falls on all of them alike; the first round is a warm-up and is dropped. Writes
results/sampler_speed/<dataset>-<model>.{json,md,png} and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from recbole.data import data_preparation  # noqa: E402
from recbole.utils import init_seed  # noqa: E402
from tqdm import tqdm  # noqa: E402

from recbole_hnlm.config import HNLMConfig  # noqa: E402
from recbole_hnlm.data.preparation import load_dataset  # noqa: E402
from recbole_hnlm.model import get_model  # noqa: E402
from recbole_hnlm.quick_start import prepare_run_data  # noqa: E402
from recbole_hnlm.trainer import create_trainer  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]

QUIET = {"state": "ERROR", "show_progress": False, "results_dir": None}
# (label, plugin sampler or None for RecBole's loader, RecBole train_neg_sample_args overrides)
VARIANTS = [
    ("recbole uniform", None, {"distribution": "uniform", "dynamic": False}),
    ("recbole popularity", None, {"distribution": "popularity", "dynamic": False}),
    ("recbole dns", None, {"distribution": "uniform", "dynamic": True}),
    ("uniform", "uniform", {}),
    ("popularity", "popularity", {}),
    ("dns", "dns", {}),
    ("dns_mn", "dns_mn", {}),
    ("ahns", "ahns", {}),
    ("mixgcf", "mixgcf", {}),
    ("dins", "dins", {}),
    ("hnlm", "hnlm", {}),  # cached template-profile vectors (built on first use), DNS base, mixing and alignment
]
# The plugin sampler each RecBole loader is compared with, and the sampler DNS variants are compared with.
BASELINE_OF = {
    "uniform": "recbole uniform",
    "popularity": "recbole popularity",
    "dns": "recbole dns",
    "dns_mn": "dns",
    "ahns": "dns",
    "mixgcf": "uniform",
    "dins": "uniform",
    "hnlm": "uniform",
}


def build_variant(label, sampler, recbole_args, args):
    """A (trainer, train_data) pair for one variant, all sharing the model settings and seed."""
    settings = {**QUIET, "neg_sampler": sampler or "uniform", "candidate_num": args.candidate_num}
    settings["popularity_alpha"] = 1.0  # RecBole's popularity uses alpha 1
    config = HNLMConfig(args.model, args.dataset, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    dataset = load_dataset(config)
    if sampler is None:
        config["train_neg_sample_args"] = {
            "sample_num": 1,
            "alpha": 1.0,
            "candidate_num": args.candidate_num if recbole_args["dynamic"] else 0,
            **recbole_args,
        }
        train_data, _, _ = data_preparation(config, dataset)
    else:
        train_data, _, _ = prepare_run_data(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset)
    trainer = create_trainer(config, model)
    train_data.get_model(model)
    return trainer, train_data


def measure(args, threads: int) -> dict[str, list[float]]:
    """Seconds of each training epoch per variant, warm-up round dropped."""
    torch.set_num_threads(threads)
    chosen = [variant for variant in VARIANTS if not args.samplers or variant[0] in args.samplers]
    variants = {label: build_variant(label, sampler, extra, args) for label, sampler, extra in chosen}
    seconds: dict[str, list[float]] = {label: [] for label in variants}
    for round_index in tqdm(range(args.rounds + 1), desc=f"rounds ({threads} threads)"):
        for label, (trainer, train_data) in variants.items():
            trainer._train_epoch(train_data, round_index)
            if round_index > 0:
                seconds[label].append(trainer.epoch_train_seconds[-1])
    return seconds


def table(results: dict[int, dict[str, list[float]]]) -> str:
    """Markdown: median s/epoch per variant and thread count, with the ratios the goals are stated in."""
    lines = ["| sampler | threads | median s/epoch | compared with | ratio |", "|---|---|---|---|---|"]
    for threads, seconds in results.items():
        median = {label: statistics.median(values) for label, values in seconds.items()}
        for label, value in median.items():
            reference = BASELINE_OF.get(label) if BASELINE_OF.get(label) in median else None
            ratio = f"{value / median[reference]:.2f}x" if reference else ""
            lines.append(f"| {label} | {threads} | {value:.3f} | {reference or ''} | {ratio} |")
    return "\n".join(lines)


def plot(results: dict[int, dict[str, list[float]]], path: Path, title: str) -> None:
    """Bar chart of median seconds per epoch, one group of bars per thread count."""
    labels = list(next(iter(results.values())))
    figure, axis = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(results)
    for offset, (threads, seconds) in enumerate(results.items()):
        medians = [statistics.median(seconds[label]) for label in labels]
        positions = [index + offset * width for index in range(len(labels))]
        axis.bar(positions, medians, width=width, label=f"{threads} thread(s)")
    axis.set_xticks([index + width * (len(results) - 1) / 2 for index in range(len(labels))], labels, rotation=30)
    axis.set_ylabel("median seconds per training epoch")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    """Measure, print and save."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="LightGCN")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--rounds", type=int, default=7, help="measured epochs per variant (after one warm-up)")
    parser.add_argument("--candidate_num", type=int, default=16, help="M for every model-scored sampler")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch.set_num_threads values")
    parser.add_argument(
        "--samplers", nargs="+", default=None, help="labels of the variants to run (default: all), e.g. uniform hnlm"
    )
    args = parser.parse_args()

    results = {threads: measure(args, threads) for threads in args.threads}
    out = PROJECT_ROOT / "results" / "sampler_speed"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.dataset}-{args.model}"
    markdown = table(results)
    title = f"{args.model} on {args.dataset}, candidate_num={args.candidate_num}"
    (out / f"{stem}.md").write_text(f"{title}, {args.rounds} measured epochs\n\n{markdown}\n")
    (out / f"{stem}.json").write_text(json.dumps({"settings": vars(args), "seconds": results}, indent=2))
    plot(results, out / f"{stem}.png", title)
    print(markdown)


if __name__ == "__main__":
    main()
