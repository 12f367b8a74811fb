"""RecBole's Trainer for the model, with per-epoch timing and validation history recorded, and sampler losses."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from functools import cache
from time import perf_counter, strftime

import torch
from recbole.utils import get_trainer

from recbole_hnlm.compat import load_recbole_checkpoint
from recbole_hnlm.split_fingerprint import split_sha256_of


class EpochRecordMixin:
    """Records the seconds of each training epoch, of its negative sampling and of each validation, and the scores.

    It also trains with the negative sampler's own loss where the sampler has one (mixing samplers).
    """

    def __init__(self, config, model) -> None:
        super().__init__(config, model)
        # RecBole names checkpoints <model>-<time>.pth, which collide when runs start in the same second.
        name = f"{config['model']}-{config['neg_sampler']}-{config['dataset']}-{strftime('%Y%m%d-%H%M%S')}"
        self.saved_model_file = os.path.join(self.checkpoint_dir, f"{name}-{uuid.uuid4().hex[:8]}.pth")
        self.epoch_train_seconds: list[float] = []
        self.epoch_sampling_seconds: list[float] = []
        self.epoch_valid_seconds: list[float] = []
        self.valid_scores: list[tuple[int, float]] = []
        self.last_valid_result: dict[str, float] = {}
        self.split_fingerprint: dict | None = None  # set by fit; saved in every checkpoint
        # Called with a one-line status after every epoch and every validation, e.g. by the benchmark's bar.
        self.progress: Callable[[str], None] | None = None

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = perf_counter()
        sampling_before = getattr(train_data, "sampling_seconds", 0.0)
        sampler = getattr(train_data, "negative_sampler", None)
        if loss_func is None and sampler is not None:
            # Samplers that synthesize negative embeddings bring their own loss; the others return None.
            loss_func = sampler.training_loss(self.model)
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        if sampler is not None:
            sampler.end_epoch()  # closes the epoch's false-hard-negative counts
        self.epoch_train_seconds.append(perf_counter() - start)
        self.epoch_sampling_seconds.append(getattr(train_data, "sampling_seconds", 0.0) - sampling_before)
        self._report_progress()
        return loss

    def _valid_epoch(self, valid_data, show_progress=False):
        start = perf_counter()
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.epoch_valid_seconds.append(perf_counter() - start)
        self.last_valid_result = {key: float(value) for key, value in valid_result.items()}
        return valid_score, valid_result

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        """RecBole's evaluate, reloading the best epoch's checkpoint with ``load_recbole_checkpoint`` (see compat)."""
        if load_best_model:
            checkpoint = load_recbole_checkpoint(model_file or self.saved_model_file, self.device)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """RecBole's fit, also recording (epoch, validation score) pairs."""

        def record(epoch_idx: int, valid_score: float) -> None:
            self.valid_scores.append((epoch_idx, float(valid_score)))
            self._report_progress()
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        refit = valid_data is None and bool(self.config["refit_with_valid"])
        self.split_fingerprint = {"train_split_sha256": split_sha256_of(train_data._dataset), "refit_with_valid": refit}
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn=record)

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """RecBole's checkpoint, with the fingerprint of the split it trained on (the fine-tuning chain checks it)."""
        super()._save_checkpoint(epoch, verbose=verbose, **kwargs)
        path = kwargs.get("saved_model_file", self.saved_model_file)
        state = load_recbole_checkpoint(path, self.device)
        torch.save({**state, "split_fingerprint": self.split_fingerprint}, path, pickle_protocol=4)

    def progress_text(self) -> str:
        """e.g. ``57/300 epochs, valid recall@20 0.0512, best 0.0530 after 45``: epochs done, at most, validation."""
        text = f"{len(self.epoch_train_seconds)}/{self.epochs} epochs"
        if self.valid_scores:
            best_epoch = self.best_epoch
            best, latest = dict(self.valid_scores)[best_epoch], self.valid_scores[-1][1]
            text += f", valid {self.valid_metric} {latest:.4f}, best {best:.4f} after {best_epoch + 1}"
        return text

    def _report_progress(self) -> None:
        if self.progress is not None:
            self.progress(self.progress_text())

    @property
    def best_epoch(self) -> int | None:
        """The first epoch that reached the best validation score (the refit trains this many + 1 epochs).

        RecBole's early stopping counts a tie as an improvement (``value >= best``): its patience restarts and the
        checkpoint it keeps, which a run without refit tests, is the last tied epoch, so on a tie that checkpoint is
        later than this epoch."""
        if not self.valid_scores:
            return None
        best = (
            max(score for _, score in self.valid_scores)
            if self.valid_metric_bigger
            else min(score for _, score in self.valid_scores)
        )
        return next(epoch for epoch, score in self.valid_scores if score == best)


@cache
def _recording_trainer_class(base: type) -> type:
    return type(f"Recording{base.__name__}", (EpochRecordMixin, base), {})


def create_trainer(config, model):
    """RecBole's trainer for this model (e.g. NCLTrainer for NCL), with epoch records added."""
    base = get_trainer(config["MODEL_TYPE"], config["model"])
    return _recording_trainer_class(base)(config, model)
