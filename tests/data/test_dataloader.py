"""The plugin's train dataloader: RecBole's multi-GPU mode refused before any work, and the per-epoch batch cap."""

from __future__ import annotations

import pytest

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.dataloader import NegativeSamplingTrainDataLoader
from recbole_hnlm.data.single_process import check_single_process
from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.quick_start import run

QUIET = {"state": "ERROR", "show_progress": False}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"nproc": 2}, "nproc=2"),
        ({"world_size": 4, "nproc": 1}, "world_size=4"),
        ({"local_rank": 1}, "local_rank=1"),  # RecBole's Config is about to join a process group
        ({"local_rank": 0, "single_spec": False}, "local_rank=0"),  # it has joined one
    ],
)
def test_multi_gpu_settings_are_refused_with_the_setting_named(settings, named):
    with pytest.raises(ConfigurationError, match=f"multi-GPU mode \\({named}.*Fix: train in a single process"):
        check_single_process(settings)


@pytest.mark.parametrize(
    "settings",
    [{}, {"local_rank": 0, "single_spec": True}, {"nproc": 1, "world_size": -1, "local_rank": 0, "single_spec": True}],
)
def test_single_process_settings_pass(settings):
    check_single_process(settings)  # RecBole's own single-process values


def test_loader_refuses_a_config_that_joined_a_process_group(ml100k):
    config = HNLMConfig("BPR", "ml-100k", config_dict={**QUIET, "neg_sampler": "dns"})
    check_single_process(config)  # a plain Config: RecBole set local_rank 0 and single_spec True
    config["single_spec"], config["world_size"] = False, 2
    with pytest.raises(ConfigurationError, match="world_size=2, local_rank=0"):
        NegativeSamplingTrainDataLoader(config, ml100k[2]._dataset, ml100k[2]._sampler, shuffle=True)


def test_run_refuses_nproc_before_training(run_settings):
    with pytest.raises(ConfigurationError, match="nproc=2"):
        run("BPR", "ml-100k", config_dict={**run_settings, "nproc": 2, "epochs": 1})


def test_max_batches_ends_each_epoch_early(ml100k):
    config = HNLMConfig("BPR", "ml-100k", config_dict=QUIET)
    loader = NegativeSamplingTrainDataLoader(config, ml100k[2]._dataset, ml100k[2]._sampler, shuffle=True)
    full = sum(1 for _ in loader)
    loader.max_batches = 3
    assert full > 3 and [sum(1 for _ in loader) for _ in range(2)] == [3, 3]
    loader.max_batches = None
    assert sum(1 for _ in loader) == full
