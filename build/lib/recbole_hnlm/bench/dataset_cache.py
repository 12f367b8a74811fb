"""Reuse of a loaded RecBole Dataset across the runs of one benchmark process."""

from __future__ import annotations

import copy
from collections.abc import Callable

import recbole.data.dataset as recbole_datasets
from recbole.utils.argument_list import dataset_arguments

from recbole_hnlm.data.preparation import load_dataset

# Read by RecBole's Dataset while loading but missing from its own `dataset_arguments` list (which it uses to
# decide whether a saved dataset can be reused), so they are added here.
_MORE_LOADING_KEYS = ("dataset", "data_path", "encoding", "numerical_features", "discretization")


def loading_key(config) -> tuple:
    """The settings that decide what RecBole loads for ``config``: equal keys load equal datasets."""
    own_class = hasattr(recbole_datasets, f"{config['model']}Dataset")
    dataset_class = config["model"] if own_class else str(config["MODEL_TYPE"])
    names = sorted({*dataset_arguments, *_MORE_LOADING_KEYS})
    return (dataset_class, *((name, repr(config[name])) for name in names))


class LoadedDatasetCache:
    """Loads each dataset once per distinct loading settings and hands every run its own copy.

    Used as ``run(..., dataset_loader=cache)``. RecBole's ``Dataset.build()`` changes the dataset it is called
    on (it turns the feature tables into Interactions and shuffles or sorts them), so each run gets a deep copy
    of the dataset as loaded, holding that run's config. Loading draws no random numbers, so a copy is split
    exactly as a fresh load would be (tests/bench/test_bench_matrix.py compares the two).
    """

    def __init__(self, loader: Callable = load_dataset) -> None:
        self.loader = loader
        self.loaded: dict[tuple, object] = {}
        self.loads = 0
        self.reuses = 0

    def __call__(self, config):
        """A private copy of the dataset that ``config`` asks for, loaded from disk the first time only."""
        key = loading_key(config)
        if key in self.loaded:
            self.reuses += 1
        else:
            self.loaded[key] = self.loader(config)
            self.loads += 1
        dataset = self.loaded[key]
        # The memo swaps the first run's config for this run's instead of copying it.
        return copy.deepcopy(dataset, memo={id(dataset.config): config})
