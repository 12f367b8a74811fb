"""How training cost grows with the data: seconds per epoch and peak memory of every sampler, ml-100k to ML-1M.

Usage: python benchmarks/scale.py [--datasets ml-100k beauty-dens ml-1m-ahns] [--data ../shared/data]
       [--samplers uniform dns ...] [--epochs 3] [--batch_sizes 1024 2048 4096] [--max_batches N] [--tag NAME]

Every (dataset, sampler, train_batch_size) trains ``--epochs`` epochs of ``--model`` (LightGCN) with 1 torch thread
in a process of its own, so that its peak RSS is its own; the first epoch is a warm-up and is left out of the
median. ``--max_batches`` ends every epoch after that many batches (a smoke test of a large dataset): seconds per
epoch are then extrapolated from seconds per batch, and the tables say so. The main run uses
``--batch_size`` (RecBole's 2048); ``--batch_sizes`` adds LightGCN with ``uniform`` at other batch sizes.

Datasets are read from the project's ``dataset/`` when imported there; ``ml-1m-ahns`` (the AHNS authors' random
80/20 split of MovieLens 1M, ``shared/data/ml-1m-ahns/SOURCE.txt``) is imported on first use from ``--data``
(default ``../shared/data``) into ``--dataset_dir``, with a random 10% validation carve (the split is random) and
the 29 test rows of items that never occur in train dropped. Without the data it exits with status 2.

Writes ``<out>/<tag>.csv`` (one row per run), ``<out>/<tag>.md`` (the tables and the command) and ``<out>/<tag>.png``
(training interactions against seconds per epoch per sampler, and seconds per epoch against train_batch_size),
by default under results/scale/.
"""

from __future__ import annotations

import argparse
import csv
import platform
import resource
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from recbole_hnlm.paths import default_data_path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_PATH = default_data_path()

SAMPLERS = ["uniform", "popularity", "dns", "dns_mn", "ahns", "mixgcf", "dins"]
# Datasets imported on first use: name -> (folder under --data, the validation carve that matches its test split).
IMPORTED = {"ml-1m-ahns": ("ml-1m-ahns", "random")}
CSV_FIELDS = [
    "dataset",
    "model",
    "sampler",
    "train_batch_size",
    "train_interactions",
    "batches_per_epoch",
    "measured_batches",
    "median_seconds_per_batch",
    "cpu_seconds_per_epoch",
    "seconds_per_epoch",
    "extrapolated",
    "median_sampling_seconds_per_batch",
    "peak_rss_mib",
    "epoch_seconds",
]


def dataset_folder(name: str, data: Path | None, dataset_dir: Path) -> Path:
    """The folder holding ``name``'s atomic files, importing it from ``data`` first when needed.

    Raises FileNotFoundError naming what is missing and how to provide it.
    """
    for parent in (DEFAULT_DATA_PATH, dataset_dir):
        if (parent / name / f"{name}.train.inter").is_file() or (parent / name / f"{name}.inter").is_file():
            return parent
    if name not in IMPORTED:
        raise FileNotFoundError(
            f"dataset '{name}' is neither in {DEFAULT_DATA_PATH} nor in {dataset_dir}. Fix: import it with "
            "`python -m recbole_hnlm.data.import_dataset`, or choose from ml-100k, beauty-dens, ml-1m-ahns."
        )
    folder, carve = IMPORTED[name]
    source = data / folder if data is not None else None
    if source is None or not (source / "train.txt").is_file():
        raise FileNotFoundError(
            f"dataset '{name}' needs its source files {folder}/train.txt and test.txt, but "
            f"{source or 'no data folder'} has none (the default is ../shared/data beside the project). "
            f"Fix: pass --data PATH, the folder holding {folder}/, or leave {name} out of --datasets."
        )
    from recbole_hnlm.data.importers import import_presplit

    import_presplit(source / "train.txt", source / "test.txt", name, dataset_dir, carve=carve, drop_unseen_items=True)
    return dataset_dir


def measure(job: dict) -> dict:
    """Train one (dataset, sampler, batch size) for ``epochs`` epochs in this process; its timings and peak RSS."""
    import torch
    from recbole.utils import init_seed

    from recbole_hnlm.config import HNLMConfig
    from recbole_hnlm.data.preparation import load_dataset
    from recbole_hnlm.model import get_model
    from recbole_hnlm.quick_start import prepare_run_data
    from recbole_hnlm.trainer import create_trainer

    torch.set_num_threads(job["threads"])
    settings = {
        "state": "ERROR",
        "show_progress": False,
        "results_dir": None,
        "data_path": job["data_path"],
        "neg_sampler": job["sampler"],
        "train_batch_size": job["train_batch_size"],
    }
    if job["candidate_num"] and job["sampler"] not in ("uniform", "popularity"):
        settings["candidate_num"] = job["candidate_num"]
    config = HNLMConfig(job["model"], job["dataset"], config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = prepare_run_data(config, load_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    recommender = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = create_trainer(config, recommender)
    train_data.get_model(recommender)
    batches_per_epoch = len(train_data)
    measured_batches = min(batches_per_epoch, job["max_batches"] or batches_per_epoch)
    train_data.max_batches = job["max_batches"]
    cpu_seconds = []  # CPU time of this process per epoch: what other processes' load changes least
    for epoch in range(job["epochs"]):
        started = time.process_time()
        trainer._train_epoch(train_data, epoch)
        cpu_seconds.append(time.process_time() - started)
    cpu_seconds = cpu_seconds[1:] or cpu_seconds
    measured = trainer.epoch_train_seconds[1:] or trainer.epoch_train_seconds  # the first epoch warms up
    sampling = trainer.epoch_sampling_seconds[1:] or trainer.epoch_sampling_seconds
    per_batch = statistics.median(measured) / measured_batches
    return {
        "dataset": job["dataset"],
        "model": job["model"],
        "sampler": job["sampler"],
        "train_batch_size": job["train_batch_size"],
        "train_interactions": len(train_data._dataset.inter_feat),
        "batches_per_epoch": batches_per_epoch,
        "measured_batches": measured_batches,
        "median_seconds_per_batch": round(per_batch, 5),
        "seconds_per_epoch": round(per_batch * batches_per_epoch, 3),
        "cpu_seconds_per_epoch": round(statistics.median(cpu_seconds) / measured_batches * batches_per_epoch, 3),
        "extrapolated": measured_batches < batches_per_epoch,
        "median_sampling_seconds_per_batch": round(statistics.median(sampling) / measured_batches, 5),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # KiB on Linux
        "epoch_seconds": " ".join(f"{seconds:.3f}" for seconds in trainer.epoch_train_seconds),
    }


def markdown_tables(rows: list[dict], batch_size: int) -> str:
    """Per dataset and sampler at the main batch size, then LightGCN's uniform across batch sizes."""
    lines = [
        f"## Every sampler at train_batch_size {batch_size}",
        "",
        "| dataset | train interactions | sampler | s/epoch | ratio to uniform | CPU s/epoch | CPU ratio | "
        "sampling s/batch | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    main = [row for row in rows if row["train_batch_size"] == batch_size]
    uniform = {row["dataset"]: row for row in main if row["sampler"] == "uniform"}
    for row in main:
        base = uniform.get(row["dataset"])
        ratio = f"{row['seconds_per_epoch'] / base['seconds_per_epoch']:.2f}x" if base else ""
        cpu = row.get("cpu_seconds_per_epoch")
        cpu_text = "" if cpu is None else f"{cpu:.2f}"
        cpu_ratio = (
            f"{cpu / base['cpu_seconds_per_epoch']:.2f}x" if base and cpu and base.get("cpu_seconds_per_epoch") else ""
        )
        estimate = " (est.)" if row["extrapolated"] else ""
        lines.append(
            f"| {row['dataset']} | {row['train_interactions']:,} | {row['sampler']} | "
            f"{row['seconds_per_epoch']:.2f}{estimate} | {ratio} | {cpu_text} | {cpu_ratio} | "
            f"{row['median_sampling_seconds_per_batch']:.4f} | {row['peak_rss_mib']:.0f} |"
        )
    sweep = [row for row in rows if row["sampler"] == "uniform"]
    if len({row["train_batch_size"] for row in sweep}) > 1:
        lines += [
            "",
            "## LightGCN with uniform across train_batch_size",
            "",
            "| dataset | train_batch_size | batches/epoch | s/batch | s/epoch | peak RSS MiB |",
            "|---|---|---|---|---|---|",
        ]
        for row in sorted(sweep, key=lambda row: (row["train_interactions"], row["train_batch_size"])):
            estimate = " (est.)" if row["extrapolated"] else ""
            lines.append(
                f"| {row['dataset']} | {row['train_batch_size']} | {row['batches_per_epoch']} | "
                f"{row['median_seconds_per_batch']:.4f} | {row['seconds_per_epoch']:.2f}{estimate} | "
                f"{row['peak_rss_mib']:.0f} |"
            )
    return "\n".join(lines)


def plot(rows: list[dict], batch_size: int, path: Path, title: str) -> None:
    """Left: training interactions against s/epoch per sampler; right: s/epoch against train_batch_size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curve, sweep) = plt.subplots(1, 2, figsize=(12, 4.5))
    main = [row for row in rows if row["train_batch_size"] == batch_size]
    for sampler in dict.fromkeys(row["sampler"] for row in main):
        points = sorted(
            (row["train_interactions"], row["seconds_per_epoch"]) for row in main if row["sampler"] == sampler
        )
        curve.plot(*zip(*points, strict=True), marker="o", label=sampler)
    curve.set(xscale="log", yscale="log", xlabel="training interactions", ylabel="seconds per epoch (1 thread)")
    curve.set_title(f"every sampler, train_batch_size {batch_size}")
    curve.legend(fontsize=8)
    uniform = [row for row in rows if row["sampler"] == "uniform"]
    for dataset in dict.fromkeys(row["dataset"] for row in uniform):
        points = sorted(
            (row["train_batch_size"], row["seconds_per_epoch"]) for row in uniform if row["dataset"] == dataset
        )
        sweep.plot(*zip(*points, strict=True), marker="o", label=dataset)
    sweep.set(xscale="log", yscale="log", xlabel="train_batch_size", ylabel="seconds per epoch (1 thread)")
    sweep.set_title("uniform across batch sizes")
    sweep.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> int:
    """Resolve the datasets, measure every job in a fresh process, and write the CSV, tables and plot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "beauty-dens", "ml-1m-ahns"])
    parser.add_argument("--model", default="LightGCN")
    parser.add_argument("--samplers", nargs="+", default=SAMPLERS)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is a warm-up")
    parser.add_argument("--batch_size", type=int, default=2048, help="train_batch_size of every sampler's run")
    parser.add_argument(
        "--batch_sizes", type=int, nargs="*", default=[1024, 4096], help="more train_batch_size values for uniform"
    )
    parser.add_argument("--max_batches", type=int, default=None, help="end every epoch after this many batches")
    parser.add_argument("--candidate_num", type=int, default=16, help="M of every candidate-based sampler")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads in every run")
    parser.add_argument("--data", type=Path, default=None, help="folder holding ml-1m-ahns/ (default ../shared/data)")
    parser.add_argument("--dataset_dir", type=Path, default=PROJECT_ROOT / "cache" / "scale-datasets")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "scale")
    parser.add_argument("--tag", default="scale", help="file name of the results")
    parser.add_argument("--note", default="", help="a line about the machine and its load, written into the .md")
    args = parser.parse_args()
    data = args.data
    if data is None and (PROJECT_ROOT.parent / "shared" / "data").is_dir():
        data = PROJECT_ROOT.parent / "shared" / "data"
    if data is not None and not data.is_dir():
        parser.exit(2, f"error: --data {data} is not a folder. Fix: pass the folder that holds ml-1m-ahns/.\n")
    try:
        folders = {name: dataset_folder(name, data, args.dataset_dir) for name in args.datasets}
    except FileNotFoundError as error:
        parser.exit(2, f"error: {error}\n")

    jobs = [
        {"dataset": name, "sampler": sampler, "train_batch_size": args.batch_size}
        for name in args.datasets
        for sampler in args.samplers
    ]
    jobs += [
        {"dataset": name, "sampler": "uniform", "train_batch_size": size}
        for name in args.datasets
        for size in args.batch_sizes
        if size != args.batch_size
    ]
    common = {
        "model": args.model,
        "epochs": args.epochs,
        "max_batches": args.max_batches,
        "candidate_num": args.candidate_num,
        "threads": args.threads,
    }
    jobs = [{**common, **job, "data_path": str(folders[job["dataset"]])} for job in jobs]
    rows = []
    for job in jobs:
        # A fresh process per run: ru_maxrss is the peak of the whole process, so runs must not share one.
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            row = pool.submit(measure, job).result()
        print(
            f"{row['dataset']} {row['sampler']} batch {row['train_batch_size']}: {row['seconds_per_epoch']:.2f} "
            f"s/epoch{' (est.)' if row['extrapolated'] else ''}, peak RSS {row['peak_rss_mib']:.0f} MiB",
            flush=True,
        )
        rows.append(row)

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"{args.tag}.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    command = shlex.join(["python", "benchmarks/scale.py", *sys.argv[1:]])
    cap = f"every epoch capped at {args.max_batches} batches (s/epoch extrapolated), " if args.max_batches else ""
    title = f"{args.model}, {args.threads} thread(s), candidate_num {args.candidate_num}"
    tables = markdown_tables(rows, args.batch_size)
    (args.out / f"{args.tag}.md").write_text(
        f"# Training cost against data size: {args.tag}\n\nCommand: `{command}`\n\n{title}; {args.epochs} epochs per "
        f"run, the first a warm-up, median of the rest; {cap}each run in a process of its own (peak RSS: its "
        f"ru_maxrss). {platform.processor() or platform.machine()}. {args.note}\n\n{tables}\n\n"
        f"Plot: `{args.tag}.png`; every run: `{args.tag}.csv`.\n"
    )
    plot(rows, args.batch_size, args.out / f"{args.tag}.png", title)
    print(tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
