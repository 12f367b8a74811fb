"""Does the semantic side earn its place? LightGCN with uniform, dns and hnlm variants, 3 seeds, one table.

Usage: python benchmarks/semantic_quality.py [--datasets ml-100k amazon-office] [--groups template smollm2-neighbour]
       [--seeds 3] [--epochs 60] [--report_only]

Each group is one benchmark matrix (``recbole_hnlm.bench``) in ``results/semantic-<dataset>-<group>/``, so a
rerun skips finished runs and an interrupted one resumes:

- ``template``: uniform, dns and hnlm on template profiles (neighbour negatives, no LLM);
- ``smollm2-neighbour``: hnlm on SmolLM2-135M profiles, semantic negatives from profile neighbours;
- ``smollm2-generated``: hnlm on SmolLM2-135M profiles, negatives grounded from the LLM's own descriptions;
- ``smollm2-vector``: hnlm on the embedding of the LLM's description itself.

On amazon-office the smollm2 groups ask the LLM for every item profile but for the profiles and negatives of 500
users only (``LLM_USER_BUDGET``; the other 4,405 users' profiles are written by rule), which takes about 1 h
instead of 4.5 h of CPU.

The smollm2 groups need the LLM cache of the dataset (``python -m recbole_hnlm.llm all --dataset <d> --llm
smollm2``: about 1.5 h of CPU for ml-100k); a run builds it when missing. ml-100k's split is random, so its runs
fix ``split_seed`` at RecBole's default seed: the seeds then vary the training only, the paired test compares like
with like, and all seeds share one LLM cache. Writes results/semantic-quality/{table.md,results.json,recall20.png}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from scipy.stats import ttest_rel

from recbole_hnlm.bench.matrix import MatrixSpec
from recbole_hnlm.bench.report import plot_recall_per_label
from recbole_hnlm.bench.runner import run_matrix

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# group -> (samplers, settings on the command line of its matrix)
GROUPS = {
    "template": ("uniform,dns,hnlm", ["--llm=template"]),
    "smollm2-neighbour": ("hnlm", ["--llm=smollm2", "--hnlm_negative_source=neighbour"]),
    "smollm2-generated": ("hnlm", ["--llm=smollm2", "--hnlm_negative_source=generated"]),
    "smollm2-vector": ("hnlm", ["--llm=smollm2", "--hnlm_negative_source=vector"]),
}
RANDOM_SPLIT_DATASETS = {"ml-100k"}  # RecBole's RS split; the bundled Amazon and DENS sets come pre-split
# Datasets whose users are too many for SmolLM2 on a CPU (Office: 4,905 users, ~4 h): the LLM writes the profiles
# and negatives of this many users (llm_negative_budget, seeded order), the other users' profiles are rule-written.
LLM_USER_BUDGET = {"amazon-office": 500}
SPLIT_SEED = 2020
METRICS = ("recall@20", "ndcg@20")
OUT = PROJECT_ROOT / "results"


def group_args(group: str, dataset: str, epochs: int) -> list[str]:
    """The command-line settings of one group's matrix on ``dataset``."""
    extra = [f"--split_seed={SPLIT_SEED}"] if dataset in RANDOM_SPLIT_DATASETS else []
    if group.startswith("smollm2") and dataset in LLM_USER_BUDGET:
        extra += ["--llm_user_profile_scope=budget", f"--llm_negative_budget={LLM_USER_BUDGET[dataset]}"]
    return [f"--epochs={epochs}", *GROUPS[group][1], *extra]


def variant_name(group: str, sampler: str) -> str:
    """The row label of a run: the sampler, and for hnlm which profiles and negatives it used."""
    if sampler != "hnlm":
        return sampler
    return "hnlm (template, neighbour)" if group == "template" else f"hnlm ({group.replace('-', ', ')})"


def run_groups(args) -> None:
    """Run (or resume) every group's matrix."""
    for dataset in args.datasets:
        for group in args.groups:
            spec = MatrixSpec.from_sources(
                models="LightGCN",
                samplers=GROUPS[group][0],
                datasets=dataset,
                n_seeds=args.seeds,
                name=f"semantic-{dataset}-{group}",
                cmd_args=group_args(group, dataset, args.epochs),
            )
            run_matrix(spec, OUT / spec.name)


def collect(args) -> pd.DataFrame:
    """Finished runs of every group, one row each, labelled by variant."""
    frames = []
    for dataset in args.datasets:
        for group in args.groups:
            path = OUT / f"semantic-{dataset}-{group}" / "runs.csv"
            if not path.is_file():
                continue
            frame = pd.read_csv(path)
            frame = frame[frame["status"] == "ok"].copy()
            frame["variant"] = [variant_name(group, sampler) for sampler in frame["sampler"]]
            frame["group"] = group
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def paired_p(frame: pd.DataFrame, variant: str, baseline: str, metric: str) -> float | None:
    """Two-sided paired t-test over the seeds both variants ran (None below 2 pairs)."""
    a = frame[frame["variant"] == variant].set_index("seed")[metric]
    b = frame[frame["variant"] == baseline].set_index("seed")[metric]
    seeds = sorted(set(a.index) & set(b.index))
    if len(seeds) < 2 or variant == baseline:
        return None
    return float(ttest_rel(a[seeds], b[seeds]).pvalue)


def summarise(frame: pd.DataFrame) -> list[dict]:
    """Mean, std and p-values per (dataset, variant)."""
    rows = []
    for (dataset, variant), runs in frame.groupby(["dataset", "variant"], sort=False):
        data = frame[frame["dataset"] == dataset]
        row = {"dataset": dataset, "variant": variant, "group": runs["group"].iloc[0], "seeds": len(runs)}
        for metric in (*METRICS, "seconds_per_epoch", "best_epoch"):
            row[metric] = float(runs[metric].mean())
            row[f"{metric}_std"] = float(runs[metric].std(ddof=1)) if len(runs) > 1 else 0.0
        row["p_vs_uniform"] = paired_p(data, variant, "uniform", "recall@20")
        row["p_vs_dns"] = paired_p(data, variant, "dns", "recall@20")
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    """One table per dataset."""

    def p(value):
        return "—" if value is None else f"{value:.3f}"

    lines = []
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        uniform = next((r for r in rows if r["dataset"] == dataset and r["variant"] == "uniform"), None)
        lines += [
            f"### {dataset}",
            "",
            "| variant | seeds | Recall@20 | NDCG@20 | p vs uniform | p vs dns | s/epoch (x uniform) | best epoch |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in (r for r in rows if r["dataset"] == dataset):
            # Only within one matrix: other groups ran at other times, under other load on the shared cores.
            same_run = uniform is not None and uniform["group"] == row["group"]
            ratio = f" ({row['seconds_per_epoch'] / uniform['seconds_per_epoch']:.2f}x)" if same_run else ""
            lines.append(
                f"| {row['variant']} | {row['seeds']} | {row['recall@20']:.4f} ± {row['recall@20_std']:.4f} | "
                f"{row['ndcg@20']:.4f} ± {row['ndcg@20_std']:.4f} | {p(row['p_vs_uniform'])} | {p(row['p_vs_dns'])} | "
                f"{row['seconds_per_epoch']:.2f}{ratio} | {row['best_epoch']:.0f} |"
            )
        lines.append("")
    lines.append(
        "Test metrics at the epoch chosen on validation, mean ± std over seeds; p: two-sided paired t-test over "
        "seeds on Recall@20. s/epoch: mean training epoch (sampling included), 1 torch thread, on a machine shared "
        "with other jobs; the ratio to uniform only within one matrix (the same group, run together), since the "
        "groups ran at different times under different load."
    )
    return "\n".join(lines)


def main() -> None:
    """Run what is missing, then print and save the merged table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "amazon-office"])
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--report_only", action="store_true", help="merge the finished runs, run nothing")
    args = parser.parse_args()
    if not args.report_only:
        run_groups(args)
    rows = summarise(collect(args))
    out = OUT / "semantic-quality"
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2))
    plot_recall_per_label(rows, "variant", out / "recall20.png")
    print(table)


if __name__ == "__main__":
    main()
