"""LLM-enhanced CF models, the baselines semantic negatives are measured against, on the same profile cache.

- ``RLMRec`` (``rlmrec.py``): RLMRec-Con, Ren et al., WWW 2024; wraps a backbone (``--backbone``).
- ``AlphaRec`` (``alpharec.py``): Sheng et al., ICLR 2025; no ID embeddings.

Both register through ``register_model``, the hook any third-party model uses.
"""

from recbole_hnlm.llm_cf.alpharec import AlphaRec
from recbole_hnlm.llm_cf.rlmrec import RLMRec
from recbole_hnlm.model import register_model

register_model(RLMRec)
register_model(AlphaRec)

__all__ = ["AlphaRec", "RLMRec"]
