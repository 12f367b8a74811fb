"""Full unpickling is allowed for RecBole checkpoints the plugin loads by name, never for torch.load at large."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import torch

import recbole_hnlm  # importing the plugin must leave torch.load as it was
from recbole_hnlm.compat import load_recbole_checkpoint


class Arbitrary:
    """An object that only full unpickling can restore."""


def test_torch_load_keeps_weights_only_after_importing_the_plugin(tmp_path):
    path = tmp_path / "untrusted.pth"
    torch.save({"payload": Arbitrary()}, path)
    try:
        torch.load(path)
    except pickle.UnpicklingError as error:
        assert "weights_only" in str(error)
    else:
        raise AssertionError("torch.load unpickled an arbitrary object by default")
    assert isinstance(load_recbole_checkpoint(path)["payload"], Arbitrary)


def test_recbole_trainer_module_sees_the_real_torch():
    code = "import recbole_hnlm, torch, recbole.trainer.trainer as t; print(t.torch is torch)"
    root = Path(recbole_hnlm.__file__).parents[1]  # this checkout's package, whatever the working directory
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert completed.stdout == "True\n"
