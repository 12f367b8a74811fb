"""What AHNS actually picks: where its chosen negative ranks among the candidates, epoch by epoch.

Usage: python benchmarks/ahns_diagnosis.py [--model LightGCN] [--dataset ml-100k] [--epochs 30] [--key=value ...]

AHNS picks the candidate whose score is closest to ``beta * (s(u, i) + alpha) ** (p + 1)``. Whether that is a hard
or an easy negative depends on where the target falls among the candidates' scores, which depends on the scale the
model's scores grow to. This trains ``--model`` with ``neg_sampler=ahns`` (its defaults from properties/, no refit,
no early stop) and records, per epoch, the validation Recall@20, the mean positive score, the mean target, the mean
candidate score, the chosen candidate's rank among its candidates by score (0 = the hardest, candidate_num - 1 = the
easiest) and how often it is the hardest or the easiest. Prints the table and writes
results/ahns-diagnosis/<model>-<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from recbole_hnlm.errors import ConfigurationError  # noqa: E402
from recbole_hnlm.quick_start import run  # noqa: E402
from recbole_hnlm.samplers import register_sampler  # noqa: E402
from recbole_hnlm.samplers.ahns import AdaptiveHardnessSampler  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class RecordingAdaptiveHardnessSampler(AdaptiveHardnessSampler):
    """AHNS unchanged, with a record of each batch's scores, target and pick (class-level, one run per process)."""

    batches: list[dict] = []

    @classmethod
    def validate_config(cls, config) -> None:
        """The record reads inner-product scores, so refuse the cosine variant before any training."""
        super().validate_config(config)
        if config["ahns_similarity"] != "ip":
            raise ConfigurationError(
                f"ahns_similarity={config['ahns_similarity']}: this diagnosis reads inner-product scores, and the "
                "cosine variant rescales them inside sample(). Fix: drop --ahns_similarity."
            )

    def pick(self, scores, positive_scores, screen=None):
        picked = super().pick(scores, positive_scores, screen)
        rank = (scores > scores.gather(1, picked.unsqueeze(1))).sum(dim=1).float()  # 0 = the hardest candidate
        self.batches.append(
            {
                "positive": positive_scores.mean().item(),
                "target": self.target(positive_scores).mean().item(),
                "candidate": scores.mean().item(),
                "rank": rank.mean().item(),
                "hardest": (rank == 0).float().mean().item(),
                "easiest": (rank == self.candidate_num - 1).float().mean().item(),
            }
        )
        return picked


def per_epoch(batches: list[dict], batches_per_epoch: int) -> list[dict]:
    """Means of the batch records, one row per epoch."""
    rows = []
    for start in range(0, len(batches), batches_per_epoch):
        chunk = batches[start : start + batches_per_epoch]
        rows.append({key: sum(batch[key] for batch in chunk) / len(chunk) for key in chunk[0]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="LightGCN")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=30)
    args, settings = parser.parse_known_args()
    register_sampler(RecordingAdaptiveHardnessSampler, replace=True)  # name "ahns": same defaults, same training
    torch.set_num_threads(1)
    valid: dict[int, float] = {}
    try:
        with tempfile.TemporaryDirectory() as checkpoints:
            result = run(
                args.model,
                args.dataset,
                config_dict={
                    "neg_sampler": "ahns",
                    "epochs": args.epochs,
                    "eval_step": 1,
                    "stopping_step": args.epochs,
                    "refit_with_valid": False,
                    "results_dir": None,
                    "checkpoint_dir": checkpoints,
                    "torch_threads": 1,
                    "state": "ERROR",
                },
                cmd_args=settings,
                epoch_callback=lambda epoch, scores: valid.__setitem__(epoch, float(scores["recall@20"])),
            )
    except ConfigurationError as error:
        parser.error(str(error))
    batches = RecordingAdaptiveHardnessSampler.batches
    epochs_run = len(result["epoch_train_seconds"])
    rows = per_epoch(batches, math.ceil(len(batches) / epochs_run))
    for epoch, row in enumerate(rows):
        row["valid_recall@20"] = valid.get(epoch)
    candidate_num = result["candidate_num"]
    print(f"{args.model} + ahns on {args.dataset} ({candidate_num} candidates; rank 0 = the hardest)")
    print("epoch  s(u,i)  target  s(u,j) mean  chosen rank  hardest  easiest  valid Recall@20")
    for epoch, row in enumerate(rows):
        print(
            f"{epoch:5d}  {row['positive']:6.2f}  {row['target']:6.3f}  {row['candidate']:11.2f}  "
            f"{row['rank']:11.1f}  {row['hardest']:7.2f}  {row['easiest']:7.2f}  {row['valid_recall@20'] or 0:.4f}"
        )
    print(f"best validation epoch {result['best_epoch']}, its test Recall@20 {result['test_result']['recall@20']:.4f}")
    out = PROJECT_ROOT / "results" / "ahns-diagnosis" / f"{args.model}-{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": " ".join(
            [
                "python benchmarks/ahns_diagnosis.py",
                f"--model {args.model}",
                f"--dataset {args.dataset}",
                f"--epochs {args.epochs}",
                *settings,
            ]
        ),
        "candidate_num": candidate_num,
        "best_epoch": result["best_epoch"],
        "test_result": result["test_result"],
        "epochs": rows,
    }
    out.write_text(json.dumps(payload, indent=1))
    print(out)


if __name__ == "__main__":
    main()
