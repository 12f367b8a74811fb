"""Build the LLM side's cache for a dataset: ``python -m recbole_hnlm.llm <stage> --dataset <name> [...]``.

    python -m recbole_hnlm.llm profiles  --dataset ml-100k --llm template
    python -m recbole_hnlm.llm all       --dataset ml-100k --llm smollm2 --budget 943 --unit user
    python -m recbole_hnlm.llm negatives --dataset ml-100k --llm openai:http://127.0.0.1:8000/v1 --llm_model=m
    python -m recbole_hnlm.llm all       --dataset ml-100k --llm smollm2 --ray_address=local --ray_workers=2
    python -m recbole_hnlm.llm all       --dataset amazon-office --llm smollm2 --budget 500 \
        --llm_user_profile_scope=budget   # LLM user profiles for the 500 budget users only

Stages: ``profiles`` (item and user profiles and their vectors), ``negatives`` (builds the profiles first when
they are missing) and ``all``. Defaults are in ``properties/llm.yaml``; any other setting goes as
``--key=value`` (e.g. ``--llm_batch_size=16``) or in ``--config_files``. The split is built exactly as a
training run builds it (same dataset settings, ``eval_args`` and ``seed``), so user histories hold training
interactions only. ``--ray_address`` shards the generation and embedding over Ray workers (see
``recbole_hnlm.llm.distributed``); the files are the same as without it.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from logging import getLogger

from recbole.utils import init_logger, init_seed

from recbole_hnlm.cli import interruptible
from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import load_dataset, prepare_data
from recbole_hnlm.errors import HNLMError
from recbole_hnlm.llm import build_semantic_cache
from recbole_hnlm.llm.distributed import ShardWorkers
from recbole_hnlm.llm.pipeline import STAGES


@interruptible("python -m recbole_hnlm.llm", "the LLM cache keeps every finished shard and vector chunk")
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; 2 on bad input (the message names the input and the fix)."""
    parser = argparse.ArgumentParser(prog="python -m recbole_hnlm.llm", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--dataset", required=True, help="dataset folder name under data_path, e.g. ml-100k")
    parser.add_argument("--llm", help="template | smollm2 | hf:<path> | openai:<base_url> (default: llm.yaml)")
    parser.add_argument("--budget", type=int, help="most LLM calls for negatives (llm_negative_budget)")
    parser.add_argument(
        "--unit", choices=("user", "pair"), help="one negative per user or per pair (llm_negative_unit)"
    )
    parser.add_argument(
        "--model", default="BPR", help="CF model whose config builds the split (only the split matters)"
    )
    parser.add_argument("--config_files", nargs="*", default=[], help="YAML files, as for run_recbole_hnlm.py")
    parser.add_argument(
        "--ray_address",
        help="shard the work over Ray workers: host:port or auto (a running cluster), or local (a Ray started for "
        "this command); default: this process alone",
    )
    parser.add_argument(
        "--ray_workers", type=int, help="Ray workers (default: one per GPU of the cluster, else one per CPU)"
    )
    args, settings = parser.parse_known_args(argv)
    if args.ray_workers is not None and not args.ray_address:
        print("error: --ray_workers sizes a Ray run. Fix: add --ray_address=local (or host:port).", file=sys.stderr)
        return 2
    workers = ShardWorkers(args.ray_address, args.ray_workers) if args.ray_address else None
    chosen = {"llm": args.llm, "llm_negative_budget": args.budget, "llm_negative_unit": args.unit}
    # The split does not depend on the sampler; uniform keeps the CF side's semantic sampler out of the build.
    config_dict = {"neg_sampler": "uniform", **{key: value for key, value in chosen.items() if value is not None}}
    try:
        if workers is not None:
            workers.check()
        config = HNLMConfig(args.model, args.dataset, args.config_files, config_dict, settings)
        init_seed(config["seed"], config["reproducibility"])
        init_logger(config)
        dataset = load_dataset(config)
        train_data, valid_data, test_data = prepare_data(config, dataset)
        stages = ("profiles",) if args.stage == "profiles" else ("profiles", "negatives")
        held_out = [valid_data._dataset, test_data._dataset]
        with workers or nullcontext():
            folder = build_semantic_cache(config, train_data._dataset, held_out, stages, workers)
    except HNLMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    getLogger().info(f"done: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
