"""Train and evaluate one (model, sampler, dataset) run, and reload a saved run."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from logging import getLogger
from pathlib import Path
from time import perf_counter, strftime

import torch
from recbole.utils import init_logger, init_seed

from recbole_hnlm.compat import load_recbole_checkpoint
from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import load_dataset, prepare_data
from recbole_hnlm.model import get_model
from recbole_hnlm.trainer import create_trainer

# Settings that identify a run in its results file (the full config is in RecBole's log).
_IDENTITY_KEYS = (
    "model",
    "dataset",
    "neg_sampler",
    "sample_num",
    "candidate_num",
    "seed",
    "epochs",
    "learning_rate",
    "train_batch_size",
    "embedding_size",
    "n_layers",
    "reg_weight",
    "eval_args",
    "valid_metric",
)


def config_fingerprint(config) -> str:
    """A short hash of every setting that can change a run's result."""
    ignored = {"device", "gpu_id", "show_progress", "state", "results_dir", "checkpoint_dir", "torch_threads"}
    items = sorted((key, repr(value)) for key, value in config.final_config_dict.items() if key not in ignored)
    return hashlib.sha256(repr(items).encode()).hexdigest()[:12]


def set_torch_threads(config) -> None:
    """Apply ``torch_threads`` when set (left to torch's default otherwise)."""
    if config["torch_threads"]:
        torch.set_num_threads(int(config["torch_threads"]))


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(payload, stream, indent=2, default=str)
    os.replace(temporary, path)


def run(
    model: str | None = None,
    dataset: str | None = None,
    config_file_list: list[str] | None = None,
    config_dict: dict | None = None,
    cmd_args: list[str] | None = None,
    saved: bool = True,
) -> dict:
    """Train with validation-based epoch selection, evaluate on test, and return (and save) the results."""
    started = perf_counter()
    config = HNLMConfig(model, dataset, config_file_list, config_dict, cmd_args)
    init_seed(config["seed"], config["reproducibility"])
    set_torch_threads(config)
    init_logger(config)
    logger = getLogger()
    logger.info(config)

    data = load_dataset(config)
    logger.info(data)
    train_data, valid_data, test_data = prepare_data(config, data)

    init_seed(config["seed"], config["reproducibility"])
    recommender = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(recommender)
    trainer = create_trainer(config, recommender)
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])

    result = {
        **{key: config[key] for key in _IDENTITY_KEYS},
        "config_hash": config_fingerprint(config),
        "best_epoch": trainer.best_epoch,
        "best_valid_score": float(best_valid_score),
        "valid_result": {key: float(value) for key, value in (best_valid_result or {}).items()},
        "test_result": {key: float(value) for key, value in test_result.items()},
        "epoch_train_seconds": trainer.epoch_train_seconds,
        "train_loss": [float(loss) for _, loss in sorted(trainer.train_loss_dict.items())],
        "total_seconds": perf_counter() - started,
        "checkpoint": trainer.saved_model_file if saved else None,
    }
    logger.info(f"best valid ({config['valid_metric']}) at epoch {trainer.best_epoch}: {best_valid_result}")
    logger.info(f"test result: {test_result}")
    if config["results_dir"]:
        stamp = strftime("%Y%m%d-%H%M%S")
        name = f"{config['model']}-{config['neg_sampler']}-{config['dataset']}-seed{config['seed']}-{stamp}"
        result_file = Path(config["results_dir"]) / f"{name}.json"
        write_json_atomic(result_file, result)
        result["results_file"] = str(result_file)
    return result


def load_data_and_model(model_file: str | os.PathLike):
    """Reload a checkpoint written by ``run``: (config, model, dataset, train, valid, test)."""
    checkpoint = load_recbole_checkpoint(model_file)
    config = checkpoint["config"]
    init_seed(config["seed"], config["reproducibility"])
    data = load_dataset(config)
    train_data, valid_data, test_data = prepare_data(config, data)
    init_seed(config["seed"], config["reproducibility"])
    recommender = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    recommender.load_state_dict(checkpoint["state_dict"])
    recommender.load_other_parameter(checkpoint.get("other_parameter"))
    return config, recommender, data, train_data, valid_data, test_data
