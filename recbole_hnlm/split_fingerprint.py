"""Fingerprints of a training split: two runs share one only if they train on the same (user, item) pairs.

The LLM cache names its folders by it, checkpoints written by the plugin record it, and the fine-tuning chain
refuses a CF checkpoint whose training split is not the chain's (it would have seen the chain's held-out data).
"""

from __future__ import annotations

import hashlib

import numpy as np


def tokens_sha256(tokens: np.ndarray) -> str:
    """Hex sha256 of an id-to-token list, which fixes how internal ids map to the dataset's tokens."""
    return hashlib.sha256("\n".join(map(str, tokens)).encode("utf-8")).hexdigest()


def train_split_sha256(item_tokens: np.ndarray, user_tokens: np.ndarray, pair_keys: np.ndarray) -> str:
    """Hex sha256 of the training pairs, in tokens' terms: two runs share it only if they train on the same data."""
    digest = hashlib.sha256()
    digest.update(tokens_sha256(item_tokens).encode())
    digest.update(tokens_sha256(user_tokens).encode())
    digest.update(np.ascontiguousarray(pair_keys, dtype=np.int64).tobytes())
    return digest.hexdigest()


def split_sha256_of(train_dataset) -> str:
    """The sha256 of a RecBole training split's (user, item) pairs in token terms (names its cache folder)."""
    iid, uid = train_dataset.iid_field, train_dataset.uid_field
    item_tokens = np.asarray(train_dataset.field2id_token[iid])
    user_tokens = np.asarray(train_dataset.field2id_token[uid])
    keys = np.unique(
        train_dataset.inter_feat[uid].numpy().astype(np.int64) * len(item_tokens)
        + train_dataset.inter_feat[iid].numpy()
    )
    return train_split_sha256(item_tokens, user_tokens, keys)
