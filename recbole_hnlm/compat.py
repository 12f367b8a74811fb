"""Every workaround for RecBole 1.2.1 and its dependencies, in one place.

RecBole 1.2.1 is the latest release and predates numpy 2, scipy 1.13, pandas 3 and torch 2.6. Each shim
below names the upstream problem it works around; delete it once RecBole fixes that problem.
``apply()`` runs once, when ``recbole_hnlm`` is imported.
"""

from __future__ import annotations

import os
from importlib.metadata import version

import torch

from recbole_hnlm.errors import ConfigurationError

# Ranges inside which RecBole 1.2.1 works (setup.py pins the same).
_REQUIRED_BELOW = {"numpy": (2,), "scipy": (1, 13), "pandas": (3,)}

_applied = False


def _major_minor(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def check_dependency_versions() -> None:
    """Refuse versions that RecBole 1.2.1 breaks on, with the pin that fixes it.

    numpy 2 removed ``np.float_`` that RecBole's ``Config.compatibility_settings`` aliases (unreleased fix:
    RUCAIBox/RecBole#2203); scipy 1.13 and pandas 3 break RecBole 1.2.1 too (pandas 3: ``token_seq``
    loading), measured here; no upstream fix is released.
    """
    for package, bound in _REQUIRED_BELOW.items():
        installed = version(package)
        if _major_minor(installed) >= bound:
            limit = ".".join(str(part) for part in bound)
            raise ConfigurationError(
                f"{package} {installed} is installed but RecBole 1.2.1 needs {package}<{limit}. "
                f"Fix: pip install '{package}<{limit}' (or reinstall recbole-hnlm: pip install -e .)."
            )


def load_recbole_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint that RecBole's Trainer wrote: one this plugin wrote, or one the user names.

    torch 2.6 made ``weights_only=True`` the default; RecBole's checkpoints pickle its Config, so they load only with
    full unpickling (RUCAIBox/RecBole#2212). That is allowed here, for these files alone: every other ``torch.load``
    in the process keeps torch's default (the trainer's ``evaluate`` reloads its best epoch through this function).
    """
    return torch.load(path, map_location=map_location, weights_only=False)


def recbole_data_path(raw_data_path: str, dataset: str) -> str:
    """The folder RecBole should read ``dataset`` from.

    RecBole's ``Config._set_default_parameters`` sends ``ml-100k`` to its bundled example whatever
    ``data_path`` says, so a user's own ml-100k (or ours) would be ignored silently.
    """
    return os.path.join(raw_data_path, dataset)


def ray_trial_gpu_id() -> str:
    """The ``gpu_id`` for a Ray Tune trial: the GPUs Ray gave it ("" for none, which RecBole runs on CPU).

    RecBole's ``Config._init_device`` sets ``CUDA_VISIBLE_DEVICES`` to ``gpu_id`` ("0" by default) whatever it
    was (RUCAIBox/RecBole#1955), which undoes Ray's per-trial assignment and would put every trial on the first
    GPU. Passing Ray's ids as ``gpu_id`` keeps them.
    """
    import ray

    return ",".join(str(gpu) for gpu in ray.get_gpu_ids())


def apply() -> None:
    """Apply every shim once."""
    global _applied
    if _applied:
        return
    check_dependency_versions()
    _applied = True
