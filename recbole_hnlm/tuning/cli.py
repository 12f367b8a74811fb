"""Command line of the Ray Tune search (also reached through ``run_recbole_hnlm.py --tune=<space.yaml>``).

Example: python run_recbole_hnlm.py --model=LightGCN --neg_sampler=ahns --tune=ahns --epochs=20
(--tune takes a space YAML, or the name of one the package ships: properties/tune/<sampler or model>.yaml, e.g.
--tune=dns, or --model=RLMRec --backbone=LightGCN --neg_sampler=uniform --tune=RLMRec).
Any other --key=value fixes that config parameter for every trial, as for a single run.
"""

from __future__ import annotations

import argparse
import json
import sys

from recbole_hnlm.cli import interruptible, with_option_hint
from recbole_hnlm.errors import HNLMError
from recbole_hnlm.tuning.search import SearchSettings, run_search


@interruptible(
    "python -m recbole_hnlm.tuning",
    "trial logs stay under the results folder's ray/ (a search does not resume)",
    "starts it again",
)
def main(argv: list[str] | None = None) -> int:
    """Parse the command line, search, print the best config and its test metrics; 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m recbole_hnlm.tuning",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # config keys pass through: none may be taken for a shortened option
    )
    parser.add_argument("--model", "-m", default="LightGCN", help="model name, e.g. BPR, LightGCN, NGCF")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset folder under data_path")
    parser.add_argument("--config_files", default=None, help="space-separated YAML config files")
    parser.add_argument("--tune", required=True, help="space YAML, or a shipped one by name: ahns, RLMRec, ...")
    parser.add_argument("--ray_address", default=None, help="attach to this Ray cluster (default: a local Ray)")
    defaults = SearchSettings()
    parser.add_argument("--num_samples", type=int, default=defaults.num_samples, help="trials to run")
    parser.add_argument(
        "--grace_period", type=int, default=defaults.grace_period, help="ASHA: validations before a stop"
    )
    parser.add_argument(
        "--reduction_factor", type=float, default=defaults.reduction_factor, help="ASHA keeps the best 1/this per rung"
    )
    parser.add_argument("--cpus_per_trial", type=float, default=defaults.cpus_per_trial)
    parser.add_argument("--gpus_per_trial", type=float, default=None, help="default: 1 where the cluster has GPUs")
    parser.add_argument("--num_cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--name", default=None, help="results/tune/<name>/ (default: <model>-<sampler>-<dataset>)")
    parser.add_argument("--out", default=None, help="results folder (default: results/tune/<name>)")
    parser.add_argument("--verbose", action="store_true", help="Ray's progress tables and RecBole's epoch logs")
    args, overrides = parser.parse_known_args(argv)
    settings = SearchSettings(
        num_samples=args.num_samples,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        num_cpus=args.num_cpus,
        ray_address=args.ray_address,
        name=args.name,
        out=args.out,
        verbose=args.verbose,
    )
    config_files = args.config_files.split() if args.config_files else None
    try:
        report = run_search(args.model, args.dataset, args.tune, config_files, overrides, settings)
    except HNLMError as error:
        print(f"error: {with_option_hint(str(error), getattr(error, 'key', ''), parser)}", file=sys.stderr)
        return 2
    finished = sum(trial["status"] == "finished" for trial in report["trials"])
    print(
        f"{report['model']} + {report['neg_sampler']} on {report['dataset']}: best of {len(report['trials'])} trials "
        f"({finished} finished, the others stopped early by ASHA or failed), by valid {report['metric']} "
        f"{report['best_valid_score']:.4f} at epoch {report['best_epoch']}"
    )
    print(f"  best config: {json.dumps(report['best_config'])}")
    for metric, value in report["test_result"].items():
        print(f"  test {metric:<10} {value:.4f}")
    print(f"results: {report['best_file']}")
    return 0
