"""HNLMRec as one method folder: its sampler (``sampler.py``), its model (``model.py``) and its defaults (YAML).

Reference: Chu Zhao et al. "Can LLM-Driven Hard Negative Sampling Empower Collaborative Filtering? Findings and
Potentials." arXiv 2504.04726, 2025. Reference code: https://github.com/user683/HNLMRec

It registers itself through the hooks any third-party sampler or model uses (``register_sampler``,
``register_model``); nothing generic in the plugin names it.
"""

from recbole_hnlm.hnlm.model import HNLMRec
from recbole_hnlm.hnlm.sampler import SemanticNegativeSampler
from recbole_hnlm.model import register_model
from recbole_hnlm.samplers import register_sampler

register_sampler(SemanticNegativeSampler)
register_model(HNLMRec)

__all__ = ["HNLMRec", "SemanticNegativeSampler"]
