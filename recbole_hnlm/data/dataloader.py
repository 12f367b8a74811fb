"""RecBole's train dataloader with the negative sampler chosen by ``neg_sampler``."""

from __future__ import annotations

from itertools import islice
from time import perf_counter

from recbole.data.dataloader import TrainDataLoader
from recbole.data.interaction import Interaction

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.samplers import get_sampler_class


def check_single_process(config) -> None:
    """Refuse RecBole 1.2.1's multi-process (multi-GPU) mode, which the plugin's loader and samplers do not support.

    RecBole's ``run_recboles`` spawns ``nproc`` processes over ``world_size`` ranks, each with a ``local_rank``; its
    Config then joins an NCCL process group (``single_spec`` False), its loader shards batches, and its Trainer wraps
    the model in DistributedDataParallel. The plugin's samplers would draw every rank's negatives from one seeded
    generator, and those that score or synthesize in the loss call the model's adapter outside DDP's forward, so
    gradients would not be synchronised across ranks. Reads ``config[key]`` (a Config or a dict), before or after
    RecBole's device set-up.
    """
    settings = {key: config[key] if key in config else None for key in ("nproc", "world_size", "local_rank")}
    asked = [
        f"{key}={value}"
        for key, value in settings.items()
        if key != "local_rank" and isinstance(value, int) and value > 1
    ]
    single_spec = config["single_spec"] if "single_spec" in config else None
    if single_spec is False or (single_spec is None and settings["local_rank"] is not None):
        asked.append(f"local_rank={settings['local_rank']} (a process of RecBole's distributed run)")
    if asked:
        raise ConfigurationError(
            f"RecBole's multi-GPU mode ({', '.join(asked)}) is not supported by recbole-hnlm: its negative samplers "
            "sample and score in one process, on the unwrapped model. Fix: train in a single process, without nproc, "
            "world_size and local_rank (one GPU: --gpu_id=0)."
        )


class NegativeSamplingTrainDataLoader(TrainDataLoader):
    """Fills RecBole's ``NEG_ITEM_ID`` with the plugin's sampler, so every pairwise model trains unchanged.

    RecBole's Trainer hands the model over through ``get_model`` when ``train_neg_sample_args['dynamic']``
    is set, which the plugin's Config does for samplers that score candidates with the model. Fields a sampler
    adds through ``extra_batch_fields`` (e.g. the candidate pools of mixing samplers) join each batch.
    ``sampling_seconds`` adds up the time spent in the sampler, for the benchmark's time split; ``max_batches``, when
    set, ends every epoch after that many batches (for smoke tests and benchmarks of large datasets).
    """

    def __init__(self, config, dataset, sampler, shuffle: bool = False) -> None:
        check_single_process(config)
        super().__init__(config, dataset, sampler, shuffle=shuffle)
        self.negative_sampler = get_sampler_class(config["neg_sampler"])(config, dataset)
        self.model = None
        self.sampling_seconds = 0.0
        self.max_batches: int | None = None

    def __iter__(self):
        batches = super().__iter__()
        return batches if self.max_batches is None else islice(batches, self.max_batches)

    def _neg_sampling(self, inter_feat):
        started = perf_counter()
        users = inter_feat[self.uid_field]
        items = inter_feat[self.iid_field]
        negatives = self.negative_sampler.sample(users, items, self.neg_sample_num, model=self.model)
        batch = self.sampling_func(inter_feat, negatives.reshape(-1))
        extra_fields = self.negative_sampler.extra_batch_fields(users, items, self.neg_sample_num)
        if extra_fields:
            batch.update(Interaction(extra_fields))
        self.sampling_seconds += perf_counter() - started
        return batch
