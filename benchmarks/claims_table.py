"""Claims table (issue 19, item 6): do the paper's three claims about HNLMRec hold here, at p < 0.05?

Usage: python benchmarks/claims_table.py [--datasets ml-100k,amazon-office] [--seeds 3] [--epochs 60]
       [--rows uniform,dns,...] [--text_filter user] [--llm template] [--finetune_encoder minilm] [--smoke]
       [--key=value ...]

LightGCN, validation-selected test metrics, every run through the benchmark matrix (``recbole_hnlm.bench``: one
matrix per row and dataset under ``<out>/rows/<row>/<dataset>/``), so that a rerun skips every finished run.

- Stage 1, the traditional samplers: ``uniform``, ``dns``, ``dns_mn``, ``mixgcf``. The *best base* of a dataset is
  the one with the best mean **validation** Recall@20 over the seeds (test metrics never choose anything).
- Stage 2, on the best base: ``filter`` (the base with the false-negative filter from text: the knobs chosen on
  validation in ``properties/dataset/<dataset>/text_filter.yaml`` where that file exists, else ``--text_filter`` with
  the defaults of properties/overall.yaml);
  ``hnlm-<source>-<encoder>`` for source neighbour | generated and encoder untuned | finetuned
  (``--neg_sampler=hnlm --hnlm_base_negative=<best base>``: the items nearest the positive's vector, or nearest the
  encoded (user, positive) query, under the chain's encoder without and with its LoRA adapter); ``rlmrec``
  (RLMRec-Con, backbone LightGCN) and ``alpharec``, both trained on uniform negatives as published.

The fine-tuning chain (``recbole_hnlm.finetune``: mine, fine-tune, encode un-tuned and fine-tuned) runs once per
dataset, with seed ``CHAIN_SEED``; the hnlm runs of every seed read its vectors (``finetune_seed``). That needs a
split that does not move with the seed: ``split_seed`` is fixed (``SETTINGS``; ml-100k is split at random) and
amazon-office is pre-split. ``finetune_encode_pairs`` is 0 by default: every training pair's query is encoded
(MiniLM at about 36 queries/s on one CPU core, results/finetune_throughput/: some 40 minutes per encoder on
ml-100k, 20 on amazon-office); a smaller budget leaves
the other pairs to the neighbour fallback, which the rows' ``semantic_coverage`` shows.

Columns: Recall@20 and NDCG@20 (mean ± std over seeds), the sparse-user and long-tail Recall@20
(``recbole_hnlm/bench/subgroups.py``), the false-hard-negative rate of the negatives the run picked (its results
JSON's ``false_hard_negative_rate``), s/epoch as a ratio to uniform's on the same dataset, and the two-sided paired
t-test (scipy ``ttest_rel``) over seeds of each row against the best base. A claim holds only at p < 0.05.

``--key=value`` settings go to every run; ``llm*`` ones to the rows that read profiles (filter, hnlm, rlmrec,
alpharec) and the chain, ``finetune_*`` and ``hnlm_*`` ones to the chain and the hnlm rows. ``--rows`` runs a subset;
the report covers every row with finished runs on disk and names the others "not run" with the reason. ``--smoke``:
one seed, ml-100k, 2 epochs, a tiny chain, written to ``results/claims-table-smoke/``.

Writes ``<out>/{README.md,table.md,report.json,recall_by_row.png}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from hnlmrec_report import CHAIN_PREFIXES, SMOKE_CHAIN, paired_p, prepare_chain  # noqa: E402

from recbole_hnlm.bench.matrix import FIRST_SEED, MatrixSpec  # noqa: E402
from recbole_hnlm.bench.runner import matrix_defaults, result_files, run_matrix  # noqa: E402
from recbole_hnlm.bench.runs_file import RunsFile  # noqa: E402
from recbole_hnlm.bench.subgroups import subgroup_columns  # noqa: E402
from recbole_hnlm.config import config_fingerprint  # noqa: E402
from recbole_hnlm.errors import HNLMError  # noqa: E402
from recbole_hnlm.finetune.__main__ import parse_settings  # noqa: E402
from recbole_hnlm.finetune.settings import finetune_defaults  # noqa: E402
from recbole_hnlm.io import write_json_atomic, write_text_atomic  # noqa: E402
from recbole_hnlm.paths import properties_file  # noqa: E402
from recbole_hnlm.tuning.space import read_settings_yaml  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
OUT = PROJECT_ROOT / "results" / "claims-table"
SMOKE_OUT = PROJECT_ROOT / "results" / "claims-table-smoke"
MODEL = "LightGCN"
CHAIN_SEED = FIRST_SEED
SIGNIFICANCE = 0.05
HEADLINE = "recall@20"
VALID = "valid_recall@20"
FHN = "false_hard_negative_rate"
METRICS = [HEADLINE, "ndcg@20", *subgroup_columns(20), FHN, "seconds_per_epoch", VALID]
LOWER_IS_BETTER = (FHN, "seconds_per_epoch")
SETTINGS = {"split_seed": 2020}  # one split for every seed, so that one chain serves them all
DATASETS = "ml-100k,amazon-office"
EPOCHS = 60  # hnlmrec_report's
SMOKE_EPOCHS = 2
LLM_PREFIX = "llm"
# Every row but "filter" sets it: a text_filter in a sampler's chosen settings (properties/dataset/<dataset>/
# <sampler>.yaml, read by every run of it) then filters the filter row only. It is the default, so config hashes do
# not move.
NO_FILTER = {"text_filter": "none"}
STAGE_1 = ("uniform", "dns", "dns_mn", "mixgcf")
# The LLM-enhanced baselines train as their papers do, on uniform negatives: on the best base's mixed negatives
# (mixgcf on ml-100k) both had their best validation score after the first epoch and stopped early.
BASELINE_SAMPLER = "uniform"
HNLM_ROWS = tuple(
    f"hnlm-{source}-{encoder}" for encoder in ("untuned", "finetuned") for source in ("neighbour", "generated")
)
STAGE_2 = ("filter", *HNLM_ROWS, "rlmrec", "alpharec")
ROWS = (*STAGE_1, *STAGE_2)
TITLES = {
    "filter": "{base} + text filter ({text_filter})",
    "rlmrec": "RLMRec-Con (LightGCN, uniform negatives)",
    "alpharec": "AlphaRec (uniform negatives)",
    **{
        row: "hnlm {source}, {encoder} encoder, on {base}".format(
            source=row.split("-")[1], encoder="un-tuned" if row.endswith("untuned") else "fine-tuned", base="{base}"
        )
        for row in HNLM_ROWS
    },
}


@dataclass
class RowRun:
    """What one row trains on one dataset: the model, the sampler and the row's own settings."""

    model: str
    sampler: str
    settings: dict = field(default_factory=dict)
    uses_chain: bool = False


def row_run(row: str, base: str | None, text_filter: dict, llm: dict, chain: dict) -> RowRun:
    """The run of ``row`` on a dataset whose best base is ``base`` (None: stage 1 rows only); ``text_filter``: the
    filter row's settings (``filter_settings``)."""
    if row in STAGE_1:
        return RowRun(MODEL, row, dict(NO_FILTER))
    if base is None:
        raise ValueError(f"row {row} runs on the best base, which is not known yet")
    if row == "filter":
        return RowRun(MODEL, base, {**llm, **text_filter})
    if row == "rlmrec":  # as published: uniform negatives (mixed ones stopped both baselines after epoch 1 here)
        return RowRun("RLMRec", BASELINE_SAMPLER, {**llm, **NO_FILTER, "backbone": MODEL})
    if row == "alpharec":
        return RowRun("AlphaRec", BASELINE_SAMPLER, {**llm, **NO_FILTER})
    _, source, encoder = row.split("-")
    settings = {
        **chain,
        **NO_FILTER,
        "hnlm_base_negative": base,
        "hnlm_negative_source": source,
        "hnlm_encoder": encoder,
        "finetune_seed": CHAIN_SEED,
    }
    return RowRun(MODEL, "hnlm", settings, uses_chain=True)


def filter_settings(dataset: str, default: str) -> dict:
    """The filter row's settings on ``dataset``: those chosen on validation (properties/dataset/<dataset>/
    text_filter.yaml, which no run reads unless given it, so that the other rows' configs do not move), else
    ``{"text_filter": default}``."""
    chosen = properties_file("dataset", dataset, "text_filter.yaml")
    values = (read_settings_yaml(chosen, "Chosen settings") or {}) if chosen.is_file() else {}
    return values if values.get("text_filter") else {"text_filter": default}


def pick_best_base(valid_means: dict[str, float]) -> str | None:
    """The stage-1 row with the best mean validation Recall@20 (the test never picks); None when none finished."""
    finished = {row: value for row, value in valid_means.items() if row in STAGE_1 and not math.isnan(value)}
    return max(finished, key=finished.get) if finished else None


def summarise(per_seed: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """{row: {metric: {mean, std, per_seed}}} from {row: {seed: {metric: value}}}; missing values left out."""
    summary = {}
    for row, seeds in per_seed.items():
        entry = {}
        for metric in METRICS:
            values = {seed: float(record[metric]) for seed, record in seeds.items() if _number(record.get(metric))}
            numbers = list(values.values())
            entry[metric] = {
                "mean": float(np.mean(numbers)) if numbers else float("nan"),
                "std": float(np.std(numbers, ddof=1)) if len(numbers) > 1 else None,
                "per_seed": values,
            }
        coverage = [record["semantic_coverage"] for record in seeds.values() if record.get("semantic_coverage")]
        if coverage:
            entry["semantic_coverage"] = {
                source: float(np.mean([share.get(source, 0.0) for share in coverage]))
                for source in sorted({source for share in coverage for source in share})
            }
        summary[row] = entry
    return summary


def _number(value) -> bool:
    try:
        return value is not None and value != "" and not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def better(a: dict, b: dict, metric: str) -> dict:
    """Whether row ``a`` beats row ``b`` on ``metric`` (lower wins for rates and times) at p < 0.05: the paired
    two-sided t-test over their shared seeds, with the means; ``holds`` None where fewer than 2 seeds pair up."""
    first, second = a[metric], b[metric]
    p = paired_p(first, second)
    if p is not None and math.isnan(p):
        p = None  # identical differences on every seed
    sign = -1 if metric in LOWER_IS_BETTER else 1
    ahead = sign * (first["mean"] - second["mean"]) > 0
    return {
        "metric": metric,
        "a": first["mean"],
        "b": second["mean"],
        "p": p,
        "holds": None if p is None else bool(ahead and p < SIGNIFICANCE),
    }


def _all(parts: list[dict]) -> bool | None:
    """A claim made of parts holds where every part holds; any part that does not hold decides it; else undecided."""
    verdicts = [part["holds"] for part in parts]
    if not verdicts or (None in verdicts and False not in verdicts):
        return None
    return all(verdicts)


def best_on_validation(summary: dict, rows: tuple[str, ...]) -> str | None:
    """Of ``rows`` that finished, the one with the best mean validation Recall@20."""
    found = {row: summary[row][VALID]["mean"] for row in rows if row in summary}
    found = {row: value for row, value in found.items() if not math.isnan(value)}
    return max(found, key=found.get) if found else None


def claims(summary: dict, base: str | None) -> list[dict]:
    """The paper's three claims on one dataset, each from the numbers: its verdict, its parts and what is missing.

    1. Semantic negatives with alignment (the un-tuned encoder) help, beating uniform, but trail traditional
       sampling: the best base beats them.
    2. CF-supervised fine-tuning beats traditional samplers and LLM-enhanced recommenders: the fine-tuned row beats
       the best base, RLMRec-Con and AlphaRec.
    3. It helps sparse users, the long tail and false hard negatives: the fine-tuned row beats the best base on the
       sparse users' and the long tail's Recall@20 and picks fewer false hard negatives.

    Where several hnlm rows qualify, the one with the best validation Recall@20 stands for them (never the test).
    """
    untuned = best_on_validation(summary, tuple(row for row in HNLM_ROWS if row.endswith("-untuned")))
    tuned = best_on_validation(summary, tuple(row for row in HNLM_ROWS if row.endswith("-finetuned")))
    # A row that has not finished is named, in the comparisons, for what it stands for (never a row of the table).
    untuned_row, tuned_row = untuned or "un-tuned hnlm", tuned or "fine-tuned hnlm"
    base = base or "the best base"
    plans = [
        (
            "semantic negatives with alignment help (beat uniform) but trail traditional sampling (the best base "
            "beats them)",
            untuned,
            [(untuned_row, "uniform", HEADLINE), (base, untuned_row, HEADLINE)],
        ),
        (
            "CF-supervised fine-tuning beats traditional samplers (the best base) and LLM-enhanced recommenders "
            "(RLMRec-Con, AlphaRec)",
            tuned,
            [(tuned_row, base, HEADLINE), (tuned_row, "rlmrec", HEADLINE), (tuned_row, "alpharec", HEADLINE)],
        ),
        (
            "fine-tuning helps sparse users, the long tail and false hard negatives (against the best base)",
            tuned,
            [
                (tuned_row, base, "recall@20_sparse_users"),
                (tuned_row, base, "recall@20_long_tail"),
                (tuned_row, base, FHN),
            ],
        ),
    ]
    found = []
    for number, (claim, row, comparisons) in enumerate(plans, start=1):
        parts, missing = [], []
        for a, b, metric in comparisons:
            absent = [name for name in (a, b) if name not in summary]
            if absent or math.isnan(summary[a][metric]["mean"]) or math.isnan(summary[b][metric]["mean"]):
                missing.append(f"{a} vs {b} on {metric}: " + (f"{', '.join(absent)} not run" if absent else "no value"))
                continue
            parts.append({"a_row": a, "b_row": b, **better(summary[a], summary[b], metric)})
        holds = _all(parts) if not missing or any(part["holds"] is False for part in parts) else None
        found.append({"number": number, "claim": claim, "row": row, "holds": holds, "parts": parts, "missing": missing})
    return found


def verdict_word(holds: bool | None) -> str:
    """How a verdict reads."""
    return {True: "holds", False: "does not hold", None: "undecided"}[holds]


def _format(value, digits: int = 4) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def claims_text(dataset: str, found: list[dict]) -> str:
    """One line per claim, with each part's means and p."""
    lines = []
    for claim in found:
        parts = "; ".join(
            f"{part['a_row']} {_format(part['a'])} vs {part['b_row']} {_format(part['b'])} on {part['metric']}, "
            f"p = {_format(part['p'], 3)} ({verdict_word(part['holds'])})"
            for part in claim["parts"]
        )
        missing = f"; missing: {'; '.join(claim['missing'])}" if claim["missing"] else ""
        lines.append(
            f"- {dataset}, claim {claim['number']} ({claim['claim']}): **{verdict_word(claim['holds'])}** "
            f"({parts or 'no comparison'}{missing})"
        )
    return "\n".join(lines)


def _cell(entry: dict, digits: int = 4) -> str:
    if math.isnan(entry["mean"]):
        return "n/a"
    std = entry["std"]
    return _format(entry["mean"], digits) + ("" if std is None else f" ± {_format(std, digits)}")


def dataset_table(dataset: str, summary: dict, titles: dict, not_run: dict, base: str | None) -> str:
    """Markdown: one line per row of the dataset, the finished ones with their numbers, the others with the reason."""
    header = (
        "| row | seeds | Recall@20 | NDCG@20 | sparse users R@20 | long tail R@20 | false-hard-neg. rate | "
        "s/epoch vs uniform | p vs best base (R@20) | valid R@20 | semantic coverage |"
    )
    lines = [f"### {dataset} (best base on validation: {base or 'unknown'})", "", header, "|---|" + "---:|" * 10]
    uniform = summary.get("uniform", {}).get("seconds_per_epoch", {}).get("mean", float("nan"))
    for row, title in titles.items():
        if row not in summary:
            lines.append(f"| {title} | 0 | not run: {not_run.get(row, 'no finished run')} |" + " |" * 9)
            continue
        entry = summary[row]
        ratio = entry["seconds_per_epoch"]["mean"] / uniform if uniform and not math.isnan(uniform) else float("nan")
        if row == base or base not in summary:
            p = "—"
        else:
            p = _format(better(entry, summary[base], HEADLINE)["p"], 3)
        coverage = ", ".join(f"{source} {share:.1%}" for source, share in entry.get("semantic_coverage", {}).items())
        seeds = len(entry[HEADLINE]["per_seed"])
        cells = [
            _cell(entry[HEADLINE]),
            _cell(entry["ndcg@20"]),
            _cell(entry["recall@20_sparse_users"]),
            _cell(entry["recall@20_long_tail"]),
            _cell(entry[FHN]),
            _format(ratio, 2),
            p,
            _cell(entry[VALID]),
            coverage or "—",
        ]
        lines.append(f"| {title} | {seeds} | {' | '.join(cells)} |")
    return "\n".join(lines)


def chain_text(fhn: dict | None) -> str:
    """One line on the chain's false hard negatives (hnlmrec_report's rates), or nothing where it did not run."""
    if not fhn:
        return ""
    return (
        f"\n\nThe chain's false-hard-negative rates: CF-mined hard negatives (its fine-tuning data) "
        f"{_format(fhn['mined_hard_negatives'])} ({_format(fhn['mined_unfiltered_top1'])} before the filters); "
        f"the encoder's nearest item to a (user, positive) query {_format(fhn['untuned_at_1'])} un-tuned, "
        f"{_format(fhn['finetuned_at_1'])} fine-tuned; a uniform draw {_format(fhn['uniform_rate'])}; "
        f"{fhn['encoded_queries']} queries encoded."
    )


def budget_text(chain: dict) -> str:
    """The semantic budget of the hnlm rows, as the README's setting states it."""
    pairs = chain.get("finetune_encode_pairs", finetune_defaults()["finetune_encode_pairs"])
    share = "every training pair" if pairs == 0 else f"{pairs} training pairs (the others fall back to neighbours)"
    return (
        f"Semantic budget: finetune_encode_pairs={pairs}, so the chain's encoders encode the query of {share}. The "
        "hnlm rows read the chain's encoded folder (hnlm_encoder untuned|finetuned), which serves both sources "
        "whatever --llm is: neighbour, the items nearest the positive's vector; generated, the items nearest the "
        "encoded (user, positive) query. No LLM writes negatives here, so the llm_negative_budget of "
        "properties/llm.yaml does not apply; semantic coverage in the table gives the share each source served."
    )


def plot_recall(summaries: dict, titles: dict, path: Path) -> None:
    """Bars of mean test Recall@20 (std as error bar) per row, one panel per dataset."""
    datasets = [dataset for dataset in summaries if summaries[dataset]]
    if not datasets:
        return
    figure, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 4.5), squeeze=False)
    for axis, dataset in zip(axes[0], datasets, strict=True):
        rows = [row for row in titles[dataset] if row in summaries[dataset]]
        means = [summaries[dataset][row][HEADLINE]["mean"] for row in rows]
        errors = [summaries[dataset][row][HEADLINE]["std"] or 0.0 for row in rows]
        colours = ["tab:blue" if row in STAGE_1 else "tab:orange" for row in rows]
        axis.barh(range(len(rows)), means, xerr=errors, color=colours, capsize=3)
        axis.set_yticks(range(len(rows)), [titles[dataset][row] for row in rows], fontsize="small")
        axis.invert_yaxis()
        axis.set_xlabel("test Recall@20 (validation-selected epoch)")
        axis.set_title(dataset)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def parse_arguments(argv: list[str]) -> tuple[argparse.Namespace, dict, dict, dict]:
    """The options; the settings of every run, of the rows that read profiles (llm*) and of the chain."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--datasets", default=None, help=f"default {DATASETS} (--smoke: ml-100k)")
    parser.add_argument("--seeds", type=int, default=3, help=f"seeds {FIRST_SEED} .. {FIRST_SEED}+N-1")
    parser.add_argument("--epochs", type=int, default=None, help=f"epochs of every run (default {EPOCHS}, --smoke 2)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"rows to run, of {','.join(ROWS)}")
    parser.add_argument("--text_filter", default="user", help="the filter row's mode (user | nearest_item)")
    parser.add_argument("--llm", default="template", help="profile source (properties/llm.yaml)")
    parser.add_argument("--finetune_encoder", default="minilm", help="the chain's encoder: smollm2 | minilm | folder")
    parser.add_argument("--smoke", action="store_true", help="1 seed, ml-100k, 2 epochs, a tiny chain")
    parser.add_argument("--out", default=None, help=f"default results/{OUT.name} (--smoke: results/{SMOKE_OUT.name})")
    args, rest = parser.parse_known_args(argv)
    if args.smoke:
        args.seeds = 1
    epochs = args.epochs or (SMOKE_EPOCHS if args.smoke else EPOCHS)
    given = {**SETTINGS, "epochs": epochs, **parse_settings(rest)}
    chain = {key: value for key, value in given.items() if key.startswith(CHAIN_PREFIXES)}
    settings = {key: value for key, value in given.items() if key not in chain}
    chain = {"llm": args.llm, "finetune_encoder": args.finetune_encoder, **chain}
    llm = {key: value for key, value in chain.items() if key.startswith(LLM_PREFIX)}
    if args.smoke:
        chain = {**SMOKE_CHAIN, **chain}
    args.rows = [row.strip() for row in args.rows.split(",") if row.strip()]
    unknown = [row for row in args.rows if row not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown row(s) {', '.join(unknown)}. Valid: {', '.join(ROWS)}.")
    datasets = args.datasets or ("ml-100k" if args.smoke else DATASETS)
    args.datasets = [name.strip() for name in datasets.split(",") if name.strip()]
    args.seeds = [FIRST_SEED + index for index in range(args.seeds)]
    args.out = Path(args.out or (SMOKE_OUT if args.smoke else OUT))
    return args, settings, llm, chain


def matrix_records(run: RowRun, dataset: str, seeds: list[int], settings: dict, folder: Path, train: bool) -> dict:
    """{seed: metrics} of one row on one dataset: trains the missing runs first when ``train``; else reads what
    finished. Metrics: the runs.csv row plus the results JSON's validation Recall@20 and semantic coverage."""
    spec = MatrixSpec(
        models=[run.model],
        samplers=[run.sampler],
        datasets=[dataset],
        seeds=seeds,
        name=folder.parent.name,
        settings={**settings, **run.settings},
        subgroups=True,
    )
    if train:
        run_matrix(spec, folder)
    if not (folder / "runs.csv").is_file():
        return {}
    keys = {
        RunsFile.key(config_fingerprint(config), cell.seed)
        for cell, config in spec.configs(matrix_defaults(folder)).items()
    }
    rows = {
        RunsFile.key(row["config_hash"], row["seed"]): row
        for row in RunsFile(folder / "runs.csv").rows
        if row["status"] == "ok"
    }
    found = {key: rows[key] for key in keys if key in rows}
    files = result_files(folder / "runs", set(found))
    records = {}
    for key, row in found.items():
        result = json.loads(files[key].read_text()) if key in files else {}
        records[row["seed"]] = {
            **row,
            VALID: result.get("valid_result", {}).get(HEADLINE),
            "semantic_coverage": result.get("semantic_coverage"),
        }
    return records


def failed_reason(folder: Path) -> str | None:
    """The error of the last failed run of a row's matrix, or None."""
    if not (folder / "runs.csv").is_file():
        return None
    errors = [row["error"] for row in RunsFile(folder / "runs.csv").rows if row["status"] != "ok"]
    return f"failed: {errors[-1][:160]}" if errors else None


def run_dataset(dataset: str, args, settings: dict, llm: dict, chain: dict) -> dict:
    """Stage 1, the best base, the chain (once) and stage 2 on one dataset; its per-seed records and reasons."""
    records, not_run = {}, {}
    for row in STAGE_1:
        folder = args.out / "rows" / row / dataset
        records[row] = matrix_records(
            row_run(row, None, {}, llm, chain), dataset, args.seeds, settings, folder, row in args.rows
        )
    stage_1 = summarise({row: found for row, found in records.items() if found})
    base = pick_best_base({row: entry[VALID]["mean"] for row, entry in stage_1.items()})
    text_filter = filter_settings(dataset, args.text_filter)
    fhn = None
    wanted = [row for row in STAGE_2 if row in args.rows]
    # The rows without the chain first: the chain costs about an hour per encoder on a CPU, so an interrupted run
    # has the cheap rows done.
    for row in sorted(STAGE_2, key=lambda row: row in HNLM_ROWS):
        if base is None:
            not_run[row] = "no stage-1 run finished, so the best base is unknown (run --rows=uniform,dns,dns_mn,mixgcf)"
            continue
        if row in HNLM_ROWS and row in wanted and fhn is None:
            fhn = prepare_chain(dataset, CHAIN_SEED, {**settings, **chain})
        folder = args.out / "rows" / row / dataset
        run = row_run(row, base, text_filter, llm, chain)
        records[row] = matrix_records(run, dataset, args.seeds, settings, folder, row in wanted)
    for row in ROWS:
        if not records.get(row) and row not in not_run:
            folder = args.out / "rows" / row / dataset
            not_run[row] = failed_reason(folder) or f"not in --rows (run it with --rows={row})"
    return {
        "base": base,
        "text_filter": text_filter,
        "records": {row: found for row, found in records.items() if found},
        "not_run": not_run,
        "chain_false_hard_negatives": fhn,
    }


def row_titles(base: str | None, text_filter: dict) -> dict[str, str]:
    """Each row's label in the table, with the dataset's best base and the filter's settings filled in."""
    shown = {key: value for key, value in text_filter.items() if key != "text_filter"}
    if shown.get("text_filter_mode") == "drop":
        shown.pop("text_filter_weight", None)  # the down-weighting share: unused where flagged candidates are dropped
    knobs = ", ".join(
        f"{key.removeprefix('text_filter_')} {f'{value:.2f}' if isinstance(value, float) else value}"
        for key, value in shown.items()
    )
    described = f"{text_filter.get('text_filter')}{', ' + knobs if knobs else ', defaults'}"
    return {row: TITLES.get(row, row).format(base=base or "best base", text_filter=described) for row in ROWS}


def write_outputs(results: dict, meta: dict, out: Path) -> str:
    """table.md, report.json, README.md and the plot from every dataset's records; the table's text."""
    summaries, titles, verdicts, sections = {}, {}, {}, []
    for dataset, found in results.items():
        summaries[dataset] = summarise(found["records"])
        titles[dataset] = row_titles(found["base"], found["text_filter"])
        verdicts[dataset] = claims(summaries[dataset], found["base"])
        table = dataset_table(dataset, summaries[dataset], titles[dataset], found["not_run"], found["base"])
        sections.append(table + chain_text(found["chain_false_hard_negatives"]))
    verdict_text = "\n".join(claims_text(dataset, found) for dataset, found in verdicts.items())
    table = (
        "\n\n".join(sections)
        + "\n\nTest metrics at the epoch chosen on validation, mean ± std over seeds. The best base is the stage-1 "
        "sampler with the best mean validation Recall@20. p: two-sided paired t-test over seeds (scipy ttest_rel) "
        "against the best base. sparse users: the quarter of test users with the fewest training interactions; "
        "long tail: test positives outside the 20% most-trained items (recbole_hnlm/bench/subgroups.py). "
        "false-hard-neg. rate: the share of the run's picked negatives that are the user's validation or test "
        "positives (measured only; held-out data never drives a pick). semantic coverage: the share of training rows "
        "each source served.\n\n"
        f"## What holds (p < {SIGNIFICANCE}, paired t-test over seeds)\n\n{verdict_text}\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "table.md", table)
    plot_recall(summaries, titles, out / "recall_by_row.png")
    report = {
        **meta,
        "datasets": {
            dataset: {
                "best_base": found["base"],
                "best_base_valid_recall@20": {
                    row: summaries[dataset][row][VALID]["mean"] for row in STAGE_1 if row in summaries[dataset]
                },
                "text_filter": found["text_filter"],
                "rows": summaries[dataset],
                "not_run": found["not_run"],
                "chain_false_hard_negatives": found["chain_false_hard_negatives"],
                "claims": verdicts[dataset],
            }
            for dataset, found in results.items()
        },
    }
    write_json_atomic(out / "report.json", report)
    readme = (
        "# The paper's claims about HNLMRec, tested (issue 19)\n\n## Experimental setting\n\n"
        f"`{meta['command']}`\n\n{MODEL}, datasets {', '.join(meta['datasets'])}, seeds {meta['seeds']}, "
        f"settings of every run {json.dumps(meta['settings'])}; the fine-tuning chain once per dataset with seed "
        f"{CHAIN_SEED} and {json.dumps(meta['chain_settings'])}, read by the hnlm runs of every seed "
        "(finetune_seed). The rows, the best-base rule and the claims' tests: benchmarks/claims_table.py. "
        f"{budget_text(meta['chain_settings'])} This run took {meta['seconds']:.0f} s.\n\n## Results\n\n{table}\n"
        "![Recall@20 by row](recall_by_row.png)\n"
    )
    write_text_atomic(out / "README.md", readme)
    return table


def main(argv: list[str] | None = None) -> int:
    """Run what is missing (stage 1, the chain, stage 2 per dataset), write the report, print its table."""
    argv = sys.argv[1:] if argv is None else argv
    args, settings, llm, chain = parse_arguments(argv)
    started = time.perf_counter()
    try:
        results = {dataset: run_dataset(dataset, args, settings, llm, chain) for dataset in args.datasets}
    except HNLMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    meta = {
        "command": shlex.join(["python", "benchmarks/claims_table.py", *argv]),
        "model": MODEL,
        "datasets": args.datasets,
        "seeds": args.seeds,
        "rows_run": args.rows,
        "settings": settings,
        "chain_settings": chain,
        "chain_seed": CHAIN_SEED,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(write_outputs(results, meta, args.out))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
