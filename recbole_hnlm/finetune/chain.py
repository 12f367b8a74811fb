"""The chain's stages, each cached and resumable: profiles, CF model, mining, fine-tuning, encoding, CF training.

    run = ChainRun("ml-100k", {"llm": "template", "finetune_encoder": "minilm"})
    summary = run_chain(run)            # or the stages one by one: mine(run), fine_tune(run), encode(run, True), ...

Every stage builds its Config from the same dataset, config files and settings, so all of them see one split
(same ``seed`` and ``eval_args``) and one set of ``llm_*`` and ``finetune_*`` settings, and the CF run finds the
vectors through ``ChainPaths`` as the chain wrote them. A stage whose output exists is skipped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from logging import getLogger

import torch
from recbole.utils import init_logger, init_seed

from recbole_hnlm.compat import load_recbole_checkpoint
from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import load_dataset, prepare_data
from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.finetune.encode import build_encoded_cache
from recbole_hnlm.finetune.encoder import TextEncoder
from recbole_hnlm.finetune.mining import build_mined_dataset, read_mined
from recbole_hnlm.finetune.paths import ChainPaths
from recbole_hnlm.finetune.settings import FinetuneSettings
from recbole_hnlm.finetune.train import checkpoint_folder, train_adapter
from recbole_hnlm.io import write_json_atomic
from recbole_hnlm.llm.cache import CacheFolder
from recbole_hnlm.llm.catalogue import Catalogue
from recbole_hnlm.llm.pipeline import build_semantic_cache
from recbole_hnlm.llm.settings import LLMSettings
from recbole_hnlm.quick_start import load_data_and_model, run
from recbole_hnlm.split_fingerprint import split_sha256_of

# Float32 copies of GGUF encoders, under llm_cache_dir (see recbole_hnlm.finetune.encoder.dequantised_folder).
MODEL_CACHE = "models"

logger = getLogger()


@dataclass
class ChainRun:
    """One chain: dataset, config files and settings (Config keys), shared by every stage."""

    dataset: str
    config_dict: dict = field(default_factory=dict)
    config_files: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A chain named by finetune_seed runs with that seed, as the CF runs that read it expect (ChainPaths).
        if self.config_dict.get("finetune_seed") is not None:
            self.config_dict = {**self.config_dict, "seed": self.config_dict["finetune_seed"]}

    def config(self, model: str, **overrides) -> HNLMConfig:
        """The Config of ``model`` with the chain's settings and ``overrides`` (which win)."""
        return HNLMConfig(model, self.dataset, self.config_files, {**self.config_dict, **overrides})

    @cached_property
    def base_config(self) -> HNLMConfig:
        """The Config of the mining CF run, which also holds the LLM and fine-tuning settings."""
        settings = FinetuneSettings.from_config(self.config_dict)
        return self.config(settings.cf_model, neg_sampler=settings.cf_sampler)

    @cached_property
    def settings(self) -> FinetuneSettings:
        """The fine-tuning settings."""
        return FinetuneSettings.from_config(self.base_config)

    @cached_property
    def llm_settings(self) -> LLMSettings:
        """The LLM side's settings (profiles and their cache)."""
        return LLMSettings.from_config(self.base_config)

    @cached_property
    def paths(self) -> ChainPaths:
        """Where each stage writes."""
        return ChainPaths(self.dataset, self.llm_settings, self.settings)

    @cached_property
    def split(self):
        """(training dataset, [validation, test] datasets), split as a training run splits it."""
        config = self.base_config
        init_seed(config["seed"], config["reproducibility"])
        train, valid, test = prepare_data(config, load_dataset(config))
        return train._dataset, [valid._dataset, test._dataset]

    def profiles(self, train=None, held_out=None) -> CacheFolder:
        """The LLM cache's item and user profiles of the split (built when missing)."""
        if train is None:
            train, held_out = self.split
        return CacheFolder(build_semantic_cache(self.base_config, train, held_out, stages=("profiles",)))

    def catalogue(self, train=None, held_out=None) -> Catalogue:
        """Texts and split by internal id."""
        if train is None:
            train, held_out = self.split
        return Catalogue.from_split(self.base_config, train, held_out, self.llm_settings)

    def encoder(self) -> TextEncoder:
        """A fresh (un-tuned) encoder, with ``finetune_torch_threads`` applied."""
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        return TextEncoder.from_settings(self.settings, self.llm_settings.cache_root / MODEL_CACHE)


def train_cf(chain: ChainRun) -> str:
    """The mining CF model's checkpoint: ``finetune_cf_checkpoint``, a cached one, or one trained now."""
    settings = chain.settings
    if settings.cf_checkpoint:
        return settings.cf_checkpoint
    folder = CacheFolder(chain.paths.cf)
    manifest = folder.read_manifest()
    if manifest.get("checkpoint") and (folder.path / manifest["checkpoint"]).is_file():
        return str(folder.path / manifest["checkpoint"])
    result = run(
        settings.cf_model,
        chain.dataset,
        chain.config_files,
        {
            **chain.config_dict,
            "neg_sampler": settings.cf_sampler,
            "epochs": settings.cf_epochs,
            "refit_with_valid": False,  # a refit model has seen the validation interactions that mining must not
            "checkpoint_dir": str(folder.path),
            "results_dir": str(folder.path),
        },
    )
    folder.write_manifest(
        {
            "recipe": settings.cf_recipe(),
            "checkpoint": str(result["checkpoint"]).rsplit("/", 1)[-1],
            "best_epoch": result["best_epoch"],
            "valid_result": result["valid_result"],
            "test_result": result["test_result"],
        }
    )
    return str(result["checkpoint"])


def check_cf_checkpoint(chain: ChainRun, checkpoint: str) -> None:
    """Refuse a CF checkpoint not trained on exactly the chain's training split: mining with it would leak the
    validation or test interactions it trained on into the fine-tuning supervision."""
    recorded = load_recbole_checkpoint(checkpoint).get("split_fingerprint")
    wanted = split_sha256_of(chain.split[0])
    if recorded and not recorded["refit_with_valid"] and recorded["train_split_sha256"] == wanted:
        return
    if not recorded:
        reason = "it records no training split (it was written before split fingerprints, or not by recbole-hnlm)"
    elif recorded["refit_with_valid"]:
        reason = "it was refit on train + validation (refit_with_valid), so it has seen this split's validation data"
    else:
        reason = "it was trained on another training split (another seed, eval_args or dataset file)"
    raise ConfigurationError(
        f"CF checkpoint {checkpoint} cannot mine for the chain on '{chain.dataset}': {reason}. Fix: unset "
        "finetune_cf_checkpoint to let the chain train its own, or train one with run_recbole_hnlm.py on the "
        "chain's dataset, seed and eval_args with refit_with_valid=False (delete a cached one to retrain it)."
    )


def mine(chain: ChainRun) -> dict:
    """Stage ``mine``: train (or load) the CF model and mine the supervision; return the mined manifest."""
    folder = chain.paths.mined
    if CacheFolder(folder).read_manifest().get("complete"):
        return CacheFolder(folder).read_manifest()
    checkpoint = train_cf(chain)
    check_cf_checkpoint(chain, checkpoint)
    _, model, _, train_data, valid_data, test_data = load_data_and_model(checkpoint)
    train, held_out = train_data._dataset, [valid_data._dataset, test_data._dataset]
    profiles = chain.profiles(train, held_out)
    catalogue = chain.catalogue(train, held_out)
    identity = {
        "id": chain.paths.mined_id,
        "cf": chain.settings.cf_recipe(),
        "mining": chain.settings.mining_recipe(),
        "profiles": profiles.path.name,
        "inputs": profiles.read_manifest()["inputs"],
    }
    return build_mined_dataset(folder, model, catalogue, profiles, chain.llm_settings, chain.settings, identity)


def fine_tune(chain: ChainRun, encoder: TextEncoder | None = None) -> tuple[TextEncoder, dict]:
    """Stage ``train``: LoRA fine-tuning on the mined dataset (mined first when missing); the encoder and summary."""
    mined = mine(chain)
    records = read_mined(chain.paths.mined)
    encoder = encoder or chain.encoder()
    identity = {
        "id": chain.paths.adapter_id,
        "mined": mined["id"],
        "encoder": encoder.describe(),
        "training": chain.settings.training_recipe(),
    }
    summary = train_adapter(encoder, records, chain.paths.adapter, chain.settings, identity)
    return encoder, summary


def encode(chain: ChainRun, finetuned: bool, encoder: TextEncoder | None = None) -> dict:
    """Stage ``encode``: vectors of the un-tuned or fine-tuned encoder (that adapter must exist); the manifest."""
    folder = chain.paths.encoded(finetuned)
    manifest = CacheFolder(folder).read_manifest()
    if manifest.get("stages", {}).get("negatives_complete"):
        return manifest
    if encoder is None:
        encoder = chain.encoder()
        if finetuned:
            adapter = checkpoint_folder(chain.paths.adapter, chain.settings.steps)
            if not adapter.is_dir():
                raise ConfigurationError(
                    f"No adapter at {adapter} (finetune_steps={chain.settings.steps}). Fix: python -m "
                    f"recbole_hnlm.finetune train --dataset={chain.dataset} with the same settings first."
                )
            encoder.load_adapter(adapter, {"id": chain.paths.adapter_id, "step": chain.settings.steps})
    train, held_out = chain.split
    return build_encoded_cache(
        folder,
        encoder,
        chain.catalogue(train, held_out),
        chain.profiles(train, held_out),
        chain.llm_settings,
        chain.settings,
    )


def train_recommender(chain: ChainRun, mode: str, model: str = "LightGCN", **overrides) -> dict:
    """Train and evaluate ``model`` with ``--neg_sampler=hnlm --hnlm_negative_source=vector --hnlm_encoder=mode``."""
    config_dict = {
        **chain.config_dict,
        "neg_sampler": "hnlm",
        "hnlm_negative_source": "vector",
        "hnlm_encoder": mode,
        **overrides,
    }
    return run(model, chain.dataset, chain.config_files, config_dict)


def run_chain(chain: ChainRun, model: str = "LightGCN", compare_untuned: bool = False, **cf_overrides) -> dict:
    """Mine, fine-tune, encode, then train and evaluate ``model`` on the fine-tuned vectors (and the un-tuned ones).

    Returns (and writes to ``<chain root>/chain-summary.json``) each stage's summary and the test results.
    """
    init_logger(chain.base_config)
    started = time.perf_counter()
    seconds = {}
    mined = mine(chain)
    seconds["mine"] = time.perf_counter() - started
    summary = {"dataset": chain.dataset, "settings": chain.config_dict, "mined": mined["counts"]}
    if compare_untuned:
        mark = time.perf_counter()
        summary["untuned_negatives"] = encode(chain, finetuned=False)["stages"]["negatives"]
        seconds["encode_untuned"] = time.perf_counter() - mark
    mark = time.perf_counter()
    encoder, training = fine_tune(chain)
    seconds["fine_tune"] = time.perf_counter() - mark
    summary["training"] = {key: value for key, value in training.items() if key != "losses"}
    summary["training"]["first_loss"], summary["training"]["last_loss"] = training["losses"][0], training["losses"][-1]
    mark = time.perf_counter()
    summary["finetuned_negatives"] = encode(chain, finetuned=True, encoder=encoder)["stages"]["negatives"]
    seconds["encode_finetuned"] = time.perf_counter() - mark
    del encoder
    modes = ("finetuned", "untuned") if compare_untuned else ("finetuned",)
    for mode in modes:
        mark = time.perf_counter()
        result = train_recommender(chain, mode, model, **cf_overrides)
        summary[f"{mode}_result"] = {
            key: result[key]
            for key in ("best_epoch", "valid_result", "test_result", "results_file", "semantic_negatives")
            if key in result
        }
        seconds[f"recommender_{mode}"] = time.perf_counter() - mark
    summary["seconds"] = {key: round(value, 1) for key, value in seconds.items()}
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    write_json_atomic(chain.paths.root / "chain-summary.json", summary)
    logger.info(f"chain done: {json.dumps(summary['finetuned_result']['test_result'])}")
    return summary
