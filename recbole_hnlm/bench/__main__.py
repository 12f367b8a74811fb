"""Run a benchmark matrix and write results/<name>/: runs.csv, table.md, plots (see recbole_hnlm.bench).

Example: python -m recbole_hnlm.bench --models=BPR,LightGCN --samplers=uniform,dns --datasets=ml-100k --n_seeds=3
         python -m recbole_hnlm.bench --config matrix.yaml --epochs=5
--n_seeds=N runs seeds 2020 .. 2020+N-1 (RecBole's default seed first); --seeds=1,5,9 runs those, --seeds=2022 that
one. A matrix of more than 300 runs needs --yes. Any other --key=value is a config override for every run,
e.g. --epochs=5 --stopping_step=3; a name that is no setting is refused. A matrix YAML holds name, models, samplers,
datasets, seeds or n_seeds, config_files and settings (a mapping of config overrides).
Rerunning a command skips the runs it finished (matched by config hash and seed) and retries failed ones.
Runs use one torch thread each (comparable seconds per epoch, no oversubscription); --torch_threads=N changes it.
--subgroups (or subgroups: true in the YAML) adds test Recall@20 and NDCG@20 of sparse users and long-tail items
(recbole_hnlm/bench/subgroups.py) to runs.csv and table.md; finished runs without them are run again.
--reuse=results/other,... (or reuse: in the YAML) copies finished runs of other matrices with the same config hash
and seed instead of running them again (e.g. the DENS reproduction's LightGCN runs into the figures matrix).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from recbole_hnlm.bench.matrix import MatrixSpec
from recbole_hnlm.bench.runner import run_matrix
from recbole_hnlm.cli import interruptible, with_option_hint
from recbole_hnlm.errors import ConfigurationError, HNLMError

# A matrix larger than this is far more than a mistyped seed list should start without a word.
MAX_UNCONFIRMED = 300


@interruptible("python -m recbole_hnlm.bench", "runs.csv holds every finished run")
def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the matrix, print the table; 2 on bad input, 130 on Ctrl-C."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m recbole_hnlm.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # else --seed=3 (a config key) would be taken for --seeds=3
    )
    parser.add_argument("--config", default=None, help="matrix YAML; the options below override its entries")
    parser.add_argument("--models", default=None, help="comma-separated, e.g. BPR,LightGCN,NGCF")
    parser.add_argument("--samplers", default=None, help="comma-separated, e.g. uniform,dns,ahns")
    parser.add_argument("--datasets", default=None, help="comma-separated, e.g. ml-100k,beauty-dens")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 2020,2021 or 2022")
    parser.add_argument("--n_seeds", default=None, help="a count of seeds from 2020 (default 1)")
    parser.add_argument("--yes", action="store_true", help=f"run a matrix of more than {MAX_UNCONFIRMED} runs")
    parser.add_argument("--name", default=None, help="results folder name (default: the YAML's name or 'matrix')")
    parser.add_argument("--out", default=None, help="results folder (default: results/<name>)")
    parser.add_argument("--config_files", default=None, help="space-separated YAML config files for every run")
    parser.add_argument("--subgroups", action="store_true", help="add sparse-user and long-tail test metrics")
    parser.add_argument("--reuse", default=None, help="comma-separated results folders whose matching runs count")
    parser.add_argument("--verbose", action="store_true", help="RecBole's per-epoch log and library warnings")
    parser.add_argument(
        "--report_only",
        action="store_true",
        help="run nothing: table and plots of the runs finished so far, --reuse folders' matching runs included",
    )
    args, overrides = parser.parse_known_args(argv)
    try:
        spec = MatrixSpec.from_sources(
            args.config,
            models=args.models,
            samplers=args.samplers,
            datasets=args.datasets,
            seeds=args.seeds,
            n_seeds=args.n_seeds,
            name=args.name,
            cmd_args=overrides or None,
            config_files=args.config_files.split() if args.config_files else None,
            subgroups=True if args.subgroups else None,
            reuse=args.reuse,
        )
        runs = len(spec.cells())
        if runs > MAX_UNCONFIRMED and not (args.yes or args.report_only):
            raise ConfigurationError(
                f"This matrix has {runs} runs ({len(spec.models)} models x {len(spec.samplers)} samplers x "
                f"{len(spec.datasets)} datasets x {len(spec.seeds)} seeds). Fix: add --yes to run them, or fewer."
            )
        command = shlex.join(["python", "-m", "recbole_hnlm.bench", *argv])  # for the manifest, which a report leaves
        outcome = run_matrix(spec, args.out, verbose=args.verbose, command=command, report_only=args.report_only)
    except HNLMError as error:
        print(f"error: {with_option_hint(str(error), getattr(error, 'key', ''), parser)}", file=sys.stderr)
        return 2
    if "markdown" in outcome:
        print(outcome["markdown"])
        print(f"\n{outcome['split']}\n")
    failed = f"{outcome['failed']} failed (see errors.log)" if outcome["failed"] else "none failed"
    if args.report_only:
        print(
            f"report of {outcome['skipped']} finished run(s), {outcome['missing']} not run yet, {failed}: "
            f"{outcome['out_dir']}"
        )
    else:
        elsewhere = f", {outcome['elsewhere']} left to another process" if outcome.get("elsewhere") else ""
        print(
            f"{outcome['ran']} run(s) done, {outcome['skipped']} skipped as finished{elsewhere}, {failed}: "
            f"{outcome['out_dir']}"
        )
    return 1 if outcome["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
