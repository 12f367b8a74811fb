"""Run the fine-tuning chain or one of its stages: ``python -m recbole_hnlm.finetune <stage> --dataset <name> [...]``.

    python -m recbole_hnlm.finetune chain  --dataset ml-100k --llm template --encoder minilm
    python -m recbole_hnlm.finetune chain  --dataset ml-100k --llm smollm2 --finetune_max_length=64 --finetune_steps=40
    python -m recbole_hnlm.finetune mine   --dataset ml-100k --llm template
    python -m recbole_hnlm.finetune train  --dataset ml-100k --llm template --encoder smollm2 --finetune_steps=200
    python -m recbole_hnlm.finetune encode --dataset ml-100k --llm template --encoder minilm --untuned

Stages: ``mine`` (train the CF model, or load ``--finetune_cf_checkpoint``, and mine hard negatives), ``train``
(LoRA fine-tuning; mines first when needed; resumes from the last checkpoint), ``encode`` (the fine-tuned
encoder's vectors, or the un-tuned one's with ``--untuned``), ``chain`` (mine, fine-tune, encode, then train and
evaluate ``--model`` with ``--neg_sampler=hnlm --hnlm_negative_source=vector --hnlm_encoder=finetuned``;
``--compare`` adds the un-tuned encoder's run). Every stage's output is cached under
``<llm_cache_dir>/<dataset>/finetune/``; a rerun skips what exists. Defaults and the documented small settings
are in ``properties/finetune.yaml``; any other setting goes as ``--key=value``.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from logging import getLogger

from recbole.utils import init_logger

from recbole_hnlm.cli import interruptible
from recbole_hnlm.errors import ConfigurationError, HNLMError

STAGES = ("mine", "train", "encode", "chain")


def parse_settings(arguments: list[str]) -> dict:
    """``--key=value`` arguments as a dict of Python values (numbers, lists, booleans, ~ for None, else strings)."""
    settings = {}
    for argument in arguments:
        key, sep, text = argument[2:].partition("=") if argument.startswith("--") else ("", "", "")
        if not key or not sep:
            raise ConfigurationError(f"Argument '{argument}' is not of the form --key=value. Fix: e.g. --epochs=5.")
        if text.lower() in ("~", "none", "null"):
            settings[key] = None
        elif text.lower() in ("true", "false"):
            settings[key] = text.lower() == "true"
        else:
            try:
                settings[key] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                settings[key] = text
    return settings


@interruptible(
    "python -m recbole_hnlm.finetune", "every stage keeps what it finished (mined shards, adapter checkpoints, chunks)"
)
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; 2 on bad input (the message names the input and the fix)."""
    from recbole_hnlm.finetune.chain import ChainRun, encode, fine_tune, mine, run_chain  # here: --help stays fast

    parser = argparse.ArgumentParser(prog="python -m recbole_hnlm.finetune", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--dataset", required=True, help="dataset folder name under data_path, e.g. ml-100k")
    parser.add_argument("--llm", help="profile source: template | smollm2 | hf:<path> | openai:<url> (llm.yaml)")
    parser.add_argument("--encoder", help="smollm2 | minilm | <local folder or .gguf> (finetune_encoder)")
    parser.add_argument("--untuned", action="store_true", help="encode: the un-tuned encoder's vectors")
    parser.add_argument("--model", default="LightGCN", help="chain: the CF model trained on the vectors")
    parser.add_argument("--compare", action="store_true", help="chain: also encode and train with the un-tuned one")
    parser.add_argument("--config_files", nargs="*", default=[], help="YAML files, as for run_recbole_hnlm.py")
    args, rest = parser.parse_known_args(argv)
    try:
        settings = parse_settings(rest)
        for key, value in (("llm", args.llm), ("finetune_encoder", args.encoder)):
            if value is not None:
                settings[key] = value
        chain = ChainRun(args.dataset, settings, args.config_files)
        init_logger(chain.base_config)
        if args.stage == "mine":
            outcome = mine(chain)["counts"]
        elif args.stage == "train":
            outcome = {key: value for key, value in fine_tune(chain)[1].items() if key != "losses"}
        elif args.stage == "encode":
            outcome = encode(chain, finetuned=not args.untuned)["stages"]["negatives"]
        else:
            outcome = run_chain(chain, args.model, compare_untuned=args.compare)
    except HNLMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    getLogger().info(f"{args.stage} done: {json.dumps(outcome, default=str)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
