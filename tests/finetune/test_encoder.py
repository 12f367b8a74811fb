"""The encoders: one pooling at training and inference, unit-length vectors, MiniLM as sentence-transformers pools."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recbole_hnlm.errors import ModelNotFoundError
from recbole_hnlm.finetune.encoder import TextEncoder, encoder_source, query_text
from recbole_hnlm.llm import LLMSettings
from recbole_hnlm.llm.backends import TextEmbedder

TEXTS = [
    query_text("User: age 24, gender M. Most chosen categories: Drama (12).", "Toy Story (1995). Animation."),
    "Item: Fargo (1996). Categories: Crime, Drama, Thriller.",
    "Item: Heat (1995).",
]


@pytest.fixture(scope="module")
def minilm_encoder() -> TextEncoder:
    return TextEncoder(encoder_source("minilm"), None, 64)


@pytest.mark.parametrize("which", ["smollm2", "minilm"])
def test_pooling_at_inference_equals_pooling_at_training(which, smollm2_encoder, minilm_encoder):
    encoder = smollm2_encoder if which == "smollm2" else minilm_encoder
    assert encoder.pooling == ("last" if which == "smollm2" else "mean")
    encoder.train()
    in_training_batch = encoder.embed(TEXTS)  # padded together, with gradients, as a fine-tuning step embeds
    assert in_training_batch.requires_grad
    encoder.eval()
    one_by_one = np.stack([encoder.encode([text], batch_size=1)[0] for text in TEXTS])
    batched = encoder.encode(TEXTS, batch_size=2)
    np.testing.assert_allclose(in_training_batch.detach().numpy(), one_by_one, atol=2e-5)
    np.testing.assert_allclose(batched, one_by_one, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(one_by_one, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(one_by_one[0], one_by_one[1])


def test_causal_texts_end_with_eos_even_when_truncated(smollm2_encoder):
    long_text = " ".join(["drama"] * 200)
    ids = smollm2_encoder.tokenize([long_text, "Heat"])
    lengths = ids["attention_mask"].sum(dim=1)
    assert int(lengths[0]) == smollm2_encoder.max_length
    for row, length in enumerate(lengths):
        assert int(ids["input_ids"][row, length - 1]) == smollm2_encoder.tokenizer.eos_token_id


def test_minilm_encoder_matches_sentence_transformers(minilm_encoder):
    short = [TEXTS[1], TEXTS[2]]  # under 64 tokens, so both truncate alike
    embedder = TextEmbedder(LLMSettings.from_dict({"torch_threads": 1}))
    with torch.no_grad():
        np.testing.assert_allclose(minilm_encoder.encode(short, 8), embedder.encode(short), atol=1e-5)


def test_unknown_encoder_path_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match="finetune_encoder"):
        encoder_source(str(tmp_path / "missing"))


def test_conversions_left_by_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    from recbole_hnlm.finetune.encoder import remove_stale_conversions

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    folder = tmp_path / "SmolLM2"
    dead = tmp_path / f".SmolLM2.tmp-{dead_pid}"
    live = tmp_path / f".SmolLM2.tmp-{os.getpid()}"
    other = tmp_path / ".Other.tmp-1"
    for path in (dead, live, other):
        (path / "part").mkdir(parents=True)
    assert remove_stale_conversions(folder) == [dead]
    assert not dead.exists() and live.exists() and other.exists()
