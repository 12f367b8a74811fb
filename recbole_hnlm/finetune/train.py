"""LoRA fine-tuning of the text encoder on the mined supervision, with checkpoints and resumption.

Loss (InfoNCE with in-batch negatives, temperature ``finetune_temperature``): for query ``q_i`` of a batch of B
mined pairs, the logits are its cosines to the batch's B hard negatives and B easy negatives, divided by the
temperature; the target is its own hard negative. Each query is pulled towards the hard negative the CF model
mined for it (the paper's supervision: the encoder learns where the user's informative negatives lie) and away
from the easy negatives and from the other pairs' hard negatives.

Batches are a seeded function of the step (a permutation of the mined pairs per pass), the base model runs in
eval mode, and the checkpoint holds the adapter, the optimiser and torch's RNG state, so a run resumed from a
checkpoint ends in the same state as one never interrupted. A checkpoint is written to a temporary folder and
renamed into place, so a crash leaves the earlier checkpoints intact; a run resumes from the last one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from logging import getLogger
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from recbole_hnlm.errors import CacheMismatchError, ConfigurationError
from recbole_hnlm.finetune.encoder import TextEncoder
from recbole_hnlm.finetune.settings import FinetuneSettings
from recbole_hnlm.io import write_text_atomic
from recbole_hnlm.llm.cache import CacheFolder

OPTIMISER_FILE = "optimizer.pt"
STATE_FILE = "state.json"

logger = getLogger()


def ranking_loss(encoder: TextEncoder, records: list[dict], temperature: float) -> torch.Tensor:
    """InfoNCE of the batch's queries against its hard (targets) and easy negatives (see the module docstring)."""
    queries = encoder.embed([record["query"] for record in records])
    documents = encoder.embed(
        [record["hard_negative_text"] for record in records] + [record["easy_negative_text"] for record in records]
    )
    logits = queries @ documents.T / temperature
    return F.cross_entropy(logits, torch.arange(len(records), device=logits.device))


def batch_rows(step: int, n_rows: int, batch_size: int, seed: int) -> np.ndarray:
    """Rows of step ``step`` (1-based): consecutive slices of one seeded permutation of the rows per pass."""
    positions = np.arange((step - 1) * batch_size, step * batch_size)
    rows = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(positions // n_rows):
        order = np.random.default_rng([seed, int(epoch)]).permutation(n_rows)
        inside = positions // n_rows == epoch
        rows[inside] = order[positions[inside] % n_rows]
    return rows


def checkpoint_folder(folder: Path, step: int) -> Path:
    """The checkpoint of ``step``."""
    return Path(folder) / "checkpoints" / f"step-{step:06d}"


def resume_step(folder: Path, steps: int) -> int:
    """The last step up to ``steps`` with a complete checkpoint (folders appear whole, by rename), else 0."""
    saved = [int(path.name.split("-")[1]) for path in (Path(folder) / "checkpoints").glob("step-*") if path.is_dir()]
    return max((step for step in saved if step <= steps), default=0)


def save_checkpoint(folder: Path, encoder: TextEncoder, optimiser, step: int, losses: list[float]) -> Path:
    """Write adapter, optimiser, RNG state and losses of ``step`` into a temporary folder, then rename it in place."""
    target = checkpoint_folder(folder, step)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    encoder.backbone.save_pretrained(str(temporary))
    torch.save({"optimiser": optimiser.state_dict(), "torch_rng": torch.get_rng_state()}, temporary / OPTIMISER_FILE)
    write_text_atomic(temporary / STATE_FILE, json.dumps({"step": step, "losses": losses}))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(temporary, target)
    return target


def load_checkpoint(folder: Path, encoder: TextEncoder, optimiser, step: int) -> list[float]:
    """Restore adapter, optimiser and RNG state of ``step``; return the losses up to it."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    source = checkpoint_folder(folder, step)
    set_peft_model_state_dict(encoder.backbone, load_file(str(source / "adapter_model.safetensors")))
    saved = torch.load(source / OPTIMISER_FILE, weights_only=True)
    optimiser.load_state_dict(saved["optimiser"])
    torch.set_rng_state(saved["torch_rng"])
    return json.loads((source / STATE_FILE).read_text(encoding="utf-8"))["losses"]


def train_adapter(
    encoder: TextEncoder, records: list[dict], folder: Path, settings: FinetuneSettings, identity: dict
) -> dict:
    """Fine-tune LoRA adapters on ``records`` up to ``finetune_steps``, resuming from the last checkpoint.

    ``identity`` (what the adapter is made from, with its ``id``) goes to ``folder/manifest.json``; a folder made
    from other inputs is refused. The encoder keeps the trained adapter and reports it in ``describe()``. Returns a
    summary: steps, per-step losses, seconds and steps per second of this call.
    """
    if not records:
        raise ConfigurationError(
            "The mined dataset is empty, so there is nothing to fine-tune on. Fix: loosen the filters "
            "(finetune_score_quantile, finetune_cf_similarity, finetune_semantic_similarity) or raise "
            "finetune_max_pairs / finetune_mining_pool, then mine again."
        )
    folder = Path(folder)
    manifest_folder = CacheFolder(folder)
    manifest = manifest_folder.read_manifest()
    if manifest and manifest.get("identity") != identity:
        raise CacheMismatchError(
            f"Fine-tuning folder {folder} holds an adapter made from other inputs or settings. Fix: delete it to train "
            "again, or run with the settings it was made with."
        )
    manifest_folder.write_manifest({"identity": identity, "encoder": encoder.describe()})
    torch.manual_seed(settings.seed)
    encoder.add_lora(settings.lora_rank, settings.lora_alpha, settings.lora_dropout)
    encoder.train()
    optimiser = torch.optim.AdamW(list(encoder.trainable_parameters().values()), lr=settings.learning_rate)
    start = resume_step(folder, settings.steps)
    losses = load_checkpoint(folder, encoder, optimiser, start) if start else []
    if start:
        logger.info(f"fine-tuning resumes from step {start} ({checkpoint_folder(folder, start)})")
    started = time.perf_counter()
    progress = tqdm(range(start + 1, settings.steps + 1), desc="fine-tuning", unit="step", disable=None)
    for step in progress:
        rows = batch_rows(step, len(records), min(settings.batch_size, len(records)), settings.seed)
        loss = ranking_loss(encoder, [records[row] for row in rows], settings.temperature)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        progress.set_postfix(loss=f"{losses[-1]:.4f}")
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            save_checkpoint(folder, encoder, optimiser, step, losses)
    seconds = time.perf_counter() - started
    encoder.eval()
    encoder.adapter = {"id": identity["id"], "step": settings.steps}
    trained = settings.steps - start
    if losses:
        logger.info(
            f"fine-tuned steps {start + 1}-{settings.steps} in {seconds:.1f}s; loss {losses[0]:.4f} at step 1, "
            f"{losses[-1]:.4f} at step {settings.steps}; adapter {checkpoint_folder(folder, settings.steps)}"
        )
    return {
        "steps": settings.steps,
        "resumed_from": start,
        "losses": losses,
        "seconds": seconds,
        "steps_per_second": trained / seconds if trained and seconds > 0 else None,
        "adapter": str(checkpoint_folder(folder, settings.steps)),
    }
