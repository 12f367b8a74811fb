"""The LLM side of HNLMRec: item/user profiles, semantic hard negatives, and the cache the CF side reads.

Reference: Zhao et al., "Can LLM-Driven Hard Negative Sampling Empower Collaborative Filtering? Findings and
Potentials" (HNLMRec), arXiv 2504.04726.

Models load only from installed packages and local folders: ``HF_HUB_OFFLINE=1`` is set here unless the
environment already says otherwise. Run the stages with ``python -m recbole_hnlm.llm``; read the result with
``load_semantic_cache`` (see ``recbole_hnlm.llm.loader``).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from recbole_hnlm.llm.loader import SemanticCache, SemanticNegatives, load_semantic_cache  # noqa: E402
from recbole_hnlm.llm.pipeline import build_semantic_cache  # noqa: E402
from recbole_hnlm.llm.settings import LLMSettings  # noqa: E402

__all__ = ["LLMSettings", "SemanticCache", "SemanticNegatives", "build_semantic_cache", "load_semantic_cache"]
