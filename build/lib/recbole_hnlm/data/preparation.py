"""Loading a dataset and building its dataloaders through RecBole's own factories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from recbole.data import create_dataset
from recbole.data.interaction import cat_interactions
from recbole.data.utils import create_samplers, get_dataloader
from recbole.utils import init_seed

from recbole_hnlm.data.dataloader import NegativeSamplingTrainDataLoader
from recbole_hnlm.data.reader import check_dataset_files
from recbole_hnlm.errors import DataFormatError


def load_dataset(config):
    """Check the dataset's atomic files, then let RecBole load and filter them.

    The checked files' counts (rows, blank lines skipped, repeated rows) stay on the dataset: see ``input_counts``.
    """
    counts = check_dataset_files(config)
    try:
        dataset = create_dataset(config)
    except ValueError as error:  # RecBole reports empty or unknown fields this way
        raise DataFormatError(
            f"RecBole could not load dataset '{config['dataset']}' from {config['data_path']}: {error} "
            "Fix: check load_col and the filtering settings (val_interval, user/item_inter_num_interval)."
        ) from None
    dataset.input_counts = counts
    return dataset


def input_counts(dataset) -> dict[str, dict[str, int]]:
    """Per atomic file of ``dataset``, the counts its check found, for a run's results JSON ({} if not checked)."""
    return getattr(dataset, "input_counts", {})


def _check_held_out_ids(config, built_datasets) -> None:
    """In a pre-split dataset every user and item of validation and test must occur in training."""
    train = built_datasets[0]
    for part, held_out in zip(config["benchmark_filename"][1:], built_datasets[1:], strict=True):
        file = Path(config["data_path"]) / f"{config['dataset']}.{part}.inter"
        for field in (train.uid_field, train.iid_field):
            unseen = np.setdiff1d(held_out.inter_feat[field].numpy(), train.inter_feat[field].numpy())
            if len(unseen):
                tokens = train.id2token(field, unseen[:5])
                raise DataFormatError(
                    f"{file}: {len(unseen)} {field} value(s) never occur in the training file, e.g. "
                    f"{', '.join(map(str, tokens))}. A model cannot score ids it never trained on. Fix: drop "
                    "those rows or move them to the training file (the importers do this check too)."
                )


def prepare_data(config, dataset):
    """Split ``dataset`` as configured and build the train, validation and test dataloaders.

    The same steps as RecBole's ``data_preparation``, with the plugin's sampler in the train dataloader;
    ``split_seed`` (when set) fixes the random split whatever ``seed`` is.
    """
    split_seed = config["split_seed"]
    if split_seed is not None:
        # RecBole draws its random split (ordering RO) from torch's generator: seed it on its own, then hand the
        # rest of the run back to ``seed``, so that runs over several seeds can share one split (and its LLM cache).
        init_seed(split_seed, config["reproducibility"])
    built_datasets = dataset.build()
    if split_seed is not None:
        init_seed(config["seed"], config["reproducibility"])
    if config["benchmark_filename"]:
        _check_held_out_ids(config, built_datasets)
    train_sampler, valid_sampler, test_sampler = create_samplers(config, dataset, built_datasets)
    train_dataset, valid_dataset, test_dataset = built_datasets
    train_data = NegativeSamplingTrainDataLoader(config, train_dataset, train_sampler, shuffle=config["shuffle"])
    valid_data = get_dataloader(config, "valid")(config, valid_dataset, valid_sampler, shuffle=False)
    test_data = get_dataloader(config, "test")(config, test_dataset, test_sampler, shuffle=False)
    return train_data, valid_data, test_data


def prepare_refit_data(config, dataset, train_data, valid_data, test_data) -> NegativeSamplingTrainDataLoader:
    """A train dataloader over train + validation, for ``refit_with_valid``: a fresh model trains on both for the
    number of epochs chosen on validation, and is then tested.

    Its sampler treats validation items as positives (never drawn as negatives); test evaluation is unchanged,
    since the test dataloader already masks train and validation items.
    """
    train_dataset, valid_dataset, test_dataset = (data._dataset for data in (train_data, valid_data, test_data))
    merged = train_dataset.copy(cat_interactions([train_dataset.inter_feat, valid_dataset.inter_feat]))
    refit_sampler, _, _ = create_samplers(config, dataset, [merged, valid_dataset, test_dataset])
    return NegativeSamplingTrainDataLoader(config, merged, refit_sampler, shuffle=config["shuffle"])
