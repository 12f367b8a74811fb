"""recbole-hnlm: semantic hard negative sampling (HNLMRec) and classic samplers for RecBole's pairwise models."""

from recbole_hnlm import compat

compat.apply()

__version__ = "0.1.0"
