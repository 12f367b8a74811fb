"""LoRA fine-tuning: adapter weights only, the loss falls on a fixed batch, and resuming equals not stopping."""

from __future__ import annotations

import copy

import pytest
import torch
from finetune_testdata import TINY

from recbole_hnlm.finetune.chain import mine
from recbole_hnlm.finetune.encoder import TextEncoder, encoder_source
from recbole_hnlm.finetune.mining import read_mined
from recbole_hnlm.finetune.train import checkpoint_folder, ranking_loss, resume_step, train_adapter

IDENTITY = {"id": "test", "dataset": TINY}


@pytest.fixture(scope="module")
def fixed_batch(tiny_chain) -> list[dict]:
    """Four real mined records: with batch size 4 every step trains on this same batch."""
    mine(tiny_chain)
    return read_mined(tiny_chain.paths.mined)[:4]


def test_two_lora_steps_change_only_adapter_weights_and_lower_the_loss(
    tiny_chain, smollm2_encoder, fixed_batch, tmp_path
):
    encoder = copy.deepcopy(smollm2_encoder)
    base = {name: tensor.clone() for name, tensor in encoder.backbone.state_dict().items()}
    settings = tiny_chain.settings.replace(encoder="smollm2", max_length=32, steps=2, batch_size=4)
    with torch.no_grad():
        before = float(ranking_loss(encoder, fixed_batch, settings.temperature))
    summary = train_adapter(encoder, fixed_batch, tmp_path / "adapter", settings, IDENTITY)
    with torch.no_grad():
        after = float(ranking_loss(encoder, fixed_batch, settings.temperature))
    assert summary["losses"][0] == pytest.approx(before, rel=1e-4)
    assert after < before and summary["losses"][1] < summary["losses"][0]
    trained = encoder.trainable_parameters()
    assert trained and all("lora_" in name for name in trained)
    for name, tensor in encoder.backbone.state_dict().items():
        if "lora_" in name:
            continue
        original = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(tensor, base[original]), name
    lora_b = [tensor for name, tensor in encoder.backbone.state_dict().items() if "lora_B" in name]
    assert any(tensor.abs().sum() > 0 for tensor in lora_b)  # LoRA B starts at zero: the adapter has moved
    assert encoder.describe()["adapter"] == {"id": "test", "step": 2}


def test_resumed_run_ends_in_the_uninterrupted_state(tiny_chain, tmp_path):
    mine(tiny_chain)
    records = read_mined(tiny_chain.paths.mined)
    settings = tiny_chain.settings.replace(steps=4, checkpoint_every=2, batch_size=3, lora_dropout=0.1)
    source = encoder_source("minilm")

    def encoder() -> TextEncoder:
        return TextEncoder(source, None, 48)

    straight = encoder()
    whole = train_adapter(straight, records, tmp_path / "straight", settings, IDENTITY)
    first = train_adapter(encoder(), records, tmp_path / "resumed", settings.replace(steps=2), IDENTITY)
    assert resume_step(tmp_path / "resumed", 4) == 2 and checkpoint_folder(tmp_path / "resumed", 2).is_dir()
    resumed = encoder()
    rest = train_adapter(resumed, records, tmp_path / "resumed", settings, IDENTITY)
    assert first["resumed_from"] == 0 and rest["resumed_from"] == 2
    assert rest["losses"] == pytest.approx(whole["losses"], abs=0)
    expected = straight.backbone.state_dict()
    for name, tensor in resumed.backbone.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
