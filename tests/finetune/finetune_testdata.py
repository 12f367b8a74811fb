"""Data and settings shared by the fine-tuning tests: a tiny real slice of ml-100k and tiny chain settings."""

from __future__ import annotations

import os
from pathlib import Path

from ml100k_slices import write_ml100k_slice

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = "ml-100k-ft"
QUIET = {"state": "ERROR", "show_progress": False}


def write_tiny_ml100k(root: Path, name: str = TINY) -> Path:
    """Real ml-100k rows of items 1-30 and the 12 first users with 8-15 of them, with their real features."""
    return write_ml100k_slice(root, name, max_item=30, history=(8, 15), n_users=12)


def tiny_settings(data_path: str, cache_dir: str, **overrides) -> dict:
    """Chain settings sized for seconds: template profiles, MiniLM, one CF epoch, a few fine-tuning steps."""
    return {
        **QUIET,
        "data_path": data_path,
        "llm": "template",
        "llm_cache_dir": cache_dir,
        "llm_torch_threads": 1,
        "torch_threads": 1,
        "finetune_encoder": "minilm",
        "finetune_max_length": 48,
        "finetune_cf_epochs": 2,
        "finetune_max_pairs": 40,
        "finetune_mining_pool": 10,
        "finetune_steps": 2,
        "finetune_batch_size": 4,
        "finetune_checkpoint_every": 1,
        "finetune_learning_rate": 0.001,
        "finetune_encode_pairs": 0,
        "finetune_encode_chunk": 64,
        "embedding_size": 16,
        "epochs": 1,
        "train_batch_size": 64,
        **overrides,
    }
