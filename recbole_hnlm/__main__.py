"""Train any pairwise RecBole model with any registered negative sampler.

Example: python run_recbole_hnlm.py --model=LightGCN --dataset=ml-100k --neg_sampler=dns --epochs=5
(the same as ``python -m recbole_hnlm ...`` or the installed ``recbole-hnlm ...`` command).
Any other --key=value overrides that config parameter, as with RecBole's run_recbole.py; a name that is no
setting is refused before any work, with the closest valid names.
With --tune=<space.yaml> it runs a Ray Tune search instead (python -m recbole_hnlm.tuning --help for its options).
"""

import argparse
import sys

from recbole_hnlm.cli import interruptible, with_option_hint
from recbole_hnlm.errors import HNLMError
from recbole_hnlm.quick_start import run


@interruptible(
    "python run_recbole_hnlm.py",
    "a run keeps nothing until it ends (an LLM cache it builds keeps its shards)",
    "runs it again",
)
def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run, print the test results; 2 on bad input."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--model", "-m", default="LightGCN", help="model name, e.g. BPR, LightGCN, NGCF")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset folder under data_path")
    parser.add_argument("--config_files", default=None, help="space-separated YAML config files")
    parser.add_argument(
        "--tune", default=None, help="search this space YAML (or a shipped one by name, e.g. dns) with Ray Tune"
    )
    parser.add_argument("--ray_address", default=None, help="with --tune: a running Ray cluster (default: a local Ray)")
    args, overrides = parser.parse_known_args(argv)
    if args.tune:
        from recbole_hnlm.tuning.cli import main as tune  # here: Ray and Tune load only for a search

        return tune(sys.argv[1:] if argv is None else argv)
    if args.ray_address:
        print(
            "error: --ray_address attaches a --tune search to a Ray cluster. Fix: add --tune=<space.yaml>.",
            file=sys.stderr,
        )
        return 2
    config_files = args.config_files.split() if args.config_files else None
    try:
        result = run(args.model, args.dataset, config_file_list=config_files, cmd_args=overrides)
    except HNLMError as error:
        print(f"error: {with_option_hint(str(error), getattr(error, 'key', ''), parser)}", file=sys.stderr)
        return 2
    print(f"{result['model']} + {result['neg_sampler']} on {result['dataset']}: best epoch {result['best_epoch']}")
    if "semantic_negatives" in result:
        semantic = result["semantic_negatives"]
        print(
            f"  backbone {result['backbone']}; {semantic['llm']} profiles ({semantic['llm_model']}), "
            f"{semantic['embedding_model']} embeddings, negative source {semantic['negative_source']}; "
            f"cache {semantic['cache']}"
        )
    if "refit_epochs" in result:
        selected = result["selected_model_test_result"]
        print(
            f"  refit on train + validation for {result['refit_epochs']} epochs (test below); the model chosen on "
            f"validation alone tests at {', '.join(f'{key} {value:.4f}' for key, value in selected.items())}"
        )
    for metric, value in result["test_result"].items():
        print(f"  test {metric:<10} {value:.4f}")
    if "results_file" in result:
        print(f"results: {result['results_file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
