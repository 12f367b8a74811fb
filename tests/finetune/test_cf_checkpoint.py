"""A CF checkpoint mines for the chain only if it trained on exactly the chain's training split."""

from __future__ import annotations

import pytest
import torch

from recbole_hnlm.compat import load_recbole_checkpoint
from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.finetune.chain import check_cf_checkpoint
from recbole_hnlm.quick_start import run


def cf_checkpoint(chain, tmp_path, **overrides) -> str:
    """A checkpoint of BPR trained by ``run`` with the chain's settings and ``overrides``."""
    settings = {**chain.config_dict, "checkpoint_dir": str(tmp_path), "results_dir": None, **overrides}
    return run("BPR", chain.dataset, config_dict=settings)["checkpoint"]


def test_a_checkpoint_of_the_chains_split_is_accepted(tiny_chain, tmp_path):
    path = cf_checkpoint(tiny_chain, tmp_path)
    assert load_recbole_checkpoint(path)["split_fingerprint"]["refit_with_valid"] is False
    check_cf_checkpoint(tiny_chain, path)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [({"seed": 7}, "another training split"), ({"refit_with_valid": True}, r"refit on train \+ validation")],
)
def test_a_checkpoint_of_another_split_is_refused(tiny_chain, tmp_path, overrides, reason):
    path = cf_checkpoint(tiny_chain, tmp_path, **overrides)
    with pytest.raises(ConfigurationError, match=reason) as error:
        check_cf_checkpoint(tiny_chain, path)
    assert path in str(error.value) and "Fix:" in str(error.value)


def test_a_checkpoint_without_a_fingerprint_is_refused(tiny_chain, tmp_path):
    path = cf_checkpoint(tiny_chain, tmp_path)
    state = load_recbole_checkpoint(path)
    del state["split_fingerprint"]
    torch.save(state, path)
    with pytest.raises(ConfigurationError, match="records no training split"):
        check_cf_checkpoint(tiny_chain, path)
