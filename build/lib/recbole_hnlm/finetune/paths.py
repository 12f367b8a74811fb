"""Where each stage of the chain writes, derived from the settings alone (so the CF side finds the vectors).

Layout under ``<llm_cache_dir>/<dataset>/finetune/<profile cache folder name>/``::

    cf-<hash>/                      the mining CF model: RecBole checkpoint, manifest.json
    mined-<hash>/                   dataset.jsonl (query, hard and easy negative texts and ids), manifest.json
    adapters/<encoder>-<hash>/      checkpoints/step-<n>/ (adapter, optimiser, state), manifest.json
    encoded/<encoder>-<variant>/    vectors and per-pair query vectors in the LLM cache's layout (SemanticCache)

Each hash covers every setting its artefact depends on (and the hashes of the artefacts it is made from), except
the adapter's step count: a longer fine-tuning run resumes the checkpoints of a shorter one.
"""

from __future__ import annotations

from pathlib import Path

from recbole_hnlm.finetune.encoder import formats_hash
from recbole_hnlm.finetune.settings import FinetuneSettings, recipe_hash
from recbole_hnlm.llm.cache import safe_name
from recbole_hnlm.llm.pipeline import cache_base_path, generator_identity
from recbole_hnlm.llm.settings import LLMSettings


class ChainPaths:
    """The folders of one dataset's chain for one set of LLM and fine-tuning settings."""

    def __init__(self, dataset: str, llm_settings: LLMSettings, settings: FinetuneSettings) -> None:
        self.dataset = dataset
        self.llm_settings = llm_settings
        self.settings = settings
        # The LLM cache's per-backend folder; its split folders hold the profiles. The chain's artefacts are keyed
        # by recipes that include the seed, which fixes RecBole's split.
        profiles_base = cache_base_path(llm_settings, dataset, generator_identity(llm_settings))
        self.root = profiles_base.parent / "finetune" / profiles_base.name

    @classmethod
    def from_config(cls, config) -> ChainPaths:
        """The paths of a RecBole Config's dataset and settings."""
        return cls(config["dataset"], LLMSettings.from_config(config), FinetuneSettings.from_config(config))

    @property
    def encoder_name(self) -> str:
        """``finetune_encoder`` as a folder-name part."""
        return safe_name(Path(self.settings.encoder).name)[:40]

    @property
    def cf_id(self) -> str:
        """Hash of the mining CF model's recipe."""
        return recipe_hash(self.settings.cf_recipe())

    @property
    def cf(self) -> Path:
        """Folder of the mining CF model."""
        return self.root / f"cf-{self.cf_id}"

    @property
    def mined_id(self) -> str:
        """Hash of the mined dataset's recipe (CF model, filters, budget, formats, embedding model)."""
        return recipe_hash(
            {
                "cf": self.settings.cf_recipe(),
                "mining": self.settings.mining_recipe(),
                "formats": formats_hash(),
                "embedding_model": self.llm_settings.embedding_model,
            }
        )

    @property
    def mined(self) -> Path:
        """Folder of the mined dataset."""
        return self.root / f"mined-{self.mined_id}"

    @property
    def adapter_id(self) -> str:
        """Hash of the fine-tuning recipe (mined data, encoder, training settings; not the step count)."""
        return recipe_hash(
            {"mined": self.mined_id, "encoder": self.settings.encoder, "training": self.settings.training_recipe()}
        )

    @property
    def adapter(self) -> Path:
        """Folder of the fine-tuning run (checkpoints and manifest)."""
        return self.root / "adapters" / f"{self.encoder_name}-{self.adapter_id}"

    def encoded(self, finetuned: bool) -> Path:
        """Folder of the encoded vectors, un-tuned or with the adapter at ``finetune_steps``."""
        settings = self.settings
        recipe = {
            "encoder": settings.encoder,
            "pooling": settings.pooling,
            "max_length": settings.max_length,
            "encode_pairs": settings.encode_pairs,
            "k": self.llm_settings.negative_k,
            "seed": settings.seed,
            "formats": formats_hash(),
        }
        variant = f"tuned-{self.adapter_id}-step{settings.steps}" if finetuned else "untuned"
        return self.root / "encoded" / f"{self.encoder_name}-{variant}-{recipe_hash(recipe)}"
