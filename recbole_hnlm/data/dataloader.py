"""RecBole's train dataloader with the negative sampler chosen by ``neg_sampler``."""

from __future__ import annotations

from itertools import islice
from time import perf_counter

from recbole.data.dataloader import TrainDataLoader
from recbole.data.interaction import Interaction

from recbole_hnlm.data.single_process import check_single_process
from recbole_hnlm.samplers import get_sampler_class


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
