"""Which per-dataset settings of the DENS splits does validation alone choose?

Usage: python benchmarks/dens_settings_on_validation.py [--seeds 2020] [--report_only]

The settings in ``recbole_hnlm/properties/dataset/{beauty-dens,toy-dens}*`` (DNS's and MixGCF's 6 candidates, a
validation every 5 epochs with a patience of 10 validations) were chosen while test-selected runs were in view. Here
each alternative is trained (LightGCN, validation = each user's latest 10% of train items) and the one with the best
validation Recall@20 is the choice; test figures are printed beside it and choose nothing. Every run goes through the
benchmark matrix, so finished runs (here or in the DENS reproduction's folders, by config hash) are not trained again.
Writes ``results/dens-settings-on-validation/{table.md,choices.json}``; the runs are in its ``matrix/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from recbole_hnlm.bench.matrix import MatrixSpec  # noqa: E402
from recbole_hnlm.bench.runner import run_matrix  # noqa: E402
from recbole_hnlm.config import HNLMConfig, config_fingerprint  # noqa: E402
from recbole_hnlm.io import write_json_atomic, write_text_atomic  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
OUT = PROJECT_ROOT / "results" / "dens-settings-on-validation"
REUSE = [PROJECT_ROOT / "results" / name for name in ("dens-reproduction", "dens-reproduction-toy-dens")]
# (dataset, sampler, the setting in question, {alternative label: overrides}); the first alternative is shipped.
CHOICES = [
    (dataset, sampler, "candidate_num", {"6 (shipped)": [], "16": ["--candidate_num=16"]})
    for dataset in ("beauty-dens", "toy-dens")
    for sampler in ("dns", "mixgcf")
] + [
    (
        dataset,
        "uniform",
        "validation schedule",
        {"every 5 epochs, patience 10 (shipped)": [], "every epoch, patience 10": ["--eval_step=1"]},
    )
    for dataset in ("beauty-dens", "toy-dens")
]


def run_alternative(dataset: str, sampler: str, overrides: list[str], seeds: list[int]) -> list[dict]:
    """Train (or reuse) one alternative; the results JSON of each of its runs."""
    spec = MatrixSpec(
        models=["LightGCN"], samplers=[sampler], datasets=[dataset], seeds=seeds, name=OUT.name, cmd_args=overrides
    )
    spec.reuse = [str(folder) for folder in REUSE if (folder / "runs.csv").is_file()]
    run_matrix(spec, OUT / "matrix")
    settings = {"neg_sampler": sampler, "state": "ERROR"}
    wanted = {
        (
            config_fingerprint(
                HNLMConfig("LightGCN", dataset, config_dict={**settings, "seed": seed}, cmd_args=overrides)
            ),
            seed,
        )
        for seed in seeds
    }
    runs = {}
    for path in sorted((OUT / "matrix" / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        runs.setdefault((run["config_hash"], run["seed"]), run)  # a reused run and its copy are the same run
    return [runs[key] for key in sorted(wanted) if key in runs]


def main(argv: list[str] | None = None) -> int:
    """Run every alternative, choose on validation, write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="2020", help="comma-separated seeds (the choice uses their mean)")
    args = parser.parse_args(argv)
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    lines = [
        "| dataset | sampler | setting | alternative | valid Recall@20 | test Recall@20 (not used) | chosen |",
        "|---|---|---|---|---:|---:|---|",
    ]
    choices = []
    for dataset, sampler, setting, alternatives in CHOICES:
        scores = {}
        for label, overrides in alternatives.items():
            runs = run_alternative(dataset, sampler, overrides, seeds)
            if len(runs) != len(seeds):
                print(f"error: {dataset} {sampler} {label}: {len(runs)} of {len(seeds)} runs finished", file=sys.stderr)
                return 1
            valid = sum(run["best_valid_score"] for run in runs) / len(runs)
            test = sum(run["test_result"]["recall@20"] for run in runs) / len(runs)
            scores[label] = (valid, test)
        best = max(scores, key=lambda label: scores[label][0])
        shipped = next(iter(alternatives))
        for label, (valid, test) in scores.items():
            mark = "**yes**" if label == best else ""
            lines.append(f"| {dataset} | {sampler} | {setting} | {label} | {valid:.4f} | {test:.4f} | {mark} |")
        choices.append(
            {
                "dataset": dataset,
                "sampler": sampler,
                "setting": setting,
                "valid_recall@20": {label: valid for label, (valid, _) in scores.items()},
                "test_recall@20": {label: test for label, (_, test) in scores.items()},
                "chosen": best,
                "shipped_is_chosen": best == shipped,
            }
        )
    seeds_text = ", ".join(str(seed) for seed in seeds)
    table = "\n".join(lines) + f"\n\nLightGCN, seeds {seeds_text} (mean); refit on train + validation as shipped.\n"
    write_text_atomic(OUT / "table.md", table)
    write_json_atomic(OUT / "choices.json", {"seeds": seeds, "choices": choices})
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
