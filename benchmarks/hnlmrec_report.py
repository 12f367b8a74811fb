"""HNLMRec report (issue 5): does fine-tuning the LLM encoder on CF-mined negatives beat the traditional samplers?

Usage: python benchmarks/hnlmrec_report.py [--datasets ml-100k,amazon-office] [--seeds 3] [--model LightGCN]
       [--mixing mixgcf|dins] [--llm template] [--finetune_encoder minilm] [--smoke] [--key=value ...]

Per dataset and seed, validation-selected test Recall@20 and NDCG@20 of five variants of ``--model``:
``uniform``, ``dns``, the mixing sampler (``--mixing``), ``hnlm-untuned`` and ``hnlm-finetuned``
(``--neg_sampler=hnlm --hnlm_negative_source=vector --hnlm_encoder=untuned|finetuned``), with the sparse-user and
long-tail columns of ``recbole_hnlm/bench/subgroups.py``. The fine-tuning chain (``recbole_hnlm.finetune``: mine,
fine-tune, encode with and without the adapter) runs first for each (dataset, seed), since the split and the mining
depend on the seed. Every run goes through the benchmark matrix (``recbole_hnlm.bench``), one matrix per variant
under ``<out>/variants/<variant>/``, and every chain stage is cached: a rerun skips whatever finished.

``--key=value`` settings go to every run; ``llm*``, ``finetune_*`` and ``hnlm_*`` ones go to the chain and to the
two hnlm variants only (``--llm`` and ``--finetune_encoder`` default to ``template`` and ``minilm``, the cheap CPU
settings of ``properties/finetune.yaml``). ``--smoke``: one seed, ml-100k, 2 epochs, a tiny chain (a few minutes),
written to ``results/hnlmrec_report-smoke/``.

The false hard negative rate before and after fine-tuning is read from the chain's outputs: the share of the
encoder's grounded negatives (nearest items of each encoded (user, positive) query, rank 1 and all ``llm_negative_k``)
that are validation or test positives of the user (``negatives/summary.json`` of each encoded folder), beside the
CF-mined hard negatives the encoder was fine-tuned on (``counts`` of the mined dataset's manifest).

Writes ``results/hnlmrec_report/{table.md,report.json,recall_by_variant.png}`` and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import ttest_rel  # noqa: E402

from recbole_hnlm.bench.matrix import FIRST_SEED, MatrixSpec  # noqa: E402
from recbole_hnlm.bench.report import BASELINE, _frame, markdown_table, paired_p_values  # noqa: E402
from recbole_hnlm.bench.runner import run_matrix  # noqa: E402
from recbole_hnlm.bench.runs_file import RunsFile  # noqa: E402
from recbole_hnlm.bench.subgroups import subgroup_columns  # noqa: E402
from recbole_hnlm.errors import HNLMError  # noqa: E402
from recbole_hnlm.finetune.__main__ import parse_settings  # noqa: E402
from recbole_hnlm.io import write_json_atomic, write_text_atomic  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]

OUT = PROJECT_ROOT / "results" / "hnlmrec_report"
SMOKE_OUT = PROJECT_ROOT / "results" / "hnlmrec_report-smoke"  # kept apart so that a smoke run never mixes in
METRICS = ["recall@20", "ndcg@20", *subgroup_columns(20)]
TRADITIONAL = ("uniform", "dns")
CHAIN_PREFIXES = ("llm", "finetune_", "hnlm_")
QUIET = {"state": "ERROR", "show_progress": False, "torch_threads": 1}
SMOKE_SETTINGS = {"epochs": 2}
SMOKE_CHAIN = {
    "finetune_cf_epochs": 2,
    "finetune_max_pairs": 200,
    "finetune_steps": 5,
    "finetune_checkpoint_every": 5,
    "finetune_max_length": 64,
    "finetune_encode_pairs": 500,
}


def variants(mixing: str) -> dict[str, dict]:
    """Variant label: its sampler and whether it trains on the chain's vectors (and which encoder)."""
    return {
        "uniform": {"sampler": "uniform"},
        "dns": {"sampler": "dns"},
        mixing: {"sampler": mixing},
        "hnlm-untuned": {"sampler": "hnlm", "encoder": "untuned"},
        "hnlm-finetuned": {"sampler": "hnlm", "encoder": "finetuned"},
    }


def prepare_chain(dataset: str, seed: int, chain_settings: dict) -> dict:
    """Run (or reuse) the chain's mine, fine-tune and both encode stages; their false hard negative rates."""
    from recbole_hnlm.finetune.chain import ChainRun, encode, fine_tune

    chain = ChainRun(dataset, {**QUIET, **chain_settings, "seed": seed})
    untuned = encode(chain, finetuned=False)["stages"]["negatives"]
    encoder, training = fine_tune(chain)
    finetuned = encode(chain, finetuned=True, encoder=encoder)["stages"]["negatives"]
    mined = json.loads((chain.paths.mined / "manifest.json").read_text())["counts"]
    return false_hard_negatives(mined, untuned, finetuned, training)


def false_hard_negatives(mined: dict, untuned: dict, finetuned: dict, training: dict) -> dict:
    """The rates that the report shows, from the chain's mined counts and the two encoded summaries."""
    return {
        "mined_hard_negatives": mined["false_hard_negative_rate"],
        "mined_unfiltered_top1": mined["false_hard_negative_rate_unfiltered_top1"],
        "mined_pairs": mined["pairs"],
        "untuned_at_1": untuned["generated"]["false_hard_negative_rate_at_1"],
        "untuned_at_k": untuned["generated"]["false_hard_negative_rate_at_k"],
        "finetuned_at_1": finetuned["generated"]["false_hard_negative_rate_at_1"],
        "finetuned_at_k": finetuned["generated"]["false_hard_negative_rate_at_k"],
        "uniform_rate": finetuned["generated"]["uniform_rate_same_units"],
        "encoded_queries": finetuned["generated"]["units_in_budget"],
        "k": finetuned["k"],
        "fine_tuning_loss": [training["losses"][0], training["losses"][-1]] if training.get("losses") else None,
    }


def run_variant(label: str, variant: dict, args, settings: dict, chain_settings: dict, out: Path) -> list[dict]:
    """Run (or skip as finished) one variant's matrix; its finished rows, ``sampler`` relabelled to the variant."""
    extra = {}
    if "encoder" in variant:
        extra = {**chain_settings, "hnlm_negative_source": "vector", "hnlm_encoder": variant["encoder"]}
    spec = MatrixSpec(
        models=[args.model],
        samplers=[variant["sampler"]],
        datasets=args.datasets,
        seeds=args.seeds,
        name=label,
        settings={**settings, **extra},
        subgroups=True,
    )
    folder = out / "variants" / label
    run_matrix(spec, folder)
    hashes = {run["config_hash"] for run in json.loads((folder / "manifest.json").read_text())["runs"]}
    seeds = {str(seed) for seed in args.seeds}
    rows = RunsFile(folder / "runs.csv").rows
    return [{**row, "sampler": label} for row in rows if row["config_hash"] in hashes and row["seed"] in seeds]


def summarise(frame, labels: list[str]) -> dict:
    """Per dataset and variant: mean, std and per-seed values of each metric, and p against uniform."""
    p_values = {metric: paired_p_values(frame, metric) for metric in METRICS}
    summary: dict = {}
    for (dataset, label), group in frame.groupby(["dataset", "sampler"], sort=False):
        entry = {}
        for metric in METRICS:
            values = group.set_index("seed")[metric]
            entry[metric] = {
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else None,
                "per_seed": {str(seed): float(value) for seed, value in values.items()},
                "p_vs_uniform": None
                if label == BASELINE
                else p_values[metric].get((dataset, group["model"].iloc[0], label)),
            }
        summary.setdefault(dataset, {})[label] = entry
    return {dataset: {label: per[label] for label in labels if label in per} for dataset, per in summary.items()}


def paired_p(a: dict, b: dict) -> float | None:
    """Two-sided paired t-test over the seeds two summary entries share (``per_seed``); None below 2 seeds."""
    seeds = sorted(set(a["per_seed"]) & set(b["per_seed"]))
    if len(seeds) < 2:
        return None
    return float(ttest_rel([a["per_seed"][s] for s in seeds], [b["per_seed"][s] for s in seeds]).pvalue)


def significant(a: dict, b: dict) -> bool | None:
    """Whether ``a`` exceeds ``b`` on the mean at p < 0.05 (paired, two-sided); None below 2 shared seeds."""
    p = paired_p(a, b)
    if p is None:
        return None
    return bool(a["mean"] > b["mean"] and p < 0.05)


def seed_gains(a: dict, b: dict) -> dict:
    """``a``'s relative gain over ``b`` per shared seed, as a summary entry (``mean`` and ``per_seed``)."""
    gains = {
        seed: a["per_seed"][seed] / b["per_seed"][seed] - 1
        for seed in set(a["per_seed"]) & set(b["per_seed"])
        if b["per_seed"][seed]
    }
    return {"mean": float(np.mean(list(gains.values()))) if gains else float("nan"), "per_seed": gains}


def _relative(value: float, reference: float) -> float | None:
    return None if not reference or math.isnan(reference) else value / reference - 1


def claims(summary: dict, mixing: str) -> list[dict]:
    """The issue's claims, each with its numbers. A claim holds only where the means point its way and a two-sided
    paired t-test over seeds gives p < 0.05; the right direction at a larger p does not hold (and says its p)."""
    found = []
    for dataset, per in summary.items():
        if "hnlm-finetuned" not in per:
            continue
        tuned = per["hnlm-finetuned"]
        traditional = [label for label in (*TRADITIONAL, mixing) if label in per]
        for metric in ("recall@20", "ndcg@20"):
            best = max(traditional, key=lambda label: per[label][metric]["mean"])
            found.append(
                {
                    "dataset": dataset,
                    "claim": f"hnlm-finetuned beats every traditional sampler on {metric}",
                    "holds": significant(tuned[metric], per[best][metric]),
                    "hnlm-finetuned": tuned[metric]["mean"],
                    "best_traditional": best,
                    "best_traditional_value": per[best][metric]["mean"],
                    "p_vs_best_traditional": paired_p(tuned[metric], per[best][metric]),
                }
            )
        if "hnlm-untuned" in per:
            found.append(
                {
                    "dataset": dataset,
                    "claim": "fine-tuning the encoder improves hnlm on recall@20",
                    "holds": significant(tuned["recall@20"], per["hnlm-untuned"]["recall@20"]),
                    "hnlm-finetuned": tuned["recall@20"]["mean"],
                    "hnlm-untuned": per["hnlm-untuned"]["recall@20"]["mean"],
                    "p_finetuned_vs_untuned": paired_p(tuned["recall@20"], per["hnlm-untuned"]["recall@20"]),
                }
            )
        best = max(traditional, key=lambda label: per[label]["recall@20"]["mean"])
        gains = {
            metric: _relative(tuned[metric]["mean"], per[best][metric]["mean"])
            for metric in ("recall@20", "recall@20_sparse_users", "recall@20_long_tail")
        }
        for group in ("sparse_users", "long_tail"):
            overall, subgroup = gains["recall@20"], gains[f"recall@20_{group}"]
            per_seed = {
                metric: seed_gains(tuned[metric], per[best][metric]) for metric in ("recall@20", f"recall@20_{group}")
            }
            found.append(
                {
                    "dataset": dataset,
                    "claim": f"hnlm-finetuned gains more on {group.replace('_', ' ')} than overall (recall@20, "
                    f"relative to the best traditional sampler, {best})",
                    "holds": None
                    if overall is None or subgroup is None
                    else significant(per_seed[f"recall@20_{group}"], per_seed["recall@20"]),
                    "relative_gain_overall": overall,
                    f"relative_gain_{group}": subgroup,
                    "p_subgroup_vs_overall_gain": paired_p(per_seed[f"recall@20_{group}"], per_seed["recall@20"]),
                }
            )
    return found


def _number(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def fhn_table(fhn: dict) -> str:
    """Markdown: false hard negative rates per dataset, mean over seeds."""
    columns = [
        ("mined_unfiltered_top1", "CF top-1, unfiltered"),
        ("mined_hard_negatives", "CF mined (filtered)"),
        ("untuned_at_1", "un-tuned @1"),
        ("finetuned_at_1", "fine-tuned @1"),
        ("untuned_at_k", "un-tuned @k"),
        ("finetuned_at_k", "fine-tuned @k"),
        ("uniform_rate", "uniform draw"),
        ("encoded_queries", "queries encoded"),
    ]
    lines = [
        f"| dataset | seeds | {' | '.join(title for _, title in columns)} |",
        f"|---|---:|{'---:|' * len(columns)}",
    ]
    for dataset, per_seed in fhn.items():
        cells = []
        for key, _ in columns:
            values = [record[key] for record in per_seed.values() if record.get(key) is not None]
            digits = 0 if key == "encoded_queries" else 4
            cells.append(_number(float(np.mean(values)), digits) if values else "n/a")
        lines.append(f"| {dataset} | {len(per_seed)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def claims_text(found: list[dict]) -> str:
    """One line per claim: holds or not, with its numbers."""
    lines = []
    for claim in found:
        verdict = {True: "holds", False: "does not hold", None: "undecided"}[claim["holds"]]
        numbers = ", ".join(
            f"{key} {_number(value) if value is None or isinstance(value, float) else value}"
            for key, value in claim.items()
            if key not in ("dataset", "claim", "holds")
        )
        lines.append(f"- {claim['dataset']}: {claim['claim']}: **{verdict}** ({numbers})")
    return "\n".join(lines)


def plot_recall(summary: dict, path: Path) -> None:
    """Bars of mean Recall@20 (std as error bar) overall, for sparse users and on long-tail items, per variant."""
    groups = ["recall@20", "recall@20_sparse_users", "recall@20_long_tail"]
    datasets = list(summary)
    figure, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets, strict=True):
        labels = list(summary[dataset])
        width = 0.8 / len(labels)
        for offset, label in enumerate(labels):
            values = summary[dataset][label]
            axis.bar(
                [index + offset * width for index in range(len(groups))],
                [values[metric]["mean"] for metric in groups],
                width,
                yerr=[values[metric]["std"] or 0.0 for metric in groups],
                capsize=3,
                label=label,
                color=plt.get_cmap("tab10")(offset % 10),
            )
        axis.set_xticks([index + width * (len(labels) - 1) / 2 for index in range(len(groups))], groups)
        axis.set_title(dataset)
        axis.set_ylabel("test Recall@20")
    axes[0][-1].legend(title="variant", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(rows: list[dict], fhn: dict, labels: list[str], mixing: str, out: Path, meta: dict) -> str:
    """Write table.md, report.json and recall_by_variant.png from the runs' rows and the chain's rates; the table."""
    frame = _frame(rows)
    if frame.empty:
        return "No finished run to report (see errors.log under each variant's folder)."
    frame = frame[["model", "sampler", "dataset", "seed", *METRICS, "seconds_per_epoch"]]
    summary = summarise(frame, labels)
    found = claims(summary, mixing)
    metrics_table = markdown_table(frame, "recall@20")
    table = (
        f"## Test metrics ({meta['model']})\n\n{metrics_table}\n\n"
        "`_sparse_users`: the quarter of test users with the fewest training interactions; `_long_tail`: only test "
        "positives outside the 20% most-trained items count (recbole_hnlm/bench/subgroups.py).\n\n"
        f"## False hard negative rate (share of negatives that are validation/test positives)\n\n{fhn_table(fhn)}\n\n"
        "CF top-1 / mined: the mining CF model's top-scored non-interacted item and the hard negatives kept after "
        "the false-negative filters (the fine-tuning data). un-tuned / fine-tuned: the catalogue items nearest each "
        "encoded (user, positive) query, at rank 1 and over the k nearest, before and after LoRA fine-tuning. "
        "uniform draw: the expected share for a uniformly drawn non-training item. Only the pairs whose "
        "query is encoded (queries encoded, of every training pair) get a semantic negative in the hnlm runs.\n\n"
        f"## What holds (p < 0.05, paired t-test over seeds)\n\n{claims_text(found)}\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table, encoding="utf-8")
    plot_recall(summary, out / "recall_by_variant.png")
    report = {**meta, "variants": labels, "metrics": summary, "false_hard_negatives": fhn, "claims": found}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return table


def parse_arguments(argv: list[str]) -> tuple[argparse.Namespace, dict, dict]:
    """The options, the settings of every run and the chain's (and hnlm variants') settings."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--datasets", default="ml-100k,amazon-office")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 2020 .. 2020+N-1")
    parser.add_argument("--model", default="LightGCN")
    parser.add_argument("--mixing", choices=("mixgcf", "dins"), default="mixgcf")
    parser.add_argument("--llm", default="template", help="profile source of the chain (properties/llm.yaml)")
    parser.add_argument("--finetune_encoder", default="minilm", help="smollm2 | minilm | a local folder")
    parser.add_argument("--smoke", action="store_true", help="1 seed, ml-100k, 2 epochs, a tiny chain")
    parser.add_argument("--out", default=None, help=f"default results/{OUT.name} (--smoke: results/{SMOKE_OUT.name})")
    args, rest = parser.parse_known_args(argv)
    given = parse_settings(rest)
    chain = {key: value for key, value in given.items() if key.startswith(CHAIN_PREFIXES)}
    settings = {key: value for key, value in given.items() if key not in chain}
    chain = {"llm": args.llm, "finetune_encoder": args.finetune_encoder, **chain}
    if args.smoke:
        args.datasets, args.seeds = "ml-100k", 1
        settings, chain = {**SMOKE_SETTINGS, **settings}, {**SMOKE_CHAIN, **chain}
    args.datasets = [name.strip() for name in args.datasets.split(",") if name.strip()]
    args.seeds = [FIRST_SEED + index for index in range(args.seeds)]
    args.out = Path(args.out or (SMOKE_OUT if args.smoke else OUT))
    return args, settings, chain


def recheck_claims(out: Path) -> str:
    """Recompute the claims of a written report from its per-seed metrics (report.json), and rewrite them in
    report.json and table.md: no run is trained again."""
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    found = claims(report["metrics"], report.get("mixing", "mixgcf"))
    write_json_atomic(out / "report.json", {**report, "claims": found})
    table = (out / "table.md").read_text(encoding="utf-8")
    heading = table.index("## What holds")
    table = table[:heading] + f"## What holds (p < 0.05, paired t-test over seeds)\n\n{claims_text(found)}\n"
    write_text_atomic(out / "table.md", table)
    return claims_text(found)


def main(argv: list[str] | None = None) -> int:
    """Run the chain and the variants (skipping what finished), write the report, print its table."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--recheck_claims"]:
        print(recheck_claims(Path(argv[1]) if len(argv) > 1 else OUT))
        return 0
    args, settings, chain_settings = parse_arguments(argv)
    started = time.perf_counter()
    labels = list(variants(args.mixing))
    try:
        fhn = {
            dataset: {str(seed): prepare_chain(dataset, seed, {**settings, **chain_settings}) for seed in args.seeds}
            for dataset in args.datasets
        }
        rows = []
        for label, variant in variants(args.mixing).items():
            rows += run_variant(label, variant, args, settings, chain_settings, args.out)
    except HNLMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = [row for row in rows if row["status"] != "ok"]
    meta = {
        "command": shlex.join(["python", "benchmarks/hnlmrec_report.py", *argv]),
        "model": args.model,
        "datasets": args.datasets,
        "seeds": args.seeds,
        "settings": settings,
        "chain_settings": chain_settings,
        "failed_runs": [f"{row['sampler']} {row['dataset']} {row['seed']}: {row['error']}" for row in failed],
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(write_report(rows, fhn, labels, args.mixing, args.out, meta))
    print(f"{len(rows) - len(failed)} run(s) ok, {len(failed)} failed; written to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
