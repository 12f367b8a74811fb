"""Throughput of the fine-tuning chain's encoder on this machine: LoRA steps per second, texts encoded per second,
peak memory.

Usage: python benchmarks/finetune_throughput.py [--encoders smollm2 minilm] [--steps 6] [--batch_size 8]
       [--max_length 128] [--texts 64] [--threads 1] [--device auto]

Texts are real ml-100k ones in the chain's prompt formats, from the rule-written (template) profiles of the
training split: item texts (``Item: <profile>``), and queries (positive item's profile + user's profile) of the
first training pairs. Each encoder runs in its own process, so that its peak resident memory
(``resource.getrusage``, and ``torch.cuda.max_memory_allocated`` on a GPU) is its own. Fine-tuning steps run
LoRA (q, k, v, o) with the chain's InfoNCE loss on batches of (query, hard, easy) texts, the first step being a
warm-up left out of the median. Writes results/finetune_throughput/{results.json,table.md} and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recbole_hnlm.config import HNLMConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]

OUT = PROJECT_ROOT / "results" / "finetune_throughput"


def real_texts(count: int) -> dict[str, list[str]]:
    """``count`` item texts, queries, hard and easy negative texts from ml-100k's template profiles."""
    from recbole.utils import init_seed

    from recbole_hnlm.data.preparation import load_dataset, prepare_data
    from recbole_hnlm.finetune.encoder import item_text, query_text
    from recbole_hnlm.llm import LLMSettings
    from recbole_hnlm.llm.catalogue import Catalogue

    config = HNLMConfig("BPR", "ml-100k", config_dict={"state": "ERROR", "show_progress": False, "llm": "template"})
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = prepare_data(config, load_dataset(config))
    settings = LLMSettings.from_config(config)
    catalogue = Catalogue.from_split(config, train._dataset, [valid._dataset, test._dataset], settings)
    keys = catalogue.train_pair_keys()[:: max(1, len(catalogue.train_items) // count)][:count]
    users, items = np.divmod(keys, catalogue.n_items)
    rng = np.random.default_rng(0)
    return {
        "items": [item_text(catalogue.item_facts[item]) for item in range(1, count + 1)],
        "queries": [
            query_text(catalogue.user_facts(int(user), settings.history_len), catalogue.item_facts[int(item)])
            for user, item in zip(users, items, strict=True)
        ],
        "hard": [item_text(catalogue.item_facts[int(item)]) for item in rng.integers(1, catalogue.n_items, count)],
        "easy": [item_text(catalogue.item_facts[int(item)]) for item in rng.integers(1, catalogue.n_items, count)],
    }


def measure(encoder_name: str, args) -> dict:
    """Load, encode and fine-tune one encoder; its figures."""
    from recbole_hnlm.finetune.chain import MODEL_CACHE
    from recbole_hnlm.finetune.encoder import TextEncoder, encoder_source
    from recbole_hnlm.finetune.train import ranking_loss

    torch.set_num_threads(args.threads)
    texts = real_texts(args.texts)
    started = time.perf_counter()
    encoder = TextEncoder(
        encoder_source(encoder_name), None, args.max_length, args.device, PROJECT_ROOT / "cache" / MODEL_CACHE
    )
    load_seconds = time.perf_counter() - started
    figures = {"encoder": encoder_name, "pooling": encoder.pooling, "dim": encoder.dim, "load_seconds": load_seconds}
    for kind in ("items", "queries"):
        tokens = int(encoder.tokenize(texts[kind])["attention_mask"].sum())
        started = time.perf_counter()
        encoder.encode(texts[kind], args.encode_batch_size)
        seconds = time.perf_counter() - started
        figures[f"encode_{kind}_per_second"] = len(texts[kind]) / seconds
        figures[f"mean_tokens_{kind}"] = tokens / len(texts[kind])
    torch.manual_seed(0)
    encoder.add_lora(8, 16, 0.0)
    optimiser = torch.optim.AdamW(list(encoder.trainable_parameters().values()), lr=1e-4)
    step_seconds = []
    for step in range(args.steps):
        rows = [(step * args.batch_size + offset) % args.texts for offset in range(args.batch_size)]
        batch = [
            {
                "query": texts["queries"][row],
                "hard_negative_text": texts["hard"][row],
                "easy_negative_text": texts["easy"][row],
            }
            for row in rows
        ]
        started = time.perf_counter()
        loss = ranking_loss(encoder, batch, 0.05)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step_seconds.append(time.perf_counter() - started)
    median = statistics.median(step_seconds[1:] or step_seconds)
    figures.update(
        {
            "train_steps_per_second": 1 / median,
            "train_texts_per_second": 3 * args.batch_size / median,
            "step_seconds": step_seconds,
            "trainable_parameters": sum(p.numel() for p in encoder.trainable_parameters().values()),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
            "device": str(encoder.device),
        }
    )
    return figures


def table(rows: list[dict], args, machine: dict) -> str:
    """The Markdown table of the figures."""
    lines = [
        f"Encoder throughput on {machine['device']} ({args.threads} torch thread(s), load average "
        f"{machine['load_average']}), max_length {args.max_length}, fine-tuning batch {args.batch_size} "
        f"(x3 texts: query, hard, easy), LoRA r=8 on q/k/v/o, encode batch {args.encode_batch_size}.",
        "",
        "| encoder | pooling | load s | items/s (mean tokens) | queries/s (mean tokens) | LoRA steps/s | "
        "texts/s in training | trainable params | peak RSS MiB | peak GPU MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        gpu = f"{row['peak_gpu_mib']:.0f}" if row["peak_gpu_mib"] is not None else "-"
        lines.append(
            f"| {row['encoder']} | {row['pooling']} | {row['load_seconds']:.1f} | "
            f"{row['encode_items_per_second']:.1f} ({row['mean_tokens_items']:.0f}) | "
            f"{row['encode_queries_per_second']:.1f} ({row['mean_tokens_queries']:.0f}) | "
            f"{row['train_steps_per_second']:.3f} | {row['train_texts_per_second']:.1f} | "
            f"{row['trainable_parameters']:,} | {row['peak_rss_mib']:.0f} | {gpu} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run each encoder in a child process and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", nargs="+", default=["smollm2", "minilm"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--encode_batch_size", type=int, default=16)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return
    rows = []
    for encoder in args.encoders:
        command = [sys.executable, __file__, *sys.argv[1:], "--child", encoder]
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
        if finished.returncode:
            sys.stderr.write(finished.stderr[-3000:])
            raise SystemExit(f"{encoder}: the measuring process failed (exit {finished.returncode})")
        rows.append(json.loads(finished.stdout.strip().splitlines()[-1]))
    machine = {
        "device": rows[0]["device"] if rows else "cpu",
        "cpu_count": os.cpu_count(),
        "load_average": ", ".join(f"{value:.2f}" for value in os.getloadavg()),
        "torch": torch.__version__,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    markdown = table(rows, args, machine)
    (out / "results.json").write_text(
        json.dumps({"settings": vars(args), "machine": machine, "rows": rows}, indent=2), encoding="utf-8"
    )
    (out / "table.md").write_text(markdown, encoding="utf-8")
    print(markdown)


if __name__ == "__main__":
    main()
