"""Throughput of the LLM side on this machine: smollm2 profiles per minute and text embeddings per second.

Usage: python benchmarks/llm_throughput.py [--dataset ml-100k] [--rounds 2] [--prompts 16]
       [--variants 1x1 1x8 1x16 2x16] [--max_new_tokens 64]

A variant ``TxB`` generates item profiles with T torch threads and B prompts per generate() call; user profiles
and per-user negatives run at 1 thread and the default batch. Real ml-100k prompts (the training split's
histories; negatives from the rule-written user profile and the three latest training items) are answered by
smollm2 with the settings of properties/llm.yaml; variants run interleaved, round after round, so that load
from other processes falls on all of them alike, and the median round is reported with the machine's load
average. Embeddings: MiniLM over every item's template profile, per thread count. Writes
results/llm_throughput/<dataset>.{json,md}, prints the Markdown table, and projects the time of a full smollm2
run (all item and user profiles, one negative per user) from the best rate of each prompt kind.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from logging import getLogger
from pathlib import Path

import torch
from recbole.utils import init_logger, init_seed
from tqdm import tqdm

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import load_dataset, prepare_data
from recbole_hnlm.llm import LLMSettings
from recbole_hnlm.llm.backends import TextEmbedder, create_generator
from recbole_hnlm.llm.catalogue import Catalogue
from recbole_hnlm.llm.json_repair import parse_llm_json
from recbole_hnlm.llm.prompts import read_prompts, usable_answer

PROJECT_ROOT = Path(__file__).resolve().parents[1]

QUIET = {"state": "INFO", "show_progress": False, "results_dir": None, "llm": "smollm2"}


def benchmark_prompts(catalogue: Catalogue, settings: LLMSettings, count: int) -> dict[str, list]:
    """The first ``count`` item, user and per-user negative prompts, as the stages render them."""
    prompts = read_prompts(settings.prompt_folder)
    items = [prompts["item_profile"].render(item=catalogue.item_facts[item]) for item in range(1, count + 1)]
    negatives = [
        prompts["negative"].render(
            user_profile=catalogue.user_facts(user, 0),
            anchor="; ".join(catalogue.item_labels[i] for i in catalogue.recent_history(user, 3)[::-1]),
        )
        for user in range(1, count + 1)
    ]
    users = []
    for user in range(1, count + 1):
        history = "\n".join(
            f"- {catalogue.item_labels[i]}" for i in catalogue.recent_history(user, settings.history_len)
        )
        users.append(
            prompts["user_profile"].render(demographics=catalogue.user_demographics[user] or "unknown", history=history)
        )
    return {"item_profile": items, "user_profile": users, "negative": negatives}


def time_generation(generator, prompts: list, kind: str, threads: int, batch: int) -> dict:
    """Seconds, answers per minute, new tokens per second and usable share for one pass over ``prompts``."""
    torch.set_num_threads(threads)
    tokenizer = generator.tokenizer
    started = time.perf_counter()
    answers = []
    for start in range(0, len(prompts), batch):
        answers += generator.generate(prompts[start : start + batch])
    seconds = time.perf_counter() - started
    new_tokens = sum(
        len(tokenizer(answer, add_special_tokens=False)["input_ids"])
        - len(tokenizer(prompt.answer_start, add_special_tokens=False)["input_ids"])
        for prompt, answer in zip(prompts, answers, strict=True)
    )
    usable = sum(usable_answer(kind, parse_llm_json(answer))[0] is not None for answer in answers)
    return {
        "seconds": seconds,
        "per_minute": 60 * len(prompts) / seconds,
        "tokens_per_second": new_tokens / seconds,
        "usable_share": usable / len(prompts),
    }


def time_embeddings(settings: LLMSettings, texts: list[str], threads: int) -> dict:
    """Texts per second of the embedder over ``texts`` with ``threads`` torch threads (after a warm-up batch)."""
    torch.set_num_threads(threads)
    embedder = TextEmbedder(settings)
    embedder.encode(texts[:64])
    started = time.perf_counter()
    embedder.encode(texts)
    seconds = time.perf_counter() - started
    return {"texts": len(texts), "seconds": seconds, "per_second": len(texts) / seconds}


def table(generation: dict, embeddings: dict, projection: dict) -> str:
    """Markdown tables: generation per variant and prompt kind, embeddings per thread count, full-run projection."""
    lines = [
        "| prompts | threads | batch | median per minute | new tokens/s | usable JSON | rounds |",
        "|---|---|---|---|---|---|---|",
    ]
    for (kind, threads, batch), runs in generation.items():
        median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        lines.append(
            f"| {kind} | {threads} | {batch} | {median['per_minute']:.1f} | {median['tokens_per_second']:.1f} | "
            f"{median['usable_share']:.0%} | {len(runs)} |"
        )
    lines += ["", "| embeddings (MiniLM) | threads | texts | texts/s |", "|---|---|---|---|"]
    for threads, run in embeddings.items():
        lines.append(f"| item template profiles | {threads} | {run['texts']} | {run['per_second']:.0f} |")
    lines += [
        "",
        "| full smollm2 run on this machine (projected from the best rate) | units | minutes |",
        "|---|---|---|",
    ]
    for stage, (units, minutes) in projection.items():
        lines.append(f"| {stage} | {units} | {minutes:.1f} |")
    return "\n".join(lines)


def main() -> None:
    """Measure, print and save."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--prompts", type=int, default=16, help="prompts per variant and round (batch 1 uses a quarter)"
    )
    parser.add_argument("--variants", nargs="+", default=["1x1", "1x8", "1x16", "2x16"], help="THREADSxBATCH")
    parser.add_argument("--max_new_tokens", type=int, default=None, help="default: llm_max_new_tokens of llm.yaml")
    args = parser.parse_args()

    settings_dict = {**QUIET, **({"llm_max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {})}
    config = HNLMConfig("BPR", args.dataset, config_dict=settings_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    train, valid, test = prepare_data(config, load_dataset(config))
    settings = LLMSettings.from_config(config)
    catalogue = Catalogue.from_split(config, train._dataset, [valid._dataset, test._dataset], settings)
    prompts = benchmark_prompts(catalogue, settings, args.prompts)
    load_before = os.getloadavg()
    generator = create_generator(settings)

    variants = [tuple(int(part) for part in variant.split("x")) for variant in args.variants]
    default_batch = settings.batch_size
    plan = [("item_profile", threads, batch) for threads, batch in variants]
    plan += [("user_profile", 1, default_batch), ("negative", 1, default_batch)]
    generation: dict[tuple, list[dict]] = {key: [] for key in plan}
    for _ in tqdm(range(args.rounds), desc="rounds"):
        for kind, threads, batch in plan:
            count = max(1, args.prompts // 4) if batch == 1 else args.prompts
            chosen = prompts[kind][:count]
            generation[(kind, threads, batch)].append(time_generation(generator, chosen, kind, threads, batch))
    texts = [catalogue.item_facts[item] for item in range(1, catalogue.n_items)]
    embeddings = {threads: time_embeddings(settings, texts, threads) for threads in sorted({t for t, _ in variants})}

    def best(kind: str) -> float:
        rates = [
            statistics.median(run["per_minute"] for run in runs) for key, runs in generation.items() if key[0] == kind
        ]
        return max(rates)

    users_with_history = int((catalogue.train_indptr[1:] - catalogue.train_indptr[:-1] > 0).sum())
    projection = {
        "item profiles": (catalogue.n_items - 1, (catalogue.n_items - 1) / best("item_profile")),
        "user profiles": (catalogue.n_users - 1, (catalogue.n_users - 1) / best("user_profile")),
        "negatives, one per user": (users_with_history, users_with_history / best("negative")),
    }
    markdown = table(generation, embeddings, projection)
    out = PROJECT_ROOT / "results" / "llm_throughput"
    out.mkdir(parents=True, exist_ok=True)
    load_after = os.getloadavg()
    header = (
        f"smollm2 ({generator.model_name}) on {args.dataset}, max_new_tokens={settings.max_new_tokens}, "
        f"{args.rounds} rounds, {os.cpu_count()} CPUs shared with other processes (1-minute load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after), {time.strftime('%Y-%m-%d %H:%M')}"
    )
    (out / f"{args.dataset}.md").write_text(f"{header}\n\n{markdown}\n")
    payload = {
        "header": header,
        "settings": vars(args),
        "generation": {
            f"{kind} threads={threads} batch={batch}": runs for (kind, threads, batch), runs in generation.items()
        },
        "embeddings": embeddings,
        "projection_minutes": {stage: minutes for stage, (_, minutes) in projection.items()},
    }
    (out / f"{args.dataset}.json").write_text(json.dumps(payload, indent=2))
    logger.info(f"{header}\n\n{markdown}")
    print(markdown)


if __name__ == "__main__":
    main()
