"""Encoding: an interrupted run resumes from its last saved chunk and ends with the same arrays as a straight run."""

from __future__ import annotations

import numpy as np
import pytest

from recbole_hnlm.finetune.encode import build_encoded_cache
from recbole_hnlm.llm.loader import SemanticCache

ARRAYS = (
    "vectors/item_profile_vectors.npy",
    "vectors/user_profile_vectors.npy",
    "negatives/pair_keys.npy",
    "negatives/neighbour_ids.npy",
    "negatives/generated_vectors.npy",
    "negatives/generated_ids.npy",
    "negatives/pair_generated_unit.npy",
)


def test_interrupted_encoding_resumes_from_its_last_chunk(tiny_chain, tmp_path):
    settings = tiny_chain.settings.replace(encode_chunk=32)
    train, held_out = tiny_chain.split
    inputs = (tiny_chain.catalogue(train, held_out), tiny_chain.profiles(train, held_out), tiny_chain.llm_settings)
    encoder = tiny_chain.encoder()
    encode = encoder.encode
    calls = []

    def stop_at_the_fourth_call(texts, batch_size):
        calls.append(len(texts))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return encode(texts, batch_size)

    encoder.encode = stop_at_the_fourth_call  # items (1 chunk), users (1), queries: the second chunk is cut off
    with pytest.raises(KeyboardInterrupt):
        build_encoded_cache(tmp_path / "resumed", encoder, *inputs, settings)
    assert (tmp_path / "resumed" / "negatives" / "generated_vectors.partial.npy").is_file()
    calls.clear()
    build_encoded_cache(tmp_path / "resumed", encoder, *inputs, settings)
    n_queries = len(np.load(tmp_path / "resumed" / "negatives" / "generated_units.npy"))
    assert sum(calls) == n_queries - 32  # only the queries after the saved chunk were encoded again
    del encoder.encode
    build_encoded_cache(tmp_path / "straight", encoder, *inputs, settings)
    for relative in ARRAYS:
        resumed, straight = np.load(tmp_path / "resumed" / relative), np.load(tmp_path / "straight" / relative)
        np.testing.assert_array_equal(resumed, straight)
    assert SemanticCache(tmp_path / "resumed").dim == encoder.dim
