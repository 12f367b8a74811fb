"""Command line for the dataset importers: ``python -m recbole_hnlm.data.import_dataset {presplit,amazon} ...``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from recbole_hnlm.data.importers import CARVES, import_amazon_json, import_presplit
from recbole_hnlm.errors import HNLMError

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "dataset"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per source format."""
    parser = argparse.ArgumentParser(
        prog="python -m recbole_hnlm.data.import_dataset",
        description="Convert a dataset into RecBole atomic files with a fixed train/valid/test split.",
    )
    formats = parser.add_subparsers(dest="format", required=True)

    presplit = formats.add_parser("presplit", help="train.txt/test.txt with lines 'user item item ...'")
    presplit.add_argument("--train", type=Path, required=True, help="train file, each user's items in time order")
    presplit.add_argument("--test", type=Path, required=True, help="test file")
    presplit.add_argument(
        "--drop_unseen_items",
        action="store_true",
        help="drop test rows of items that never occur in train (counted in the manifest) instead of refusing them",
    )

    amazon = formats.add_parser("amazon", help="Amazon {user: [items]} and {item: {title, ...}} JSON")
    amazon.add_argument("--inter", type=Path, required=True, help="interactions JSON, lists in time order")
    amazon.add_argument("--items", type=Path, required=True, help="item text JSON")
    amazon.add_argument("--test_ratio", type=float, default=0.1, help="share of each user's items for test")

    for sub in (presplit, amazon):
        sub.add_argument("--name", required=True, help="dataset name: folder and file stem under --out")
        sub.add_argument("--out", type=Path, default=DEFAULT_OUT, help="parent folder (default: %(default)s)")
        sub.add_argument("--valid_ratio", type=float, default=0.1, help="share of each user's train items")
        sub.add_argument("--carve", choices=CARVES, default="latest", help="which items go to valid (and test)")
        sub.add_argument("--seed", type=int, default=2020, help="seed of the random carve")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one import; return 0, or 2 after printing the error when the input is at fault."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.format == "presplit":
            target = import_presplit(
                args.train,
                args.test,
                args.name,
                args.out,
                args.valid_ratio,
                args.carve,
                args.seed,
                drop_unseen_items=args.drop_unseen_items,
            )
        else:
            target = import_amazon_json(
                args.inter,
                args.items,
                args.name,
                args.out,
                args.valid_ratio,
                args.test_ratio,
                args.carve,
                args.seed,
            )
    except HNLMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = json.loads((target / f"{args.name}.manifest.json").read_text(encoding="utf-8"))["counts"]
    print(
        f"{args.name}: {counts['users']} users, {counts['items']} items, {counts['train']} train / "
        f"{counts['valid']} valid / {counts['test']} test interactions in {target}"
    )
    dropped = {key: value for key, value in counts.items() if key.startswith("dropped_")}
    if dropped:
        print(f"{args.name}: dropped on import: " + ", ".join(f"{key} {value}" for key, value in dropped.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
