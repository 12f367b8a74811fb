"""The refusal of RecBole's multi-process (multi-GPU) mode: a leaf module, so that the Config can call it too."""

from __future__ import annotations

from recbole_hnlm.errors import ConfigurationError


def check_single_process(config) -> None:
    """Refuse RecBole 1.2.1's multi-process (multi-GPU) mode, which the plugin's loader and samplers do not support.

    RecBole's ``run_recboles`` spawns ``nproc`` processes over ``world_size`` ranks, each with a ``local_rank``; its
    Config then joins an NCCL process group (``single_spec`` False), its loader shards batches, and its Trainer wraps
    the model in DistributedDataParallel. The plugin's samplers would draw every rank's negatives from one seeded
    generator, and those that score or synthesize in the loss call the model's adapter outside DDP's forward, so
    gradients would not be synchronised across ranks. Reads ``config[key]`` (a Config or a dict), before or after
    RecBole's device set-up.
    """
    settings = {key: config[key] if key in config else None for key in ("nproc", "world_size", "local_rank")}
    asked = [
        f"{key}={value}"
        for key, value in settings.items()
        if key != "local_rank" and isinstance(value, int) and value > 1
    ]
    single_spec = config["single_spec"] if "single_spec" in config else None
    if single_spec is False or (single_spec is None and settings["local_rank"] is not None):
        asked.append(f"local_rank={settings['local_rank']} (a process of RecBole's distributed run)")
    if asked:
        raise ConfigurationError(
            f"RecBole's multi-GPU mode ({', '.join(asked)}) is not supported by recbole-hnlm: its negative samplers "
            "sample and score in one process, on the unwrapped model. Fix: train in a single process, without nproc, "
            "world_size and local_rank (one GPU: --gpu_id=0)."
        )
