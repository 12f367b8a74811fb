"""Where a training epoch's time goes, per sampler: torch profiler ranges over the phases of every batch.

Usage: python benchmarks/sampler_profile.py [--model LightGCN] [--dataset ml-100k] [--samplers uniform dns mixgcf hnlm]
       [--max_batches 20] [--threads 1] [--out results/sampler-profile]

Each sampler trains one warm-up epoch and one profiled epoch, both capped at ``--max_batches`` batches, with 1 torch
thread. The phases are labelled by wrapping the functions that run them (nothing in the package changes): building
the batch (RecBole's collate, which calls the plugin's sampler), drawing candidates and rejecting training positives,
handing the pool to torch, the loss (propagation, candidate scoring, picking or mixing, HNLMRec's semantic negatives
and alignment term), backward and the optimiser step. Prints, per sampler, milliseconds per batch of each phase and
the top operators by self CPU time, and writes them to ``<out>/<dataset>-<model>.md``.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from recbole_hnlm.hnlm import model as hnlmrec
from recbole_hnlm.hnlm import sampler as hnlm
from recbole_hnlm.model import adapters
from recbole_hnlm.samplers import base, mixing

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampler_speed import build_variant  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# (owner, attribute, label): every function whose calls become a labelled range of the profile.
PHASES = [
    (torch.utils.data.dataloader._SingleProcessDataLoaderIter, "_next_data", "batch: build (collate + sampler)"),
    (base.NegativeSampler, "draw_uniform", "batch: draw uniform negatives, reject positives"),
    (base.CandidatePoolSampler, "draw_pool", "batch: draw candidate pool, reject positives"),
    (base.CandidatePoolSampler, "candidate_pool", "batch: pool to torch"),
    (hnlm.SemanticNegativeSampler, "extra_batch_fields", "batch: hnlm fields (cache look-up)"),
    (adapters.LinearGraphAdapter, "propagation", "loss: propagate"),
    (adapters.Propagation, "rows", "loss: gather batch rows"),
    (adapters.LightGCNAdapter, "item_negative_loss", "loss: model's loss on picked ids"),
    (adapters.LightGCNAdapter, "synthesized_negative_loss", "loss: model's loss on synthesized negatives"),
    (base, "candidate_scores", "loss: score candidates (pooled)"),
    (adapters, "candidate_scores", "loss: score candidates (per layer)"),
    (mixing.MixingSampler, "hardest_layers", "loss: hardest per layer"),
    (adapters.ModelAdapter, "pairwise_loss", "loss: pairwise loss"),
    (base.ModelScoredSampler, "pick_in_loss", "loss: pick among candidates"),
    (hnlmrec.HNLMRec, "semantic_mix", "loss: hnlm semantic negative"),
    (hnlmrec.HNLMRec, "alignment_loss", "loss: hnlm alignment term"),
    (torch.Tensor, "backward", "backward"),
    (torch.optim.Adam, "step", "optimiser step"),
]


def labelled(function: Callable, label: str) -> Callable:
    """``function`` with every call recorded as the profiler range ``label``."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with record_function(label):
            return function(*args, **kwargs)

    return wrapper


def profile_sampler(sampler: str, args) -> tuple[dict[str, float], str, int]:
    """Milliseconds per batch of each phase, the top-operator table, and the batches profiled."""
    variant = build_variant(sampler, args.dataset, args.model, args.candidate_num)
    variant.train_data.max_batches = args.max_batches
    variant.trainer._train_epoch(variant.train_data, 0)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        with record_function("epoch"):
            variant.trainer._train_epoch(variant.train_data, 1)
    events = profiler.key_averages()
    labels = ["epoch"] + [label for _, _, label in PHASES]
    totals = {event.key: event.cpu_time_total for event in events if event.key in labels}
    batches = args.max_batches or len(variant.train_data)
    per_batch = {label: totals[label] / 1000 / batches for label in labels if label in totals}
    operators = events.table(sort_by="self_cpu_time_total", row_limit=args.operators)
    return per_batch, operators, batches


def main() -> None:
    """Profile each sampler and write the phase table and the operator tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="LightGCN")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--samplers", nargs="+", default=["uniform", "dns", "mixgcf", "hnlm"])
    parser.add_argument("--candidate_num", type=int, default=16)
    parser.add_argument("--max_batches", type=int, default=20, help="batches per epoch (the whole epoch: 0)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--operators", type=int, default=12, help="rows of each top-operator table")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "sampler-profile")
    args = parser.parse_args()
    args.max_batches = args.max_batches or None
    torch.set_num_threads(args.threads)
    for owner, attribute, label in PHASES:
        setattr(owner, attribute, labelled(getattr(owner, attribute), label))

    results = {sampler: profile_sampler(sampler, args) for sampler in args.samplers}
    labels = list(dict.fromkeys(label for per_batch, _, _ in results.values() for label in per_batch))
    lines = [
        "| phase (ms per batch, CPU) | " + " | ".join(args.samplers) + " |",
        "|---|" + "---|" * len(args.samplers),
    ]
    for label in labels:
        cells = [
            f"{results[sampler][0][label]:.2f}" if label in results[sampler][0] else "" for sampler in args.samplers
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    command = shlex.join(["python", "benchmarks/sampler_profile.py", *sys.argv[1:]])
    batches = next(iter(results.values()))[2]
    text = [
        f"# Profile: {args.model} on {args.dataset}\n",
        f"Command: `{command}`\n",
        f"{batches} batches per sampler after a warm-up epoch, {args.threads} thread(s), torch {torch.__version__}. "
        "Ranges nest (the batch build holds the draw; the loss holds propagation and scoring), so columns do not "
        "add up.\n",
        table + "\n",
    ]
    for sampler, (_, operators, _) in results.items():
        text.append(f"## Top operators by self CPU time: {sampler}\n\n```\n{operators}\n```\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.dataset}-{args.model}.md").write_text("\n".join(text))
    print(table)


if __name__ == "__main__":
    main()
