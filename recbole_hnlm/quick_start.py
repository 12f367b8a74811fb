"""Train and evaluate one (model, sampler, dataset) run, and reload a saved run."""

from __future__ import annotations

import os
from collections.abc import Callable
from logging import getLogger
from pathlib import Path
from time import perf_counter, strftime

import torch
from recbole.utils import init_logger, init_seed

from recbole_hnlm.compat import load_recbole_checkpoint
from recbole_hnlm.config import HNLMConfig, config_fingerprint, run_settings
from recbole_hnlm.data.preparation import input_counts, load_dataset, prepare_data, prepare_refit_data
from recbole_hnlm.io import write_json_atomic
from recbole_hnlm.model import get_model
from recbole_hnlm.trainer import create_trainer

# Settings that identify a run at the top of its results file; ``config`` in that file holds every setting.
_IDENTITY_KEYS = (
    "model",
    "backbone",
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


def set_torch_threads(config) -> None:
    """Apply ``torch_threads`` when set (left to torch's default otherwise)."""
    if config["torch_threads"]:
        torch.set_num_threads(int(config["torch_threads"]))


def prepare_run_data(config, dataset):
    """Split ``dataset``, build its dataloaders, and let the sampler prepare (e.g. ``hnlm`` builds its LLM cache,
    whose false hard negatives the held-out splits measure)."""
    train_data, valid_data, test_data = prepare_data(config, dataset)
    train_data.negative_sampler.prepare([valid_data._dataset, test_data._dataset])
    return train_data, valid_data, test_data


def refit_on_train_and_valid(
    config,
    dataset,
    train_data,
    valid_data,
    test_data,
    epochs: int,
    saved: bool,
    progress: Callable[[str], None] | None = None,
):
    """Train a fresh model on train + validation for ``epochs`` epochs (chosen on validation before), no validation.

    Returns its trainer, ready to test: the test set still chooses nothing. ``progress`` as for ``run``.
    """
    refit_data = prepare_refit_data(config, dataset, train_data, valid_data, test_data)
    init_seed(config["seed"], config["reproducibility"])
    recommender = get_model(config["model"])(config, refit_data._dataset).to(config["device"])
    trainer = create_trainer(config, recommender)
    trainer.epochs = epochs
    if progress is not None:
        trainer.progress = lambda text: progress(f"refit {text}")
    trainer.fit(refit_data, None, saved=False, show_progress=config["show_progress"])
    if saved:
        trainer._save_checkpoint(epochs - 1, verbose=False)
    return trainer


def run(
    model: str | None = None,
    dataset: str | None = None,
    config_file_list: list[str] | None = None,
    config_dict: dict | None = None,
    cmd_args: list[str] | None = None,
    saved: bool = True,
    dataset_loader: Callable = load_dataset,
    epoch_callback: Callable[[int, dict[str, float]], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Train with validation-based epoch selection, evaluate on test, and return (and save) the results.

    ``dataset_loader(config)`` returns the loaded (not yet split) RecBole Dataset; the benchmark passes one that
    reuses a dataset loaded by an earlier run. ``epoch_callback(epoch, valid_result)`` is called after each
    validation, e.g. to report to Ray Tune. ``progress(text)`` gets a one-line status after every epoch and
    validation (``57/300 epochs, valid recall@20 0.0512, best 0.0530 after 45``; ``refit 12/45 epochs``), e.g. for
    the benchmark's bar. The result's ``seconds`` splits the run's wall time.
    """
    started = perf_counter()
    config = HNLMConfig(model, dataset, config_file_list, config_dict, cmd_args)
    init_seed(config["seed"], config["reproducibility"])
    set_torch_threads(config)
    init_logger(config)
    logger = getLogger()

    loading = perf_counter()
    data = dataset_loader(config)  # validates the data files first, so their errors are not buried under the log
    loaded = perf_counter()
    logger.info(config)
    logger.info(data)
    train_data, valid_data, test_data = prepare_run_data(config, data)
    prepared = perf_counter()

    init_seed(config["seed"], config["reproducibility"])
    recommender = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(recommender)
    trainer = create_trainer(config, recommender)
    trainer.progress = progress

    def report_epoch(epoch_idx: int, valid_score: float) -> None:
        epoch_callback(epoch_idx, trainer.last_valid_result)

    best_valid_score, best_valid_result = trainer.fit(
        train_data,
        valid_data,
        saved=saved,
        show_progress=config["show_progress"],
        callback_fn=report_epoch if epoch_callback else None,
    )
    testing = perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    test_seconds = perf_counter() - testing
    trainers = [trainer]
    refit = {}
    if config["refit_with_valid"]:
        refit = {
            "selected_model_test_result": {key: float(value) for key, value in test_result.items()},
            "refit_epochs": trainer.best_epoch + 1,
        }
        logger.info(f"refit on train + validation for {refit['refit_epochs']} epochs")
        trainers.append(
            refit_on_train_and_valid(
                config, data, train_data, valid_data, test_data, refit["refit_epochs"], saved, progress
            )
        )
        testing = perf_counter()
        test_result = trainers[-1].evaluate(test_data, load_best_model=False, show_progress=config["show_progress"])
        test_seconds += perf_counter() - testing
    sampling_seconds = sum(sum(each.epoch_sampling_seconds) for each in trainers)

    result = {
        **{key: config[key] for key in _IDENTITY_KEYS},
        "config_hash": config_fingerprint(config),
        "config": run_settings(config),
        "input_counts": input_counts(data),
        "best_epoch": trainer.best_epoch,
        # Which model test_result measures: the best validation epoch's checkpoint, or (saved=False) the last epoch.
        "tested_epoch": "refit" if refit else "best" if saved else "last",
        "best_valid_score": float(best_valid_score),
        "valid_result": {key: float(value) for key, value in (best_valid_result or {}).items()},
        "test_result": {key: float(value) for key, value in test_result.items()},
        "epoch_train_seconds": trainer.epoch_train_seconds,
        "train_loss": [float(loss) for _, loss in sorted(trainer.train_loss_dict.items())],
        "total_seconds": perf_counter() - started,
        "seconds": {
            "load": loaded - loading,
            "prepare": prepared - loaded,
            "sampling": sampling_seconds,
            "train": sum(sum(each.epoch_train_seconds) for each in trainers) - sampling_seconds,
            "valid": sum(trainer.epoch_valid_seconds),
            "test": test_seconds,
        },
        **refit,
        "checkpoint": trainers[-1].saved_model_file if saved else None,
    }
    result.update(train_data.negative_sampler.run_details())
    logger.info(f"best valid ({config['valid_metric']}) at epoch {trainer.best_epoch}: {best_valid_result}")
    logger.info(f"test result: {test_result}")
    if config["results_dir"]:
        stamp = strftime("%Y%m%d-%H%M%S")
        name = f"{config['model']}-{config['neg_sampler']}-{config['dataset']}-seed{config['seed']}-{stamp}"
        result_file = Path(config["results_dir"]) / f"{name}.json"
        write_json_atomic(result_file, result)
        result["results_file"] = str(result_file)
    return result


def load_data_and_model(model_file: str | os.PathLike, dataset_loader: Callable = load_dataset):
    """Reload a checkpoint written by ``run``: (config, model, dataset, train, valid, test).

    ``dataset_loader(config)`` returns the loaded dataset, as for ``run`` (the benchmark reuses its loaded copy).
    The checkpoint of a ``refit_with_valid`` run comes back with the train + validation loader it trained on (graph
    models build their graph from it).
    """
    checkpoint = load_recbole_checkpoint(model_file)
    config = checkpoint["config"]
    if torch.device(config["device"]).type == "cuda" and not torch.cuda.is_available():
        config["device"] = torch.device("cpu")  # a checkpoint trained on a GPU, reloaded on a machine without one
    init_seed(config["seed"], config["reproducibility"])
    data = dataset_loader(config)
    train_data, valid_data, test_data = prepare_run_data(config, data)
    if config["refit_with_valid"]:
        train_data = prepare_refit_data(config, data, train_data, valid_data, test_data)
    init_seed(config["seed"], config["reproducibility"])
    recommender = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    recommender.load_state_dict(checkpoint["state_dict"])
    # The checkpoint was read onto the CPU; cached tensors such as LightGCN's restore_user_e must be on the model's
    # device, or its full_sort_predict indexes a CPU table with the device's user ids.
    other = checkpoint.get("other_parameter")
    if other:
        other = {key: value.to(config["device"]) if torch.is_tensor(value) else value for key, value in other.items()}
    recommender.load_other_parameter(other)
    return config, recommender, data, train_data, valid_data, test_data
