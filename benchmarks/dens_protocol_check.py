"""Where the gap to the published DENS figures comes from: RecBole's own LightGCN, or one of our samplers.

Usage: python benchmarks/dens_protocol_check.py [--dataset beauty-dens] [--protocol ours|published] [--seed 2020]
       [--neg_sampler recbole|uniform|dns|mixgcf|...] [--candidate_num=6 ...]

``ours``: plain RecBole (its Trainer and uniform sampler) on the imported files, the epoch chosen on the carved
validation split (each user's latest train items), as the plugin's ``uniform`` runs do without ``refit_with_valid``.
Its test figure says whether the plugin reproduces RecBole.

``published``: the DENS authors' protocol, for diagnosis only: train on the whole train file (train + validation)
and choose the epoch on the *test* set. Its curve says what the published figure needs (how many epochs, how much
the latest items matter). Never use it to report a result.

``--neg_sampler recbole`` (the default) is RecBole alone: its Trainer and uniform sampler, no plugin code in the
loop. Any other name runs the plugin (``recbole_hnlm.quick_start.run``) with that sampler under the same protocol and
settings, without ``refit_with_valid``: under ``published`` its curve says whether our sampler reaches the published
figure when it is granted the published protocol, i.e. whether a shortfall is the sampler or the protocol.

All use the DENS LightGCN settings (3 layers, dim 64, lr 1e-3, reg 1e-4, batch 2048), one torch thread, validation
every epoch, and write results/dens-protocol-check/<dataset>-<protocol>[-<sampler>]-seed<seed>.json with the per-epoch
validation curve (the test curve under ``published``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from recbole_hnlm import compat  # noqa: E402
from recbole_hnlm.paths import default_data_path  # noqa: E402
from recbole_hnlm.quick_start import run as run_plugin  # noqa: E402

compat.apply()

from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.model.general_recommender import LightGCN  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import init_logger, init_seed  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_PATH = default_data_path()

SETTINGS = {
    "n_layers": 3,
    "embedding_size": 64,
    "learning_rate": 1e-3,
    "reg_weight": 1e-4,
    "train_batch_size": 2048,
    "metrics": ["Recall", "NDCG"],
    "topk": [20],
    "valid_metric": "Recall@20",
    "eval_batch_size": 4194304,
    "epochs": 300,
    "show_progress": False,
    "state": "ERROR",
}


def published_protocol_files(dataset: str, folder: Path) -> None:
    """Write ``dataset`` into ``folder`` as train = train + validation, valid = test, test = test."""
    source = DEFAULT_DATA_PATH / dataset
    target = folder / dataset
    target.mkdir(parents=True)
    shutil.copy(source / f"{dataset}.yaml", target / f"{dataset}.yaml")
    train = (source / f"{dataset}.train.inter").read_text()
    valid_rows = (source / f"{dataset}.valid.inter").read_text().split("\n", 1)[1]
    (target / f"{dataset}.train.inter").write_text(train + valid_rows)
    for part in ("valid", "test"):
        shutil.copy(source / f"{dataset}.test.inter", target / f"{dataset}.{part}.inter")


def train_recbole(settings: dict, dataset: str, data_path: Path, curve: list) -> dict:
    """RecBole alone: its LightGCN, Trainer and uniform sampler; returns the test result of the chosen epoch."""
    config = Config("LightGCN", dataset, [str(data_path / dataset / f"{dataset}.yaml")], settings)
    init_seed(settings["seed"], config["reproducibility"])
    init_logger(config)
    torch.set_num_threads(1)
    train, valid, test = data_preparation(config, create_dataset(config))
    trainer = Trainer(config, LightGCN(config, train.dataset))
    trainer.fit(train, valid, saved=True, callback_fn=lambda epoch, score: curve.append((epoch, float(score))))
    return trainer.evaluate(test, load_best_model=True)


def train_plugin(settings: dict, dataset: str, sampler: str, curve: list, cmd_args: list[str]) -> dict:
    """The plugin with ``sampler``, the same settings and protocol, no refit; returns the run's result (the chosen
    epoch's test result and the settings it ran with).

    ``cmd_args`` (``--key=value``) override the sampler's own defaults, e.g. ``--candidate_num=6``.
    """
    plugin_settings = {
        **settings,
        "neg_sampler": sampler,
        "eval_step": 1,
        "refit_with_valid": False,
        "results_dir": None,
        "torch_threads": 1,
    }
    result = run_plugin(
        "LightGCN",
        dataset,
        config_dict=plugin_settings,
        cmd_args=cmd_args,
        epoch_callback=lambda epoch, valid: curve.append((epoch, float(valid["recall@20"]))),
    )
    return result


def run(
    dataset: str, protocol: str, seed: int, stopping_step: int, sampler: str = "recbole", cmd_args: list[str] = ()
) -> dict:
    """Train LightGCN under ``protocol`` and return the chosen epoch, its scores and the curve."""
    with tempfile.TemporaryDirectory() as scratch:
        data_path = DEFAULT_DATA_PATH
        if protocol == "published":
            data_path = Path(scratch) / "data"
            published_protocol_files(dataset, data_path)
        settings = {
            **SETTINGS,
            "data_path": str(data_path),
            "seed": seed,
            "stopping_step": stopping_step,
            "checkpoint_dir": str(Path(scratch) / "saved"),
        }
        curve: list[tuple[int, float]] = []
        sampler_settings = {}
        if sampler == "recbole":
            test_result = train_recbole(settings, dataset, data_path, curve)
        else:
            result = train_plugin(settings, dataset, sampler, curve, list(cmd_args))
            test_result = result["test_result"]
            sampler_settings = {key: result[key] for key in ("candidate_num", "sample_num")}
    best_epoch, best_score = max(curve, key=lambda pair: (pair[1], -pair[0]))
    return {
        "dataset": dataset,
        "protocol": protocol,
        "sampler": sampler,
        "sampler_args": list(cmd_args),
        "sampler_settings": sampler_settings,
        "seed": seed,
        "settings": {key: SETTINGS[key] for key in ("n_layers", "embedding_size", "learning_rate", "reg_weight")},
        "chosen_epoch": best_epoch,
        "chosen_on": "test (diagnosis only)" if protocol == "published" else "validation",
        "test_result": {key: float(value) for key, value in test_result.items()},
        "curve": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="beauty-dens")
    parser.add_argument("--protocol", choices=["ours", "published"], default="ours")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--stopping_step", type=int, default=10)
    parser.add_argument(
        "--neg_sampler", default="recbole", help="recbole (RecBole alone, the default) or one of the plugin's samplers"
    )
    args, sampler_args = parser.parse_known_args()
    if sampler_args and args.neg_sampler == "recbole":
        parser.error(f"{' '.join(sampler_args)}: settings beyond these options need a plugin sampler (--neg_sampler).")
    result = run(args.dataset, args.protocol, args.seed, args.stopping_step, args.neg_sampler, sampler_args)
    tag = "" if args.neg_sampler == "recbole" else f"-{args.neg_sampler}"
    tag += "".join(f"-{arg.lstrip('-').replace('=', '')}" for arg in sampler_args)
    out = PROJECT_ROOT / "results" / "dens-protocol-check" / f"{args.dataset}-{args.protocol}{tag}-seed{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(
        f"{args.dataset}, LightGCN ({args.neg_sampler}), {args.protocol} protocol: epoch {result['chosen_epoch']} "
        f"chosen on {result['chosen_on']}, test Recall@20 {result['test_result']['recall@20']:.4f}, "
        f"NDCG@20 {result['test_result']['ndcg@20']:.4f}; {out}"
    )


if __name__ == "__main__":
    main()
